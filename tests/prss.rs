//! The PRSS generator (no dealer, honest majority): every kind it makes reconstructs across
//! the parties for n = 3, 5 and 7 with t = floor((n - 1) / 2); a party whose keys differ from
//! the others' breaks every item (the negative control: reconstruction depends on the
//! replicated keys); batch files hold derived keys, not material; key files are private.

mod common;

use common::{consortium, pool};
use larder::consortium::verify;
use larder::generate::prss::{self, KeyFile, PrssGenerator};
use larder::generate::{mesh, PartyGenerator};
use larder::material::{BatchHeader, Maker};
use larder::sharing::prss::PartyKeys;
use std::sync::Arc;

/// Every batch file in party `p`'s store.
fn batch_files(root: &std::path::Path, p: u8) -> Vec<Vec<u8>> {
    let dir = root.join(format!("c/party-{p}/batches"));
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect()
}

fn pools_for(n: u8) -> Vec<String> {
    let t = (n - 1) / 2;
    let mut ids = vec![
        "triple-p61".to_string(),
        "square-p61".into(),
        "bit-p61".into(),
        "bit-p128".into(),
        "input-mask-p61-o1".into(),
        "input-mask-p128-o0".into(),
        format!("double-p61-t{t}"),
        format!("double-p128-t{t}"),
    ];
    if n == 3 {
        ids.extend([
            "triple-z64".into(),
            "square-z64".into(),
            "triple-p128".into(),
        ]);
    }
    ids
}

#[test]
fn every_kind_reconstructs_for_3_5_and_7_parties() {
    for n in [3u8, 5, 7] {
        for id in pools_for(n) {
            let dir = tempfile::tempdir().unwrap();
            let p = pool(&id);
            let c = consortium(dir.path(), n, 1000, &[p]);
            let mut own = prss::ephemeral(n).unwrap();
            assert!(own.iter().all(|g| g.supports(&p)), "{id}");
            let report = c.make(&mut own, p, 2500, |_| {}).unwrap();
            assert_eq!((report.items, report.batches), (2500, 3), "n = {n}, {id}");
            let explicit = |party: u8| {
                p.domain.is_field()
                    && !id.starts_with("double")
                    && p.owner.is_none_or(|o| o == party)
            };
            for party in 0..n {
                for file in batch_files(dir.path(), party) {
                    let h = BatchHeader::decode(&file).unwrap();
                    assert_eq!((h.maker, h.epoch), (Maker::Prss, Some(0)), "{id}");
                    // Derived keys per chunk, plus λ·c where an opening made it.
                    let keys = PartyKeys::area_bytes(n, (n - 1) / 2, party).unwrap() as u64;
                    let values = if explicit(party) {
                        h.items * p.domain.elem_bytes() as u64
                    } else {
                        0
                    };
                    assert_eq!(
                        file.len() as u64,
                        h.header_len() as u64 + h.chunks() * (keys + 4) + values,
                        "n = {n}, {id}, party {party}"
                    );
                }
            }
            let files = c.take(p, 2500, "prss", &dir.path().join("out")).unwrap();
            let report = verify(&files).unwrap();
            assert_eq!(report.items, 2500, "n = {n}, {id}");
            if id.starts_with("bit") {
                // Fair bits: 1250 ones expected, a standard deviation of 25.
                assert!(
                    (1100..1400).contains(&report.ones),
                    "n = {n}, {id}: {} ones",
                    report.ones
                );
            }
        }
    }
}

/// Party 1 runs with keys from another setup: its shares no longer fit the others', and the
/// check that passes above fails.
#[test]
fn a_party_with_other_keys_breaks_reconstruction() {
    for id in ["triple-z64", "triple-p61", "double-p61-t1", "bit-p61"] {
        let dir = tempfile::tempdir().unwrap();
        let p = pool(id);
        let c = consortium(dir.path(), 3, 1000, &[p]);
        let mut own = prss::ephemeral(3).unwrap();
        own[1] = prss::ephemeral(3).unwrap().swap_remove(1);
        if let Err(e) = c.make(&mut own, p, 1000, |_| {}) {
            // A bit's opened r^2 is then garbage, half the time not a square: caught at once.
            assert!(
                id.starts_with("bit") && e.to_string().contains("root"),
                "{id}: {e}"
            );
            continue;
        }
        let files = c.take(p, 1000, "prss", &dir.path().join("out")).unwrap();
        assert!(
            verify(&files).is_err(),
            "{id}: mismatched keys must not verify"
        );
    }
}

#[test]
fn key_setup_gives_each_set_one_key_held_by_exactly_its_members() {
    let n = 5;
    let keys: Vec<PartyKeys> = std::thread::scope(|s| {
        let running: Vec<_> = mesh(n)
            .into_iter()
            .map(|mut end| s.spawn(move || prss::setup_keys(n, 7, &mut end, &mut rand::rng())))
            .collect();
        running
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    let sets = larder::sharing::prss::key_sets(n, 2);
    assert_eq!(sets.len(), 10);
    for set in sets {
        let held: Vec<[u8; 32]> = keys
            .iter()
            .filter_map(|k| k.keys().find(|(s, _)| *s == set).map(|(_, k)| *k))
            .collect();
        assert_eq!(held.len(), set.count_ones() as usize, "set {set:#b}");
        assert!(held.iter().all(|k| *k == held[0]), "set {set:#b}: one key");
        for (p, k) in keys.iter().enumerate() {
            assert_eq!(
                k.keys().any(|(s, _)| s == set),
                set & (1 << p) != 0,
                "party {p}, set {set:#b}"
            );
        }
    }
    // Keys of distinct sets differ.
    let all: std::collections::HashSet<[u8; 32]> = keys
        .iter()
        .flat_map(|k| k.keys().map(|(_, k)| *k))
        .collect();
    assert_eq!(all.len(), 10);
}

#[test]
fn key_files_are_private_round_trip_and_refuse_corruption() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let g = prss::ephemeral(3).unwrap();
    let keys: Vec<Arc<PartyKeys>> = g.iter().map(|g| g.keys()).collect();
    KeyFile::save(dir.path(), 4, &keys[2]).unwrap();
    let path = KeyFile::path(dir.path(), 4);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let back = KeyFile::load(dir.path(), 4, 3, 2).unwrap().unwrap();
    assert_eq!(*back.to_bytes(), *keys[2].to_bytes());
    assert_eq!(KeyFile::epochs(dir.path()).unwrap(), vec![4]);
    assert!(
        KeyFile::load(dir.path(), 4, 3, 1).is_err(),
        "another party's"
    );
    assert!(KeyFile::load(dir.path(), 5, 3, 2).unwrap().is_none());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let e = KeyFile::load(dir.path(), 4, 3, 2).unwrap_err();
    assert!(e.to_string().contains("corrupt"), "{e}");
    assert!(KeyFile::destroy(dir.path(), 4).unwrap());
    assert!(!path.exists());
    assert!(KeyFile::epochs(dir.path()).unwrap().is_empty());
    // Debug output never shows key bytes.
    assert_eq!(
        format!("{:?}", PrssGenerator::new(keys[0].clone(), 1)),
        "PrssGenerator(epoch 1, PartyKeys(party 0 of 3, t = 1, 2 keys))"
    );
}

/// A pool restricted to dealer-free material accepts PRSS's; a pool restricted to material
/// secure against a dishonest majority refuses it at every party, and nothing of it is kept.
/// Stock and the audit trail say which assumption the material rests on.
#[test]
fn pools_take_prss_material_only_if_they_accept_an_honest_majority() {
    use larder::config::ConsortiumConfig;
    use larder::consortium::LocalConsortium;
    use larder::material::Assumption::{DishonestMajority, HonestMajority};
    let dir = tempfile::tempdir().unwrap();
    let (dealer_free, strict) = (pool("triple-z64"), pool("triple-p60"));
    let mut config = ConsortiumConfig::local("t", 3, 0, 1000, vec![dealer_free, strict]);
    config.pool_assumptions = [
        (dealer_free, vec![DishonestMajority, HonestMajority]),
        (strict, vec![DishonestMajority]),
    ]
    .into();
    let c = LocalConsortium::init(&dir.path().join("c"), config).unwrap();
    let mut own = prss::ephemeral(3).unwrap();
    assert_eq!(
        c.make(&mut own, dealer_free, 2500, |_| {}).unwrap().items,
        2500
    );
    let err = c
        .make(&mut own, strict, 1000, |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not by the prss generator (honest-majority)"),
        "{err}"
    );
    // A dealer's material rests on a trusted dealer, which neither pool accepts.
    let mut dealer = larder::generate::Dealer::from_seed([1; 32]);
    assert!(c.deal(&mut dealer, dealer_free, 10, |_| {}).is_err());
    for (p, s) in c.stock().unwrap().iter().enumerate() {
        assert_eq!(s[&dealer_free].available, 2500, "party {p}");
        assert_eq!(
            s[&dealer_free].by_assumption.get("honest-majority"),
            Some(&2500),
            "party {p}"
        );
        assert_eq!(
            s.get(&strict).map_or(0, |s| s.available + s.staged),
            0,
            "party {p}"
        );
    }
    for p in 0..3 {
        let staged: Vec<_> = c
            .store(p)
            .audit_trail()
            .unwrap()
            .into_iter()
            .filter(|r| r.event == "stage")
            .collect();
        assert_eq!(staged.len(), 3, "party {p}: three batches staged");
        assert!(staged
            .iter()
            .all(|r| r.assumption == Some(HonestMajority) && r.pool == Some(dealer_free)));
    }
}
