//! `/metrics` in the Prometheus text exposition format, as a table: one row
//! per metric family (name, type, help text, which node part it needs, and
//! how to read its samples). Adding a metric is adding a row; the format is
//! written in one place.

use super::histogram::SIZE_BOUNDS;
use super::{
    APPEND_ENTRIES, APPEND_ERRORS, APPEND_SECONDS, FRAMES_IN, FRAMES_OUT, LATENCY_BOUNDS_US,
    Transport, command_name,
};
use crate::cluster::Link;
use crate::disconnect::Disconnect;
use crate::hooks::HookStats;
use crate::node::Node;
use std::fmt::{Display, Write};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Where a family's samples come from; families whose part the node lacks
/// (no imr links, no hooks) are left out entirely.
enum Read {
    Node(fn(&Node, &mut Samples<'_>)),
    Link(fn(&Link) -> u64),
    Hooks(fn(&HookStats) -> u64),
}

struct Family {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    read: Read,
}

/// The sample lines of one family.
struct Samples<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Samples<'_> {
    fn value(&mut self, v: u64) {
        let _ = writeln!(self.out, "{} {v}", self.name);
    }

    fn labeled(&mut self, label: &str, value: impl Display, v: u64) {
        let _ = writeln!(self.out, "{}{{{label}=\"{value}\"}} {v}", self.name);
    }
}

const fn family(
    name: &'static str,
    kind: Kind,
    help: &'static str,
    read: fn(&Node, &mut Samples<'_>),
) -> Family {
    Family {
        name,
        kind,
        help,
        read: Read::Node(read),
    }
}

const fn link(
    name: &'static str,
    kind: Kind,
    help: &'static str,
    read: fn(&Link) -> u64,
) -> Family {
    Family {
        name,
        kind,
        help,
        read: Read::Link(read),
    }
}

const fn hook(name: &'static str, help: &'static str, read: fn(&HookStats) -> u64) -> Family {
    Family {
        name,
        kind: Kind::Counter,
        help,
        read: Read::Hooks(read),
    }
}

fn by_transport(s: &mut Samples<'_>, values: [u64; 4]) {
    for t in Transport::ALL {
        s.labeled("transport", t.as_str(), values[t as usize]);
    }
}

/// Commands seen at least once, by name.
fn by_command(s: &mut Samples<'_>, arr: &[AtomicU64; 256]) {
    for (cmd, n) in arr.iter().enumerate() {
        let n = n.load(Ordering::Relaxed);
        if n > 0 {
            s.labeled("cmd", command_name(cmd as u8), n);
        }
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Every family, in the order `/metrics` lists them.
const FAMILIES: &[Family] = &[
    family(
        "ferry_connections",
        Kind::Gauge,
        "Open client connections by transport.",
        |n, s| by_transport(s, n.metrics.open_connections()),
    ),
    family(
        "ferry_connections_accepted_total",
        Kind::Counter,
        "Client connections accepted by transport.",
        |n, s| by_transport(s, n.metrics.accepted_connections()),
    ),
    family(
        "ferry_authenticated_users",
        Kind::Gauge,
        "Distinct logged-in users on this node.",
        |n, s| s.value(n.delivery.registry.totals(None).0 as u64),
    ),
    family(
        "ferry_authenticated_connections",
        Kind::Gauge,
        "Logged-in connections on this node.",
        |n, s| s.value(n.delivery.registry.totals(None).1 as u64),
    ),
    family(
        "ferry_logins_total",
        Kind::Counter,
        "Successful logins (AUTH_TOKEN accepted).",
        |n, s| s.value(n.metrics.logins.get()),
    ),
    family(
        "ferry_rooms",
        Kind::Gauge,
        "Chat rooms with members on this node.",
        |n, s| s.value(n.delivery.rooms.totals(None).0 as u64),
    ),
    family(
        "ferry_frames_in_total",
        Kind::Counter,
        "Frames received from clients by command.",
        |_, s| by_command(s, &FRAMES_IN),
    ),
    family(
        "ferry_frames_out_total",
        Kind::Counter,
        "Frames written to clients by command.",
        |_, s| by_command(s, &FRAMES_OUT),
    ),
    family(
        "ferry_disconnects_total",
        Kind::Counter,
        "Client connections closed, by reason.",
        |n, s| {
            for d in Disconnect::ALL {
                let v = n.metrics.disconnects(d);
                if v > 0 {
                    s.labeled("reason", d.label(), v);
                }
            }
        },
    ),
    family(
        "ferry_slow_consumer_drops_total",
        Kind::Counter,
        "Clients dropped because their outbox overflowed.",
        |n, s| s.value(n.metrics.slow_consumer_drops()),
    ),
    family(
        "ferry_store_append_seconds",
        Kind::Histogram,
        "Latency of durable store appends (until fsync/ack).",
        |_, s| APPEND_SECONDS.render(s.out, s.name, &LATENCY_BOUNDS_US, 1e-6),
    ),
    family(
        "ferry_store_append_entries",
        Kind::Histogram,
        "Entries (queues written) per store append.",
        |_, s| APPEND_ENTRIES.render(s.out, s.name, &SIZE_BOUNDS, 1.0),
    ),
    family(
        "ferry_store_append_errors_total",
        Kind::Counter,
        "Store appends that failed.",
        |_, s| s.value(APPEND_ERRORS.get()),
    ),
    link(
        "ferry_imr_link_up",
        Kind::Gauge,
        "1 when the link to the imr is connected.",
        |l| u64::from(l.up.load(Ordering::Relaxed)),
    ),
    link(
        "ferry_imr_link_connects_total",
        Kind::Counter,
        "Successful (re)connects of the imr link.",
        |l| load(&l.stats.connects),
    ),
    link(
        "ferry_imr_link_queued_bytes",
        Kind::Gauge,
        "Bytes buffered for the imr (push buffer depth).",
        |l| l.queued_bytes() as u64,
    ),
    link(
        "ferry_imr_link_sent_frames_total",
        Kind::Counter,
        "Frames sent to the imr.",
        |l| load(&l.stats.sent_frames),
    ),
    link(
        "ferry_imr_link_received_frames_total",
        Kind::Counter,
        "Routed frames received from the imr.",
        |l| load(&l.stats.received_frames),
    ),
    link(
        "ferry_imr_link_received_group_frames_total",
        Kind::Counter,
        "Super-group frames (PUBLISH_GROUP) received from the imr.",
        |l| load(&l.stats.received_group_frames),
    ),
    link(
        "ferry_imr_link_dropped_frames_total",
        Kind::Counter,
        "Frames dropped because the imr link buffer was full.",
        |l| load(&l.stats.dropped_frames),
    ),
    hook(
        "ferry_hook_before_send_total",
        "before-send calls answered by the hook.",
        |h| HookStats::get(&h.before_calls),
    ),
    hook(
        "ferry_hook_before_send_rejected_total",
        "Messages the before-send hook rejected.",
        |h| HookStats::get(&h.before_rejected),
    ),
    hook(
        "ferry_hook_before_send_replaced_total",
        "Messages whose content the before-send hook replaced.",
        |h| HookStats::get(&h.before_replaced),
    ),
    hook(
        "ferry_hook_before_send_failures_total",
        "before-send calls that timed out or failed (--hook-fail applied).",
        |h| HookStats::get(&h.before_failures),
    ),
    hook(
        "ferry_hook_events_queued_total",
        "Hook events accepted into the queue.",
        |h| HookStats::get(&h.events_queued),
    ),
    hook(
        "ferry_hook_events_delivered_total",
        "Hook events acknowledged by the sink.",
        |h| HookStats::get(&h.events_delivered),
    ),
    hook(
        "ferry_hook_events_dropped_total",
        "Hook events dropped because the queue was full.",
        |h| HookStats::get(&h.events_dropped),
    ),
    hook(
        "ferry_hook_delivery_failures_total",
        "Failed event deliveries (retried with backoff).",
        |h| HookStats::get(&h.delivery_failures),
    ),
    hook(
        "ferry_hook_presence_grace_expired_total",
        "Presence grace periods that ended (offline sent or not).",
        |h| HookStats::get(&h.presence_expired),
    ),
];

/// The Prometheus text for one node.
pub fn render(node: &Node) -> String {
    let mut out = String::with_capacity(8 * 1024);
    for f in FAMILIES {
        let present = match f.read {
            Read::Node(_) => true,
            Read::Link(_) => node.delivery.cluster.is_some(),
            Read::Hooks(_) => node.hooks.is_some(),
        };
        if !present {
            continue;
        }
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}",
            name = f.name,
            help = f.help,
            kind = f.kind.as_str()
        );
        let mut s = Samples {
            out: &mut out,
            name: f.name,
        };
        match f.read {
            Read::Node(read) => read(node, &mut s),
            Read::Link(read) => {
                for l in node.delivery.cluster.iter().flat_map(|c| c.links()) {
                    s.labeled("imr", &l.addr, read(l));
                }
            }
            Read::Hooks(read) => {
                if let Some(h) = &node.hooks {
                    s.value(read(&h.stats));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_names_are_unique_and_prometheus_shaped() {
        let mut names: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FAMILIES.len());
        for f in FAMILIES {
            assert!(f.name.starts_with("ferry_"), "{}", f.name);
            let counter = matches!(f.kind, Kind::Counter);
            assert_eq!(counter, f.name.ends_with("_total"), "{}", f.name);
        }
    }
}
