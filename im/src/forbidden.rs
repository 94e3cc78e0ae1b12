//! "Speak forbidden" (spec §3.10): the app server mutes a user by publishing
//! `"<appid>,<uid>,<0|1>"` on the Redis channel `speak_forbidden` (and
//! usually writes the `forbidden` field of `users_<appid>_<uid>`, which the
//! Redis token check reads at login). Every im node subscribes, so the change
//! applies at once to the user's live connections on every node.
//!
//! The announced values are kept per user in one small map that overrides
//! the value read at login. A mute is kept (muted users are few); an unmute
//! of a user with no connection on this node is dropped from the map, since
//! the user's next login reads the current value anyway. Announcements made
//! while the subscription is down (Redis restart) are missed: the
//! subscription is re-established with backoff and a warning is logged.
//! As in gobelieve, the flag is enforced for room messages.

use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The Redis pub/sub channel gobelieve's API server publishes on.
pub const CHANNEL: &str = "speak_forbidden";

/// Announced flags by (appid, uid).
#[derive(Debug, Default)]
pub struct SpeakForbidden {
    announced: Mutex<HashMap<(i64, i64), bool>>,
    /// Entries in `announced`: room messages skip the lock while it is 0
    /// (the common case: nobody muted since start).
    len: AtomicUsize,
}

impl SpeakForbidden {
    /// The user's flag: the last announcement, else the value read at login.
    pub fn is_forbidden(&self, appid: i64, uid: i64, at_login: bool) -> bool {
        if self.len.load(Ordering::Acquire) == 0 {
            return at_login;
        }
        let map = self.announced.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(appid, uid)).copied().unwrap_or(at_login)
    }

    /// Records an announcement. `connected_here`: whether the user has a
    /// connection on this node (an unmute of anyone else need not be kept).
    pub fn apply(&self, appid: i64, uid: i64, forbidden: bool, connected_here: bool) {
        let mut map = self.announced.lock().unwrap_or_else(|e| e.into_inner());
        if forbidden || connected_here {
            map.insert((appid, uid), forbidden);
        } else {
            map.remove(&(appid, uid));
        }
        self.len.store(map.len(), Ordering::Release);
    }
}

/// Parses a `speak_forbidden` payload `"<appid>,<uid>,<0|1>"`.
pub fn parse(payload: &[u8]) -> Result<(i64, i64, bool), String> {
    let text = std::str::from_utf8(payload).map_err(|_| "not UTF-8".to_string())?;
    let mut parts = text.trim().split(',').map(str::trim);
    let (Some(appid), Some(uid), Some(flag), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("{text:?}: expected appid,uid,flag"));
    };
    let appid: i64 = appid.parse().map_err(|_| format!("{text:?}: bad appid"))?;
    let uid: i64 = uid.parse().map_err(|_| format!("{text:?}: bad uid"))?;
    let flag = match flag {
        "0" => false,
        "1" => true,
        _ => return Err(format!("{text:?}: flag must be 0 or 1")),
    };
    Ok((appid, uid, flag))
}

/// Follows the channel until `shutdown` or until `apply` (given each mute
/// as `(appid, uid, forbidden)`) answers false (the node is gone),
/// reconnecting with capped backoff.
pub async fn follow(
    shutdown: tokio_util::sync::CancellationToken,
    url: String,
    apply: impl Fn(i64, i64, bool) -> bool + Send,
) {
    let client = match redis::Client::open(url.as_str()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "speak_forbidden: bad Redis URL; mutes are not followed");
            return;
        }
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        let run = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            tracing::info!(channel = CHANNEL, "following mutes");
            let mut stream = pubsub.on_message();
            while let Some(msg) = stream.next().await {
                match parse(msg.get_payload_bytes()) {
                    Ok((appid, uid, flag)) => {
                        if !apply(appid, uid, flag) {
                            return Ok(());
                        }
                        tracing::info!(appid, uid, forbidden = flag, "speak_forbidden");
                    }
                    Err(e) => tracing::warn!(error = %e, "speak_forbidden: ignored a bad message"),
                }
            }
            Err::<(), redis::RedisError>(redis::RedisError::from((
                redis::ErrorKind::Io,
                "subscription closed",
            )))
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = run => match r {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "speak_forbidden subscription down");
                }
            },
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        assert_eq!(parse(b"7,42,1"), Ok((7, 42, true)));
        assert_eq!(parse(b" 7, 42 ,0\n"), Ok((7, 42, false)));
        assert!(parse(b"7,42").is_err());
        assert!(parse(b"7,42,2").is_err());
        assert!(parse(b"7,x,1").is_err());
        assert!(parse(b"7,42,1,9").is_err());
        assert!(parse(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn announcements_override_the_login_value() {
        let f = SpeakForbidden::default();
        assert!(!f.is_forbidden(7, 1, false));
        assert!(f.is_forbidden(7, 1, true));
        f.apply(7, 1, true, false);
        assert!(f.is_forbidden(7, 1, false), "mute kept");
        f.apply(7, 1, false, true);
        assert!(
            !f.is_forbidden(7, 1, true),
            "unmute of a connected user kept"
        );
        f.apply(7, 2, false, false);
        assert!(
            f.is_forbidden(7, 2, true),
            "unmute of an absent user not kept"
        );
    }
}
