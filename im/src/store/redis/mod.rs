//! Shared [`Store`] on Redis, for cluster mode: every im node talks to the
//! same standalone Redis (`redis://host:port`) or Redis Cluster
//! (`redis+cluster://h1:p1,h2:p2,h3:p3`).
//!
//! # Key layout
//!
//! All keys of one queue share the hash tag `{<appid>:<uid>}` (one Cluster
//! slot), e.g. for prefix `ferry`, app 7, user 100:
//!
//! * `ferry:{7:100}:q`: ZSET of messages, score = id, member = id i64 BE,
//!   timestamp i64 BE (unix ms), cmd u8, flag u8, device i64 BE, body;
//! * `ferry:{7:100}:meta`: HASH with `head` (newest id, never decreases even
//!   when retention trims the ZSET), `sync_key`, `gsk:<gid>`;
//! * `ferry:{7:100}:d:<appid>:<sender>:<device>:<client msgid>:<receiver>`:
//!   STRING `<first id>|<digest>|<incarnation>|<connection>|<mark>` for the
//!   first id a deduplicated request placed in this queue, the digest of its
//!   content, its origin and the "ACK unconfirmed" mark, expiring after the
//!   dedup window (`d:r:<hex>` for requests without a
//!   client key, kept twice `op_timeout`: only the call's own retries, all
//!   within `op_timeout`, ever look at it);
//! * `devices_<device_id>_<platform>` and the counter `devices_id`: gobelieve's
//!   device numbers, unprefixed so they agree with `--auth redis`.
//!
//! # Appends
//!
//! The entries of a request are grouped by queue and each group is written by
//! one Lua script ([`scripts::APPEND`]): check the group's dedup record
//! (return its ids if present), else `HINCRBY head`, `ZADD` the entries, set
//! the record with `PX`, and trim the queue (keep the newest
//! `retention_count`, drop up to [`AGE_SCAN`] of the oldest entries older than
//! `retention_age`, let an idle queue expire). The groups usually live in
//! different slots (receiver and sender), so they cannot share a transaction.
//! Instead every group write is idempotent: it carries the request's
//! dedup identity, the whole request is retried on transient errors
//! ([`ATTEMPTS`] times) and a retry gets the already-placed ids back instead
//! of writing again. A crash between two groups therefore never duplicates
//! anything: the client's resend (same [`DedupKey`](crate::store::DedupKey))
//! completes the missing half and finds the written one. (The records of
//! the two halves expire independently, milliseconds apart; a resend exactly
//! at the end of the dedup window could see only one of them, which is why
//! the window is minutes while clients resend within seconds.) A client that
//! never resends is covered too for fan-outs (a group message to its
//! members): such a request is first recorded in the fan-out log
//! ([`fanout_log`]), and any node completes a record left behind by a crash.
//!
//! # Durability
//!
//! An append resolves once Redis answered every group. What that means on a
//! crash is decided by Redis's persistence settings: for "ACK means
//! durable" run Redis with `appendonly yes` and `appendfsync always`
//! (with `everysec`, up to a second of acknowledged messages can be lost on a
//! host crash; a Redis process crash alone loses nothing acknowledged).

mod conn;
mod fanout_log;
mod group;
mod keys;
mod scripts;
#[cfg(test)]
pub(crate) mod test_server;
#[cfg(test)]
mod tests;

use crate::store::{
    AppendOutcome, AppendRequest, Earlier, NewEntry, Origin, Placed, QueueId, Store, StoreError,
    StoreFuture, StoredMessage, Unconfirmed, Window,
};
use ::redis::{AsyncCommands, RedisError, RetryMethod, Script};
use conn::Conn;
use futures_util::future::join_all;
pub use group::RedisGroupStore;
use keys::{DedupId, QueueKeys};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{info, warn};

/// Tries of one append (first try plus retries) on transient errors.
pub const ATTEMPTS: usize = 3;

/// Oldest entries examined per append when trimming by age.
pub const AGE_SCAN: usize = 100;

/// Pause before retry `n` (1-based) of an append.
fn backoff(retry: usize) -> Duration {
    Duration::from_millis(25 << retry.min(4))
}

/// Tuning knobs of [`RedisStore`]; `Default` suits a production node.
#[derive(Debug, Clone)]
pub struct RedisStoreOptions {
    /// How long a [`crate::store::DedupKey`] is remembered.
    pub dedup_window: Duration,
    /// Newest messages kept per queue (0 = no limit).
    pub retention_count: usize,
    /// Messages older than this are dropped from a queue, a bounded number
    /// per append; a queue without appends for this long expires as a whole
    /// (its ids and sync keys are kept). `Duration::ZERO` = no limit.
    pub retention_age: Duration,
    /// Start of every queue key (must not contain `{` or `}`).
    pub key_prefix: String,
    /// Longest wait for one Redis reply. redis-rs defaults to 500 ms, which a
    /// big fan-out on a loaded host can exceed.
    pub response_timeout: Duration,
    /// Longest wait for a TCP connection to Redis.
    pub connection_timeout: Duration,
    /// Upper bound for one [`Store`] call including its retries: a dead or
    /// hung Redis yields an error after at most this long.
    pub op_timeout: Duration,
}

impl Default for RedisStoreOptions {
    fn default() -> Self {
        RedisStoreOptions {
            dedup_window: Duration::from_secs(600),
            retention_count: 100_000,
            retention_age: Duration::from_secs(30 * 24 * 3600),
            key_prefix: "ferry".into(),
            response_timeout: Duration::from_secs(2),
            connection_timeout: Duration::from_secs(1),
            op_timeout: Duration::from_secs(5),
        }
    }
}

/// The Redis message store; see the module docs.
pub struct RedisStore {
    conn: Conn,
    opts: RedisStoreOptions,
    append: Script,
    set_if_larger: Script,
    mark: Script,
    closed: AtomicBool,
    /// Appends that needed more than one try (for logs and tests).
    retried: AtomicU64,
}

impl RedisStore {
    /// Connects to `redis://host:port[/db]` or
    /// `redis+cluster://h1:p1,h2:p2,…` and checks that Redis answers.
    pub async fn connect(url: &str, opts: RedisStoreOptions) -> Result<RedisStore, StoreError> {
        if opts.key_prefix.contains(['{', '}']) {
            return Err(StoreError::Invalid(format!(
                "key prefix {:?} must not contain braces (they pick the cluster slot)",
                opts.key_prefix
            )));
        }
        if opts.op_timeout.is_zero() || opts.response_timeout.is_zero() {
            return Err(StoreError::Invalid("timeouts must not be zero".into()));
        }
        let conn = tokio::time::timeout(
            opts.op_timeout,
            conn::connect(url, opts.response_timeout, opts.connection_timeout),
        )
        .await
        .map_err(|_| StoreError::Backend(format!("connecting to {url} timed out")))??;
        let store = RedisStore {
            conn,
            opts,
            append: Script::new(scripts::APPEND),
            set_if_larger: Script::new(scripts::SET_IF_LARGER),
            mark: Script::new(scripts::MARK),
            closed: AtomicBool::new(false),
            retried: AtomicU64::new(0),
        };
        // Prove the connection works (the cluster client connects lazily).
        store
            .call(async {
                let mut c = store.conn.clone();
                ::redis::cmd("PING")
                    .query_async::<()>(&mut c)
                    .await
                    .map_err(rerr)
            })
            .await?;
        info!(url = %redact(url), prefix = %store.opts.key_prefix, "redis store connected");
        Ok(store)
    }

    /// Appends that needed a retry since connect.
    pub fn retried_appends(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }

    fn keys(&self, queue: QueueId) -> QueueKeys {
        QueueKeys::new(&self.opts.key_prefix, queue)
    }

    /// Runs one store operation: refused once closed, bounded by `op_timeout`.
    async fn call<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        match tokio::time::timeout(self.opts.op_timeout, op).await {
            Ok(res) => res,
            Err(_) => Err(StoreError::Backend(format!(
                "redis did not answer within {:?}",
                self.opts.op_timeout
            ))),
        }
    }

    async fn do_append(&self, req: AppendRequest) -> Result<AppendOutcome, StoreError> {
        if req.entries.is_empty() {
            return Err(StoreError::Invalid("append request without entries".into()));
        }
        let groups = group_by_queue(&req.entries);
        let logged = groups.len() >= fanout_log::MIN_QUEUES;
        let (mode, tag) = match &req.dedup {
            Some(d) if d.replace => (Mode::Replace, tag(d.digest, d.origin)),
            Some(d) => (Mode::Check, tag(d.digest, d.origin)),
            None => (Mode::Check, String::new()),
        };
        let (dedup_id, dedup_ttl) = match req.dedup {
            Some(d) => (DedupId::Client(d.key), self.opts.dedup_window),
            // A logged request may be redone by recovery, which relies on
            // the records as long as a client key's.
            None if logged => (DedupId::Request(request_id()), self.opts.dedup_window),
            // Only this call's retries (bounded by `op_timeout`) read it.
            None => (
                DedupId::Request(request_id()),
                self.opts.op_timeout.saturating_mul(2),
            ),
        };
        let ts = now_ms();
        let log = if logged {
            Some(self.log_fanout(&dedup_id, &tag, ts, &req.entries).await?)
        } else {
            None
        };
        let done = self
            .write_groups(&groups, &req.entries, &dedup_id, dedup_ttl, ts, &tag, mode)
            .await?;
        if let Some((key, field)) = log {
            self.forget_fanout(key, field);
        }
        let mut placed = vec![Placed { msgid: 0, prev: 0 }; req.entries.len()];
        for ((_, idx), result) in groups.iter().zip(&done) {
            let (_, first, _) = result
                .as_ref()
                .ok_or_else(|| StoreError::Backend("append left unfinished".into()))?;
            for (k, &i) in idx.iter().enumerate() {
                let msgid = *first + k as i64;
                placed[i] = Placed {
                    msgid,
                    prev: msgid - 1,
                };
            }
        }
        // Duplicate = the first entry's queue had a winning record when
        // Redis first answered for it. Only a client key can have been
        // recorded by an earlier call. If a failed try of this call was
        // nevertheless executed, the retry reports a duplicate of this very
        // origin, which the node takes for a resend (its ACK is not written
        // yet): it only notifies the receiver, who still gets the message by
        // syncing.
        let earlier = match done.first() {
            Some(Some((true, _, earlier))) if req.dedup.is_some() => *earlier,
            _ => None,
        };
        Ok(AppendOutcome {
            placed,
            duplicate: earlier.is_some(),
            earlier,
        })
    }

    /// Writes every queue group of a request (idempotently, retrying
    /// transient errors); per group: (a record won, first id, that record's
    /// origin and mark). The first try runs in `mode`, retries in
    /// [`Mode::Own`], so a try that was executed although its reply was lost
    /// is found, never repeated.
    #[allow(clippy::too_many_arguments)]
    async fn write_groups(
        &self,
        groups: &[(QueueId, Vec<usize>)],
        entries: &[NewEntry],
        dedup_id: &DedupId,
        dedup_ttl: Duration,
        ts: i64,
        tag: &str,
        mode: Mode,
    ) -> Result<Vec<GroupResult>, StoreError> {
        let invocations = |mode: Mode| -> Vec<_> {
            groups
                .iter()
                .map(|(queue, idx)| {
                    let tails = idx.iter().map(|&i| keys::encode_tail(&entries[i], ts));
                    self.invocation(*queue, dedup_id, dedup_ttl, ts, tag, mode, tails)
                })
                .collect()
        };
        let first_try = invocations(mode);
        let mut retry = None;
        let mut done: Vec<GroupResult> = vec![None; groups.len()];
        for attempt in 1..=ATTEMPTS {
            let invs = if attempt == 1 {
                &first_try
            } else {
                retry.get_or_insert_with(|| invocations(Mode::Own))
            };
            let replies = join_all(
                invs.iter()
                    .enumerate()
                    .filter(|(g, _)| done[*g].is_none())
                    .map(|(g, inv)| {
                        let mut c = self.conn.clone();
                        async move {
                            (
                                g,
                                inv.invoke_async::<(i64, i64, String, i64)>(&mut c).await,
                            )
                        }
                    }),
            )
            .await;
            let mut failure = None;
            for (g, reply) in replies {
                match reply {
                    Ok((existed, first, tag, mark)) => {
                        let earlier = (existed != 0).then(|| Earlier {
                            origin: parse_origin(&tag),
                            unconfirmed: mark != 0,
                        });
                        done[g] = Some((existed != 0, first, earlier));
                    }
                    Err(e) if retryable(&e) && attempt < ATTEMPTS => failure = Some(e),
                    Err(e) => return Err(rerr(e)),
                }
            }
            let Some(e) = failure else { break };
            if attempt == 1 {
                self.retried.fetch_add(1, Ordering::Relaxed);
            }
            warn!(error = %e, attempt, "redis append failed, retrying");
            tokio::time::sleep(backoff(attempt)).await;
        }
        Ok(done)
    }

    /// Records a multi-queue request in the fan-out log before any of its
    /// writes; returns the record's (hash, field).
    async fn log_fanout(
        &self,
        dedup: &DedupId,
        tag: &str,
        ts: i64,
        entries: &[NewEntry],
    ) -> Result<(String, String), StoreError> {
        let field = fanout_log::field(dedup);
        let key = fanout_log::shard_key(&self.opts.key_prefix, &field);
        let mut c = self.conn.clone();
        c.hset::<_, _, _, ()>(&key, &field, fanout_log::encode(dedup, tag, ts, entries))
            .await
            .map_err(rerr)?;
        Ok((key, field))
    }

    /// Deletes a completed request's record, off the append's path: if the
    /// delete is lost, recovery later finds every queue already written.
    fn forget_fanout(&self, key: String, field: String) {
        let mut c = self.conn.clone();
        tokio::spawn(async move {
            if let Err(e) = c.hdel::<_, _, ()>(&key, &field).await {
                warn!(error = %e, "could not delete a completed fan-out record; recovery will find it done");
            }
        });
    }

    /// Redoes every fan-out record older than [`fanout_log::LEASE`]: the
    /// requests a crashed node (or a lost delete) left behind. Returns how
    /// many were completed.
    pub async fn recover_fanouts(&self) -> Result<usize, StoreError> {
        let now = now_ms();
        let lease = duration_ms(fanout_log::LEASE);
        // A record must be redone while every queue's dedup record written
        // for it still exists, or a queue could get it twice.
        let safe =
            duration_ms(self.opts.dedup_window).saturating_sub(duration_ms(self.opts.op_timeout));
        let mut redone = 0;
        for n in 0..fanout_log::SHARDS {
            let key = fanout_log::shard_key_n(&self.opts.key_prefix, n);
            let mut c = self.conn.clone();
            let records: std::collections::HashMap<String, Vec<u8>> =
                c.hgetall(&key).await.map_err(rerr)?;
            for (field, bytes) in records {
                let Some(r) = fanout_log::decode(&bytes) else {
                    warn!(%key, %field, "dropping a malformed fan-out record");
                    c.hdel::<_, _, ()>(&key, &field).await.map_err(rerr)?;
                    continue;
                };
                let age = now.saturating_sub(r.ts);
                if age < lease {
                    continue;
                }
                if age >= safe {
                    tracing::error!(%field, age_ms = age, entries = r.entries.len(), "an interrupted fan-out is older than the dedup window and cannot be completed safely; dropping it (its sender can resend)");
                    c.hdel::<_, _, ()>(&key, &field).await.map_err(rerr)?;
                    continue;
                }
                let groups = group_by_queue(&r.entries);
                // Own mode: a queue that already holds this request's record
                // (same digest and origin) is skipped, any other is written
                // — also one holding an older record of the same key that a
                // replacing request had not reached yet.
                self.write_groups(
                    &groups,
                    &r.entries,
                    &r.dedup,
                    self.opts.dedup_window,
                    r.ts,
                    &r.tag,
                    Mode::Own,
                )
                .await?;
                c.hdel::<_, _, ()>(&key, &field).await.map_err(rerr)?;
                info!(%field, queues = groups.len(), age_ms = age, "completed an interrupted fan-out");
                redone += 1;
            }
        }
        Ok(redone)
    }

    /// The append script call for one queue's entries of a request.
    #[allow(clippy::too_many_arguments)]
    fn invocation<'s>(
        &'s self,
        queue: QueueId,
        dedup: &DedupId,
        dedup_ttl: Duration,
        now: i64,
        tag: &str,
        mode: Mode,
        tails: impl Iterator<Item = Vec<u8>>,
    ) -> ::redis::ScriptInvocation<'s> {
        let keys = self.keys(queue);
        let age = duration_ms(self.opts.retention_age);
        let cutoff = if age > 0 {
            now.saturating_sub(age).max(0)
        } else {
            0
        };
        let mut inv = self.append.prepare_invoke();
        inv.key(keys.queue())
            .key(keys.meta())
            .key(keys.dedup(dedup))
            .arg(duration_ms(dedup_ttl).max(1))
            .arg(self.opts.retention_count)
            .arg(cutoff)
            .arg(AGE_SCAN)
            .arg(age)
            .arg(mode.arg())
            .arg(tag);
        for tail in tails {
            inv.arg(tail);
        }
        inv
    }

    async fn do_window(
        &self,
        queue: QueueId,
        after: i64,
        limit: usize,
    ) -> Result<Window, StoreError> {
        let keys = self.keys(queue);
        let mut c = self.conn.clone();
        let (members, head): (Vec<Vec<u8>>, Option<i64>) = if limit == 0 {
            let head = c.hget(keys.meta(), keys::HEAD_FIELD).await.map_err(rerr)?;
            (Vec::new(), head)
        } else {
            // Messages first, head second: the head is never older than the
            // page, so `has_more` can only err towards "yes".
            ::redis::pipe()
                .cmd("ZRANGEBYSCORE")
                .arg(keys.queue())
                .arg(format!("({after}"))
                .arg("+inf")
                .arg("LIMIT")
                .arg(0)
                .arg(count_arg(limit))
                .cmd("HGET")
                .arg(keys.meta())
                .arg(keys::HEAD_FIELD)
                .query_async(&mut c)
                .await
                .map_err(rerr)?
        };
        let messages: Vec<StoredMessage> = decode_all(queue, members)
            .into_iter()
            .filter(|m| m.msgid > after)
            .collect();
        let head = head.unwrap_or(0);
        let last = messages.last().map_or(after, |m| m.msgid);
        Ok(Window {
            messages,
            head,
            has_more: head > last,
        })
    }

    async fn do_latest(
        &self,
        queue: QueueId,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let start = i64::try_from(limit).map_or(0, |n| -n);
        let mut c = self.conn.clone();
        let members: Vec<Vec<u8>> = c
            .zrange(self.keys(queue).queue(), start as isize, -1)
            .await
            .map_err(rerr)?;
        Ok(decode_all(queue, members))
    }

    async fn head(&self, queue: QueueId) -> Result<i64, StoreError> {
        let mut c = self.conn.clone();
        let head: Option<i64> = c
            .hget(self.keys(queue).meta(), keys::HEAD_FIELD)
            .await
            .map_err(rerr)?;
        Ok(head.unwrap_or(0))
    }

    async fn meta_field(&self, queue: QueueId, field: String) -> Result<i64, StoreError> {
        let mut c = self.conn.clone();
        let v: Option<i64> = c.hget(self.keys(queue).meta(), field).await.map_err(rerr)?;
        Ok(v.unwrap_or(0))
    }

    async fn set_meta_if_larger(
        &self,
        queue: QueueId,
        field: String,
        value: i64,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        self.set_if_larger
            .key(self.keys(queue).meta())
            .arg(field)
            .arg(value)
            .invoke_async::<i64>(&mut c)
            .await
            .map_err(rerr)?;
        Ok(())
    }

    /// gobelieve's allocation: GET; else INCR the counter and SET NX; a
    /// concurrent first login that lost the SET NX reads the winner's number.
    async fn do_device_number(&self, device_id: &str, platform: u8) -> Result<i64, StoreError> {
        let key = keys::device_key(device_id, platform);
        let mut c = self.conn.clone();
        if let Some(n) = c.get::<_, Option<i64>>(&key).await.map_err(rerr)? {
            return Ok(n);
        }
        let n: i64 = c.incr(keys::DEVICE_COUNTER, 1).await.map_err(rerr)?;
        let won: bool = c.set_nx(&key, n).await.map_err(rerr)?;
        if won {
            return Ok(n);
        }
        c.get::<_, Option<i64>>(&key)
            .await
            .map_err(rerr)?
            .ok_or_else(|| StoreError::Backend(format!("device number {key} vanished")))
    }
}

impl Store for RedisStore {
    fn put(&self, req: AppendRequest) -> StoreFuture<'_, AppendOutcome> {
        Box::pin(self.call(self.do_append(req)))
    }

    fn window(&self, queue: QueueId, after: i64, limit: usize) -> StoreFuture<'_, Window> {
        Box::pin(self.call(self.do_window(queue, after, limit)))
    }

    fn latest(&self, queue: QueueId, limit: usize) -> StoreFuture<'_, Vec<StoredMessage>> {
        Box::pin(self.call(self.do_latest(queue, limit)))
    }

    /// `head - after`: ids are contiguous from 1, so this counts every
    /// message ever stored after `after`, including ones retention dropped
    /// (the same answer as the embedded stores, from one `HGET`).
    fn count_after(&self, queue: QueueId, after: i64) -> StoreFuture<'_, i64> {
        Box::pin(self.call(async move {
            let head = self.head(queue).await?;
            Ok(head.saturating_sub(after.max(0)).max(0))
        }))
    }

    fn sync_key(&self, queue: QueueId) -> StoreFuture<'_, i64> {
        Box::pin(self.call(self.meta_field(queue, keys::SYNC_KEY_FIELD.into())))
    }

    fn set_sync_key(&self, queue: QueueId, key: i64) -> StoreFuture<'_, ()> {
        Box::pin(self.call(self.set_meta_if_larger(queue, keys::SYNC_KEY_FIELD.into(), key)))
    }

    fn group_sync_key(&self, queue: QueueId, gid: i64) -> StoreFuture<'_, i64> {
        Box::pin(self.call(self.meta_field(queue, keys::group_sync_field(gid))))
    }

    fn set_group_sync_key(&self, queue: QueueId, gid: i64, key: i64) -> StoreFuture<'_, ()> {
        Box::pin(self.call(self.set_meta_if_larger(queue, keys::group_sync_field(gid), key)))
    }

    fn device_number(&self, device_id: &str, platform: u8) -> StoreFuture<'_, i64> {
        let device_id = device_id.to_owned();
        Box::pin(self.call(async move { self.do_device_number(&device_id, platform).await }))
    }

    /// One script per record, in the queue the verdict reads (the first).
    fn mark_unconfirmed(&self, marks: Vec<Unconfirmed>) -> StoreFuture<'_, ()> {
        Box::pin(self.call(async move {
            let calls = marks.iter().map(|m| {
                let key = self.keys(m.queue).dedup(&DedupId::Client(m.key));
                let mut c = self.conn.clone();
                let script = &self.mark;
                async move { script.key(key).invoke_async::<i64>(&mut c).await }
            });
            for r in join_all(calls).await {
                r.map_err(rerr)?;
            }
            Ok(())
        }))
    }

    fn shared(&self) -> bool {
        true
    }

    fn recover_interrupted(&self) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            if self.closed.load(Ordering::Acquire) {
                return Err(StoreError::Closed);
            }
            self.recover_fanouts().await
        })
    }

    /// Marks the store closed (idempotent). Redis holds nothing unflushed on
    /// our side: every acknowledged write already has its reply.
    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if !self.closed.swap(true, Ordering::AcqRel) {
                info!("redis store closed");
            }
            Ok(())
        })
    }
}

/// Per queue group of a request: (a record won, first id, its earlier send).
type GroupResult = Option<(bool, i64, Option<Earlier>)>;

/// How the append script treats an existing record (see [`scripts::APPEND`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Check,
    Replace,
    Own,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::Check => "c",
            Mode::Replace => "r",
            Mode::Own => "o",
        }
    }
}

/// A request's record tag: `<digest>|<incarnation>|<connection>` in hex.
fn tag(digest: u64, origin: Origin) -> String {
    format!(
        "{digest:x}|{:x}|{:x}",
        origin.incarnation, origin.connection
    )
}

/// The origin in a tag (zero for a tag without one).
fn parse_origin(tag: &str) -> Origin {
    let mut parts = tag.split('|').skip(1);
    let mut next = || {
        parts
            .next()
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or(0)
    };
    Origin {
        incarnation: next(),
        connection: next(),
    }
}

/// The request's entries grouped by queue, in order of first appearance;
/// each group lists entry indexes in request order.
fn group_by_queue(entries: &[NewEntry]) -> Vec<(QueueId, Vec<usize>)> {
    let mut groups: Vec<(QueueId, Vec<usize>)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match groups.iter_mut().find(|(q, _)| *q == e.queue) {
            Some((_, idx)) => idx.push(i),
            None => groups.push((e.queue, vec![i])),
        }
    }
    groups
}

/// Decodes queue members, skipping (and logging) any that are malformed.
fn decode_all(queue: QueueId, members: Vec<Vec<u8>>) -> Vec<StoredMessage> {
    members
        .into_iter()
        .filter_map(|m| {
            let len = m.len();
            let decoded = keys::decode_member(m);
            if decoded.is_none() {
                warn!(
                    appid = queue.appid,
                    uid = queue.uid,
                    len,
                    "skipping malformed queue member"
                );
            }
            decoded
        })
        .collect()
}

/// Transient failures worth retrying (connection loss, timeouts, cluster
/// reconfiguration); script or type errors are not.
fn retryable(e: &RedisError) -> bool {
    e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || !matches!(e.retry_method(), RetryMethod::NoRetry)
}

fn rerr(e: RedisError) -> StoreError {
    StoreError::Backend(format!("redis: {e}"))
}

/// `LIMIT` count: -1 means "all" to Redis.
fn count_arg(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(-1)
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// 128 random bits, hex: identifies one `append` call for its retries.
fn request_id() -> String {
    static FALLBACK: AtomicU64 = AtomicU64::new(0);
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: time plus a process-wide counter is still
        // unique enough for the few seconds the record matters.
        b[..8].copy_from_slice(&now_ms().to_be_bytes());
        let n = FALLBACK.fetch_add(1, Ordering::Relaxed);
        b[8..].copy_from_slice(&n.to_be_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Wall-clock ms since the epoch (entry timestamps, age retention).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The url without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}
