//! Per-message cost of the dirty-word filter (`--word-file`) with a
//! 50,000-word dictionary (half CJK, half Latin, generated deterministically):
//! a clean message (the common case: parse the JSON, scan, keep the original
//! bytes), a message with two hits (masked and re-encoded), and content that
//! is not JSON; and the clean message against 50 words, for comparison.
//! The dictionary's compile time is printed once.
//!
//! `cargo bench -p ferry-im --bench wordfilter`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferry_im::wordfilter::WordFilter;
use std::hint::black_box;

const WORDS: usize = 50_000;

/// A deterministic dictionary: CJK words of 2-4 characters from the common
/// ideograph block, Latin words of 6-11 letters.
fn dictionary() -> Vec<String> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..WORDS)
        .map(|i| {
            if i % 2 == 0 {
                let n = 2 + (next() % 3) as usize;
                (0..n)
                    .map(|_| char::from_u32(0x4e00 + (next() % 0x5000) as u32).unwrap_or('中'))
                    .collect()
            } else {
                let n = 6 + (next() % 6) as usize;
                (0..n)
                    .map(|_| (b'a' + (next() % 26) as u8) as char)
                    .collect()
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let words = dictionary();
    let started = std::time::Instant::now();
    let filter = WordFilter::new(words.iter().map(String::as_str)).expect("builds");
    println!("compiled {} words in {:?}", filter.len(), started.elapsed());
    let clean = br#"{"text":"Hello there, see you at the meeting tomorrow at ten. \u4f60\u597d","client_id":"8f1c2d"}"#;
    let hit = format!(
        r#"{{"text":"Hello there {} see you at the meeting tomorrow {} at ten.","client_id":"8f1c2d"}}"#,
        words[0], words[1]
    );
    assert!(
        filter.filter_content(clean).is_none(),
        "clean text has a word"
    );
    assert!(
        filter.filter_content(hit.as_bytes()).is_some(),
        "hits are found"
    );
    let mut g = c.benchmark_group("wordfilter_50k");
    g.throughput(Throughput::Elements(1));
    g.bench_function("clean_json", |b| {
        b.iter(|| black_box(filter.filter_content(black_box(clean))))
    });
    g.bench_function("two_hits_json", |b| {
        b.iter(|| black_box(filter.filter_content(black_box(hit.as_bytes()))))
    });
    g.bench_function("not_json", |b| {
        b.iter(|| black_box(filter.filter_content(black_box(b"plain text, not JSON at all"))))
    });
    g.finish();
    // The same clean message against the first 50 words: what the
    // dictionary's size costs per message.
    let small = WordFilter::new(words.iter().take(50).map(String::as_str)).expect("builds");
    let mut g = c.benchmark_group("wordfilter_50");
    g.throughput(Throughput::Elements(1));
    g.bench_function("clean_json", |b| {
        b.iter(|| black_box(small.filter_content(black_box(clean))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
