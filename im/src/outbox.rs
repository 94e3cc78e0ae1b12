//! One ordered outbound queue per connection, filled by other tasks (fan-out
//! of pushes, notifies, room and RT messages) and drained by the connection's
//! own task.
//!
//! Slow-consumer policy: the queue is bounded in bytes. A push that would
//! exceed the bound closes the outbox instead of blocking the pusher or
//! dropping frames silently; the connection task sees the close and drops the
//! client (reason `slow_consumer`). Nothing stored is lost — the client syncs
//! when it reconnects — and no other client is slowed down.
//!
//! An idle connection's queue holds at most [`IDLE_SLOTS`] slots of heap memory.

use crate::disconnect::Disconnect;
use bytes::Bytes;
use ferry_common::protocol::metadata::Metadata;
use futures_util::task::AtomicWaker;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

/// Queue capacity an empty outbox may keep (see [`Outbox::drain_into`]).
pub const IDLE_SLOTS: usize = 4;

/// A frame waiting to be written; the seq number is assigned at write time.
#[derive(Debug, Clone)]
pub struct OutFrame {
    pub cmd: u8,
    pub flag: u8,
    /// Body encoded at version 2 (adapted to the connection's version when written).
    pub body: Bytes,
    /// Written as a METADATA frame immediately before this one.
    pub meta: Option<Metadata>,
}

impl OutFrame {
    pub fn new(cmd: u8, flag: u8, body: Bytes) -> OutFrame {
        OutFrame {
            cmd,
            flag,
            body,
            meta: None,
        }
    }

    pub fn with_meta(cmd: u8, flag: u8, body: Bytes, meta: Metadata) -> OutFrame {
        OutFrame {
            cmd,
            flag,
            body,
            meta: Some(meta),
        }
    }

    fn cost(&self) -> usize {
        // Header(s) plus body: what the frame will occupy in the socket buffer.
        12 + self.body.len() + if self.meta.is_some() { 44 } else { 0 }
    }
}

/// One or two frames queued as a unit (a message and the SYNC_NOTIFY after
/// it), built per recipient without a heap allocation.
#[derive(Debug, Clone)]
pub struct Unit(OutFrame, Option<OutFrame>);

impl Unit {
    pub fn one(f: OutFrame) -> Unit {
        Unit(f, None)
    }

    pub fn two(first: OutFrame, then: OutFrame) -> Unit {
        Unit(first, Some(then))
    }
}

impl IntoIterator for Unit {
    type Item = OutFrame;
    type IntoIter = std::iter::Chain<std::iter::Once<OutFrame>, std::option::IntoIter<OutFrame>>;

    fn into_iter(self) -> Self::IntoIter {
        std::iter::once(self.0).chain(self.1)
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<OutFrame>,
    bytes: usize,
    closed: Option<Disconnect>,
}

pub struct Outbox {
    state: Mutex<State>,
    /// The connection task, woken by pushes, closes and shutdown. Polled
    /// rather than awaited through a `Notify`, so a waiting connection task
    /// holds no extra future.
    waker: AtomicWaker,
    /// Set by every wake until the connection task sees it (no wake is lost
    /// between two polls).
    signalled: AtomicBool,
    /// When the connection task wants to be woken at the latest (a timeout
    /// of its own), in [`millis`]; checked by the node-wide timer
    /// (`connection::wake_list`) instead of a timer per connection.
    deadline: AtomicU64,
    limit: usize,
}

/// Milliseconds since a process-wide epoch, rounded up, so a deadline the
/// node-wide timer finds due has really passed.
pub fn millis(at: tokio::time::Instant) -> u64 {
    static EPOCH: OnceLock<tokio::time::Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(tokio::time::Instant::now);
    let d = at.saturating_duration_since(epoch);
    d.as_millis() as u64 + u64::from(!d.subsec_nanos().is_multiple_of(1_000_000))
}

impl Outbox {
    pub fn new(limit: usize) -> Outbox {
        Outbox {
            state: Mutex::new(State::default()),
            waker: AtomicWaker::new(),
            signalled: AtomicBool::new(false),
            deadline: AtomicU64::new(u64::MAX),
            limit,
        }
    }

    /// Queues frames as one unit (e.g. a push and its SYNC_NOTIFY). Returns
    /// false if the outbox is closed, or closes it now if the unit does not fit.
    pub fn push(&self, frames: impl IntoIterator<Item = OutFrame>) -> bool {
        let mut st = self.lock();
        if st.closed.is_some() {
            return false;
        }
        for f in frames {
            st.bytes += f.cost();
            st.queue.push_back(f);
        }
        if st.bytes > self.limit {
            st.closed = Some(Disconnect::SlowConsumer);
            st.queue = VecDeque::new();
            st.bytes = 0;
        }
        let ok = st.closed.is_none();
        drop(st);
        self.wake();
        ok
    }

    /// Moves queued frames into `out` until about `budget` bytes are taken.
    pub fn drain_into(&self, out: &mut Vec<OutFrame>, budget: usize) {
        let _ = self.drain_with(budget, |f| out.push(f));
    }

    /// Hands queued frames, in order, to `f` until about `budget` bytes are
    /// taken, all under one lock (the connection task encodes them straight
    /// into its write buffer: no intermediate vector that an idle connection
    /// would keep). A closed outbox hands out nothing and returns why.
    pub fn drain_with(&self, budget: usize, mut f: impl FnMut(OutFrame)) -> Result<(), Disconnect> {
        let mut st = self.lock();
        if let Some(r) = st.closed {
            return Err(r);
        }
        let mut taken = 0;
        while taken < budget {
            let Some(frame) = st.queue.pop_front() else {
                break;
            };
            let c = frame.cost();
            taken += c;
            st.bytes -= c;
            f(frame);
        }
        if st.queue.is_empty() {
            // Every push signalled so far has been taken: its wake would
            // only make the connection task look again at an empty queue.
            // A push after this lock sets the flag again; the timer re-wakes
            // a due deadline every tick.
            self.signalled.store(false, Ordering::Release);
            // A burst must not leave its queue capacity behind on an idle
            // connection (64 slots would be 4 KiB); a few slots are kept so
            // steady one-frame traffic does not allocate per frame.
            if st.queue.capacity() > IDLE_SLOTS {
                st.queue = VecDeque::new();
            }
        }
        Ok(())
    }

    pub fn close(&self, reason: Disconnect) {
        let mut st = self.lock();
        if st.closed.is_none() {
            st.closed = Some(reason);
        }
        drop(st);
        self.wake();
    }

    pub fn closed(&self) -> Option<Disconnect> {
        self.lock().closed
    }

    pub fn is_empty(&self) -> bool {
        self.lock().queue.is_empty()
    }

    /// Bytes queued right now (what counts against the slow-consumer limit).
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Wakes the connection task (a push, a close, or node shutdown).
    ///
    /// Only the wake that raises the signal reaches the task: while it is
    /// raised, the task has been woken and not yet looked (it lowers the
    /// signal in [`poll_notified`](Self::poll_notified) before it waits, or
    /// in a drain that empties the queue), so a room's burst of pushes to a
    /// connection that is behind costs one wake, not one per push.
    pub fn wake(&self) {
        if !self.signalled.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Asks to be woken (once) at `at` at the latest (a little later: the
    /// node-wide timer ticks every `connection::wake_list::TICK`).
    pub fn set_deadline(&self, at: tokio::time::Instant) {
        self.deadline.store(millis(at), Ordering::Relaxed);
    }

    /// Whether the deadline set last has passed by `now_ms` (see [`millis`]).
    pub fn is_due(&self, now_ms: u64) -> bool {
        self.deadline.load(Ordering::Relaxed) <= now_ms
    }

    /// Ready once per wake since the last Ready: something was pushed, the
    /// outbox was closed, or [`Outbox::wake`] was called.
    pub fn poll_notified(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.signalled.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.signalled.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-push; the
        // queue itself is still consistent, so keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_closes_as_slow_consumer() {
        let o = Outbox::new(100);
        assert!(o.push([OutFrame::new(4, 0, Bytes::from(vec![0u8; 50]))]));
        assert!(!o.push([OutFrame::new(4, 0, Bytes::from(vec![0u8; 50]))]));
        assert_eq!(o.closed(), Some(Disconnect::SlowConsumer));
        assert!(!o.push([OutFrame::new(4, 0, Bytes::new())]));
    }

    #[test]
    fn drains_in_order_within_budget() {
        let o = Outbox::new(1 << 20);
        for i in 0..10u8 {
            o.push([OutFrame::new(i, 0, Bytes::new())]);
        }
        let mut v = Vec::new();
        o.drain_into(&mut v, 36);
        assert_eq!(v.iter().map(|f| f.cmd).collect::<Vec<_>>(), vec![0, 1, 2]);
        o.drain_into(&mut v, usize::MAX);
        assert_eq!(v.len(), 10);
        assert!(o.is_empty());
        // The burst's queue capacity is not kept by the now idle outbox.
        assert!(o.lock().queue.capacity() <= IDLE_SLOTS);
    }

    #[test]
    fn a_drained_push_does_not_wake_again() {
        use futures_util::task::noop_waker;
        let o = Outbox::new(1 << 20);
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        o.push([OutFrame::new(1, 0, Bytes::new())]);
        o.push([OutFrame::new(2, 0, Bytes::new())]);
        assert_eq!(o.poll_notified(&mut cx), Poll::Ready(()));
        o.push([OutFrame::new(3, 0, Bytes::new())]);
        let mut v = Vec::new();
        o.drain_into(&mut v, usize::MAX);
        assert_eq!(v.len(), 3);
        // The third push's signal was taken with its frame.
        assert_eq!(o.poll_notified(&mut cx), Poll::Pending);
        // A partial drain keeps the signal: frames are still waiting.
        o.push([OutFrame::new(4, 0, Bytes::new())]);
        o.push([OutFrame::new(5, 0, Bytes::new())]);
        o.drain_into(&mut v, 1);
        assert_eq!(o.poll_notified(&mut cx), Poll::Ready(()));
        // A push after the drain wakes again.
        o.drain_into(&mut v, usize::MAX);
        o.push([OutFrame::new(6, 0, Bytes::new())]);
        assert_eq!(o.poll_notified(&mut cx), Poll::Ready(()));
    }

    /// A waker that counts its wakes.
    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_burst_of_pushes_wakes_once_and_loses_none() {
        use std::sync::Arc;
        let o = Outbox::new(1 << 20);
        let count = Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
        let waker = std::task::Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert_eq!(o.poll_notified(&mut cx), Poll::Pending);
        for i in 0..50u8 {
            o.push([OutFrame::new(i, 0, Bytes::new())]);
        }
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "one wake for the burst");
        assert_eq!(o.poll_notified(&mut cx), Poll::Ready(()));
        // Woken and looked: the next push wakes again, even before a drain.
        o.push([OutFrame::new(50, 0, Bytes::new())]);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "not registered: nothing to wake"
        );
        assert_eq!(o.poll_notified(&mut cx), Poll::Ready(()));
        assert_eq!(o.poll_notified(&mut cx), Poll::Pending);
        o.push([OutFrame::new(51, 0, Bytes::new())]);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        let mut v = Vec::new();
        o.drain_into(&mut v, usize::MAX);
        let cmds: Vec<u8> = v.iter().map(|f| f.cmd).collect();
        assert_eq!(cmds, (0..52u8).collect::<Vec<_>>(), "all, in order");
        // A close while the signal is lowered wakes too.
        assert_eq!(o.poll_notified(&mut cx), Poll::Pending);
        o.close(Disconnect::SlowConsumer);
        assert_eq!(count.0.load(Ordering::SeqCst), 3);
    }
}
