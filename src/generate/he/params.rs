//! BFV parameters for the HE generator, and the checks that refuse unsafe ones: 128-bit
//! security by the HomomorphicEncryption.org tables, a plaintext modulus that batches and sits
//! below every ciphertext modulus, and a noise budget with room for the flooding noise at the
//! top level and after the reply is switched down. The argument is in `docs/he.md`.

use fhe::bfv::{BfvParameters, BfvParametersBuilder};
use num_bigint::BigUint;
use std::sync::Arc;

/// The error variance fhe.rs samples with (a centred binomial of variance 10, so every
/// coefficient of an error or of the secret lies in [-20, 20]).
pub const VARIANCE: usize = 10;
/// The largest coefficient of a centred binomial sample of variance [`VARIANCE`]: 2 x 10.
pub const BETA: u64 = 2 * VARIANCE as u64;
/// Bits of statistical distance the flooding noise buys over the noise it hides.
pub const FLOOD_MARGIN_BITS: u32 = 40;

/// The largest log2 q at each degree for 128-bit classical security with a ternary secret and
/// error of standard deviation 3.2 (HomomorphicEncryption.org security standard, 2018, table
/// of Section 5.4; SEAL uses the same). fhe.rs's secret is a centred binomial of variance 10,
/// wider than ternary, which can only make the lattice problem harder.
pub const MAX_LOG_Q_128: [(usize, u32); 6] = [
    (1024, 27),
    (2048, 54),
    (4096, 109),
    (8192, 218),
    (16384, 438),
    (32768, 881),
];

/// What a consortium configures (or Larder picks) for one plaintext prime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeParams {
    /// Ring degree N: slots per ciphertext.
    pub degree: usize,
    /// The plaintext modulus t: the pool's prime.
    pub plaintext: u64,
    /// Bit sizes of the ciphertext moduli (fhe.rs picks primes of these sizes, 1 mod 2N).
    pub moduli_bits: Vec<usize>,
    /// How many moduli a reply keeps after it is switched down (fewer bytes on the wire).
    pub reply_moduli: usize,
}

impl HeParams {
    /// Larder's choice for a prime t: N = 8192, three 62-bit moduli (log q = 186, below the
    /// 218 the standard allows), replies switched down to two (log q' = 124).
    pub fn for_prime(t: u64) -> Self {
        HeParams {
            degree: 8192,
            plaintext: t,
            moduli_bits: vec![62, 62, 62],
            reply_moduli: 2,
        }
    }
}

/// Why parameters were refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParamsError {
    #[error("ring degree {0} is not a power of two from 1024 to 32768")]
    Degree(usize),
    #[error("plaintext modulus {0} is not a prime below 2^62")]
    NotPrime(u64),
    #[error("plaintext modulus {t} is not 1 mod 2N = {two_n}: BFV cannot batch over it")]
    NoBatching { t: u64, two_n: u64 },
    #[error("ciphertext modulus {q} is not above the plaintext modulus {t}: decryption would silently return garbage")]
    ModulusBelowPlaintext { q: u64, t: u64 },
    #[error("plaintext modulus {t} is too large for the first ciphertext modulus {q0}: fhe 0.1.1 decrypts correctly only when t + (t - 1) / 2 < q0 (about 2 q0 / 3)")]
    PlaintextTooLarge { t: u64, q0: u64 },
    #[error("log2 q = {log_q:.1} exceeds {max} at N = {degree}: below 128-bit security (HomomorphicEncryption.org tables)")]
    Insecure { log_q: f64, max: u32, degree: usize },
    #[error("a reply keeps {keep} of {moduli} moduli: it must keep at least one and at most all")]
    ReplyModuli { keep: usize, moduli: usize },
    #[error("no room for the flooding noise: {what} needs {need:.1} bits of noise budget, has {have:.1}")]
    NoRoom {
        what: &'static str,
        need: f64,
        have: f64,
    },
    #[error("fhe.rs refused the parameters: {0}")]
    Fhe(String),
}

/// The noise budget of checked parameters, in bits (worst-case bounds, no probabilities).
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseBudget {
    /// log2 of the ciphertext modulus q (all moduli).
    pub log_q: f64,
    /// log2 of the reply's modulus q' (after switching down).
    pub log_q_reply: f64,
    /// The most log2 q the security standard allows at this degree.
    pub max_log_q: u32,
    /// Bits of the bound on the noise of a reply before flooding (what the flood hides).
    pub hidden_bits: u32,
    /// Flooding noise is uniform on [-2^flood_bits, 2^flood_bits).
    pub flood_bits: u32,
    /// Bits to spare at the top level: log2(q / 2t) - log2(noise bound).
    pub top_room_bits: f64,
    /// Bits to spare in the reply after switching down.
    pub reply_room_bits: f64,
}

/// Checked parameters, ready to use.
#[derive(Clone)]
pub struct HeContext {
    pub(super) bfv: Arc<BfvParameters>,
    pub(super) spec: HeParams,
    pub(super) budget: NoiseBudget,
}

impl std::fmt::Debug for HeContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeContext")
            .field("spec", &self.spec)
            .field("budget", &self.budget)
            .finish()
    }
}

fn log2(x: &BigUint) -> f64 {
    let bits = x.bits();
    if bits <= 64 {
        return (x.iter_u64_digits().next().unwrap_or(0) as f64).log2();
    }
    let shift = bits - 53;
    let top: BigUint = x >> shift;
    (top.iter_u64_digits().next().unwrap_or(0) as f64).log2() + shift as f64
}

impl HeContext {
    /// Checks `spec` and builds fhe.rs's parameters.
    ///
    /// # Errors
    /// [`ParamsError`] naming the first check that failed.
    pub fn new(spec: &HeParams) -> Result<Self, ParamsError> {
        let n = spec.degree;
        let Some(&(_, max_log_q)) = MAX_LOG_Q_128.iter().find(|(d, _)| *d == n) else {
            return Err(ParamsError::Degree(n));
        };
        let t = spec.plaintext;
        if t >= 1 << 62 || !crate::math::is_prime(t as u128) {
            return Err(ParamsError::NotPrime(t));
        }
        let two_n = 2 * n as u64;
        if t % two_n != 1 {
            return Err(ParamsError::NoBatching { t, two_n });
        }
        if spec.reply_moduli == 0 || spec.reply_moduli > spec.moduli_bits.len() {
            return Err(ParamsError::ReplyModuli {
                keep: spec.reply_moduli,
                moduli: spec.moduli_bits.len(),
            });
        }
        let bfv = BfvParametersBuilder::new()
            .set_degree(n)
            .set_plaintext_modulus(t)
            .set_moduli_sizes(&spec.moduli_bits)
            .set_variance(VARIANCE)
            .build_arc()
            .map_err(|e| ParamsError::Fhe(e.to_string()))?;
        let moduli = bfv.moduli();
        if let Some(&q) = moduli.iter().find(|&&q| q <= t) {
            return Err(ParamsError::ModulusBelowPlaintext { q, t });
        }
        // fhe 0.1.1 decrypts into the first modulus's context: the scaled phase d, centred in
        // [-(t-1)/2, (t-1)/2], is stored mod q0, then (d + t) mod q0 mod t is taken, which is
        // wrong whenever d + t >= q0. So t + (t-1)/2 must stay below q0 (found in review;
        // `tests/he.rs` shows the garbage just above this bound).
        if t as u128 + (t as u128 - 1) / 2 >= moduli[0] as u128 {
            return Err(ParamsError::PlaintextTooLarge { t, q0: moduli[0] });
        }
        let q: BigUint = moduli.iter().map(|&m| BigUint::from(m)).product();
        let q_reply: BigUint = moduli[..spec.reply_moduli]
            .iter()
            .map(|&m| BigUint::from(m))
            .product();
        let log_q = log2(&q);
        if log_q > max_log_q as f64 {
            return Err(ParamsError::Insecure {
                log_q,
                max: max_log_q,
                degree: n,
            });
        }
        let budget = Self::noise_budget(n as u64, t, &q, &q_reply, max_log_q)?;
        Ok(HeContext {
            bfv,
            spec: spec.clone(),
            budget,
        })
    }

    /// The worst-case noise analysis of `docs/he.md`, section "Noise budget".
    fn noise_budget(
        n: u64,
        t: u64,
        q: &BigUint,
        q_reply: &BigUint,
        max_log_q: u32,
    ) -> Result<NoiseBudget, ParamsError> {
        let big = BigUint::from;
        // A fresh secret-key encryption of m: c0 + c1 s = q m / t + v with |v| <= beta + 1.
        // Times a plaintext polynomial p with coefficients in [0, t): |v p| <= N (beta + 1) t.
        // Two such products (a triple's cross terms), plus a fresh public-key encryption of -r
        // (|u e + e1 + e2 s| + 1 <= 2 N beta^2 + beta + 1).
        let products = big(2) * big(n) * big(BETA + 1) * big(t);
        let fresh = big(2) * big(n) * big(BETA * BETA) + big(BETA + 1);
        let hidden = products + fresh;
        let hidden_bits = hidden.bits() as u32;
        let flood_bits = hidden_bits + FLOOD_MARGIN_BITS;
        let flood = big(1) << flood_bits;
        // Top level: everything below q / (2t).
        let top_noise = &flood + &hidden;
        let top_limit = q / (big(2) * big(t));
        let top_room_bits = log2(&top_limit) - log2(&top_noise);
        if top_noise >= top_limit {
            return Err(ParamsError::NoRoom {
                what: "the flooded reply at the top level",
                need: log2(&top_noise),
                have: log2(&top_limit),
            });
        }
        // Switched down to q': noise (q'/q) v plus rounding, at most 1/2 + N beta / 2 (counted
        // as 1 + N beta); below q' / (2t).
        let scaled = (&top_noise * q_reply) / q + big(1);
        let reply_noise = scaled + big(1) + big(n) * big(BETA);
        let reply_limit = q_reply / (big(2) * big(t));
        let reply_room_bits = log2(&reply_limit) - log2(&reply_noise);
        if reply_noise >= reply_limit {
            return Err(ParamsError::NoRoom {
                what: "the reply switched down",
                need: log2(&reply_noise),
                have: log2(&reply_limit),
            });
        }
        Ok(NoiseBudget {
            log_q: log2(q),
            log_q_reply: log2(q_reply),
            max_log_q,
            hidden_bits,
            flood_bits,
            top_room_bits,
            reply_room_bits,
        })
    }

    /// Slots per ciphertext (the ring degree).
    pub fn slots(&self) -> usize {
        self.spec.degree
    }

    /// The plaintext modulus.
    pub fn plaintext(&self) -> u64 {
        self.spec.plaintext
    }

    /// The parameters as configured.
    pub fn spec(&self) -> &HeParams {
        &self.spec
    }

    /// The noise budget.
    pub fn budget(&self) -> &NoiseBudget {
        &self.budget
    }

    /// fhe.rs's parameters.
    pub fn bfv(&self) -> &Arc<BfvParameters> {
        &self.bfv
    }

    /// The level a reply is switched down to.
    pub fn reply_level(&self) -> usize {
        self.spec.moduli_bits.len() - self.spec.reply_moduli
    }
}
