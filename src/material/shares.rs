//! The share stream: what an engine receives for one checkout at one party.
//!
//! ```text
//! magic "LARDERSH" | format version u16 | kind u8 | domain 17 B | threshold u8 | owner u8
//! | parties u8 | party u8 | checkout id length u16 | [version 2: shape, 48 B]
//! | checkout id (UTF-8)
//! | items u64 | range count u32 | ranges (batch id 16 B, first item u64, count u64)...
//! | crc32 of the header so far
//! records: items x record length x element bytes, little-endian canonical elements
//! trailer: crc32 of the records
//! ```
//! Version 2 is written only for matrix and convolution triples (`Shape::to_bytes`);
//! every other pool's stream is version 1, byte for byte as before.
//! It is written and read incrementally, so a checkout of millions of items never has to sit
//! in memory whole.

use super::batch::{BatchId, FormatError};
use super::{Kind, PoolSpec};
use crate::math::Domain;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

const MAGIC: &[u8; 8] = b"LARDERSH";
/// The newest share stream format version this build writes and reads (it reads 1 too).
pub const SHARE_FORMAT_VERSION: u16 = 2;
/// Longest checkout id accepted, in characters (Unicode scalar values, as JSON Schema's
/// `maxLength` counts them).
pub const MAX_CHECKOUT_ID: usize = 256;
/// Longest checkout id in a share stream's header, in bytes: [`MAX_CHECKOUT_ID`] characters of
/// up to 4 bytes each in UTF-8.
pub const MAX_CHECKOUT_ID_BYTES: usize = 4 * MAX_CHECKOUT_ID;
/// Most bytes of records [`ShareReader::next_records`] returns at once (one record may be
/// more: a matrix triple is up to 32 MiB).
pub const MAX_READ_BYTES: u64 = 16 << 20;
/// Most ranges in one stream (bounds what a header can make a reader allocate: 2 MiB).
const MAX_RANGES: u32 = 1 << 16;

/// A run of consecutive items of one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShareRange {
    pub batch: BatchId,
    pub first: u64,
    pub count: u64,
}

/// Describes the records that follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareHeader {
    pub pool: PoolSpec,
    pub parties: u8,
    pub party: u8,
    pub checkout: String,
    pub ranges: Vec<ShareRange>,
}

impl ShareHeader {
    pub fn items(&self) -> u64 {
        self.ranges.iter().map(|r| r.count).sum()
    }

    /// Bytes of one item's record at this party.
    pub fn record_bytes(&self) -> usize {
        self.pool.record_len(self.party) * self.pool.domain.elem_bytes()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(64 + self.checkout.len() + self.ranges.len() * 32);
        h.extend_from_slice(MAGIC);
        let version: u16 = if self.pool.shape.is_some() { 2 } else { 1 };
        h.extend_from_slice(&version.to_le_bytes());
        h.push(self.pool.kind.code());
        h.extend_from_slice(&self.pool.domain.to_bytes());
        h.push(self.pool.threshold.unwrap_or(0));
        h.push(self.pool.owner.unwrap_or(u8::MAX));
        h.push(self.parties);
        h.push(self.party);
        h.extend_from_slice(&(self.checkout.len() as u16).to_le_bytes());
        if let Some(shape) = self.pool.shape {
            h.extend_from_slice(&shape.to_bytes());
        }
        h.extend_from_slice(self.checkout.as_bytes());
        h.extend_from_slice(&self.items().to_le_bytes());
        h.extend_from_slice(&(self.ranges.len() as u32).to_le_bytes());
        for r in &self.ranges {
            h.extend_from_slice(&r.batch.0);
            h.extend_from_slice(&r.first.to_le_bytes());
            h.extend_from_slice(&r.count.to_le_bytes());
        }
        let crc = crc32fast::hash(&h);
        h.extend_from_slice(&crc.to_le_bytes());
        h
    }

    /// Reads and checks a header from `r`.
    ///
    /// # Errors
    /// [`FormatError`] for foreign, truncated, corrupt or meaningless headers.
    pub fn read_from<R: Read>(r: &mut R) -> Result<Self, FormatError> {
        let mut hasher = crc32fast::Hasher::new();
        let mut take = |n: usize| -> Result<Vec<u8>, FormatError> {
            let mut buf = vec![0u8; n];
            read_exact_or_truncated(r, &mut buf, "share header")?;
            hasher.update(&buf);
            Ok(buf)
        };
        let fixed = take(8 + 2 + 1 + 17 + 4 + 2)?;
        if &fixed[0..8] != MAGIC {
            return Err(FormatError::Foreign("share"));
        }
        let version = u16::from_le_bytes([fixed[8], fixed[9]]);
        if !(1..=SHARE_FORMAT_VERSION).contains(&version) {
            return Err(FormatError::UnsupportedVersion {
                what: "share",
                found: version,
                supported: SHARE_FORMAT_VERSION,
            });
        }
        let bad = |why: &str| FormatError::Invalid {
            what: "share header",
            why: why.to_string(),
        };
        let kind = Kind::from_code(fixed[10]).ok_or_else(|| bad("unknown kind"))?;
        let domain = Domain::from_bytes(fixed[11..28].try_into().expect("17 bytes"))
            .ok_or_else(|| bad("unknown domain or non-prime modulus"))?;
        let shape = if version == 2 {
            let raw = take(super::SHAPE_BYTES)?;
            Some(
                super::Shape::from_bytes(raw.as_slice().try_into().expect("48 bytes"))
                    .ok_or_else(|| bad("unknown shape"))?,
            )
        } else {
            None
        };
        let pool = PoolSpec {
            kind,
            domain,
            threshold: (fixed[28] != 0).then_some(fixed[28]),
            owner: (fixed[29] != u8::MAX).then_some(fixed[29]),
            shape,
        };
        let (parties, party) = (fixed[30], fixed[31]);
        pool.validate(parties).map_err(|e| bad(&e.to_string()))?;
        if party >= parties {
            return Err(bad("party number out of range"));
        }
        let id_len = u16::from_le_bytes([fixed[32], fixed[33]]) as usize;
        if id_len == 0 || id_len > MAX_CHECKOUT_ID_BYTES {
            return Err(bad("checkout id length out of range"));
        }
        let checkout =
            String::from_utf8(take(id_len)?).map_err(|_| bad("checkout id is not UTF-8"))?;
        let counts = take(12)?;
        let items = u64::from_le_bytes(counts[0..8].try_into().expect("8 bytes"));
        let n_ranges = u32::from_le_bytes(counts[8..12].try_into().expect("4 bytes"));
        if n_ranges == 0 || n_ranges > MAX_RANGES || n_ranges as u64 > items {
            return Err(bad("range count out of range"));
        }
        let raw = take(n_ranges as usize * 32)?;
        let ranges: Vec<ShareRange> = raw
            .chunks_exact(32)
            .map(|c| ShareRange {
                batch: BatchId(c[0..16].try_into().expect("16 bytes")),
                first: u64::from_le_bytes(c[16..24].try_into().expect("8 bytes")),
                count: u64::from_le_bytes(c[24..32].try_into().expect("8 bytes")),
            })
            .collect();
        let expected = hasher.finalize();
        let mut crc = [0u8; 4];
        read_exact_or_truncated(r, &mut crc, "share header")?;
        if u32::from_le_bytes(crc) != expected {
            return Err(FormatError::Checksum("share header".into()));
        }
        let header = ShareHeader {
            pool,
            parties,
            party,
            checkout,
            ranges,
        };
        if header.ranges.iter().any(|r| r.count == 0)
            || header
                .ranges
                .iter()
                .try_fold(0u64, |a, r| a.checked_add(r.count))
                != Some(items)
        {
            return Err(bad("ranges do not add up to the item count"));
        }
        Ok(header)
    }
}

fn read_exact_or_truncated<R: Read>(
    r: &mut R,
    buf: &mut [u8],
    what: &'static str,
) -> Result<(), FormatError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(FormatError::Truncated {
                    what,
                    expected: buf.len() as u64,
                    found: got as u64,
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(FormatError::Invalid {
                    what,
                    why: format!("read failed: {e}"),
                })
            }
        }
    }
    Ok(())
}

/// Writes a share stream: header first, then records in order, then the trailer.
pub struct ShareWriter<W: Write> {
    inner: W,
    hasher: crc32fast::Hasher,
    remaining: u64,
}

impl<W: Write> ShareWriter<W> {
    /// Writes the header.
    ///
    /// # Errors
    /// IO errors from `inner`.
    pub fn new(mut inner: W, header: &ShareHeader) -> io::Result<Self> {
        inner.write_all(&header.encode())?;
        Ok(ShareWriter {
            inner,
            hasher: crc32fast::Hasher::new(),
            remaining: header.items() * header.record_bytes() as u64,
        })
    }

    /// Appends encoded records.
    ///
    /// # Errors
    /// IO errors, or more bytes than the header announced.
    pub fn write_records(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.len() as u64 > self.remaining {
            return Err(io::Error::other(
                "more records than the share header announced",
            ));
        }
        self.remaining -= bytes.len() as u64;
        self.hasher.update(bytes);
        self.inner.write_all(bytes)
    }

    /// Writes the trailer and returns the inner writer.
    ///
    /// # Errors
    /// IO errors, or fewer records than the header announced.
    pub fn finish(mut self) -> io::Result<W> {
        if self.remaining != 0 {
            return Err(io::Error::other(
                "fewer records than the share header announced",
            ));
        }
        let crc = self.hasher.clone().finalize();
        self.inner.write_all(&crc.to_le_bytes())?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

/// Reads a share stream incrementally and checks its trailer at the end.
pub struct ShareReader<R: Read> {
    inner: R,
    pub header: ShareHeader,
    hasher: crc32fast::Hasher,
    remaining: u64,
}

impl<R: Read> ShareReader<R> {
    /// Reads the header.
    ///
    /// # Errors
    /// [`FormatError`] as [`ShareHeader::read_from`].
    pub fn new(mut inner: R) -> Result<Self, FormatError> {
        let header = ShareHeader::read_from(&mut inner)?;
        let remaining = header
            .items()
            .checked_mul(header.record_bytes() as u64)
            .filter(|&n| n < u64::MAX)
            .ok_or(FormatError::Invalid {
                what: "share header",
                why: "item count too large".into(),
            })?;
        Ok(ShareReader {
            inner,
            header,
            hasher: crc32fast::Hasher::new(),
            remaining,
        })
    }

    /// The next up to `max_items` records (fewer where records are large: at most
    /// [`MAX_READ_BYTES`] of them, and at least one), or `None` after the last (whose trailer
    /// and end of stream have then been checked).
    ///
    /// # Errors
    /// [`FormatError`] for truncation, trailing bytes or a checksum mismatch.
    pub fn next_records(&mut self, max_items: usize) -> Result<Option<Vec<u8>>, FormatError> {
        let rb = self.header.record_bytes() as u64;
        let max_items = max_items.min((MAX_READ_BYTES / rb.max(1)).max(1) as usize);
        if self.remaining == 0 {
            let mut crc = [0u8; 4];
            read_exact_or_truncated(&mut self.inner, &mut crc, "share trailer")?;
            if u32::from_le_bytes(crc) != self.hasher.clone().finalize() {
                return Err(FormatError::Checksum("share records".into()));
            }
            let mut probe = [0u8; 1];
            if self
                .inner
                .read(&mut probe)
                .map_err(|e| FormatError::Invalid {
                    what: "share stream",
                    why: e.to_string(),
                })?
                != 0
            {
                return Err(FormatError::Trailing {
                    what: "share stream",
                    extra: 1,
                });
            }
            self.remaining = u64::MAX; // finished
            return Ok(None);
        }
        if self.remaining == u64::MAX {
            return Ok(None);
        }
        let n = (max_items as u64 * rb).min(self.remaining) as usize;
        let mut buf = vec![0u8; n];
        read_exact_or_truncated(&mut self.inner, &mut buf, "share records")?;
        self.hasher.update(&buf);
        self.remaining -= n as u64;
        Ok(Some(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::P61;

    fn header() -> ShareHeader {
        ShareHeader {
            pool: PoolSpec::new(Kind::Square, Domain::Fp(P61)),
            parties: 3,
            party: 2,
            checkout: "job-7".into(),
            ranges: vec![
                ShareRange {
                    batch: BatchId([1; 16]),
                    first: 0,
                    count: 3,
                },
                ShareRange {
                    batch: BatchId([2; 16]),
                    first: 10,
                    count: 2,
                },
            ],
        }
    }

    #[test]
    fn a_written_stream_reads_back() {
        let h = header();
        let records: Vec<u8> = (0..5 * 16).map(|i| i as u8 % 7).collect();
        let mut w = ShareWriter::new(Vec::new(), &h).unwrap();
        w.write_records(&records[..32]).unwrap();
        w.write_records(&records[32..]).unwrap();
        let bytes = w.finish().unwrap();
        let mut r = ShareReader::new(&bytes[..]).unwrap();
        assert_eq!(r.header, h);
        let mut got = Vec::new();
        while let Some(b) = r.next_records(2).unwrap() {
            got.extend(b);
        }
        assert_eq!(got, records);
    }

    #[test]
    fn short_writes_are_refused() {
        let w = ShareWriter::new(Vec::new(), &header()).unwrap();
        assert!(w.finish().is_err());
    }
}
