//! A small mutation fuzzer for the fuzz tests of common (decoders) and im
//! (client reader, HTTP parameters): cargo-fuzz needs a nightly toolchain;
//! this runs on stable, in the normal suite.
//!
//! Each case takes a seed input (valid encodings from the corpus) or random
//! bytes and applies 1–8 random mutations: bit flips, byte sets to
//! interesting values (0, 0x7f, 0x80, 0xff), inserts, deletes, truncation,
//! splicing with another seed, and overwriting a 4-byte window with an
//! interesting big-endian length (lengths are where decoders go wrong).
//! The target runs under `catch_unwind`; a panic fails the test and prints
//! the input in hex so it can become a regression test.
//!
//! Cases per target: `FERRY_FUZZ_CASES` (default 100 000, about a second in
//! debug). Seed: `FERRY_FUZZ_SEED` (default: time-based, printed).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

/// xorshift64*: fast, deterministic from the seed, good enough for mutation.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

const INTERESTING_BYTES: [u8; 6] = [0, 1, 0x7f, 0x80, 0xfe, 0xff];
const INTERESTING_U32: [u32; 10] = [
    0,
    1,
    4,
    12,
    255,
    0x7fff,
    0x8000,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
];

/// One mutated input.
pub fn mutate(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut v = if corpus.is_empty() || rng.chance(8) {
        let n = rng.below(96);
        (0..n).map(|_| rng.byte()).collect()
    } else {
        corpus[rng.below(corpus.len())].clone()
    };
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        match rng.below(8) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())];
            }
            2 => {
                let i = rng.below(v.len() + 1);
                let n = 1 + rng.below(8);
                for _ in 0..n {
                    v.insert(i, rng.byte());
                }
            }
            3 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = (1 + rng.below(8)).min(v.len() - i);
                v.drain(i..i + n);
            }
            4 => {
                let n = rng.below(v.len() + 1);
                v.truncate(n);
            }
            5 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(v.len() + 1);
                let from = rng.below(other.len() + 1);
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            6 if v.len() >= 4 => {
                let i = rng.below(v.len() - 3);
                let x = INTERESTING_U32[rng.below(INTERESTING_U32.len())];
                v[i..i + 4].copy_from_slice(&x.to_be_bytes());
            }
            _ => {
                if !v.is_empty() {
                    let i = rng.below(v.len());
                    v[i] = rng.byte();
                }
            }
        }
    }
    v
}

/// Cases per target for this run.
pub fn cases() -> u64 {
    std::env::var("FERRY_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

fn seed() -> u64 {
    std::env::var("FERRY_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// Runs `target` on `cases()` mutated inputs; panics (failing the test) with
/// the offending input on the first panic inside the target.
pub fn run(name: &str, corpus: &[Vec<u8>], target: impl Fn(&[u8])) -> u64 {
    let n = cases();
    let seed = seed();
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    for i in 0..n {
        let input = mutate(&mut rng, corpus);
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| target(&input))) {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "fuzz target {name} failed on case {i} (FERRY_FUZZ_SEED={seed}): {msg}\ninput ({} bytes): {}",
                input.len(),
                hex(&input)
            );
        }
    }
    // Recorded in the hardening note when run with a large FERRY_FUZZ_CASES.
    eprintln!(
        "fuzz {name}: {n} executions in {:.1} s, seed {seed}, 0 failures",
        started.elapsed().as_secs_f64()
    );
    n
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
