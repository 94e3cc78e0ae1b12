//! [`GroupStore`] on SQLite: its own file `<dir>/groups.sqlite3` (WAL,
//! `synchronous=FULL`), one connection behind a mutex, every change one
//! transaction.

use crate::store::group::{Group, GroupStore, Member, NewGroup, Standing, Update, new_version};
use crate::store::{StoreError, StoreFuture};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

const FILE: &str = "groups.sqlite3";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS groups (
  appid INTEGER NOT NULL, gid INTEGER NOT NULL, super INTEGER NOT NULL,
  version INTEGER NOT NULL,
  PRIMARY KEY (appid, gid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
  appid INTEGER NOT NULL, gid INTEGER NOT NULL, uid INTEGER NOT NULL,
  joined INTEGER NOT NULL, mute INTEGER NOT NULL,
  PRIMARY KEY (appid, gid, uid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_meta (
  name TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

/// The SQLite group store; see the module docs.
#[derive(Clone)]
pub struct SqliteGroupStore {
    conn: Arc<Mutex<Connection>>,
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteGroupStore {
    pub fn open(dir: &Path) -> Result<SqliteGroupStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let conn = Connection::open(dir.join(FILE)).map_err(backend)?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        Ok(SqliteGroupStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` in one transaction on the blocking pool.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let conn = self.conn.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut c = conn.lock().unwrap_or_else(PoisonError::into_inner);
                let tx = c.transaction().map_err(backend)?;
                let out = f(&tx)?;
                tx.commit().map_err(backend)?;
                Ok(out)
            })
            .await
            .map_err(|e| StoreError::Backend(format!("group store task failed: {e}")))?
        })
    }
}

/// `(super, version)` of an existing group.
fn head(tx: &Connection, appid: i64, gid: i64) -> Result<Option<(bool, i64)>, StoreError> {
    tx.query_row(
        "SELECT super, version FROM groups WHERE appid = ?1 AND gid = ?2",
        params![appid, gid],
        |r| Ok((r.get::<_, i64>(0)? != 0, r.get::<_, i64>(1)?)),
    )
    .optional()
    .map_err(backend)
}

fn is_super(tx: &Connection, appid: i64, gid: i64) -> Result<Option<bool>, StoreError> {
    Ok(head(tx, appid, gid)?.map(|h| h.0))
}

/// Gives the group a new version; false if it does not exist.
fn bump(tx: &Connection, appid: i64, gid: i64) -> Result<bool, StoreError> {
    let n = tx
        .execute(
            "UPDATE groups SET version = ?3 WHERE appid = ?1 AND gid = ?2",
            params![appid, gid, new_version()],
        )
        .map_err(backend)?;
    Ok(n > 0)
}

fn member(tx: &Connection, appid: i64, gid: i64, uid: i64) -> Result<Option<Member>, StoreError> {
    tx.query_row(
        "SELECT joined, mute FROM members WHERE appid = ?1 AND gid = ?2 AND uid = ?3",
        params![appid, gid, uid],
        |r| {
            Ok(Member {
                uid,
                joined: r.get(0)?,
                mute: r.get::<_, i64>(1)? != 0,
            })
        },
    )
    .optional()
    .map_err(backend)
}

fn add(tx: &Connection, appid: i64, gid: i64, uids: &[i64], joined: i64) -> Result<(), StoreError> {
    let mut st = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO members (appid, gid, uid, joined, mute) VALUES (?1, ?2, ?3, ?4, 0)",
        )
        .map_err(backend)?;
    for &uid in uids {
        st.execute(params![appid, gid, uid, joined])
            .map_err(backend)?;
    }
    Ok(())
}

impl GroupStore for SqliteGroupStore {
    fn create(&self, g: NewGroup) -> StoreFuture<'_, Option<i64>> {
        self.run(move |tx| {
            let gid = match g.gid {
                Some(gid) => {
                    if is_super(tx, g.appid, gid)?.is_some() {
                        return Ok(None);
                    }
                    gid
                }
                None => {
                    let last: i64 = tx
                        .query_row(
                            "SELECT value FROM group_meta WHERE name = 'next_gid'",
                            [],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(backend)?
                        .unwrap_or(0);
                    let mut next = last + 1;
                    while is_super(tx, g.appid, next)?.is_some() {
                        next += 1;
                    }
                    tx.execute(
                        "INSERT OR REPLACE INTO group_meta (name, value) VALUES ('next_gid', ?1)",
                        params![next],
                    )
                    .map_err(backend)?;
                    next
                }
            };
            tx.execute(
                "INSERT INTO groups (appid, gid, super, version) VALUES (?1, ?2, ?3, ?4)",
                params![g.appid, gid, g.is_super as i64, new_version()],
            )
            .map_err(backend)?;
            add(tx, g.appid, gid, &g.members, g.joined)?;
            Ok(Some(gid))
        })
    }

    fn group(&self, appid: i64, gid: i64) -> StoreFuture<'_, Option<Group>> {
        self.run(move |tx| {
            let Some((is_super, version)) = head(tx, appid, gid)? else {
                return Ok(None);
            };
            let mut st = tx
                .prepare_cached(
                    "SELECT uid, joined, mute FROM members WHERE appid = ?1 AND gid = ?2 ORDER BY uid",
                )
                .map_err(backend)?;
            let members = st
                .query_map(params![appid, gid], |r| {
                    Ok(Member {
                        uid: r.get(0)?,
                        joined: r.get(1)?,
                        mute: r.get::<_, i64>(2)? != 0,
                    })
                })
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            Ok(Some(Group {
                appid,
                gid,
                is_super,
                members,
                version,
            }))
        })
    }

    fn standing(&self, appid: i64, gid: i64, uid: i64) -> StoreFuture<'_, Standing> {
        self.run(move |tx| {
            Ok(match head(tx, appid, gid)? {
                None => Standing::NoGroup,
                Some((is_super, version)) => match member(tx, appid, gid, uid)? {
                    Some(member) => Standing::Member {
                        is_super,
                        member,
                        version,
                    },
                    None => Standing::NotMember { is_super, version },
                },
            })
        })
    }

    fn delete(&self, appid: i64, gid: i64) -> StoreFuture<'_, bool> {
        self.run(move |tx| {
            let n = tx
                .execute(
                    "DELETE FROM groups WHERE appid = ?1 AND gid = ?2",
                    params![appid, gid],
                )
                .map_err(backend)?;
            tx.execute(
                "DELETE FROM members WHERE appid = ?1 AND gid = ?2",
                params![appid, gid],
            )
            .map_err(backend)?;
            Ok(n > 0)
        })
    }

    fn add_members(
        &self,
        appid: i64,
        gid: i64,
        uids: Vec<i64>,
        joined: i64,
    ) -> StoreFuture<'_, Update> {
        self.run(move |tx| {
            if !bump(tx, appid, gid)? {
                return Ok(Update::NoGroup);
            }
            add(tx, appid, gid, &uids, joined)?;
            Ok(Update::Done)
        })
    }

    fn remove_member(&self, appid: i64, gid: i64, uid: i64) -> StoreFuture<'_, Update> {
        self.run(move |tx| {
            if !bump(tx, appid, gid)? {
                return Ok(Update::NoGroup);
            }
            tx.execute(
                "DELETE FROM members WHERE appid = ?1 AND gid = ?2 AND uid = ?3",
                params![appid, gid, uid],
            )
            .map_err(backend)?;
            Ok(Update::Done)
        })
    }

    fn set_mute(&self, appid: i64, gid: i64, uid: i64, mute: bool) -> StoreFuture<'_, Update> {
        self.run(move |tx| {
            if !bump(tx, appid, gid)? {
                return Ok(Update::NoGroup);
            }
            let n = tx
                .execute(
                    "UPDATE members SET mute = ?4 WHERE appid = ?1 AND gid = ?2 AND uid = ?3",
                    params![appid, gid, uid, mute as i64],
                )
                .map_err(backend)?;
            Ok(if n == 0 {
                Update::NoMember
            } else {
                Update::Done
            })
        })
    }

    fn upgrade(&self, appid: i64, gid: i64) -> StoreFuture<'_, Update> {
        self.run(move |tx| {
            let n = tx
                .execute(
                    "UPDATE groups SET super = 1, version = ?3 WHERE appid = ?1 AND gid = ?2",
                    params![appid, gid, new_version()],
                )
                .map_err(backend)?;
            Ok(if n == 0 {
                Update::NoGroup
            } else {
                Update::Done
            })
        })
    }
}
