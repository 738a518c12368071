//! One party's store: every lifecycle transition, every illegal one refused, durability across
//! reopen, erasure of consumed data, schema checks and crash leftovers.

use larder::generate::{BatchPlan, Dealer, Generator};
use larder::material::{BatchId, PoolSpec, ShareReader};
use larder::store::{BatchState, ReservationState, Store, StoreError, StoreIdentity};
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::path::Path;

const POOL: &str = "triple-z64";

fn pool() -> PoolSpec {
    POOL.parse().unwrap()
}

fn identity() -> StoreIdentity {
    StoreIdentity {
        consortium: "t".into(),
        parties: 2,
        party: 0,
    }
}

/// Party 0's share of a fresh batch (party 0 is the correction party, so it has explicit data).
fn batch(d: &mut Dealer, items: u64) -> (BatchId, Vec<u8>) {
    let plan = BatchPlan {
        pool: pool(),
        parties: 2,
        batch: d.next_batch_id(),
        items,
        correction: 0,
    };
    let files = d.generate(&plan).unwrap();
    (plan.batch, files[0].bytes.to_vec())
}

/// Allocates and confirms (a single store is the whole consortium here).
fn reserve(s: &Store, id: &str, count: u64) -> larder::store::Reservation {
    s.allocate(id, pool(), count).unwrap();
    s.confirm(id).unwrap()
}

fn new_store(dir: &Path) -> Store {
    Store::create(dir, identity()).unwrap()
}

fn ready_store(dir: &Path, batches: usize, items: u64) -> (Store, Vec<BatchId>) {
    let s = new_store(dir);
    let mut d = Dealer::from_seed([8; 32]);
    let ids = (0..batches)
        .map(|_| {
            let (id, bytes) = batch(&mut d, items);
            s.stage(&bytes).unwrap();
            s.activate(&id).unwrap();
            id
        })
        .collect();
    (s, ids)
}

#[test]
fn a_batch_moves_staged_available_reserved_consumed() {
    let dir = tempfile::tempdir().unwrap();
    let s = new_store(dir.path());
    let mut d = Dealer::from_seed([1; 32]);
    let (id, bytes) = batch(&mut d, 3000);
    s.stage(&bytes).unwrap();
    assert_eq!(
        s.batch_meta(&id).unwrap().unwrap().state,
        BatchState::Staged
    );
    assert_eq!(s.stock().unwrap()[&pool()].staged, 3000);
    assert!(
        matches!(
            s.allocate("early", pool(), 1),
            Err(StoreError::Underrun { available: 0, .. })
        ),
        "staged items are not allocatable"
    );
    s.activate(&id).unwrap();
    assert_eq!(s.stock().unwrap()[&pool()].available, 3000);
    let res = reserve(&s, "job", 1200);
    assert_eq!(res.state, ReservationState::Reserved);
    assert_eq!(s.stock().unwrap()[&pool()].reserved, 1200);
    assert!(matches!(
        s.consume("unconfirmed", "e"),
        Err(StoreError::UnknownCheckout(_))
    ));
    let res = s.consume("job", "engine-a").unwrap();
    assert_eq!(res.state, ReservationState::Consumed);
    let st = &s.stock().unwrap()[&pool()];
    assert_eq!((st.available, st.reserved, st.consumed), (1800, 0, 1200));
    let events: Vec<String> = s
        .audit_trail()
        .unwrap()
        .into_iter()
        .map(|a| a.event)
        .collect();
    assert_eq!(events, ["stage", "activate", "reserve", "consume"]);
    let consume = s
        .audit_trail()
        .unwrap()
        .into_iter()
        .find(|a| a.event == "consume")
        .unwrap();
    assert_eq!(consume.by.as_deref(), Some("engine-a"));
    assert_eq!(consume.ranges, res.ranges);
}

#[test]
fn illegal_transitions_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (s, ids) = ready_store(dir.path(), 1, 100);
    reserve(&s, "a", 10);
    s.take("a", "e", Vec::new()).unwrap();
    let before = s.stock().unwrap();
    assert!(matches!(
        s.consume("a", "e"),
        Err(StoreError::Gone {
            state: ReservationState::Consumed,
            ..
        })
    ));
    assert!(matches!(
        s.take("a", "e", Vec::new()),
        Err(StoreError::Gone { .. })
    ));
    assert!(matches!(
        s.release("a"),
        Err(StoreError::NotReserved { .. })
    ));
    assert!(matches!(s.burn("a"), Err(StoreError::NotReserved { .. })));
    assert!(matches!(
        s.abort(&ids[0]),
        Err(StoreError::IllegalTransition { .. })
    ));
    assert!(matches!(
        s.activate(&BatchId([9; 16])),
        Err(StoreError::UnknownBatch(_))
    ));
    assert!(matches!(
        s.consume("nope", "e"),
        Err(StoreError::UnknownCheckout(_))
    ));
    assert!(matches!(
        s.allocate("z", pool(), 0),
        Err(StoreError::ZeroCount)
    ));
    assert!(matches!(
        s.allocate("", pool(), 1),
        Err(StoreError::BadCheckoutId)
    ));
    assert!(matches!(
        s.allocate(&"x".repeat(300), pool(), 1),
        Err(StoreError::BadCheckoutId)
    ));
    assert!(matches!(
        s.allocate("bad\nid", pool(), 1),
        Err(StoreError::BadCheckoutId)
    ));
    s.allocate("r", pool(), 5).unwrap();
    s.release("r").unwrap();
    assert!(matches!(
        s.consume("r", "e"),
        Err(StoreError::NotReserved {
            state: ReservationState::Released,
            ..
        })
    ));
    assert!(matches!(
        s.release("r"),
        Err(StoreError::NotReserved { .. })
    ));
    let mut after = s.stock().unwrap();
    assert_eq!(before, after);
    after.clear();
}

#[test]
fn the_same_request_returns_the_same_reservation_and_another_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = ready_store(dir.path(), 2, 1000);
    let first = s.allocate("job", pool(), 1500).unwrap();
    assert_eq!(first.ranges.len(), 2, "spans two batches");
    assert_eq!(s.allocate("job", pool(), 1500).unwrap(), first);
    assert!(matches!(
        s.allocate("job", pool(), 1501),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.allocate("job", "triple-p128".parse().unwrap(), 1500),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.stock().unwrap()[&pool()].available, 500);
}

#[test]
fn underrun_reports_how_many_items_are_available() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = ready_store(dir.path(), 1, 700);
    let err = s.allocate("big", pool(), 701).unwrap_err();
    assert!(matches!(
        err,
        StoreError::Underrun {
            requested: 701,
            available: 700,
            ..
        }
    ));
    assert!(err.to_string().contains("700 items available"));
    assert!(s.reservation("big").unwrap().is_none());
}

#[test]
fn released_items_return_to_stock_and_burned_items_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = ready_store(dir.path(), 1, 100);
    let r1 = s.allocate("r1", pool(), 40).unwrap();
    s.release("r1").unwrap();
    assert_eq!(s.stock().unwrap()[&pool()].available, 100);
    let again = s.allocate("r2", pool(), 40).unwrap();
    assert_eq!(
        again.ranges, r1.ranges,
        "released items are handed out again, first in first out"
    );
    s.burn("r2").unwrap();
    let st = &s.stock().unwrap()[&pool()];
    assert_eq!((st.available, st.consumed), (60, 40));
    let r3 = s.allocate("r3", pool(), 60).unwrap();
    assert!(
        r3.ranges.iter().all(|r| r.first >= 40),
        "burned items never come back"
    );
}

#[test]
fn a_follower_holds_only_free_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, _) = ready_store(&dir.path().join("l"), 1, 100);
    // A follower with the same batch (a second store for the same party number suffices here).
    let follower = new_store(&dir.path().join("f"));
    let mut d = Dealer::from_seed([8; 32]);
    let (_, bytes) = batch(&mut d, 100);
    follower.stage(&bytes).unwrap();
    let res = leader.allocate("x", pool(), 30).unwrap();
    follower.apply(&res).unwrap();
    follower.apply(&res).unwrap(); // idempotent
    assert_eq!(
        follower
            .batch_meta(&res.ranges[0].batch)
            .unwrap()
            .unwrap()
            .state,
        BatchState::Available
    );
    follower.confirm("x").unwrap();
    let mut other = res.clone();
    other.checkout = "y".into();
    assert!(matches!(
        follower.apply(&other),
        Err(StoreError::RangeUnavailable { .. })
    ));
    let mut changed = res.clone();
    changed.ranges[0].first = 50;
    assert!(matches!(
        follower.apply(&changed),
        Err(StoreError::Conflict(_))
    ));
}

#[test]
fn consumed_chunks_are_overwritten_and_an_exhausted_batch_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (s, ids) = ready_store(dir.path(), 1, 3000);
    let path = dir.path().join("batches").join(format!("{}.lb", ids[0]));
    let before = std::fs::read(&path).unwrap();
    reserve(&s, "a", 1500);
    s.take("a", "e", Vec::new()).unwrap();
    let after = std::fs::read(&path).unwrap();
    let chunk0 = 66..66 + 36 + 1024 * 8;
    assert!(
        after[chunk0.clone()].iter().all(|&b| b == 0),
        "fully consumed chunk 0 erased"
    );
    assert_eq!(
        after[chunk0.end..],
        before[chunk0.end..],
        "chunk 1 (partly consumed) and 2 kept"
    );
    reserve(&s, "b", 1500);
    s.take("b", "e", Vec::new()).unwrap();
    assert!(!path.exists());
    assert_eq!(
        s.batch_meta(&ids[0]).unwrap().unwrap().state,
        BatchState::Exhausted
    );
    assert!(s
        .audit_trail()
        .unwrap()
        .iter()
        .any(|a| a.event == "exhaust"));
}

#[test]
fn items_taken_once_are_never_taken_again_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = ready_store(dir.path(), 4, 2500);
    drop(s);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(77);
    let mut handed_out: HashSet<(BatchId, u64)> = HashSet::new();
    let mut open_reservations: Vec<String> = Vec::new();
    let mut s = Store::open(dir.path()).unwrap();
    for step in 0..160 {
        match rng.random_range(0..10) {
            0 => {
                drop(s);
                s = Store::open(dir.path()).unwrap();
            }
            1..=4 => {
                let id = format!("c{step}");
                if s.allocate(&id, pool(), rng.random_range(1..700)).is_ok() {
                    s.confirm(&id).unwrap();
                    open_reservations.push(id);
                }
            }
            5 | 6 if !open_reservations.is_empty() => {
                let id =
                    open_reservations.swap_remove(rng.random_range(0..open_reservations.len()));
                let out = s.take(&id, "e", Vec::new()).unwrap();
                let r = ShareReader::new(&out[..]).unwrap();
                for range in &r.header.ranges {
                    for i in range.first..range.first + range.count {
                        assert!(
                            handed_out.insert((range.batch, i)),
                            "item {i} of {} handed out twice",
                            range.batch
                        );
                    }
                }
                assert!(matches!(
                    s.take(&id, "e", Vec::new()),
                    Err(StoreError::Gone { .. })
                ));
            }
            7 if !open_reservations.is_empty() => {
                let id =
                    open_reservations.swap_remove(rng.random_range(0..open_reservations.len()));
                s.release(&id).unwrap();
            }
            _ if !open_reservations.is_empty() => {
                let id =
                    open_reservations.swap_remove(rng.random_range(0..open_reservations.len()));
                let res = s.burn(&id).unwrap();
                for range in &res.ranges {
                    for i in range.first..range.first + range.count {
                        assert!(
                            handed_out.insert((range.batch, i)),
                            "burned item {i} was handed out"
                        );
                    }
                }
            }
            _ => {}
        }
    }
    let st = &s.stock().unwrap()[&pool()];
    assert_eq!(st.consumed, handed_out.len() as u64);
    assert_eq!(st.available + st.reserved + st.consumed, 10_000);
}

#[test]
fn a_store_from_a_newer_larder_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    drop(new_store(dir.path()));
    {
        let db = sled::open(dir.path().join("meta")).unwrap();
        db.insert("schema_version", &99u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("schema version 99") && err.contains("newer"),
        "{err}"
    );
}

#[test]
fn opening_a_directory_without_a_store_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore(_)));
    drop(new_store(dir.path()));
    assert!(matches!(
        Store::create(dir.path(), identity()),
        Err(StoreError::AlreadyExists(_))
    ));
}

#[test]
fn files_no_metadata_points_to_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (s, ids) = ready_store(dir.path(), 1, 100);
    drop(s);
    let data = dir.path().join("batches");
    std::fs::write(data.join("00112233445566778899aabbccddeeff.lb"), b"orphan").unwrap();
    std::fs::write(data.join("00112233445566778899aabbccddeeff.tmp"), b"half").unwrap();
    let s = Store::open(dir.path()).unwrap();
    let names: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec![format!("{}.lb", ids[0])]);
    assert_eq!(s.stock().unwrap()[&pool()].available, 100);
}

#[test]
fn a_damaged_batch_file_fails_the_take_without_consuming_the_items() {
    let dir = tempfile::tempdir().unwrap();
    let (s, ids) = ready_store(dir.path(), 1, 2000);
    let path = dir.path().join("batches").join(format!("{}.lb", ids[0]));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[66 + 36 + 1024 * 8 + 100] ^= 0x40; // inside chunk 1
    std::fs::write(&path, &bytes).unwrap();
    reserve(&s, "x", 1500);
    let err = s.take("x", "e", Vec::new()).unwrap_err();
    assert!(
        err.to_string().contains("checksum mismatch in chunk 1"),
        "{err}"
    );
    assert_eq!(
        s.reservation("x").unwrap().unwrap().state,
        ReservationState::Reserved
    );
    s.release("x").unwrap();
    assert_eq!(s.stock().unwrap()[&pool()].available, 2000);
}

#[test]
fn staging_is_idempotent_and_a_different_batch_under_a_known_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = new_store(dir.path());
    let mut d = Dealer::from_seed([2; 32]);
    let (id, bytes) = batch(&mut d, 10);
    s.stage(&bytes).unwrap();
    s.stage(&bytes).unwrap();
    assert_eq!(s.all_batches().unwrap().len(), 1);
    let plan = BatchPlan {
        pool: pool(),
        parties: 2,
        batch: id,
        items: 11,
        correction: 0,
    };
    let other = d.generate(&plan).unwrap();
    assert!(matches!(
        s.stage(&other[0].bytes),
        Err(StoreError::BatchMismatch(_))
    ));
    s.abort(&id).unwrap();
    assert!(s.all_batches().unwrap().is_empty());
}

#[test]
fn a_store_held_open_elsewhere_is_reported_as_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _held = new_store(dir.path());
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::InUse(_)), "{err}");
    assert!(err.to_string().contains("in use by another process"));
}

#[test]
fn shares_of_an_unconfirmed_reservation_are_not_handed_out() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = ready_store(dir.path(), 1, 100);
    s.allocate("u", pool(), 10).unwrap();
    assert!(matches!(
        s.take("u", "e", Vec::new()),
        Err(StoreError::Unconfirmed(_))
    ));
    assert_eq!(
        s.reservation("u").unwrap().unwrap().state,
        ReservationState::Reserved
    );
    s.confirm("u").unwrap();
    s.confirm("u").unwrap(); // idempotent
    s.take("u", "e", Vec::new()).unwrap();
    s.allocate("v", pool(), 10).unwrap();
    s.release("v").unwrap();
    assert!(matches!(
        s.confirm("v"),
        Err(StoreError::NotReserved { .. })
    ));
}

/// A leader with one available 100-item batch and a follower that has staged the same batch.
fn leader_and_follower(dir: &Path) -> (Store, Store) {
    let (leader, _) = ready_store(&dir.join("l"), 1, 100);
    let follower = new_store(&dir.join("f"));
    let mut d = Dealer::from_seed([8; 32]);
    follower.stage(&batch(&mut d, 100).1).unwrap();
    (leader, follower)
}

#[test]
fn a_follower_releases_a_stale_unconfirmed_reservation_when_the_leader_reallocates_its_items() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, follower) = leader_and_follower(dir.path());
    // The leader reserved, reached this follower, then dropped the checkout unconfirmed.
    let first = leader.allocate("dropped", pool(), 30).unwrap();
    follower.apply(&first).unwrap();
    leader.release("dropped").unwrap();
    let again = leader.allocate("next", pool(), 30).unwrap();
    assert_eq!(again.ranges, first.ranges);
    follower.apply(&again).unwrap();
    assert_eq!(
        follower.reservation("dropped").unwrap().unwrap().state,
        ReservationState::Released
    );
    // A confirmed reservation is never released that way.
    follower.confirm("next").unwrap();
    let mut clash = again.clone();
    clash.checkout = "clash".into();
    assert!(matches!(
        follower.apply(&clash),
        Err(StoreError::RangeUnavailable { .. })
    ));
    assert_eq!(
        follower.reservation("next").unwrap().unwrap().state,
        ReservationState::Reserved
    );
}

#[test]
fn a_stale_reservation_applied_earlier_in_the_same_group_is_released_too() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, follower) = leader_and_follower(dir.path());
    // Both reach the follower in one group: the dropped one first, late.
    let first = leader.allocate("dropped", pool(), 30).unwrap();
    leader.release("dropped").unwrap();
    let again = leader.allocate("next", pool(), 30).unwrap();
    assert_eq!(again.ranges, first.ranges);
    let results = follower.apply_many(&[first, again]);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        follower.reservation("dropped").unwrap().unwrap().state,
        ReservationState::Released
    );
    assert_eq!(
        follower.reservation("next").unwrap().unwrap().state,
        ReservationState::Reserved
    );
    // The batch keeps its place in stock with the items nobody holds.
    assert_eq!(follower.stock().unwrap()[&pool()].reserved, 30);
}

#[test]
fn allocations_in_one_group_see_each_other_and_a_failed_one_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let (s, ids) = ready_store(dir.path(), 2, 100);
    let results = s.allocate_many(&[
        ("a".into(), pool(), 100),
        ("b".into(), pool(), 50),
        ("c".into(), pool(), 60),
        ("b".into(), pool(), 50),
    ]);
    let a = results[0].as_ref().unwrap();
    let b = results[1].as_ref().unwrap();
    // "a" empties the first batch (its stock entry goes in the same group); "b" takes the
    // front of the second; "c" finds only 50 left and fails without taking any.
    assert_eq!(a.ranges.len(), 1);
    assert_eq!((a.ranges[0].batch, a.ranges[0].count), (ids[0], 100));
    assert_eq!((b.ranges[0].batch, b.ranges[0].first), (ids[1], 0));
    assert!(matches!(
        results[2],
        Err(StoreError::Underrun { available: 50, .. })
    ));
    assert_eq!(
        results[3].as_ref().unwrap(),
        b,
        "the same id again in the group"
    );
    assert!(s.reservation("c").unwrap().is_none());
    let stock = &s.stock().unwrap()[&pool()];
    assert_eq!((stock.available, stock.reserved), (50, 150));
    // The rest is allocated from where "b" stopped.
    let d = s.allocate("d", pool(), 50).unwrap();
    assert_eq!((d.ranges[0].batch, d.ranges[0].first), (ids[1], 50));
}

#[test]
fn a_chunk_shared_with_a_checkout_still_streaming_is_not_erased_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = ready_store(dir.path(), 1, 2048);
    // A and B split chunk 0 (items 0..1024) between them; so do B and C for chunk 1.
    let a = reserve(&s, "a", 1000);
    let b = reserve(&s, "b", 1000);
    let c = reserve(&s, "c", 48);
    let (a, b, c) = (
        s.consume(&a.checkout, "e").unwrap(),
        s.consume(&b.checkout, "e").unwrap(),
        s.consume(&c.checkout, "e").unwrap(),
    );
    // A and C finish first and erase what they can: nothing B still needs.
    s.write_shares(&a, Vec::new()).unwrap();
    s.erase_reservation(&a).unwrap();
    s.write_shares(&c, Vec::new()).unwrap();
    s.erase_reservation(&c).unwrap();
    let out = s.write_shares(&b, Vec::new()).unwrap();
    let mut r = ShareReader::new(&out[..]).unwrap();
    while r.next_records(4096).unwrap().is_some() {}
    s.erase_reservation(&b).unwrap();
    let batches = s.all_batches().unwrap();
    assert_eq!(
        batches[0].state,
        BatchState::Exhausted,
        "once B is done everything is erased"
    );
}

#[test]
fn a_follower_does_not_hold_again_a_reservation_it_released() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, follower) = leader_and_follower(dir.path());
    let res = leader.allocate("x", pool(), 10).unwrap();
    follower.apply(&res).unwrap();
    follower.release("x").unwrap();
    assert!(
        matches!(follower.apply(&res), Err(StoreError::NotReserved { .. })),
        "the leader must not count this party as holding it"
    );
    let mut zero = res.clone();
    zero.checkout = "z".into();
    zero.ranges[0].count = 0;
    zero.count = 0;
    assert!(follower.apply(&zero).is_err(), "empty ranges are refused");
}

#[test]
fn a_schema_1_store_gets_its_open_reservations_indexed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, _) = ready_store(dir.path(), 1, 1000);
        reserve(&s, "open-one", 10);
        reserve(&s, "settled-one", 10);
        s.settle("settled-one").unwrap();
    }
    // Turn it back into what schema 1 wrote: no index, version 1.
    {
        let db = sled::open(dir.path().join("meta")).unwrap();
        db.drop_tree("open").unwrap();
        db.insert("schema_version", &1u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    let open: Vec<String> = s
        .open_reservations_until(u64::MAX)
        .unwrap()
        .into_iter()
        .map(|r| r.checkout)
        .collect();
    assert_eq!(open, vec!["open-one".to_string()]);
    assert!(
        s.open_reservations_until(0).unwrap().is_empty(),
        "nothing was reserved at time 0"
    );
}

#[test]
fn store_directories_are_their_owners_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    drop(new_store(&path));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o700);
    // A store made before this rule is restricted when it is opened.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    drop(Store::open(&path).unwrap());
    assert_eq!(mode(&path), 0o700);
}

#[test]
fn a_create_interrupted_before_its_identity_is_durable_is_started_over() {
    // What a process killed inside `Store::create` leaves: a sled database with no identity
    // under the name the store is built in, and no `meta`.
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    std::fs::create_dir_all(&store_dir).unwrap();
    let half = sled::open(store_dir.join("meta.new")).unwrap();
    half.insert("unrelated", b"x".as_slice()).unwrap();
    half.flush().unwrap();
    drop(half);
    assert!(matches!(
        Store::open(&store_dir),
        Err(StoreError::NotAStore(_))
    ));
    let s = Store::create(&store_dir, identity()).unwrap();
    assert_eq!(s.identity(), &identity());
    drop(s);
    assert!(!store_dir.join("meta.new").exists());
    assert_eq!(Store::open(&store_dir).unwrap().identity(), &identity());
}

#[test]
fn every_batch_records_its_generator_and_a_restricted_pool_refuses_others() {
    use larder::material::Maker;
    let dir = tempfile::tempdir().unwrap();
    let (s, ids) = ready_store(dir.path(), 2, 1000);
    let meta = s.batch_meta(&ids[0]).unwrap().unwrap();
    assert_eq!(meta.maker, Some(Maker::Dealer));
    let stock = &s.stock().unwrap()[&pool()];
    assert_eq!(stock.by_generator.get("dealer"), Some(&2000));
    let staged: Vec<_> = s
        .audit_log()
        .unwrap()
        .into_iter()
        .filter(|r| r.event == "stage")
        .collect();
    assert_eq!(staged.len(), 2);
    assert!(staged.iter().all(|r| r.generator == Some(Maker::Dealer)));

    // A pool restricted to the HE generator refuses a dealer's batch, and keeps nothing.
    s.set_allowed_generators([(pool(), vec![Maker::He])].into_iter().collect());
    let (id, bytes) = batch(&mut Dealer::from_seed([9; 32]), 1000);
    let e = s.stage(&bytes).unwrap_err();
    assert!(matches!(e, StoreError::GeneratorRefused { .. }), "{e}");
    assert!(e.to_string().contains("he only, not by the dealer"), "{e}");
    assert!(s.batch_meta(&id).unwrap().is_none());
    // Negative control: the same batch is accepted once the dealer is allowed again.
    s.set_allowed_generators(
        [(pool(), vec![Maker::He, Maker::Dealer])]
            .into_iter()
            .collect(),
    );
    s.stage(&bytes).unwrap();
}

#[test]
fn a_schema_4_store_learns_its_batches_generators_from_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let ids = {
        let (s, ids) = ready_store(dir.path(), 2, 1000);
        // Exhaust the first batch: its file is erased, so its generator cannot be learnt.
        reserve(&s, "all-of-one", 1000);
        s.take("all-of-one", "engine", Vec::new()).unwrap();
        ids
    };
    {
        let db = sled::open(dir.path().join("meta")).unwrap();
        let tree = db.open_tree("batches").unwrap();
        for id in &ids {
            let mut v: serde_json::Value =
                serde_json::from_slice(&tree.get(id.0).unwrap().unwrap()).unwrap();
            v.as_object_mut().unwrap().remove("maker");
            tree.insert(id.0, serde_json::to_vec(&v).unwrap()).unwrap();
        }
        db.insert("schema_version", &4u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    let makers: Vec<_> = ids
        .iter()
        .map(|id| s.batch_meta(id).unwrap().unwrap().maker)
        .collect();
    assert_eq!(makers[1], Some(larder::material::Maker::Dealer));
    let stock = &s.stock().unwrap()[&pool()];
    assert_eq!(stock.by_generator.get("dealer"), Some(&stock.available));
}

#[test]
fn finished_jobs_older_than_the_history_are_forgotten_and_live_ones_kept() {
    use larder::store::{JobOrigin, JobState};
    let dir = tempfile::tempdir().unwrap();
    let s = new_store(dir.path());
    let old = s
        .create_job(pool(), 10, "dealer", JobOrigin::Window)
        .unwrap();
    let recent = s
        .create_job(pool(), 10, "dealer", JobOrigin::Floor)
        .unwrap();
    let live = s
        .create_job(pool(), 10, "dealer", JobOrigin::Operator)
        .unwrap();
    for (job, at) in [(&old, 1_000), (&recent, 5_000)] {
        let mut j = job.clone();
        j.state = JobState::Done;
        j.finished_at = Some(at);
        s.put_job(&j).unwrap();
    }
    assert_eq!(s.prune_jobs(2_000).unwrap(), 1);
    let left: Vec<u64> = s.jobs().unwrap().iter().map(|j| j.id).collect();
    assert_eq!(left, vec![recent.id, live.id]);
    // Kept across a reopen, with their origins.
    drop(s);
    let s = Store::open(dir.path()).unwrap();
    let origins: Vec<JobOrigin> = s.jobs().unwrap().iter().map(|j| j.origin).collect();
    assert_eq!(origins, vec![JobOrigin::Floor, JobOrigin::Operator]);
}
