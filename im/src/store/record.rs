//! The dedup record shared by the embedded backends and the Redis store's
//! scripts: the ids a send was placed at, the digest of its content, its
//! [`Origin`] and the "ACK unconfirmed" mark.
//!
//! Layout (little-endian): the placed ids (8 bytes each), then a 26-byte
//! trailer `digest u64 | incarnation u64 | connection u64 | marked u8 |
//! version u8`. Records written before the trailer existed are a multiple
//! of 8 bytes long and are read as "no record" (the send is new: at worst
//! one duplicate right after an upgrade, never a loss).

use super::Origin;

const TRAILER: usize = 26;
const VERSION: u8 = 1;

/// A decoded dedup record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub ids: Vec<i64>,
    pub digest: u64,
    pub origin: Origin,
    pub marked: bool,
}

/// FNV-1a, 64 bit: written out here so the digest is the same on every
/// node, process and compiler version (records outlive all three).
pub fn digest(content: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in content {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

pub fn encode(ids: &[i64], digest: u64, origin: Origin, marked: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(ids.len() * 8 + TRAILER);
    for id in ids {
        v.extend_from_slice(&id.to_le_bytes());
    }
    v.extend_from_slice(&digest.to_le_bytes());
    v.extend_from_slice(&origin.incarnation.to_le_bytes());
    v.extend_from_slice(&origin.connection.to_le_bytes());
    v.push(u8::from(marked));
    v.push(VERSION);
    v
}

/// `None` for anything that is not a current record (old format, garbage).
pub fn decode(v: &[u8]) -> Option<Record> {
    if v.len() <= TRAILER || !(v.len() - TRAILER).is_multiple_of(8) {
        return None;
    }
    let (ids, t) = v.split_at(v.len() - TRAILER);
    if t[25] != VERSION {
        return None;
    }
    let u = |r: std::ops::Range<usize>| t.get(r)?.try_into().ok().map(u64::from_le_bytes);
    Some(Record {
        ids: ids
            .chunks_exact(8)
            .map(|c| c.try_into().ok().map(i64::from_le_bytes))
            .collect::<Option<Vec<_>>>()?,
        digest: u(0..8)?,
        origin: Origin {
            incarnation: u(8..16)?,
            connection: u(16..24)?,
        },
        marked: t[24] != 0,
    })
}

/// The same record with the mark set (`None` if `v` is not a record).
pub fn marked(v: &[u8]) -> Option<Vec<u8>> {
    let r = decode(v)?;
    Some(encode(&r.ids, r.digest, r.origin, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_fnv1a() {
        // Published FNV-1a 64 test vectors: the digest must never change.
        assert_eq!(digest(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(digest(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(digest(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn records_round_trip_and_old_ones_are_ignored() {
        let o = Origin {
            incarnation: 9,
            connection: 3,
        };
        let v = encode(&[5, 7], 42, o, false);
        let r = decode(&v).expect("decodes");
        assert_eq!(
            (r.ids, r.digest, r.origin, r.marked),
            (vec![5, 7], 42, o, false)
        );
        assert!(decode(&marked(&v).expect("marks")).expect("decodes").marked);
        // The pre-trailer format: ids only.
        assert_eq!(decode(&5i64.to_le_bytes()), None);
        assert_eq!(decode(&[]), None);
        let mut bad = v.clone();
        bad.pop();
        assert_eq!(decode(&bad), None);
    }
}
