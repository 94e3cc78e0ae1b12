//! Asynchronous events: message stored, presence, group changes.
//!
//! Each event is serialised once when emitted and put in a bounded queue
//! (`--hook-queue`); a full queue drops the new event, counts it
//! (`ferry_hook_events_dropped_total`) and logs (at powers of two), so
//! messaging never waits. One worker takes up to [`BATCH`] events at a time
//! and delivers them — as one signed POST
//! `{"type":"events","node":…,"events":[…]}` to `--hook-url` (any 2xx
//! acknowledges the batch), or as XADDs to a Redis stream (field `event`,
//! the same JSON) — retrying a failed batch with exponential backoff until
//! it is acknowledged: at least once while the process lives (a crash loses
//! what is still in memory). Every event has a node-unique `id` for
//! deduplication by the consumer.
//!
//! Event shapes (besides `id`, `node`, `ts` in Unix milliseconds):
//! * `{"type":"after_send","kind":"im","appid","sender","receiver","queue":{"appid","uid"},"msgid"}`
//! * `{"type":"presence","appid","uid","online":true}`
//! * `{"type":"group","action":"created","appid","group_id","members":[…]}`

use super::client::HookClient;
use super::{HookConfig, HookStats, Sink};
use bytes::Bytes;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Events per delivery.
pub const BATCH: usize = 500;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Time given to deliver what is queued when the node shuts down.
const FINAL_FLUSH: Duration = Duration::from_secs(2);
/// Timeout of one event delivery (the before-send timeout is for senders).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Event families, as named in `--hook-events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    AfterSend,
    Presence,
    Group,
}

impl EventKind {
    pub fn parse(s: &str) -> Option<EventKind> {
        Some(match s {
            "after_send" => EventKind::AfterSend,
            "presence" => EventKind::Presence,
            "group" => EventKind::Group,
            _ => return None,
        })
    }
}

/// A queue reference in events.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct QueueRef {
    pub appid: i64,
    pub uid: i64,
}

impl From<crate::store::QueueId> for QueueRef {
    fn from(q: crate::store::QueueId) -> QueueRef {
        QueueRef {
            appid: q.appid,
            uid: q.uid,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A message was stored (not for a recognised resend).
    AfterSend {
        kind: super::Kind,
        appid: i64,
        sender: i64,
        /// uid, gid (group_im) or room (room_im, which is not stored: no queue).
        receiver: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        queue: Option<QueueRef>,
        #[serde(skip_serializing_if = "Option::is_none")]
        msgid: Option<i64>,
    },
    /// A user came online or went offline (see [`super::presence`]).
    Presence { appid: i64, uid: i64, online: bool },
    /// A group was changed over the HTTP API.
    Group {
        action: &'static str,
        appid: i64,
        group_id: i64,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        members: Vec<i64>,
    },
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::AfterSend { .. } => EventKind::AfterSend,
            Event::Presence { .. } => EventKind::Presence,
            Event::Group { .. } => EventKind::Group,
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    id: String,
    node: &'a str,
    ts: u64,
    #[serde(flatten)]
    event: &'a Event,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The bounded queue between emitters and the worker.
pub(super) struct Queue {
    tx: mpsc::Sender<String>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<String>>>,
    seq: AtomicU64,
    /// Distinguishes this process's ids from an earlier run's.
    epoch: u64,
}

impl Queue {
    pub(super) fn new(cap: usize) -> Queue {
        let (tx, rx) = mpsc::channel(cap);
        Queue {
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            seq: AtomicU64::new(0),
            epoch: now_ms(),
        }
    }

    pub(super) fn push(&self, event: Event, node: &str, stats: &HookStats) {
        let n = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let env = Envelope {
            id: format!("{node}/{}/{n}", self.epoch),
            node,
            ts: now_ms(),
            event: &event,
        };
        let json = match serde_json::to_string(&env) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "hook event not serialisable; dropped");
                return;
            }
        };
        match self.tx.try_send(json) {
            Ok(()) => {
                stats.events_queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                let d = stats.events_dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if d.is_power_of_two() {
                    tracing::warn!(
                        dropped = d,
                        "hook event queue full (--hook-queue): events dropped"
                    );
                }
            }
        }
    }

    pub(super) fn start(
        &self,
        cfg: &HookConfig,
        client: Option<HookClient>,
        stats: Arc<HookStats>,
        shutdown: CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let rx = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        let sink = match (&cfg.sink, client) {
            (Sink::Http, Some(c)) => Target::Http(c),
            (Sink::Redis { url, key }, _) => match redis_conn(url) {
                Ok(conn) => Target::Redis {
                    conn,
                    key: key.clone(),
                },
                Err(e) => {
                    tracing::error!(error = %e, "hook stream: bad Redis URL; events are not delivered");
                    return None;
                }
            },
            (Sink::Http, None) => return None,
        };
        Some(tokio::spawn(run(rx, sink, stats, shutdown)))
    }
}

fn redis_conn(url: &str) -> Result<redis::aio::ConnectionManager, redis::RedisError> {
    let client = redis::Client::open(url)?;
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(200));
    redis::aio::ConnectionManager::new_lazy_with_config(client, cfg)
}

enum Target {
    Http(HookClient),
    Redis {
        conn: redis::aio::ConnectionManager,
        key: String,
    },
}

impl Target {
    async fn deliver(&mut self, batch: &[String]) -> Result<(), String> {
        match self {
            Target::Http(c) => {
                let mut body =
                    String::with_capacity(40 + batch.iter().map(|e| e.len() + 1).sum::<usize>());
                body.push_str(r#"{"type":"events","events":["#);
                for (i, e) in batch.iter().enumerate() {
                    if i > 0 {
                        body.push(',');
                    }
                    body.push_str(e);
                }
                body.push_str("]}");
                c.post("events", Bytes::from(body), DELIVERY_TIMEOUT)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Target::Redis { conn, key } => {
                let mut p = redis::pipe();
                for e in batch {
                    p.cmd("XADD")
                        .arg(&*key)
                        .arg("*")
                        .arg("event")
                        .arg(e)
                        .ignore();
                }
                match tokio::time::timeout(DELIVERY_TIMEOUT, p.query_async::<()>(conn)).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err("Redis did not answer in time".into()),
                }
            }
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<String>,
    mut target: Target,
    stats: Arc<HookStats>,
    shutdown: CancellationToken,
) {
    let mut batch: Vec<String> = Vec::with_capacity(BATCH);
    loop {
        if batch.is_empty() {
            let n = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                n = rx.recv_many(&mut batch, BATCH) => n,
            };
            if n == 0 {
                return;
            }
        }
        let mut backoff = FIRST_BACKOFF;
        loop {
            match target.deliver(&batch).await {
                Ok(()) => {
                    stats
                        .events_delivered
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    batch.clear();
                    break;
                }
                Err(e) => {
                    let n = stats.delivery_failures.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_power_of_two() {
                        tracing::warn!(error = %e, events = batch.len(), failures = n, retry_in = ?backoff, "hook event delivery failed; retrying");
                    }
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
    }
    // Shutting down: one more attempt for what is queued, bounded in time.
    rx.close();
    let deadline = tokio::time::Instant::now() + FINAL_FLUSH;
    while let Ok(Some(e)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        batch.push(e);
    }
    let left = batch.len();
    if left > 0 {
        let done = tokio::time::timeout_at(deadline, async {
            for chunk in batch.chunks(BATCH) {
                target.deliver(chunk).await?;
            }
            Ok::<(), String>(())
        })
        .await;
        if !matches!(done, Ok(Ok(()))) {
            tracing::warn!(events = left, "hook events not delivered before shutdown");
        } else {
            stats
                .events_delivered
                .fetch_add(left as u64, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_shapes() {
        let e = Event::Presence {
            appid: 7,
            uid: 1,
            online: true,
        };
        let j = serde_json::to_value(Envelope {
            id: "n/1/1".into(),
            node: "n",
            ts: 5,
            event: &e,
        })
        .expect("json");
        assert_eq!(
            j,
            serde_json::json!({"id":"n/1/1","node":"n","ts":5,"type":"presence","appid":7,"uid":1,"online":true})
        );
        let a = Event::AfterSend {
            kind: super::super::Kind::GroupIm,
            appid: 7,
            sender: 1,
            receiver: 30,
            queue: Some(QueueRef { appid: 7, uid: 1 }),
            msgid: Some(4),
        };
        let j = serde_json::to_value(&a).expect("json");
        assert_eq!(j["kind"], "group_im");
        assert_eq!(j["queue"]["uid"], 1);
    }

    #[tokio::test]
    async fn overflow_is_counted_not_waited_for() {
        let q = Queue::new(2);
        let stats = HookStats::default();
        for uid in 0..5 {
            q.push(
                Event::Presence {
                    appid: 1,
                    uid,
                    online: true,
                },
                "n",
                &stats,
            );
        }
        assert_eq!(HookStats::get(&stats.events_queued), 2);
        assert_eq!(HookStats::get(&stats.events_dropped), 3);
    }
}
