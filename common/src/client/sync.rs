//! The personal sync loop (spec §3.6) as a pure state machine: no sockets, no
//! clock of its own (callers pass `now`), so it is tested in isolation.
//!
//! Rules, matching gobelieve's SDKs except where exactly-once delivery needs
//! more care (marked *):
//! * after auth: SYNC(key);
//! * SYNC_NOTIFY(k) with k > key: SYNC(key) unless a sync is in flight, in
//!   which case k is remembered;
//! * SYNC_END(k): adopt k (also when smaller: the server rewound after data
//!   loss), report it with SYNC_KEY, and sync again if a remembered notify is
//!   still ahead of the new key;
//! * a pushed IM / GROUP_IM / CUSTOMER_V2 is taken directly only if its
//!   METADATA has `prev_sync_key == key` (both non-zero) and a larger
//!   `sync_key`; the key then advances to `sync_key`. Otherwise it is ignored:
//!   the SYNC_NOTIFY that follows every push brings it through a sync.
//! * (*) pushes are ignored while a sync is in flight. A batch requested with
//!   the old key would contain the pushed message too, and synced messages
//!   carry no server id to deduplicate them, so taking the push would deliver
//!   the message twice. The remembered notify re-syncs right after.
//! * the same METADATA rule applies to the METADATA before our own ACK, so
//!   a sender does not get its own message back through the next sync.
//! * a sync that got no SYNC_END within `timeout` no longer blocks new syncs
//!   (the server sends nothing when its storage fails; SDKs retry after ~4 s).
//!
//! The key is reported with SYNC_KEY lazily ([`SyncMachine::take_report`]),
//! so the connection can coalesce many accepted pushes into one frame.

use crate::protocol::metadata::Metadata;
use std::time::{Duration, Instant};

/// State of the personal sync loop.
#[derive(Debug, Clone)]
pub struct SyncMachine {
    key: i64,
    /// When the outstanding SYNC was sent, if one is.
    in_flight: Option<Instant>,
    /// Highest SYNC_NOTIFY key seen while a sync was in flight (0 = none).
    pending_notify: i64,
    /// An explicit [`SyncMachine::request`] arrived while a sync was in flight.
    forced: bool,
    /// Between SYNC_BEGIN and SYNC_END.
    in_batch: bool,
    batch_count: usize,
    /// Last key sent with SYNC_KEY (or the starting key, which the server
    /// already knows or the app owns).
    reported: i64,
    timeout: Duration,
}

/// What happened at SYNC_END.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncEnd {
    /// The key after adopting SYNC_END's value.
    pub key: i64,
    /// Messages delivered from this batch.
    pub messages: usize,
    /// Send SYNC with this key now (a notify or request arrived meanwhile).
    pub resync: Option<i64>,
}

impl SyncMachine {
    /// Starts at `key` (0 lets the server substitute the key it stored).
    /// `timeout` bounds how long an unanswered SYNC blocks new ones.
    pub fn new(key: i64, timeout: Duration) -> SyncMachine {
        SyncMachine {
            key,
            in_flight: None,
            pending_notify: 0,
            forced: false,
            in_batch: false,
            batch_count: 0,
            reported: key,
            timeout,
        }
    }

    /// The current personal sync key.
    pub fn key(&self) -> i64 {
        self.key
    }

    /// True while a SYNC is outstanding and not yet timed out.
    pub fn is_syncing(&self, now: Instant) -> bool {
        self.in_flight
            .is_some_and(|t| now.saturating_duration_since(t) < self.timeout)
    }

    /// True between SYNC_BEGIN and SYNC_END.
    pub fn in_batch(&self) -> bool {
        self.in_batch
    }

    fn send_sync(&mut self, now: Instant) -> Option<i64> {
        self.in_flight = Some(now);
        self.pending_notify = 0;
        self.forced = false;
        Some(self.key)
    }

    /// After a successful auth: always sync. Returns the key to send SYNC with.
    pub fn start(&mut self, now: Instant) -> Option<i64> {
        self.send_sync(now)
    }

    /// SYNC_NOTIFY(k). Returns the key to send SYNC with, if one is due now.
    pub fn on_notify(&mut self, k: i64, now: Instant) -> Option<i64> {
        if k <= self.key {
            return None;
        }
        if self.is_syncing(now) {
            self.pending_notify = self.pending_notify.max(k);
            return None;
        }
        self.send_sync(now)
    }

    /// The app asks for a sync regardless of notifies (e.g. to drain the
    /// queue). If one is in flight, another follows it.
    pub fn request(&mut self, now: Instant) -> Option<i64> {
        if self.is_syncing(now) {
            self.forced = true;
            return None;
        }
        self.send_sync(now)
    }

    /// SYNC_BEGIN.
    pub fn on_begin(&mut self) {
        self.in_batch = true;
        self.batch_count = 0;
    }

    /// A stored message inside a batch. `msgid` is its server id when the
    /// server attached METADATA (gobelieve does not); a message at or below
    /// the current key was already delivered (late duplicate batch after a
    /// sync timeout) and is dropped. Returns whether to deliver it.
    pub fn on_batch_message(&mut self, msgid: Option<i64>) -> bool {
        if let Some(id) = msgid
            && id > 0
            && id <= self.key
        {
            return false;
        }
        self.batch_count += 1;
        true
    }

    /// SYNC_END(k).
    pub fn on_end(&mut self, k: i64, now: Instant) -> SyncEnd {
        let messages = if self.in_batch { self.batch_count } else { 0 };
        self.in_batch = false;
        self.batch_count = 0;
        self.in_flight = None;
        self.key = k;
        let resync = if self.forced || self.pending_notify > self.key {
            self.send_sync(now)
        } else {
            self.pending_notify = 0;
            None
        };
        SyncEnd {
            key: self.key,
            messages,
            resync,
        }
    }

    /// A pushed stored message (outside a batch) with its adjacent METADATA,
    /// if any. Returns whether to deliver it; if so the key has advanced.
    pub fn on_push(&mut self, meta: Option<Metadata>, now: Instant) -> bool {
        self.advance(meta, now)
    }

    /// The METADATA before the ACK of our own message (personal queue only,
    /// not SUPER_GROUP). Returns whether the key advanced.
    pub fn on_own_ack(&mut self, meta: Option<Metadata>, now: Instant) -> bool {
        self.advance(meta, now)
    }

    fn advance(&mut self, meta: Option<Metadata>, now: Instant) -> bool {
        let Some(m) = meta else { return false };
        if self.in_batch || self.is_syncing(now) {
            return false;
        }
        if m.prev_sync_key == 0 || m.prev_sync_key != self.key || m.sync_key <= m.prev_sync_key {
            return false;
        }
        self.key = m.sync_key;
        true
    }

    /// The key to report with SYNC_KEY, if it changed since the last report.
    pub fn take_report(&mut self) -> Option<i64> {
        if self.key > 0 && self.key != self.reported {
            self.reported = self.key;
            return Some(self.key);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(sync_key: i64, prev_sync_key: i64) -> Option<Metadata> {
        Some(Metadata {
            sync_key,
            prev_sync_key,
        })
    }

    fn machine(key: i64) -> (SyncMachine, Instant) {
        (
            SyncMachine::new(key, Duration::from_secs(5)),
            Instant::now(),
        )
    }

    #[test]
    fn start_syncs_and_end_adopts_and_reports() {
        let (mut s, t) = machine(0);
        assert_eq!(s.start(t), Some(0));
        assert!(s.is_syncing(t));
        s.on_begin();
        assert!(s.on_batch_message(None));
        assert!(s.on_batch_message(None));
        let end = s.on_end(7, t);
        assert_eq!(
            end,
            SyncEnd {
                key: 7,
                messages: 2,
                resync: None
            }
        );
        assert!(!s.is_syncing(t));
        assert_eq!(s.take_report(), Some(7));
        assert_eq!(s.take_report(), None);
    }

    #[test]
    fn notify_while_syncing_is_remembered() {
        let (mut s, t) = machine(5);
        assert_eq!(s.start(t), Some(5));
        assert_eq!(s.on_notify(9, t), None);
        assert_eq!(s.on_notify(8, t), None);
        s.on_begin();
        s.on_batch_message(None);
        // The batch only reached 7: the remembered 9 needs another sync.
        let end = s.on_end(7, t);
        assert_eq!(end.resync, Some(7));
        assert!(s.is_syncing(t));
        s.on_begin();
        s.on_batch_message(None);
        s.on_batch_message(None);
        let end = s.on_end(9, t);
        assert_eq!(end.resync, None);
        assert_eq!(s.key(), 9);
    }

    #[test]
    fn remembered_notify_already_covered_does_not_resync() {
        let (mut s, t) = machine(5);
        s.start(t);
        s.on_notify(8, t);
        assert_eq!(s.on_end(8, t).resync, None);
    }

    #[test]
    fn stale_notify_is_ignored() {
        let (mut s, t) = machine(10);
        assert_eq!(s.on_notify(10, t), None);
        assert_eq!(s.on_notify(3, t), None);
        assert_eq!(s.on_notify(11, t), Some(10));
    }

    #[test]
    fn push_accepted_only_when_contiguous_and_idle() {
        let (mut s, t) = machine(10);
        assert!(!s.on_push(None, t));
        assert!(!s.on_push(meta(12, 11), t)); // gap
        assert!(!s.on_push(meta(12, 0), t)); // unknown prev
        assert!(!s.on_push(meta(0, 10), t)); // unknown id
        assert!(s.on_push(meta(12, 10), t));
        assert_eq!(s.key(), 12);
        // The notify for the accepted push needs no sync.
        assert_eq!(s.on_notify(12, t), None);
        assert_eq!(s.take_report(), Some(12));
    }

    #[test]
    fn push_ignored_with_key_zero() {
        let (mut s, t) = machine(0);
        assert!(!s.on_push(meta(1, 0), t));
        assert_eq!(s.on_notify(1, t), Some(0));
    }

    #[test]
    fn push_ignored_while_syncing_then_resynced() {
        let (mut s, t) = machine(10);
        assert_eq!(s.on_notify(11, t), Some(10));
        // Push of message 12 (prev 11 is not ours yet) and of 11 (prev 10)
        // while the sync is in flight: both ignored.
        assert!(!s.on_push(meta(11, 10), t));
        assert_eq!(s.on_notify(11, t), None);
        assert!(!s.on_push(meta(12, 11), t));
        assert_eq!(s.on_notify(12, t), None);
        s.on_begin();
        assert!(s.on_batch_message(None));
        assert_eq!(s.on_end(11, t).resync, Some(11));
        s.on_begin();
        assert!(s.on_batch_message(None));
        assert_eq!(s.on_end(12, t).resync, None);
        assert_eq!(s.key(), 12);
    }

    #[test]
    fn own_ack_advances_key() {
        let (mut s, t) = machine(4);
        assert!(s.on_own_ack(meta(5, 4), t));
        assert_eq!(s.key(), 5);
        assert!(!s.on_own_ack(meta(7, 6), t));
        assert_eq!(s.key(), 5);
    }

    #[test]
    fn request_while_syncing_forces_another_round() {
        let (mut s, t) = machine(0);
        s.start(t);
        assert_eq!(s.request(t), None);
        let end = s.on_end(3, t);
        assert_eq!(end.resync, Some(3));
        assert_eq!(s.on_end(3, t).resync, None);
        assert_eq!(s.request(t), Some(3));
    }

    #[test]
    fn timed_out_sync_does_not_block() {
        let (mut s, t) = machine(1);
        s.start(t);
        assert_eq!(s.on_notify(2, t + Duration::from_secs(1)), None);
        assert_eq!(s.on_notify(2, t + Duration::from_secs(6)), Some(1));
    }

    #[test]
    fn late_duplicates_with_ids_are_dropped() {
        let (mut s, t) = machine(10);
        s.on_notify(12, t);
        s.on_begin();
        assert!(!s.on_batch_message(Some(9)));
        assert!(!s.on_batch_message(Some(10)));
        assert!(s.on_batch_message(Some(11)));
        assert!(s.on_batch_message(Some(12)));
        assert_eq!(s.on_end(12, t).messages, 2);
    }

    #[test]
    fn rewind_is_adopted() {
        let (mut s, t) = machine(100);
        s.start(t);
        let end = s.on_end(40, t);
        assert_eq!(end.key, 40);
        assert_eq!(s.take_report(), Some(40));
    }
}
