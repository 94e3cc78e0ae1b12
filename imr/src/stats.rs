//! Process-wide counters (atomics), read by `/health`, `/stats` and
//! [`crate::server::Server::stats`].

use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Stats {
    /// Links past the handshake right now.
    pub links: AtomicU64,
    /// Links accepted past the handshake since start.
    pub links_total: AtomicU64,
    /// Connections refused in the handshake (version, secret, first frame).
    pub handshakes_refused: AtomicU64,
    /// Links closed because their outbound queue overflowed (slow im).
    pub link_drops: AtomicU64,
    /// Links closed because of a malformed or unexpected frame.
    pub malformed_frames: AtomicU64,
    /// Frames with an unknown command, skipped.
    pub frames_ignored: AtomicU64,
    /// Routed frames received (PUBLISH, PUBLISH_ROOM, PUBLISH_GROUP, PUBLISH_APP).
    pub frames_received: AtomicU64,
    /// Copies of routed frames queued towards other links.
    pub frames_relayed: AtomicU64,
    /// PUSH requests received.
    pub push_requests: AtomicU64,
    /// Offline push entries confirmed written to Redis.
    pub push_written: AtomicU64,
    /// Offline push entries lost (buffer full for too long, or Redis rejected the batch).
    pub push_dropped: AtomicU64,
    /// PUSH requests whose embedded frame could not be turned into entries.
    pub push_invalid: AtomicU64,
    /// Entries accepted into the buffer and not yet confirmed or dropped.
    pub push_buffered: AtomicU64,
    /// PRESENCE_QUERY requests answered.
    pub presence_queries: AtomicU64,
    /// Last known Redis state (set by the push writer).
    pub redis_up: AtomicBool,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    pub links: u64,
    pub links_total: u64,
    pub handshakes_refused: u64,
    pub link_drops: u64,
    pub malformed_frames: u64,
    pub frames_ignored: u64,
    pub frames_received: u64,
    pub frames_relayed: u64,
    pub push_requests: u64,
    pub push_written: u64,
    pub push_dropped: u64,
    pub push_invalid: u64,
    pub push_buffered: u64,
    pub presence_queries: u64,
    pub redis_up: bool,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            links: g(&self.links),
            links_total: g(&self.links_total),
            handshakes_refused: g(&self.handshakes_refused),
            link_drops: g(&self.link_drops),
            malformed_frames: g(&self.malformed_frames),
            frames_ignored: g(&self.frames_ignored),
            frames_received: g(&self.frames_received),
            frames_relayed: g(&self.frames_relayed),
            push_requests: g(&self.push_requests),
            push_written: g(&self.push_written),
            push_dropped: g(&self.push_dropped),
            push_invalid: g(&self.push_invalid),
            push_buffered: g(&self.push_buffered),
            presence_queries: g(&self.presence_queries),
            redis_up: self.redis_up.load(Ordering::Relaxed),
        }
    }
}

/// `counter += n`.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// `counter -= n` (saturating: a gauge never wraps below zero).
pub(crate) fn sub(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(n))
    });
}
