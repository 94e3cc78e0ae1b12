//! Following gobelieve's group change feed (spec §3.7) with the MySQL group
//! source: the app server writes the `group` / `group_member` tables, then
//! `INCR groups_actions_id`, `SET groups_actions "<prev>:<id>"` and `XADD
//! group_manager_stream` an entry with `action_id`, `previous_action_id`,
//! `name`, `app_id`, `group_id`, `member_id`, `super`, `mute`.
//!
//! Every im node follows the stream itself (no imr involved). Each of the
//! seven events (`group_create`, `group_disband`, `group_upgrade`,
//! `group_changed`, `group_member_add`, `group_member_remove`,
//! `group_member_mute`) drops that group from this node's memory; its next
//! use reloads it from the tables the app server has just written, so the
//! member list, join times, mutes and the super flag are the database's.
//! When an entry's `previous_action_id` is not the last `action_id` seen,
//! entries were lost (trimmed stream, app server restart) and every group is
//! dropped. At start the node reads `groups_actions` and the stream's last
//! entry, and follows from there.

use crate::node::Node;
use crate::store::mysql_groups::MysqlGroupStore;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

pub const STREAM: &str = "group_manager_stream";
pub const ACTIONS_KEY: &str = "groups_actions";

/// The event names gobelieve's API server writes.
pub const EVENTS: [&str; 7] = [
    "group_create",
    "group_disband",
    "group_upgrade",
    "group_changed",
    "group_member_add",
    "group_member_remove",
    "group_member_mute",
];

/// One stream entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub action_id: i64,
    pub previous_action_id: i64,
    pub name: String,
    pub appid: i64,
    pub gid: i64,
    pub member: i64,
}

/// Parses an entry's fields; a missing or malformed id is an error.
pub fn parse_event(f: &HashMap<String, String>) -> Result<Event, String> {
    let int = |k: &str| -> Result<i64, String> {
        match f.get(k) {
            None => Ok(0),
            Some(v) if v.trim().is_empty() => Ok(0),
            Some(v) => v.trim().parse().map_err(|_| format!("{k}={v:?} is not a number")),
        }
    };
    let name = f.get("name").cloned().unwrap_or_default();
    let e = Event {
        action_id: int("action_id")?,
        previous_action_id: int("previous_action_id")?,
        appid: int("app_id")?,
        gid: int("group_id")?,
        member: int("member_id")?,
        name,
    };
    if e.gid == 0 {
        return Err("no group_id".into());
    }
    Ok(e)
}

/// `groups_actions` = `"<prev>:<current>"`: the current action id.
pub fn parse_actions(v: &str) -> Option<i64> {
    v.split_once(':')?.1.trim().parse().ok()
}

/// The follower's position and gap detection.
#[derive(Debug, Default)]
pub struct Position {
    /// Last stream entry id read (`0-0`: from the start).
    pub last_id: String,
    /// Last action id seen, `None` before the first.
    pub last_action: Option<i64>,
}

impl Position {
    /// Records `e`; true when entries were missed before it.
    pub fn advance(&mut self, e: &Event) -> bool {
        let gap = self
            .last_action
            .is_some_and(|last| e.previous_action_id != last);
        self.last_action = Some(e.action_id);
        gap
    }
}

/// Follows the stream until the node is gone or shuts down; reconnects with
/// capped backoff (the position is kept, so nothing still in the stream is
/// missed).
pub async fn follow(node: Weak<Node>, store: Arc<MysqlGroupStore>, redis_url: String) {
    let Some(shutdown) = node.upgrade().map(|n| n.shutdown.clone()) else {
        return;
    };
    let client = match redis::Client::open(redis_url.as_str()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "group feed: bad Redis URL; group changes are not followed");
            return;
        }
    };
    let mut pos: Option<Position> = None;
    let mut backoff = Duration::from_millis(200);
    loop {
        let run = run(&node, &store, &client, &mut pos);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = run => match r {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, retry_in = ?backoff, "group feed down"),
            },
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
    node: &Weak<Node>,
    store: &MysqlGroupStore,
    client: &redis::Client,
    pos: &mut Option<Position>,
) -> redis::RedisResult<()> {
    // XREAD BLOCK needs its own connection with no response timeout.
    let cfg = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await?;
    if pos.is_none() {
        let actions: Option<String> = redis::cmd("GET")
            .arg(ACTIONS_KEY)
            .query_async(&mut conn)
            .await?;
        let last: Vec<(String, HashMap<String, String>)> = redis::cmd("XREVRANGE")
            .arg(STREAM)
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
        tracing::info!(stream = STREAM, last_id = %p.last_id, last_action = ?p.last_action, "following group changes");
        *pos = Some(p);
    }
    loop {
        let last_id = pos.as_ref().map_or("0-0".to_string(), |p| p.last_id.clone());
        let reply: Option<Entries> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1000)
            .arg("BLOCK")
            .arg(60_000)
            .arg("STREAMS")
            .arg(STREAM)
            .arg(&last_id)
            .query_async(&mut conn)
            .await?;
        let Some(node) = node.upgrade() else {
            return Ok(());
        };
        for (_, entries) in reply.unwrap_or_default() {
            for (id, fields) in entries {
                let p = pos.get_or_insert_with(Position::default);
                p.last_id = id.clone();
                let e = match parse_event(&fields) {
                    Ok(e) => e,
                    Err(why) => {
                        tracing::warn!(id = %id, error = %why, "group feed: ignored a bad entry");
                        continue;
                    }
                };
                if p.advance(&e) {
                    tracing::warn!(
                        action_id = e.action_id,
                        previous_action_id = e.previous_action_id,
                        "group feed gap: every cached group is dropped"
                    );
                    store.forget_all();
                    node.groups.clear();
                }
                apply(&node, store, &e);
            }
        }
    }
}

/// Drops the group here; the next use reloads it from MySQL.
fn apply(node: &Node, store: &MysqlGroupStore, e: &Event) {
    if !EVENTS.contains(&e.name.as_str()) {
        tracing::warn!(name = %e.name, gid = e.gid, "group feed: unknown event, group reloaded anyway");
    }
    store.forget(e.appid, e.gid);
    node.groups.invalidate(e.appid, e.gid);
    tracing::info!(
        event = %e.name,
        appid = e.appid,
        gid = e.gid,
        member = e.member,
        action_id = e.action_id,
        "group change"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn entries_parse() {
        let e = parse_event(&fields(&[
            ("action_id", "5"),
            ("previous_action_id", "4"),
            ("name", "group_member_add"),
            ("app_id", "7"),
            ("group_id", "30"),
            ("member_id", "2"),
            ("super", "0"),
        ]))
        .expect("valid");
        assert_eq!((e.action_id, e.previous_action_id, e.gid, e.member), (5, 4, 30, 2));
        assert!(parse_event(&fields(&[("name", "group_create")])).is_err());
        assert!(parse_event(&fields(&[("group_id", "x")])).is_err());
        assert_eq!(parse_actions("4:5"), Some(5));
        assert_eq!(parse_actions("5"), None);
    }

    #[test]
    fn gaps_are_detected() {
        let ev = |prev, id| Event {
            action_id: id,
            previous_action_id: prev,
            name: "group_changed".into(),
            appid: 7,
            gid: 1,
            member: 0,
        };
        let mut p = Position::default();
        assert!(!p.advance(&ev(0, 1)), "first entry after a start without actions");
        assert!(!p.advance(&ev(1, 2)));
        assert!(p.advance(&ev(5, 6)), "3..5 were missed");
        assert!(!p.advance(&ev(6, 7)));
    }
}
