//! `--auth redis`: gobelieve's token layout (spec §3.1, §11.1):
//! `access_token_<token>` → `user_id`, `app_id`; `users_<appid>_<uid>` →
//! `forbidden`, `notification_on`, `unread`; `devices_<id>_<platform>` and the
//! `devices_id` counter for device numbers.

use super::{AuthError, Identity};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

#[derive(Clone)]
pub struct RedisAuth {
    conn: ConnectionManager,
}

fn rerr(e: redis::RedisError) -> AuthError {
    AuthError::Redis(e.to_string())
}

fn num(v: Option<String>) -> i64 {
    v.and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

impl RedisAuth {
    pub async fn connect(url: &str) -> Result<RedisAuth, AuthError> {
        let client = redis::Client::open(url).map_err(rerr)?;
        let conn = ConnectionManager::new(client).await.map_err(rerr)?;
        Ok(RedisAuth { conn })
    }

    pub async fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        let mut c = self.conn.clone();
        let key = format!("access_token_{token}");
        let (uid, appid): (Option<String>, Option<String>) =
            c.hmget(&key, &["user_id", "app_id"]).await.map_err(rerr)?;
        if uid.is_none() && appid.is_none() {
            let exists: bool = c.exists(&key).await.map_err(rerr)?;
            if !exists {
                return Err(AuthError::Unknown);
            }
        }
        let (uid, appid) = (num(uid), num(appid));
        let (forbidden, notification_on): (Option<String>, Option<String>) = c
            .hmget(
                format!("users_{appid}_{uid}"),
                &["forbidden", "notification_on"],
            )
            .await
            .map_err(rerr)?;
        Ok(Identity {
            appid,
            uid,
            forbidden: num(forbidden) == 1,
            notification_on: num(notification_on) == 1,
        })
    }

    /// Device number for `(device_id, platform)`. `SET NX` makes concurrent
    /// first logins of one device agree on a single number.
    pub async fn device_number(&self, device_id: &str, platform: u8) -> Result<i64, AuthError> {
        let mut c = self.conn.clone();
        let key = format!("devices_{device_id}_{platform}");
        if let Some(v) = c.get::<_, Option<i64>>(&key).await.map_err(rerr)? {
            return Ok(v);
        }
        let n: i64 = c.incr("devices_id", 1).await.map_err(rerr)?;
        let set: bool = c.set_nx(&key, n).await.map_err(rerr)?;
        if set {
            return Ok(n);
        }
        c.get::<_, Option<i64>>(&key)
            .await
            .map_err(rerr)?
            .ok_or(AuthError::Unknown)
    }

    /// HSET `users_<appid>_<uid>` `unread` (badge count for the push service).
    pub async fn set_unread(&self, appid: i64, uid: i64, count: i32) -> Result<(), AuthError> {
        let mut c = self.conn.clone();
        c.hset::<_, _, _, ()>(format!("users_{appid}_{uid}"), "unread", count)
            .await
            .map_err(rerr)
    }
}
