//! Resolving an access token to `(appid, uid)`: HMAC JWT (default) or
//! gobelieve's Redis token hashes.

mod jwt;
mod redis_tokens;

pub use jwt::{JwtAuth, load_or_create_secret};
pub use redis_tokens::RedisAuth;

/// Who a connection is, once authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub appid: i64,
    pub uid: i64,
    /// `forbidden` user preference: may not speak in rooms.
    pub forbidden: bool,
    /// `notification_on`: keep notifying the phone while on desktop/web.
    pub notification_on: bool,
}

/// Why a login failed. Never carries the token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("unknown token")]
    Unknown,
    #[error("token has no uid")]
    NoUid,
    #[error("redis: {0}")]
    Redis(String),
}

/// The configured token check.
pub enum Authenticator {
    Jwt(JwtAuth),
    Redis(RedisAuth),
}

impl Authenticator {
    pub async fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        let id = match self {
            Authenticator::Jwt(j) => j.authenticate(token)?,
            Authenticator::Redis(r) => r.authenticate(token).await?,
        };
        if id.uid == 0 {
            return Err(AuthError::NoUid);
        }
        Ok(id)
    }

    /// The Redis side, when tokens live there (used for `unread` counts and
    /// device numbers in gobelieve's key layout).
    pub fn redis(&self) -> Option<&RedisAuth> {
        match self {
            Authenticator::Redis(r) => Some(r),
            Authenticator::Jwt(_) => None,
        }
    }
}
