//! The bounded in-memory buffer between link readers (producers) and the
//! Redis writer, and the batching rule (spec §3.12): wait for one entry,
//! take what is there up to [`BATCH_MAX`], and if that is fewer keep
//! collecting for up to [`BATCH_WINDOW`].
//!
//! When the buffer is full a producer waits (backpressure on that one link),
//! but only for a bounded time; entries still not accepted then are dropped,
//! counted and logged at warn — never silently. After such a timeout the
//! buffer counts as saturated: later producers drop at once instead of each
//! waiting again (so a long Redis outage does not slow every link to one
//! PUSH per second), until an entry fits again.

use super::entry::PushEntry;
use crate::stats::{self, Stats};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::Instant;

/// Most entries written in one MULTI/EXEC.
pub const BATCH_MAX: usize = 1000;
/// How long a batch keeps collecting after its first entry.
pub const BATCH_WINDOW: Duration = Duration::from_millis(500);
/// How long a producer may wait for room before entries are dropped.
pub const ENQUEUE_WAIT: Duration = Duration::from_secs(1);

/// Drop warnings are logged at most this often (with running totals).
const WARN_EVERY: Duration = Duration::from_secs(1);

/// Producer side (cloneable).
#[derive(Clone)]
pub struct PushQueue {
    tx: mpsc::Sender<PushEntry>,
    stats: Arc<Stats>,
    shared: Arc<Saturation>,
}

#[derive(Default)]
struct Saturation {
    /// A producer timed out and nothing has fit since.
    saturated: AtomicBool,
    /// Last drop warning, and drops since then.
    warned: Mutex<(Option<Instant>, usize)>,
}

/// Consumer side (the writer).
pub struct PushReceiver {
    rx: mpsc::Receiver<PushEntry>,
}

/// A buffer of `capacity` entries.
pub fn channel(capacity: usize, stats: Arc<Stats>) -> (PushQueue, PushReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        PushQueue {
            tx,
            stats,
            shared: Arc::default(),
        },
        PushReceiver { rx },
    )
}

impl PushQueue {
    /// Queues `entries`, waiting for room at most `wait` in total (not at
    /// all while the buffer is saturated). Returns how many were dropped
    /// (and counted in `push_dropped`).
    pub async fn enqueue(&self, entries: Vec<PushEntry>, wait: Duration) -> usize {
        let deadline = Instant::now() + wait;
        let mut dropped = 0;
        for e in entries {
            let e = match self.tx.try_send(e) {
                Ok(()) => {
                    self.accepted();
                    continue;
                }
                Err(TrySendError::Full(e)) => e,
                Err(TrySendError::Closed(_)) => {
                    dropped += 1;
                    continue;
                }
            };
            if self.shared.saturated.load(Ordering::Relaxed) {
                dropped += 1;
                continue;
            }
            match tokio::time::timeout_at(deadline, self.tx.reserve()).await {
                Ok(Ok(permit)) => {
                    permit.send(e);
                    self.accepted();
                }
                Ok(Err(_)) => dropped += 1,
                Err(_) => {
                    self.shared.saturated.store(true, Ordering::Relaxed);
                    dropped += 1;
                }
            }
        }
        if dropped > 0 {
            self.dropped(dropped, wait);
        }
        dropped
    }

    fn accepted(&self) {
        stats::add(&self.stats.push_buffered, 1);
        if self.shared.saturated.swap(false, Ordering::Relaxed) {
            tracing::info!("push buffer has room again");
        }
    }

    fn dropped(&self, n: usize, wait: Duration) {
        stats::add(&self.stats.push_dropped, n as u64);
        let mut w = self.shared.warned.lock().unwrap_or_else(|e| e.into_inner());
        w.1 += n;
        if w.0.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                dropped = w.1,
                dropped_total = self.stats.push_dropped.load(Ordering::Relaxed),
                buffer = self.tx.max_capacity(),
                "offline push entries DROPPED: push buffer full (Redis slow or down) for over {wait:?}; raise --push-buffer or fix Redis",
            );
            *w = (Some(Instant::now()), 0);
        }
    }

    /// Entries waiting in the buffer (not counting a batch being written).
    pub fn len(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PushReceiver {
    /// Waits for at least one entry and takes what is available, up to
    /// `max - batch.len()`. False when every producer is gone. Cancel-safe:
    /// whatever was received is in `batch`.
    pub async fn first(&mut self, batch: &mut Vec<PushEntry>, max: usize) -> bool {
        let room = max.saturating_sub(batch.len()).max(1);
        self.rx.recv_many(batch, room).await > 0
    }

    /// Keeps adding to `batch` until it holds `max` entries, `window` has
    /// passed, or the producers are gone. Cancel-safe like [`Self::first`].
    pub async fn fill(&mut self, batch: &mut Vec<PushEntry>, max: usize, window: Duration) {
        let deadline = Instant::now() + window;
        while batch.len() < max {
            let room = max - batch.len();
            match tokio::time::timeout_at(deadline, self.rx.recv_many(batch, room)).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// One batch: [`Self::first`] then [`Self::fill`]. False (and `batch`
    /// empty) when the producers are gone and nothing is left.
    pub async fn next_batch(
        &mut self,
        batch: &mut Vec<PushEntry>,
        max: usize,
        window: Duration,
    ) -> bool {
        if batch.is_empty() && !self.first(batch, max).await {
            return false;
        }
        self.fill(batch, max, window).await;
        true
    }

    /// Takes what is immediately available (for the final flush).
    pub fn try_take(&mut self, batch: &mut Vec<PushEntry>, max: usize) {
        while batch.len() < max {
            match self.rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> PushEntry {
        PushEntry {
            queue: "push_queue",
            json: i.to_string(),
        }
    }

    fn entries(n: usize) -> Vec<PushEntry> {
        (0..n).map(entry).collect()
    }

    #[tokio::test]
    async fn full_batch_is_taken_at_once_and_in_order() {
        let st = Arc::new(Stats::default());
        let (q, mut rx) = channel(5000, st.clone());
        assert_eq!(q.enqueue(entries(2500), ENQUEUE_WAIT).await, 0);
        assert_eq!(st.snapshot().push_buffered, 2500);
        let started = std::time::Instant::now();
        let mut b = Vec::new();
        assert!(
            rx.next_batch(&mut b, BATCH_MAX, Duration::from_secs(30))
                .await
        );
        assert_eq!(b.len(), BATCH_MAX);
        assert_eq!(b[0].json, "0");
        assert_eq!(b[999].json, "999");
        // A full batch does not wait for the window.
        assert!(started.elapsed() < Duration::from_secs(10));
        b.clear();
        assert!(
            rx.next_batch(&mut b, BATCH_MAX, Duration::from_secs(30))
                .await
        );
        assert_eq!(b[0].json, "1000");
    }

    #[tokio::test]
    async fn partial_batch_waits_for_the_window_and_collects_late_entries() {
        let st = Arc::new(Stats::default());
        let (q, mut rx) = channel(100, st);
        q.enqueue(entries(3), ENQUEUE_WAIT).await;
        let q2 = q.clone();
        let window = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let late = tokio::spawn(async move {
            q2.enqueue(vec![entry(3)], ENQUEUE_WAIT).await;
        });
        let mut b = Vec::new();
        assert!(rx.next_batch(&mut b, 10, window).await);
        late.await.expect("join");
        assert!(started.elapsed() >= window);
        assert_eq!(b.len(), 4);
    }

    #[tokio::test]
    async fn closed_producers_end_the_receiver() {
        let st = Arc::new(Stats::default());
        let (q, mut rx) = channel(10, st);
        q.enqueue(entries(2), ENQUEUE_WAIT).await;
        drop(q);
        let mut b = Vec::new();
        assert!(rx.next_batch(&mut b, 10, Duration::from_secs(30)).await);
        assert_eq!(b.len(), 2);
        b.clear();
        assert!(!rx.next_batch(&mut b, 10, Duration::from_secs(30)).await);
    }

    #[tokio::test]
    async fn full_buffer_waits_then_drops_and_counts() {
        let st = Arc::new(Stats::default());
        let (q, _rx) = channel(2, st.clone());
        let started = std::time::Instant::now();
        let wait = Duration::from_millis(200);
        assert_eq!(q.enqueue(entries(5), wait).await, 3);
        assert!(started.elapsed() >= wait);
        let s = st.snapshot();
        assert_eq!((s.push_buffered, s.push_dropped), (2, 3));
        assert_eq!(q.len(), 2);
    }

    #[tokio::test]
    async fn saturated_buffer_drops_without_waiting_again() {
        let st = Arc::new(Stats::default());
        let (q, mut rx) = channel(1, st.clone());
        assert_eq!(q.enqueue(entries(2), Duration::from_millis(50)).await, 1);
        // Saturated now: a long allowed wait is not used.
        let started = std::time::Instant::now();
        assert_eq!(q.enqueue(entries(3), Duration::from_secs(60)).await, 3);
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(st.snapshot().push_dropped, 4);
        // Room again: entries are accepted and waiting works as before.
        let mut b = Vec::new();
        assert!(rx.first(&mut b, 10).await);
        assert_eq!(q.enqueue(entries(1), Duration::from_secs(60)).await, 0);
        let q2 = q.clone();
        let h = tokio::spawn(async move { q2.enqueue(entries(1), Duration::from_secs(60)).await });
        assert!(rx.first(&mut b, 10).await);
        assert_eq!(h.await.expect("join"), 0);
    }

    #[tokio::test]
    async fn producer_resumes_when_room_appears() {
        let st = Arc::new(Stats::default());
        let (q, mut rx) = channel(1, st.clone());
        q.enqueue(entries(1), ENQUEUE_WAIT).await;
        let q2 = q.clone();
        let h =
            tokio::spawn(async move { q2.enqueue(vec![entry(1)], Duration::from_secs(30)).await });
        let mut b = Vec::new();
        assert!(rx.first(&mut b, 10).await);
        assert_eq!(h.await.expect("join"), 0);
        assert_eq!(st.snapshot().push_dropped, 0);
        rx.try_take(&mut b, 10);
        assert_eq!(b.len(), 2);
    }
}
