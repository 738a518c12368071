//! Criterion benches for the hot kernels: field multiplication, dealer batch generation and
//! share expansion. End-to-end figures on real stores: `larder bench`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use larder::generate::{BatchPlan, Dealer, Generator};
use larder::material::batch::expand_chunk;
use larder::material::{BatchHeader, PoolSpec};
use larder::math::{Domain, Ring};
use larder::with_ring;

fn mul(c: &mut Criterion) {
    let mut g = c.benchmark_group("mul");
    g.throughput(Throughput::Elements(1024));
    for name in ["z64", "p61", "p60", "p128", "z128"] {
        let d: Domain = name.parse().unwrap();
        with_ring!(d.ring(), r => {
            let xs: Vec<_> = (1..=1024u128).map(|i| r.reduce(i * 0x9e37_79b9_7f4a_7c15)).collect();
            g.bench_function(name, |b| b.iter(|| xs.iter().fold(r.one(), |acc, &x| r.mul(acc, black_box(x)))));
        });
    }
    g.finish();
}

fn deal(c: &mut Criterion) {
    let mut g = c.benchmark_group("dealer_batch");
    let items = 1 << 16;
    g.throughput(Throughput::Elements(items));
    g.sample_size(10);
    for id in ["triple-z64", "triple-p128", "double-p128-t1"] {
        let pool: PoolSpec = id.parse().unwrap();
        let mut dealer = Dealer::from_seed([1; 32]);
        g.bench_function(id, |b| {
            b.iter(|| {
                let plan = BatchPlan {
                    pool,
                    parties: 3,
                    batch: dealer.next_batch_id(),
                    items,
                    correction: 0,
                };
                dealer.generate(&plan).unwrap()
            })
        });
    }
    g.finish();
}

fn expand(c: &mut Criterion) {
    let mut g = c.benchmark_group("expand_chunk");
    g.throughput(Throughput::Elements(1024));
    for id in ["triple-z64", "triple-p128"] {
        let pool: PoolSpec = id.parse().unwrap();
        let mut dealer = Dealer::from_seed([2; 32]);
        let plan = BatchPlan {
            pool,
            parties: 3,
            batch: dealer.next_batch_id(),
            items: 1024,
            correction: 0,
        };
        let shares = dealer.generate(&plan).unwrap();
        let file = &shares[0].bytes;
        let h = BatchHeader::decode(file).unwrap();
        let off = h.chunk_offset(0) as usize;
        let (key_area, explicit) = h
            .decode_chunk(0, &file[off..off + h.chunk_bytes(0)])
            .unwrap();
        let seed = larder::material::Seed(key_area.try_into().unwrap());
        let layout = h.layout();
        let mut out = Vec::with_capacity(1024 * 3 * 16);
        with_ring!(pool.domain.ring(), r => {
            g.bench_function(id, |b| b.iter(|| {
                out.clear();
                expand_chunk(r, &layout, &seed, explicit, 1024, 0..1024, &mut out).unwrap();
            }));
        });
    }
    g.finish();
}

/// One party's share of PRSS material from its replicated keys alone (issue 20's local core):
/// three-party Z_2^64 triples, and double sharings for 3 and 5 parties. Per party, per core.
fn prss(c: &mut Criterion) {
    use larder::sharing::prss::{key_sets, PartyKeys};
    let keys = |n: u8, t: u8| {
        let mine: Vec<(u32, [u8; 32])> = key_sets(n, t)
            .into_iter()
            .filter(|s| s & 1 != 0)
            .map(|s| (s, [s as u8; 32]))
            .collect();
        PartyKeys::new(n, t, 0, mine).unwrap()
    };
    let items = 1 << 16;
    let label = [3u8; 32];
    let mut g = c.benchmark_group("prss_party");
    g.throughput(Throughput::Elements(items as u64));
    g.sample_size(10);
    let k3 = keys(3, 1);
    let (mut a, mut b, mut cc) = (vec![0u64; items], vec![0u64; items], vec![0u64; items]);
    g.bench_function("triple-z64-n3", |bch| {
        bch.iter(|| k3.z64_triples(&label, &mut a, &mut b, &mut cc).unwrap())
    });
    for (name, n, t) in [
        ("double-p128-n3", 3, 1),
        ("double-p128-n5", 5, 2),
        ("double-p61-n5", 5, 2),
    ] {
        let k = keys(n, t);
        let d: Domain = name.split('-').nth(1).unwrap().parse().unwrap();
        with_ring!(d.ring(), r => {
            let (mut x, mut y) = (vec![r.zero(); items], vec![r.zero(); items]);
            g.bench_function(name, |bch| bch.iter(|| k.double_shares(r, &label, &mut x, &mut y).unwrap()));
        });
    }
    g.finish();
}

criterion_group!(benches, mul, deal, expand, prss);
criterion_main!(benches);
