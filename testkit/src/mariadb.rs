//! A throwaway MariaDB (`mariadbd` from Debian's `mariadb-server`) on a free
//! loopback port with a temporary data dir and gobelieve's schema
//! (`contrib/gobelieve/db.sql`) in database `gobelieve`. It runs with
//! `--skip-grant-tables` (no accounts to set up: it only listens on
//! loopback and lives as long as one test).

use crate::net::{free_port, wait_listening};
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

pub struct MariaDb {
    child: Option<Child>,
    pub port: u16,
    tmp: tempfile::TempDir,
}

impl MariaDb {
    pub fn start() -> MariaDb {
        let tmp = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let data = tmp.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        let log = std::fs::File::create(tmp.path().join("mariadb.log")).expect("log");
        // Debian installs it in /usr/sbin, which a non-login PATH may lack.
        let bin = ["/usr/sbin/mariadbd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("mariadbd");
        let mut child = Command::new(bin)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", tmp.path().join("sock").display()))
            .arg(format!("--pid-file={}", tmp.path().join("pid").display()))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-grant-tables",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
                "--innodb-log-file-size=8M",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mariadbd not found: apt-get install mariadb-server");
        wait_listening(
            SocketAddr::from(([127, 0, 0, 1], port)),
            &mut child,
            "mariadbd",
        );
        let db = MariaDb {
            child: Some(child),
            port,
            tmp,
        };
        let schema = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../contrib/gobelieve/db.sql"
        ))
        .expect("schema");
        db.sql_in(None, "CREATE DATABASE gobelieve CHARACTER SET utf8");
        db.exec(&schema);
        db
    }

    /// `mysql://` URL of database `gobelieve`.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/gobelieve", self.port)
    }

    /// gobelieve's Go DSN form of the same.
    pub fn go_dsn(&self) -> String {
        format!("root:@tcp(127.0.0.1:{})/gobelieve", self.port)
    }

    /// Runs SQL in database `gobelieve`; panics with the client's error.
    pub fn exec(&self, sql: &str) -> String {
        self.sql_in(Some("gobelieve"), sql)
    }

    fn sql_in(&self, db: Option<&str>, sql: &str) -> String {
        let mut cmd = Command::new("mariadb");
        cmd.args(["--no-defaults", "-h127.0.0.1", "-uroot", "-N", "-B"])
            .arg(format!("-P{}", self.port));
        if let Some(db) = db {
            cmd.arg(db);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mariadb client");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(sql.as_bytes())
            .expect("write sql");
        let out = child.wait_with_output().expect("mariadb client");
        assert!(
            out.status.success(),
            "SQL failed: {sql}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("mariadb.log")).unwrap_or_default()
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
