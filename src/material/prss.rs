//! Batches the PRSS generator made ([`Maker::Prss`](super::Maker::Prss)): what they hold and how
//! a party's records come back from them.
//!
//! A PRSS batch file stores, per chunk, the keys this party derived for that chunk from its
//! epoch keys (`PartyKeys::derive`: one 32-byte key per key set it belongs to, in set order)
//! instead of a seed, then the explicit elements, then the checksum. Everything else is
//! recomputed from those keys on download, as a dealer's seeded elements are: no dealer, and
//! almost nothing stored.
//!
//! | pool | derived | explicit |
//! |---|---|---|
//! | `triple-z64`, three parties | a, b, c (replicated components, local cross terms and a zero sharing) | none |
//! | `square-z64`, three parties | a, a^2 likewise | none |
//! | `triple-<prime>`, n parties | λ·a, λ·b (PRSS, then the party's Lagrange weight λ) | λ·c, from one opening to a king (DN07) |
//! | `square-<prime>`, n parties | λ·a | λ·c likewise |
//! | `bit-<prime>`, n parties | none | λ·b, from one opening of r^2 (b = (r/√(r^2) + 1)/2) |
//! | `input-mask-<prime>-o<o>`, n parties | λ·r | at the owner only: r, from the shares of the t parties after it |
//! | `double-<prime>-t<t>`, t = floor((n-1)/2) | [r]_t, [r]_2t (PRSS and a degree-2t zero sharing) | none |
//!
//! Prime-field triples and squares are made as degree-t Shamir sharings and stored as additive
//! shares (each party's share times its Lagrange weight at 0 over all n points), the sharing
//! every other generator's triple pools have; double sharings stay Shamir shares at x = i + 1.

use super::{FormatError, Kind, PoolSpec, Source};
use crate::math::{Domain, Ring};
use crate::sharing::prss::{self, label, PartyKeys, PrssError, MAX_PARTIES};

/// The label of a (the random values of triples and squares) within a chunk.
pub const LABEL_A: [u8; 32] = label(1);
/// The label of b.
pub const LABEL_B: [u8; 32] = label(2);
/// The label of the double sharing that reduces a product (DN07) or that a double pool serves.
pub const LABEL_R: [u8; 32] = label(3);

/// Why the PRSS generator cannot make `pool` for a consortium of `parties` (`None`: it can).
pub fn refusal(pool: &PoolSpec, parties: u8) -> Option<String> {
    if !(3..=MAX_PARTIES).contains(&parties) {
        return Some(format!(
            "PRSS needs 3 to {MAX_PARTIES} parties (an honest majority of at least three), not {parties}"
        ));
    }
    let t = prss::threshold(parties);
    if let Some(p) = pool.domain.modulus() {
        if p <= parties as u128 {
            return Some(format!(
                "the field must have more elements than parties (p = {p}, parties = {parties})"
            ));
        }
    }
    if pool.kind == Kind::Bit && pool.domain.modulus().is_some_and(|p| p < 1 << 40) {
        // A zero r (probability 1/p per bit) gives its batch up: too often in a small field.
        return Some(format!(
            "PRSS makes bits in fields of at least 2^40 elements, not {pool}"
        ));
    }
    match (pool.kind, pool.domain) {
        (Kind::Triple | Kind::Square, Domain::Z64) if parties == 3 => None,
        (Kind::Triple | Kind::Square, Domain::Z64) => Some(format!(
            "PRSS makes {}-z64 for three parties only (with no traffic); for {parties} parties \
             use a prime field",
            pool.kind
        )),
        (Kind::Triple | Kind::Square | Kind::Bit | Kind::InputMask, d) if d.is_field() => None,
        (Kind::Double, d) if d.is_field() && pool.threshold == Some(t) => None,
        (Kind::Double, _) => Some(format!(
            "PRSS makes double sharings at t = {t} for {parties} parties, not {pool}"
        )),
        _ => Some(format!(
            "PRSS makes triples and squares (z64 for three parties, prime fields for any), bits \
             and input masks (prime fields) and double sharings, not {pool}"
        )),
    }
}

/// Party `party`'s record layout in a PRSS batch: derived elements count as seeded.
pub fn layout(pool: &PoolSpec, party: u8) -> Vec<Source> {
    use Source::*;
    match (pool.kind, pool.domain.is_field()) {
        (Kind::InputMask, true) if pool.owner == Some(party) => vec![Seeded, Explicit],
        (Kind::InputMask, true) => vec![Seeded],
        (Kind::Triple, false) => vec![Seeded, Seeded, Seeded],
        (Kind::Square, false) | (Kind::Double, _) => vec![Seeded, Seeded],
        (Kind::Triple, true) => vec![Seeded, Seeded, Explicit],
        (Kind::Square, true) => vec![Seeded, Explicit],
        (Kind::Bit, true) => vec![Explicit],
        // Refused by the header check (`refusal`); laid out as explicit, never expanded.
        _ => vec![Explicit; pool.record_len(0)],
    }
}

fn format_error(e: PrssError) -> FormatError {
    FormatError::Invalid {
        what: "PRSS chunk",
        why: e.to_string(),
    }
}

/// The derived columns of a whole chunk of `len` items, in layout order (see the module
/// documentation).
///
/// # Errors
/// [`PrssError`] for a pool PRSS does not make.
pub fn derived<R: Ring>(
    ring: &R,
    pool: &PoolSpec,
    keys: &PartyKeys,
    len: usize,
) -> Result<Vec<Vec<R::Elem>>, PrssError> {
    let column = || vec![ring.zero(); len];
    match (pool.kind, pool.domain) {
        (Kind::Triple | Kind::Square, Domain::Z64) => {
            let (mut a, mut b, mut c) = (vec![0u64; len], vec![0u64; len], vec![0u64; len]);
            let mut cols = Vec::new();
            if pool.kind == Kind::Triple {
                keys.z64_triples(&LABEL_A, &mut a, &mut b, &mut c)?;
                cols.extend([&a, &b, &c]);
            } else {
                keys.z64_squares(&LABEL_A, &mut a, &mut c)?;
                cols.extend([&a, &c]);
            }
            let out = cols
                .iter()
                .map(|col| col.iter().map(|&x| ring.reduce(x as u128)).collect())
                .collect();
            for v in [&mut a, &mut b, &mut c] {
                zeroize::Zeroize::zeroize(v);
            }
            Ok(out)
        }
        // Every element stored (see `generate::prss`).
        (Kind::Bit, _) => Ok(Vec::new()),
        (Kind::Double, _) => {
            let (mut rt, mut r2t) = (column(), column());
            keys.double_shares(ring, &LABEL_R, &mut rt, &mut r2t)?;
            Ok(vec![rt, r2t])
        }
        (Kind::Triple | Kind::Square | Kind::InputMask, _) => {
            let w = keys.additive_weight(ring)?;
            let labels: &[[u8; 32]] = if pool.kind == Kind::InputMask {
                &[LABEL_A]
            } else if pool.kind == Kind::Triple {
                &[LABEL_A, LABEL_B]
            } else {
                &[LABEL_A]
            };
            labels
                .iter()
                .map(|l| {
                    let mut col = column();
                    keys.random_shares(ring, l, &mut col)?;
                    col.iter_mut().for_each(|x| *x = ring.mul(*x, w));
                    Ok(col)
                })
                .collect()
        }
        _ => Err(PrssError::Unsupported(pool.to_string())),
    }
}

/// Expands the `wanted` items of a PRSS chunk of `chunk_len` items, from its key area and
/// explicit elements, into encoded records appended to `out`.
///
/// # Errors
/// [`FormatError::Invalid`] for a wrong key area, or explicit elements missing or out of range.
#[allow(clippy::too_many_arguments)]
pub fn expand_chunk<R: Ring>(
    ring: &R,
    pool: &PoolSpec,
    (parties, threshold, party): (u8, u8, u8),
    key_area: &[u8],
    explicit: &[u8],
    chunk_len: usize,
    wanted: std::ops::Range<usize>,
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    let keys = PartyKeys::from_bytes(parties, threshold, party, key_area).map_err(format_error)?;
    let layout = layout(pool, party);
    let eb = ring.elem_bytes();
    let per_explicit = layout.iter().filter(|s| **s == Source::Explicit).count();
    if wanted.end > chunk_len || explicit.len() != chunk_len * per_explicit * eb {
        return Err(FormatError::Invalid {
            what: "PRSS chunk",
            why: "item range or explicit elements do not fit the chunk".into(),
        });
    }
    let mut cols = derived(ring, pool, &keys, chunk_len).map_err(format_error)?;
    let record = layout.len() * eb;
    let start = out.len();
    out.resize(start + wanted.len() * record, 0);
    let mut result = Ok(());
    'items: for (j, rec) in wanted.zip(out[start..].chunks_exact_mut(record)) {
        let (mut d, mut e) = (0, j * per_explicit);
        for (src, cell) in layout.iter().zip(rec.chunks_exact_mut(eb)) {
            match src {
                Source::Seeded => {
                    ring.encode(cols[d][j], cell);
                    d += 1;
                }
                Source::Explicit => {
                    let bytes = &explicit[e * eb..(e + 1) * eb];
                    if ring.decode(bytes).is_none() {
                        result = Err(FormatError::Invalid {
                            what: "PRSS chunk",
                            why: "explicit element out of range".into(),
                        });
                        break 'items;
                    }
                    cell.copy_from_slice(bytes);
                    e += 1;
                }
            }
        }
    }
    for col in &mut cols {
        col.iter_mut().for_each(|x| *x = R::Elem::default());
    }
    if result.is_err() {
        out.truncate(start);
    }
    result
}
