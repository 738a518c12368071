//! The seam for generators without a dealer (`PartyGenerator`), proven with the parties' own
//! input masks: each party makes only its own share over a channel to the others, the leader
//! commits once every party has staged, the material reconstructs across parties, a
//! non-owner's store holds seeds only, and a party that fails leaves nothing committed.

mod common;

use common::{consortium, pool};
use larder::consortium::verify;
use larder::generate::{
    mesh, BatchPlan, Channel, GenerateError, OwnMasks, PartyBatch, PartyGenerator,
};
use larder::material::batch::{HEADER_BYTES, SEED_BYTES};
use larder::material::{BatchHeader, BatchId, Maker, PoolSpec};
use zeroize::Zeroizing;

/// Every batch file in party `p`'s store.
fn batch_files(root: &std::path::Path, p: u8) -> Vec<Vec<u8>> {
    let dir = root.join(format!("c/party-{p}/batches"));
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect()
}

#[test]
fn input_masks_made_by_the_parties_reconstruct_and_only_the_owner_stores_values() {
    for (parties, id, owner) in [
        (3u8, "input-mask-p128-o1", 1u8),
        (2, "input-mask-z64-o0", 0),
        (4, "input-mask-p61-o3", 3),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let p = pool(id);
        let c = consortium(dir.path(), parties, 1000, &[p]);
        let mut own: Vec<OwnMasks> = (0..parties)
            .map(|i| OwnMasks::from_seed([i + 1; 32]))
            .collect();
        let report = c.make(&mut own, p, 2500, |_| {}).unwrap();
        assert_eq!((report.items, report.batches), (2500, 3), "{id}");
        for s in c.stock().unwrap() {
            assert_eq!((s[&p].available, s[&p].staged), (2500, 0), "{id}");
        }
        for party in 0..parties {
            for file in batch_files(dir.path(), party) {
                let h = BatchHeader::decode(&file).unwrap();
                assert_eq!(h.maker, Maker::Parties, "{id}");
                // A non-owner's share is its seeds alone; the owner's holds the masks too.
                let seeds_only = HEADER_BYTES as u64 + h.chunks() * (SEED_BYTES as u64 + 4);
                assert_eq!(
                    file.len() as u64 == seeds_only,
                    party != owner,
                    "{id}: party {party}"
                );
            }
        }
        let files = c.take(p, 2500, "masks", &dir.path().join("out")).unwrap();
        assert_eq!(verify(&files).unwrap().items, 2500, "{id}");
    }
}

/// A channel end that hands on everything but replaces one party's message with zeros: an
/// owner that leaves out a party's shares.
struct Dropping<C> {
    inner: C,
    drop_from: u8,
}

impl<C: Channel> Channel for Dropping<C> {
    fn me(&self) -> u8 {
        self.inner.me()
    }
    fn send(&mut self, to: u8, m: Zeroizing<Vec<u8>>) -> Result<(), GenerateError> {
        self.inner.send(to, m)
    }
    fn recv(&mut self, from: u8) -> Result<Zeroizing<Vec<u8>>, GenerateError> {
        let m = self.inner.recv(from)?;
        Ok(if from == self.drop_from {
            Zeroizing::new(vec![0; m.len()])
        } else {
            m
        })
    }
}

/// Runs one batch of `p` with every party's [`OwnMasks`], the owner's channel wrapped by
/// `wrap`; returns every party's share.
fn one_batch(p: PoolSpec, parties: u8, owner: u8, drop_from: Option<u8>) -> Vec<PartyBatch> {
    let plan = BatchPlan {
        pool: p,
        parties,
        batch: BatchId([9; 16]),
        items: 1500,
        correction: 0,
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = mesh(parties)
            .into_iter()
            .enumerate()
            .map(|(i, end)| {
                let plan = &plan;
                s.spawn(move || {
                    let mut g = OwnMasks::from_seed([i as u8 + 1; 32]);
                    match drop_from {
                        Some(d) if i as u8 == owner => g.generate_share(
                            plan,
                            &mut Dropping {
                                inner: end,
                                drop_from: d,
                            },
                        ),
                        _ => {
                            let mut end = end;
                            g.generate_share(plan, &mut end)
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    })
}

/// Stages and commits one batch's shares in a fresh consortium, checks out every item and
/// reconstructs them.
fn reconstructs(p: PoolSpec, shares: Vec<PartyBatch>) -> Result<u64, String> {
    let dir = tempfile::tempdir().unwrap();
    let c = consortium(dir.path(), shares.len() as u8, 1000, &[p]);
    let id = shares[0].header.batch;
    for (i, s) in shares.iter().enumerate() {
        c.store(i as u8).stage(&s.bytes).unwrap();
    }
    for i in 0..shares.len() as u8 {
        c.store(i).activate(&id).unwrap();
    }
    let files = c.take(p, 1500, "all", &dir.path().join("out")).unwrap();
    verify(&files).map(|r| r.items).map_err(|e| e.to_string())
}

#[test]
fn the_reconstruction_check_catches_an_owner_that_leaves_out_a_share() {
    let p = pool("input-mask-p128-o0");
    assert_eq!(reconstructs(p, one_batch(p, 3, 0, None)), Ok(1500));
    // Negative control: the same protocol with party 2's shares replaced by zeros at the owner.
    let e = reconstructs(p, one_batch(p, 3, 0, Some(2))).unwrap_err();
    assert!(e.contains("mask"), "{e}");
}

/// A party's generator that fails before sending anything.
struct Failing;

impl PartyGenerator for Failing {
    fn name(&self) -> &'static str {
        "failing"
    }
    fn supports(&self, _: &PoolSpec) -> bool {
        true
    }
    fn generate_share(
        &mut self,
        _: &BatchPlan,
        _: &mut dyn Channel,
    ) -> Result<PartyBatch, GenerateError> {
        Err(GenerateError::Plan("this party's machine failed".into()))
    }
}

/// Either generator, so one party can fail among honest ones.
enum Party {
    Honest(Box<OwnMasks>),
    Broken(Failing),
}

impl PartyGenerator for Party {
    fn name(&self) -> &'static str {
        "mixed"
    }
    fn supports(&self, p: &PoolSpec) -> bool {
        match self {
            Party::Honest(g) => g.supports(p),
            Party::Broken(g) => g.supports(p),
        }
    }
    fn generate_share(
        &mut self,
        plan: &BatchPlan,
        ch: &mut dyn Channel,
    ) -> Result<PartyBatch, GenerateError> {
        match self {
            Party::Honest(g) => g.generate_share(plan, ch),
            Party::Broken(g) => g.generate_share(plan, ch),
        }
    }
}

#[test]
fn a_party_that_fails_leaves_nothing_committed_and_other_kinds_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = pool("input-mask-p128-o0");
    let triples = pool("triple-z64");
    let c = consortium(dir.path(), 3, 1000, &[p, triples]);
    let mut parties = vec![
        Party::Honest(Box::new(OwnMasks::from_os_rng())),
        Party::Honest(Box::new(OwnMasks::from_os_rng())),
        Party::Broken(Failing),
    ];
    let e = c
        .make(&mut parties, p, 2500, |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("failed"), "{e}");
    for s in c.stock().unwrap() {
        let st = s.get(&p).cloned().unwrap_or_default();
        assert_eq!((st.available, st.staged), (0, 0));
    }
    // The parties' own generator makes input masks only: a clear error, nothing made.
    let mut own: Vec<OwnMasks> = (0..3).map(|_| OwnMasks::from_os_rng()).collect();
    let e = c
        .make(&mut own, triples, 10, |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot make triple-z64"), "{e}");
}
