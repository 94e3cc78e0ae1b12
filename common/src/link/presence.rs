//! Presence on the link (Ferry additions, link version 4).
//!
//! The imr's subscriber table only knows "subscribed / online" per user; to
//! answer "which devices, where, since when" without asking every im, each
//! im also tells the user's home imr about every logged-in connection:
//! DEVICE_ONLINE when it logs in, DEVICE_OFFLINE when it ends (and the whole
//! set again after a reconnect, like SUBSCRIBE). A presence query is then one
//! PRESENCE_QUERY / PRESENCE_REPLY round trip per imr.
//!
//! Layouts (big-endian):
//! * DEVICE_ONLINE: `appid i64, uid i64, conn u64, platform u8, transport u8,
//!   since i64, device_len u8, device_id`
//! * DEVICE_OFFLINE: `appid i64, uid i64, conn u64`
//! * PRESENCE_QUERY: `id u64, appid i64, count u32, uids count×i64`
//! * PRESENCE_REPLY: `id u64, node_count u16, (len u16, name)×node_count,
//!   user_count u32, (uid i64, dev_count u16, (node u16, platform u8,
//!   transport u8, since i64, device_len u8, device_id)×dev_count)×user_count`
//!   — only users with at least one device; `node` indexes the name list.

use super::{DEVICE_OFFLINE, DEVICE_ONLINE, PRESENCE_QUERY, PRESENCE_REPLY};
use crate::protocol::ProtocolError;
use crate::protocol::reader::Reader;
use bytes::{BufMut, Bytes, BytesMut};

/// Most uids one PRESENCE_QUERY may carry (the HTTP API allows 1,000 in all).
pub const MAX_PRESENCE_UIDS: usize = 100_000;

/// One logged-in connection as the imr records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The connection id, unique on its im node.
    pub conn: u64,
    pub platform: u8,
    /// Transport code (the im defines the names: 1 tcp, 2 tls, 3 ws, 4 wss).
    pub transport: u8,
    /// Unix seconds of the login.
    pub since: i64,
    /// The client's device id string (at most 255 bytes, as in AUTH_TOKEN).
    pub device_id: Bytes,
}

/// DEVICE_ONLINE body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceOnline {
    pub appid: i64,
    pub uid: i64,
    pub device: Device,
}

fn put_short(b: &mut BytesMut, s: &[u8]) {
    let s = &s[..s.len().min(255)];
    b.put_u8(s.len() as u8);
    b.put_slice(s);
}

impl DeviceOnline {
    pub fn decode(body: Bytes) -> Result<DeviceOnline, ProtocolError> {
        let mut r = Reader::new(DEVICE_ONLINE, body);
        r.need(35)?;
        let appid = r.i64()?;
        let uid = r.i64()?;
        let conn = r.i64()? as u64;
        let platform = r.u8()?;
        let transport = r.u8()?;
        let since = r.i64()?;
        let len = r.u8()? as usize;
        let device_id = r.bytes(len)?;
        Ok(DeviceOnline {
            appid,
            uid,
            device: Device {
                conn,
                platform,
                transport,
                since,
                device_id,
            },
        })
    }

    pub fn encode(&self) -> Bytes {
        let d = &self.device;
        let mut b = BytesMut::with_capacity(35 + d.device_id.len());
        b.put_i64(self.appid);
        b.put_i64(self.uid);
        b.put_u64(d.conn);
        b.put_u8(d.platform);
        b.put_u8(d.transport);
        b.put_i64(d.since);
        put_short(&mut b, &d.device_id);
        b.freeze()
    }
}

/// DEVICE_OFFLINE body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceOffline {
    pub appid: i64,
    pub uid: i64,
    pub conn: u64,
}

impl DeviceOffline {
    pub fn decode(body: Bytes) -> Result<DeviceOffline, ProtocolError> {
        let mut r = Reader::new(DEVICE_OFFLINE, body);
        r.need(24)?;
        Ok(DeviceOffline {
            appid: r.i64()?,
            uid: r.i64()?,
            conn: r.i64()? as u64,
        })
    }

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(24);
        b.put_i64(self.appid);
        b.put_i64(self.uid);
        b.put_u64(self.conn);
        b.freeze()
    }
}

/// PRESENCE_QUERY body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceQuery {
    /// Chosen by the im; echoed in the reply.
    pub id: u64,
    pub appid: i64,
    pub uids: Vec<i64>,
}

impl PresenceQuery {
    pub fn decode(body: Bytes) -> Result<PresenceQuery, ProtocolError> {
        let mut r = Reader::new(PRESENCE_QUERY, body);
        r.need(20)?;
        let id = r.i64()? as u64;
        let appid = r.i64()?;
        let count = r.u32()? as usize;
        if count > MAX_PRESENCE_UIDS || count.saturating_mul(8) > r.remaining() {
            return Err(ProtocolError::BadInnerLength(PRESENCE_QUERY));
        }
        let mut uids = Vec::with_capacity(count);
        for _ in 0..count {
            uids.push(r.i64()?);
        }
        Ok(PresenceQuery { id, appid, uids })
    }

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(20 + 8 * self.uids.len());
        b.put_u64(self.id);
        b.put_i64(self.appid);
        b.put_u32(self.uids.len() as u32);
        for u in &self.uids {
            b.put_i64(*u);
        }
        b.freeze()
    }
}

/// One device in a reply: where it is connected and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDevice {
    /// Index into [`PresenceReply::nodes`].
    pub node: u16,
    pub platform: u8,
    pub transport: u8,
    pub since: i64,
    pub device_id: Bytes,
}

/// One user with its devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPresence {
    pub uid: i64,
    pub devices: Vec<NodeDevice>,
}

/// PRESENCE_REPLY body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PresenceReply {
    pub id: u64,
    /// Names of the im nodes the devices are on (from their HELLO).
    pub nodes: Vec<String>,
    /// Only users with at least one device.
    pub users: Vec<UserPresence>,
}

impl PresenceReply {
    pub fn decode(body: Bytes) -> Result<PresenceReply, ProtocolError> {
        let bad = || ProtocolError::BadInnerLength(PRESENCE_REPLY);
        let mut r = Reader::new(PRESENCE_REPLY, body);
        r.need(14)?;
        let id = r.i64()? as u64;
        let n_nodes = r.u16()? as usize;
        let mut nodes = Vec::with_capacity(n_nodes.min(r.remaining() / 2));
        for _ in 0..n_nodes {
            let len = r.u16()? as usize;
            nodes.push(String::from_utf8_lossy(&r.bytes(len)?).into_owned());
        }
        let n_users = r.u32()? as usize;
        // Every user takes at least 10 bytes: no allocation beyond the body.
        if n_users.saturating_mul(10) > r.remaining() {
            return Err(bad());
        }
        let mut users = Vec::with_capacity(n_users);
        for _ in 0..n_users {
            let uid = r.i64()?;
            let n_dev = r.u16()? as usize;
            if n_dev.saturating_mul(13) > r.remaining() {
                return Err(bad());
            }
            let mut devices = Vec::with_capacity(n_dev);
            for _ in 0..n_dev {
                let node = r.u16()?;
                if node as usize >= nodes.len() {
                    return Err(bad());
                }
                let platform = r.u8()?;
                let transport = r.u8()?;
                let since = r.i64()?;
                let len = r.u8()? as usize;
                let device_id = r.bytes(len)?;
                devices.push(NodeDevice {
                    node,
                    platform,
                    transport,
                    since,
                    device_id,
                });
            }
            users.push(UserPresence { uid, devices });
        }
        Ok(PresenceReply { id, nodes, users })
    }

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(64 + self.users.len() * 40);
        b.put_u64(self.id);
        let nodes = &self.nodes[..self.nodes.len().min(u16::MAX as usize)];
        b.put_u16(nodes.len() as u16);
        for n in nodes {
            let s = &n.as_bytes()[..n.len().min(u16::MAX as usize)];
            b.put_u16(s.len() as u16);
            b.put_slice(s);
        }
        b.put_u32(self.users.len() as u32);
        for u in &self.users {
            b.put_i64(u.uid);
            let devs = &u.devices[..u.devices.len().min(u16::MAX as usize)];
            b.put_u16(devs.len() as u16);
            for d in devs {
                b.put_u16(d.node);
                b.put_u8(d.platform);
                b.put_u8(d.transport);
                b.put_i64(d.since);
                put_short(&mut b, &d.device_id);
            }
        }
        b.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_frames_round_trip() {
        let on = DeviceOnline {
            appid: 7,
            uid: -3,
            device: Device {
                conn: u64::MAX,
                platform: 2,
                transport: 4,
                since: 1_700_000_000,
                device_id: Bytes::from_static(b"phone-1"),
            },
        };
        assert_eq!(DeviceOnline::decode(on.encode()).expect("decode"), on);
        let off = DeviceOffline {
            appid: 7,
            uid: -3,
            conn: 9,
        };
        assert_eq!(DeviceOffline::decode(off.encode()).expect("decode"), off);
        assert!(DeviceOnline::decode(on.encode().slice(..34)).is_err());
    }

    #[test]
    fn query_and_reply_round_trip() {
        let q = PresenceQuery {
            id: 5,
            appid: 7,
            uids: vec![1, 2, -3],
        };
        assert_eq!(PresenceQuery::decode(q.encode()).expect("decode"), q);
        let rep = PresenceReply {
            id: 5,
            nodes: vec!["a:1".into(), "b:2".into()],
            users: vec![UserPresence {
                uid: 2,
                devices: vec![NodeDevice {
                    node: 1,
                    platform: 3,
                    transport: 2,
                    since: 42,
                    device_id: Bytes::from_static(b"tab"),
                }],
            }],
        };
        assert_eq!(PresenceReply::decode(rep.encode()).expect("decode"), rep);
    }

    #[test]
    fn lying_counts_and_node_indexes_are_errors() {
        let mut b = BytesMut::new();
        b.put_u64(1);
        b.put_i64(7);
        b.put_u32(u32::MAX);
        assert!(PresenceQuery::decode(b.freeze()).is_err());

        let mut b = BytesMut::new();
        b.put_u64(1);
        b.put_u16(0);
        b.put_u32(u32::MAX);
        assert!(PresenceReply::decode(b.freeze()).is_err());

        // A device pointing at a node that is not in the list.
        let rep = PresenceReply {
            id: 1,
            nodes: vec!["a".into()],
            users: vec![UserPresence {
                uid: 1,
                devices: vec![NodeDevice {
                    node: 1,
                    platform: 1,
                    transport: 1,
                    since: 0,
                    device_id: Bytes::new(),
                }],
            }],
        };
        assert!(PresenceReply::decode(rep.encode()).is_err());
    }
}
