//! Friendship and blacklist checks on peer messages (spec §3.11,
//! `--enable-friendship`, `--enable-blacklist`), read from gobelieve's MySQL
//! tables `friend` and `blacklist` (appid, uid, friend_uid):
//!
//! * friendship: no row (sender → receiver) → ACK status 1, no row
//!   (receiver → sender) → status 2;
//! * blacklist: a row (receiver → sender), i.e. the receiver blocked the
//!   sender → status 3.
//!
//! A pair's rows are read once and kept for 60 minutes; the app server's
//! `relationship_stream` (fields `name`, `app_id`, `uid`, `friend_uid`)
//! drops a pair as soon as it changes, and a gap in that feed drops every
//! pair, so a change applies to the next message on every node.

use crate::store::StoreError;
use mysql_async::prelude::Queryable;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub const STREAM: &str = "relationship_stream";
pub const ACTIONS_KEY: &str = "friends_actions";

/// The feed the checks follow.
pub const FEED: crate::feed::Feed = crate::feed::Feed {
    stream: STREAM,
    actions_key: ACTIONS_KEY,
};

const TTL: Duration = Duration::from_secs(3600);
const CACHE_MAX: usize = 200_000;

/// Rows between `lo` and `hi` (lo < hi) in one app.
#[derive(Debug, Clone, Copy, Default)]
struct Pair {
    /// friend rows (lo → hi), (hi → lo).
    friend: [bool; 2],
    /// blacklist rows (lo → hi), (hi → lo).
    block: [bool; 2],
}

/// Loaded pairs by (appid, lo, hi), with their load time.
type PairCache = HashMap<(i64, i64, i64), (Pair, Instant)>;

pub struct Relations {
    pool: mysql_async::Pool,
    pub friendship: bool,
    pub blacklist: bool,
    cache: Mutex<PairCache>,
    epoch: AtomicU64,
}

fn backend(e: mysql_async::Error) -> StoreError {
    StoreError::Backend(format!("mysql: {e}"))
}

/// Index of the direction `from → to` in a [`Pair`].
fn dir(from: i64, to: i64) -> usize {
    usize::from(from > to)
}

impl Relations {
    pub async fn connect(
        url: &str,
        friendship: bool,
        blacklist: bool,
    ) -> Result<Relations, StoreError> {
        let opts = mysql_async::Opts::from_url(url)
            .map_err(|e| StoreError::Invalid(format!("MySQL URL: {e}")))?;
        let pool = mysql_async::Pool::new(opts);
        let mut conn = pool.get_conn().await.map_err(backend)?;
        if friendship {
            conn.query_drop("SELECT 1 FROM friend LIMIT 1")
                .await
                .map_err(backend)?;
        }
        if blacklist {
            conn.query_drop("SELECT 1 FROM blacklist LIMIT 1")
                .await
                .map_err(backend)?;
        }
        drop(conn);
        Ok(Relations {
            pool,
            friendship,
            blacklist,
            cache: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
        })
    }

    /// The ACK status for a message `sender → receiver`: 0 = allowed.
    pub async fn status(&self, appid: i64, sender: i64, receiver: i64) -> Result<u8, StoreError> {
        if sender == receiver {
            return Ok(0);
        }
        let pair = self.pair(appid, sender, receiver).await?;
        if self.friendship {
            if !pair.friend[dir(sender, receiver)] {
                return Ok(ferry_common::protocol::ack::STATUS_NOT_MY_FRIEND);
            }
            if !pair.friend[dir(receiver, sender)] {
                return Ok(ferry_common::protocol::ack::STATUS_NOT_YOUR_FRIEND);
            }
        }
        if self.blacklist && pair.block[dir(receiver, sender)] {
            return Ok(ferry_common::protocol::ack::STATUS_IN_BLACKLIST);
        }
        Ok(0)
    }

    /// Forgets the pair (the next message reloads it).
    pub fn forget(&self, appid: i64, a: i64, b: i64) {
        let mut c = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        c.remove(&(appid, a.min(b), a.max(b)));
    }

    pub fn forget_all(&self) {
        let mut c = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        c.clear();
    }

    async fn pair(&self, appid: i64, a: i64, b: i64) -> Result<Pair, StoreError> {
        let (lo, hi) = (a.min(b), a.max(b));
        if let Some((p, at)) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(appid, lo, hi))
            && at.elapsed() < TTL
        {
            return Ok(*p);
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let mut conn = self.pool.get_conn().await.map_err(backend)?;
        let mut pair = Pair::default();
        for (table, enabled) in [("friend", self.friendship), ("blacklist", self.blacklist)] {
            if !enabled {
                continue;
            }
            let rows: Vec<(i64, i64)> = conn
                .exec(
                    format!(
                        "SELECT uid, friend_uid FROM {table} WHERE appid = ? AND \
                         ((uid = ? AND friend_uid = ?) OR (uid = ? AND friend_uid = ?))"
                    ),
                    (appid, lo, hi, hi, lo),
                )
                .await
                .map_err(backend)?;
            for (from, to) in rows {
                let slot = match table {
                    "friend" => &mut pair.friend,
                    _ => &mut pair.block,
                };
                slot[dir(from, to)] = true;
            }
        }
        let mut c = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if self.epoch.load(Ordering::Acquire) == epoch {
            if c.len() >= CACHE_MAX {
                c.clear();
            }
            c.insert((appid, lo, hi), (pair, Instant::now()));
        }
        Ok(pair)
    }
}

/// Applies `relationship_stream` entries.
pub struct RelationSink(pub Arc<Relations>);

impl crate::feed::FeedSink for RelationSink {
    fn apply(&self, id: &str, f: &HashMap<String, String>) {
        let int = |k: &str| f.get(k).and_then(|v| v.trim().parse::<i64>().ok());
        match (int("app_id"), int("uid"), int("friend_uid")) {
            (Some(appid), Some(uid), Some(friend)) => {
                self.0.forget(appid, uid, friend);
                tracing::info!(
                    name = f.get("name").map_or("", String::as_str),
                    appid,
                    uid,
                    friend_uid = friend,
                    "relationship change"
                );
            }
            _ => tracing::warn!(
                id,
                "relationship feed: ignored an entry without app_id/uid/friend_uid"
            ),
        }
    }

    fn gap(&self) {
        self.0.forget_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_index_the_pair() {
        assert_eq!(dir(1, 2), 0);
        assert_eq!(dir(2, 1), 1);
    }
}
