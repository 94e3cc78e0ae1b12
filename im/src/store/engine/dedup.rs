//! Idempotency records: which ids one client send got, so a resend after a
//! lost ACK is answered with them instead of being stored again.
//!
//! A write batch stores the records of all its requests as ONE value in the
//! `Dedup` space (key `created_ms | batch`), so a peer message costs its two
//! queue entries plus a share of one record per batch, and pruning deletes one
//! key per expired batch. The writer keeps an in-memory index from each
//! [`DedupKey`] to the batch that holds its record; a lookup that hits reads
//! and parses that batch's value (resends are rare, new keys miss the index).

use super::layout;
use crate::store::record::{self, Record};
use crate::store::{DedupKey, StoreError};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

/// One request's record: its key, when the send was first written (the
/// window counts from there, also for a copy rewritten by a mark) and the
/// shared [`Record`] (placed ids, content digest, origin, mark).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DedupRecord {
    pub(crate) key: DedupKey,
    pub(crate) created: i64,
    pub(crate) record: Record,
}

/// The batch holding a record: its creation time and batch number (the
/// record's key in the `Dedup` space).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct BatchRef {
    pub(crate) created: i64,
    pub(crate) batch: i64,
}

impl BatchRef {
    pub(crate) fn key(&self) -> layout::Key {
        layout::dedup_batch_key(self.created, self.batch)
    }
}

/// Appends the encoding of `records` to `out`: per record the five key
/// integers and the creation time (i64), then the length (u32) and bytes of
/// the [`record::encode`]d record, all little-endian.
pub(crate) fn encode<'a>(records: impl Iterator<Item = &'a DedupRecord>, out: &mut Vec<u8>) {
    for r in records {
        let k = &r.key;
        for v in [
            k.appid,
            k.sender,
            k.device_id,
            k.client_msgid,
            k.receiver,
            r.created,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let rec = &r.record;
        let body = record::encode(&rec.ids, rec.digest, rec.origin, rec.marked);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
    }
}

/// The records of one batch value; corruption is an error, not a panic.
pub(crate) fn decode(mut v: &[u8]) -> Result<Vec<DedupRecord>, StoreError> {
    fn int(v: &mut &[u8]) -> Option<i64> {
        let (head, rest) = v.split_first_chunk::<8>()?;
        *v = rest;
        Some(i64::from_le_bytes(*head))
    }
    let corrupt = || StoreError::Backend("corrupt dedup record in store".into());
    let mut out = Vec::new();
    while !v.is_empty() {
        let mut k = [0i64; 6];
        for slot in &mut k {
            *slot = int(&mut v).ok_or_else(corrupt)?;
        }
        let (n, rest) = v.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let n = u32::from_le_bytes(*n) as usize;
        let (body, rest) = rest.split_at_checked(n).ok_or_else(corrupt)?;
        v = rest;
        let record = record::decode(body).ok_or_else(corrupt)?;
        out.push(DedupRecord {
            key: DedupKey {
                appid: k[0],
                sender: k[1],
                device_id: k[2],
                client_msgid: k[3],
                receiver: k[4],
            },
            created: k[5],
            record,
        });
    }
    Ok(out)
}

/// Hasher for keys that already are uniformly random 64-bit fingerprints.
#[derive(Default)]
pub(crate) struct FingerprintHasher(u64);

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

/// In-memory index of the `Dedup` space, loaded at open.
///
/// `live` maps a random 64-bit fingerprint of the [`DedupKey`] to its batch
/// (24 bytes per record instead of the 40-byte key). A fingerprint shared by
/// two live keys is detected when the batch read does not hold the key; the
/// later key then goes to the exact `collided` map, so a collision never
/// loses a record.
pub(crate) struct DedupIndex {
    seed: RandomState,
    pub(crate) live: HashMap<u64, BatchRef, BuildHasherDefault<FingerprintHasher>>,
    pub(crate) collided: HashMap<DedupKey, BatchRef>,
    /// Every `Dedup` key below this one has been deleted (or is deleted by
    /// the batch being built): pruning resumes here instead of scanning over
    /// the tombstones of earlier prunes.
    pub(crate) cursor: Vec<u8>,
}

impl DedupIndex {
    pub(crate) fn new() -> Self {
        DedupIndex {
            seed: RandomState::new(),
            live: HashMap::default(),
            collided: HashMap::new(),
            cursor: Vec::new(),
        }
    }

    pub(crate) fn fingerprint(&self, k: &DedupKey) -> u64 {
        self.seed.hash_one(k)
    }

    pub(crate) fn len(&self) -> usize {
        self.live.len() + self.collided.len()
    }

    /// The batches that may hold `k`'s record (newest decides).
    pub(crate) fn candidates(&self, k: &DedupKey, fp: u64) -> [Option<BatchRef>; 2] {
        [self.live.get(&fp).copied(), self.collided.get(k).copied()]
    }

    /// Points `k` at `at`. `renewing` says which slot held `k`'s previous
    /// (expired) record, if any; a new key whose fingerprint belongs to
    /// another live key goes to the exact map.
    pub(crate) fn insert(&mut self, k: &DedupKey, fp: u64, at: BatchRef, renewing: Option<Slot>) {
        match renewing {
            Some(Slot::Live) => {
                self.live.insert(fp, at);
            }
            Some(Slot::Collided) => {
                self.collided.insert(*k, at);
            }
            None => match self.live.entry(fp) {
                Entry::Occupied(_) => {
                    self.collided.insert(*k, at);
                }
                Entry::Vacant(slot) => {
                    slot.insert(at);
                }
            },
        }
    }

    /// Indexes a record read from disk at open (batches come oldest first,
    /// so a key renewed later ends up pointing at its newest batch: lookups
    /// take the newest candidate that really holds the key).
    pub(crate) fn load(&mut self, k: &DedupKey, at: BatchRef) {
        let fp = self.fingerprint(k);
        match self.live.entry(fp) {
            Entry::Occupied(_) => {
                self.collided.insert(*k, at);
            }
            Entry::Vacant(slot) => {
                slot.insert(at);
            }
        }
    }

    /// Forgets `k`'s record in batch `at`, which pruning deleted, unless the
    /// key was renewed since.
    pub(crate) fn forget(&mut self, at: BatchRef, k: &DedupKey) {
        if self.collided.get(k) == Some(&at) {
            self.collided.remove(k);
        }
        let fp = self.fingerprint(k);
        if self.live.get(&fp) == Some(&at) {
            self.live.remove(&fp);
        }
    }
}

/// Where an index entry lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Live,
    Collided,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(client_msgid: i64) -> DedupKey {
        DedupKey {
            appid: 1,
            sender: -2,
            device_id: 3,
            client_msgid,
            receiver: 4,
        }
    }

    #[test]
    fn records_roundtrip_and_corruption_is_an_error() {
        let rec = |ids: Vec<i64>, marked| Record {
            ids,
            digest: 77,
            origin: crate::store::Origin {
                incarnation: 5,
                connection: 6,
            },
            marked,
        };
        let records = vec![
            DedupRecord {
                key: key(1),
                created: 10,
                record: rec(vec![1, 42], false),
            },
            DedupRecord {
                key: key(i64::MIN),
                created: -1,
                record: rec(vec![i64::MAX], true),
            },
        ];
        let mut v = Vec::new();
        encode(records.iter(), &mut v);
        assert_eq!(decode(&v).expect("decode"), records);
        assert!(decode(&v[..v.len() - 1]).is_err());
        assert!(decode(&v[..3]).is_err());
        assert_eq!(decode(&[]).expect("empty"), Vec::new());
    }

    #[test]
    fn fingerprint_collisions_go_to_the_exact_map() {
        let mut index = DedupIndex::new();
        let at = |created| BatchRef { created, batch: 1 };
        index.load(&key(1), at(10));
        // Simulate a second key with the same fingerprint.
        let fp = index.fingerprint(&key(2));
        index.live.insert(fp, at(11));
        index.load(&key(2), at(12));
        assert_eq!(index.collided.get(&key(2)), Some(&at(12)));
        index.forget(at(12), &key(2));
        assert!(index.collided.is_empty());
        assert_eq!(index.live.get(&fp), Some(&at(11)));
        index.forget(at(11), &key(2));
        assert_eq!(index.len(), 1);
    }
}
