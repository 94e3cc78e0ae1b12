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
//! entry, and follows from there (the follower is [`crate::feed`]).

use crate::node::Node;
use crate::store::mysql_groups::MysqlGroupStore;
use std::collections::HashMap;
use std::sync::{Arc, Weak};

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
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("{k}={v:?} is not a number")),
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

/// The feed the group source follows.
pub const FEED: crate::feed::Feed = crate::feed::Feed {
    stream: STREAM,
    actions_key: ACTIONS_KEY,
};

/// Applies group events to one node.
pub struct GroupSink {
    pub node: Weak<Node>,
    pub store: Arc<MysqlGroupStore>,
}

impl crate::feed::FeedSink for GroupSink {
    fn apply(&self, id: &str, fields: &HashMap<String, String>) {
        let Some(node) = self.node.upgrade() else {
            return;
        };
        match parse_event(fields) {
            Ok(e) => apply(&node, &self.store, &e),
            Err(why) => tracing::warn!(id, error = %why, "group feed: ignored a bad entry"),
        }
    }

    fn gap(&self) {
        self.store.forget_all();
        if let Some(node) = self.node.upgrade() {
            node.groups.clear();
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
        assert_eq!(
            (e.action_id, e.previous_action_id, e.gid, e.member),
            (5, 4, 30, 2)
        );
        assert!(parse_event(&fields(&[("name", "group_create")])).is_err());
        assert!(parse_event(&fields(&[("group_id", "x")])).is_err());
    }
}
