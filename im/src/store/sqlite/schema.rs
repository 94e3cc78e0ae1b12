//! Database file layout: connection settings and the versioned schema.
//!
//! Every table is `WITHOUT ROWID` and clustered on the key it is looked up by,
//! so a queue's messages sit next to each other on disk and appending to a
//! queue touches only the rightmost leaf of its key range.

use super::SqliteOptions;
use crate::store::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// Schema version stored in `PRAGMA user_version`. Bump it (and add a
/// migration step in [`create_or_check`]) whenever the layout changes.
pub(super) const SCHEMA_VERSION: i64 = 1;

/// Name of the database file inside the data directory.
pub(super) const DB_FILE: &str = "ferry.db";

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS messages (
    appid     INTEGER NOT NULL,
    uid       INTEGER NOT NULL,
    id        INTEGER NOT NULL,
    cmd       INTEGER NOT NULL,
    flag      INTEGER NOT NULL,
    device_id INTEGER NOT NULL,
    body      BLOB    NOT NULL,
    PRIMARY KEY (appid, uid, id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS dedup (
    appid        INTEGER NOT NULL,
    sender       INTEGER NOT NULL,
    device_id    INTEGER NOT NULL,
    client_msgid INTEGER NOT NULL,
    receiver     INTEGER NOT NULL,
    msgids       BLOB    NOT NULL,
    created      INTEGER NOT NULL,
    PRIMARY KEY (appid, sender, device_id, client_msgid, receiver)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_created ON dedup (created);

CREATE TABLE IF NOT EXISTS sync_keys (
    appid    INTEGER NOT NULL,
    uid      INTEGER NOT NULL,
    sync_key INTEGER NOT NULL,
    PRIMARY KEY (appid, uid)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS group_sync_keys (
    appid    INTEGER NOT NULL,
    uid      INTEGER NOT NULL,
    gid      INTEGER NOT NULL,
    sync_key INTEGER NOT NULL,
    PRIMARY KEY (appid, uid, gid)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT    NOT NULL,
    platform  INTEGER NOT NULL,
    number    INTEGER NOT NULL UNIQUE,
    PRIMARY KEY (device_id, platform)
) WITHOUT ROWID;
";

/// Turns a SQLite error into the store's error type.
pub(super) fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Opens the read-write connection used by the writer thread, creating the
/// file and schema when missing.
pub(super) fn open_writer(dir: &Path, opts: &SqliteOptions) -> Result<Connection, StoreError> {
    let path = dir.join(DB_FILE);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(&path, flags).map_err(backend)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(backend)?;
    // page_size only takes effect before the first table is created.
    conn.pragma_update(None, "page_size", opts.page_size)
        .map_err(backend)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(backend)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "could not enable WAL journal mode (got {mode})"
        )));
    }
    // FULL: every commit fsyncs the WAL, so an ACK is never sent for data a
    // power cut could still lose.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(backend)?;
    conn.pragma_update(None, "wal_autocheckpoint", opts.wal_autocheckpoint)
        .map_err(backend)?;
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
        .map_err(backend)?;
    conn.pragma_update(None, "cache_size", -opts.cache_kib)
        .map_err(backend)?;
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(backend)?;
    conn.set_prepared_statement_cache_capacity(32);
    create_or_check(&conn)?;
    Ok(conn)
}

/// Opens one read-only connection for the read pool. WAL lets it read
/// concurrently with the writer and always see the last committed state.
pub(super) fn open_reader(dir: &Path, opts: &SqliteOptions) -> Result<Connection, StoreError> {
    let path = dir.join(DB_FILE);
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(&path, flags).map_err(backend)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(backend)?;
    conn.pragma_update(None, "cache_size", -(opts.cache_kib / 4).max(2048))
        .map_err(backend)?;
    conn.set_prepared_statement_cache_capacity(16);
    Ok(conn)
}

/// Creates the schema on an empty database, accepts the current version and
/// refuses a database written by a newer build (rather than corrupting it).
fn create_or_check(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(backend)?;
    match version {
        0 => {
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE;{SCHEMA_V1}PRAGMA user_version = {SCHEMA_VERSION};COMMIT;"
            ))
            .map_err(|e| {
                let _ = conn.execute_batch("ROLLBACK");
                backend(e)
            })?;
            Ok(())
        }
        SCHEMA_VERSION => Ok(()),
        v => Err(StoreError::Backend(format!(
            "database schema version {v} is not supported (this build knows {SCHEMA_VERSION})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_created_once_and_versioned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = SqliteOptions::default();
        let conn = open_writer(dir.path(), &opts).expect("open");
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(v, SCHEMA_VERSION);
        drop(conn);
        // Reopening an existing database is fine.
        let conn = open_writer(dir.path(), &opts).expect("reopen");
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("mode");
        assert_eq!(mode.to_ascii_lowercase(), "wal");
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .expect("sync");
        assert_eq!(sync, 2, "synchronous=FULL");
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = SqliteOptions::default();
        let conn = open_writer(dir.path(), &opts).expect("open");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("bump");
        drop(conn);
        assert!(matches!(
            open_writer(dir.path(), &opts),
            Err(StoreError::Backend(_))
        ));
    }
}
