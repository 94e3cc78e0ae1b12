//! Prometheus metrics, rendered by hand in the text exposition format.
//!
//! Why not a metrics registry crate: the hot-path counters (frames by
//! command) are plain per-process atomic arrays indexed by the command byte,
//! which costs one relaxed add per frame and no label hashing; everything
//! else is read from the node's own state at scrape time. One node runs per
//! process, so process-wide counters are node counters.

use crate::node::{Node, Stats};
use crate::store::{
    AppendOutcome, AppendRequest, QueueId, Store, StoreFuture, StoredMessage, Window,
};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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

static FRAMES_IN: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];
static FRAMES_OUT: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];
static OPEN: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
static ACCEPTED: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
/// Disconnects by reason; reasons are a small fixed set of static strings.
static DISCONNECTS: Mutex<Vec<(&'static str, u64)>> = Mutex::new(Vec::new());
static APPEND_SECONDS: Histogram = Histogram::new();
static APPEND_ENTRIES: Histogram = Histogram::new();
static APPEND_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Upper bounds of the latency buckets, in microseconds.
pub const LATENCY_BOUNDS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];
/// Upper bounds of the entries-per-append buckets.
const SIZE_BOUNDS: [u64; 12] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];

/// A fixed-bucket histogram of u64 observations (lock-free).
pub struct Histogram {
    buckets: [AtomicU64; 13],
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    const fn new() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; 13],
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, bounds: &[u64; 12], v: u64) {
        let i = bounds.iter().position(|&b| v <= b).unwrap_or(bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes `_bucket`, `_sum` and `_count`; `scale` converts stored units
    /// to the exposed unit (e.g. µs → s).
    fn render(&self, out: &mut String, name: &str, bounds: &[u64; 12], scale: f64) {
        let mut cumulative = 0;
        for (i, b) in bounds.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {cumulative}",
                *b as f64 * scale
            );
        }
        cumulative += self.buckets[12].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum.load(Ordering::Relaxed) as f64 * scale
        );
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

pub fn frame_in(cmd: u8) {
    FRAMES_IN[cmd as usize].fetch_add(1, Ordering::Relaxed);
}

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

/// Counts an open connection of one transport while alive.
pub struct OpenConnection(Transport);

impl OpenConnection {
    pub fn new(t: Transport) -> OpenConnection {
        OPEN[t as usize].fetch_add(1, Ordering::Relaxed);
        ACCEPTED[t as usize].fetch_add(1, Ordering::Relaxed);
        OpenConnection(t)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        OPEN[self.0 as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Open connections now, indexed like [`Transport::ALL`].
pub fn open_connections() -> [u64; 4] {
    std::array::from_fn(|i| OPEN[i].load(Ordering::Relaxed))
}

/// Frames received (`incoming`) or written, per command byte, since start.
pub fn frames_by_command(incoming: bool) -> [u64; 256] {
    let arr = if incoming { &FRAMES_IN } else { &FRAMES_OUT };
    std::array::from_fn(|i| arr[i].load(Ordering::Relaxed))
}

/// The append-latency histogram's buckets (µs, [`LATENCY_BOUNDS_US`] plus
/// overflow), not cumulative, since start.
pub fn append_latency_buckets() -> [u64; 13] {
    std::array::from_fn(|i| APPEND_SECONDS.buckets[i].load(Ordering::Relaxed))
}

/// Records why a connection ended.
pub fn disconnect(reason: &'static str) {
    let mut d = DISCONNECTS.lock().unwrap_or_else(|e| e.into_inner());
    match d.iter_mut().find(|(r, _)| *r == reason) {
        Some((_, n)) => *n += 1,
        None => d.push((reason, 1)),
    }
}

/// The Prometheus text for one node.
pub fn render(node: &Node) -> String {
    let mut o = String::with_capacity(8 * 1024);
    help(
        &mut o,
        "ferry_connections",
        "gauge",
        "Open client connections by transport.",
    );
    for t in Transport::ALL {
        let _ = writeln!(
            o,
            "ferry_connections{{transport=\"{}\"}} {}",
            t.as_str(),
            OPEN[t as usize].load(Ordering::Relaxed)
        );
    }
    help(
        &mut o,
        "ferry_connections_accepted_total",
        "counter",
        "Client connections accepted by transport.",
    );
    for t in Transport::ALL {
        let _ = writeln!(
            o,
            "ferry_connections_accepted_total{{transport=\"{}\"}} {}",
            t.as_str(),
            ACCEPTED[t as usize].load(Ordering::Relaxed)
        );
    }
    let (users, authed) = node.registry.totals(None);
    gauge(
        &mut o,
        "ferry_authenticated_users",
        "Distinct logged-in users on this node.",
        users as u64,
    );
    gauge(
        &mut o,
        "ferry_authenticated_connections",
        "Logged-in connections on this node.",
        authed as u64,
    );
    counter(
        &mut o,
        "ferry_logins_total",
        "Successful logins (AUTH_TOKEN accepted).",
        Stats::get(&node.stats.logins),
    );
    let (rooms, _) = node.rooms.totals(None);
    gauge(
        &mut o,
        "ferry_rooms",
        "Chat rooms with members on this node.",
        rooms as u64,
    );
    frames(
        &mut o,
        "ferry_frames_in_total",
        "Frames received from clients by command.",
        &FRAMES_IN,
    );
    frames(
        &mut o,
        "ferry_frames_out_total",
        "Frames written to clients by command.",
        &FRAMES_OUT,
    );
    help(
        &mut o,
        "ferry_disconnects_total",
        "counter",
        "Client connections closed, by reason.",
    );
    {
        let d = DISCONNECTS.lock().unwrap_or_else(|e| e.into_inner());
        for (r, n) in d.iter() {
            let _ = writeln!(o, "ferry_disconnects_total{{reason=\"{r}\"}} {n}");
        }
    }
    counter(
        &mut o,
        "ferry_slow_consumer_drops_total",
        "Clients dropped because their outbox overflowed.",
        Stats::get(&node.stats.slow_consumer_drops),
    );
    help(
        &mut o,
        "ferry_store_append_seconds",
        "histogram",
        "Latency of durable store appends (until fsync/ack).",
    );
    APPEND_SECONDS.render(
        &mut o,
        "ferry_store_append_seconds",
        &LATENCY_BOUNDS_US,
        1e-6,
    );
    help(
        &mut o,
        "ferry_store_append_entries",
        "histogram",
        "Entries (queues written) per store append.",
    );
    APPEND_ENTRIES.render(&mut o, "ferry_store_append_entries", &SIZE_BOUNDS, 1.0);
    counter(
        &mut o,
        "ferry_store_append_errors_total",
        "Store appends that failed.",
        APPEND_ERRORS.load(Ordering::Relaxed),
    );
    if let Some(c) = &node.cluster {
        help(
            &mut o,
            "ferry_imr_link_up",
            "gauge",
            "1 when the link to the imr is connected.",
        );
        for l in c.links() {
            let _ = writeln!(
                o,
                "ferry_imr_link_up{{imr=\"{}\"}} {}",
                l.addr,
                u8::from(l.up.load(Ordering::Relaxed))
            );
        }
        help(
            &mut o,
            "ferry_imr_link_connects_total",
            "counter",
            "Successful (re)connects of the imr link.",
        );
        for l in c.links() {
            let _ = writeln!(
                o,
                "ferry_imr_link_connects_total{{imr=\"{}\"}} {}",
                l.addr,
                l.stats.connects.load(Ordering::Relaxed)
            );
        }
        help(
            &mut o,
            "ferry_imr_link_queued_bytes",
            "gauge",
            "Bytes buffered for the imr (push buffer depth).",
        );
        for l in c.links() {
            let _ = writeln!(
                o,
                "ferry_imr_link_queued_bytes{{imr=\"{}\"}} {}",
                l.addr,
                l.queued_bytes()
            );
        }
        help(
            &mut o,
            "ferry_imr_link_sent_frames_total",
            "counter",
            "Frames sent to the imr.",
        );
        for l in c.links() {
            let _ = writeln!(
                o,
                "ferry_imr_link_sent_frames_total{{imr=\"{}\"}} {}",
                l.addr,
                l.stats.sent_frames.load(Ordering::Relaxed)
            );
        }
        for (name, text, get) in [
            (
                "ferry_imr_link_received_frames_total",
                "Routed frames received from the imr.",
                (|l: &crate::cluster::Link| l.stats.received_frames.load(Ordering::Relaxed))
                    as fn(&crate::cluster::Link) -> u64,
            ),
            (
                "ferry_imr_link_received_group_frames_total",
                "Super-group frames (PUBLISH_GROUP) received from the imr.",
                |l: &crate::cluster::Link| l.stats.received_group_frames.load(Ordering::Relaxed),
            ),
        ] {
            help(&mut o, name, "counter", text);
            for l in c.links() {
                let _ = writeln!(o, "{name}{{imr=\"{}\"}} {}", l.addr, get(l));
            }
        }
        help(
            &mut o,
            "ferry_imr_link_dropped_frames_total",
            "counter",
            "Frames dropped because the imr link buffer was full.",
        );
        for l in c.links() {
            let _ = writeln!(
                o,
                "ferry_imr_link_dropped_frames_total{{imr=\"{}\"}} {}",
                l.addr,
                l.stats.dropped_frames.load(Ordering::Relaxed)
            );
        }
    }
    if let Some(h) = &node.hooks {
        hook_metrics(&mut o, &h.stats);
    }
    o
}

fn hook_metrics(o: &mut String, s: &crate::hooks::HookStats) {
    let g = crate::hooks::HookStats::get;
    for (name, text, v) in [
        (
            "ferry_hook_before_send_total",
            "before-send calls answered by the hook.",
            g(&s.before_calls),
        ),
        (
            "ferry_hook_before_send_rejected_total",
            "Messages the before-send hook rejected.",
            g(&s.before_rejected),
        ),
        (
            "ferry_hook_before_send_replaced_total",
            "Messages whose content the before-send hook replaced.",
            g(&s.before_replaced),
        ),
        (
            "ferry_hook_before_send_failures_total",
            "before-send calls that timed out or failed (--hook-fail applied).",
            g(&s.before_failures),
        ),
        (
            "ferry_hook_events_queued_total",
            "Hook events accepted into the queue.",
            g(&s.events_queued),
        ),
        (
            "ferry_hook_events_delivered_total",
            "Hook events acknowledged by the sink.",
            g(&s.events_delivered),
        ),
        (
            "ferry_hook_events_dropped_total",
            "Hook events dropped because the queue was full.",
            g(&s.events_dropped),
        ),
        (
            "ferry_hook_delivery_failures_total",
            "Failed event deliveries (retried with backoff).",
            g(&s.delivery_failures),
        ),
        (
            "ferry_hook_presence_grace_expired_total",
            "Presence grace periods that ended (offline sent or not).",
            g(&s.presence_expired),
        ),
    ] {
        counter(o, name, text, v);
    }
}

fn help(o: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(o, "# HELP {name} {text}\n# TYPE {name} {kind}");
}

fn gauge(o: &mut String, name: &str, text: &str, v: u64) {
    help(o, name, "gauge", text);
    let _ = writeln!(o, "{name} {v}");
}

fn counter(o: &mut String, name: &str, text: &str, v: u64) {
    help(o, name, "counter", text);
    let _ = writeln!(o, "{name} {v}");
}

fn frames(o: &mut String, name: &str, text: &str, arr: &[AtomicU64; 256]) {
    help(o, name, "counter", text);
    for (cmd, n) in arr.iter().enumerate() {
        let n = n.load(Ordering::Relaxed);
        if n > 0 {
            let _ = writeln!(o, "{name}{{cmd=\"{}\"}} {n}", command_name(cmd as u8));
        }
    }
}

/// Command names from the spec (numbers for anything unnamed).
pub fn command_name(cmd: u8) -> String {
    match ferry_common::protocol::command::name(cmd) {
        "unknown" => cmd.to_string(),
        name => name.to_string(),
    }
}

/// A [`Store`] that times appends and counts their entries; everything else
/// passes straight through.
pub struct TimedStore(pub Arc<dyn Store>);

/// Latency, size and outcome of one append.
fn record_append(start: Instant, entries: u64, ok: bool) {
    APPEND_SECONDS.observe(&LATENCY_BOUNDS_US, start.elapsed().as_micros() as u64);
    APPEND_ENTRIES.observe(&SIZE_BOUNDS, entries);
    if !ok {
        APPEND_ERRORS.fetch_add(1, Ordering::Relaxed);
    }
}

impl Store for TimedStore {
    fn append(&self, req: AppendRequest) -> StoreFuture<'_, AppendOutcome> {
        let entries = req.entries.len() as u64;
        Box::pin(async move {
            let start = Instant::now();
            let r = self.0.append(req).await;
            record_append(start, entries, r.is_ok());
            r
        })
    }

    fn window(&self, queue: QueueId, after: i64, limit: usize) -> StoreFuture<'_, Window> {
        self.0.window(queue, after, limit)
    }

    fn latest(&self, queue: QueueId, limit: usize) -> StoreFuture<'_, Vec<StoredMessage>> {
        self.0.latest(queue, limit)
    }

    fn count_after(&self, queue: QueueId, after: i64) -> StoreFuture<'_, i64> {
        self.0.count_after(queue, after)
    }

    fn sync_key(&self, queue: QueueId) -> StoreFuture<'_, i64> {
        self.0.sync_key(queue)
    }

    fn set_sync_key(&self, queue: QueueId, key: i64) -> StoreFuture<'_, ()> {
        self.0.set_sync_key(queue, key)
    }

    fn group_sync_key(&self, queue: QueueId, gid: i64) -> StoreFuture<'_, i64> {
        self.0.group_sync_key(queue, gid)
    }

    fn set_group_sync_key(&self, queue: QueueId, gid: i64, key: i64) -> StoreFuture<'_, ()> {
        self.0.set_group_sync_key(queue, gid, key)
    }

    fn device_number(&self, device_id: &str, platform: u8) -> StoreFuture<'_, i64> {
        self.0.device_number(device_id, platform)
    }

    fn orders_appends(&self) -> bool {
        self.0.orders_appends()
    }

    fn mark_unconfirmed(&self, marks: Vec<crate::store::Unconfirmed>) -> StoreFuture<'_, ()> {
        self.0.mark_unconfirmed(marks)
    }

    fn set_node_state(&self, incarnation: u64, clean: bool) -> StoreFuture<'_, ()> {
        self.0.set_node_state(incarnation, clean)
    }

    fn node_state(&self, incarnation: u64) -> StoreFuture<'_, Option<crate::store::NodeState>> {
        self.0.node_state(incarnation)
    }

    fn shared(&self) -> bool {
        self.0.shared()
    }

    fn append_ordered(
        &self,
        req: AppendRequest,
        stream: (i64, i64),
    ) -> StoreFuture<'_, (AppendOutcome, Option<u64>)> {
        let entries = req.entries.len() as u64;
        Box::pin(async move {
            let start = Instant::now();
            let r = self.0.append_ordered(req, stream).await;
            record_append(start, entries, r.is_ok());
            r
        })
    }

    fn recover_interrupted(&self) -> StoreFuture<'_, usize> {
        self.0.recover_interrupted()
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        self.0.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::new();
        h.observe(&SIZE_BOUNDS, 1);
        h.observe(&SIZE_BOUNDS, 3);
        h.observe(&SIZE_BOUNDS, 10_000);
        let mut s = String::new();
        h.render(&mut s, "x", &SIZE_BOUNDS, 1.0);
        assert!(s.contains("x_bucket{le=\"1\"} 1\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"4\"} 2\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"+Inf\"} 3\n"), "{s}");
        assert!(s.contains("x_count 3\n"), "{s}");
        assert!(s.contains("x_sum 10004\n"), "{s}");
    }

    /// The wrapper must not hide what the store promises: with
    /// `orders_appends` hidden, every group send took a per-group lock
    /// across its fsync (group throughput fell to a third).
    #[test]
    fn timed_store_keeps_the_stores_ordering_promise() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::FjallStore::open(dir.path(), Default::default()).expect("store");
        assert!(store.orders_appends());
        assert!(TimedStore(Arc::new(store)).orders_appends());
    }
}
