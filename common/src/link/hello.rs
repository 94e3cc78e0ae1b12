//! HELLO: `magic [4] "FRRY", version u16, secret_len u16, secret`, and from
//! version 4 on `name_len u16, name` (the im's node name, shown in presence
//! answers; absent or empty from an imr). A peer that speaks another
//! version, or presents the wrong shared secret, is refused.

use super::HELLO;
use crate::protocol::ProtocolError;
use crate::protocol::reader::Reader;
use bytes::{BufMut, Bytes, BytesMut};

pub const LINK_MAGIC: [u8; 4] = *b"FRRY";
/// 2: GROUP_CHANGED (140) and MARK (141) exist; a version-1 peer would
/// silently drop them, so the handshake refuses it.
/// 3: PUBLISH_GROUP carries the members homed on the receiving imr
/// ([`super::GroupPublish`]); a version-2 imr would relay it to every node
/// and a version-2 im would deliver it to every cached member (duplicates).
/// 4: DEVICE_ONLINE / DEVICE_OFFLINE / PRESENCE_QUERY / PRESENCE_REPLY
/// (142–145) and the node name in HELLO; NODE_QUERY / NODE_REPLY (146, 147)
/// for the admin console's cluster view. A version-3 imr would ignore the
/// devices and never answer a presence or console query.
pub const LINK_VERSION: u16 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u16,
    pub secret: Bytes,
    /// The im's node name (empty from an imr or an older peer).
    pub name: Bytes,
}

impl Hello {
    pub fn decode(body: Bytes) -> Result<Hello, ProtocolError> {
        let mut r = Reader::new(HELLO, body);
        r.need(8)?;
        let magic = r.bytes(4)?;
        if magic[..] != LINK_MAGIC {
            return Err(ProtocolError::Link("bad magic: peer is not a Ferry link"));
        }
        let version = r.u16()?;
        let len = r.u16()? as usize;
        let secret = r.bytes(len)?;
        let name = if r.remaining() >= 2 {
            let len = r.u16()? as usize;
            r.bytes(len)?
        } else {
            Bytes::new()
        };
        Ok(Hello {
            version,
            secret,
            name,
        })
    }

    pub fn encode(&self) -> Bytes {
        let secret = &self.secret[..self.secret.len().min(u16::MAX as usize)];
        let mut b = BytesMut::with_capacity(10 + secret.len() + self.name.len());
        b.put_slice(&LINK_MAGIC);
        b.put_u16(self.version);
        b.put_u16(secret.len() as u16);
        b.put_slice(secret);
        if !self.name.is_empty() {
            let name = &self.name[..self.name.len().min(u16::MAX as usize)];
            b.put_u16(name.len() as u16);
            b.put_slice(name);
        }
        b.freeze()
    }
}
