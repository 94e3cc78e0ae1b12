//! The single writer thread and its group commit.
//!
//! SQLite allows one writer at a time and every commit costs an fsync, so all
//! writes go through one OS thread that owns the only read-write connection.
//! It blocks for the first request, then takes everything already queued (up
//! to `batch_max`) into one transaction: while a commit's fsync is in flight
//! new requests pile up in the channel and form the next batch, so the batch
//! size adapts to the load without any timer.
//!
//! Each request's reply is sent only after the COMMIT (and so the fsync)
//! returned. When anything in the transaction fails, every request in it gets
//! an error and the in-memory caches are dropped, so ids stay contiguous and
//! the next batch starts from what is really on disk.

use super::Shared;
use crate::store::record;
use crate::store::{AppendOutcome, AppendRequest, DedupKey, Earlier, Placed, QueueId, StoreError};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

/// A write operation for the writer thread.
pub(super) enum Op {
    Append(AppendRequest),
    /// An append that also gets its position in `stream` (see
    /// [`crate::store::Store::append_ordered`]).
    AppendOrdered(AppendRequest, (i64, i64)),
    SetSyncKey {
        queue: QueueId,
        key: i64,
    },
    SetGroupSyncKey {
        queue: QueueId,
        gid: i64,
        key: i64,
    },
    /// Sets the "ACK unconfirmed" mark of these records.
    Mark(Vec<DedupKey>),
    DeviceNumber {
        device_id: String,
        platform: u8,
    },
    /// Test hook: run raw SQL on the write connection inside the batch.
    #[cfg(test)]
    Exec(String),
    /// Test hook: make the next `n` batches fail at COMMIT time.
    #[cfg(test)]
    FailCommits(u32),
    /// Test hook: keep the writer busy so the next requests form one batch.
    #[cfg(test)]
    Stall(std::time::Duration),
}

/// Result of a successful [`Op`].
#[derive(Debug)]
pub(super) enum Done {
    Append(AppendOutcome),
    Ordered(AppendOutcome, u64),
    Unit,
    Number(i64),
}

/// Where the writer sends an operation's result.
pub(super) type Reply = oneshot::Sender<Result<Done, StoreError>>;

/// What travels over the writer's channel.
pub(super) enum Msg {
    Job {
        op: Op,
        reply: Reply,
    },
    /// Finish everything queued, close the connection, then signal.
    Close(oneshot::Sender<()>),
}

/// Forget the cached queue heads when this many queues are cached, so a
/// long-running node touching millions of queues keeps bounded memory (the
/// heads are reloaded with one indexed lookup on next touch).
const HEADS_CACHE_MAX: usize = 1 << 20;

/// Expired dedup rows deleted per prune: a fixed floor plus twice the rows
/// added since the last prune, so pruning always outpaces inserts and its
/// cost is spread out instead of one long stall.
const PRUNE_FLOOR: i64 = 256;

/// Longest time between two prunes. Pruning is periodic rather than per batch
/// because its time-range statement is re-planned by SQLite on every new
/// bound cutoff.
const PRUNE_INTERVAL_MAX_MS: i64 = 100;

const SELECT_HEAD: &str = "SELECT max(id) FROM messages WHERE appid = ?1 AND uid = ?2";
const INSERT_MESSAGE: &str = "INSERT INTO messages (appid, uid, id, cmd, flag, device_id, body) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const INSERT_DEDUP: &str = "INSERT INTO dedup \
     (appid, sender, device_id, client_msgid, receiver, msgids, created) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING";
const SELECT_DEDUP: &str = "SELECT msgids, created FROM dedup \
     WHERE appid = ?1 AND sender = ?2 AND device_id = ?3 AND client_msgid = ?4 AND receiver = ?5";
const UPDATE_DEDUP: &str = "UPDATE dedup SET msgids = ?6, created = ?7 \
     WHERE appid = ?1 AND sender = ?2 AND device_id = ?3 AND client_msgid = ?4 AND receiver = ?5";
const MARK_DEDUP: &str = "UPDATE dedup SET msgids = ?6 \
     WHERE appid = ?1 AND sender = ?2 AND device_id = ?3 AND client_msgid = ?4 AND receiver = ?5";
const PRUNE_DEDUP: &str = "DELETE FROM dedup \
     WHERE (appid, sender, device_id, client_msgid, receiver) IN \
     (SELECT appid, sender, device_id, client_msgid, receiver FROM dedup \
      WHERE created < ?1 ORDER BY created LIMIT ?2)";
const UPSERT_SYNC_KEY: &str = "INSERT INTO sync_keys (appid, uid, sync_key) VALUES (?1, ?2, ?3) \
     ON CONFLICT (appid, uid) DO UPDATE SET sync_key = excluded.sync_key \
     WHERE excluded.sync_key > sync_keys.sync_key";
const UPSERT_GROUP_SYNC_KEY: &str = "INSERT INTO group_sync_keys (appid, uid, gid, sync_key) \
     VALUES (?1, ?2, ?3, ?4) \
     ON CONFLICT (appid, uid, gid) DO UPDATE SET sync_key = excluded.sync_key \
     WHERE excluded.sync_key > group_sync_keys.sync_key";
pub(super) const SELECT_DEVICE: &str =
    "SELECT number FROM devices WHERE device_id = ?1 AND platform = ?2";
const SELECT_MAX_DEVICE: &str = "SELECT coalesce(max(number), 0) FROM devices";
const INSERT_DEVICE: &str = "INSERT INTO devices (device_id, platform, number) VALUES (?1, ?2, ?3)";

/// Writer-thread state that is only valid while it matches the database; all
/// of it is dropped when a transaction fails.
#[derive(Default)]
struct Cache {
    /// Newest id per queue, so an append needs no read.
    heads: HashMap<QueueId, i64>,
    /// Next device number to hand out.
    next_device: Option<i64>,
}

/// Owns the write connection; see the module docs.
pub(super) struct Writer {
    conn: Connection,
    rx: mpsc::Receiver<Msg>,
    shared: Arc<Shared>,
    batch_max: usize,
    dedup_window_ms: i64,
    cache: Cache,
    /// Wall-clock ms at or after which the next batch prunes dedup rows.
    next_prune_ms: i64,
    /// Dedup rows written since the last prune caught up.
    dedup_since_prune: i64,
    /// Positions handed out by [`Op::AppendOrdered`].
    streams: crate::store::streams::Streams,
    #[cfg(test)]
    fail_commits: u32,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        rx: mpsc::Receiver<Msg>,
        shared: Arc<Shared>,
        batch_max: usize,
        dedup_window_ms: i64,
    ) -> Self {
        Writer {
            conn,
            rx,
            shared,
            batch_max: batch_max.max(1),
            dedup_window_ms,
            cache: Cache::default(),
            next_prune_ms: 0,
            dedup_since_prune: 0,
            streams: Default::default(),
            #[cfg(test)]
            fail_commits: 0,
        }
    }

    /// Thread body: batch, commit, reply, until closed or every sender is gone.
    pub(super) fn run(mut self) {
        let mut jobs: Vec<(Op, Reply)> = Vec::with_capacity(self.batch_max);
        let mut close_acks: Vec<oneshot::Sender<()>> = Vec::new();
        // After `rx.close()` this keeps returning what is still buffered,
        // then `None`: that is how close drains pending requests.
        while let Some(first) = self.rx.blocking_recv() {
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Job { op, reply } => jobs.push((op, reply)),
                    Msg::Close(ack) => {
                        self.rx.close();
                        close_acks.push(ack);
                    }
                }
                if jobs.len() >= self.batch_max {
                    break;
                }
                next = self.rx.try_recv().ok();
            }
            if !jobs.is_empty() {
                self.commit_batch(&mut jobs);
            }
        }
        let Writer { conn, .. } = self;
        if let Err((_, e)) = conn.close() {
            warn!(error = %e, "closing the sqlite write connection failed");
        }
        debug!("sqlite writer thread stopped");
        for ack in close_acks {
            let _ = ack.send(());
        }
    }

    /// Runs `jobs` in one transaction and replies to each of them.
    fn commit_batch(&mut self, jobs: &mut Vec<(Op, Reply)>) {
        let now = now_ms();
        if self.cache.heads.len() > HEADS_CACHE_MAX {
            self.cache.heads.clear();
        }
        let mut results = Vec::with_capacity(jobs.len());
        let outcome = self.apply(jobs, now, &mut results);
        self.shared.batches.fetch_add(1, Ordering::Relaxed);
        self.shared
            .requests
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        match outcome {
            Ok(()) => {
                for ((_, reply), res) in jobs.drain(..).zip(results) {
                    let _ = reply.send(res);
                }
            }
            Err(e) => {
                warn!(error = %e, requests = jobs.len(), "sqlite batch failed, rolled back");
                self.rollback();
                let msg = format!("write batch failed: {e}");
                let mut results = results.into_iter();
                for (_, reply) in jobs.drain(..) {
                    // Requests refused before touching the database keep
                    // their own error; everything else failed with the batch.
                    let res = match results.next() {
                        Some(Err(StoreError::Invalid(why))) => StoreError::Invalid(why),
                        _ => StoreError::Backend(msg.clone()),
                    };
                    let _ = reply.send(Err(res));
                }
            }
        }
    }

    /// Undoes an unfinished transaction and forgets every cached value that
    /// may describe rows which were never committed.
    fn rollback(&mut self) {
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            warn!(error = %e, "sqlite rollback failed");
        }
        self.cache = Cache::default();
    }

    /// Executes the whole batch in one transaction. `Err` means nothing was
    /// committed; per-request refusals are reported through `results`.
    fn apply(
        &mut self,
        jobs: &[(Op, Reply)],
        now: i64,
        results: &mut Vec<Result<Done, StoreError>>,
    ) -> rusqlite::Result<()> {
        if !self.conn.is_autocommit() {
            // A previous failure left a transaction open; never build on it.
            self.rollback();
        }
        #[cfg(test)]
        let inject_failure = if self.fail_commits > 0 {
            self.fail_commits -= 1;
            true
        } else {
            false
        };
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        for (op, _) in jobs {
            if matches!(
                op,
                Op::Append(AppendRequest { dedup: Some(_), .. })
                    | Op::AppendOrdered(AppendRequest { dedup: Some(_), .. }, _)
            ) {
                self.dedup_since_prune += 1;
            }
            let res = self.apply_one(op, now)?;
            results.push(res);
        }
        if now >= self.next_prune_ms {
            self.prune_dedup(now)?;
        }
        #[cfg(test)]
        if inject_failure {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                Some("injected commit failure".into()),
            ));
        }
        self.conn.execute_batch("COMMIT")
    }

    /// One operation inside the open transaction. The outer `Err` aborts the
    /// batch; the inner one refuses only this request.
    fn apply_one(&mut self, op: &Op, now: i64) -> rusqlite::Result<Result<Done, StoreError>> {
        let conn = &self.conn;
        match op {
            Op::Append(req) => append(conn, &mut self.cache, req, now, self.dedup_window_ms),
            Op::AppendOrdered(req, stream) => Ok(
                match append(conn, &mut self.cache, req, now, self.dedup_window_ms)? {
                    Ok(Done::Append(out)) => Ok(Done::Ordered(out, self.streams.next(*stream))),
                    other => other,
                },
            ),
            Op::SetSyncKey { queue, key } => {
                conn.prepare_cached(UPSERT_SYNC_KEY)?.execute(params![
                    queue.appid,
                    queue.uid,
                    key
                ])?;
                Ok(Ok(Done::Unit))
            }
            Op::SetGroupSyncKey { queue, gid, key } => {
                conn.prepare_cached(UPSERT_GROUP_SYNC_KEY)?
                    .execute(params![queue.appid, queue.uid, gid, key])?;
                Ok(Ok(Done::Unit))
            }
            Op::Mark(keys) => {
                for k in keys {
                    mark(conn, k)?;
                }
                Ok(Ok(Done::Unit))
            }
            Op::DeviceNumber {
                device_id,
                platform,
            } => device_number(conn, &mut self.cache, device_id, *platform),
            #[cfg(test)]
            Op::Exec(sql) => {
                conn.execute_batch(sql)?;
                Ok(Ok(Done::Unit))
            }
            #[cfg(test)]
            Op::FailCommits(n) => {
                self.fail_commits = *n;
                Ok(Ok(Done::Unit))
            }
            #[cfg(test)]
            Op::Stall(d) => {
                std::thread::sleep(*d);
                Ok(Ok(Done::Unit))
            }
        }
    }

    /// Deletes a bounded number of dedup rows older than the window. Runs
    /// inside the batch's transaction (no extra fsync) under a savepoint, so a
    /// failed prune is only logged unless SQLite abandoned the transaction.
    fn prune_dedup(&mut self, now: i64) -> rusqlite::Result<()> {
        let cutoff = now.saturating_sub(self.dedup_window_ms);
        let limit = PRUNE_FLOOR.saturating_add(self.dedup_since_prune.saturating_mul(2));
        let interval = (self.dedup_window_ms / 2).clamp(1, PRUNE_INTERVAL_MAX_MS);
        self.next_prune_ms = now.saturating_add(interval);
        self.conn.execute_batch("SAVEPOINT prune")?;
        let res = self
            .conn
            .prepare_cached(PRUNE_DEDUP)
            .and_then(|mut stmt| stmt.execute(params![cutoff, limit]));
        match res {
            Ok(n) => {
                if n > 0 {
                    debug!(rows = n, "pruned expired dedup records");
                }
                if i64::try_from(n).unwrap_or(i64::MAX) < limit {
                    self.dedup_since_prune = 0;
                } else {
                    // Backlog (e.g. after a restart): continue next batch.
                    self.next_prune_ms = now;
                }
                self.conn.execute_batch("RELEASE prune")
            }
            Err(e) if !self.conn.is_autocommit() => {
                warn!(error = %e, "pruning dedup records failed; will retry");
                self.conn.execute_batch("ROLLBACK TO prune; RELEASE prune")
            }
            Err(e) => Err(e),
        }
    }
}

/// Newest id of `queue`, from the cache or the primary key (0 when empty).
fn head_of(conn: &Connection, cache: &mut Cache, queue: QueueId) -> rusqlite::Result<i64> {
    if let Some(head) = cache.heads.get(&queue) {
        return Ok(*head);
    }
    let head: Option<i64> = conn
        .prepare_cached(SELECT_HEAD)?
        .query_row(params![queue.appid, queue.uid], |r| r.get(0))?;
    let head = head.unwrap_or(0);
    cache.heads.insert(queue, head);
    Ok(head)
}

/// Places and inserts one request's entries, unless its dedup key is a
/// recent duplicate (then nothing is written and the original ids return).
///
/// The dedup row is inserted first with `ON CONFLICT DO NOTHING`, which both
/// checks and claims the key in a single B-tree descent on the common (new
/// key) path; the existing row is only read back on a conflict.
fn append(
    conn: &Connection,
    cache: &mut Cache,
    req: &AppendRequest,
    now: i64,
    window_ms: i64,
) -> rusqlite::Result<Result<Done, StoreError>> {
    if req.entries.is_empty() {
        return Ok(Err(StoreError::Invalid(
            "append request without entries".into(),
        )));
    }
    // Claim ids by advancing the cached heads; undone below on a duplicate.
    let mut ids = Vec::with_capacity(req.entries.len());
    for entry in &req.entries {
        let id = head_of(conn, cache, entry.queue)? + 1;
        cache.heads.insert(entry.queue, id);
        ids.push(id);
    }
    if let Some(d) = &req.dedup {
        let k = &d.key;
        let blob = record::encode(&ids, d.digest, d.origin, false);
        let inserted = conn.prepare_cached(INSERT_DEDUP)?.execute(params![
            k.appid,
            k.sender,
            k.device_id,
            k.client_msgid,
            k.receiver,
            blob,
            now
        ])?;
        if inserted == 0 {
            let (old, created): (Vec<u8>, i64) = conn.prepare_cached(SELECT_DEDUP)?.query_row(
                params![k.appid, k.sender, k.device_id, k.client_msgid, k.receiver],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if let Some(r) = record::decode(&old)
                && !d.replace
                && r.digest == d.digest
                && r.ids.len() == ids.len()
                && now.saturating_sub(created) < window_ms
            {
                // Give the claimed ids back, newest first, so each queue
                // returns to its previous head.
                for (entry, id) in req.entries.iter().zip(&ids).rev() {
                    cache.heads.insert(entry.queue, id - 1);
                }
                return Ok(Ok(Done::Append(AppendOutcome {
                    placed: r.ids.into_iter().map(placed).collect(),
                    duplicate: true,
                    earlier: Some(Earlier {
                        origin: r.origin,
                        unconfirmed: r.marked,
                    }),
                })));
            }
            // Expired, other content, unreadable or replaced: reuse the row.
            conn.prepare_cached(UPDATE_DEDUP)?.execute(params![
                k.appid,
                k.sender,
                k.device_id,
                k.client_msgid,
                k.receiver,
                blob,
                now
            ])?;
        }
    }
    let mut insert = conn.prepare_cached(INSERT_MESSAGE)?;
    for (entry, id) in req.entries.iter().zip(&ids) {
        insert.execute(params![
            entry.queue.appid,
            entry.queue.uid,
            id,
            entry.cmd,
            entry.flag,
            entry.device_id,
            &entry.body[..]
        ])?;
    }
    Ok(Ok(Done::Append(AppendOutcome {
        placed: ids.into_iter().map(placed).collect(),
        duplicate: false,
        earlier: None,
    })))
}

/// Sets the "ACK unconfirmed" mark of `k`'s record, if it has one.
fn mark(conn: &Connection, k: &DedupKey) -> rusqlite::Result<()> {
    let key = params![k.appid, k.sender, k.device_id, k.client_msgid, k.receiver];
    let old: Option<(Vec<u8>, i64)> = conn
        .prepare_cached(SELECT_DEDUP)?
        .query_row(key, |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some(v) = old.and_then(|(v, _)| record::marked(&v)) {
        conn.prepare_cached(MARK_DEDUP)?.execute(params![
            k.appid,
            k.sender,
            k.device_id,
            k.client_msgid,
            k.receiver,
            v
        ])?;
    }
    Ok(())
}

/// Existing number of a device, or the next free one. Allocation happens
/// only here, on the single writer thread, so one device can never get two.
fn device_number(
    conn: &Connection,
    cache: &mut Cache,
    device_id: &str,
    platform: u8,
) -> rusqlite::Result<Result<Done, StoreError>> {
    let existing: Option<i64> = conn
        .prepare_cached(SELECT_DEVICE)?
        .query_row(params![device_id, platform], |r| r.get(0))
        .optional()?;
    if let Some(n) = existing {
        return Ok(Ok(Done::Number(n)));
    }
    let next = match cache.next_device {
        Some(n) => n,
        None => {
            let max: i64 = conn
                .prepare_cached(SELECT_MAX_DEVICE)?
                .query_row([], |r| r.get(0))?;
            max + 1
        }
    };
    conn.prepare_cached(INSERT_DEVICE)?
        .execute(params![device_id, platform, next])?;
    cache.next_device = Some(next + 1);
    Ok(Ok(Done::Number(next)))
}

/// Ids are contiguous per queue, so the previous id is always `id - 1`.
fn placed(msgid: i64) -> Placed {
    Placed {
        msgid,
        prev: msgid - 1,
    }
}

/// Wall-clock milliseconds since the epoch: dedup ages must survive restarts,
/// which a monotonic clock would not.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placed_prev_is_previous_id() {
        assert_eq!(placed(1), Placed { msgid: 1, prev: 0 });
        assert_eq!(placed(7), Placed { msgid: 7, prev: 6 });
    }
}
