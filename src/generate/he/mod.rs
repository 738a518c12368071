//! The HE generator: triples and squares made by the parties' own nodes with BFV (fhe.rs),
//! no dealer. Semi-honest, any number of parties. The protocol, the parameters, the noise
//! budget and the circuit-privacy argument are in `docs/he.md`; in short:
//!
//! Each party i draws its shares a_i, b_i from its own chunk seeds (so it stores only its c
//! share). For every pair i < j, i sends j seeded secret-key encryptions of a_i and b_i,
//! N slots each; j answers each block with `Enc_pk_i(a_i b_j + b_i a_j - r)`: the products
//! with j's plaintexts, plus a fresh public-key encryption of -r under i's key, plus flooding
//! noise, switched down to fewer moduli. j keeps r; i decrypts. Then
//! `c_i = a_i b_i + sum(decrypted) + sum(r kept)` and the c_i add up to (sum a)(sum b).
//! Squares are the same with one ciphertext and the term 2 a_i a_j. Inverses (from a triple,
//! c opened) and bits (from a square, a^2 opened) take one opening more.
//!
//! Messages are grouped [`GROUP_BLOCKS`] blocks at a time and pipelined: a party encrypts and
//! sends group g, answers group g from every lower party, then decrypts the answers to group
//! g - 1 from every higher party. Nobody waits on a later group, so there is no deadlock.
//!
//! Each batch uses fresh key pairs made at the party; secret keys never leave it and are
//! zeroized when dropped (fhe.rs). Nothing of a batch survives a failure: a piece that fails
//! anywhere is abandoned and made again from scratch.

mod ops;
mod params;

pub use ops::{
    ciphertext, decrypt, encrypt, flooding, public_key, reply, to_bytes, HeKeys, OpError,
    Protection,
};
pub use params::{
    HeContext, HeParams, NoiseBudget, ParamsError, BETA, FLOOD_MARGIN_BITS, MAX_LOG_Q_128,
};

use super::{BatchPlan, Channel, GenerateError, PartyBatch, PartyGenerator};
use crate::material::{
    party_layout, BatchHeader, Kind, Maker, PoolSpec, Seed, Source, CHUNK_ITEMS,
};
use crate::math::{Domain, Fp64, Ring};
use fhe::bfv::{Ciphertext, PublicKey};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;
use std::collections::HashMap;
use zeroize::Zeroizing;

/// Blocks (of N slots) per message.
pub const GROUP_BLOCKS: usize = 4;

/// The generator's name in jobs, batches, stock and audit records.
pub const NAME: &str = "he";

/// The HE generator, a [`PartyGenerator`]: one instance runs at every party.
pub struct HeTriples {
    master: ChaCha20Rng,
    contexts: HashMap<u64, HeContext>,
    sent: u64,
}

impl std::fmt::Debug for HeTriples {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeTriples(..)")
    }
}

impl HeTriples {
    /// Seeded from the operating system.
    pub fn from_os_rng() -> Self {
        HeTriples {
            master: ChaCha20Rng::from_os_rng(),
            contexts: HashMap::new(),
            sent: 0,
        }
    }

    /// The parameters Larder uses for the prime `t`, checked.
    ///
    /// # Errors
    /// [`ParamsError`] if `t` cannot carry HE material.
    pub fn context_for(t: u64) -> Result<HeContext, ParamsError> {
        HeContext::new(&HeParams::for_prime(t))
    }

    fn context(&mut self, t: u64) -> Result<HeContext, GenerateError> {
        if let Some(c) = self.contexts.get(&t) {
            return Ok(c.clone());
        }
        let c = Self::context_for(t)
            .map_err(|e| GenerateError::Plan(format!("HE parameters for p = {t}: {e}")))?;
        self.contexts.insert(t, c.clone());
        Ok(c)
    }

    fn rng(&mut self) -> ChaCha20Rng {
        let mut seed = [0u8; 32];
        self.master.fill_bytes(&mut seed);
        ChaCha20Rng::from_seed(seed)
    }
}

/// Whether the HE generator can make material of `pool`: triples and squares in a prime field
/// with BFV parameters that pass every check, and from them inverses (a triple, c opened) and
/// bits (a square, a^2 opened).
pub fn supports(pool: &PoolSpec) -> bool {
    matches!(
        pool.kind,
        Kind::Triple | Kind::Square | Kind::Inverse | Kind::Bit
    ) && matches!(pool.domain, Domain::Fp(p) if p < 1 << 62 && HeTriples::context_for(p as u64).is_ok())
}

fn channel_err(party: u8, what: impl Into<String>) -> GenerateError {
    GenerateError::Channel {
        party,
        what: what.into(),
    }
}

/// Length-prefixed parts in one message.
fn pack(parts: &[Vec<u8>]) -> Zeroizing<Vec<u8>> {
    let len = 4 + parts.iter().map(|p| 4 + p.len()).sum::<usize>();
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    out.extend_from_slice(&(parts.len() as u32).to_le_bytes());
    for p in parts {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

fn unpack(from: u8, msg: &[u8], expected: usize) -> Result<Vec<&[u8]>, GenerateError> {
    let bad = || channel_err(from, "a malformed HE message");
    let take = |at: &mut usize, len: usize| -> Result<&[u8], GenerateError> {
        let end = at
            .checked_add(len)
            .filter(|&e| e <= msg.len())
            .ok_or_else(bad)?;
        let s = &msg[*at..end];
        *at = end;
        Ok(s)
    };
    let mut at = 0;
    let count = u32::from_le_bytes(take(&mut at, 4)?.try_into().map_err(|_| bad())?) as usize;
    if count != expected {
        return Err(channel_err(
            from,
            format!("an HE message of {count} parts, expected {expected}"),
        ));
    }
    let mut parts = Vec::with_capacity(count);
    for _ in 0..count {
        let len = u32::from_le_bytes(take(&mut at, 4)?.try_into().map_err(|_| bad())?) as usize;
        parts.push(take(&mut at, len)?);
    }
    if at != msg.len() {
        return Err(bad());
    }
    Ok(parts)
}

/// One party's view of a batch in the making.
struct Shares {
    /// Ciphertexts per item: 2 for triples (a, b), 1 for squares (a).
    per: usize,
    a: Zeroizing<Vec<u64>>,
    b: Zeroizing<Vec<u64>>,
    c: Zeroizing<Vec<u64>>,
}

impl PartyGenerator for HeTriples {
    fn name(&self) -> &'static str {
        NAME
    }

    fn bytes_sent(&self) -> u64 {
        self.sent
    }

    fn supports(&self, pool: &PoolSpec) -> bool {
        supports(pool)
    }

    fn generate_share(
        &mut self,
        plan: &BatchPlan,
        channel: &mut dyn Channel,
    ) -> Result<PartyBatch, GenerateError> {
        plan.pool.validate(plan.parties)?;
        let t = match (plan.pool.kind, plan.pool.domain) {
            (Kind::Triple | Kind::Square | Kind::Inverse | Kind::Bit, Domain::Fp(p))
                if p < 1 << 62 =>
            {
                p as u64
            }
            _ => {
                return Err(GenerateError::Plan(format!(
                    "the HE generator makes triples, squares, inverses and bits in prime fields below 2^62, not {}",
                    plan.pool
                )))
            }
        };
        let ctx = self.context(t)?;
        let me = channel.me();
        let (header, seeds) = super::party_share_start(plan, me, Maker::He, &mut self.master)?;
        let field = Fp64::new(t);
        let mut rng = self.rng();
        let mut shares = draw(&field, &header, &seeds, plan.pool.kind, &mut rng);
        let keys = HeKeys::generate(&ctx, &mut rng);
        let mut sent = run_pairs(
            &ctx,
            &field,
            &keys,
            &mut shares,
            plan.parties,
            channel,
            self,
        )?;
        match plan.pool.kind {
            Kind::Inverse => sent += derive_inverses(&field, &mut shares, plan.parties, channel)?,
            Kind::Bit => sent += derive_bits(&field, &mut shares, plan.parties, channel)?,
            _ => {}
        }
        self.sent += sent;
        crate::failpoint::hit("he.exchanged");

        let mut file = Zeroizing::new(Vec::with_capacity(header.file_len() as usize));
        file.extend_from_slice(&header.encode());
        let mut explicit = Zeroizing::new(Vec::with_capacity(CHUNK_ITEMS as usize * 8));
        for (c, seed) in seeds.iter().enumerate() {
            let at = c * CHUNK_ITEMS as usize;
            let len = header.chunk_len(c as u64) as usize;
            explicit.clear();
            for &v in &shares.c[at..at + len] {
                explicit.extend_from_slice(&v.to_le_bytes());
            }
            BatchHeader::encode_chunk(&seed.0, &explicit, &mut file);
        }
        debug_assert_eq!(file.len() as u64, header.file_len());
        Ok(PartyBatch {
            header,
            bytes: file,
        })
    }
}

/// This party's a and b shares, and the local part of c: a b (or a^2). What the batch's
/// layout keeps seeded (a and b of a triple, a of a square or an inverse) is drawn from the
/// chunk seeds as the store redraws it (item order, then record order); the rest (b of an
/// inverse, a of a bit) from `rng`, used once and never stored.
fn draw(
    field: &Fp64,
    header: &BatchHeader,
    seeds: &[Seed],
    kind: Kind,
    rng: &mut ChaCha20Rng,
) -> Shares {
    let per = if matches!(kind, Kind::Triple | Kind::Inverse) {
        2
    } else {
        1
    };
    let seeded = party_layout(&header.pool, header.party)
        .iter()
        .filter(|s| **s == Source::Seeded)
        .count();
    let items = header.items as usize;
    let mut a = Zeroizing::new(vec![0u64; items]);
    let mut b = Zeroizing::new(vec![0u64; if per == 2 { items } else { 0 }]);
    let mut drawn = Zeroizing::new(vec![0u64; CHUNK_ITEMS as usize * seeded]);
    for (c, seed) in seeds.iter().enumerate() {
        let len = header.chunk_len(c as u64) as usize;
        let at = c * CHUNK_ITEMS as usize;
        field.sample_into(&mut seed.rng(), &mut drawn[..len * seeded]);
        for i in 0..len {
            a[at + i] = if seeded >= 1 {
                drawn[i * seeded]
            } else {
                field.sample(rng)
            };
            if per == 2 {
                b[at + i] = if seeded == 2 {
                    drawn[i * seeded + 1]
                } else {
                    field.sample(rng)
                };
            }
        }
    }
    let c = Zeroizing::new(if per == 2 {
        a.iter()
            .zip(b.iter())
            .map(|(&x, &y)| field.mul(x, y))
            .collect()
    } else {
        a.iter().map(|&x| field.mul(x, x)).collect()
    });
    Shares { per, a, b, c }
}

/// Opens `mine` (one element per item): every party sends its shares to every other and adds
/// up what it gets. Returns the opened values and the bytes sent.
fn open(
    field: &Fp64,
    mine: &[u64],
    parties: u8,
    channel: &mut dyn Channel,
) -> Result<(Zeroizing<Vec<u64>>, u64), GenerateError> {
    let me = channel.me();
    let mut bytes = Zeroizing::new(Vec::with_capacity(mine.len() * 8));
    for v in mine {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let mut sent = 0;
    for p in (0..parties).filter(|&p| p != me) {
        sent += bytes.len() as u64;
        channel.send(p, bytes.clone())?;
    }
    let mut sum = Zeroizing::new(mine.to_vec());
    for p in (0..parties).filter(|&p| p != me) {
        let theirs = channel.recv(p)?;
        if theirs.len() != bytes.len() {
            return Err(channel_err(p, "an opening of another length"));
        }
        for (s, chunk) in sum.iter_mut().zip(theirs.chunks_exact(8)) {
            let v = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            if v >= field.modulus() {
                return Err(channel_err(
                    p,
                    "an opened share that is not a field element",
                ));
            }
            *s = field.add(*s, v);
        }
    }
    channel.flush()?;
    Ok((sum, sent))
}

/// Inverses from triples (Bar-Ilan and Beaver, 1989): open c = a b, then 1/a = b / c, so this
/// party's share of 1/a is c^-1 b_i. c reveals nothing of a: b is uniform and never used
/// again. Writes the shares of 1/a into `shares.c` (the explicit element).
fn derive_inverses(
    field: &Fp64,
    shares: &mut Shares,
    parties: u8,
    channel: &mut dyn Channel,
) -> Result<u64, GenerateError> {
    let (c, sent) = open(field, &shares.c, parties, channel)?;
    let inv = batch_inverse(field, &c)?;
    for ((out, b), ci) in shares.c.iter_mut().zip(shares.b.iter()).zip(inv.iter()) {
        *out = field.mul(*b, *ci);
    }
    Ok(sent)
}

/// Bits from squares: open A = a^2, take its square root r (a fixed one of the two), then
/// a / r is +1 or -1, each with probability 1/2 whatever r is, and b = (a / r + 1) / 2 is a
/// uniform bit; this party's share is (r^-1 a_i + [i = 0]) / 2. A reveals nothing of b.
/// Writes the bit shares into `shares.c` (the explicit element).
fn derive_bits(
    field: &Fp64,
    shares: &mut Shares,
    parties: u8,
    channel: &mut dyn Channel,
) -> Result<u64, GenerateError> {
    let me = channel.me();
    let (squares, sent) = open(field, &shares.c, parties, channel)?;
    let sqrt = crate::math::Sqrt::new(field, u128::from(field.modulus()));
    let roots: Zeroizing<Vec<u64>> = Zeroizing::new(
        squares
            .par_iter()
            .map(|&x| sqrt.root(x))
            .collect::<Option<_>>()
            .ok_or_else(|| GenerateError::Plan("an opened square has no root".into()))?,
    );
    let inv = batch_inverse(field, &roots)?;
    let half = field.inv(2).expect("p is odd");
    let one = u64::from(me == 0);
    for ((out, a), ri) in shares.c.iter_mut().zip(shares.a.iter()).zip(inv.iter()) {
        *out = field.mul(field.add(field.mul(*a, *ri), one), half);
    }
    Ok(sent)
}

/// Inverts every element with one field inversion (Montgomery's trick). A zero (a product or
/// square that is 0, probability about 2/p per item) fails the batch, which is made again.
fn batch_inverse(field: &Fp64, xs: &[u64]) -> Result<Zeroizing<Vec<u64>>, GenerateError> {
    let mut prefix = Zeroizing::new(Vec::with_capacity(xs.len()));
    let mut acc = field.one();
    for &x in xs {
        if x == 0 {
            return Err(GenerateError::Plan(
                "an opened value is zero; the batch is made again".into(),
            ));
        }
        prefix.push(acc);
        acc = field.mul(acc, x);
    }
    let mut inv = field.inv(acc).expect("a product of nonzero elements");
    let mut out = Zeroizing::new(vec![0u64; xs.len()]);
    for i in (0..xs.len()).rev() {
        out[i] = field.mul(inv, prefix[i]);
        inv = field.mul(inv, xs[i]);
    }
    Ok(out)
}

/// Runs every pair this party is in, adding the cross terms into `shares.c`. Returns the bytes
/// sent.
fn run_pairs(
    ctx: &HeContext,
    field: &Fp64,
    keys: &HeKeys,
    shares: &mut Shares,
    parties: u8,
    channel: &mut dyn Channel,
    g: &mut HeTriples,
) -> Result<u64, GenerateError> {
    let me = channel.me();
    let n = ctx.slots();
    let items = shares.a.len();
    let blocks = items.div_ceil(n);
    let groups = blocks.div_ceil(GROUP_BLOCKS);
    let higher: Vec<u8> = (me + 1..parties).collect();
    let lower: Vec<u8> = (0..me).collect();
    let mut their_pks: HashMap<u8, PublicKey> = HashMap::new();
    let mut sent = 0u64;
    let per = shares.per;
    let block_range = |blk: usize| blk * n..((blk + 1) * n).min(items);
    let group_blocks = |grp: usize| grp * GROUP_BLOCKS..((grp + 1) * GROUP_BLOCKS).min(blocks);
    let lift = |e: OpError, party: u8| channel_err(party, e.0);

    for grp in 0..=groups {
        // 1. Encrypt this group and send it to every higher party.
        if grp < groups && !higher.is_empty() {
            let seeds: Vec<[u8; 32]> = group_blocks(grp)
                .map(|_| {
                    let mut s = [0u8; 32];
                    g.master.fill_bytes(&mut s);
                    s
                })
                .collect();
            let cts: Vec<Vec<u8>> = group_blocks(grp)
                .zip(seeds)
                .collect::<Vec<_>>()
                .into_par_iter()
                .map(|(blk, seed)| {
                    let mut rng = ChaCha20Rng::from_seed(seed);
                    let r = block_range(blk);
                    let mut out = vec![to_bytes(&encrypt(
                        ctx,
                        keys,
                        &shares.a[r.clone()],
                        &mut rng,
                    )?)];
                    if per == 2 {
                        out.push(to_bytes(&encrypt(ctx, keys, &shares.b[r], &mut rng)?));
                    }
                    Ok::<_, OpError>(out)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| GenerateError::Plan(format!("encrypting: {}", e.0)))?
                .into_iter()
                .flatten()
                .collect();
            let mut parts = Vec::with_capacity(cts.len() + 1);
            if grp == 0 {
                parts.push(keys.public_bytes());
            }
            parts.extend(cts);
            let msg = pack(&parts);
            for &j in &higher {
                sent += msg.len() as u64;
                channel.send(j, msg.clone())?;
            }
        }
        // 2. Answer this group from every lower party.
        if grp < groups {
            for &i in &lower {
                let msg = channel.recv(i)?;
                let range = group_blocks(grp);
                let expected = range.len() * per + usize::from(grp == 0);
                let parts = unpack(i, &msg, expected)?;
                let parts = if grp == 0 {
                    their_pks.insert(i, public_key(ctx, parts[0]).map_err(|e| lift(e, i))?);
                    &parts[1..]
                } else {
                    &parts[..]
                };
                let pk = &their_pks[&i];
                let seeds: Vec<[u8; 32]> = range
                    .clone()
                    .map(|_| {
                        let mut s = [0u8; 32];
                        g.master.fill_bytes(&mut s);
                        s
                    })
                    .collect();
                let a = &shares.a;
                let b = &shares.b;
                let answers: Vec<(Vec<u8>, Zeroizing<Vec<u64>>)> = range
                    .clone()
                    .zip(parts.chunks(per))
                    .zip(seeds)
                    .collect::<Vec<_>>()
                    .into_par_iter()
                    .map(|((blk, cts), seed)| {
                        let mut rng = ChaCha20Rng::from_seed(seed);
                        let r = block_range(blk);
                        let ct_a = ciphertext(ctx, cts[0], 0)?;
                        let mut mask = Zeroizing::new(vec![0u64; r.len()]);
                        let out = if per == 2 {
                            let ct_b = ciphertext(ctx, cts[1], 0)?;
                            reply(
                                ctx,
                                pk,
                                &[(&ct_a, &b[r.clone()]), (&ct_b, &a[r.clone()])],
                                &mut mask,
                                Protection::FULL,
                                &mut rng,
                            )?
                        } else {
                            let twice: Zeroizing<Vec<u64>> = Zeroizing::new(
                                a[r.clone()].iter().map(|&x| field.add(x, x)).collect(),
                            );
                            reply(
                                ctx,
                                pk,
                                &[(&ct_a, &twice)],
                                &mut mask,
                                Protection::FULL,
                                &mut rng,
                            )?
                        };
                        Ok::<_, OpError>((to_bytes(&out), mask))
                    })
                    .collect::<Result<_, _>>()
                    .map_err(|e| lift(e, i))?;
                let mut replies = Vec::with_capacity(answers.len());
                for (blk, (bytes, mask)) in range.zip(answers) {
                    for (c, m) in shares.c[block_range(blk)].iter_mut().zip(mask.iter()) {
                        *c = field.add(*c, *m);
                    }
                    replies.push(bytes);
                }
                let msg = pack(&replies);
                sent += msg.len() as u64;
                channel.send(i, msg)?;
            }
        }
        // 3. Decrypt the answers to the previous group from every higher party.
        if grp > 0 {
            let prev = grp - 1;
            for &j in &higher {
                let msg = channel.recv(j)?;
                let range = group_blocks(prev);
                let parts = unpack(j, &msg, range.len())?;
                let level = ctx.reply_level();
                let plains: Vec<Zeroizing<Vec<u64>>> = range
                    .clone()
                    .zip(parts)
                    .collect::<Vec<_>>()
                    .into_par_iter()
                    .map(|(blk, bytes)| {
                        let ct: Ciphertext = ciphertext(ctx, bytes, level)?;
                        let mut out = Zeroizing::new(vec![0u64; block_range(blk).len()]);
                        decrypt(ctx, keys, &ct, &mut out)?;
                        Ok::<_, OpError>(out)
                    })
                    .collect::<Result<_, _>>()
                    .map_err(|e| lift(e, j))?;
                for (blk, plain) in range.zip(plains) {
                    for (c, v) in shares.c[block_range(blk)].iter_mut().zip(plain.iter()) {
                        *c = field.add(*c, *v);
                    }
                }
            }
        }
    }
    channel.flush()?;
    Ok(sent)
}
