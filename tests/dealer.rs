//! The dealer: same output whatever the thread count, seed compression keeps storage near one
//! element per triple, and each party's file holds only that party's share.

mod common;

use larder::generate::{BatchPlan, Dealer, Generator};
use larder::material::{BatchHeader, BatchId, PoolSpec};
use larder::store::{Store, StoreError, StoreIdentity};

fn generate_with_threads(threads: usize, pool: &str) -> Vec<Vec<u8>> {
    let tp = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    tp.install(|| {
        let mut d = Dealer::from_seed([11; 32]);
        let plan = BatchPlan {
            pool: pool.parse().unwrap(),
            parties: 3,
            batch: d.next_batch_id(),
            items: 20_000,
            correction: 1,
        };
        d.generate(&plan)
            .unwrap()
            .into_iter()
            .map(|b| b.bytes.to_vec())
            .collect()
    })
}

#[test]
fn output_for_a_seed_is_the_same_whatever_the_thread_count() {
    for pool in ["triple-z64", "double-p128-t1", "inverse-p61"] {
        let one = generate_with_threads(1, pool);
        for threads in [2, 3, 8] {
            assert!(
                one == generate_with_threads(threads, pool),
                "{pool} differs with {threads} threads"
            );
        }
    }
}

#[test]
fn different_seeds_give_different_material() {
    let mut a = Dealer::from_seed([1; 32]);
    let mut b = Dealer::from_seed([2; 32]);
    let plan = BatchPlan {
        pool: "triple-z64".parse().unwrap(),
        parties: 2,
        batch: BatchId([0; 16]),
        items: 100,
        correction: 0,
    };
    assert!(a.generate(&plan).unwrap()[0].bytes != b.generate(&plan).unwrap()[0].bytes);
}

#[test]
fn only_the_correction_party_stores_explicit_values() {
    let items = 1_000_000u64;
    for (id, elem) in [("triple-z64", 8u64), ("triple-p128", 16)] {
        let pool: PoolSpec = id.parse().unwrap();
        let mut d = Dealer::from_seed([3; 32]);
        let plan = BatchPlan {
            pool,
            parties: 3,
            batch: d.next_batch_id(),
            items,
            correction: 2,
        };
        let files = d.generate(&plan).unwrap();
        let sizes: Vec<u64> = files.iter().map(|f| f.bytes.len() as u64).collect();
        let chunks = items.div_ceil(1024);
        // Seeded parties: header and a 36-byte seed+checksum per chunk, nothing per item.
        assert_eq!(sizes[0], 66 + chunks * 36);
        assert_eq!(sizes[1], 66 + chunks * 36);
        assert_eq!(sizes[2], 66 + chunks * 36 + items * elem);
        let total: u64 = sizes.iter().sum();
        assert!(
            (total as f64) <= 1.05 * (items * elem) as f64,
            "{id}: {total} bytes for {items} items"
        );
    }
}

#[test]
fn a_store_refuses_another_partys_share() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(
        dir.path(),
        StoreIdentity {
            consortium: "t".into(),
            parties: 3,
            party: 0,
        },
    )
    .unwrap();
    let mut d = Dealer::from_seed([4; 32]);
    let plan = BatchPlan {
        pool: "triple-z64".parse().unwrap(),
        parties: 3,
        batch: d.next_batch_id(),
        items: 10,
        correction: 0,
    };
    let files = d.generate(&plan).unwrap();
    let err = store.stage(&files[1].bytes).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::WrongParty {
                got: 1,
                want: 0,
                ..
            }
        ),
        "{err}"
    );
    assert!(store.all_batches().unwrap().is_empty());
    store.stage(&files[0].bytes).unwrap();
    assert_eq!(BatchHeader::decode(&files[0].bytes).unwrap().party, 0);
}

#[test]
fn correction_party_rotates_across_dealt_batches() {
    let dir = tempfile::tempdir().unwrap();
    let pool = common::pool("triple-z64");
    let c = common::consortium(dir.path(), 3, 1000, &[pool]);
    common::deal(&c, pool, 6000, 1);
    // Each party stores explicit values for exactly two of the six batches.
    for p in 0..3 {
        let bytes = c.store(p).disk_bytes();
        let explicit = 2 * 1000 * 8;
        assert!(
            bytes > explicit && bytes < explicit + 3_000_000,
            "party {p}: {bytes}"
        );
    }
    let dir_sizes: Vec<u64> = (0..3)
        .map(|p| {
            std::fs::read_dir(c.store(p).dir().join("batches"))
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .filter(|&l| l > 8000)
                .count() as u64
        })
        .collect();
    assert_eq!(dir_sizes, vec![2, 2, 2]);
}
