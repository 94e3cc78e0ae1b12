//! GroupPublish: body of PUBLISH_GROUP (135), a super-group frame addressed
//! to the group members homed on one imr.
//!
//! Layout: a [`RouteMessage`] (`appid, receiver = gid, msgid, prev_msgid,
//! device_id, timestamp` i64, `msg_len u32, msg`), then `count u32` and
//! `count × uid i64`. The sending im splits the members by home imr
//! (`|uid| mod N`) and sends each imr only its share, so the imr can forward
//! the frame to the links that hold at least one of them and to no other.
//! gobelieve's PUBLISH_GROUP is a bare RouteMessage relayed to every node.

use super::PUBLISH_GROUP;
use super::route::RouteMessage;
use crate::protocol::ProtocolError;
use crate::protocol::reader::Reader;
use bytes::{BufMut, Bytes, BytesMut};

/// Bytes a GroupPublish adds to its route message: the member count.
pub const GROUP_PUBLISH_OVERHEAD: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPublish {
    pub route: RouteMessage,
    /// Members of the group homed on the imr this body is sent to.
    pub members: Vec<i64>,
}

impl GroupPublish {
    pub fn decode(body: Bytes) -> Result<GroupPublish, ProtocolError> {
        let mut r = Reader::new(PUBLISH_GROUP, body);
        r.need(56)?;
        let route = RouteMessage::read(&mut r)?;
        let count = r.u32()? as usize;
        if count.saturating_mul(8) != r.remaining() {
            return Err(ProtocolError::BadInnerLength(PUBLISH_GROUP));
        }
        let mut members = Vec::with_capacity(count);
        for _ in 0..count {
            members.push(r.i64()?);
        }
        Ok(GroupPublish { route, members })
    }

    /// Encodes `route` and `members` without building a GroupPublish (the
    /// sender encodes one body per imr from one route message).
    pub fn encode_parts(route: &RouteMessage, members: &[i64]) -> Bytes {
        let mut b = BytesMut::with_capacity(Self::encoded_len(route.msg.len(), members.len()));
        route.put(&mut b);
        b.put_u32(members.len() as u32);
        for &m in members {
            b.put_i64(m);
        }
        b.freeze()
    }

    pub fn encode(&self) -> Bytes {
        Self::encode_parts(&self.route, &self.members)
    }

    /// Body length for an embedded frame of `msg_len` bytes and `members`
    /// uids.
    pub fn encoded_len(msg_len: usize, members: usize) -> usize {
        52 + msg_len + GROUP_PUBLISH_OVERHEAD + 8 * members
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> GroupPublish {
        GroupPublish {
            route: RouteMessage {
                appid: 7,
                receiver: 3110,
                msgid: 5,
                prev_msgid: 4,
                device_id: 9,
                timestamp: 1,
                msg: Bytes::from_static(b"\x01\x02\x03"),
            },
            members: vec![2, -4, 6],
        }
    }

    #[test]
    fn byte_vector() {
        let mut want = Vec::new();
        for v in [7i64, 3110, 5, 4, 9, 1] {
            want.extend_from_slice(&v.to_be_bytes());
        }
        want.extend_from_slice(&[0, 0, 0, 3, 1, 2, 3]);
        want.extend_from_slice(&[0, 0, 0, 3]);
        for v in [2i64, -4, 6] {
            want.extend_from_slice(&v.to_be_bytes());
        }
        let g = sample();
        assert_eq!(g.encode()[..], want[..]);
        assert_eq!(g.encode().len(), GroupPublish::encoded_len(3, 3));
        assert_eq!(GroupPublish::decode(Bytes::from(want)).expect("decodes"), g);
    }

    #[test]
    fn round_trips_empty_and_large() {
        let mut g = sample();
        g.members.clear();
        g.route.msg = Bytes::new();
        assert_eq!(GroupPublish::decode(g.encode()).expect("empty"), g);
        g.members = (0..100_000).collect();
        g.route.msg = Bytes::from(vec![0xab; 70_000]);
        let body = g.encode();
        assert_eq!(body.len(), GroupPublish::encoded_len(70_000, 100_000));
        assert_eq!(GroupPublish::decode(body).expect("large"), g);
    }

    #[test]
    fn the_route_prefix_is_a_route_message() {
        // Same leading layout as PUBLISH: a RouteMessage decoder reads it.
        let g = sample();
        let rm = RouteMessage::decode(PUBLISH_GROUP, g.encode()).expect("route prefix");
        assert_eq!(rm, g.route);
    }

    #[test]
    fn truncated_or_inconsistent_bodies_are_errors() {
        let body = sample().encode();
        for n in 0..body.len() {
            assert!(GroupPublish::decode(body.slice(..n)).is_err(), "prefix {n}");
        }
        // Trailing bytes after the members: the count does not match.
        let mut extra = body.to_vec();
        extra.push(0);
        assert!(GroupPublish::decode(Bytes::from(extra)).is_err());
        // A count far beyond the body never allocates for it.
        let mut huge = body[..body.len() - 28].to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(GroupPublish::decode(Bytes::from(huge)).is_err());
        // msg_len beyond the body.
        let mut bad = body.to_vec();
        bad[48..52].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(GroupPublish::decode(Bytes::from(bad)).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        // Deterministic pseudo-random bodies (xorshift), all lengths to 200.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..200usize {
            for _ in 0..50 {
                let body: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                let _ = GroupPublish::decode(Bytes::from(body));
            }
        }
    }
}
