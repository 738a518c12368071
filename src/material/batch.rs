//! One party's share of a batch, as stored on disk: a versioned header, then per-chunk seeds,
//! explicit elements and checksums.
//!
//! ```text
//! header (66 bytes, little-endian):
//!   magic "LARDERBT" | format version u16 | kind u8 | domain 17 B | threshold u8 | owner u8
//!   | parties u8 | party u8 | correction party u8 | batch id 16 B | items u64
//!   | chunk items u32 | maker u8 | crc32 of the preceding 62 bytes
//! Version 1: made by a dealer (maker byte 0). Version 2: any maker (0 dealer, 1 the parties'
//! own input masks, 2 the HE generator; the last two are laid out by `party_layout` and leave
//! the correction party unused). A build that does not know a maker refuses the file.
//! Dealer batches are still written as version 1, so older builds keep reading them and
//! refuse, rather than misread, batches the parties made.
//! Version 3 (matrix and convolution triples, any maker): the 66 bytes above, then the shape
//! (48 bytes, see `Shape::to_bytes`) and a crc32 of the preceding 114 bytes: 118 bytes in all.
//! Older builds refuse it.
//! Version 4 (made by the PRSS generator, maker byte 3; no shape): the 66 bytes above, then the
//! key epoch u32 | threshold t u8 | three zero bytes | crc32 of the preceding 74 bytes: 78
//! bytes in all. Its chunks hold this party's derived chunk keys (32 bytes per key set it
//! belongs to, see `material::prss`) where other chunks hold a seed.
//! then for each chunk of `chunk items` items (the last may be shorter):
//!   seed 32 B | explicit elements (items x explicit-per-item x element bytes) | crc32 of both
//! ```
//! The seeded elements of all the chunk's records (in item order, then record order) are drawn
//! by one `Ring::sample_into` call over ChaCha12 keyed with the chunk's seed (stream 0, from
//! its start); explicit elements fill the other positions in order. Per-chunk seeds
//! let a consumed chunk be erased (seed and values overwritten) while the rest of the batch
//! stays usable, and let any item range be expanded without reading the whole batch.

use super::{party_layout, record_layout, Kind, Maker, PoolSpec, Source};
use crate::math::{Domain, Ring};
use crate::sharing::prss::{self as prss_core, PartyKeys};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Items per chunk in files this version writes (fewer for matrix triples: see
/// [`PoolSpec::chunk_items`]).
pub const CHUNK_ITEMS: u32 = 1024;
/// Bytes of records a chunk of matrix triples aims at.
pub const CHUNK_BYTES: u64 = 4 << 20;
/// Bytes of a chunk seed.
pub const SEED_BYTES: usize = 32;
/// Bytes of the fixed batch header (versions 1 and 2).
pub const HEADER_BYTES: usize = 66;
/// Bytes of a version 3 header (with a matrix shape): the most a header has.
pub const MAX_HEADER_BYTES: usize = HEADER_BYTES + super::SHAPE_BYTES + 4;
/// Bytes of a version 4 header (PRSS: key epoch and threshold).
pub const PRSS_HEADER_BYTES: usize = HEADER_BYTES + 8 + 4;
/// The newest batch file format version this build writes and reads (it reads 1 to 3 too).
pub const BATCH_FORMAT_VERSION: u16 = 4;

/// Bytes of the header of a batch file of format `version` (the fixed part for a version
/// this build does not read, which `BatchHeader::decode` then refuses).
pub fn header_len(version: u16) -> usize {
    match version {
        3 => MAX_HEADER_BYTES,
        4 => PRSS_HEADER_BYTES,
        _ => HEADER_BYTES,
    }
}
const MAGIC: &[u8; 8] = b"LARDERBT";
const CRC_BYTES: usize = 4;

/// Why bytes are not a valid batch (or share) file. Never a panic, never wrong data.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("not a Larder {0} file (magic bytes differ)")]
    Foreign(&'static str),
    #[error(
        "{what} format version {found} is not supported (this build reads version {supported})"
    )]
    UnsupportedVersion {
        what: &'static str,
        found: u16,
        supported: u16,
    },
    #[error("truncated {what}: expected {expected} bytes, found {found}")]
    Truncated {
        what: &'static str,
        expected: u64,
        found: u64,
    },
    #[error("{what} has {extra} unexpected trailing bytes")]
    Trailing { what: &'static str, extra: u64 },
    #[error("checksum mismatch in {0}: the data is corrupt")]
    Checksum(String),
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
}

fn invalid(what: &'static str, why: impl Into<String>) -> FormatError {
    FormatError::Invalid {
        what,
        why: why.into(),
    }
}

/// A batch's id, the same at every party.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BatchId(pub [u8; 16]);

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
impl fmt::Debug for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BatchId({self})")
    }
}
impl std::str::FromStr for BatchId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut b = [0u8; 16];
        hex::decode_to_slice(s, &mut b)
            .map_err(|_| format!("bad batch id {s:?}: expected 32 hex digits"))?;
        Ok(BatchId(b))
    }
}
impl TryFrom<String> for BatchId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}
impl From<BatchId> for String {
    fn from(b: BatchId) -> String {
        b.to_string()
    }
}

/// A 32-byte chunk seed: secret, zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Seed(pub [u8; SEED_BYTES]);

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seed(..)")
    }
}

impl Seed {
    /// The ChaCha12 stream the chunk's seeded elements are drawn from.
    pub fn rng(&self) -> ChaCha12Rng {
        ChaCha12Rng::from_seed(self.0)
    }
}

/// The fixed header of one party's batch file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub pool: PoolSpec,
    pub parties: u8,
    pub party: u8,
    /// The party storing the explicit corrections for this batch (a dealer's batch only).
    pub correction: u8,
    pub batch: BatchId,
    pub items: u64,
    pub chunk_items: u32,
    /// Who made the batch: decides the record layout.
    pub maker: Maker,
    /// The PRSS key epoch the batch was made under (PRSS batches only).
    pub epoch: Option<u32>,
}

impl BatchHeader {
    /// This party's record layout in this batch.
    pub fn layout(&self) -> Vec<Source> {
        match self.maker {
            Maker::Dealer => record_layout(&self.pool, self.parties, self.party, self.correction),
            Maker::Parties | Maker::He => party_layout(&self.pool, self.party),
            Maker::Prss => super::prss::layout(&self.pool, self.party),
        }
    }

    /// PRSS batches: the parties, threshold and party their chunk keys are for.
    pub fn prss_party(&self) -> (u8, u8, u8) {
        (self.parties, prss_core::threshold(self.parties), self.party)
    }

    /// Bytes before a chunk's explicit elements: its seed, or a PRSS chunk's keys.
    pub fn key_area_bytes(&self) -> usize {
        match self.maker {
            Maker::Prss => {
                let (n, t, me) = self.prss_party();
                PartyKeys::area_bytes(n, t, me).unwrap_or(0)
            }
            _ => SEED_BYTES,
        }
    }

    pub fn explicit_per_item(&self) -> usize {
        self.layout()
            .iter()
            .filter(|s| **s == Source::Explicit)
            .count()
    }

    pub fn elem_bytes(&self) -> usize {
        self.pool.domain.elem_bytes()
    }

    pub fn chunks(&self) -> u64 {
        self.items.div_ceil(self.chunk_items as u64)
    }

    /// Items in chunk `c`.
    pub fn chunk_len(&self, c: u64) -> u64 {
        let start = c * self.chunk_items as u64;
        (self.items - start).min(self.chunk_items as u64)
    }

    /// Bytes of chunk `c` on disk: seed, explicit elements, checksum.
    pub fn chunk_bytes(&self, c: u64) -> usize {
        self.key_area_bytes()
            + self.chunk_len(c) as usize * self.explicit_per_item() * self.elem_bytes()
            + CRC_BYTES
    }

    /// File offset of chunk `c` (every chunk but the last is full).
    pub fn chunk_offset(&self, c: u64) -> u64 {
        let full = (self.key_area_bytes()
            + self.chunk_items as usize * self.explicit_per_item() * self.elem_bytes()
            + CRC_BYTES) as u64;
        self.header_len() as u64 + c * full
    }

    /// Bytes of this header on disk.
    pub fn header_len(&self) -> usize {
        header_len(self.version())
    }

    /// The format version this header is written in.
    fn version(&self) -> u16 {
        match (self.pool.shape, self.maker) {
            (_, Maker::Prss) => 4,
            (Some(_), _) => 3,
            (None, Maker::Dealer) => 1,
            (None, Maker::Parties | Maker::He) => 2,
        }
    }

    /// Length of the whole file.
    pub fn file_len(&self) -> u64 {
        let last = self.chunks() - 1;
        self.chunk_offset(last) + self.chunk_bytes(last) as u64
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut h = vec![0u8; self.header_len()];
        h[0..8].copy_from_slice(MAGIC);
        let version = self.version();
        h[8..10].copy_from_slice(&version.to_le_bytes());
        h[10] = self.pool.kind.code();
        h[11..28].copy_from_slice(&self.pool.domain.to_bytes());
        h[28] = self.pool.threshold.unwrap_or(0);
        h[29] = self.pool.owner.unwrap_or(u8::MAX);
        h[30] = self.parties;
        h[31] = self.party;
        h[32] = self.correction;
        h[33..49].copy_from_slice(&self.batch.0);
        h[49..57].copy_from_slice(&self.items.to_le_bytes());
        h[57..61].copy_from_slice(&self.chunk_items.to_le_bytes());
        h[61] = self.maker.code();
        let crc = crc32fast::hash(&h[..62]);
        h[62..66].copy_from_slice(&crc.to_le_bytes());
        if let Some(shape) = self.pool.shape {
            let end = HEADER_BYTES + super::SHAPE_BYTES;
            h[HEADER_BYTES..end].copy_from_slice(&shape.to_bytes());
            let crc = crc32fast::hash(&h[..end]);
            h[end..end + 4].copy_from_slice(&crc.to_le_bytes());
        }
        if self.maker == Maker::Prss {
            let end = HEADER_BYTES + 8;
            h[HEADER_BYTES..HEADER_BYTES + 4]
                .copy_from_slice(&self.epoch.unwrap_or(0).to_le_bytes());
            h[HEADER_BYTES + 4] = prss_core::threshold(self.parties);
            let crc = crc32fast::hash(&h[..end]);
            h[end..end + 4].copy_from_slice(&crc.to_le_bytes());
        }
        h
    }

    /// Parses and checks a header from the start of `bytes`.
    ///
    /// # Errors
    /// [`FormatError`] for foreign, truncated, corrupt or meaningless headers.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() >= 8 && &bytes[0..8] != MAGIC {
            return Err(FormatError::Foreign("batch"));
        }
        if bytes.len() < HEADER_BYTES {
            return Err(FormatError::Truncated {
                what: "batch header",
                expected: HEADER_BYTES as u64,
                found: bytes.len() as u64,
            });
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if !(1..=BATCH_FORMAT_VERSION).contains(&version) {
            return Err(FormatError::UnsupportedVersion {
                what: "batch",
                found: version,
                supported: BATCH_FORMAT_VERSION,
            });
        }
        let crc = u32::from_le_bytes(bytes[62..66].try_into().expect("4 bytes"));
        if crc32fast::hash(&bytes[..62]) != crc {
            return Err(FormatError::Checksum("batch header".into()));
        }
        let len = header_len(version);
        if bytes.len() < len {
            return Err(FormatError::Truncated {
                what: "batch header",
                expected: len as u64,
                found: bytes.len() as u64,
            });
        }
        if len > HEADER_BYTES {
            let end = len - CRC_BYTES;
            let crc = u32::from_le_bytes(bytes[end..len].try_into().expect("4 bytes"));
            if crc32fast::hash(&bytes[..end]) != crc {
                return Err(FormatError::Checksum("batch header".into()));
            }
        }
        let shape = if version == 3 {
            let end = HEADER_BYTES + super::SHAPE_BYTES;
            Some(
                super::Shape::from_bytes(bytes[HEADER_BYTES..end].try_into().expect("48 bytes"))
                    .ok_or_else(|| invalid("batch header", "unknown shape"))?,
            )
        } else {
            None
        };
        let kind =
            Kind::from_code(bytes[10]).ok_or_else(|| invalid("batch header", "unknown kind"))?;
        let domain = Domain::from_bytes(bytes[11..28].try_into().expect("17 bytes"))
            .ok_or_else(|| invalid("batch header", "unknown domain or non-prime modulus"))?;
        let pool = PoolSpec {
            kind,
            domain,
            threshold: (bytes[28] != 0).then_some(bytes[28]),
            owner: (bytes[29] != u8::MAX).then_some(bytes[29]),
            shape,
        };
        // Version 1 reserved the byte (zero): a dealer's batch.
        let maker = match (version, Maker::from_code(bytes[61])) {
            (1, Some(Maker::Dealer)) | (4, Some(Maker::Prss)) => {
                Maker::from_code(bytes[61]).expect("known")
            }
            (2 | 3, Some(m)) if m != Maker::Prss => m,
            _ => return Err(invalid("batch header", "unknown maker")),
        };
        let epoch = if version == 4 {
            let b = &bytes[HEADER_BYTES..HEADER_BYTES + 8];
            if b[4] != prss_core::threshold(bytes[30]) || b[5..] != [0, 0, 0] {
                return Err(invalid(
                    "batch header",
                    "PRSS threshold other than floor((n - 1) / 2), or reserved bytes set",
                ));
            }
            Some(u32::from_le_bytes(b[..4].try_into().expect("4 bytes")))
        } else {
            None
        };
        let header = BatchHeader {
            maker,
            pool,
            parties: bytes[30],
            party: bytes[31],
            correction: bytes[32],
            batch: BatchId(bytes[33..49].try_into().expect("16 bytes")),
            items: u64::from_le_bytes(bytes[49..57].try_into().expect("8 bytes")),
            chunk_items: u32::from_le_bytes(bytes[57..61].try_into().expect("4 bytes")),
            epoch,
        };
        header.check()?;
        Ok(header)
    }

    /// Internal consistency of the fields.
    fn check(&self) -> Result<(), FormatError> {
        self.pool
            .validate(self.parties)
            .map_err(|e| invalid("batch header", e.to_string()))?;
        if self.party >= self.parties || self.correction >= self.parties {
            return Err(invalid("batch header", "party number out of range"));
        }
        if self.items == 0 || self.items > 1 << 40 {
            return Err(invalid("batch header", "item count out of range"));
        }
        // Fixed per pool, so a small file cannot claim chunks too large to expand.
        if self.chunk_items != self.pool.chunk_items() {
            return Err(invalid(
                "batch header",
                format!(
                    "chunks of {} must hold {} items",
                    self.pool,
                    self.pool.chunk_items()
                ),
            ));
        }
        if self.pool.shape.is_some() && self.items > 1 << 32 {
            return Err(invalid("batch header", "item count out of range"));
        }
        match (self.maker, self.epoch) {
            (Maker::Prss, Some(_)) => {
                if let Some(why) = super::prss::refusal(&self.pool, self.parties) {
                    return Err(invalid("batch header", why));
                }
            }
            (Maker::Prss, None) => {
                return Err(invalid("batch header", "PRSS batch without an epoch"))
            }
            (_, Some(_)) => return Err(invalid("batch header", "only PRSS batches have an epoch")),
            _ => {}
        }
        if self.maker == Maker::Dealer
            && self.pool.kind == Kind::InputMask
            && self.pool.owner == Some(self.correction)
        {
            return Err(invalid(
                "batch header",
                "an input mask's owner cannot be its correction party",
            ));
        }
        Ok(())
    }

    /// Writes chunk `c`'s on-disk form (key area: a seed or PRSS chunk keys; explicit bytes;
    /// checksum) to the end of `out`.
    pub fn encode_chunk(key_area: &[u8], explicit: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(key_area);
        out.extend_from_slice(explicit);
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    /// Splits and checks chunk `c`'s on-disk bytes into its key area (a seed, or a PRSS
    /// chunk's keys: secret) and explicit elements.
    ///
    /// # Errors
    /// [`FormatError`] if the length is wrong or the checksum does not match.
    pub fn decode_chunk<'a>(
        &self,
        c: u64,
        bytes: &'a [u8],
    ) -> Result<(&'a [u8], &'a [u8]), FormatError> {
        let expected = self.chunk_bytes(c);
        if bytes.len() != expected {
            return Err(FormatError::Truncated {
                what: "batch chunk",
                expected: expected as u64,
                found: bytes.len() as u64,
            });
        }
        let (body, crc) = bytes.split_at(expected - CRC_BYTES);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(FormatError::Checksum(format!(
                "chunk {c} of batch {}",
                self.batch
            )));
        }
        Ok(body.split_at(self.key_area_bytes()))
    }

    /// Checks and expands the chunks `chunks` of this batch from their on-disk bytes `raw`
    /// (read whole, from the first chunk's offset), keeping the items `items` (numbered within
    /// the batch): each chunk's encoded records, in order, zeroed when dropped. A few chunks
    /// expand on the calling thread (small checkouts are latency-bound), more in parallel.
    ///
    /// # Errors
    /// A [`FormatError`] if a chunk's checksum or contents are wrong.
    pub fn expand_chunks(
        &self,
        raw: &[u8],
        chunks: std::ops::Range<u64>,
        items: std::ops::Range<u64>,
    ) -> Result<Vec<zeroize::Zeroizing<Vec<u8>>>, FormatError> {
        use rayon::prelude::*;
        let layout = self.layout();
        let ring = self.pool.domain.ring();
        let ci = self.chunk_items as u64;
        let off = self.chunk_offset(chunks.start);
        let expand = |c: u64| -> Result<zeroize::Zeroizing<Vec<u8>>, FormatError> {
            let at = (self.chunk_offset(c) - off) as usize;
            let bytes = raw
                .get(at..at + self.chunk_bytes(c))
                .ok_or_else(|| invalid("batch chunk", "chunk bytes missing from the read"))?;
            let (key_area, explicit) = self.decode_chunk(c, bytes)?;
            let start = c * ci;
            let skip = items.start.max(start) - start;
            let stop = items.end.min(start + self.chunk_len(c)) - start;
            let (len, wanted) = (self.chunk_len(c) as usize, skip as usize..stop as usize);
            let mut out = zeroize::Zeroizing::new(Vec::new());
            if self.maker == Maker::Prss {
                crate::with_ring!(ring, rg => super::prss::expand_chunk(rg, &self.pool, self.prss_party(), key_area, explicit, len, wanted, &mut out))?;
            } else {
                let mut seed = Seed([0; SEED_BYTES]);
                seed.0.copy_from_slice(key_area);
                crate::with_ring!(ring, rg => expand_chunk(rg, &layout, &seed, explicit, len, wanted, &mut out))?;
            }
            Ok(out)
        };
        if chunks.end - chunks.start < 4 {
            chunks.map(expand).collect()
        } else {
            chunks.into_par_iter().map(expand).collect()
        }
    }

    /// Checks a whole batch file: header, length and every chunk checksum.
    ///
    /// # Errors
    /// The first [`FormatError`] found.
    pub fn verify_file(bytes: &[u8]) -> Result<BatchHeader, FormatError> {
        let h = BatchHeader::decode(bytes)?;
        let len = h.file_len();
        if (bytes.len() as u64) < len {
            return Err(FormatError::Truncated {
                what: "batch file",
                expected: len,
                found: bytes.len() as u64,
            });
        }
        if bytes.len() as u64 > len {
            return Err(FormatError::Trailing {
                what: "batch file",
                extra: bytes.len() as u64 - len,
            });
        }
        for c in 0..h.chunks() {
            let off = h.chunk_offset(c) as usize;
            h.decode_chunk(c, &bytes[off..off + h.chunk_bytes(c)])?;
        }
        Ok(h)
    }
}

/// Expands the `wanted` items of a chunk of `chunk_len` items into encoded records appended
/// to `out`.
///
/// The seeded elements of the whole chunk are drawn, as the dealer drew them: rejection
/// sampling makes stream positions data-dependent, and large prime fields sample in rounds
/// sized by the request.
///
/// # Errors
/// [`FormatError::Invalid`] if an explicit element is not canonical or missing.
pub fn expand_chunk<R: Ring>(
    ring: &R,
    layout: &[Source],
    seed: &Seed,
    explicit: &[u8],
    chunk_len: usize,
    wanted: std::ops::Range<usize>,
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    let eb = ring.elem_bytes();
    let per_seeded = layout.iter().filter(|s| **s == Source::Seeded).count();
    let per_explicit = layout.len() - per_seeded;
    let (skip, items) = (wanted.start, wanted.end);
    let take = items.saturating_sub(skip);
    if items > chunk_len || explicit.len() != chunk_len * per_explicit * eb {
        return Err(invalid(
            "batch chunk",
            "item range or explicit elements do not fit the chunk",
        ));
    }
    let mut drawn = vec![ring.zero(); chunk_len * per_seeded];
    ring.sample_into(&mut seed.rng(), &mut drawn);
    let (mut si, mut ei) = (skip * per_seeded, skip * per_explicit);
    // Records are encoded in place into the output, sized once (no per-element capacity
    // checks or copies: this loop runs for every item of every download).
    let record = layout.len() * eb;
    let start = out.len();
    out.resize(start + take * record, 0);
    for rec in out[start..].chunks_exact_mut(record) {
        for (src, cell) in layout.iter().zip(rec.chunks_exact_mut(eb)) {
            match src {
                Source::Seeded => {
                    ring.encode(drawn[si], cell);
                    si += 1;
                }
                Source::Explicit => {
                    let bytes = &explicit[ei * eb..(ei + 1) * eb];
                    if ring.decode(bytes).is_none() {
                        out.truncate(start);
                        return Err(invalid("batch chunk", "explicit element out of range"));
                    }
                    ei += 1;
                    cell.copy_from_slice(bytes);
                }
            }
        }
    }
    drawn.iter_mut().for_each(|e| *e = ring.zero());
    std::hint::black_box(&drawn);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::P128;

    fn header() -> BatchHeader {
        BatchHeader {
            pool: PoolSpec::new(Kind::Triple, Domain::Fp(P128)),
            parties: 3,
            party: 1,
            correction: 1,
            batch: BatchId([7; 16]),
            items: 2500,
            chunk_items: 1024,
            maker: Maker::Dealer,
            epoch: None,
        }
    }

    #[test]
    fn header_round_trips() {
        let h = header();
        assert_eq!(BatchHeader::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn chunk_geometry_covers_every_item_once() {
        let h = header();
        assert_eq!(h.chunks(), 3);
        assert_eq!((0..3).map(|c| h.chunk_len(c)).sum::<u64>(), 2500);
        assert_eq!(h.chunk_offset(1), 66 + 32 + 1024 * 16 + 4);
        assert_eq!(h.file_len(), 66 + 3 * 36 + 2500 * 16);
    }

    #[test]
    fn seeds_never_print() {
        assert_eq!(format!("{:?}", Seed([42; 32])), "Seed(..)");
    }
}
