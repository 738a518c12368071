//! Decoders see bytes from disk and from the network: truncated, flipped and foreign bytes are
//! clear errors, never a panic and never wrong data.

use larder::generate::{BatchPlan, Dealer, Generator};
use larder::material::{
    BatchHeader, BatchId, FormatError, PoolSpec, ShareHeader, ShareRange, ShareReader, ShareWriter,
};
use proptest::prelude::*;
use std::sync::OnceLock;

/// A real batch file of party 0 (the correction party) with 2 chunks.
fn batch_file() -> &'static [u8] {
    static FILE: OnceLock<Vec<u8>> = OnceLock::new();
    FILE.get_or_init(|| {
        let mut d = Dealer::from_seed([5; 32]);
        let plan = BatchPlan {
            pool: "triple-p128".parse().unwrap(),
            parties: 3,
            batch: BatchId([1; 16]),
            items: 1500,
            correction: 0,
        };
        d.generate(&plan).unwrap()[0].bytes.to_vec()
    })
}

fn share_stream() -> &'static [u8] {
    static FILE: OnceLock<Vec<u8>> = OnceLock::new();
    FILE.get_or_init(|| {
        let h = ShareHeader {
            pool: "triple-z64".parse::<PoolSpec>().unwrap(),
            parties: 2,
            party: 1,
            checkout: "c-1".into(),
            ranges: vec![ShareRange {
                batch: BatchId([3; 16]),
                first: 5,
                count: 40,
            }],
        };
        let mut w = ShareWriter::new(Vec::new(), &h).unwrap();
        w.write_records(&vec![0xab; 40 * 24]).unwrap();
        w.finish().unwrap()
    })
}

fn read_all(bytes: &[u8]) -> Result<Vec<u8>, FormatError> {
    let mut r = ShareReader::new(bytes)?;
    let mut out = Vec::new();
    while let Some(b) = r.next_records(7)? {
        out.extend(b);
    }
    Ok(out)
}

#[test]
fn an_intact_batch_file_verifies() {
    let h = BatchHeader::verify_file(batch_file()).unwrap();
    assert_eq!(h.items, 1500);
    assert_eq!(read_all(share_stream()).unwrap().len(), 40 * 24);
}

#[test]
fn foreign_and_future_files_are_named_as_such() {
    assert_eq!(
        BatchHeader::verify_file(
            b"GIF89a.............................................................."
        ),
        Err(FormatError::Foreign("batch"))
    );
    let mut f = batch_file().to_vec();
    f[8] = 9; // format version 9
    assert!(matches!(
        BatchHeader::verify_file(&f),
        Err(FormatError::UnsupportedVersion { found: 9, .. })
    ));
    assert!(matches!(
        read_all(batch_file()),
        Err(FormatError::Foreign("share"))
    ));
    assert!(matches!(
        BatchHeader::verify_file(share_stream()),
        Err(FormatError::Foreign("batch"))
    ));
}

#[test]
fn trailing_bytes_are_refused() {
    let mut f = batch_file().to_vec();
    f.push(0);
    assert!(matches!(
        BatchHeader::verify_file(&f),
        Err(FormatError::Trailing { extra: 1, .. })
    ));
    let mut s = share_stream().to_vec();
    s.push(0);
    assert!(matches!(read_all(&s), Err(FormatError::Trailing { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_truncation_of_a_batch_file_is_an_error(len in 0usize..24_500) {
        let f = batch_file();
        let len = len.min(f.len() - 1);
        prop_assert!(BatchHeader::verify_file(&f[..len]).is_err());
    }

    #[test]
    fn every_flipped_byte_of_a_batch_file_is_an_error(at in 0usize..24_500, mask in 1u8..=255) {
        let mut f = batch_file().to_vec();
        let at = at % f.len();
        f[at] ^= mask;
        prop_assert!(BatchHeader::verify_file(&f).is_err(), "flip at {} accepted", at);
    }

    #[test]
    fn random_bytes_never_panic_a_batch_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = BatchHeader::verify_file(&bytes);
        let mut with_magic = b"LARDERBT\x01\x00".to_vec();
        with_magic.extend(&bytes);
        let _ = BatchHeader::verify_file(&with_magic);
    }

    #[test]
    fn every_truncation_of_a_share_stream_is_an_error(len in 0usize..2000) {
        let s = share_stream();
        let len = len.min(s.len() - 1);
        prop_assert!(read_all(&s[..len]).is_err());
    }

    #[test]
    fn every_flipped_byte_of_a_share_stream_is_an_error(at in 0usize..2000, mask in 1u8..=255) {
        let mut s = share_stream().to_vec();
        let at = at % s.len();
        s[at] ^= mask;
        prop_assert!(read_all(&s).is_err(), "flip at {} accepted", at);
    }

    #[test]
    fn random_bytes_never_panic_a_share_reader(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = read_all(&bytes);
        let mut with_magic = b"LARDERSH\x01\x00".to_vec();
        with_magic.extend(&bytes);
        let _ = read_all(&with_magic);
    }
}

#[test]
fn a_header_claiming_huge_chunks_is_refused() {
    // A small seeded-only file could otherwise claim 2^32 items per chunk and make expansion
    // allocate gigabytes.
    let mut f = batch_file()[..66].to_vec();
    f[57..61].copy_from_slice(&u32::MAX.to_le_bytes());
    let crc = {
        let mut h = crc32fast::Hasher::new();
        h.update(&f[..62]);
        h.finalize()
    };
    f[62..66].copy_from_slice(&crc.to_le_bytes());
    let err = BatchHeader::decode(&f).unwrap_err();
    assert!(err.to_string().contains("must hold 1024 items"), "{err}");
}
