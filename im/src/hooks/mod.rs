//! Server hooks: the app's own logic without forking the server.
//!
//! * **before-send** ([`before`]): for the opted-in kinds a client message is
//!   POSTed to `--hook-url` before it is stored; the answer allows it,
//!   rejects it with an ACK status, or replaces its content. Only the sending
//!   connection waits (its own task); a timeout or error applies
//!   `--hook-fail`.
//! * **events** ([`events`]): message stored, presence changes (debounced by
//!   `--presence-grace`, [`presence`]) and group changes, queued in a bounded
//!   in-memory queue and delivered in batches, at least once, to the hook
//!   URL or a Redis stream. Messaging never waits for them.
//!
//! Every request body is JSON, signed with HMAC-SHA256 (`--hook-secret`) in
//! `X-Ferry-Signature: sha256=<hex>`.

pub mod before;
mod client;
pub mod events;
pub mod grace;
pub mod presence;

pub use before::{Kind, Verdict};
pub use client::{HookClient, HookError, sign};
pub use events::{Event, EventKind};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// `--hook-fail`: what a before-send call that times out or fails means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HookFail {
    Open,
    Closed,
}

/// `--hook-stream`: where events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HookStream {
    Http,
    Redis,
}

/// Resolved hook configuration.
#[derive(Clone)]
pub struct HookConfig {
    /// `http://host:port/path`; required for before-send and HTTP events.
    pub url: Option<String>,
    pub secret: Option<String>,
    pub timeout: Duration,
    pub fail: HookFail,
    /// Kinds that ask before they are stored.
    pub before: Vec<Kind>,
    /// Event kinds that are emitted.
    pub events: Vec<EventKind>,
    pub sink: Sink,
    /// Events held in memory at most.
    pub queue: usize,
}

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    Http,
    /// XADD to `key` on the Redis at `url`.
    Redis {
        url: String,
        key: String,
    },
}

impl std::fmt::Debug for HookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookConfig")
            .field("url", &self.url.as_deref().map(ferry_common::redact_url))
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("timeout", &self.timeout)
            .field("fail", &self.fail)
            .field("before", &self.before)
            .field("events", &self.events)
            .field(
                "sink",
                &match &self.sink {
                    Sink::Http => "http".to_string(),
                    Sink::Redis { url, key } => {
                        format!("redis {} {key}", ferry_common::redact_url(url))
                    }
                },
            )
            .field("queue", &self.queue)
            .finish()
    }
}

fn list<T>(
    s: Option<String>,
    parse: impl Fn(&str) -> Option<T>,
    what: &str,
) -> Result<Vec<T>, String> {
    let mut out = Vec::new();
    for item in s.as_deref().unwrap_or("").split(',').map(str::trim) {
        if item.is_empty() || item == "none" {
            continue;
        }
        out.push(parse(item).ok_or_else(|| format!("{what}: unknown kind {item:?}"))?);
    }
    Ok(out)
}

impl HookConfig {
    /// `None` when no hook is configured at all. Errors name the flag.
    #[allow(clippy::too_many_arguments)]
    pub fn from_options(
        url: Option<String>,
        secret: Option<String>,
        timeout_ms: Option<u64>,
        fail: Option<HookFail>,
        before: Option<String>,
        events: Option<String>,
        stream: Option<HookStream>,
        redis: Option<String>,
        stream_key: Option<String>,
        queue: Option<usize>,
    ) -> Result<Option<HookConfig>, String> {
        let url = url.filter(|u| !u.is_empty());
        let before = list(before, Kind::parse, "--hook-before-send")?;
        let events = list(events, EventKind::parse, "--hook-events")?;
        let stream = stream.unwrap_or(HookStream::Http);
        if url.is_none() && before.is_empty() && events.is_empty() {
            return Ok(None);
        }
        if let Some(u) = &url
            && !u.starts_with("http://")
        {
            return Err(format!(
                "--hook-url {u:?}: only http:// URLs are supported (put a TLS proxy in front for https)"
            ));
        }
        if url.is_none() && (!before.is_empty() || stream == HookStream::Http) {
            return Err("--hook-url is required for --hook-before-send and --hook-events with --hook-stream http".into());
        }
        let timeout = Duration::from_millis(timeout_ms.unwrap_or(500));
        if timeout.is_zero() {
            return Err("--hook-timeout-ms must be at least 1".into());
        }
        let sink = match stream {
            HookStream::Http => Sink::Http,
            HookStream::Redis => {
                let url = redis.unwrap_or_else(|| "redis://127.0.0.1:6379".into());
                if let Err(e) = redis::Client::open(url.as_str()) {
                    return Err(format!(
                        "--hook-redis {}: {e}",
                        ferry_common::redact_url(&url)
                    ));
                }
                Sink::Redis {
                    url,
                    key: stream_key
                        .filter(|k| !k.is_empty())
                        .unwrap_or_else(|| "ferry:events".into()),
                }
            }
        };
        let queue = queue.unwrap_or(100_000);
        if queue == 0 {
            return Err("--hook-queue must be at least 1".into());
        }
        Ok(Some(HookConfig {
            url,
            secret: secret.filter(|s| !s.is_empty()),
            timeout,
            fail: fail.unwrap_or(HookFail::Open),
            before,
            events,
            sink,
            queue,
        }))
    }
}

/// Hook counters, shown in `/metrics` as `ferry_hook_*`.
#[derive(Default)]
pub struct HookStats {
    /// before-send calls answered by the hook.
    pub before_calls: AtomicU64,
    /// Of those, rejections and replacements.
    pub before_rejected: AtomicU64,
    pub before_replaced: AtomicU64,
    /// before-send calls that timed out or failed (the policy applied).
    pub before_failures: AtomicU64,
    /// Events accepted into the queue, delivered, and dropped on overflow.
    pub events_queued: AtomicU64,
    pub events_delivered: AtomicU64,
    pub events_dropped: AtomicU64,
    /// Failed delivery attempts (each retried with backoff).
    pub delivery_failures: AtomicU64,
    /// Grace periods that ended (with an offline event or, when the user
    /// came back or is online on another node, without).
    pub presence_expired: AtomicU64,
}

impl HookStats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
    fn add(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The node's hooks: configuration, HTTP pool, event queue.
pub struct Hooks {
    pub cfg: HookConfig,
    pub client: Option<HookClient>,
    pub stats: Arc<HookStats>,
    events: Option<events::Queue>,
    /// Names this node in events.
    node: Arc<str>,
}

impl Hooks {
    /// Builds the hooks; the event worker starts with [`Hooks::start`].
    pub fn new(cfg: HookConfig, node: &str) -> Hooks {
        let client = cfg
            .url
            .as_ref()
            .map(|u| HookClient::new(u.clone(), cfg.secret.clone()));
        let stats = Arc::new(HookStats::default());
        let events = (!cfg.events.is_empty()).then(|| events::Queue::new(cfg.queue));
        Hooks {
            cfg,
            client,
            stats,
            events,
            node: node.into(),
        }
    }

    /// Starts the event delivery task (no-op without events). It ends when
    /// `shutdown` fires, after trying to deliver what is queued for a moment.
    pub fn start(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.events
            .as_ref()
            .and_then(|q| q.start(&self.cfg, self.client.clone(), self.stats.clone(), shutdown))
    }

    /// Whether messages of this kind ask the hook first.
    pub fn wants_before(&self, kind: Kind) -> bool {
        self.client.is_some() && self.cfg.before.contains(&kind)
    }

    /// Whether events of this kind are emitted.
    pub fn wants(&self, kind: EventKind) -> bool {
        self.events.is_some() && self.cfg.events.contains(&kind)
    }

    /// Queues an event of an enabled kind; never waits. A full queue drops
    /// it (counted, logged).
    pub fn emit(&self, event: Event) {
        if !self.wants(event.kind()) {
            return;
        }
        if let Some(q) = &self.events {
            q.push(event, &self.node, &self.stats);
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(
        url: Option<&str>,
        before: Option<&str>,
        events: Option<&str>,
        stream: Option<HookStream>,
    ) -> Result<Option<HookConfig>, String> {
        HookConfig::from_options(
            url.map(String::from),
            None,
            None,
            None,
            before.map(String::from),
            events.map(String::from),
            stream,
            None,
            None,
            None,
        )
    }

    #[test]
    fn parses_kinds_and_checks_the_url() {
        assert!(opts(None, None, None, None).expect("ok").is_none());
        let c = opts(
            Some("http://h:1/x"),
            Some("im, room_im"),
            Some("presence"),
            None,
        )
        .expect("ok")
        .expect("some");
        assert_eq!(c.before, vec![Kind::Im, Kind::RoomIm]);
        assert_eq!(c.events, vec![EventKind::Presence]);
        assert_eq!(c.fail, HookFail::Open);
        assert_eq!(c.timeout, Duration::from_millis(500));
        let e = opts(Some("http://h:1/x"), Some("imm"), None, None).unwrap_err();
        assert!(e.contains("imm"), "{e}");
        assert!(opts(Some("https://h/x"), Some("im"), None, None).is_err());
        assert!(opts(None, Some("im"), None, None).is_err());
        assert!(opts(None, None, Some("after_send"), None).is_err());
        let r = opts(None, None, Some("after_send"), Some(HookStream::Redis))
            .expect("ok")
            .expect("some");
        assert_eq!(
            r.sink,
            Sink::Redis {
                url: "redis://127.0.0.1:6379".into(),
                key: "ferry:events".into()
            }
        );
    }
}
