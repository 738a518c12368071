//! Reconstruction of a checkout from every party's share files: for tests and demos only
//! (no single party should ever be able to combine every party's shares).

use super::{ConsortiumError, Result};
use crate::material::{PoolSpec, ShareReader};
use crate::math::Ring;
use crate::sharing::{additive_open, shamir_open};
use crate::with_ring;
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

/// What [`verify`] checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub pool: PoolSpec,
    pub checkout: String,
    pub items: u64,
    /// For bits: how many opened to 1 (a generator that made constant bits would still pass
    /// the item check; this lets a test see the balance).
    pub ones: u64,
}

/// Reconstructs a set of share files (one per party) and checks every item's correlation.
///
/// This combines every party's shares, which no single party should ever be able to do: it is
/// for tests and demos only.
///
/// # Errors
/// [`ConsortiumError::Verify`] naming the first inconsistency or failed item.
pub fn verify(files: &[PathBuf]) -> Result<VerifyReport> {
    let mut readers = files
        .iter()
        .map(|f| {
            let file = File::open(f)
                .map_err(|e| ConsortiumError::Io(format!("open {}: {e}", f.display())))?;
            ShareReader::new(BufReader::with_capacity(1 << 20, file))
                .map_err(|e| ConsortiumError::Verify(format!("{}: {e}", f.display())))
        })
        .collect::<Result<Vec<_>>>()?;
    let bad = |s: String| ConsortiumError::Verify(s);
    let first = readers
        .first()
        .ok_or_else(|| bad("no share files given".into()))?
        .header
        .clone();
    let n = first.parties as usize;
    if readers.len() != n {
        return Err(bad(format!(
            "the pool has {n} parties but {} files were given",
            readers.len()
        )));
    }
    // Each party's file exactly once, named by path when not.
    let mut by_party: Vec<Vec<&PathBuf>> = vec![Vec::new(); n];
    for (r, f) in readers.iter().zip(files) {
        if let Some(slot) = by_party.get_mut(r.header.party as usize) {
            slot.push(f);
        }
    }
    for (p, given) in by_party.iter().enumerate() {
        match given.len() {
            1 => {}
            0 => return Err(bad(format!("no file holds party {p}'s shares"))),
            _ => {
                let names: Vec<String> = given.iter().map(|f| f.display().to_string()).collect();
                return Err(bad(format!(
                    "party {p}'s shares are given more than once: {}",
                    names.join(", ")
                )));
            }
        }
    }
    for (r, f) in readers.iter().zip(files) {
        let h = &r.header;
        if h.pool != first.pool
            || h.checkout != first.checkout
            || h.ranges != first.ranges
            || h.parties != first.parties
        {
            return Err(bad(format!(
                "{} (party {}) does not belong to the same checkout as {} (party {})",
                f.display(),
                h.party,
                files[0].display(),
                first.party
            )));
        }
    }
    readers.sort_by_key(|r| r.header.party);
    let pool = first.pool;
    let ring = pool.domain.ring();
    let mut checked = 0u64;
    let mut ones = 0u64;
    const BLOCK: usize = 8192;
    loop {
        let blocks = readers
            .iter_mut()
            .map(|r| {
                r.next_records(BLOCK)
                    .map_err(|e| bad(format!("party {}: {e}", r.header.party)))
            })
            .collect::<Result<Vec<_>>>()?;
        if blocks.iter().all(Option::is_none) {
            break;
        }
        let blocks: Vec<Vec<u8>> = blocks
            .into_iter()
            .map(|b| b.ok_or_else(|| bad("a party's file ended early".into())))
            .collect::<Result<_>>()?;
        let (got, one) = with_ring!(ring, r => check_block(r, &pool, &blocks, checked))?;
        checked += got;
        ones += one;
    }
    Ok(VerifyReport {
        pool,
        checkout: first.checkout,
        items: checked,
        ones,
    })
}

/// Checks one block of records from every party; returns how many items it held, and how many
/// bits opened to 1.
fn check_block<R: Ring>(
    r: &R,
    pool: &PoolSpec,
    blocks: &[Vec<u8>],
    offset: u64,
) -> Result<(u64, u64)> {
    let mut ones = 0;
    use crate::material::Kind;
    let eb = r.elem_bytes();
    let n = blocks.len();
    let lens: Vec<usize> = (0..n).map(|p| pool.record_len(p as u8)).collect();
    let items = blocks[0].len() / (lens[0] * eb);
    let elem = |p: usize, item: usize, comp: usize| -> Result<R::Elem> {
        let at = (item * lens[p] + comp) * eb;
        blocks[p]
            .get(at..at + eb)
            .and_then(|b| r.decode(b))
            .ok_or_else(|| {
                ConsortiumError::Verify(format!(
                    "party {p}: item {} is missing or not canonical",
                    offset + item as u64
                ))
            })
    };
    // An element as its 64-bit word.
    // (Over a prime field, a daBit's XOR share: a canonical element below 2^64.)
    let word = |p: usize, item: usize, comp: usize| -> Result<u64> {
        u64::try_from(r.to_u128(elem(p, item, comp)?)).map_err(|_| {
            ConsortiumError::Verify(format!(
                "party {p}: item {}: an XOR share wider than 64 bits",
                offset + item as u64
            ))
        })
    };
    let open = |item: usize, comp: usize| -> Result<R::Elem> {
        let shares = (0..n)
            .map(|p| elem(p, item, comp))
            .collect::<Result<Vec<_>>>()?;
        Ok(additive_open(r, &shares))
    };
    for i in 0..items {
        let fail = |what: &str| {
            Err(ConsortiumError::Verify(format!(
                "item {}: {what}",
                offset + i as u64
            )))
        };
        match pool.kind {
            Kind::Triple => {
                if r.mul(open(i, 0)?, open(i, 1)?) != open(i, 2)? {
                    return fail("c != a * b");
                }
            }
            Kind::MatrixTriple | Kind::ConvTriple => {
                let Some(shape) = pool.shape else {
                    return fail("a matrix or convolution triple without a shape");
                };
                let [sa, sb, sc] = shape.sizes();
                let a = (0..sa).map(|x| open(i, x)).collect::<Result<Vec<_>>>()?;
                let b = (0..sb)
                    .map(|x| open(i, sa + x))
                    .collect::<Result<Vec<_>>>()?;
                let c = (0..sc)
                    .map(|x| open(i, sa + sb + x))
                    .collect::<Result<Vec<_>>>()?;
                if let Some(at) = first_difference(r, shape, &a, &b, &c) {
                    return fail(&at);
                }
            }
            Kind::Square => {
                let a = open(i, 0)?;
                if r.mul(a, a) != open(i, 1)? {
                    return fail("a^2 does not open to the square");
                }
            }
            Kind::Bit => {
                let b = open(i, 0)?;
                if b != r.zero() && b != r.one() {
                    return fail("the bit opens to neither 0 nor 1");
                }
                ones += u64::from(b == r.one());
            }
            Kind::Inverse => {
                if r.mul(open(i, 0)?, open(i, 1)?) != r.one() {
                    return fail("a * inverse != 1");
                }
            }
            Kind::InputMask => {
                let owner = pool.owner.unwrap_or(0) as usize;
                if open(i, 0)? != elem(owner, i, 1)? {
                    return fail("the owner's clear mask differs from the shared one");
                }
            }
            // Z_2^64 (validated): the shares as 64-bit words.
            Kind::Wrap => {
                let signed: Vec<i128> = (0..n)
                    .map(|p| Ok(i128::from(word(p, i, 0)? as i64)))
                    .collect::<Result<_>>()?;
                let total: i128 = signed.iter().sum();
                let r_signed = i128::from(total as u64 as i64);
                let theta = ((total - r_signed) >> 64) as i64 as u64;
                let opened = (0..n).try_fold(0u64, |acc, p| {
                    Ok::<_, ConsortiumError>(acc.wrapping_add(word(p, i, 1)?))
                })?;
                if opened != theta {
                    return fail("θ does not count the wrap-arounds of r's shares");
                }
            }
            Kind::BinaryTriple => {
                let x = |comp| {
                    (0..n).try_fold(0u64, |acc, p| {
                        Ok::<_, ConsortiumError>(acc ^ word(p, i, comp)?)
                    })
                };
                if x(0)? & x(1)? != x(2)? {
                    return fail("c != a AND b");
                }
            }
            Kind::Dabit => {
                let b = open(i, 0)?;
                let x = (0..n).try_fold(0u64, |acc, p| {
                    Ok::<_, ConsortiumError>(acc ^ word(p, i, 1)?)
                })?;
                let arith_one = b == r.one();
                if !(arith_one || b == r.zero()) || x != u64::from(arith_one) {
                    return fail("the arithmetic and XOR shares do not open to the same bit");
                }
                ones += u64::from(arith_one);
            }
            Kind::Double => {
                let t = pool.threshold.unwrap_or(1) as usize;
                let pts = |comp: usize| -> Result<Vec<(u64, R::Elem)>> {
                    (0..n)
                        .map(|p| Ok((p as u64 + 1, elem(p, i, comp)?)))
                        .collect()
                };
                let rt = shamir_open(r, &pts(0)?, t).map_err(|e| {
                    ConsortiumError::Verify(format!("item {}: [r]_t: {e}", offset + i as u64))
                })?;
                let r2t = shamir_open(r, &pts(1)?, 2 * t).map_err(|e| {
                    ConsortiumError::Verify(format!("item {}: [r]_2t: {e}", offset + i as u64))
                })?;
                if rt != r2t {
                    return fail("[r]_t and [r]_2t open to different values");
                }
            }
        }
    }
    Ok((items as u64, ones))
}

/// Where C differs from A·B, or Y from conv2d(X, W), if anywhere. Written apart from the
/// dealer's kernel: a matrix product by dot products of rows and columns, a convolution by
/// scattering every input element to the outputs it reaches.
fn first_difference<R: Ring>(
    r: &R,
    shape: crate::material::Shape,
    a: &[R::Elem],
    b: &[R::Elem],
    c: &[R::Elem],
) -> Option<String> {
    use crate::material::Shape;
    match shape {
        Shape::Matrix { m, k, n } => {
            let (m, k, n) = (m as usize, k as usize, n as usize);
            for row in 0..m {
                for col in 0..n {
                    let dot = (0..k).fold(r.zero(), |acc, l| {
                        r.add(acc, r.mul(a[row * k + l], b[l * n + col]))
                    });
                    if dot != c[row * n + col] {
                        return Some(format!("C[{row}][{col}] != (A·B)[{row}][{col}]"));
                    }
                }
            }
            None
        }
        Shape::Conv(g) => {
            let (oh, ow) = g.out()?;
            let u = |x: u16| x as usize;
            let (ch, h, w, o, kh, kw) = (u(g.c), u(g.h), u(g.w), u(g.o), u(g.kh), u(g.kw));
            let (oh, ow) = (oh as usize, ow as usize);
            let mut y = vec![r.zero(); c.len()];
            for img in 0..u(g.n) {
                for cc in 0..ch {
                    for row in 0..h {
                        for col in 0..w {
                            let x = a[((img * ch + cc) * h + row) * w + col];
                            // Output (i, j) reads input (i·sh + di − ph, j·sw + dj − pw).
                            for di in 0..kh {
                                let Some(t) = (row + u(g.ph)).checked_sub(di) else {
                                    continue;
                                };
                                if t % u(g.sh) != 0 || t / u(g.sh) >= oh {
                                    continue;
                                }
                                for dj in 0..kw {
                                    let Some(s) = (col + u(g.pw)).checked_sub(dj) else {
                                        continue;
                                    };
                                    if s % u(g.sw) != 0 || s / u(g.sw) >= ow {
                                        continue;
                                    }
                                    let (i, j) = (t / u(g.sh), s / u(g.sw));
                                    for oc in 0..o {
                                        let wv = b[((oc * ch + cc) * kh + di) * kw + dj];
                                        let at = ((img * o + oc) * oh + i) * ow + j;
                                        y[at] = r.add(y[at], r.mul(x, wv));
                                    }
                                }
                            }
                        }
                    }
                }
            }
            y.iter()
                .zip(c)
                .position(|(want, got)| want != got)
                .map(|at| format!("Y[{at}] != conv2d(X, W)[{at}] (NCHW order)"))
        }
    }
}
