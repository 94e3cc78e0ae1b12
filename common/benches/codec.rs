//! Codec micro-benchmarks: encoding an IM frame, splitting a buffer of 1000
//! frames, and decoding an IM body. Measurement times are kept short so the
//! whole bench finishes in well under a minute.
//!
//! Run: `cargo bench -p ferry-common --bench codec`

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ferry_common::protocol::command::IM;
use ferry_common::protocol::im::Im;
use ferry_common::protocol::{DEFAULT_VERSION, MAX_CLIENT_BODY, Message, flag, split_frame};
use std::hint::black_box;
use std::time::Duration;

/// A typical chat message: ~100 bytes of JSON content.
fn sample_im() -> Message {
    Message::Im(Im {
        sender: 1_000_001,
        receiver: 1_000_002,
        timestamp: 1_700_000_000,
        msgid: 42,
        content: Bytes::from_static(
            br#"{"text":"hello from the codec benchmark, a message of typical length","uuid":"0f8e"}"#,
        ),
    })
}

fn bench_codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20);

    let msg = sample_im();
    let frame = msg.to_frame(7, DEFAULT_VERSION, flag::PUSH);
    let frame_len = frame.to_bytes().len();

    // Encode one IM frame (header + body) into a single Bytes.
    g.throughput(Throughput::Elements(1));
    g.bench_function("im_frame_to_bytes", |b| {
        b.iter(|| black_box(black_box(&frame).to_bytes()))
    });
    // Body encoding plus frame encoding, from the typed message.
    g.bench_function("im_message_to_frame_to_bytes", |b| {
        b.iter(|| black_box(black_box(&msg).to_frame(7, DEFAULT_VERSION, 0).to_bytes()))
    });

    // Split a buffer holding 1000 back-to-back frames.
    let mut stream = BytesMut::with_capacity(1000 * frame_len);
    for seq in 0..1000 {
        msg.to_frame(seq, DEFAULT_VERSION, 0).write_to(&mut stream);
    }
    let stream = stream.freeze();
    g.throughput(Throughput::Elements(1000));
    g.bench_function("split_frame_1000", |b| {
        b.iter_batched(
            || BytesMut::from(&stream[..]),
            |mut buf| {
                let mut n = 0usize;
                while let Some(f) = split_frame(&mut buf, MAX_CLIENT_BODY).unwrap() {
                    black_box(&f);
                    n += 1;
                }
                assert_eq!(n, 1000);
            },
            BatchSize::SmallInput,
        )
    });

    // Decode an IM body (v2) into a Message.
    let body = msg.encode(DEFAULT_VERSION);
    g.throughput(Throughput::Elements(1));
    g.bench_function("im_decode", |b| {
        b.iter(|| black_box(Message::decode(IM, DEFAULT_VERSION, black_box(body.clone())).unwrap()))
    });

    g.finish();
}

criterion_group!(benches, bench_codec);
criterion_main!(benches);
