//! The trusted dealer: ChaCha from an OS seed, seed compression, parallel over chunks.
//!
//! For every chunk of a batch, the dealer draws a fresh 32-byte seed per party from its master
//! ChaCha20 stream (plus one dealer-only seed that is never stored). Every party's seeded
//! elements come from its chunk seed; the dealer expands all of them, and the correction party
//! alone stores what cannot be random (a triple's c share, a bit's last share, ...). Chunks
//! are independent, so the output for a given master seed is the same whatever rayon's thread
//! count.
//!
//! # Security
//! The dealer sees every share; it is trusted not to collude with any party (see README).

use super::{BatchPlan, GenerateError, Generator, PartyBatch};
use crate::material::batch::SEED_BYTES;
use crate::material::{double_share_is_seeded, BatchHeader, BatchId, Kind, Seed, Shape, Source};
use crate::math::Ring;
use crate::sharing::lagrange_coefficients;
use crate::with_ring;
use rand::{RngCore, SeedableRng};
use rand_chacha::{ChaCha12Rng, ChaCha20Rng};
use rayon::prelude::*;
use zeroize::Zeroizing;

/// The dealer, a [`Generator`].
pub struct Dealer {
    master: ChaCha20Rng,
}

impl std::fmt::Debug for Dealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dealer(..)")
    }
}

impl Dealer {
    /// A dealer seeded from the operating system.
    pub fn from_os_rng() -> Self {
        Dealer {
            master: ChaCha20Rng::from_os_rng(),
        }
    }

    /// A reproducible dealer, for tests and benchmarks only.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Dealer {
            master: ChaCha20Rng::from_seed(seed),
        }
    }

    fn draw_seed(&mut self) -> Seed {
        let mut s = Seed([0; SEED_BYTES]);
        self.master.fill_bytes(&mut s.0);
        s
    }
}

impl Generator for Dealer {
    fn name(&self) -> &'static str {
        "dealer"
    }

    fn next_batch_id(&mut self) -> BatchId {
        let mut b = [0u8; 16];
        self.master.fill_bytes(&mut b);
        BatchId(b)
    }

    fn generate(&mut self, plan: &BatchPlan) -> Result<Vec<PartyBatch>, GenerateError> {
        plan.pool.validate(plan.parties)?;
        let n = plan.parties as usize;
        if plan.pool.kind == Kind::InputMask && plan.pool.owner == Some(plan.correction) {
            return Err(GenerateError::Plan(
                "an input mask's owner cannot be its correction party".into(),
            ));
        }
        if plan.items == 0 || plan.correction >= plan.parties {
            return Err(GenerateError::Plan(
                "items must be positive and the correction party a member".into(),
            ));
        }
        let headers: Vec<BatchHeader> = (0..plan.parties)
            .map(|party| BatchHeader {
                pool: plan.pool,
                parties: plan.parties,
                party,
                correction: plan.correction,
                batch: plan.batch,
                items: plan.items,
                chunk_items: plan.pool.chunk_items(),
                maker: crate::material::Maker::Dealer,
                epoch: None,
            })
            .collect();
        let chunks = headers[0].chunks() as usize;
        // Seeds in a fixed order from the master stream: per chunk, each party's then the dealer's.
        let seeds: Vec<Vec<Seed>> = (0..chunks)
            .map(|_| (0..=n).map(|_| self.draw_seed()).collect())
            .collect();

        let mut files: Vec<Zeroizing<Vec<u8>>> = headers
            .iter()
            .map(|h| {
                let mut v = Zeroizing::new(vec![0u8; h.file_len() as usize]);
                let head = h.encode();
                v[..head.len()].copy_from_slice(&head);
                v
            })
            .collect();
        let mut per_chunk: Vec<Vec<&mut [u8]>> =
            (0..chunks).map(|_| Vec::with_capacity(n)).collect();
        for (h, file) in headers.iter().zip(files.iter_mut()) {
            let mut rest = &mut file[h.header_len()..];
            for (c, slot) in per_chunk.iter_mut().enumerate() {
                let (this, tail) = rest.split_at_mut(h.chunk_bytes(c as u64));
                slot.push(this);
                rest = tail;
            }
        }
        let layouts: Vec<Vec<Source>> = headers.iter().map(|h| h.layout()).collect();
        let ring = plan.pool.domain.ring();
        with_ring!(ring, r => {
            let kernel = Kernel::new(r, plan, &layouts)?;
            per_chunk
                .into_par_iter()
                .zip(seeds.par_iter())
                .enumerate()
                .for_each(|(c, (mut slices, seeds))| {
                    let items = headers[0].chunk_len(c as u64) as usize;
                    kernel.fill_chunk(seeds, items, &mut slices);
                });
        });
        Ok(headers
            .into_iter()
            .zip(files)
            .map(|(header, bytes)| PartyBatch { header, bytes })
            .collect())
    }
}

/// Per-batch constants for filling chunks of one pool.
struct Kernel<'a, R: Ring> {
    ring: &'a R,
    plan: &'a BatchPlan,
    /// For double sharings: Lagrange coefficients to each explicit party's point, per degree.
    double: Option<[DoubleDegree<R>; 2]>,
    explicit_per_item: Vec<usize>,
    seeded_per_item: Vec<usize>,
}

/// How one degree of a double sharing is completed from its seeded shares.
struct DoubleDegree<R: Ring> {
    /// Parties whose share at this degree is seeded.
    seeded: Vec<bool>,
    /// For each party with an explicit share: its index and the coefficients over
    /// (secret, seeded shares in party order).
    explicit: Vec<(usize, Vec<R::Elem>)>,
}

impl<'a, R: Ring> Kernel<'a, R> {
    fn new(
        ring: &'a R,
        plan: &'a BatchPlan,
        layouts: &[Vec<Source>],
    ) -> Result<Self, GenerateError> {
        let n = plan.parties;
        let double = if plan.pool.kind == Kind::Double {
            let t = plan.pool.threshold.unwrap_or(1);
            let degree = |d: u8| -> Result<DoubleDegree<R>, GenerateError> {
                let seeded: Vec<bool> = (0..n)
                    .map(|p| double_share_is_seeded(n, plan.correction, p, d))
                    .collect();
                let xs: Vec<u64> = std::iter::once(0)
                    .chain((0..n).filter(|&p| seeded[p as usize]).map(|p| p as u64 + 1))
                    .collect();
                let explicit = (0..n)
                    .filter(|&p| !seeded[p as usize])
                    .map(|p| {
                        lagrange_coefficients(ring, &xs, p as u64 + 1)
                            .map(|c| (p as usize, c))
                            .map_err(|e| GenerateError::Plan(e.to_string()))
                    })
                    .collect::<Result<_, _>>()?;
                Ok(DoubleDegree { seeded, explicit })
            };
            Some([degree(t)?, degree(2 * t)?])
        } else {
            None
        };
        Ok(Kernel {
            ring,
            plan,
            double,
            explicit_per_item: layouts
                .iter()
                .map(|l| l.iter().filter(|s| **s == Source::Explicit).count())
                .collect(),
            seeded_per_item: layouts
                .iter()
                .map(|l| l.iter().filter(|s| **s == Source::Seeded).count())
                .collect(),
        })
    }

    /// Fills one chunk of every party's file: seed, explicit elements, checksum.
    fn fill_chunk(&self, seeds: &[Seed], items: usize, slices: &mut [&mut [u8]]) {
        let n = self.plan.parties as usize;
        // Every party's seeded elements for the whole chunk, drawn in record order; the party
        // redraws exactly these from its seed when it expands the chunk.
        let seeded: Vec<Seeded<R>> = (0..n)
            .map(|p| Seeded::draw(self.ring, &seeds[p], items, self.seeded_per_item[p]))
            .collect();
        let mut dealer = seeds[n].rng();
        for (p, slice) in slices.iter_mut().enumerate() {
            slice[..SEED_BYTES].copy_from_slice(&seeds[p].0);
        }
        {
            let mut out: Vec<&mut [u8]> = slices
                .iter_mut()
                .map(|s| {
                    let len = s.len();
                    &mut s[SEED_BYTES..len - 4]
                })
                .collect();
            self.fill_items(&seeded, &mut dealer, items, &mut out);
        }
        for slice in slices.iter_mut() {
            let len = slice.len();
            let crc = crc32fast::hash(&slice[..len - 4]);
            slice[len - 4..].copy_from_slice(&crc.to_le_bytes());
        }
    }

    /// The kind-specific part: combines the seeded elements and writes the corrections.
    fn fill_items(
        &self,
        s: &[Seeded<R>],
        dealer: &mut ChaCha12Rng,
        items: usize,
        out: &mut [&mut [u8]],
    ) {
        let r = self.ring;
        let n = s.len();
        let k = self.plan.correction as usize;
        let eb = r.elem_bytes();
        let put = |out: &mut [&mut [u8]], p: usize, slot: usize, e: R::Elem| {
            r.encode(e, &mut out[p][slot * eb..(slot + 1) * eb]);
        };
        // Sum over parties of seeded element `idx` of item `j`, skipping party `skip`.
        let sum = |j: usize, idx: usize, skip: usize| {
            (0..n)
                .filter(|&p| p != skip)
                .fold(r.zero(), |acc, p| r.add(acc, s[p].get(j, idx)))
        };
        match self.plan.pool.kind {
            Kind::Triple => {
                for j in 0..items {
                    let (a, b) = (sum(j, 0, n), sum(j, 1, n));
                    put(out, k, j, r.sub(r.mul(a, b), sum(j, 2, k)));
                }
            }
            Kind::Square => {
                for j in 0..items {
                    let a = sum(j, 0, n);
                    put(out, k, j, r.sub(r.mul(a, a), sum(j, 1, k)));
                }
            }
            Kind::Bit => {
                for j in 0..items {
                    let bit = if dealer.next_u32() & 1 == 1 {
                        r.one()
                    } else {
                        r.zero()
                    };
                    put(out, k, j, r.sub(bit, sum(j, 0, k)));
                }
            }
            Kind::Inverse => {
                for j in 0..items {
                    let a = loop {
                        let a = r.sample(dealer);
                        if a != r.zero() {
                            break a;
                        }
                    };
                    let inv = r.inv(a).expect("nonzero element of a prime field");
                    put(out, k, 2 * j, r.sub(a, sum(j, 0, k)));
                    put(out, k, 2 * j + 1, r.sub(inv, sum(j, 1, k)));
                }
            }
            Kind::InputMask => {
                let owner = self
                    .plan
                    .pool
                    .owner
                    .expect("validated input-mask pool has an owner")
                    as usize;
                for j in 0..items {
                    // The owner's record is (its share, the mask in clear).
                    put(out, k, j, r.sub(s[owner].get(j, 1), sum(j, 0, k)));
                }
            }
            // Z_2^64 only (validated): elements are 64-bit words.
            Kind::Wrap => {
                let word = |e: R::Elem| word_of(r, e);
                for j in 0..items {
                    // The shares of r as signed integers, summed without wrapping.
                    let total: i128 = (0..n)
                        .map(|p| i128::from(word(s[p].get(j, 0)) as i64))
                        .sum();
                    let r_signed = i128::from(total as u64 as i64);
                    let theta = ((total - r_signed) >> 64) as i64 as u64;
                    put(out, k, j, r.sub(elem_of(r, theta), sum(j, 1, k)));
                }
            }
            Kind::BinaryTriple => {
                let word = |e: R::Elem| word_of(r, e);
                let xor = |j: usize, idx: usize, skip: usize| {
                    (0..n)
                        .filter(|&p| p != skip)
                        .fold(0u64, |acc, p| acc ^ word(s[p].get(j, idx)))
                };
                for j in 0..items {
                    let c = xor(j, 0, n) & xor(j, 1, n);
                    put(out, k, j, elem_of(r, c ^ xor(j, 2, k)));
                }
            }
            Kind::Dabit if self.plan.pool.domain.is_field() => {
                // XOR shares are words of one bit fewer than p has (at most 64), so that any
                // XOR of them is an element below p; each party's is explicit.
                let bits = self
                    .plan
                    .pool
                    .domain
                    .modulus()
                    .map_or(64, |p| 127 - p.leading_zeros());
                let mask = if bits >= 64 {
                    u64::MAX
                } else {
                    (1u64 << bits) - 1
                };
                for j in 0..items {
                    let bit = u64::from(dealer.next_u32() & 1);
                    let mut xor = 0u64;
                    for p in (0..n).filter(|&p| p != k) {
                        let w = dealer.next_u64() & mask;
                        xor ^= w;
                        put(out, p, j, r.reduce(u128::from(w)));
                    }
                    put(
                        out,
                        k,
                        2 * j,
                        r.sub(r.reduce(u128::from(bit)), sum(j, 0, k)),
                    );
                    put(out, k, 2 * j + 1, r.reduce(u128::from(bit ^ xor)));
                }
            }
            Kind::Dabit => {
                let word = |e: R::Elem| word_of(r, e);
                for j in 0..items {
                    let bit = u64::from(dealer.next_u32() & 1);
                    let xor = (0..n)
                        .filter(|&p| p != k)
                        .fold(0u64, |acc, p| acc ^ word(s[p].get(j, 1)));
                    put(out, k, 2 * j, r.sub(elem_of(r, bit), sum(j, 0, k)));
                    put(out, k, 2 * j + 1, elem_of(r, bit ^ xor));
                }
            }
            Kind::MatrixTriple | Kind::ConvTriple => {
                let shape = self
                    .plan
                    .pool
                    .shape
                    .expect("validated matrix- and conv-triple pools have a shape");
                let [sa, sb, sc] = shape.sizes();
                let mut a = vec![r.zero(); sa];
                let mut b = vec![r.zero(); sb];
                let mut c = vec![r.zero(); sc];
                for j in 0..items {
                    for (i, x) in a.iter_mut().enumerate() {
                        *x = sum(j, i, n);
                    }
                    for (i, x) in b.iter_mut().enumerate() {
                        *x = sum(j, sa + i, n);
                    }
                    product(r, shape, &a, &b, &mut c);
                    for (i, &v) in c.iter().enumerate() {
                        put(out, k, j * sc + i, r.sub(v, sum(j, sa + sb + i, k)));
                    }
                }
                // The opened tensors are secrets: overwritten before they are freed.
                for v in [&mut a, &mut b, &mut c] {
                    v.iter_mut().for_each(|e| *e = R::Elem::default());
                    std::hint::black_box(&v);
                }
            }
            Kind::Double => {
                let [dt, d2t] = self
                    .double
                    .as_ref()
                    .expect("double kernel has its coefficients");
                let mut ys: [Vec<R::Elem>; 2] =
                    [Vec::with_capacity(n + 1), Vec::with_capacity(n + 1)];
                for j in 0..items {
                    let secret = r.sample(dealer);
                    for y in ys.iter_mut() {
                        y.clear();
                        y.push(secret);
                    }
                    for (p, sp) in s.iter().enumerate() {
                        // A seeded degree-t share implies a seeded degree-2t share after it.
                        if dt.seeded[p] {
                            ys[0].push(sp.get(j, 0));
                        }
                        if d2t.seeded[p] {
                            ys[1].push(sp.get(j, dt.seeded[p] as usize));
                        }
                    }
                    for (deg, (d, y)) in [dt, d2t].into_iter().zip(ys.iter()).enumerate() {
                        for (p, coeffs) in &d.explicit {
                            let share = coeffs
                                .iter()
                                .zip(y)
                                .fold(r.zero(), |acc, (&c, &v)| r.add(acc, r.mul(c, v)));
                            // Slot within party p's explicit elements: degree-t first if explicit.
                            let per = self.explicit_per_item[*p];
                            let slot = j * per + if deg == 1 && per == 2 { 1 } else { 0 };
                            put(out, *p, slot, share);
                        }
                    }
                }
            }
        }
    }
}

/// C = A·B (row-major) for a matrix shape, or Y = conv2d(X, W) (NCHW, OIHW; torch's
/// cross-correlation with zero padding) for a convolution: each output element gathered from
/// the inputs it depends on.
fn product<R: Ring>(r: &R, shape: Shape, a: &[R::Elem], b: &[R::Elem], c: &mut [R::Elem]) {
    c.iter_mut().for_each(|x| *x = r.zero());
    match shape {
        Shape::Matrix { m, k, n } => {
            let (m, k, n) = (m as usize, k as usize, n as usize);
            for row in 0..m {
                let out = &mut c[row * n..(row + 1) * n];
                for l in 0..k {
                    let x = a[row * k + l];
                    for (o, &y) in out.iter_mut().zip(&b[l * n..(l + 1) * n]) {
                        *o = r.add(*o, r.mul(x, y));
                    }
                }
            }
        }
        Shape::Conv(g) => {
            let (oh, ow) = g.out().expect("validated convolution");
            let u = |x: u16| x as usize;
            let (ch, h, w, kh, kw) = (u(g.c), u(g.h), u(g.w), u(g.kh), u(g.kw));
            let mut at = 0;
            for img in 0..u(g.n) {
                for o in 0..u(g.o) {
                    for i in 0..oh as usize {
                        for j in 0..ow as usize {
                            let mut acc = r.zero();
                            for cc in 0..ch {
                                for di in 0..kh {
                                    // Row of the padded input, as a row of the real one.
                                    let Some(y) = (i * u(g.sh) + di).checked_sub(u(g.ph)) else {
                                        continue;
                                    };
                                    if y >= h {
                                        continue;
                                    }
                                    for dj in 0..kw {
                                        let Some(x) = (j * u(g.sw) + dj).checked_sub(u(g.pw))
                                        else {
                                            continue;
                                        };
                                        if x >= w {
                                            continue;
                                        }
                                        let xv = a[((img * ch + cc) * h + y) * w + x];
                                        let wv = b[((o * ch + cc) * kh + di) * kw + dj];
                                        acc = r.add(acc, r.mul(xv, wv));
                                    }
                                }
                            }
                            c[at] = acc;
                            at += 1;
                        }
                    }
                }
            }
        }
    }
}

/// A Z_2^64 element as its 64-bit word.
fn word_of<R: Ring>(r: &R, e: R::Elem) -> u64 {
    let mut b = [0u8; 8];
    r.encode(e, &mut b);
    u64::from_le_bytes(b)
}

/// A 64-bit word as a Z_2^64 element.
fn elem_of<R: Ring>(r: &R, w: u64) -> R::Elem {
    r.decode(&w.to_le_bytes())
        .expect("every 64-bit word is an element of Z_2^64")
}

/// One party's seeded elements for a chunk, `per` per item in record order.
struct Seeded<R: Ring> {
    data: Vec<R::Elem>,
    per: usize,
}

impl<R: Ring> Drop for Seeded<R> {
    /// Overwrites the parties' seeded values (secret shares) before the memory is freed.
    fn drop(&mut self) {
        self.data.iter_mut().for_each(|e| *e = R::Elem::default());
        std::hint::black_box(&self.data);
    }
}

impl<R: Ring> Seeded<R> {
    fn draw(ring: &R, seed: &Seed, items: usize, per: usize) -> Self {
        let mut data = vec![ring.zero(); items * per];
        ring.sample_into(&mut seed.rng(), &mut data);
        Seeded { data, per }
    }

    #[inline]
    fn get(&self, item: usize, idx: usize) -> R::Elem {
        self.data[item * self.per + idx]
    }
}
