//! NODE_QUERY (146) and NODE_REPLY (147): how one im's admin console reads
//! every other im's figures through the imrs.
//!
//! The asking im sends a query to each imr it is linked to. The imr stamps
//! the asking link's id into `origin`, forwards the query to every other
//! linked im and answers the asker itself with a reply whose `relayed` is
//! the number of ims it forwarded to (and an empty payload), so the asker
//! knows how many answers to wait for instead of waiting out a timer. Each
//! im answers with a reply carrying its figures; the imr hands that to the
//! link named by `origin` only.
//!
//! The payload is JSON: its only reader is the console page, whose figures
//! change with it; a binary layout would need a link-version bump for every
//! new chart without making the console any faster. It is bounded by
//! [`MAX_NODE_PAYLOAD`].

use crate::protocol::ProtocolError;
use crate::protocol::reader::Reader;
use bytes::{BufMut, Bytes, BytesMut};

/// Largest payload of a NODE_REPLY: ten minutes of samples of every series
/// fit with room to spare.
pub const MAX_NODE_PAYLOAD: usize = 1024 * 1024;

/// What the asker wants to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAsk {
    /// The node's identity, current figures and the history samples taken
    /// after Unix second `since`.
    Figures { since: u64 },
    /// Where this user is connected on the node.
    User { appid: i64, uid: i64 },
}

/// `origin u64, request_id u64, kind u8, a i64, b i64` (33 bytes): kind 0 is
/// figures (`a` = since), kind 1 a user (`a` = appid, `b` = uid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeQuery {
    /// The asking link's id on the imr (0 as sent by the im).
    pub origin: u64,
    /// The asker's id for this query, echoed in every reply.
    pub request_id: u64,
    pub ask: NodeAsk,
}

impl NodeQuery {
    pub const LEN: usize = 33;

    pub fn decode(body: Bytes) -> Result<NodeQuery, ProtocolError> {
        let mut r = Reader::new(super::NODE_QUERY, body);
        r.need(Self::LEN)?;
        let origin = r.i64()? as u64;
        let request_id = r.i64()? as u64;
        let kind = r.u8()?;
        let (a, b) = (r.i64()?, r.i64()?);
        let ask = match kind {
            0 => NodeAsk::Figures {
                since: a.max(0) as u64,
            },
            1 => NodeAsk::User { appid: a, uid: b },
            _ => return Err(ProtocolError::Link("NODE_QUERY: unknown kind")),
        };
        Ok(NodeQuery {
            origin,
            request_id,
            ask,
        })
    }

    pub fn encode(&self) -> Bytes {
        let (kind, a, b) = match self.ask {
            NodeAsk::Figures { since } => (0u8, i64::try_from(since).unwrap_or(i64::MAX), 0),
            NodeAsk::User { appid, uid } => (1, appid, uid),
        };
        let mut buf = BytesMut::with_capacity(Self::LEN);
        buf.put_u64(self.origin);
        buf.put_u64(self.request_id);
        buf.put_u8(kind);
        buf.put_i64(a);
        buf.put_i64(b);
        buf.freeze()
    }
}

/// `origin u64, request_id u64, relayed u32, payload_len u32, payload`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReply {
    /// The asking link's id on the imr, copied from the query.
    pub origin: u64,
    pub request_id: u64,
    /// From an imr: how many ims it forwarded the query to (payload empty).
    /// From an im: 0.
    pub relayed: u32,
    /// From an im: its answer, JSON.
    pub payload: Bytes,
}

impl NodeReply {
    pub fn decode(body: Bytes) -> Result<NodeReply, ProtocolError> {
        let mut r = Reader::new(super::NODE_REPLY, body);
        r.need(24)?;
        let origin = r.i64()? as u64;
        let request_id = r.i64()? as u64;
        let relayed = r.u32()?;
        let len = r.u32()? as usize;
        if len > MAX_NODE_PAYLOAD {
            return Err(ProtocolError::Link("NODE_REPLY: payload too large"));
        }
        let payload = r.bytes(len)?;
        Ok(NodeReply {
            origin,
            request_id,
            relayed,
            payload,
        })
    }

    /// Fails if the payload is larger than [`MAX_NODE_PAYLOAD`].
    pub fn encode(&self) -> Result<Bytes, ProtocolError> {
        if self.payload.len() > MAX_NODE_PAYLOAD {
            return Err(ProtocolError::Link("NODE_REPLY: payload too large"));
        }
        let mut b = BytesMut::with_capacity(24 + self.payload.len());
        b.put_u64(self.origin);
        b.put_u64(self.request_id);
        b.put_u32(self.relayed);
        b.put_u32(self.payload.len() as u32);
        b.put_slice(&self.payload);
        Ok(b.freeze())
    }

    /// The origin of an encoded reply, read without decoding the payload
    /// (the imr routes replies by it and forwards the bytes as they are).
    pub fn peek_origin(body: &[u8]) -> Option<u64> {
        body.get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trips_both_kinds() {
        for ask in [
            NodeAsk::Figures {
                since: 1_700_000_000,
            },
            NodeAsk::User { appid: 7, uid: -3 },
        ] {
            let q = NodeQuery {
                origin: 9,
                request_id: 42,
                ask,
            };
            let body = q.encode();
            assert_eq!(body.len(), NodeQuery::LEN);
            assert_eq!(NodeQuery::decode(body).expect("decode"), q);
        }
    }

    #[test]
    fn bad_queries_are_errors() {
        assert!(NodeQuery::decode(Bytes::from_static(&[0; 10])).is_err());
        let mut b = BytesMut::from(
            &NodeQuery {
                origin: 0,
                request_id: 1,
                ask: NodeAsk::Figures { since: 0 },
            }
            .encode()[..],
        );
        b[16] = 9;
        assert!(NodeQuery::decode(b.freeze()).is_err());
    }

    #[test]
    fn reply_round_trips_and_is_bounded() {
        let r = NodeReply {
            origin: u64::MAX,
            request_id: 5,
            relayed: 0,
            payload: Bytes::from_static(br#"{"node":{}}"#),
        };
        let body = r.encode().expect("encode");
        assert_eq!(NodeReply::peek_origin(&body), Some(u64::MAX));
        assert_eq!(NodeReply::decode(body.clone()).expect("decode"), r);
        // Truncated payload and oversized length are errors, not panics.
        assert!(NodeReply::decode(body.slice(..body.len() - 1)).is_err());
        let mut big = BytesMut::from(&body[..24]);
        big[20..24].copy_from_slice(&((MAX_NODE_PAYLOAD as u32) + 1).to_be_bytes());
        assert!(NodeReply::decode(big.freeze()).is_err());
        let huge = NodeReply {
            payload: Bytes::from(vec![b' '; MAX_NODE_PAYLOAD + 1]),
            ..r
        };
        assert!(huge.encode().is_err());
    }
}
