//! AUTH_TOKEN (15) and AUTH_STATUS (3).

use super::ProtocolError;
use super::command::AUTH_TOKEN;
use super::reader::Reader;
use bytes::{BufMut, Bytes, BytesMut};

/// Login request: `platform u8, token_len u8, token, device_len u8, device`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthToken {
    pub platform_id: u8,
    pub token: String,
    pub device_id: String,
}

pub const PLATFORM_IOS: u8 = 1;
pub const PLATFORM_ANDROID: u8 = 2;
pub const PLATFORM_WEB: u8 = 3;

impl AuthToken {
    pub fn decode(body: Bytes) -> Result<AuthToken, ProtocolError> {
        let mut r = Reader::new(AUTH_TOKEN, body);
        r.need(4)?;
        let platform_id = r.u8()?;
        let tlen = r.u8()? as usize;
        let token = r.bytes(tlen)?;
        let dlen = r.u8()? as usize;
        let device = r.bytes(dlen)?;
        Ok(AuthToken {
            platform_id,
            token: String::from_utf8_lossy(&token).into_owned(),
            device_id: String::from_utf8_lossy(&device).into_owned(),
        })
    }

    /// Encodes; token and device id longer than 255 bytes are truncated.
    /// With both empty the body would be 3 bytes, below the 4-byte minimum
    /// every server enforces, so one trailing zero (ignored on decode) is added.
    pub fn encode(&self) -> Bytes {
        let t = &self.token.as_bytes()[..self.token.len().min(255)];
        let d = &self.device_id.as_bytes()[..self.device_id.len().min(255)];
        let mut b = BytesMut::with_capacity(4 + t.len() + d.len());
        b.put_u8(self.platform_id);
        b.put_u8(t.len() as u8);
        b.put_slice(t);
        b.put_u8(d.len() as u8);
        b.put_slice(d);
        if b.len() < 4 {
            b.put_u8(0);
        }
        b.freeze()
    }
}

/// AUTH_STATUS body: `status i32` (0 success, 1 failure).
pub fn encode_status(status: i32) -> Bytes {
    Bytes::copy_from_slice(&status.to_be_bytes())
}
