//! The in-process fan-out path without sockets: one ROOM_IM broadcast to a
//! room of N member outboxes (`Rooms::broadcast`), then every member's
//! connection-side work — draining its outbox and encoding the frame with
//! its own header and seq into its write buffer (`Encoder`), as the
//! connection task does before its `write` syscall. Also a peer push
//! through the `Registry` (one user, one connection).
//!
//! `cargo bench -p ferry-im --bench fanout`; throughput is in deliveries.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferry_common::protocol::command::{IM, ROOM_IM};
use ferry_common::protocol::realtime::Realtime;
use ferry_im::outbox::{OutFrame, Outbox, Unit};
use ferry_im::registry::{LocalConn, Registry};
use ferry_im::rooms::Rooms;
use ferry_im::session::encoder::Encoder;
use std::hint::black_box;
use std::sync::Arc;

const APP: i64 = 7;
const ROOM: i64 = 10;

struct Member {
    outbox: Arc<Outbox>,
    writer: Encoder,
}

fn room_of(n: usize) -> (Rooms, Vec<Member>) {
    let rooms = Rooms::default();
    let members = (0..n)
        .map(|i| {
            let outbox = Arc::new(Outbox::new(4 << 20));
            rooms.join(APP, ROOM, i as u64 + 1, i as i64 + 1, 0, outbox.clone());
            let mut writer = Encoder::default();
            writer.set_version(2);
            Member { outbox, writer }
        })
        .collect();
    (rooms, members)
}

/// What each connection task does with its queue before writing.
fn drain(m: &mut Member) {
    let w = &mut m.writer;
    let _ = m.outbox.drain_with(256 * 1024, |f| w.push(&f));
    let n = m.writer.pending();
    black_box(m.writer.bytes());
    m.writer.advance(n);
}

fn room_broadcast(c: &mut Criterion) {
    let body = Realtime {
        sender: 1_000_000,
        receiver: ROOM,
        content: Bytes::from(vec![b'x'; 64]),
    }
    .encode();
    let mut g = c.benchmark_group("room_fanout");
    for n in [100usize, 1000] {
        let (rooms, mut members) = room_of(n);
        g.throughput(Throughput::Elements(n as u64));
        // Only the broadcast is timed; queues are drained untimed every
        // 256 messages so no outbox reaches its slow-consumer limit.
        g.bench_function(format!("broadcast_{n}"), |b| {
            b.iter_custom(|iters| {
                let mut spent = std::time::Duration::ZERO;
                for i in 0..iters {
                    let t0 = std::time::Instant::now();
                    let f = OutFrame::new(ROOM_IM, 0, body.clone());
                    black_box(rooms.broadcast(APP, ROOM, &f, Some((1_000_000, 0))));
                    spent += t0.elapsed();
                    if i % 256 == 255 {
                        for m in &mut members {
                            drain(m);
                        }
                    }
                }
                for m in &mut members {
                    drain(m);
                }
                spent
            })
        });
        g.bench_function(format!("broadcast_and_write_{n}"), |b| {
            b.iter(|| {
                let f = OutFrame::new(ROOM_IM, 0, body.clone());
                black_box(rooms.broadcast(APP, ROOM, &f, Some((1_000_000, 0))));
                for m in &mut members {
                    drain(m);
                }
            })
        });
    }
    g.finish();
}

fn peer_push(c: &mut Criterion) {
    let reg = Registry::default();
    let outbox = Arc::new(Outbox::new(4 << 20));
    reg.add(
        APP,
        42,
        LocalConn {
            conn: 1,
            device_id: 0,
            online: true,
            transport: ferry_im::metrics::Transport::Tcp,
            platform: 3,
            outbox: outbox.clone(),
            info: ferry_im::presence::DeviceInfo::test(),
        },
    );
    let mut m = Member {
        outbox,
        writer: Encoder::default(),
    };
    m.writer.set_version(2);
    let body = Bytes::from(vec![b'x'; 100]);
    let mut g = c.benchmark_group("peer_push");
    g.throughput(Throughput::Elements(1));
    g.bench_function("deliver_and_write", |b| {
        b.iter(|| {
            reg.deliver(APP, 42, |_| {
                Some(Unit::one(OutFrame::new(IM, 0, body.clone())))
            });
            drain(&mut m);
        })
    });
    g.finish();
}

criterion_group!(benches, room_broadcast, peer_push);
criterion_main!(benches);
