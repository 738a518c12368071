//! MP-SPDZ preprocessing files for its semi-honest additive protocols.
//!
//! The facts this follows are in `docs/engines/mp-spdz.md` (read from MP-SPDZ's source and
//! confirmed by its `semi-party.x` and `semi2k-party.x` reading independently written files):
//!
//! ```text
//! Player-Data/<n>-<Dp|DR>-<bits>/<Type>-<Dp|DR>-P<party>[-T<thread>]
//! u64 LE header length L | L header bytes | records, no framing
//!   prime field header: "gfp" 0x00 | u32 LE byte length of p | p big-endian | i32 LE Montgomery
//!   Z_2^64 header:      "Z2^64" | i32 LE 64
//! element: ceil(bits(p)/64) LE 64-bit limbs of x * 2^(64 limbs) mod p (Montgomery) or of x;
//!          8 LE bytes in Z_2^64
//! Params-Data (prime fields): "<p in decimal>\n<montgomery 0|1>\n"
//! ```
//!
//! A Larder record (triple a, b, c; square a, a^2; inverse a, 1/a; bit b) is already in
//! MP-SPDZ's order and width, so a record converts in place: canonical output copies it, and
//! Montgomery output multiplies each element by 2^(64 limbs) mod p.
//!
//! Refused, with the reason: kinds MP-SPDZ has no file for in these protocols (input masks:
//! inputs are shared with pairwise keys; Shamir doubles: not additive), Z_2^128 (the release
//! `semi2k-party.x` is built for Z_2^64), and primes of more than 128 bits (none exist here).

use crate::material::{FormatError, Kind, PoolSpec, ShareHeader, ShareReader};
use crate::math::{Domain, Ring};
use crate::secret_file::SecretFile;
use crate::with_ring;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Why material could not be written for MP-SPDZ.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("MP-SPDZ cannot read {what}: {why}")]
    Unsupported { what: String, why: &'static str },
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}", .0)]
    Conflict(String),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How one party's share of one pool is laid out for MP-SPDZ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub kind: Kind,
    pub domain: Domain,
    pub parties: u8,
    pub party: u8,
    /// Prime fields only: elements in Montgomery form (MP-SPDZ's default) or canonical.
    pub montgomery: bool,
    /// Matrix triples: their shape, which names the file.
    pub shape: Option<crate::material::Shape>,
}

impl Layout {
    /// The layout of `pool` at `party` of `parties`, or why MP-SPDZ cannot read it.
    ///
    /// # Errors
    /// [`ExportError::Unsupported`] for pools these MP-SPDZ protocols have no file for.
    pub fn new(
        pool: PoolSpec,
        parties: u8,
        party: u8,
        montgomery: bool,
    ) -> Result<Self, ExportError> {
        let refuse = |why| {
            Err(ExportError::Unsupported {
                what: format!("{pool}"),
                why,
            })
        };
        match pool.kind {
            // Binary triples are the bit type's `Triples-DB` (64 bit triples per word);
            // daBits are `daBits-DR` (the arithmetic share, then the binary word).
            Kind::Triple
            | Kind::Square
            | Kind::Bit
            | Kind::Inverse
            | Kind::BinaryTriple
            | Kind::Dabit => {}
            Kind::InputMask => {
                return refuse(
                    "its semi-honest additive protocols share inputs with pairwise keys and \
                     read no input-mask file",
                )
            }
            Kind::Double => {
                return refuse(
                    "Shamir double sharings are not additive shares; semi, hemi and semi2k \
                     read additive material only",
                )
            }
            // `Matrix-<m>x<k>x<n>-P<p>`: A, B, C row-major, read by semi, semi2k and hemi for
            // private matrix products (Protocols/MatrixFile.h, Hemi.hpp).
            Kind::MatrixTriple => {}
            Kind::ConvTriple => {
                return refuse(
                    "MP-SPDZ reads no convolution triples (its conv2ds falls back to matrix \
                     or plain triples)",
                )
            }
            Kind::Wrap => {
                return refuse(
                    "MP-SPDZ reads no wrap file (its truncation makes its own randomness); \
                     wraps are CrypTen's, served through the share stream",
                )
            }
        }
        if pool.threshold.is_some() {
            return refuse("threshold (Shamir) pools are not additive shares");
        }
        match pool.domain {
            Domain::Z64 | Domain::Fp(_) => {}
            Domain::Z128 => {
                return refuse(
                    "semi2k-party.x reads Z_2^64; other ring sizes need an MP-SPDZ built with \
                     another RING_SIZE, whose files this exporter does not write",
                )
            }
        }
        if parties < 2 || party >= parties {
            return Err(ExportError::Conflict(format!(
                "party {party} of {parties} is not a party of an MP-SPDZ computation"
            )));
        }
        Ok(Layout {
            kind: pool.kind,
            domain: pool.domain,
            parties,
            party,
            montgomery: montgomery && pool.domain.is_field(),
            shape: pool.shape,
        })
    }

    /// The layout of a Larder share stream.
    ///
    /// # Errors
    /// As [`Layout::new`].
    pub fn of_stream(header: &ShareHeader, montgomery: bool) -> Result<Self, ExportError> {
        Layout::new(header.pool, header.parties, header.party, montgomery)
    }

    fn short(&self) -> &'static str {
        if self.kind == Kind::BinaryTriple {
            // MP-SPDZ's bit type, `SemiSecret` over 64-bit words (`BitVec`).
            "DB"
        } else if self.domain.is_field() {
            "Dp"
        } else {
            "DR"
        }
    }

    /// Bit length of p, or k for Z_2^k.
    pub fn bits(&self) -> u32 {
        match self.domain {
            Domain::Fp(p) => 128 - p.leading_zeros(),
            _ => 64,
        }
    }

    fn limbs(&self) -> usize {
        self.bits().div_ceil(64) as usize
    }

    /// Bytes of one element in the file.
    pub fn element_bytes(&self) -> usize {
        self.limbs() * 8
    }

    /// Whether records carry a binary share MP-SPDZ reads as one 64-bit word where Larder
    /// stores a wider element (a daBit over a prime field).
    pub fn narrow_binary_share(&self) -> bool {
        self.kind == Kind::Dabit && self.domain.is_field()
    }

    /// Bytes of one item's record in the file, given its bytes in Larder's stream.
    pub fn record_bytes(&self, stream_record: usize) -> usize {
        if self.narrow_binary_share() {
            self.element_bytes() + 8
        } else {
            stream_record
        }
    }

    /// MP-SPDZ's name for this kind of material.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Triple => "Triples",
            Kind::Square => "Squares",
            Kind::Bit => "Bits",
            Kind::Inverse => "Inverses",
            Kind::BinaryTriple => "Triples",
            Kind::Dabit => "daBits",
            Kind::MatrixTriple => "Matrix",
            Kind::InputMask | Kind::Double | Kind::Wrap | Kind::ConvTriple => {
                unreachable!("refused in Layout::new")
            }
        }
    }

    /// The directory under `Player-Data`, such as `3-Dp-128`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}-{}", self.parties, self.short(), self.bits())
    }

    /// The file name, such as `Triples-Dp-P0`, or `Triples-Dp-P0-T2` for thread 2 (`-f` mode).
    /// Matrix triples: `Matrix-<m>x<k>x<n>-P<p>`, one file per party (see
    /// [`Self::check_thread`]).
    pub fn file_name(&self, thread: Option<u32>) -> String {
        if let Some(shape) = self.shape {
            return format!("Matrix-{shape}-P{}", self.party);
        }
        let base = format!("{}-{}-P{}", self.type_name(), self.short(), self.party);
        match thread {
            Some(t) => format!("{base}-T{t}"),
            None => base,
        }
    }

    /// Refuses per-thread files (`-f` mode, pipes) where MP-SPDZ reads one file per party:
    /// matrix triples.
    ///
    /// # Errors
    /// [`ExportError::Conflict`] naming the one file MP-SPDZ reads.
    pub fn check_thread(&self, thread: Option<u32>) -> Result<(), ExportError> {
        match (self.shape, thread) {
            (Some(_), Some(_)) => Err(ExportError::Conflict(format!(
                "MP-SPDZ reads matrix triples from one file per party ({}), not per thread or \
                 from a pipe: export them as one file (-F mode)",
                self.file_name(None)
            ))),
            _ => Ok(()),
        }
    }

    /// The file header: its length as u64 LE, then the bytes MP-SPDZ compares with its own.
    pub fn header(&self) -> Vec<u8> {
        let mut body = Vec::new();
        match self.domain {
            // The bit type's signature: its type string, then sizeof(long) as a size_t.
            _ if self.kind == Kind::BinaryTriple => {
                body.extend_from_slice(b"binary secret");
                body.extend_from_slice(&8u64.to_le_bytes());
            }
            Domain::Fp(p) => {
                let be = p.to_be_bytes();
                let skip = be.iter().take_while(|&&b| b == 0).count();
                body.extend_from_slice(b"gfp");
                body.push(0); // sign
                body.extend_from_slice(&((be.len() - skip) as u32).to_le_bytes());
                body.extend_from_slice(&be[skip..]);
                body.extend_from_slice(&i32::from(self.montgomery).to_le_bytes());
            }
            _ => {
                body.extend_from_slice(b"Z2^64");
                body.extend_from_slice(&64i32.to_le_bytes());
            }
        }
        let mut out = (body.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&body);
        out
    }

    /// The `Params-Data` file of a prime-field directory.
    pub fn params_data(&self) -> Option<String> {
        self.domain
            .modulus()
            .map(|p| format!("{p}\n{}\n", u8::from(self.montgomery)))
    }

    /// Rewrites Larder records (canonical little-endian elements) into MP-SPDZ's elements, in
    /// place.
    ///
    /// # Errors
    /// An element that is not canonical (the stream is corrupt).
    pub fn convert_in_place(&self, records: &mut [u8]) -> Result<(), FormatError> {
        if !self.montgomery {
            return Ok(());
        }
        let p = self
            .domain
            .modulus()
            .expect("Montgomery only for prime fields");
        // R = 2^(64 limbs) mod p.
        let r_mod_p = match self.limbs() {
            1 => (1u128 << 64) % p,
            _ => (u128::MAX % p + 1) % p,
        };
        let eb = self.element_bytes();
        let bad = || FormatError::Invalid {
            what: "share records",
            why: "an element is not below the modulus".into(),
        };
        with_ring!(self.domain.ring(), r => {
            debug_assert_eq!(r.elem_bytes(), eb);
            let factor = r.reduce(r_mod_p);
            for e in records.chunks_exact_mut(eb) {
                let x = r.decode(e).ok_or_else(bad)?;
                r.encode(r.mul(x, factor), e);
            }
        });
        Ok(())
    }
}

/// Items converted per step (bounds memory whatever the checkout's size).
const STEP_ITEMS: usize = 1 << 14;

/// Writes `shares` to `out` in MP-SPDZ's format: header, then every record. Returns the items
/// written. The stream's trailer is checked after the last record.
///
/// # Errors
/// A corrupt or truncated stream, or IO errors writing `out`.
pub fn write<R: Read, W: Write>(
    shares: &mut ShareReader<R>,
    layout: &Layout,
    out: &mut W,
) -> Result<u64, ExportError> {
    let io = |source| ExportError::Io {
        path: PathBuf::from("<output>"),
        source,
    };
    out.write_all(&layout.header()).map_err(io)?;
    let mut items = 0u64;
    let rb = shares.header.record_bytes();
    while let Some(mut records) = shares.next_records(STEP_ITEMS)? {
        if layout.narrow_binary_share() {
            // A daBit over a prime field: MP-SPDZ reads the arithmetic share (converted),
            // then the binary share as one 64-bit word (Larder stores it as an element below
            // 2^64, little-endian: its first 8 bytes).
            let eb = layout.element_bytes();
            let mut file = Vec::with_capacity(records.len() / (2 * eb) * (eb + 8));
            for rec in records.chunks_exact_mut(2 * eb) {
                let (arith, word) = rec.split_at_mut(eb);
                layout.convert_in_place(arith)?;
                file.extend_from_slice(arith);
                file.extend_from_slice(&word[..8]);
            }
            out.write_all(&file).map_err(io)?;
            zeroize::Zeroize::zeroize(&mut file);
        } else {
            layout.convert_in_place(&mut records)?;
            out.write_all(&records).map_err(io)?;
        }
        items += (records.len() / rb) as u64;
        zeroize::Zeroize::zeroize(&mut records);
    }
    out.flush().map_err(io)?;
    Ok(items)
}

/// Names the file an IO error of [`write`] happened on.
fn at(path: &Path, e: ExportError) -> ExportError {
    match e {
        ExportError::Io { source, .. } => io_at(path)(source),
        e => e,
    }
}

/// Creates `<player_data>/<n>-<short>-<bits>/` and, for prime fields, its `Params-Data`; an
/// existing `Params-Data` must say the same (files of one directory share one prime).
///
/// # Errors
/// IO errors, or a directory already prepared for another prime or encoding.
pub fn prepare_dir(player_data: &Path, layout: &Layout) -> Result<PathBuf, ExportError> {
    let dir = player_data.join(layout.dir_name());
    fs::create_dir_all(&dir).map_err(io_at(&dir))?;
    // The VM checks that its gf2n preprocessing directory exists before it reads a triple,
    // even for a program with no gf2n work: `<n>-D2-128` (semi, semi2k) or `<n>-D2-40`
    // (hemi). Empty directories are enough.
    for gf2n in GF2N_DIRS {
        let d = player_data.join(format!("{}-D2-{gf2n}", layout.parties));
        fs::create_dir_all(&d).map_err(io_at(&d))?;
    }
    if let Some(params) = layout.params_data() {
        let path = dir.join("Params-Data");
        match fs::read_to_string(&path) {
            Ok(existing) if existing == params => {}
            Ok(existing) => {
                return Err(ExportError::Conflict(format!(
                    "{} already says {:?}, not {:?}: files for another prime or encoding are \
                     there; use another Player-Data directory",
                    path.display(),
                    existing,
                    params
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                SecretFile::write(&path, |f| f.write_all(params.as_bytes()))
                    .map_err(io_at(&path))?;
            }
            Err(e) => return Err(io_at(&path)(e)),
        }
    }
    Ok(dir)
}

/// Bit lengths of the gf2n directories MP-SPDZ's VMs look for (see [`prepare_dir`]).
pub const GF2N_DIRS: [u32; 2] = [128, 40];

/// What one export wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exported {
    pub path: PathBuf,
    /// Items written (into a pipe: at most this many were read, as the pipe's buffer may hold
    /// some the engine never took).
    pub items: u64,
    /// Items of the checkout never written because the engine closed its pipe first: they
    /// were downloaded (consumed) and are burned, never served again.
    pub unread: u64,
}

/// Writes a whole share stream as a regular MP-SPDZ file under `player_data` (for thread
/// `thread` in `-f` mode, or the one file of `-F` mode), replacing an older file only once the
/// new one is complete and its stream checked.
///
/// # Errors
/// As [`Layout::of_stream`], [`prepare_dir`] and [`write`].
pub fn export_file<R: Read>(
    mut shares: ShareReader<R>,
    player_data: &Path,
    thread: Option<u32>,
    montgomery: bool,
) -> Result<Exported, ExportError> {
    let layout = Layout::of_stream(&shares.header, montgomery)?;
    layout.check_thread(thread)?;
    let path = prepare_dir(player_data, &layout)?.join(layout.file_name(thread));
    let mut file = SecretFile::create(&path).map_err(io_at(&path))?;
    let items = write(&mut shares, &layout, file.writer()).map_err(|e| at(&path, e))?;
    file.commit().map_err(io_at(&path))?;
    Ok(Exported {
        path,
        items,
        unread: 0,
    })
}

/// Streams a share stream into thread `thread`'s named pipe under `player_data` (created if
/// missing), once the engine opens it.
///
/// # Errors
/// As [`Layout::of_stream`], [`prepare_dir`], [`make_pipe`] and [`write`].
pub fn export_pipe<R: Read>(
    shares: ShareReader<R>,
    player_data: &Path,
    thread: u32,
    montgomery: bool,
) -> Result<Exported, ExportError> {
    let layout = Layout::of_stream(&shares.header, montgomery)?;
    layout.check_thread(Some(thread))?;
    let path = prepare_dir(player_data, &layout)?.join(layout.file_name(Some(thread)));
    make_pipe(&path)?;
    let pipe = open_pipe(&path)?;
    export_to_pipe(shares, &layout, pipe, path)
}

/// Creates a named pipe at `path` (an existing pipe is reused; any other file is refused).
///
/// # Errors
/// IO errors, or something other than a pipe at `path`.
pub fn make_pipe(path: &Path) -> Result<(), ExportError> {
    use std::os::unix::fs::FileTypeExt;
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_fifo() => Ok(()),
        Ok(_) => Err(ExportError::Conflict(format!(
            "{} exists and is not a named pipe; remove it to stream into a pipe there",
            path.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|e| io_at(path)(io::Error::from(e)))
        }
        Err(e) => Err(io_at(path)(e)),
    }
}

/// Opens a named pipe for writing; blocks until a reader (the engine's thread) opens it.
///
/// # Errors
/// IO errors.
pub fn open_pipe(path: &Path) -> Result<File, ExportError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_at(path))
}

/// MP-SPDZ reads preprocessing in blocks of this many items.
pub const READ_BLOCK: u64 = 101;

/// A checkout written for MP-SPDZ (`larder checkout --format mp-spdz`).
#[derive(Clone, Debug)]
pub struct CheckoutPlan {
    pub id: String,
    pub pool: PoolSpec,
    pub count: u64,
    /// MP-SPDZ's `Player-Data` directory.
    pub player_data: PathBuf,
    /// Per-thread files (`-f` mode): thread `t` gets its own checkout `<id>.T<t>` of an even
    /// share of `count`. `None`: one file under `id` (`-F` mode).
    pub threads: Option<u32>,
    /// Named pipes instead of files (needs per-thread files; one thread if `threads` is
    /// `None`). A thread's items are checked out only once the engine opens its pipe.
    pub pipes: bool,
    pub montgomery: bool,
}

impl CheckoutPlan {
    /// Checkout id, thread and item count of every file.
    pub fn parts(&self) -> Result<Vec<(String, Option<u32>, u64)>, ExportError> {
        let threads = match (self.threads, self.pipes) {
            (None, false) => return Ok(vec![(self.id.clone(), None, self.count)]),
            (None, true) => 1,
            (Some(t), _) => t,
        };
        if threads == 0 || self.count < threads as u64 {
            return Err(ExportError::Conflict(format!(
                "{} items cannot be split over {threads} threads",
                self.count
            )));
        }
        let (each, extra) = (self.count / threads as u64, self.count % threads as u64);
        Ok((0..threads)
            .map(|t| {
                let n = each + u64::from((t as u64) < extra);
                (format!("{}.T{t}", self.id), Some(t), n)
            })
            .collect())
    }
}

/// Writes a share stream for MP-SPDZ into a pipe the engine has opened; returns the items.
///
/// # Errors
/// Stream, format and IO errors (naming the pipe).
pub fn export_to_pipe<R: Read>(
    mut shares: ShareReader<R>,
    layout: &Layout,
    pipe: File,
    path: PathBuf,
) -> Result<Exported, ExportError> {
    let total = shares.header.items();
    let record = layout.record_bytes(shares.header.record_bytes()) as u64;
    let mut w = io::BufWriter::with_capacity(1 << 20, Counted { pipe, bytes: 0 });
    match write(&mut shares, layout, &mut w) {
        Ok(items) => Ok(Exported {
            path,
            items,
            unread: 0,
        }),
        // The engine closed its end: it needed fewer items than were checked out. What it
        // did not take is gone with the download (never served again), which is a note for
        // the operator, not a failure of the run.
        Err(ExportError::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => {
            let taken = w
                .get_ref()
                .bytes
                .saturating_sub(layout.header().len() as u64);
            let items = (taken / record.max(1)).min(total);
            // Nothing more to write; dropping the writer must not try again.
            let (_, _) = w.into_parts();
            Ok(Exported {
                path,
                items,
                unread: total - items,
            })
        }
        Err(e) => Err(at(&path, e)),
    }
}

/// A pipe that counts the bytes it took.
struct Counted {
    pipe: File,
    bytes: u64,
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.pipe.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.pipe.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::P128;

    #[test]
    fn headers_match_the_format_documents_examples() {
        let l = Layout::new("triple-p128".parse().unwrap(), 3, 0, true).unwrap();
        assert_eq!(
            hex::encode(l.header()),
            "1c00000000000000676670001000000080000000000000000000000000\
             1b800101000000"
        );
        let p63 = (1u128 << 63) + 327_681;
        let l = Layout::new(
            PoolSpec::new(Kind::Triple, Domain::prime(p63).unwrap()),
            2,
            1,
            true,
        )
        .unwrap();
        assert_eq!(
            hex::encode(l.header()),
            "140000000000000067667000080000008000000000050001\
             01000000"
        );
        let l = Layout::new("triple-z64".parse().unwrap(), 2, 1, true).unwrap();
        assert_eq!(
            hex::encode(l.header()),
            "09000000000000005a325e363440000000"
        );
        assert_eq!(l.dir_name(), "2-DR-64");
        assert_eq!(l.file_name(Some(3)), "Triples-DR-P1-T3");
        assert!(l.params_data().is_none(), "Z_2^64 has no Params-Data");
    }

    #[test]
    fn montgomery_multiplies_by_r() {
        let l = Layout::new("square-p128".parse().unwrap(), 2, 0, true).unwrap();
        let mut rec = [0u8; 32];
        rec[0] = 1; // a = 1, a^2 = 0 (not a square pair, only the element map is tested)
        l.convert_in_place(&mut rec).unwrap();
        let r = u128::from_le_bytes(rec[..16].try_into().unwrap());
        assert_eq!(r, (u128::MAX % P128 + 1) % P128, "1 maps to 2^128 mod p");
        assert_eq!(&rec[16..], &[0u8; 16], "0 stays 0");
        let mut bad = [0xffu8; 32];
        assert!(
            l.convert_in_place(&mut bad).is_err(),
            "a non-canonical element"
        );
    }

    #[test]
    fn what_mp_spdz_cannot_read_is_refused_with_a_reason() {
        for pool in ["input-mask-p61-o1", "double-p128-t1", "triple-z128"] {
            let e = Layout::new(pool.parse().unwrap(), 3, 0, true).unwrap_err();
            assert!(matches!(e, ExportError::Unsupported { .. }), "{pool}: {e}");
            assert!(e.to_string().contains(pool), "{e}");
        }
    }
}
