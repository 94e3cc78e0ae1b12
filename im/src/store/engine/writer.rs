//! The writer thread: places requests into write batches, pipelined with the
//! committer thread (see [`super::commit`]).
//!
//! All writes go through this one thread, so ids are handed out from an
//! in-memory head cache and dedup keys are checked against an in-memory index
//! without races. Requests are applied, as they arrive, to the batch being
//! built; the moment the committer is idle that batch is handed over, and
//! everything arriving while it syncs goes into the next one. So one batch
//! syncs while the next is prepared, and a request waits for at most the
//! batch in flight plus its own.
//!
//! The committer applies a batch only after its sync, so the database lags
//! behind this thread by at most the batch in flight: every read the writer
//! does (heads, dedup records, device numbers) first looks at what the
//! building batch and the batch in flight wrote.
//!
//! When a batch fails, every request in it gets an error and the writer
//! recovers as if the process had crashed: it drops the database, reopens it
//! from disk and rebuilds its caches from what is really there (so ids stay
//! contiguous), then places the requests of the batch it was building again.
//! A write whose sync failed may still have reached the disk; it then
//! survives the reopen although its caller saw an error, exactly as after a
//! crash between sync and reply: a resend with the same dedup key is answered
//! as a duplicate with the original ids.

use super::commit::{Outcome, Prepared};
use super::dedup::{self, BatchRef, DedupIndex, DedupRecord, Slot};
use super::kv::{Kv, Order, Space, Write};
use super::layout::{self, dec_value};
use super::message::{Done, Msg, Op, Reply};
use super::{EngineOptions, EngineState};
use crate::store::record::Record;
use crate::store::{AppendOutcome, AppendRequest, DedupKey, Earlier, Placed, QueueId, StoreError};
use ferry_common::clock::now_ms;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

/// Forget the cached queue heads when this many queues are cached, so a
/// long-running node touching millions of queues keeps bounded memory (a
/// head is reloaded with one reverse seek on next touch).
const HEADS_CACHE_MAX: usize = 1 << 20;

/// Expired dedup batches deleted per prune: a fixed floor plus twice the
/// batches written since the last prune, so pruning always outpaces inserts
/// and a backlog (after a restart) is spread over several batches.
const PRUNE_FLOOR: usize = 256;

/// Requests with at least this many entries (group fan-outs, not a peer
/// message's two copies) store a shared body once: reading a referenced body
/// costs a point read, which a 2-entry request does not save enough to pay.
const BODY_REF_ENTRIES: usize = 3;

/// Bodies shorter than this are stored in every entry (a reference is a key
/// of up to 28 bytes plus a tag byte).
const BODY_REF_MIN: usize = 48;

/// Longest time between two prunes.
const PRUNE_INTERVAL_MAX_MS: i64 = 100;

/// How long a recovery waits for in-flight reads to release the old database
/// (fjall holds a file lock until its last handle is dropped).
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// Writer state that is only valid while it matches the database; all of it
/// is rebuilt when a batch fails.
#[derive(Default)]
struct Cache {
    /// Newest id per queue, so an append needs no read.
    heads: HashMap<QueueId, i64>,
    /// Sync keys (`meta` key → value) as the writer last wrote or read them,
    /// so a raise that is not an increase writes nothing.
    sync_keys: HashMap<Vec<u8>, i64>,
    /// Next device number to hand out.
    next_device: Option<i64>,
}

/// Writes of one batch that later requests must see before it is applied.
#[derive(Default)]
struct Written {
    at: Option<BatchRef>,
    dedup: HashMap<DedupKey, DedupRecord>,
    meta: HashMap<Vec<u8>, i64>,
}

/// The batch being built.
struct Building<K: Kv> {
    jobs: Vec<(Op, Reply)>,
    results: Vec<Result<Done, StoreError>>,
    now: i64,
    written: Written,
    /// New messages, staged in key order at hand-over: fjall applies a batch
    /// to its memtable (a skiplist) in the order given, and consecutive keys
    /// find the search path of the previous insert still in the CPU cache.
    messages: Vec<(layout::Key, std::ops::Range<usize>)>,
    /// The encoded values of `messages`, back to back.
    values: Vec<u8>,
    _kv: std::marker::PhantomData<K>,
}

impl<K: Kv> Building<K> {
    fn new(now: i64, at: BatchRef) -> Self {
        Building {
            jobs: Vec::new(),
            results: Vec::new(),
            now,
            written: Written {
                at: Some(at),
                ..Written::default()
            },
            messages: Vec::new(),
            values: Vec::new(),
            _kv: std::marker::PhantomData,
        }
    }
}

/// A dedup record found for the key being appended.
struct Found {
    at: BatchRef,
    record: DedupRecord,
    slot: Slot,
}

/// Owns the write path; see the module docs.
pub(crate) struct Writer<K: Kv> {
    dir: PathBuf,
    config: K::Config,
    /// `None` after a failed reopen: the next request tries again.
    db: Option<Arc<K>>,
    rx: mpsc::Receiver<Msg>,
    shared: Arc<EngineState<K>>,
    batch_max: usize,
    dedup_window_ms: i64,
    cache: Cache,
    dedup: DedupIndex,
    /// Clock of the last batch: batch times never go backwards, so dedup
    /// records are created in key order and the prune cursor stays valid.
    last_now: i64,
    /// Number of the next batch (part of its dedup record's key).
    next_batch: i64,
    /// Wall-clock ms at or after which the next batch prunes dedup records.
    next_prune_ms: i64,
    /// Dedup batches written since the last prune caught up.
    batches_since_prune: usize,
    /// Positions handed out by [`Op::AppendOrdered`].
    streams: crate::store::streams::Streams,
    building: Option<Building<K>>,
    /// A [`Msg::FlushSyncKeys`] arrived since the last hand-over.
    flush_requested: bool,
    /// What the batch at the committer wrote, until it reports back.
    inflight: Option<Written>,
    to_committer: Option<std_mpsc::SyncSender<Prepared<K>>>,
    from_committer: std_mpsc::Receiver<Outcome>,
    committer: Option<std::thread::JoinHandle<()>>,
}

impl<K: Kv> Writer<K> {
    /// Takes over the opened database, loads the dedup index from it and
    /// starts the committer thread.
    pub(crate) fn new(
        dir: PathBuf,
        config: K::Config,
        opts: &EngineOptions,
        db: Arc<K>,
        rx: mpsc::Receiver<Msg>,
        wake: mpsc::WeakSender<Msg>,
        shared: Arc<EngineState<K>>,
    ) -> Result<Self, StoreError> {
        let (to_committer, committer_rx) = std_mpsc::sync_channel(1);
        let (done_tx, from_committer) = std_mpsc::channel();
        let committer = super::commit::spawn(committer_rx, done_tx, wake, Arc::clone(&shared))?;
        let mut writer = Writer {
            dir,
            config,
            batch_max: opts.batch_max.max(1),
            dedup_window_ms: i64::try_from(opts.dedup_window.as_millis()).unwrap_or(i64::MAX),
            db: None,
            rx,
            shared,
            cache: Cache::default(),
            dedup: DedupIndex::new(),
            last_now: 0,
            next_batch: 1,
            next_prune_ms: 0,
            batches_since_prune: 0,
            streams: Default::default(),
            building: None,
            flush_requested: false,
            inflight: None,
            to_committer: Some(to_committer),
            from_committer,
            committer: Some(committer),
        };
        writer.load(&db)?;
        writer.db = Some(db);
        Ok(writer)
    }

    /// Rebuilds the dedup index from the `Dedup` space.
    fn load(&mut self, db: &K) -> Result<(), StoreError> {
        let started = Instant::now();
        let mut index = DedupIndex::new();
        let mut last_now = self.last_now;
        let mut next_batch = self.next_batch;
        db.scan(
            Space::Dedup,
            &[],
            &layout::KEY_MAX,
            Order::Forward,
            &mut |key, value| {
                let (created, batch) = layout::parse_dedup_batch_key(key)
                    .ok_or_else(|| StoreError::Backend("corrupt dedup key in store".into()))?;
                let at = BatchRef { created, batch };
                for record in dedup::decode(value)? {
                    index.load(&record.key, at);
                }
                if index.cursor.is_empty() {
                    index.cursor = key.to_vec();
                }
                last_now = last_now.max(created);
                next_batch = next_batch.max(batch.saturating_add(1));
                Ok(true)
            },
        )?;
        self.dedup = index;
        self.last_now = last_now;
        self.next_batch = next_batch;
        self.batches_since_prune = 0;
        self.next_prune_ms = 0;
        debug!(
            records = self.dedup.len(),
            collided = self.dedup.collided.len(),
            elapsed = ?started.elapsed(),
            "dedup index loaded"
        );
        Ok(())
    }

    /// Thread body: build, hand over, repeat, until closed or every sender
    /// is gone; then finish what is in flight and release the database.
    pub(crate) fn run(mut self) {
        let mut close_acks: Vec<oneshot::Sender<()>> = Vec::new();
        let mut open = true;
        let mut final_flush = false;
        loop {
            while let Ok(outcome) = self.from_committer.try_recv() {
                self.finished(outcome);
            }
            if self.inflight.is_none() {
                // Everything already queued joins the batch.
                while open && self.building_len() < self.batch_max {
                    match self.rx.try_recv() {
                        Ok(msg) => self.handle(msg, &mut close_acks),
                        Err(_) => break,
                    }
                }
                let flush_keys = !open && !final_flush && self.shared.sync_keys.has_any();
                let flush_now = self.flush_requested && self.shared.sync_keys.is_dirty();
                if self.building_len() > 0 || flush_now || flush_keys {
                    final_flush |= !open;
                    self.hand_over();
                    continue;
                }
                if !open {
                    break;
                }
            } else if !open || self.building_len() >= self.batch_max {
                match self.from_committer.recv() {
                    Ok(outcome) => self.finished(outcome),
                    Err(_) => {
                        warn!("engine committer thread stopped");
                        self.inflight = None;
                    }
                }
                continue;
            }
            match self.rx.blocking_recv() {
                Some(msg) => self.handle(msg, &mut close_acks),
                // Closed (or every handle dropped) and drained.
                None => open = false,
            }
        }
        drop(self.to_committer.take());
        if let Some(c) = self.committer.take()
            && c.join().is_err()
        {
            warn!("engine committer thread panicked");
        }
        self.release_db();
        debug!("engine writer thread stopped");
        for ack in close_acks {
            let _ = ack.send(());
        }
    }

    fn building_len(&self) -> usize {
        self.building.as_ref().map_or(0, |b| b.jobs.len())
    }

    fn handle(&mut self, msg: Msg, close_acks: &mut Vec<oneshot::Sender<()>>) {
        match msg {
            Msg::Job { op, reply } => self.place(op, reply),
            Msg::Close(ack) => {
                // Buffered requests are still received (and written).
                self.rx.close();
                close_acks.push(ack);
            }
            Msg::Wake => {}
            Msg::FlushSyncKeys => self.flush_requested = true,
        }
    }

    /// Applies one request to the building batch.
    fn place(&mut self, op: Op, reply: Reply) {
        self.shared.placed.fetch_add(1, Ordering::Relaxed);
        let db = match self.database() {
            Ok(db) => db,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        if self.building.is_none() {
            let now = now_ms().max(self.last_now);
            self.last_now = now;
            let at = BatchRef {
                created: now,
                batch: self.next_batch,
            };
            self.next_batch += 1;
            self.building = Some(Building::new(now, at));
        }
        let Some(mut b) = self.building.take() else {
            return;
        };
        match self.apply_one(&db, &mut b, &op) {
            Ok(res) => {
                b.results.push(res);
                b.jobs.push((op, reply));
                self.building = Some(b);
            }
            Err(e) => {
                // A read failed: the batch is built on a state we cannot
                // trust. Fail it with this request and start over.
                warn!(error = %e, "engine read failed, reopening the store");
                let _ = reply.send(Err(StoreError::Backend(format!("write batch failed: {e}"))));
                self.abort(b, &e);
            }
        }
    }

    /// Fails every request of `b` with `e`, waits for the batch in flight and
    /// recovers.
    fn abort(&mut self, b: Building<K>, e: &StoreError) {
        while self.inflight.is_some() {
            match self.from_committer.recv() {
                Ok(outcome) => self.finished(outcome),
                Err(_) => self.inflight = None,
            }
        }
        fail_all(b, e);
        self.recover();
    }

    /// The open database, reopening it if a recovery left it closed.
    fn database(&mut self) -> Result<Arc<K>, StoreError> {
        if self.db.is_none() {
            self.reopen();
        }
        self.db
            .clone()
            .ok_or_else(|| StoreError::Backend("store unavailable: reopening it failed".into()))
    }

    /// The committer reported on the batch in flight.
    fn finished(&mut self, outcome: Outcome) {
        self.inflight = None;
        let Err(failed) = outcome else {
            return;
        };
        // The building batch was placed on top of the failed one: recover,
        // answer the failed requests, then place the building ones again on
        // what is really stored.
        let jobs = self.building.take().map(|b| b.jobs).unwrap_or_default();
        self.recover();
        failed.answer();
        for (op, reply) in jobs {
            self.place(op, reply);
        }
    }

    /// Stages the building batch (plus pending sync keys and a prune) and
    /// hands it to the idle committer.
    fn hand_over(&mut self) {
        let db = match self.database() {
            Ok(db) => db,
            Err(e) => {
                if let Some(b) = self.building.take() {
                    fail_all(b, &e);
                }
                return;
            }
        };
        let mut b = match self.building.take() {
            Some(b) => b,
            None => {
                let now = now_ms().max(self.last_now);
                self.last_now = now;
                // A batch of sync keys only: it writes no dedup record.
                Building::new(
                    now,
                    BatchRef {
                        created: now,
                        batch: 0,
                    },
                )
            }
        };
        self.flush_requested = false;
        let sync_keys = self.shared.sync_keys.take();
        let mut batch = db.batch(b.messages.len() + b.written.meta.len() + sync_keys.len() + 2);
        let staged = (|| {
            for (key, value) in &sync_keys {
                self.raise(&db, &mut b.written, key, *value)?;
            }
            b.messages
                .sort_unstable_by(|x, y| x.0.as_ref().cmp(y.0.as_ref()));
            for (key, range) in &b.messages {
                db.stage(
                    &mut batch,
                    Write::Put(Space::Messages, key, &b.values[range.clone()]),
                );
            }
            if let Some(at) = b.written.at
                && !b.written.dedup.is_empty()
            {
                let mut value = Vec::with_capacity(b.written.dedup.len() * 60);
                dedup::encode(b.written.dedup.values(), &mut value);
                db.stage(&mut batch, Write::Put(Space::Dedup, &at.key(), &value));
                self.batches_since_prune += 1;
            }
            for (key, value) in &b.written.meta {
                db.stage(
                    &mut batch,
                    Write::Put(Space::Meta, key, &layout::value_int(*value)),
                );
            }
            if b.now >= self.next_prune_ms {
                self.prune_dedup(&db, &mut batch, b.now)?;
            }
            Ok::<_, StoreError>(())
        })();
        if let Err(e) = staged {
            warn!(error = %e, "engine read failed, reopening the store");
            self.abort(b, &e);
            return;
        }
        self.trim_caches(&b);
        let requests = b.jobs.len();
        let replies = b
            .jobs
            .drain(..)
            .map(|(_, reply)| reply)
            .zip(b.results.drain(..))
            .collect();
        let prepared = Prepared {
            db,
            batch,
            replies,
            requests,
            sync_keys,
        };
        self.inflight = Some(std::mem::take(&mut b.written));
        let sent = self.to_committer.as_ref().map(|tx| tx.send(prepared));
        if !matches!(sent, Some(Ok(()))) {
            // The committer is gone (only while stopping): the replies were
            // dropped with the batch, so their callers see `Closed`.
            warn!("engine committer unavailable");
            self.inflight = None;
        }
    }

    /// Keeps the caches bounded; entries the batch being handed over wrote
    /// stay (the database does not have them yet).
    fn trim_caches(&mut self, b: &Building<K>) {
        if self.cache.heads.len() > HEADS_CACHE_MAX {
            let touched: HashSet<QueueId> = b
                .jobs
                .iter()
                .filter_map(|(op, _)| match op {
                    Op::Append(r) | Op::AppendOrdered(r, _) => Some(r.entries.iter()),
                    _ => None,
                })
                .flatten()
                .map(|e| e.queue)
                .collect();
            self.cache.heads.retain(|q, _| touched.contains(q));
        }
        if self.cache.sync_keys.len() > HEADS_CACHE_MAX {
            let meta = &b.written.meta;
            self.cache.sync_keys.retain(|k, _| meta.contains_key(k));
        }
    }

    /// One operation. The outer `Err` aborts the batch; the inner one
    /// refuses only this request.
    fn apply_one(
        &mut self,
        db: &K,
        b: &mut Building<K>,
        op: &Op,
    ) -> Result<Result<Done, StoreError>, StoreError> {
        match op {
            Op::Append(req) => self.append(db, b, req),
            Op::AppendOrdered(req, stream) => Ok(match self.append(db, b, req)? {
                Ok(Done::Append(out)) => Ok(Done::Ordered(out, self.streams.next(*stream))),
                other => other,
            }),
            Op::DeviceNumber {
                device_id,
                platform,
            } => self.device_number(db, b, device_id, *platform),
            Op::Mark(keys) => {
                for k in keys {
                    self.mark(db, b, k)?;
                }
                Ok(Ok(Done::Unit))
            }
            Op::RaiseDurable { key, value } => {
                self.raise(db, &mut b.written, key, *value)?;
                Ok(Ok(Done::Unit))
            }
            #[cfg(test)]
            Op::DedupIndexLen => Ok(Ok(Done::Number(self.dedup.len() as i64))),
        }
    }

    /// Places one request's entries, unless a recent record has its dedup
    /// key and digest and the request does not replace it (then nothing is
    /// written and the original ids return with the record's origin and
    /// mark).
    fn append(
        &mut self,
        db: &K,
        b: &mut Building<K>,
        req: &AppendRequest,
    ) -> Result<Result<Done, StoreError>, StoreError> {
        if req.entries.is_empty() {
            return Ok(Err(StoreError::Invalid(
                "append request without entries".into(),
            )));
        }
        if req.entries.iter().any(|e| e.cmd == layout::BODY_REF) {
            return Ok(Err(StoreError::Invalid(format!(
                "command {} cannot be stored",
                layout::BODY_REF
            ))));
        }
        let mut renewing = None;
        // Hashed once per request: both the lookup and the record need it.
        let fp = req.dedup.as_ref().map(|d| self.dedup.fingerprint(&d.key));
        if let (Some(d), Some(fp)) = (&req.dedup, fp)
            && let Some(found) = self.find_dedup(db, &b.written, &d.key, fp)?
        {
            let r = &found.record;
            if !d.replace
                && r.record.digest == d.digest
                && r.record.ids.len() == req.entries.len()
                && b.now.saturating_sub(r.created) < self.dedup_window_ms
            {
                return Ok(Ok(Done::Append(AppendOutcome {
                    placed: r.record.ids.iter().copied().map(placed).collect(),
                    duplicate: true,
                    earlier: Some(Earlier {
                        origin: r.record.origin,
                        unconfirmed: r.record.marked,
                    }),
                })));
            }
            // Expired, other content or replaced: the new record replaces it.
            renewing = Some(found.slot);
        }
        let mut ids = Vec::with_capacity(req.entries.len());
        // A fan-out's body is stored once, in its first entry; the others
        // refer to it (see `BODY_REF_MIN`).
        let mut body_at: Option<(layout::Key, &bytes::Bytes)> = None;
        for entry in &req.entries {
            let id = self.head_of(db, entry.queue)? + 1;
            self.cache.heads.insert(entry.queue, id);
            ids.push(id);
            let key = layout::message_key(entry.queue, id);
            let start = b.values.len();
            match body_at {
                Some((at, body)) if *body == entry.body => layout::message_ref_value(
                    &mut b.values,
                    entry.cmd,
                    entry.flag,
                    entry.device_id,
                    &at,
                ),
                _ => {
                    layout::message_value(
                        &mut b.values,
                        entry.cmd,
                        entry.flag,
                        entry.device_id,
                        &entry.body,
                    );
                    if body_at.is_none()
                        && req.entries.len() >= BODY_REF_ENTRIES
                        && entry.body.len() >= BODY_REF_MIN
                    {
                        body_at = Some((key, &entry.body));
                    }
                }
            }
            b.messages.push((key, start..b.values.len()));
        }
        if let (Some(d), Some(fp), Some(at)) = (&req.dedup, fp, b.written.at) {
            self.dedup.insert(&d.key, fp, at, renewing);
            b.written.dedup.insert(
                d.key,
                DedupRecord {
                    key: d.key,
                    created: b.now,
                    record: Record {
                        ids: ids.clone(),
                        digest: d.digest,
                        origin: d.origin,
                        marked: false,
                    },
                },
            );
        }
        Ok(Ok(Done::Append(AppendOutcome {
            placed: ids.into_iter().map(placed).collect(),
            duplicate: false,
            earlier: None,
        })))
    }

    /// Sets the mark of `k`'s record: a marked copy goes into this batch's
    /// record, keeping the original creation time (the window still counts
    /// from the send).
    fn mark(&mut self, db: &K, b: &mut Building<K>, k: &DedupKey) -> Result<(), StoreError> {
        let fp = self.dedup.fingerprint(k);
        let Some(found) = self.find_dedup(db, &b.written, k, fp)? else {
            return Ok(());
        };
        let Some(at) = b.written.at else {
            return Ok(());
        };
        let mut copy = found.record;
        copy.record.marked = true;
        self.dedup.insert(k, fp, at, Some(found.slot));
        b.written.dedup.insert(*k, copy);
        Ok(())
    }

    /// The newest stored record of `k`, if any (expired ones included).
    fn find_dedup(
        &self,
        db: &K,
        building: &Written,
        k: &DedupKey,
        fp: u64,
    ) -> Result<Option<Found>, StoreError> {
        let mut best: Option<Found> = None;
        let slots = [Slot::Live, Slot::Collided];
        for (at, slot) in self.dedup.candidates(k, fp).into_iter().zip(slots) {
            let Some(at) = at else { continue };
            if best.as_ref().is_some_and(|f| f.at >= at) {
                continue;
            }
            let record = if building.at == Some(at) {
                building.dedup.get(k).cloned()
            } else if let Some(w) = self.inflight.as_ref().filter(|w| w.at == Some(at)) {
                w.dedup.get(k).cloned()
            } else {
                match db.get(Space::Dedup, &at.key())? {
                    Some(v) => dedup::decode(&v)?.into_iter().find(|r| r.key == *k),
                    None => None,
                }
            };
            if let Some(record) = record {
                best = Some(Found { at, record, slot });
            }
        }
        Ok(best)
    }

    /// Existing number of a device, or the next free one. Allocation happens
    /// only here, on the single writer thread, so one device can never get two.
    fn device_number(
        &mut self,
        db: &K,
        b: &mut Building<K>,
        device_id: &str,
        platform: u8,
    ) -> Result<Result<Done, StoreError>, StoreError> {
        let key = layout::device_key(device_id, platform);
        if let Some(n) = self.read_int(db, &b.written, &key, "device")? {
            return Ok(Ok(Done::Number(n)));
        }
        let next = match self.cache.next_device {
            Some(n) => n,
            None => {
                self.read_int(db, &b.written, &layout::META_LAST_DEVICE, "device counter")?
                    .unwrap_or(0)
                    + 1
            }
        };
        b.written.meta.insert(key, next);
        b.written
            .meta
            .insert(layout::META_LAST_DEVICE.to_vec(), next);
        self.cache.next_device = Some(next + 1);
        Ok(Ok(Done::Number(next)))
    }

    /// An integer `meta` record as the building batch sees it.
    fn read_int(
        &self,
        db: &K,
        building: &Written,
        key: &[u8],
        what: &str,
    ) -> Result<Option<i64>, StoreError> {
        if let Some(v) = building.meta.get(key) {
            return Ok(Some(*v));
        }
        if let Some(v) = self.inflight.as_ref().and_then(|w| w.meta.get(key)) {
            return Ok(Some(*v));
        }
        match db.get(Space::Meta, key)? {
            Some(v) => dec_value(&v, what).map(Some),
            None => Ok(None),
        }
    }

    /// Writes `value` under `key` unless a larger or equal value is stored.
    fn raise(
        &mut self,
        db: &K,
        building: &mut Written,
        key: &[u8],
        value: i64,
    ) -> Result<(), StoreError> {
        let current = match self.cache.sync_keys.get(key) {
            Some(c) => Some(*c),
            None => self.read_int(db, building, key, "sync key")?,
        };
        match current {
            Some(c) if c >= value => {
                self.cache.sync_keys.insert(key.to_vec(), c);
            }
            _ => {
                self.cache.sync_keys.insert(key.to_vec(), value);
                building.meta.insert(key.to_vec(), value);
            }
        }
        Ok(())
    }

    /// Newest id of `queue`, from the cache or the queue's last key (0 if
    /// empty). Every queue the building batch or the batch in flight wrote
    /// is cached, so a read only happens for queues the database has right.
    fn head_of(&mut self, db: &K, queue: QueueId) -> Result<i64, StoreError> {
        if let Some(head) = self.cache.heads.get(&queue) {
            return Ok(*head);
        }
        let head = super::reader::head(db, queue)?;
        self.cache.heads.insert(queue, head);
        Ok(head)
    }

    /// Deletes a bounded number of dedup batches older than the window, in
    /// the batch being handed over (no extra sync), resuming at the cursor.
    fn prune_dedup(&mut self, db: &K, batch: &mut K::Batch, now: i64) -> Result<(), StoreError> {
        let cutoff = now.saturating_sub(self.dedup_window_ms);
        let limit = PRUNE_FLOOR.saturating_add(self.batches_since_prune.saturating_mul(2));
        let interval = (self.dedup_window_ms / 2).clamp(1, PRUNE_INTERVAL_MAX_MS);
        self.next_prune_ms = now.saturating_add(interval);
        let end = layout::dedup_time_prefix(cutoff);
        if self.dedup.cursor.as_slice() >= end.as_ref() {
            self.batches_since_prune = 0;
            return Ok(());
        }
        let mut expired: Vec<(Vec<u8>, Vec<DedupRecord>)> = Vec::new();
        db.scan(
            Space::Dedup,
            &self.dedup.cursor,
            &end,
            Order::Forward,
            &mut |key, value| {
                expired.push((key.to_vec(), dedup::decode(value)?));
                Ok(expired.len() < limit)
            },
        )?;
        let deleted = expired.len();
        if deleted > 0 {
            debug!(batches = deleted, "pruning expired dedup records");
        }
        for (key, records) in &expired {
            if let Some((created, n)) = layout::parse_dedup_batch_key(key) {
                let at = BatchRef { created, batch: n };
                for r in records {
                    self.dedup.forget(at, &r.key);
                }
            }
            db.stage(batch, Write::Delete(Space::Dedup, key));
        }
        match expired.pop() {
            Some((key, _)) if deleted >= limit => {
                // Backlog (e.g. after a restart): continue next batch.
                let mut cursor = key;
                cursor.push(0);
                self.dedup.cursor = cursor;
                self.next_prune_ms = now;
            }
            _ => {
                self.dedup.cursor = end.to_vec();
                self.batches_since_prune = 0;
            }
        }
        Ok(())
    }

    /// After a failed batch: drop every cache and the database, then reopen
    /// it from disk and reload the caches.
    fn recover(&mut self) {
        self.cache = Cache::default();
        self.dedup = DedupIndex::new();
        self.inflight = None;
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
                warn!("reads still hold the database; it closes when they finish");
            }
        }
    }

    /// Opens the database again and publishes it to readers; on failure the
    /// store stays unavailable until a later request retries.
    fn reopen(&mut self) {
        self.cache = Cache::default();
        let shared = Arc::clone(&self.shared);
        // Readers wait on this lock until the database is back.
        let mut slot = shared.db.write().unwrap_or_else(PoisonError::into_inner);
        let db = match super::open_kv::<K>(&self.dir, &self.config) {
            Ok(db) => Arc::new(db),
            Err(e) => {
                warn!(error = %e, "reopening the store failed; will retry");
                return;
            }
        };
        if let Err(e) = self.load(&db) {
            warn!(error = %e, "reloading the dedup index failed; will retry");
            return;
        }
        *slot = Some(Arc::clone(&db));
        self.db = Some(db);
        info!("store reopened after a failed batch");
    }
}

/// Fails every request of `b`; refusals keep their own error.
fn fail_all<K: Kv>(b: Building<K>, e: &StoreError) {
    let msg = format!("write batch failed: {e}");
    for ((_, reply), res) in b.jobs.into_iter().zip(b.results) {
        let err = match res {
            Err(StoreError::Invalid(why)) => StoreError::Invalid(why),
            _ => StoreError::Backend(msg.clone()),
        };
        let _ = reply.send(Err(err));
    }
}

/// Ids are contiguous per queue, so the previous id is always `id - 1`.
fn placed(msgid: i64) -> Placed {
    Placed {
        msgid,
        prev: msgid - 1,
    }
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
