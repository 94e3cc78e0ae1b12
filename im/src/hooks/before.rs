//! before-send: ask the hook whether a client message may be stored.
//!
//! Request (`X-Ferry-Hook: before_send`):
//! `{"type":"before_send","kind":"im","appid":7,"sender":1,"receiver":2,
//!   "device_id":5,"content":"…","node":"host:23000"}`
//! (`receiver` is the gid for group_im, the room for room_im; for customer
//! also `receiver_appid`). Answers:
//! * `{"action":"allow"}` (or an empty 2xx body) — store as sent;
//! * `{"action":"reject","status":N}` — not stored; a version-2 client gets
//!   ACK status N (1–255, default [`STATUS_HOOK_REJECTED`]);
//! * `{"action":"replace","content":"…"}` — store the new content instead.
//!
//! A timeout, a non-2xx answer or an unreadable one counts as a failure and
//! `--hook-fail` decides: `open` allows, `closed` rejects with
//! [`STATUS_HOOK_UNAVAILABLE`].

use super::HookFail;
use super::{HookStats, Hooks};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// ACK status of a rejection whose answer named none.
pub const STATUS_HOOK_REJECTED: u8 = 70;
/// ACK status when the hook failed and `--hook-fail closed` applies.
pub const STATUS_HOOK_UNAVAILABLE: u8 = 71;
/// Largest replacement content (a client frame body is below 32 KiB and
/// carries ~40 bytes besides the content).
pub const MAX_CONTENT: usize = 32 * 1024 - 64;

/// Message kinds that can ask before they are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Im,
    GroupIm,
    Customer,
    RoomIm,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "im" => Kind::Im,
            "group_im" => Kind::GroupIm,
            "customer" => Kind::Customer,
            "room_im" => Kind::RoomIm,
            _ => return None,
        })
    }
}

/// What to do with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Refuse with this ACK status.
    Reject(u8),
    /// Store this content instead.
    Replace(Bytes),
}

/// The message as the hook sees it.
#[derive(Debug, Serialize)]
pub struct Outgoing<'a> {
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub kind: Kind,
    pub appid: i64,
    pub sender: i64,
    pub receiver: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver_appid: Option<i64>,
    pub device_id: i64,
    /// The content as text (invalid UTF-8 replaced).
    pub content: std::borrow::Cow<'a, str>,
    pub node: &'a str,
}

#[derive(Debug, Deserialize)]
struct Answer {
    action: String,
    #[serde(default)]
    status: Option<u8>,
    #[serde(default)]
    content: Option<String>,
}

/// Parses a hook answer.
fn parse(answer: &[u8]) -> Result<Verdict, String> {
    if answer.iter().all(u8::is_ascii_whitespace) {
        return Ok(Verdict::Allow);
    }
    let a: Answer = serde_json::from_slice(answer).map_err(|e| e.to_string())?;
    match a.action.as_str() {
        "allow" => Ok(Verdict::Allow),
        "reject" => Ok(Verdict::Reject(match a.status {
            None => STATUS_HOOK_REJECTED,
            Some(0) => return Err("reject with status 0".into()),
            Some(s) => s,
        })),
        "replace" => {
            let c = a.content.ok_or("replace without content")?;
            if c.len() > MAX_CONTENT {
                return Err(format!("replacement of {} bytes is too large", c.len()));
            }
            Ok(Verdict::Replace(Bytes::from(c)))
        }
        other => Err(format!("unknown action {other:?}")),
    }
}

impl Hooks {
    /// Asks the hook about one message (only for kinds in
    /// `--hook-before-send`; others are allowed without a request).
    pub async fn before_send(&self, msg: Outgoing<'_>) -> Verdict {
        let Some(client) = self.client.as_ref().filter(|_| self.wants_before(msg.kind)) else {
            return Verdict::Allow;
        };
        let body = match serde_json::to_vec(&msg) {
            Ok(b) => Bytes::from(b),
            Err(e) => return self.failed(&format!("encoding: {e}")),
        };
        let res = client.post("before_send", body, self.cfg.timeout).await;
        let verdict = res
            .map_err(|e| e.to_string())
            .and_then(|answer| parse(&answer).map_err(|e| format!("bad answer: {e}")));
        match verdict {
            Ok(v) => {
                HookStats::add(&self.stats.before_calls);
                match v {
                    Verdict::Reject(_) => HookStats::add(&self.stats.before_rejected),
                    Verdict::Replace(_) => HookStats::add(&self.stats.before_replaced),
                    Verdict::Allow => {}
                }
                v
            }
            Err(e) => self.failed(&e),
        }
    }

    fn failed(&self, why: &str) -> Verdict {
        let n = self
            .stats
            .before_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n.is_power_of_two() || n == 0 {
            tracing::warn!(error = why, failures = n + 1, policy = ?self.cfg.fail, "before-send hook failed");
        }
        match self.cfg.fail {
            HookFail::Open => Verdict::Allow,
            HookFail::Closed => Verdict::Reject(STATUS_HOOK_UNAVAILABLE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(parse(b""), Ok(Verdict::Allow));
        assert_eq!(parse(br#"{"action":"allow"}"#), Ok(Verdict::Allow));
        assert_eq!(
            parse(br#"{"action":"reject","status":90}"#),
            Ok(Verdict::Reject(90))
        );
        assert_eq!(
            parse(br#"{"action":"reject"}"#),
            Ok(Verdict::Reject(STATUS_HOOK_REJECTED))
        );
        assert!(parse(br#"{"action":"reject","status":0}"#).is_err());
        assert!(parse(br#"{"action":"reject","status":300}"#).is_err());
        assert_eq!(
            parse(br#"{"action":"replace","content":"***"}"#),
            Ok(Verdict::Replace(Bytes::from_static(b"***")))
        );
        assert!(parse(br#"{"action":"replace"}"#).is_err());
        assert!(parse(br#"{"action":"drop"}"#).is_err());
        assert!(parse(b"not json").is_err());
        let big = format!(
            r#"{{"action":"replace","content":"{}"}}"#,
            "x".repeat(MAX_CONTENT + 1)
        );
        assert!(parse(big.as_bytes()).is_err());
    }
}
