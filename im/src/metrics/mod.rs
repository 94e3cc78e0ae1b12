//! The node's one set of counters: what `/metrics`, `/summary`, the admin
//! console and its history read, each figure counted in exactly one place.
//!
//! Two scopes, chosen by who has to count:
//! * [`Metrics`], one per node: connections (open and accepted, by
//!   transport — also what `--max-connections` admits against), how they
//!   ended ([`Disconnect`]), logins and refusals.
//! * Process-wide statics for the figures counted where no node is at
//!   hand: frames by command (the per-connection writer, one relaxed add per
//!   frame, no label hashing) and store appends (timed by the [`Store`]
//!   trait itself, so no backend can forget a method). One node runs per
//!   process, so process-wide counters are node counters.
//!
//! Why not a metrics registry crate: everything here is a fixed array of
//! atomics indexed by an enum or a command byte, and the rest is read from
//! the node's own state at scrape time ([`render()`]).
//!
//! [`Store`]: crate::store::Store

mod histogram;
pub mod render;

use crate::disconnect::Disconnect;
use histogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub use histogram::LATENCY_BOUNDS_US;
pub use render::render;

/// The client transports, as the `transport` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Transport {
    pub const ALL: [Transport; 4] = [
        Transport::Tcp,
        Transport::Tls,
        Transport::Ws,
        Transport::Wss,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }
}

/// A monotonic event counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One node's counters (see the module docs for what lives elsewhere).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open connections by transport. Changed only through
    /// [`crate::limits::Limits::admit`] and its permit, so the gauge and the
    /// admission limit can never disagree.
    open: [AtomicU64; 4],
    accepted: [AtomicU64; 4],
    /// Closed connections, indexed like [`Disconnect::ALL`].
    disconnects: [Counter; Disconnect::ALL.len()],
    /// Successful logins (AUTH_TOKEN accepted).
    pub logins: Counter,
    /// Connections refused by `--max-connections`.
    pub refused_connections: Counter,
    /// Logins refused by `--max-connections-per-user`.
    pub refused_user_connections: Counter,
    /// Connections refused by the `--max-rss` memory guard.
    pub refused_memory: Counter,
    /// Login deadlines (`--auth-timeout`) that passed, counted when seen.
    pub auth_timeouts: Counter,
    /// Frame-rate overdrafts (`--max-frames-per-sec`), counted when seen.
    pub rate_limited: Counter,
}

impl Metrics {
    /// Counts a connection in as open; returns the open total across
    /// transports, this one included.
    pub(crate) fn open(&self, t: Transport) -> u64 {
        // SeqCst: two connections admitted at once each see the other's
        // increment, so neither can slip past a limit both read as free.
        self.open[t as usize].fetch_add(1, Ordering::SeqCst);
        self.open_total_seq_cst()
    }

    /// Counts a connection out (closed, or refused right after [`open`]).
    ///
    /// [`open`]: Metrics::open
    pub(crate) fn close(&self, t: Transport) {
        self.open[t as usize].fetch_sub(1, Ordering::SeqCst);
    }

    /// An admitted connection starts its session (after a TLS handshake,
    /// if any).
    pub fn accepted(&self, t: Transport) {
        self.accepted[t as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn open_total_seq_cst(&self) -> u64 {
        self.open.iter().map(|o| o.load(Ordering::SeqCst)).sum()
    }

    /// Open connections now, indexed like [`Transport::ALL`].
    pub fn open_connections(&self) -> [u64; 4] {
        std::array::from_fn(|i| self.open[i].load(Ordering::Relaxed))
    }

    /// Open connections now, all transports.
    pub fn open_total(&self) -> u64 {
        self.open_connections().iter().sum()
    }

    /// Connections accepted since start, indexed like [`Transport::ALL`].
    pub fn accepted_connections(&self) -> [u64; 4] {
        std::array::from_fn(|i| self.accepted[i].load(Ordering::Relaxed))
    }

    /// Records why a connection ended.
    pub fn disconnected(&self, why: Disconnect) {
        self.disconnects[why as usize].inc();
    }

    /// Connections that ended for `why` since start.
    pub fn disconnects(&self, why: Disconnect) -> u64 {
        self.disconnects[why as usize].get()
    }

    /// Clients dropped because their outbox overflowed.
    pub fn slow_consumer_drops(&self) -> u64 {
        self.disconnects(Disconnect::SlowConsumer)
    }
}

static FRAMES_IN: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];
static FRAMES_OUT: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];
static APPEND_SECONDS: Histogram = Histogram::new();
static APPEND_ENTRIES: Histogram = Histogram::new();
static APPEND_ERRORS: Counter = Counter(AtomicU64::new(0));

/// A frame received from a client.
pub fn frame_in(cmd: u8) {
    FRAMES_IN[cmd as usize].fetch_add(1, Ordering::Relaxed);
}

/// A frame written to a client.
pub fn frame_out(cmd: u8) {
    FRAMES_OUT[cmd as usize].fetch_add(1, Ordering::Relaxed);
}

/// Outgoing frames counted locally and added to the shared counters once
/// (when dropped): a fan-out of one message to many connections would
/// otherwise have every worker bump the same counter once per frame.
#[derive(Default)]
pub struct FramesOut {
    /// (cmd, frames); a batch rarely holds more than a few commands
    /// (e.g. METADATA, GROUP_IM, SYNC_GROUP_NOTIFY).
    slots: [(u8, u32); 4],
}

impl FramesOut {
    pub fn add(&mut self, cmd: u8) {
        for s in &mut self.slots {
            if s.1 == 0 {
                *s = (cmd, 1);
                return;
            }
            if s.0 == cmd && s.1 < u32::MAX {
                s.1 += 1;
                return;
            }
        }
        self.flush();
        self.slots[0] = (cmd, 1);
    }

    fn flush(&mut self) {
        for s in &mut self.slots {
            if s.1 > 0 {
                FRAMES_OUT[s.0 as usize].fetch_add(u64::from(s.1), Ordering::Relaxed);
                *s = (0, 0);
            }
        }
    }
}

impl Drop for FramesOut {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Frames received (`incoming`) or written, per command byte, since start.
pub fn frames_by_command(incoming: bool) -> [u64; 256] {
    let arr = if incoming { &FRAMES_IN } else { &FRAMES_OUT };
    std::array::from_fn(|i| arr[i].load(Ordering::Relaxed))
}

/// Frames received (`incoming`) or written since start, all commands.
pub fn frames_total(incoming: bool) -> u64 {
    frames_by_command(incoming).iter().sum()
}

/// Latency, size and outcome of one store append (see
/// [`crate::store::Store::append`]).
pub fn record_append(start: Instant, entries: u64, ok: bool) {
    APPEND_SECONDS.observe(&LATENCY_BOUNDS_US, start.elapsed().as_micros() as u64);
    APPEND_ENTRIES.observe(&histogram::SIZE_BOUNDS, entries);
    if !ok {
        APPEND_ERRORS.inc();
    }
}

/// The append-latency histogram's buckets (µs, [`LATENCY_BOUNDS_US`] plus
/// overflow), not cumulative, since start.
pub fn append_latency_buckets() -> [u64; 13] {
    APPEND_SECONDS.buckets()
}

/// Command names from the spec (numbers for anything unnamed).
pub fn command_name(cmd: u8) -> String {
    match ferry_common::protocol::command::name(cmd) {
        "unknown" => cmd.to_string(),
        name => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_totals_every_transport() {
        let m = Metrics::default();
        assert_eq!(m.open(Transport::Tcp), 1);
        assert_eq!(m.open(Transport::Ws), 2);
        m.close(Transport::Ws);
        assert_eq!(m.open_connections(), [1, 0, 0, 0]);
        m.accepted(Transport::Tcp);
        m.close(Transport::Tcp);
        assert_eq!(m.open_total(), 0);
        assert_eq!(m.accepted_connections(), [1, 0, 0, 0]);
    }

    /// Timing lives in `Store::append` itself, so a backend that only
    /// implements `put` is timed (and there is no wrapper to hide what the
    /// store promises, such as `orders_appends`).
    #[tokio::test]
    async fn store_appends_are_timed_by_the_trait() {
        use crate::store::{AppendRequest, FjallOptions, FjallStore, NewEntry, QueueId, Store};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FjallStore::open(dir.path(), FjallOptions::default()).expect("store");
        let before = APPEND_SECONDS.buckets().iter().sum::<u64>();
        let entry = |uid| NewEntry {
            queue: QueueId { appid: 1, uid },
            cmd: 4,
            flag: 0,
            device_id: 0,
            body: bytes::Bytes::from_static(b"x"),
        };
        let req = || AppendRequest {
            entries: vec![entry(1), entry(2)],
            dedup: None,
        };
        store.append(req()).await.expect("append");
        store.append_ordered(req(), (1, 9)).await.expect("ordered");
        assert!(store.orders_appends());
        // Other tests append concurrently: at least these two were counted.
        assert!(APPEND_SECONDS.buckets().iter().sum::<u64>() >= before + 2);
    }

    #[test]
    fn slow_consumer_drops_are_the_disconnects_for_that_reason() {
        let m = Metrics::default();
        m.disconnected(Disconnect::SlowConsumer);
        m.disconnected(Disconnect::Eof);
        assert_eq!(m.slow_consumer_drops(), 1);
        assert_eq!(m.disconnects(Disconnect::Eof), 1);
    }
}
