//! Delivery in storage order for a group's fan-outs on stores that apply
//! requests in order (the embedded ones).
//!
//! Several members may send to one group at once. The store writes their
//! messages into every member's queue in one order, but each send then
//! delivers from its own task, and tasks finish in any order: a member could
//! get message 5 pushed before message 4. Its METADATA (prev 4) then does
//! not follow what the client has (3), so the client syncs — an extra store
//! read, a second copy of both messages and a sync-key write, for nothing.
//! Measured on the group benchmark (10 senders, 90 receivers): 45,000 syncs
//! per 10,000 messages.
//!
//! So each fan-out gets its position in the group's stream from the store
//! ([`crate::store::Store::append_ordered`]) and delivers only after the one
//! before it. Ordering is an optimisation, never a condition: a fan-out
//! waits at most [`WAIT_FOR_EARLIER`] (an earlier one failed or its task was
//! dropped) and then delivers anyway; clients sync as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// Longest wait for the fan-out before this one to be delivered.
pub const WAIT_FOR_EARLIER: Duration = Duration::from_millis(50);

/// Groups remembered at most (then forgotten: waits end early, harmlessly).
const GROUPS_MAX: usize = 1 << 20;

#[derive(Default)]
pub struct Turns {
    groups: Mutex<HashMap<(i64, i64), Cursor>>,
}

struct Cursor {
    /// Highest position delivered.
    delivered: u64,
    /// Woken on every delivery of the group.
    notify: Arc<Notify>,
}

/// A fan-out's turn; marks it delivered when dropped (also when the send is
/// cancelled), so later fan-outs never wait for it longer than needed.
pub struct Turn<'a> {
    turns: &'a Turns,
    group: (i64, i64),
    position: u64,
}

impl Turns {
    fn lock(&self) -> MutexGuard<'_, HashMap<(i64, i64), Cursor>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the fan-out at `position - 1` of `group` was delivered
    /// (or [`WAIT_FOR_EARLIER`] passed); deliver while holding the result.
    pub async fn wait(&self, group: (i64, i64), position: u64) -> Turn<'_> {
        let turn = Turn {
            turns: self,
            group,
            position,
        };
        let deadline = tokio::time::Instant::now() + WAIT_FOR_EARLIER;
        loop {
            let notify = {
                let mut groups = self.lock();
                if groups.len() >= GROUPS_MAX && !groups.contains_key(&group) {
                    groups.clear();
                }
                let c = groups.entry(group).or_insert_with(|| Cursor {
                    delivered: 0,
                    notify: Arc::new(Notify::new()),
                });
                if c.delivered + 1 >= position {
                    return turn;
                }
                c.notify.clone()
            };
            let notified = notify.notified();
            tokio::pin!(notified);
            // Registered before the second look: a delivery in between
            // cannot be missed.
            notified.as_mut().enable();
            if self
                .lock()
                .get(&group)
                .is_none_or(|c| c.delivered + 1 >= position)
            {
                return turn;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return turn;
            }
        }
    }

    fn delivered(&self, group: (i64, i64), position: u64) {
        let mut groups = self.lock();
        if let Some(c) = groups.get_mut(&group) {
            c.delivered = c.delivered.max(position);
            c.notify.notify_waiters();
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.turns.delivered(self.group, self.position);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paused clock, one thread: every wait that is not released by a
    /// delivery shows up as exactly `WAIT_FOR_EARLIER` of elapsed time.
    #[tokio::test(start_paused = true)]
    async fn fanouts_finishing_out_of_order_deliver_in_order() {
        let turns = Arc::new(Turns::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        let g = (7, 1);
        let started = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        // Positions 3, 2, 1 reach their turn in reverse order.
        for p in [3u64, 2, 1] {
            let (turns, log) = (turns.clone(), log.clone());
            tasks.push(tokio::spawn(async move {
                let _turn = turns.wait(g, p).await;
                log.lock().expect("log").push(p);
            }));
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(*log.lock().expect("log"), vec![1, 2, 3]);
        assert_eq!(started.elapsed(), Duration::ZERO, "released, not timed out");
        // Another group is independent.
        let _t = turns.wait((7, 2), 1).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_predecessor_only_delays_by_the_bound() {
        let turns = Turns::default();
        let started = tokio::time::Instant::now();
        // Position 1 never comes (its send failed).
        let t = turns.wait((7, 1), 2).await;
        assert_eq!(started.elapsed(), WAIT_FOR_EARLIER);
        drop(t);
        // Its successor no longer waits.
        let _t = turns.wait((7, 1), 3).await;
        assert_eq!(started.elapsed(), WAIT_FOR_EARLIER);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_send_frees_its_successor() {
        let turns = Arc::new(Turns::default());
        let started = tokio::time::Instant::now();
        let waiting = {
            let turns = turns.clone();
            tokio::spawn(async move {
                let _t = turns.wait((1, 1), 2).await;
                unreachable!("aborted while waiting");
            })
        };
        tokio::task::yield_now().await; // now waiting for position 1
        waiting.abort();
        assert!(waiting.await.is_err_and(|e| e.is_cancelled()));
        // Position 2's turn ended with its cancellation: 3 goes at once.
        let _t = turns.wait((1, 1), 3).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
