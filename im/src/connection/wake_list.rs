//! Every open client connection's outbox, so that shutdown and the node-wide
//! timer can wake each connection task.
//!
//! A connection task waits on its transport and its outbox only — not on
//! the node's shutdown token nor on a timer of its own: each of those
//! futures would be part of every idle connection's task (72 and 112 bytes),
//! while an entry here costs about 20.
//! * Shutdown cancels the token first and then wakes every outbox listed
//!   here; a connection listed after the wake sees the cancelled token the
//!   first time its loop runs.
//! * Timeouts (login, idle, write, close flush) are deadlines stored in the
//!   outbox; [`WakeList::run_timers`] wakes the connections whose deadline has passed,
//!   every [`TICK`]. A timeout therefore fires up to one tick late, which is
//!   nothing against timeouts of seconds. The scan costs about 20 ns per
//!   connection per tick.

use crate::outbox::{Outbox, millis};
use crate::registry::ConnId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How often [`WakeList::run_timers`] looks for connections whose deadline passed.
pub const TICK: Duration = Duration::from_millis(100);

/// Shards, so connects and disconnects on different workers rarely meet on
/// one lock.
const SHARDS: usize = 16;

pub struct WakeList {
    shards: [Mutex<HashMap<ConnId, Arc<Outbox>>>; SHARDS],
}

impl Default for WakeList {
    fn default() -> WakeList {
        WakeList {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }
}

impl WakeList {
    fn shard(&self, id: ConnId) -> MutexGuard<'_, HashMap<ConnId, Arc<Outbox>>> {
        // A poisoned shard only means a panic elsewhere mid-insert; the map
        // itself is consistent.
        self.shards[(id % SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub fn insert(&self, id: ConnId, outbox: &Arc<Outbox>) {
        self.shard(id).insert(id, outbox.clone());
    }

    pub fn remove(&self, id: ConnId) {
        let mut shard = self.shard(id);
        shard.remove(&id);
        // 15,000 connections that come and go must not leave their table
        // behind.
        let len = shard.len();
        if shard.capacity() > 64 && len < shard.capacity() / 4 {
            shard.shrink_to(len * 2);
        }
    }

    /// Wakes every listed connection's task.
    pub fn wake_all(&self) {
        self.wake_where(|_| true);
    }

    /// Wakes the connections whose deadline has passed by `now_ms`.
    pub fn wake_due(&self, now_ms: u64) {
        self.wake_where(|o| o.is_due(now_ms));
    }

    fn wake_where(&self, due: impl Fn(&Outbox) -> bool) {
        let mut woken = Vec::new();
        for s in &self.shards {
            woken.extend(
                s.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .filter(|o| due(o))
                    .cloned(),
            );
            // Woken outside the lock: a wake may run the connection's task
            // on this thread's scheduler slot, which would then take it.
            for o in woken.drain(..) {
                o.wake();
            }
        }
    }

    /// The node-wide timer: wakes connections whose deadline passed, until
    /// the process ends (connections still closing after shutdown need it
    /// too).
    pub async fn run_timers(&self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.wake_due(millis(tokio::time::Instant::now()));
        }
    }

    #[cfg(test)]
    fn count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::task::Poll;

    #[tokio::test]
    async fn wake_all_reaches_listed_outboxes_only() {
        let list = WakeList::default();
        let a = Arc::new(Outbox::new(1024));
        let b = Arc::new(Outbox::new(1024));
        list.insert(1, &a);
        list.insert(2, &b);
        list.remove(2);
        assert_eq!(list.count(), 1);
        list.wake_all();
        // `a` was woken (the wake is kept until polled); `b` was not.
        poll_fn(|cx| a.poll_notified(cx)).await;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert_eq!(b.poll_notified(&mut cx), Poll::Pending);
    }

    #[test]
    fn wake_due_wakes_only_passed_deadlines() {
        let list = WakeList::default();
        let now = tokio::time::Instant::now();
        let soon = Arc::new(Outbox::new(1024));
        let later = Arc::new(Outbox::new(1024));
        let none = Arc::new(Outbox::new(1024));
        soon.set_deadline(now + Duration::from_millis(10));
        later.set_deadline(now + Duration::from_secs(60));
        for (i, o) in [&soon, &later, &none].into_iter().enumerate() {
            list.insert(i as u64, o);
        }
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        list.wake_due(millis(now));
        assert_eq!(soon.poll_notified(&mut cx), Poll::Pending, "not yet due");
        list.wake_due(millis(now + Duration::from_millis(10)));
        assert_eq!(soon.poll_notified(&mut cx), Poll::Ready(()));
        assert_eq!(later.poll_notified(&mut cx), Poll::Pending);
        assert_eq!(none.poll_notified(&mut cx), Poll::Pending);
    }
}
