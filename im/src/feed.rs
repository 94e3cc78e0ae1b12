//! Following one of gobelieve's change feeds on Redis: the app server writes
//! its MySQL tables, then `SET <actions_key> "<prev>:<id>"` and `XADD
//! <stream>` an entry carrying `action_id`, `previous_action_id` and the
//! change. Used for `group_manager_stream` (§3.7, [`crate::groups::feed`])
//! and `relationship_stream` (§3.11, [`crate::relations`]).
//!
//! At start the follower reads the actions key and the stream's last entry
//! and reads on from there (XREAD BLOCK on its own connection). When an
//! entry's `previous_action_id` is not the last `action_id` seen, entries
//! were lost and the sink is told to forget everything it cached. After a
//! Redis error it reconnects with capped backoff and goes on from the last
//! entry read, so nothing still in the stream is missed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Which feed.
#[derive(Debug, Clone, Copy)]
pub struct Feed {
    pub stream: &'static str,
    pub actions_key: &'static str,
}

/// What a feed drives.
pub trait FeedSink: Send + Sync + 'static {
    /// One entry's fields (all of them, ids included).
    fn apply(&self, id: &str, fields: &HashMap<String, String>);
    /// Entries were missed: forget every cached value.
    fn gap(&self);
}

/// `"<prev>:<current>"`: the current action id.
pub fn parse_actions(v: &str) -> Option<i64> {
    v.split_once(':')?.1.trim().parse().ok()
}

/// The follower's position and gap detection.
#[derive(Debug)]
pub struct Position {
    /// Last stream entry id read (`0-0`: from the start).
    pub last_id: String,
    /// Last action id seen, `None` before the first.
    pub last_action: Option<i64>,
}

impl Position {
    /// Records an entry's action ids; true when entries were missed before it.
    pub fn advance(&mut self, previous_action_id: i64, action_id: i64) -> bool {
        let gap = self
            .last_action
            .is_some_and(|last| previous_action_id != last);
        self.last_action = Some(action_id);
        gap
    }
}

fn action(fields: &HashMap<String, String>, key: &str) -> i64 {
    fields
        .get(key)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Follows `feed` until `shutdown`.
pub async fn follow(
    shutdown: CancellationToken,
    redis_url: String,
    feed: Feed,
    sink: Arc<dyn FeedSink>,
) {
    let client = match redis::Client::open(redis_url.as_str()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(stream = feed.stream, error = %e, "bad Redis URL; changes are not followed");
            return;
        }
    };
    let mut pos: Option<Position> = None;
    let mut backoff = Duration::from_millis(200);
    loop {
        let run = run(&client, feed, &*sink, &mut pos);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            Err(e) = run => {
                tracing::warn!(stream = feed.stream, error = %e, retry_in = ?backoff, "change feed down");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

type Entries = Vec<(String, Vec<(String, HashMap<String, String>)>)>;

async fn run(
    client: &redis::Client,
    feed: Feed,
    sink: &dyn FeedSink,
    pos: &mut Option<Position>,
) -> redis::RedisResult<()> {
    // XREAD BLOCK needs its own connection with no response timeout.
    let cfg = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await?;
    if pos.is_none() {
        let actions: Option<String> = redis::cmd("GET")
            .arg(feed.actions_key)
            .query_async(&mut conn)
            .await?;
        let last: Vec<(String, HashMap<String, String>)> = redis::cmd("XREVRANGE")
            .arg(feed.stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await?;
        let p = Position {
            last_id: last
                .first()
                .map_or_else(|| "0-0".to_string(), |(id, _)| id.clone()),
            last_action: actions.as_deref().and_then(parse_actions),
        };
        tracing::info!(stream = feed.stream, last_id = %p.last_id, last_action = ?p.last_action, "following changes");
        *pos = Some(p);
    }
    loop {
        let Some(p) = pos.as_mut() else {
            return Ok(());
        };
        let reply: Option<Entries> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1000)
            .arg("BLOCK")
            .arg(60_000)
            .arg("STREAMS")
            .arg(feed.stream)
            .arg(&p.last_id)
            .query_async(&mut conn)
            .await?;
        for (_, entries) in reply.unwrap_or_default() {
            for (id, fields) in entries {
                p.last_id = id.clone();
                let (prev, cur) = (
                    action(&fields, "previous_action_id"),
                    action(&fields, "action_id"),
                );
                if p.advance(prev, cur) {
                    tracing::warn!(
                        stream = feed.stream,
                        action_id = cur,
                        previous_action_id = prev,
                        "change feed gap: every cached value is dropped"
                    );
                    sink.gap();
                }
                sink.apply(&id, &fields);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_key() {
        assert_eq!(parse_actions("4:5"), Some(5));
        assert_eq!(parse_actions("5"), None);
        assert_eq!(parse_actions("4:x"), None);
    }

    #[test]
    fn gaps_are_detected() {
        let mut p = Position {
            last_id: "0-0".into(),
            last_action: None,
        };
        assert!(
            !p.advance(0, 1),
            "first entry after a start without actions"
        );
        assert!(!p.advance(1, 2));
        assert!(p.advance(5, 6), "3..5 were missed");
        assert!(!p.advance(6, 7));
    }
}
