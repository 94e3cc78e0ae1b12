//! The single writer thread and its group commit.
//!
//! All writes go through one OS thread, so ids can be handed out from an
//! in-memory head cache and dedup keys checked against an in-memory index
//! without races. It blocks for the first request, then takes everything
//! already queued (up to `batch_max`) into ONE fjall write batch, committed
//! with `PersistMode::SyncData`: the journal is `fdatasync`'d before the
//! batch is applied to the memtables, so readers never see a write that is
//! not durable and every batch costs exactly one sync. While that sync is in
//! flight new requests pile up in the channel and form the next batch.
//!
//! `fdatasync` rather than `fsync`: it writes the appended bytes and the
//! metadata needed to read them back (the file size), which is all a journal
//! append needs; `fsync` also forces timestamps (mtime) through the file
//! system's own journal on every batch. fjall itself syncs a journal fully
//! when it seals it and syncs the directory when it creates the next one.
//!
//! Each request's reply is sent only after the commit returned. When anything
//! in the batch fails, every request in it gets an error and the writer
//! recovers as if the process had crashed: it drops the database (fjall
//! refuses all writes after a failed journal write or fsync), reopens it from
//! disk and rebuilds its caches from what is really there, so ids stay
//! contiguous. A write whose fsync failed may still have reached the journal;
//! it then survives the reopen although its caller saw an error, exactly as
//! after a crash between fsync and reply: a resend with the same dedup key is
//! answered as a duplicate with the original ids.

use super::Shared;
use super::layout::{self, Db, backend, dec_value};
use crate::store::record::{self, Record};
use crate::store::{AppendOutcome, AppendRequest, DedupKey, Earlier, Placed, QueueId, StoreError};
use fjall::{OwnedWriteBatch, PersistMode};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

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
    DeviceNumber {
        device_id: String,
        platform: u8,
    },
    /// Sets the "ACK unconfirmed" mark of these records.
    Mark(Vec<DedupKey>),
    /// Test hook: make the next `n` batches fail before anything is written.
    #[cfg(test)]
    FailCommits(u32),
    /// Test hook: make the next `n` batches reach the journal (OS buffers,
    /// no fsync) and then fail, like an fsync error.
    #[cfg(test)]
    FailAfterWrite(u32),
    /// Test hook: keep the writer busy so the next requests form one batch.
    #[cfg(test)]
    Stall(Duration),
    /// Test hook: number of dedup records in the in-memory index.
    #[cfg(test)]
    DedupIndexLen,
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
    /// Finish everything queued, close the database, then signal.
    Close(oneshot::Sender<()>),
}

/// Forget the cached queue heads when this many queues are cached, so a
/// long-running node touching millions of queues keeps bounded memory (a
/// head is reloaded with one reverse seek on next touch).
const HEADS_CACHE_MAX: usize = 1 << 20;

/// Expired dedup records deleted per prune: a fixed floor plus twice the
/// records added since the last prune, so pruning always outpaces inserts and
/// a backlog (after a restart) is spread over several batches.
const PRUNE_FLOOR: usize = 256;

/// Longest time between two prunes.
const PRUNE_INTERVAL_MAX_MS: i64 = 100;

/// How long a recovery waits for in-flight reads to release the old database
/// (fjall holds a file lock until its last handle is dropped).
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// Writer-thread state that is only valid while it matches the database; all
/// of it is rebuilt when a batch fails.
#[derive(Default)]
struct Cache {
    /// Newest id per queue, so an append needs no read.
    heads: HashMap<QueueId, i64>,
    /// Sync keys and group sync keys (`meta` key → value) as the writer last
    /// read or wrote them, so a client's per-message sync-key ACK needs no
    /// keyspace read. Values written by the batch being built are in here
    /// before it commits; a failed batch drops the whole cache.
    sync_keys: HashMap<Vec<u8>, i64>,
    /// Next device number to hand out.
    next_device: Option<i64>,
}

/// Hasher for keys that already are uniformly random 64-bit fingerprints.
#[derive(Default)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// In-memory index of the `dedup` keyspace, loaded at open.
///
/// A record's key starts with its creation time, so finding it needs that
/// time: `live` maps a random 64-bit fingerprint of the [`DedupKey`] to it
/// (16 bytes per record instead of the 48-byte key). A fingerprint shared by
/// two live keys is detected when the record read misses; the later key then
/// goes to the exact `collided` map, so a collision never loses a record.
struct DedupIndex {
    seed: RandomState,
    live: HashMap<u64, i64, BuildHasherDefault<FingerprintHasher>>,
    collided: HashMap<DedupKey, i64>,
    /// Every `dedup` key below this one has been deleted (or is deleted by
    /// the batch being built): pruning resumes here instead of scanning over
    /// the tombstones of earlier prunes.
    cursor: Vec<u8>,
}

/// Where a dedup record was found.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Live,
    Collided,
    /// Written earlier in the batch being built.
    Pending,
}

/// A dedup record of the key being appended.
struct Found {
    created: i64,
    /// `None` for a record this version cannot read (older format).
    record: Option<Record>,
    slot: Slot,
}

impl DedupIndex {
    fn new() -> Self {
        DedupIndex {
            seed: RandomState::new(),
            live: HashMap::default(),
            collided: HashMap::new(),
            cursor: Vec::new(),
        }
    }

    fn fingerprint(&self, k: &DedupKey) -> u64 {
        self.seed.hash_one(k)
    }

    fn len(&self) -> usize {
        self.live.len() + self.collided.len()
    }

    /// Indexes a record read from disk; returns its creation time.
    fn load(&mut self, key: &[u8]) -> Result<i64, StoreError> {
        let (created, k) = layout::parse_dedup_key(key)
            .ok_or_else(|| StoreError::Backend("corrupt dedup key in store".into()))?;
        let fp = self.fingerprint(&k);
        match self.live.entry(fp) {
            Entry::Occupied(_) => {
                self.collided.insert(k, created);
            }
            Entry::Vacant(slot) => {
                slot.insert(created);
            }
        }
        Ok(created)
    }

    /// Forgets the record `(created, k)` that pruning deleted, unless the key
    /// was renewed since.
    fn forget(&mut self, created: i64, k: &DedupKey) {
        if self.collided.get(k) == Some(&created) {
            self.collided.remove(k);
            return;
        }
        let fp = self.fingerprint(k);
        if self.live.get(&fp) == Some(&created) {
            self.live.remove(&fp);
        }
    }
}

/// Writes of the batch being built that later requests of the same batch
/// must see (reads only see committed data). Written into the batch at the
/// end, so each key appears once in it.
#[derive(Default)]
struct Pending {
    /// Creation time and encoded record, written into the batch as is.
    dedup: HashMap<DedupKey, (i64, Vec<u8>)>,
    meta: HashMap<Vec<u8>, i64>,
    /// New messages, added to the batch in key order at the end: fjall
    /// applies a batch to its memtable (a skiplist) in the order given, and
    /// consecutive keys find the search path of the previous insert still
    /// in the CPU cache. A group message's copies are 100s of inserts into
    /// as many queues. (All entries of a batch share one sequence number and
    /// message keys are new and distinct, so the order changes nothing
    /// else.)
    messages: Vec<(layout::Key, std::ops::Range<usize>)>,
    /// The encoded values of `messages`, back to back (one buffer per
    /// batch, not one allocation per message).
    values: Vec<u8>,
}

/// Owns the write path; see the module docs.
pub(super) struct Writer {
    dir: PathBuf,
    opts: super::FjallOptions,
    /// `None` after a failed reopen: the next batch tries again.
    db: Option<Arc<Db>>,
    rx: mpsc::Receiver<Msg>,
    shared: Arc<Shared>,
    batch_max: usize,
    dedup_window_ms: i64,
    cache: Cache,
    dedup: DedupIndex,
    /// Clock of the last batch: batch times never go backwards, so dedup
    /// records are created in key order and the prune cursor stays valid.
    last_now: i64,
    /// Wall-clock ms at or after which the next batch prunes dedup records.
    next_prune_ms: i64,
    /// Dedup records written since the last prune caught up.
    dedup_since_prune: usize,
    /// Positions handed out by [`Op::AppendOrdered`].
    streams: crate::store::streams::Streams,
    #[cfg(test)]
    fail_commits: u32,
    #[cfg(test)]
    fail_after_write: u32,
}

impl Writer {
    /// Takes over the opened database and loads the dedup index from it.
    pub(super) fn new(
        dir: PathBuf,
        opts: super::FjallOptions,
        db: Arc<Db>,
        rx: mpsc::Receiver<Msg>,
        shared: Arc<Shared>,
    ) -> Result<Self, StoreError> {
        let mut writer = Writer {
            dir,
            batch_max: opts.batch_max.max(1),
            dedup_window_ms: i64::try_from(opts.dedup_window.as_millis()).unwrap_or(i64::MAX),
            opts,
            db: None,
            rx,
            shared,
            cache: Cache::default(),
            dedup: DedupIndex::new(),
            last_now: 0,
            next_prune_ms: 0,
            dedup_since_prune: 0,
            streams: Default::default(),
            #[cfg(test)]
            fail_commits: 0,
            #[cfg(test)]
            fail_after_write: 0,
        };
        writer.load(&db)?;
        writer.db = Some(db);
        Ok(writer)
    }

    /// Rebuilds the dedup index from the `dedup` keyspace.
    fn load(&mut self, db: &Db) -> Result<(), StoreError> {
        let started = Instant::now();
        self.dedup = DedupIndex::new();
        for guard in db.dedup.iter() {
            let key = guard.key().map_err(backend)?;
            let created = self.dedup.load(&key)?;
            if self.dedup.cursor.is_empty() {
                self.dedup.cursor = key.to_vec();
            }
            self.last_now = self.last_now.max(created);
        }
        self.dedup_since_prune = 0;
        self.next_prune_ms = 0;
        debug!(
            records = self.dedup.len(),
            collided = self.dedup.collided.len(),
            elapsed = ?started.elapsed(),
            "dedup index loaded"
        );
        Ok(())
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
        self.release_db();
        debug!("fjall writer thread stopped");
        for ack in close_acks {
            let _ = ack.send(());
        }
    }

    /// Runs `jobs` as one write batch and replies to each of them.
    fn commit_batch(&mut self, jobs: &mut Vec<(Op, Reply)>) {
        let now = now_ms().max(self.last_now);
        self.last_now = now;
        if self.cache.heads.len() > HEADS_CACHE_MAX {
            self.cache.heads.clear();
        }
        if self.cache.sync_keys.len() > HEADS_CACHE_MAX {
            self.cache.sync_keys.clear();
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
                warn!(error = %e, requests = jobs.len(), "fjall batch failed, reopening the store");
                self.recover();
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

    /// Builds and commits the whole batch. `Err` means the batch failed (it
    /// may or may not have reached the journal); per-request refusals are
    /// reported through `results`.
    fn apply(
        &mut self,
        jobs: &[(Op, Reply)],
        now: i64,
        results: &mut Vec<Result<Done, StoreError>>,
    ) -> Result<(), StoreError> {
        let db = match &self.db {
            Some(db) => Arc::clone(db),
            None => {
                self.reopen();
                self.db.clone().ok_or_else(|| {
                    StoreError::Backend("store unavailable: reopening it failed".into())
                })?
            }
        };
        #[cfg(test)]
        let inject_failure = if self.fail_commits > 0 {
            self.fail_commits -= 1;
            true
        } else {
            false
        };
        #[cfg(test)]
        let inject_fsync_failure = if self.fail_after_write > 0 {
            self.fail_after_write -= 1;
            true
        } else {
            false
        };
        let mut batch = OwnedWriteBatch::with_capacity(db.db.clone(), jobs.len() * 3);
        let mut pending = Pending::default();
        for (op, _) in jobs {
            if matches!(
                op,
                Op::Append(AppendRequest { dedup: Some(_), .. })
                    | Op::AppendOrdered(AppendRequest { dedup: Some(_), .. }, _)
            ) {
                self.dedup_since_prune += 1;
            }
            let res = self.apply_one(&db, &mut batch, &mut pending, op, now)?;
            results.push(res);
        }
        pending
            .messages
            .sort_unstable_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        for (key, value) in pending.messages {
            batch.insert(&db.messages, key, &pending.values[value]);
        }
        for (k, (created, ids)) in pending.dedup {
            batch.insert(&db.dedup, layout::dedup_key(created, &k), ids);
        }
        for (key, value) in pending.meta {
            batch.insert(&db.meta, key, layout::value_int(value));
        }
        if now >= self.next_prune_ms {
            self.prune_dedup(&db, &mut batch, now)?;
        }
        #[cfg(test)]
        if inject_failure {
            return Err(StoreError::Backend("injected commit failure".into()));
        }
        #[cfg(test)]
        if inject_fsync_failure {
            batch
                .durability(Some(PersistMode::Buffer))
                .commit()
                .map_err(backend)?;
            return Err(StoreError::Backend("injected fsync failure".into()));
        }
        // SyncData: the journal is flushed and fdatasync'd before the batch
        // becomes visible; one sync for the whole batch (see module docs).
        batch
            .durability(Some(PersistMode::SyncData))
            .commit()
            .map_err(backend)
    }

    /// One operation of the batch. The outer `Err` aborts the batch; the
    /// inner one refuses only this request.
    fn apply_one(
        &mut self,
        db: &Db,
        batch: &mut OwnedWriteBatch,
        pending: &mut Pending,
        op: &Op,
        now: i64,
    ) -> Result<Result<Done, StoreError>, StoreError> {
        match op {
            Op::Append(req) => self.append(db, batch, pending, req, now),
            Op::AppendOrdered(req, stream) => {
                Ok(match self.append(db, batch, pending, req, now)? {
                    Ok(Done::Append(out)) => Ok(Done::Ordered(out, self.streams.next(*stream))),
                    other => other,
                })
            }
            Op::SetSyncKey { queue, key } => {
                raise(
                    db,
                    &mut self.cache,
                    pending,
                    layout::sync_key_key(*queue),
                    *key,
                )?;
                Ok(Ok(Done::Unit))
            }
            Op::SetGroupSyncKey { queue, gid, key } => {
                let k = layout::group_sync_key_key(*queue, *gid);
                raise(db, &mut self.cache, pending, k, *key)?;
                Ok(Ok(Done::Unit))
            }
            Op::DeviceNumber {
                device_id,
                platform,
            } => self.device_number(db, pending, device_id, *platform),
            Op::Mark(keys) => {
                for k in keys {
                    self.mark(db, pending, k)?;
                }
                Ok(Ok(Done::Unit))
            }
            #[cfg(test)]
            Op::FailCommits(n) => {
                self.fail_commits = *n;
                Ok(Ok(Done::Unit))
            }
            #[cfg(test)]
            Op::FailAfterWrite(n) => {
                self.fail_after_write = *n;
                Ok(Ok(Done::Unit))
            }
            #[cfg(test)]
            Op::Stall(d) => {
                std::thread::sleep(*d);
                Ok(Ok(Done::Unit))
            }
            #[cfg(test)]
            Op::DedupIndexLen => Ok(Ok(Done::Number(self.dedup.len() as i64))),
        }
    }

    /// Places and writes one request's entries, unless a recent record has
    /// its dedup key and digest and the request does not replace it (then
    /// nothing is written and the original ids return with the record's
    /// origin and mark).
    fn append(
        &mut self,
        db: &Db,
        batch: &mut OwnedWriteBatch,
        pending: &mut Pending,
        req: &AppendRequest,
        now: i64,
    ) -> Result<Result<Done, StoreError>, StoreError> {
        if req.entries.is_empty() {
            return Ok(Err(StoreError::Invalid(
                "append request without entries".into(),
            )));
        }
        let mut previous = None;
        // Hashed once per request: both the lookup and the record need it.
        let fp = req.dedup.as_ref().map(|d| self.dedup.fingerprint(&d.key));
        if let (Some(d), Some(fp)) = (&req.dedup, fp)
            && let Some(found) = self.find_dedup(db, pending, &d.key, fp)?
        {
            if let Some(r) = &found.record
                && !d.replace
                && r.digest == d.digest
                && r.ids.len() == req.entries.len()
                && now.saturating_sub(found.created) < self.dedup_window_ms
            {
                return Ok(Ok(Done::Append(AppendOutcome {
                    placed: r.ids.iter().copied().map(placed).collect(),
                    duplicate: true,
                    earlier: Some(Earlier {
                        origin: r.origin,
                        unconfirmed: r.marked,
                    }),
                })));
            }
            // Expired, other content, unreadable or replaced: a new record.
            previous = Some(found);
        }
        let mut ids = Vec::with_capacity(req.entries.len());
        for entry in &req.entries {
            let id = head_of(db, &mut self.cache, entry.queue)? + 1;
            self.cache.heads.insert(entry.queue, id);
            ids.push(id);
            let start = pending.values.len();
            layout::message_value(
                &mut pending.values,
                entry.cmd,
                entry.flag,
                entry.device_id,
                &entry.body,
            );
            let value = start..pending.values.len();
            pending
                .messages
                .push((layout::message_key(entry.queue, id), value));
        }
        if let (Some(d), Some(fp)) = (&req.dedup, fp) {
            let value = record::encode(&ids, d.digest, d.origin, false);
            self.record_dedup(db, batch, pending, &d.key, fp, value, now, previous);
        }
        Ok(Ok(Done::Append(AppendOutcome {
            placed: ids.into_iter().map(placed).collect(),
            duplicate: false,
            earlier: None,
        })))
    }

    /// Sets the mark of `k`'s record, keeping its creation time (so the
    /// window still counts from the send).
    fn mark(&mut self, db: &Db, pending: &mut Pending, k: &DedupKey) -> Result<(), StoreError> {
        let fp = self.dedup.fingerprint(k);
        let Some(found) = self.find_dedup(db, pending, k, fp)? else {
            return Ok(());
        };
        let Some(r) = found.record else {
            return Ok(());
        };
        let value = record::encode(&r.ids, r.digest, r.origin, true);
        pending.dedup.insert(*k, (found.created, value));
        Ok(())
    }

    /// The stored record of `k`, if any (expired ones included).
    fn find_dedup(
        &self,
        db: &Db,
        pending: &Pending,
        k: &DedupKey,
        fp: u64,
    ) -> Result<Option<Found>, StoreError> {
        if let Some((created, v)) = pending.dedup.get(k) {
            return Ok(Some(Found {
                created: *created,
                record: record::decode(v),
                slot: Slot::Pending,
            }));
        }
        let candidates = [
            (self.dedup.live.get(&fp), Slot::Live),
            (self.dedup.collided.get(k), Slot::Collided),
        ];
        for (created, slot) in candidates {
            let Some(&created) = created else { continue };
            if let Some(v) = db
                .dedup
                .get(layout::dedup_key(created, k))
                .map_err(backend)?
            {
                return Ok(Some(Found {
                    created,
                    record: record::decode(&v),
                    slot,
                }));
            }
        }
        Ok(None)
    }

    /// Stores `k → value` created `now`, replacing an earlier record.
    #[allow(clippy::too_many_arguments)]
    fn record_dedup(
        &mut self,
        db: &Db,
        batch: &mut OwnedWriteBatch,
        pending: &mut Pending,
        k: &DedupKey,
        fp: u64,
        value: Vec<u8>,
        now: i64,
        previous: Option<Found>,
    ) {
        match previous.as_ref().map(|f| f.slot) {
            Some(Slot::Live) => {
                self.dedup.live.insert(fp, now);
            }
            Some(Slot::Collided) => {
                self.dedup.collided.insert(*k, now);
            }
            Some(Slot::Pending) => {}
            None => {
                match self.dedup.live.entry(fp) {
                    Entry::Occupied(_) => {
                        // The fingerprint belongs to another live key.
                        self.dedup.collided.insert(*k, now);
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(now);
                    }
                }
            }
        }
        if let Some(prev) = previous
            && prev.slot != Slot::Pending
            && prev.created != now
        {
            batch.remove(&db.dedup, layout::dedup_key(prev.created, k));
        }
        pending.dedup.insert(*k, (now, value));
    }

    /// Existing number of a device, or the next free one. Allocation happens
    /// only here, on the single writer thread, so one device can never get two.
    fn device_number(
        &mut self,
        db: &Db,
        pending: &mut Pending,
        device_id: &str,
        platform: u8,
    ) -> Result<Result<Done, StoreError>, StoreError> {
        let key = layout::device_key(device_id, platform);
        if let Some(n) = read_int(db, pending, &key, "device")? {
            return Ok(Ok(Done::Number(n)));
        }
        let next = match self.cache.next_device {
            Some(n) => n,
            None => {
                read_int(db, pending, &layout::META_LAST_DEVICE, "device counter")?.unwrap_or(0) + 1
            }
        };
        pending.meta.insert(key, next);
        pending.meta.insert(layout::META_LAST_DEVICE.to_vec(), next);
        self.cache.next_device = Some(next + 1);
        Ok(Ok(Done::Number(next)))
    }

    /// Deletes a bounded number of dedup records older than the window, in
    /// the batch being built (no extra fsync), resuming at the cursor.
    fn prune_dedup(
        &mut self,
        db: &Db,
        batch: &mut OwnedWriteBatch,
        now: i64,
    ) -> Result<(), StoreError> {
        let cutoff = now.saturating_sub(self.dedup_window_ms);
        let limit = PRUNE_FLOOR.saturating_add(self.dedup_since_prune.saturating_mul(2));
        let interval = (self.dedup_window_ms / 2).clamp(1, PRUNE_INTERVAL_MAX_MS);
        self.next_prune_ms = now.saturating_add(interval);
        let end = layout::dedup_time_prefix(cutoff);
        if self.dedup.cursor.as_slice() >= end.as_ref() {
            self.dedup_since_prune = 0;
            return Ok(());
        }
        let mut deleted = 0;
        let mut last = None;
        for guard in db
            .dedup
            .range(self.dedup.cursor.as_slice()..end.as_ref())
            .take(limit)
        {
            let key = guard.key().map_err(backend)?;
            if let Some((created, k)) = layout::parse_dedup_key(&key) {
                self.dedup.forget(created, &k);
            }
            batch.remove(&db.dedup, key.clone());
            deleted += 1;
            last = Some(key);
        }
        if deleted > 0 {
            debug!(records = deleted, "pruning expired dedup records");
        }
        match last {
            Some(key) if deleted >= limit => {
                // Backlog (e.g. after a restart): continue next batch.
                let mut cursor = key.to_vec();
                cursor.push(0);
                self.dedup.cursor = cursor;
                self.next_prune_ms = now;
            }
            _ => {
                self.dedup.cursor = end.to_vec();
                self.dedup_since_prune = 0;
            }
        }
        Ok(())
    }

    /// After a failed batch: drop every cache and the database, then reopen
    /// it from disk (journal recovery) and reload the caches.
    fn recover(&mut self) {
        self.cache = Cache::default();
        self.dedup = DedupIndex::new();
        self.release_db();
        self.reopen();
    }

    /// Takes the database away from readers and waits (bounded) until the
    /// last in-flight read released it, so it is closed when this returns.
    fn release_db(&mut self) {
        let old = self
            .shared
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(self.db.take());
        if let Some(old) = old {
            let deadline = Instant::now() + RELEASE_WAIT;
            while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if Arc::strong_count(&old) > 1 {
                warn!("reads still hold the fjall database; it closes when they finish");
            }
        }
    }

    /// Opens the database again and publishes it to readers; on failure the
    /// store stays unavailable until a later batch retries.
    fn reopen(&mut self) {
        self.cache = Cache::default();
        let shared = Arc::clone(&self.shared);
        // Readers wait on this lock until the database is back.
        let mut slot = shared.db.write().unwrap_or_else(PoisonError::into_inner);
        let db = match layout::open(&self.dir, &self.opts) {
            Ok(db) => Arc::new(db),
            Err(e) => {
                warn!(error = %e, "reopening the fjall store failed; will retry");
                return;
            }
        };
        if let Err(e) = self.load(&db) {
            warn!(error = %e, "reloading the dedup index failed; will retry");
            return;
        }
        *slot = Some(Arc::clone(&db));
        self.db = Some(db);
        info!("fjall store reopened after a failed batch");
    }
}

/// Newest id of `queue`, from the cache or the queue's last key (0 if empty).
fn head_of(db: &Db, cache: &mut Cache, queue: QueueId) -> Result<i64, StoreError> {
    if let Some(head) = cache.heads.get(&queue) {
        return Ok(*head);
    }
    let head = match db.messages.prefix(layout::queue_prefix(queue)).next_back() {
        Some(guard) => layout::message_id(&guard.key().map_err(backend)?)?,
        None => 0,
    };
    cache.heads.insert(queue, head);
    Ok(head)
}

/// An integer `meta` record as the batch being built sees it.
fn read_int(db: &Db, pending: &Pending, key: &[u8], what: &str) -> Result<Option<i64>, StoreError> {
    if let Some(v) = pending.meta.get(key) {
        return Ok(Some(*v));
    }
    match db.meta.get(key).map_err(backend)? {
        Some(v) => dec_value(&v, what).map(Some),
        None => Ok(None),
    }
}

/// Stores `value` under `key` unless a larger or equal value is stored.
/// The current value comes from the cache (which includes this batch's
/// writes); only the first touch of a key since open or recovery reads it.
fn raise(
    db: &Db,
    cache: &mut Cache,
    pending: &mut Pending,
    key: Vec<u8>,
    value: i64,
) -> Result<(), StoreError> {
    let current = match cache.sync_keys.get(&key) {
        Some(c) => Some(*c),
        None => read_int(db, pending, &key, "sync key")?,
    };
    if current.is_none_or(|c| value > c) {
        cache.sync_keys.insert(key.clone(), value);
        pending.meta.insert(key, value);
    } else if let Some(c) = current {
        cache.sync_keys.entry(key).or_insert(c);
    }
    Ok(())
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

    #[test]
    fn fingerprint_collisions_go_to_the_exact_map() {
        let mut index = DedupIndex::new();
        let k = |client_msgid| DedupKey {
            appid: 1,
            sender: 2,
            device_id: 3,
            client_msgid,
            receiver: 4,
        };
        index.load(&layout::dedup_key(10, &k(1))).expect("load");
        // Simulate a second key with the same fingerprint by loading the
        // same key's fingerprint slot again under a different key.
        let fp = index.fingerprint(&k(2));
        index.live.insert(fp, 11);
        index.load(&layout::dedup_key(12, &k(2))).expect("load");
        assert_eq!(index.collided.get(&k(2)), Some(&12));
        index.forget(12, &k(2));
        assert!(index.collided.is_empty());
        assert_eq!(index.live.get(&fp), Some(&11));
        index.forget(11, &k(2));
        assert_eq!(index.len(), 1);
    }
}
