//! SUBSCRIBE (130), UNSUBSCRIBE (131), SUBSCRIBE_ROOM / UNSUBSCRIBE_ROOM (136/137).

use crate::protocol::ProtocolError;
use crate::protocol::reader::Reader;
use bytes::{BufMut, Bytes, BytesMut};

/// `appid i64, uid i64, online u8` (17 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribe {
    pub appid: i64,
    pub uid: i64,
    pub online: bool,
}

impl Subscribe {
    pub fn decode(body: Bytes) -> Result<Subscribe, ProtocolError> {
        let mut r = Reader::new(super::SUBSCRIBE, body);
        r.need(17)?;
        Ok(Subscribe {
            appid: r.i64()?,
            uid: r.i64()?,
            online: r.u8()? != 0,
        })
    }

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(17);
        b.put_i64(self.appid);
        b.put_i64(self.uid);
        b.put_u8(self.online as u8);
        b.freeze()
    }
}

/// `appid i64, uid i64` (16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsubscribe {
    pub appid: i64,
    pub uid: i64,
}

impl Unsubscribe {
    pub fn decode(body: Bytes) -> Result<Unsubscribe, ProtocolError> {
        let mut r = Reader::new(super::UNSUBSCRIBE, body);
        r.need(16)?;
        Ok(Unsubscribe {
            appid: r.i64()?,
            uid: r.i64()?,
        })
    }

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(16);
        b.put_i64(self.appid);
        b.put_i64(self.uid);
        b.freeze()
    }
}

/// Body of SUBSCRIBE_ROOM and UNSUBSCRIBE_ROOM: `appid i64, room_id i64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomSubscription {
    pub appid: i64,
    pub room_id: i64,
}

impl RoomSubscription {
    pub fn decode(cmd: u8, body: Bytes) -> Result<RoomSubscription, ProtocolError> {
        let mut r = Reader::new(cmd, body);
        r.need(16)?;
        Ok(RoomSubscription {
            appid: r.i64()?,
            room_id: r.i64()?,
        })
    }

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(16);
        b.put_i64(self.appid);
        b.put_i64(self.room_id);
        b.freeze()
    }
}
