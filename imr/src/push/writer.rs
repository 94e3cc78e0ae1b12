//! The Redis writer: one task, one dedicated connection (a
//! `ConnectionManager`, which reconnects by itself), batches written as
//! `MULTI; RPUSH q e…; …; EXEC` (`pipe().atomic()`).
//!
//! Delivery is **at-least-once**: a batch whose EXEC reply never arrived
//! (timeout, connection lost after sending) is written again, so the push
//! service can see an entry twice; no entry is lost while the process runs.
//! While Redis is unreachable the batch is retried with capped backoff and
//! new entries wait in the bounded buffer (see [`super::queue`]).

use super::entry::PushEntry;
use super::queue::{BATCH_MAX, BATCH_WINDOW, PushReceiver};
use crate::stats::{self, Stats};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, ServerErrorKind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Replies to a 1000-entry MULTI/EXEC can take longer than redis-rs's
/// 500 ms default on a loaded box.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Attempts for a batch that Redis itself rejects (not a connection problem).
const REJECTED_ATTEMPTS: u32 = 5;
/// Idle time after which the writer pings Redis to keep `/health` current.
const IDLE_PING: Duration = Duration::from_secs(5);
/// Time allowed at shutdown to write what is still buffered.
const FINAL_FLUSH: Duration = Duration::from_secs(3);

/// Opens the writer's connection lazily: nothing is contacted until the
/// first command, so the imr starts while Redis is down.
pub fn connect(url: &str) -> Result<ConnectionManager, RedisError> {
    let client = redis::Client::open(url)?;
    let cfg = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        // Our own loop retries with backoff; one quick attempt per command.
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(200));
    ConnectionManager::new_lazy_with_config(client, cfg)
}

/// Runs until `shutdown`, then tries for a few seconds to write what is left.
pub async fn run(
    mut rx: PushReceiver,
    mut conn: ConnectionManager,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) {
    let mut batch: Vec<PushEntry> = Vec::with_capacity(BATCH_MAX);
    let mut w = Writer {
        stats,
        down_since: None,
    };
    // Learn the Redis state at start instead of on the first push.
    w.ping(&mut conn).await;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            more = rx.first(&mut batch, BATCH_MAX) => if !more { break },
            _ = tokio::time::sleep(IDLE_PING) => {
                w.ping(&mut conn).await;
                continue;
            }
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = rx.fill(&mut batch, BATCH_MAX, BATCH_WINDOW) => {}
        }
        if !w.write(&mut conn, &batch, &shutdown).await {
            break;
        }
        batch.clear();
    }
    // Shutdown: flush what is buffered, bounded in time.
    let deadline = Instant::now() + FINAL_FLUSH;
    let flush_cancel = CancellationToken::new();
    let guard = flush_cancel.clone();
    let timer = tokio::spawn(async move {
        tokio::time::sleep_until(deadline).await;
        guard.cancel();
    });
    loop {
        rx.try_take(&mut batch, BATCH_MAX);
        if batch.is_empty() || !w.write(&mut conn, &batch, &flush_cancel).await {
            break;
        }
        batch.clear();
    }
    timer.abort();
    rx.try_take(&mut batch, usize::MAX);
    if !batch.is_empty() {
        let n = batch.len() as u64;
        stats::add(&w.stats.push_dropped, n);
        stats::sub(&w.stats.push_buffered, n);
        tracing::error!(
            entries = n,
            "offline push entries NOT written at shutdown: Redis unavailable"
        );
    }
}

struct Writer {
    stats: Arc<Stats>,
    down_since: Option<Instant>,
}

/// Connection-level trouble: retry forever (the entries stay buffered).
fn is_transient(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::ClusterDown
            ) | ErrorKind::AuthenticationFailed
        )
}

/// The MULTI/EXEC pipeline for one batch: one RPUSH per queue, entries of
/// each queue in arrival order.
pub fn pipeline(batch: &[PushEntry]) -> redis::Pipeline {
    let mut queues: Vec<(&'static str, Vec<&str>)> = Vec::new();
    for e in batch {
        match queues.iter_mut().find(|(q, _)| *q == e.queue) {
            Some((_, v)) => v.push(&e.json),
            None => queues.push((e.queue, vec![&e.json])),
        }
    }
    let mut p = redis::pipe();
    p.atomic();
    for (q, v) in queues {
        p.rpush(q, v).ignore();
    }
    p
}

impl Writer {
    fn mark_up(&mut self) {
        self.stats.redis_up.store(true, Ordering::Relaxed);
        if let Some(since) = self.down_since.take() {
            tracing::info!(after = ?since.elapsed(), "Redis reachable again");
        }
    }

    fn mark_down(&mut self, e: &RedisError) {
        self.stats.redis_up.store(false, Ordering::Relaxed);
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            tracing::warn!(error = %e, "Redis unreachable: offline push entries are buffered and retried");
        }
    }

    async fn ping(&mut self, conn: &mut ConnectionManager) {
        match redis::cmd("PING").query_async::<String>(conn).await {
            Ok(_) => self.mark_up(),
            Err(e) if is_transient(&e) => self.mark_down(&e),
            Err(e) => tracing::warn!(error = %e, "Redis PING failed"),
        }
    }

    /// Writes one batch, retrying until it is confirmed, rejected too often
    /// (dropped, counted) or `stop` fires. Returns false only on `stop`
    /// (the batch is then still unwritten).
    async fn write(
        &mut self,
        conn: &mut ConnectionManager,
        batch: &[PushEntry],
        stop: &CancellationToken,
    ) -> bool {
        let n = batch.len() as u64;
        let pipe = pipeline(batch);
        let mut backoff = BACKOFF_MIN;
        let mut rejected = 0u32;
        let mut failures = 0u64;
        loop {
            let res = tokio::select! {
                biased;
                _ = stop.cancelled() => return false,
                r = pipe.query_async::<()>(conn) => r,
            };
            match res {
                Ok(()) => {
                    self.mark_up();
                    stats::add(&self.stats.push_written, n);
                    stats::sub(&self.stats.push_buffered, n);
                    if failures > 0 {
                        tracing::info!(
                            entries = n,
                            attempts = failures + 1,
                            "push batch written after retries"
                        );
                    }
                    return true;
                }
                Err(e) if is_transient(&e) => {
                    self.mark_down(&e);
                    failures += 1;
                    if failures.is_power_of_two() {
                        tracing::warn!(error = %e, entries = n, attempts = failures, "push batch not confirmed; retrying");
                    }
                }
                Err(e) => {
                    self.mark_up();
                    failures += 1;
                    rejected += 1;
                    if rejected >= REJECTED_ATTEMPTS {
                        stats::add(&self.stats.push_dropped, n);
                        stats::sub(&self.stats.push_buffered, n);
                        tracing::error!(error = %e, entries = n, "Redis rejected the push batch {REJECTED_ATTEMPTS} times: entries DROPPED");
                        return true;
                    }
                    tracing::warn!(error = %e, entries = n, "Redis rejected the push batch; retrying");
                }
            }
            tokio::select! {
                biased;
                _ = stop.cancelled() => return false,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_groups_by_queue_inside_multi_exec() {
        let e = |q: &'static str, j: &str| PushEntry {
            queue: q,
            json: j.into(),
        };
        let batch = vec![
            e("push_queue", "a"),
            e("system_push_queue", "b"),
            e("push_queue", "c"),
        ];
        let packed = pipeline(&batch).get_packed_pipeline();
        let text = String::from_utf8_lossy(&packed);
        let cmds: Vec<&str> = ["MULTI", "RPUSH", "RPUSH", "EXEC"].to_vec();
        let mut pos = 0;
        for c in cmds {
            let i = text[pos..].find(c).expect(c);
            pos += i + c.len();
        }
        let first = text.find("push_queue").expect("queue");
        assert!(
            text[first..].find("\r\na\r\n").expect("a")
                < text[first..].find("\r\nc\r\n").expect("c")
        );
        assert_eq!(text.matches("RPUSH").count(), 2);
    }
}
