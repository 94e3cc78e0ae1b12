//! Groups read from a gobelieve deployment's MySQL database (`--mysql`,
//! `mysqldb_datasource`): tables `group` (id, appid, super, deleted) and
//! `group_member` (group_id, uid, timestamp = join time, mute, deleted), rows
//! with `deleted = 0` only (spec §3.7, §11.2). The app server owns these
//! tables; Ferry never writes them, so every change operation answers
//! [`StoreError::ReadOnly`] (the HTTP API turns it into a 409).
//!
//! A group is loaded on first use and kept in memory; the
//! `group_manager_stream` follower ([`crate::groups::feed`]) drops a group
//! from here when the app server announces a change to it, and everything
//! after a gap in the feed. The next use reloads the group from the tables,
//! so join times are the database's, not the im's clock at event time
//! (gobelieve's defect §10.27). Each load gets a fresh version, which is how
//! the node's member-list cache ([`crate::groups::Groups`]) notices.

use super::group::{Group, GroupStore, Member, NewGroup, Standing, Update, new_version};
use super::{StoreError, StoreFuture};
use ferry_common::gobelieve::percent_encode;
use mysql_async::prelude::Queryable;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Most groups kept; past it the map is emptied (reloaded on next use).
const CACHE_MAX: usize = 100_000;

/// What the app server manages; Ferry only reads.
pub const READ_ONLY: &str =
    "groups are managed in MySQL by the app server (tables group/group_member), not by Ferry";

/// Loaded groups by (appid, gid); `None` = known not to exist.
type GroupCache = HashMap<(i64, i64), Option<Arc<Group>>>;

pub struct MysqlGroupStore {
    pool: mysql_async::Pool,
    cache: Mutex<GroupCache>,
    /// Bumped by every drop, so a load that raced with one is not kept.
    epoch: std::sync::atomic::AtomicU64,
}

/// Turns a Go MySQL DSN (`user:pass@tcp(host:port)/db?params`) or a
/// `mysql://` URL into the URL mysql_async takes. Go driver parameters
/// (`charset`, `parseTime`, …) are dropped: they have no meaning here.
pub fn mysql_url(dsn: &str) -> Result<String, String> {
    let dsn = dsn.trim();
    if dsn.starts_with("mysql://") {
        return Ok(dsn.to_string());
    }
    let bad = |why: &str| {
        format!(
            "MySQL DSN: {why}; expected user:password@tcp(host:port)/dbname or mysql://user:password@host:port/dbname"
        )
    };
    let (auth, rest) = dsn.rsplit_once('@').ok_or_else(|| bad("no '@'"))?;
    let (user, pass) = match auth.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (auth, None),
    };
    let (addr, path) = rest.split_once('/').ok_or_else(|| bad("no /dbname"))?;
    let host = match addr {
        "" => "127.0.0.1:3306".to_string(),
        a => {
            let inner = a
                .strip_prefix("tcp(")
                .and_then(|a| a.strip_suffix(')'))
                .ok_or_else(|| bad("only tcp(host:port) addresses are supported"))?;
            if inner.contains(':') {
                inner.to_string()
            } else {
                format!("{inner}:3306")
            }
        }
    };
    let db = path.split('?').next().unwrap_or("");
    if db.is_empty() {
        return Err(bad("no database name"));
    }
    let mut url = format!("mysql://{}", percent_encode(user));
    if let Some(p) = pass {
        url.push(':');
        url.push_str(&percent_encode(p));
    }
    url.push_str(&format!("@{host}/{db}"));
    Ok(url)
}

fn backend(e: mysql_async::Error) -> StoreError {
    StoreError::Backend(format!("mysql: {e}"))
}

impl MysqlGroupStore {
    /// Connects (one query, so a wrong address or password stops the start).
    pub async fn connect(url: &str) -> Result<MysqlGroupStore, StoreError> {
        let opts = mysql_async::Opts::from_url(url)
            .map_err(|e| StoreError::Invalid(format!("MySQL URL: {e}")))?;
        let pool = mysql_async::Pool::new(opts);
        let mut conn = pool.get_conn().await.map_err(backend)?;
        conn.query_drop("SELECT 1 FROM `group` LIMIT 1")
            .await
            .map_err(backend)?;
        drop(conn);
        Ok(MysqlGroupStore {
            pool,
            cache: Mutex::new(HashMap::new()),
            epoch: Default::default(),
        })
    }

    /// Forgets one group (the next use reloads it).
    pub fn forget(&self, appid: i64, gid: i64) {
        let mut c = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        c.remove(&(appid, gid));
    }

    /// Forgets every group (after a gap in the change feed).
    pub fn forget_all(&self) {
        let mut c = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        c.clear();
    }

    async fn load(&self, appid: i64, gid: i64) -> Result<Option<Arc<Group>>, StoreError> {
        if let Some(g) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(appid, gid))
        {
            return Ok(g.clone());
        }
        let epoch = self.epoch.load(std::sync::atomic::Ordering::Acquire);
        let mut conn = self.pool.get_conn().await.map_err(backend)?;
        let row: Option<(i64, Option<i64>)> = conn
            .exec_first(
                "SELECT appid, super FROM `group` WHERE id = ? AND deleted = 0",
                (gid,),
            )
            .await
            .map_err(backend)?;
        let group = match row {
            // A group id of another app is not this app's group.
            Some((app, is_super)) if app == appid => {
                let rows: Vec<(i64, Option<i64>, Option<i64>)> = conn
                    .exec(
                        "SELECT uid, timestamp, mute FROM group_member \
                         WHERE group_id = ? AND deleted = 0 ORDER BY uid",
                        (gid,),
                    )
                    .await
                    .map_err(backend)?;
                let mut members: Vec<Member> = rows
                    .into_iter()
                    .map(|(uid, ts, mute)| Member {
                        uid,
                        joined: ts.unwrap_or(0),
                        mute: mute.unwrap_or(0) != 0,
                    })
                    .collect();
                members.dedup_by_key(|m| m.uid);
                Some(Arc::new(Group {
                    appid,
                    gid,
                    is_super: is_super.unwrap_or(0) != 0,
                    members,
                    version: new_version(),
                }))
            }
            _ => None,
        };
        let mut c = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if self.epoch.load(std::sync::atomic::Ordering::Acquire) == epoch {
            if c.len() >= CACHE_MAX {
                c.clear();
            }
            c.insert((appid, gid), group.clone());
        }
        Ok(group)
    }
}

fn read_only<T: Send + 'static>() -> StoreFuture<'static, T> {
    Box::pin(async { Err(StoreError::ReadOnly(READ_ONLY.into())) })
}

impl GroupStore for MysqlGroupStore {
    fn create(&self, _g: NewGroup) -> StoreFuture<'_, Option<i64>> {
        read_only()
    }

    fn group(&self, appid: i64, gid: i64) -> StoreFuture<'_, Option<Group>> {
        Box::pin(async move { Ok(self.load(appid, gid).await?.map(|g| (*g).clone())) })
    }

    fn standing(&self, appid: i64, gid: i64, uid: i64) -> StoreFuture<'_, Standing> {
        Box::pin(async move {
            let Some(g) = self.load(appid, gid).await? else {
                return Ok(Standing::NoGroup);
            };
            Ok(match g.member(uid) {
                Some(m) => Standing::Member {
                    is_super: g.is_super,
                    member: *m,
                    version: g.version,
                },
                None => Standing::NotMember {
                    is_super: g.is_super,
                    version: g.version,
                },
            })
        })
    }

    fn delete(&self, _appid: i64, _gid: i64) -> StoreFuture<'_, bool> {
        read_only()
    }

    fn add_members(
        &self,
        _appid: i64,
        _gid: i64,
        _uids: Vec<i64>,
        _joined: i64,
    ) -> StoreFuture<'_, Update> {
        read_only()
    }

    fn remove_member(&self, _appid: i64, _gid: i64, _uid: i64) -> StoreFuture<'_, Update> {
        read_only()
    }

    fn set_mute(&self, _appid: i64, _gid: i64, _uid: i64, _mute: bool) -> StoreFuture<'_, Update> {
        read_only()
    }

    fn upgrade(&self, _appid: i64, _gid: i64) -> StoreFuture<'_, Update> {
        read_only()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_dsns_become_urls() {
        assert_eq!(
            mysql_url("root:123456@tcp(127.0.0.1:3306)/gobelieve").as_deref(),
            Ok("mysql://root:123456@127.0.0.1:3306/gobelieve")
        );
        assert_eq!(
            mysql_url("im:p@ss:w@tcp(db.local)/gb?charset=utf8mb4&parseTime=true").as_deref(),
            Ok("mysql://im:p%40ss%3Aw@db.local:3306/gb")
        );
        assert_eq!(
            mysql_url("root@/gobelieve").as_deref(),
            Ok("mysql://root@127.0.0.1:3306/gobelieve")
        );
        assert_eq!(
            mysql_url("mysql://u:p@h:1/d").as_deref(),
            Ok("mysql://u:p@h:1/d")
        );
        assert!(mysql_url("root@unix(/tmp/sock)/gb").is_err());
        assert!(mysql_url("root@tcp(h:1)/").is_err());
        assert!(mysql_url("nonsense").is_err());
    }
}
