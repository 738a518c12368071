//! The PRSS generator: dealer-free material for honest-majority consortia (no `t + 1` of the
//! `n` parties collude, `t = floor((n - 1) / 2)`), from replicated keys set up once per epoch.
//!
//! - **Key setup** ([`setup_keys`]): for every set of `n - t` parties, its lowest member draws
//!   the set's key from the operating system and sends it to the other members over the
//!   authenticated node-to-node channel (TLS, node tokens). No key ever reaches a party outside
//!   its set. Each node keeps its keys in `prss/epoch-<e>.keys` beside its store ([`KeyFile`]:
//!   0600, written whole and synced), and in memory only zeroized.
//! - **Making a batch** ([`PrssGenerator`]): each party derives per-chunk keys from its epoch
//!   keys (`PartyKeys::derive`) and stores them in its batch file; what the chunk holds is
//!   recomputed from them on download (see `material::prss`). Z_2^64 triples and squares for
//!   three parties, and double sharings for any n, need no message at all. Prime-field triples
//!   and squares take one opening to a king party (Damgård and Nielsen, "Scalable and
//!   unconditionally secure multiparty computation", CRYPTO 2007): each party sends the king
//!   `a_i b_i - [r]_2t,i`; the king opens `e = ab - r` (`r` is a PRSS secret no `t` parties
//!   know, so `e` shows nothing) and sends it back; each party's share of `c` is `[r]_t,i + e`.
//!   That is one field element per triple from every party but the king, and `n - 1` from the
//!   king. The king rotates from batch to batch (the piece's correction party).
//! - **Bits in prime fields** take the same one opening (Damgård, Fitzi, Kiltz, Nielsen and
//!   Toft, TCC 2006): each party sends the king `r_i^2 + z_i`, with `[r]_t` by PRSS and `z` a
//!   degree-2t pseudo-random zero sharing, so the king opens `a = r^2` and nothing else about
//!   the product polynomial. With `s` the inverse of the smaller square root of `a`, `r s` is
//!   +1 or -1, each as likely and hidden by `r`'s sign, and each party's share of the bit is
//!   `([r]_t,i s + 1) / 2`.
//! - **Input masks in prime fields**: `[r]_t` by PRSS; the `t` parties after the owner send it
//!   their shares (`t` field elements per mask in all), and the owner opens `r` from `t + 1`
//!   shares. The owner learns `r` and, as with any mask an owner deals itself, the sharing; the
//!   others learn nothing.
//!
//! Material from this generator is secure only under its assumption: `t + 1` colluding parties
//! hold every key and learn every share. A dishonest-majority engine (MP-SPDZ's
//! `semi-party.x`, which tolerates `n - 1`) run on it is only as secure as an honest majority;
//! batches, pools, the API and the audit trail say so (see `material::Assumption`).

use super::{BatchPlan, Channel, GenerateError, PartyBatch, PartyGenerator};
use crate::material::prss::{refusal, LABEL_A, LABEL_B, LABEL_R};
use crate::material::{BatchHeader, Kind, Maker, PoolSpec};
use crate::math::Ring;
use crate::sharing::lagrange_coefficients;
use crate::sharing::prss::{self as core, PartyKeys, KEY_BYTES};
use crate::with_ring;
use rand::CryptoRng;
use rayon::prelude::*;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

/// The generator's name in jobs, configuration and metrics.
pub const NAME: &str = "prss";

/// Chunks whose values travel to the king in one message.
const GROUP_CHUNKS: usize = 64;

fn channel_err(party: u8, what: impl Into<String>) -> GenerateError {
    GenerateError::Channel {
        party,
        what: what.into(),
    }
}

/// Sets up fresh replicated keys among `n` parties over `channel`, for `epoch`: the lowest
/// member of each key set draws its key (from `rng`, the operating system's in production)
/// and sends it to the other members, one message per pair of parties, led by the epoch and
/// the party count so parties that disagree on either fail rather than mix keys.
///
/// # Errors
/// [`GenerateError`] for bad parameters, a lost message, or a peer that disagrees.
pub fn setup_keys(
    n: u8,
    epoch: u32,
    channel: &mut dyn Channel,
    rng: &mut impl CryptoRng,
) -> Result<PartyKeys, GenerateError> {
    let me = channel.me();
    let t = core::threshold(n);
    PartyKeys::area_bytes(n, t, me).map_err(|e| GenerateError::Plan(e.to_string()))?;
    let mine = core::sets_of(n, t, me);
    let mut keys = Drawn(Vec::new());
    // The keys this party draws.
    for &set in mine.iter().filter(|&&s| core::lowest(s) == me) {
        let mut k = [0u8; KEY_BYTES];
        rng.fill_bytes(&mut k);
        keys.0.push((set, k));
    }
    let lead = |epoch: u32| {
        let mut m = Zeroizing::new(epoch.to_le_bytes().to_vec());
        m.push(n);
        m
    };
    for to in (0..n).filter(|&p| p != me) {
        let mut m = lead(epoch);
        for (set, k) in keys.0.iter().filter(|(s, _)| s & (1 << to) != 0) {
            m.extend_from_slice(&set.to_le_bytes());
            m.extend_from_slice(k);
        }
        channel.send(to, m)?;
    }
    channel.flush()?;
    for from in (0..n).filter(|&p| p != me) {
        let m = channel.recv(from)?;
        let want: Vec<u32> = mine
            .iter()
            .copied()
            .filter(|&s| core::lowest(s) == from)
            .collect();
        if m.len() != 5 + want.len() * (4 + KEY_BYTES) || m[..5] != lead(epoch)[..] {
            return Err(channel_err(
                from,
                format!("its key message is not for epoch {epoch} of {n} parties with our sets"),
            ));
        }
        for (set, part) in want.iter().zip(m[5..].chunks_exact(4 + KEY_BYTES)) {
            if part[..4] != set.to_le_bytes() {
                return Err(channel_err(from, "it sent keys of other sets"));
            }
            keys.0.push((*set, part[4..].try_into().expect("32 bytes")));
        }
    }
    PartyKeys::new(n, t, me, std::mem::take(&mut keys.0))
        .map_err(|e| GenerateError::Plan(e.to_string()))
}

/// Keys drawn or received during a setup: zeroized when dropped, on every path.
struct Drawn(Vec<(u32, [u8; KEY_BYTES])>);

impl Drop for Drawn {
    fn drop(&mut self) {
        for (_, k) in &mut self.0 {
            zeroize::Zeroize::zeroize(k);
        }
    }
}

/// A node's keys of one epoch on disk: `prss/epoch-<e>.keys` beside its store, 0600.
///
/// ```text
/// magic "LARDERPK" | version u16 (1) | parties u8 | threshold u8 | party u8 | epoch u32
/// | the keys (32 bytes per set the party is in, in set order) | crc32 of all before
/// ```
pub struct KeyFile;

const KEY_MAGIC: &[u8; 8] = b"LARDERPK";

impl KeyFile {
    /// The directory of a store's PRSS keys.
    pub fn dir(store: &Path) -> PathBuf {
        store.join("prss")
    }

    pub fn path(store: &Path, epoch: u32) -> PathBuf {
        Self::dir(store).join(format!("epoch-{epoch}.keys"))
    }

    /// Writes `keys` for `epoch` durably (whole or not at all, 0600).
    ///
    /// # Errors
    /// IO errors.
    pub fn save(store: &Path, epoch: u32, keys: &PartyKeys) -> io::Result<()> {
        let dir = Self::dir(store);
        std::fs::create_dir_all(&dir)?;
        let mut body = Zeroizing::new(Vec::new());
        body.extend_from_slice(KEY_MAGIC);
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&[keys.parties(), keys.threshold(), keys.me()]);
        body.extend_from_slice(&epoch.to_le_bytes());
        body.extend_from_slice(&keys.to_bytes());
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        crate::secret_file::SecretFile::write(&Self::path(store, epoch), |w| {
            io::Write::write_all(w, &body)
        })?;
        crate::store::durable_sync_dir(&dir)
    }

    /// Reads the keys of `epoch` for party `me` of `n`; `None` if this node has none.
    ///
    /// # Errors
    /// A corrupt file, or one for another party, consortium size or epoch.
    pub fn load(store: &Path, epoch: u32, n: u8, me: u8) -> io::Result<Option<PartyKeys>> {
        let path = Self::path(store, epoch);
        let bytes = match std::fs::read(&path) {
            Ok(b) => Zeroizing::new(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let bad = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {why}", path.display()),
            )
        };
        let t = core::threshold(n);
        if bytes.len() < 21 || &bytes[..8] != KEY_MAGIC || bytes[8..10] != 1u16.to_le_bytes() {
            return Err(bad("not a Larder PRSS key file of version 1"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(bad("checksum mismatch: the file is corrupt"));
        }
        if body[10..13] != [n, t, me] || body[13..17] != epoch.to_le_bytes() {
            return Err(bad("the keys are for another party, consortium or epoch"));
        }
        PartyKeys::from_bytes(n, t, me, &body[17..])
            .map(Some)
            .map_err(|e| bad(&e.to_string()))
    }

    /// Forgets the keys of `epoch` (overwritten, then removed); `false` if there were none.
    ///
    /// # Errors
    /// IO errors.
    pub fn destroy(store: &Path, epoch: u32) -> io::Result<bool> {
        let path = Self::path(store, epoch);
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().write(true).open(&path)?;
            f.write_all(&vec![0u8; len as usize])?;
            f.sync_data()?;
        }
        std::fs::remove_file(&path)?;
        crate::store::durable_sync_dir(&Self::dir(store))?;
        Ok(true)
    }

    /// The epochs this node holds keys for, in increasing order.
    ///
    /// # Errors
    /// IO errors reading the directory.
    pub fn epochs(store: &Path) -> io::Result<Vec<u32>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(Self::dir(store)) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for e in entries {
            let name = e?.file_name();
            if let Some(n) = name
                .to_str()
                .and_then(|s| s.strip_prefix("epoch-"))
                .and_then(|s| s.strip_suffix(".keys"))
                .and_then(|s| s.parse().ok())
            {
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok(out)
    }
}

/// The PRSS generator at one party, for one epoch's keys.
pub struct PrssGenerator {
    keys: Arc<PartyKeys>,
    epoch: u32,
    sent: u64,
}

impl std::fmt::Debug for PrssGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrssGenerator(epoch {}, {:?})", self.epoch, self.keys)
    }
}

impl PrssGenerator {
    pub fn new(keys: Arc<PartyKeys>, epoch: u32) -> Self {
        PrssGenerator {
            keys,
            epoch,
            sent: 0,
        }
    }

    /// The epoch keys it makes batches with.
    pub fn keys(&self) -> Arc<PartyKeys> {
        self.keys.clone()
    }
}

/// Generators for all `n` parties on this machine, with fresh keys set up over an in-process
/// [`super::mesh`] (epoch 0: the keys live as long as the generators; the CLI's local mode and
/// benches).
///
/// # Errors
/// [`GenerateError`] for a party count PRSS does not run for.
pub fn ephemeral(n: u8) -> Result<Vec<PrssGenerator>, GenerateError> {
    std::thread::scope(|s| {
        let running: Vec<_> = super::mesh(n)
            .into_iter()
            .map(|mut end| s.spawn(move || setup_keys(n, 0, &mut end, &mut rand::rng())))
            .collect();
        running
            .into_iter()
            .map(|h| {
                let keys = h.join().expect("key setup panicked")?;
                Ok(PrssGenerator::new(Arc::new(keys), 0))
            })
            .collect()
    })
}

/// One chunk's keys and, for kinds with an opening, what it sends the king and keeps (shares:
/// cleared when dropped).
struct Chunk<E: Copy + Default> {
    keys: PartyKeys,
    /// `a_i b_i - [r]_2t,i` per item (prime-field triples and squares).
    masked: Vec<E>,
    /// `[r]_t,i` per item.
    r_t: Vec<E>,
}

/// One column of a group of chunks, in item order.
fn group_column<E: Copy + Default>(
    group: &[Chunk<E>],
    column: impl Fn(&Chunk<E>) -> &Vec<E>,
) -> Vec<E> {
    group
        .iter()
        .flat_map(|c| column(c).iter().copied())
        .collect()
}

/// An opening's sum, element by element: `w_mine · mine` plus, for each `(party, weight)` in
/// `from`, the weight times the elements of the party's next message.
fn weighted_sum<R: Ring>(
    r: &R,
    mine: &[R::Elem],
    w_mine: R::Elem,
    from: &[(u8, R::Elem)],
    channel: &mut dyn Channel,
) -> Result<Vec<R::Elem>, GenerateError> {
    let mut sum: Vec<R::Elem> = mine.iter().map(|&x| r.mul(w_mine, x)).collect();
    for &(p, w) in from {
        let theirs = decode_elems(r, p, &channel.recv(p)?, sum.len())?;
        for (x, y) in sum.iter_mut().zip(theirs) {
            *x = r.add(*x, r.mul(w, y));
        }
    }
    Ok(sum)
}

/// Field elements as a message.
fn encode_elems<R: Ring>(r: &R, v: &[R::Elem]) -> Zeroizing<Vec<u8>> {
    let eb = r.elem_bytes();
    let mut out = Zeroizing::new(vec![0u8; v.len() * eb]);
    for (x, cell) in v.iter().zip(out.chunks_exact_mut(eb)) {
        r.encode(*x, cell);
    }
    out
}

/// A message of `want` field elements from party `from`.
fn decode_elems<R: Ring>(
    r: &R,
    from: u8,
    bytes: &[u8],
    want: usize,
) -> Result<Vec<R::Elem>, GenerateError> {
    let eb = r.elem_bytes();
    if bytes.len() != want * eb {
        return Err(channel_err(
            from,
            format!("{} bytes, expected {}", bytes.len(), want * eb),
        ));
    }
    bytes
        .chunks_exact(eb)
        .map(|b| {
            r.decode(b)
                .ok_or_else(|| channel_err(from, "not an element of the field"))
        })
        .collect()
}

impl<E: Copy + Default> Drop for Chunk<E> {
    fn drop(&mut self) {
        for v in [&mut self.masked, &mut self.r_t] {
            v.iter_mut().for_each(|x| *x = E::default());
        }
        std::hint::black_box(&self.masked);
    }
}

impl PartyGenerator for PrssGenerator {
    fn name(&self) -> &'static str {
        NAME
    }

    fn bytes_sent(&self) -> u64 {
        self.sent
    }

    fn supports(&self, pool: &PoolSpec) -> bool {
        refusal(pool, self.keys.parties()).is_none()
    }

    fn generate_share(
        &mut self,
        plan: &BatchPlan,
        channel: &mut dyn Channel,
    ) -> Result<PartyBatch, GenerateError> {
        plan.pool.validate(plan.parties)?;
        let me = channel.me();
        if plan.parties != self.keys.parties() || me != self.keys.me() {
            return Err(GenerateError::Plan(format!(
                "epoch {}'s keys are party {}'s of {}, not party {me}'s of {}",
                self.epoch,
                self.keys.me(),
                self.keys.parties(),
                plan.parties
            )));
        }
        if let Some(why) = refusal(&plan.pool, plan.parties) {
            return Err(GenerateError::Plan(why));
        }
        if plan.items == 0 || plan.correction >= plan.parties {
            return Err(GenerateError::Plan(
                "items must be positive and the king a member".into(),
            ));
        }
        let header = BatchHeader {
            pool: plan.pool,
            parties: plan.parties,
            party: me,
            correction: plan.correction,
            batch: plan.batch,
            items: plan.items,
            chunk_items: plan.pool.chunk_items(),
            maker: Maker::Prss,
            epoch: Some(self.epoch),
        };
        let field = plan.pool.domain.is_field();
        let opens = field && matches!(plan.pool.kind, Kind::Triple | Kind::Square | Kind::Bit);
        let to_owner = field && plan.pool.kind == Kind::InputMask;
        let ring = plan.pool.domain.ring();
        let mut file = Zeroizing::new(Vec::with_capacity(header.file_len() as usize));
        file.extend_from_slice(&header.encode());
        with_ring!(ring, r => {
            let chunks: Vec<Chunk<_>> = (0..header.chunks())
                .into_par_iter()
                .map(|c| chunk(r, &self.keys, &header, c, opens || to_owner))
                .collect::<Result<_, GenerateError>>()?;
            let explicit = if opens {
                let opened = self.open_at_king(r, &header, &chunks, channel)?;
                crate::failpoint::hit("prss.opened");
                opened
            } else if to_owner {
                self.open_to_owner(r, &header, &chunks, channel)?
            } else {
                vec![Zeroizing::new(Vec::new()); chunks.len()]
            };
            for (ch, ex) in chunks.iter().zip(&explicit) {
                BatchHeader::encode_chunk(&ch.keys.to_bytes(), ex, &mut file);
            }
        });
        debug_assert_eq!(file.len() as u64, header.file_len());
        Ok(PartyBatch {
            header,
            bytes: file,
        })
    }
}

/// Chunk `c`'s keys, and for an opening its masked products and `[r]_t` shares.
fn chunk<R: Ring>(
    r: &R,
    keys: &PartyKeys,
    header: &BatchHeader,
    c: u64,
    opens: bool,
) -> Result<Chunk<R::Elem>, GenerateError> {
    let plan_err = |e: core::PrssError| GenerateError::Plan(e.to_string());
    let keys = keys.derive(&header.batch.0, c);
    let len = header.chunk_len(c) as usize;
    if !opens {
        return Ok(Chunk {
            keys,
            masked: Vec::new(),
            r_t: Vec::new(),
        });
    }
    let mut a = vec![r.zero(); len];
    keys.random_shares(r, &LABEL_A, &mut a).map_err(plan_err)?;
    if header.pool.kind == Kind::InputMask {
        return Ok(Chunk {
            keys,
            masked: Vec::new(),
            r_t: a,
        });
    }
    if header.pool.kind == Kind::Bit {
        // Opens r^2, masked by a degree-2t zero sharing; keeps [r]_t.
        let mut z = vec![r.zero(); len];
        keys.zero_shares_2t(r, &LABEL_R, &mut z).map_err(plan_err)?;
        let masked = a
            .iter()
            .zip(&z)
            .map(|(&x, &z)| r.add(r.mul(x, x), z))
            .collect();
        z.iter_mut().for_each(|x| *x = R::Elem::default());
        return Ok(Chunk {
            keys,
            masked,
            r_t: a,
        });
    }
    let mut b = if header.pool.kind == Kind::Triple {
        let mut b = vec![r.zero(); len];
        keys.random_shares(r, &LABEL_B, &mut b).map_err(plan_err)?;
        Some(b)
    } else {
        None
    };
    let (mut r_t, mut r_2t) = (vec![r.zero(); len], vec![r.zero(); len]);
    keys.double_shares(r, &LABEL_R, &mut r_t, &mut r_2t)
        .map_err(plan_err)?;
    let masked = (0..len)
        .map(|j| {
            let bj = b.as_ref().map_or(a[j], |b| b[j]);
            r.sub(r.mul(a[j], bj), r_2t[j])
        })
        .collect();
    for v in [Some(&mut a), Some(&mut r_2t), b.as_mut()]
        .into_iter()
        .flatten()
    {
        v.iter_mut().for_each(|x| *x = R::Elem::default());
    }
    Ok(Chunk { keys, masked, r_t })
}

impl PrssGenerator {
    /// Input masks: the `t` parties after the owner send it their shares of `r` (per group of
    /// chunks); the owner's explicit elements are `r`, the others' none.
    fn open_to_owner<R: Ring>(
        &mut self,
        r: &R,
        header: &BatchHeader,
        chunks: &[Chunk<R::Elem>],
        channel: &mut dyn Channel,
    ) -> Result<Vec<Zeroizing<Vec<u8>>>, GenerateError> {
        let (n, me) = (header.parties, header.party);
        let owner = header
            .pool
            .owner
            .ok_or_else(|| GenerateError::Plan("an input mask pool names its owner".into()))?;
        let t = core::threshold(n);
        let senders: Vec<u8> = (1..=t).map(|k| (owner + k) % n).collect();
        let encode = |v: &[R::Elem]| encode_elems(r, v);
        let groups: Vec<&[Chunk<R::Elem>]> = chunks.chunks(GROUP_CHUNKS).collect();
        let shares = |g: &[Chunk<R::Elem>]| group_column(g, |c| &c.r_t);
        if senders.contains(&me) {
            for g in &groups {
                let m = encode(&shares(g));
                self.sent += m.len() as u64;
                channel.send(owner, m)?;
            }
            channel.flush()?;
        }
        if me != owner {
            return Ok(vec![Zeroizing::new(Vec::new()); chunks.len()]);
        }
        // Shamir opening at 0 from the owner's share and the senders'.
        let xs: Vec<u64> = std::iter::once(owner)
            .chain(senders.iter().copied())
            .map(|p| p as u64 + 1)
            .collect();
        let w = lagrange_coefficients(r, &xs, 0).map_err(|e| GenerateError::Plan(e.to_string()))?;
        let mut out = Vec::with_capacity(chunks.len());
        let from: Vec<(u8, R::Elem)> = senders
            .iter()
            .copied()
            .zip(w[1..].iter().copied())
            .collect();
        for g in &groups {
            let mut masks = weighted_sum(r, &shares(g), w[0], &from, channel)?;
            let mut at = 0;
            for c in g.iter() {
                out.push(encode(&masks[at..at + c.r_t.len()]));
                at += c.r_t.len();
            }
            masks.iter_mut().for_each(|x| *x = R::Elem::default());
        }
        Ok(out)
    }

    /// The opening to the king (DN07): every party's explicit elements per chunk, `λ_i c_i`
    /// with `c_i = [r]_t,i + e` (see the module documentation).
    fn open_at_king<R: Ring>(
        &mut self,
        r: &R,
        header: &BatchHeader,
        chunks: &[Chunk<R::Elem>],
        channel: &mut dyn Channel,
    ) -> Result<Vec<Zeroizing<Vec<u8>>>, GenerateError> {
        let (n, me, king) = (header.parties, header.party, header.correction);
        let xs: Vec<u64> = (1..=n as u64).collect();
        let mu =
            lagrange_coefficients(r, &xs, 0).map_err(|e| GenerateError::Plan(e.to_string()))?;
        let encode = |v: &[R::Elem]| encode_elems(r, v);
        let decode = |from: u8, bytes: &[u8], want: usize| decode_elems(r, from, bytes, want);
        let groups: Vec<&[Chunk<R::Elem>]> = chunks.chunks(GROUP_CHUNKS).collect();
        let masked = |g: &[Chunk<R::Elem>]| group_column(g, |c| &c.masked);
        let mut opened: Vec<Vec<R::Elem>> = Vec::with_capacity(groups.len());
        if me != king {
            for g in &groups {
                let m = encode(&masked(g));
                self.sent += m.len() as u64;
                channel.send(king, m)?;
            }
            channel.flush()?;
            for g in &groups {
                let want = g.iter().map(|c| c.r_t.len()).sum();
                opened.push(decode(king, &channel.recv(king)?, want)?);
            }
        } else {
            let from: Vec<(u8, R::Elem)> = (0..n)
                .filter(|&p| p != me)
                .map(|p| (p, mu[p as usize]))
                .collect();
            for g in &groups {
                let e = weighted_sum(r, &masked(g), mu[me as usize], &from, channel)?;
                let m = encode(&e);
                for p in (0..n).filter(|&p| p != me) {
                    self.sent += m.len() as u64;
                    channel.send(p, m.clone())?;
                }
                opened.push(e);
            }
            channel.flush()?;
        }
        let w = self
            .keys
            .additive_weight(r)
            .map_err(|e| GenerateError::Plan(e.to_string()))?;
        let roots = (header.pool.kind == Kind::Bit)
            .then(|| crate::math::Sqrt::new(r, header.pool.domain.modulus().unwrap_or(0)));
        let half = r
            .inv(r.reduce(2))
            .ok_or_else(|| GenerateError::Plan("a field of two elements".into()))?;
        let mut out = Vec::with_capacity(chunks.len());
        for (g, e) in groups.iter().zip(&opened) {
            let mut at = 0;
            for c in g.iter() {
                let share: Vec<R::Elem> = c
                    .r_t
                    .iter()
                    .zip(&e[at..at + c.r_t.len()])
                    .map(|(&rt, &e)| {
                        let Some(roots) = &roots else {
                            return Ok(r.mul(w, r.add(rt, e)));
                        };
                        // e = r^2; a zero r (probability 1/p) gives the batch up.
                        let s = roots.root(e).and_then(|root| r.inv(root)).ok_or_else(|| {
                            GenerateError::Plan("an opened r^2 had no nonzero root".into())
                        })?;
                        Ok(r.mul(w, r.mul(r.add(r.mul(rt, s), r.one()), half)))
                    })
                    .collect::<Result<_, GenerateError>>()?;
                at += c.r_t.len();
                out.push(encode(&share));
            }
        }
        Ok(out)
    }
}
