//! The BFV operations of one block of slots: encrypting a party's shares, the replier's
//! circuit-private answer, and decryption. Pure functions over [`HeContext`]; the generator
//! (`super::HeTriples`) moves their bytes between parties.

use super::params::HeContext;
use fhe::bfv::{Ciphertext, Encoding, Plaintext, PublicKey, SecretKey};
use fhe_math::rq::traits::TryConvertFrom;
use fhe_math::rq::{Poly, Representation};
use fhe_math::zq::Modulus;
use fhe_traits::{
    DeserializeParametrized, FheDecoder, FheDecrypter, FheEncoder, FheEncrypter, Serialize,
};
use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

/// A failed BFV operation (bad bytes from a peer, or an fhe.rs error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OpError(pub String);

fn fhe_err(what: &str) -> impl Fn(fhe::Error) -> OpError + '_ {
    move |e| OpError(format!("{what}: {e}"))
}

/// A party's key pair for one batch. The secret key never leaves this value (fhe.rs
/// zeroizes its coefficients on drop, as it does a plaintext's values); `Debug` shows nothing of it.
pub struct HeKeys {
    pub(super) sk: SecretKey,
    pub(super) pk: PublicKey,
}

impl std::fmt::Debug for HeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeKeys(..)")
    }
}

impl HeKeys {
    /// A fresh key pair.
    pub fn generate<R: RngCore + CryptoRng>(ctx: &HeContext, rng: &mut R) -> Self {
        let sk = SecretKey::random(&ctx.bfv, rng);
        let pk = PublicKey::new(&sk, rng);
        HeKeys { sk, pk }
    }

    /// The public key's bytes, for the other parties.
    pub fn public_bytes(&self) -> Vec<u8> {
        self.pk.to_bytes()
    }

    /// The secret key, for tests that measure noise.
    pub fn secret(&self) -> &SecretKey {
        &self.sk
    }

    /// The public key.
    pub fn public(&self) -> &PublicKey {
        &self.pk
    }
}

/// A public key from another party's bytes.
///
/// # Errors
/// Bytes that are not a public key for these parameters.
pub fn public_key(ctx: &HeContext, bytes: &[u8]) -> Result<PublicKey, OpError> {
    PublicKey::from_bytes(bytes, &ctx.bfv).map_err(fhe_err("a public key"))
}

/// A ciphertext from another party's bytes, at the level expected.
///
/// # Errors
/// Bytes that are not a ciphertext of two polynomials at `level`.
pub fn ciphertext(ctx: &HeContext, bytes: &[u8], level: usize) -> Result<Ciphertext, OpError> {
    let ct = Ciphertext::from_bytes(bytes, &ctx.bfv).map_err(fhe_err("a ciphertext"))?;
    if ct.len() != 2 || ct[0].ctx() != ctx.bfv.context_at_level(level).map_err(fhe_err("level"))? {
        return Err(OpError(format!(
            "a ciphertext of {} polynomials or at another level than {level}",
            ct.len()
        )));
    }
    Ok(ct)
}

fn encode(ctx: &HeContext, values: &[u64]) -> Result<Plaintext, OpError> {
    Plaintext::try_encode(values, Encoding::simd(), &ctx.bfv).map_err(fhe_err("encoding"))
}

/// Encrypts up to N values (one per slot) under this party's secret key. The ciphertext is
/// seeded: its second polynomial is sent as a 32-byte seed.
///
/// # Errors
/// More values than slots, or values not below t.
pub fn encrypt<R: RngCore + CryptoRng>(
    ctx: &HeContext,
    keys: &HeKeys,
    values: &[u64],
    rng: &mut R,
) -> Result<Ciphertext, OpError> {
    let pt = encode(ctx, values)?;
    keys.sk.try_encrypt(&pt, rng).map_err(fhe_err("encrypting"))
}

/// Decrypts a reply into `out.len()` slot values.
///
/// # Errors
/// A ciphertext under other parameters.
pub fn decrypt(
    ctx: &HeContext,
    keys: &HeKeys,
    ct: &Ciphertext,
    out: &mut [u64],
) -> Result<(), OpError> {
    let pt = keys.sk.try_decrypt(ct).map_err(fhe_err("decrypting"))?;
    let level = ctx
        .bfv
        .level_of_context(ct[0].ctx())
        .map_err(fhe_err("level"))?;
    let values = Zeroizing::new(
        Vec::<u64>::try_decode(&pt, Encoding::simd_at_level(level)).map_err(fhe_err("decoding"))?,
    );
    out.copy_from_slice(&values[..out.len()]);
    Ok(())
}

/// What the replier adds for circuit privacy. Production replies use [`Protection::FULL`];
/// the weaker settings exist so tests can show what each measure stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protection {
    /// Subtract the mask as a fresh public-key encryption of -r (rather than as a plaintext),
    /// re-randomising the second polynomial.
    pub fresh_mask: bool,
    /// Add flooding noise [`super::params::NoiseBudget::flood_bits`] wide.
    pub flood: bool,
    /// Switch the reply down to its reply modulus (fewer bytes; no privacy claimed).
    pub switch_down: bool,
}

impl Protection {
    pub const FULL: Protection = Protection {
        fresh_mask: true,
        flood: true,
        switch_down: true,
    };
}

/// The replier's answer for one block: `sum_k terms[k].0 * terms[k].1 - mask`, where each
/// `.0` is the other party's ciphertext and each `.1` this party's slot values, and `mask`
/// is fresh uniform randomness this party keeps (written into `mask`, one per slot used).
///
/// With [`Protection::FULL`] the answer is a fresh public-key encryption of the result under
/// the other party's key, with flooding noise, switched down: circuit-private (docs/he.md).
///
/// # Errors
/// Mismatched parameters or lengths.
pub fn reply<R: RngCore + CryptoRng>(
    ctx: &HeContext,
    their_pk: &PublicKey,
    terms: &[(&Ciphertext, &[u64])],
    mask: &mut [u64],
    protection: Protection,
    rng: &mut R,
) -> Result<Ciphertext, OpError> {
    let t = ctx.spec.plaintext;
    let field = Modulus::new(t).map_err(|e| OpError(e.to_string()))?;
    for m in mask.iter_mut() {
        *m = field.reduce_u128(((rng.next_u64() as u128) << 64) | rng.next_u64() as u128);
    }
    let neg: Zeroizing<Vec<u64>> = Zeroizing::new(mask.iter().map(|&m| field.neg(m)).collect());
    let neg_pt = encode(ctx, &neg)?;
    let mut acc: Option<Ciphertext> = None;
    for (ct, values) in terms {
        let pt = encode(ctx, values)?;
        let prod = *ct * &pt;
        acc = Some(match acc {
            None => prod,
            Some(a) => &a + &prod,
        });
    }
    let mut out = acc.ok_or_else(|| OpError("a reply needs at least one term".into()))?;
    if protection.fresh_mask {
        let fresh = their_pk
            .try_encrypt(&neg_pt, rng)
            .map_err(fhe_err("encrypting the mask"))?;
        out = &out + &fresh;
    } else {
        out = &out + &neg_pt;
    }
    if protection.flood {
        let noise = flooding(ctx, ctx.budget.flood_bits, rng)?;
        out[0] += &noise;
    }
    if protection.switch_down {
        out.switch_to_level(ctx.reply_level())
            .map_err(fhe_err("switching down"))?;
    }
    Ok(out)
}

/// A polynomial at the top level whose coefficients are uniform on [-2^bits, 2^bits), in NTT
/// form, for adding to a ciphertext's first polynomial.
///
/// # Errors
/// `bits` of 127 or more.
pub fn flooding<R: RngCore + CryptoRng>(
    ctx: &HeContext,
    bits: u32,
    rng: &mut R,
) -> Result<Poly, OpError> {
    if bits >= 127 {
        return Err(OpError(format!("flooding of {bits} bits does not fit")));
    }
    let poly_ctx = ctx.bfv.context_at_level(0).map_err(fhe_err("level"))?;
    let n = ctx.spec.degree;
    let half = 1u128 << bits;
    let mask = (half << 1) - 1;
    let draws: Zeroizing<Vec<u128>> = Zeroizing::new(
        (0..n)
            .map(|_| (((rng.next_u64() as u128) << 64) | rng.next_u64() as u128) & mask)
            .collect(),
    );
    // The coefficient is draw - 2^bits; in RNS, (draw mod q_i) - (2^bits mod q_i).
    let mut rns = Vec::with_capacity(n * ctx.bfv.moduli().len());
    for &q in ctx.bfv.moduli() {
        let m = Modulus::new(q).map_err(|e| OpError(e.to_string()))?;
        let offset = m.reduce_u128(half);
        rns.extend(draws.iter().map(|&d| m.sub(m.reduce_u128(d), offset)));
    }
    let mut p = Poly::try_convert_from(rns, poly_ctx, false, Representation::PowerBasis)
        .map_err(|e| OpError(format!("flooding polynomial: {e}")))?;
    p.change_representation(Representation::Ntt);
    Ok(p)
}

/// Bytes of a ciphertext, for sending.
pub fn to_bytes(ct: &Ciphertext) -> Vec<u8> {
    ct.to_bytes()
}
