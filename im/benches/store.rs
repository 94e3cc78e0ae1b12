//! Group-commit throughput of the embedded store (the queue engine on fjall)
//! on the peer-message path.
//!
//! Shape: 100 concurrent tokio tasks, each a distinct sender doing sequential
//! appends of a peer message (receiver copy + sender copy + dedup key, 100-byte
//! body) to receivers spread over 1,000 users. Every append is durable
//! (fsync'd) before it resolves, so this measures the group commit. The
//! `..._and_sync_key` case also stores the receiver's sync key after each
//! append (the ACK a receiver sends after syncing), as the server's peer path
//! does.
//!
//! `cargo bench -p ferry-im --bench store` prints a one-off report (appends/s,
//! average batch, p50/p99 latency) and then the criterion measurement.
//! `FERRY_BENCH_SECS` sets the length of the one-off run (default 10).

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferry_im::store::{
    AppendRequest, Dedup, DedupKey, FjallOptions, FjallStore, NewEntry, Origin, QueueId, Store,
    StoreStats, record,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

const WRITERS: i64 = 100;
const RECEIVERS: i64 = 1000;
const APP: i64 = 1;

fn peer(sender: i64, receiver: i64, client_msgid: i64, body: &Bytes) -> AppendRequest {
    let entry = |uid| NewEntry {
        queue: QueueId { appid: APP, uid },
        cmd: 4,
        flag: 0,
        device_id: 1,
        body: body.clone(),
    };
    AppendRequest {
        entries: vec![entry(receiver), entry(sender)],
        dedup: Some(Dedup {
            key: DedupKey {
                appid: APP,
                sender,
                device_id: 1,
                client_msgid,
                receiver,
            },
            digest: record::digest(body),
            origin: Origin {
                incarnation: 1,
                connection: sender as u64,
            },
            replace: false,
        }),
    }
}

fn receiver_for(writer: i64, seq: i64) -> i64 {
    WRITERS + (writer * 7919 + seq * 104_729).rem_euclid(RECEIVERS)
}

/// The backend under test, with its group-commit counters.
#[derive(Clone)]
struct Backend(Arc<FjallStore>);

impl Backend {
    fn name(&self) -> &'static str {
        "fjall"
    }

    fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.0) as Arc<dyn Store>
    }

    fn stats(&self) -> StoreStats {
        self.0.stats()
    }
}

struct Fixture {
    rt: Runtime,
    backend: Backend,
    /// Also store the receiver's sync key after each append.
    ack_sync_key: bool,
    body: Bytes,
    /// Client msgids keep growing across runs so no append is a duplicate.
    seq: Arc<AtomicI64>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new(ack_sync_key: bool) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let backend = Backend(Arc::new(
            FjallStore::open(dir.path(), FjallOptions::default()).expect("open"),
        ));
        Fixture {
            rt,
            backend,
            ack_sync_key,
            body: Bytes::from(vec![b'x'; 100]),
            seq: Arc::new(AtomicI64::new(0)),
            _dir: dir,
        }
    }

    /// Runs `WRITERS` tasks until `total` appends are done (or the deadline
    /// passes); returns the elapsed time and every append's latency.
    fn run(&self, total: u64, deadline: Option<Instant>) -> (Duration, Vec<Duration>) {
        let left = Arc::new(AtomicI64::new(i64::try_from(total).unwrap_or(i64::MAX)));
        let start = Instant::now();
        let lat = self.rt.block_on(async {
            let tasks: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let store = self.backend.store();
                    let ack = self.ack_sync_key;
                    let body = self.body.clone();
                    let left = Arc::clone(&left);
                    let seq = Arc::clone(&self.seq);
                    tokio::spawn(async move {
                        let mut lat = Vec::new();
                        while left.fetch_sub(1, Ordering::Relaxed) > 0
                            && deadline.is_none_or(|d| Instant::now() < d)
                        {
                            let s = seq.fetch_add(1, Ordering::Relaxed);
                            let req = peer(w, receiver_for(w, s), s, &body);
                            let t0 = Instant::now();
                            let receiver = req.entries[0].queue;
                            let out = store.append(req).await.expect("append");
                            lat.push(t0.elapsed());
                            assert!(!out.duplicate);
                            if ack {
                                let key = out.placed[0].msgid;
                                store.set_sync_key(receiver, key).await.expect("sync key");
                            }
                        }
                        lat
                    })
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.expect("join"));
            }
            all
        });
        (start.elapsed(), lat)
    }
}

/// Fixed-duration run reporting throughput, batch size and latency.
fn report(fx: &Fixture) {
    let secs = std::env::var("FERRY_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10u64);
    let before = fx.backend.stats();
    let (elapsed, mut lat) = fx.run(u64::MAX, Some(Instant::now() + Duration::from_secs(secs)));
    let after = fx.backend.stats();
    lat.sort_unstable();
    let n = lat.len().max(1);
    let pct = |p: f64| {
        lat.get(((n as f64 * p) as usize).min(n - 1))
            .copied()
            .unwrap_or_default()
    };
    let batches = (after.batches - before.batches).max(1);
    println!(
        "{}{} peer appends, {WRITERS} writers, {secs}s: {} appends in {elapsed:.2?} = {:.0} appends/s; \
         avg batch {:.1} requests; latency p50 {:?} p99 {:?} max {:?}",
        fx.backend.name(),
        if fx.ack_sync_key {
            " (+ sync-key ACK)"
        } else {
            ""
        },
        lat.len(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        (after.requests - before.requests) as f64 / batches as f64,
        pct(0.50),
        pct(0.99),
        lat.last().copied().unwrap_or_default(),
    );
}

fn bench_store(c: &mut Criterion) {
    for (ack, name) in [
        (false, "peer_append_100_writers"),
        (true, "peer_append_and_sync_key_100_writers"),
    ] {
        let fx = Fixture::new(ack);
        report(&fx);
        let mut group = c.benchmark_group(format!("{}_store", fx.backend.name()));
        group.throughput(Throughput::Elements(1));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(10));
        group.bench_function(name, |b| b.iter_custom(|iters| fx.run(iters, None).0));
        group.finish();
    }
}

criterion_group!(benches, bench_store);
criterion_main!(benches);
