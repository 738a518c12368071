//! Model test of one party's store: random sequences of lifecycle operations, with reopens,
//! run against a real store on disk and an in-memory reference of what each operation must
//! do. After every step the store's answer (success or refusal) and its stock must match the
//! reference, every reservation must hold exactly the items the reference gave it, and no item
//! may ever be taken twice. Shrunk failures are pinned below as named regression tests.

use larder::generate::{BatchPlan, Dealer, Generator};
use larder::material::{BatchId, PoolSpec, ShareReader};
use larder::store::{ReservationState, Store, StoreError, StoreIdentity};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::OnceLock;

const ITEMS: u64 = 2500;
const BATCHES: usize = 3;
const IDS: u8 = 3;

fn pool() -> PoolSpec {
    "triple-z64".parse().unwrap()
}

/// Party 0's shares of three batches, made once.
fn batches() -> &'static Vec<(BatchId, Vec<u8>)> {
    static B: OnceLock<Vec<(BatchId, Vec<u8>)>> = OnceLock::new();
    B.get_or_init(|| {
        let mut d = Dealer::from_seed([3; 32]);
        (0..BATCHES)
            .map(|_| {
                let plan = BatchPlan {
                    pool: pool(),
                    parties: 2,
                    batch: d.next_batch_id(),
                    items: ITEMS,
                    correction: 0,
                };
                let files = d.generate(&plan).unwrap();
                (plan.batch, files[0].bytes.to_vec())
            })
            .collect()
    })
}

#[derive(Clone, Debug)]
enum Op {
    Stage(usize),
    Activate(usize),
    Abort(usize),
    Allocate(u8, u64),
    Confirm(u8),
    Take(u8),
    Release(u8),
    Burn(u8),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..BATCHES).prop_map(Op::Stage),
        2 => (0..BATCHES).prop_map(Op::Activate),
        1 => (0..BATCHES).prop_map(Op::Abort),
        4 => (0..IDS, 1..3000u64).prop_map(|(c, n)| Op::Allocate(c, n)),
        4 => (0..IDS).prop_map(Op::Confirm),
        4 => (0..IDS).prop_map(Op::Take),
        2 => (0..IDS).prop_map(Op::Release),
        1 => (0..IDS).prop_map(Op::Burn),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BatchState {
    Unknown,
    Staged,
    Available,
}

#[derive(Clone, Debug)]
struct ModelReservation {
    count: u64,
    items: BTreeSet<(BatchId, u64)>,
    state: ReservationState,
    confirmed: bool,
}

/// What the store must do.
#[derive(Default)]
struct Model {
    batches: BTreeMap<BatchId, (BatchState, BTreeSet<u64>)>,
    reservations: BTreeMap<String, ModelReservation>,
    taken: HashSet<(BatchId, u64)>,
    consumed: u64,
}

impl Model {
    fn state(&self, id: BatchId) -> BatchState {
        self.batches
            .get(&id)
            .map_or(BatchState::Unknown, |(s, _)| *s)
    }
    fn available(&self) -> u64 {
        self.batches
            .values()
            .filter(|(s, _)| *s == BatchState::Available)
            .map(|(_, free)| free.len() as u64)
            .sum()
    }
    fn staged(&self) -> u64 {
        self.batches
            .values()
            .filter(|(s, _)| *s == BatchState::Staged)
            .count() as u64
            * ITEMS
    }
    fn reserved(&self) -> u64 {
        self.reservations
            .values()
            .filter(|r| r.state == ReservationState::Reserved)
            .map(|r| r.count)
            .sum()
    }
    /// Whether every item of a batch is consumed or burned.
    fn used_up(&self, id: BatchId) -> bool {
        self.batches.get(&id).is_some_and(|(s, free)| {
            *s == BatchState::Available
                && free.is_empty()
                && !self.reservations.values().any(|r| {
                    r.state == ReservationState::Reserved && r.items.iter().any(|(b, _)| *b == id)
                })
        })
    }
}

fn id(c: u8) -> String {
    format!("c{c}")
}

/// Runs `ops` against a fresh store and the model; panics on the first disagreement.
fn run(dir: &Path, ops: &[Op]) {
    let identity = StoreIdentity {
        consortium: "model".into(),
        parties: 2,
        party: 0,
    };
    let mut store = Some(Store::create(dir, identity).unwrap());
    let mut m = Model::default();
    for (step, op) in ops.iter().enumerate() {
        let s = store.as_ref().unwrap();
        let ctx = format!("step {step}: {op:?}");
        match op {
            Op::Stage(k) => {
                let (bid, bytes) = &batches()[*k];
                s.stage(bytes).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                if m.state(*bid) == BatchState::Unknown {
                    m.batches
                        .insert(*bid, (BatchState::Staged, (0..ITEMS).collect()));
                }
            }
            Op::Activate(k) => {
                let bid = batches()[*k].0;
                let r = s.activate(&bid);
                match m.state(bid) {
                    BatchState::Unknown => {
                        assert!(
                            matches!(r, Err(StoreError::UnknownBatch(_))),
                            "{ctx}: {r:?}"
                        )
                    }
                    BatchState::Staged => {
                        r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                        m.batches.get_mut(&bid).unwrap().0 = BatchState::Available;
                    }
                    // Available stays available; a used-up batch may already be exhausted.
                    BatchState::Available if m.used_up(bid) => assert!(
                        matches!(r, Ok(()) | Err(StoreError::IllegalTransition { .. })),
                        "{ctx}: {r:?}"
                    ),
                    BatchState::Available => r.unwrap_or_else(|e| panic!("{ctx}: {e}")),
                }
            }
            Op::Abort(k) => {
                let bid = batches()[*k].0;
                let r = s.abort(&bid);
                match m.state(bid) {
                    BatchState::Unknown => r.unwrap_or_else(|e| panic!("{ctx}: {e}")),
                    BatchState::Staged => {
                        r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                        m.batches.remove(&bid);
                    }
                    BatchState::Available => assert!(
                        matches!(r, Err(StoreError::IllegalTransition { .. })),
                        "{ctx}: {r:?}"
                    ),
                }
            }
            Op::Allocate(c, n) => {
                let r = s.allocate(&id(*c), pool(), *n);
                if let Some(existing) = m.reservations.get(&id(*c)) {
                    if existing.count == *n {
                        let got = r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                        assert_eq!(got.state, existing.state, "{ctx}");
                    } else {
                        assert!(matches!(r, Err(StoreError::Conflict(_))), "{ctx}: {r:?}");
                    }
                } else if m.available() < *n {
                    match r {
                        Err(StoreError::Underrun { available, .. }) => {
                            assert_eq!(available, m.available(), "{ctx}")
                        }
                        other => panic!("{ctx}: expected underrun, got {other:?}"),
                    }
                } else {
                    let got = r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    let mut items = BTreeSet::new();
                    for range in &got.ranges {
                        let (state, free) = m
                            .batches
                            .get_mut(&range.batch)
                            .unwrap_or_else(|| panic!("{ctx}: allocated from an unknown batch"));
                        assert_eq!(*state, BatchState::Available, "{ctx}: from a staged batch");
                        for i in range.first..range.first + range.count {
                            assert!(free.remove(&i), "{ctx}: item {i} was not free");
                            items.insert((range.batch, i));
                        }
                    }
                    assert_eq!(items.len() as u64, *n, "{ctx}: item count");
                    m.reservations.insert(
                        id(*c),
                        ModelReservation {
                            count: *n,
                            items,
                            state: ReservationState::Reserved,
                            confirmed: false,
                        },
                    );
                }
            }
            Op::Confirm(c) => {
                let r = s.confirm(&id(*c));
                match m.reservations.get_mut(&id(*c)) {
                    None => assert!(
                        matches!(r, Err(StoreError::UnknownCheckout(_))),
                        "{ctx}: {r:?}"
                    ),
                    Some(res) if res.state == ReservationState::Released => assert!(
                        matches!(r, Err(StoreError::NotReserved { .. })),
                        "{ctx}: {r:?}"
                    ),
                    Some(res) => {
                        r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                        if res.state == ReservationState::Reserved {
                            res.confirmed = true;
                        }
                    }
                }
            }
            Op::Take(c) => {
                let r = s.take(&id(*c), "engine", Vec::new());
                match m.reservations.get_mut(&id(*c)) {
                    None => assert!(
                        matches!(r, Err(StoreError::UnknownCheckout(_))),
                        "{ctx}: {r:?}"
                    ),
                    Some(res) if res.state == ReservationState::Reserved && res.confirmed => {
                        let bytes = r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                        let reader = ShareReader::new(&bytes[..]).unwrap();
                        let mut got = BTreeSet::new();
                        for range in &reader.header.ranges {
                            for i in range.first..range.first + range.count {
                                got.insert((range.batch, i));
                                assert!(
                                    m.taken.insert((range.batch, i)),
                                    "{ctx}: item {i} of {} taken twice",
                                    range.batch
                                );
                            }
                        }
                        assert_eq!(got, res.items, "{ctx}: the reserved items");
                        res.state = ReservationState::Consumed;
                        m.consumed += res.count;
                    }
                    Some(res) => assert!(
                        r.is_err(),
                        "{ctx}: a {:?} reservation (confirmed: {}) was handed out",
                        res.state,
                        res.confirmed
                    ),
                }
            }
            Op::Release(c) | Op::Burn(c) => {
                let release = matches!(op, Op::Release(_));
                let r = if release {
                    s.release(&id(*c))
                } else {
                    s.burn(&id(*c))
                };
                match m.reservations.get_mut(&id(*c)) {
                    None => assert!(
                        matches!(r, Err(StoreError::UnknownCheckout(_))),
                        "{ctx}: {r:?}"
                    ),
                    Some(res) if res.state == ReservationState::Reserved => {
                        r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                        if release {
                            res.state = ReservationState::Released;
                            for (b, i) in &res.items {
                                m.batches.get_mut(b).unwrap().1.insert(*i);
                            }
                        } else {
                            res.state = ReservationState::Burned;
                            m.consumed += res.count;
                        }
                    }
                    Some(_) => assert!(
                        matches!(r, Err(StoreError::NotReserved { .. })),
                        "{ctx}: {r:?}"
                    ),
                }
            }
            Op::Reopen => {
                drop(store.take());
                store = Some(Store::open(dir).unwrap_or_else(|e| panic!("{ctx}: {e}")));
            }
        }
        // The stock agrees with the model after every step.
        let s = store.as_ref().unwrap();
        let stock = s.stock().unwrap().get(&pool()).cloned().unwrap_or_default();
        assert_eq!(
            (
                stock.available,
                stock.staged,
                stock.reserved,
                stock.consumed
            ),
            (m.available(), m.staged(), m.reserved(), m.consumed),
            "{ctx}: stock (available, staged, reserved, consumed)"
        );
        for (cid, res) in &m.reservations {
            let got = s.reservation(cid).unwrap().expect("a known reservation");
            assert_eq!(got.state, res.state, "{ctx}: state of {cid}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 120, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_store_follows_the_model(ops in prop::collection::vec(op(), 1..80)) {
        // Most runs start with stock, so checkouts get somewhere.
        let mut all = vec![Op::Stage(0), Op::Activate(0)];
        all.extend(ops);
        let dir = tempfile::tempdir().unwrap();
        run(dir.path(), &all);
    }
}
