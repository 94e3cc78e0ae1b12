//! Test harness: starts real `ferry` and `redis-server` processes on free
//! loopback ports, waits until they accept connections, and kills them on drop.
#![allow(dead_code)]

pub mod hook;
mod imr;
#[allow(unused_imports)]
pub use ferry_testkit::mariadb::MariaDb;
#[allow(unused_imports)]
pub use imr::{Imr, LINK_SECRET, cluster_im, http_get, http_post, wait_until};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const SECRET: &str = "ferry-test-secret";
pub const APPID: i64 = 7;

#[allow(unused_imports)]
pub use ferry_testkit::net::{free_port, try_wait_listening, wait_listening};

pub fn token(uid: i64) -> String {
    token_for(APPID, uid)
}

pub fn token_for(appid: i64, uid: i64) -> String {
    ferry_common::token::sign(
        &ferry_common::token::Claims {
            appid,
            uid,
            exp: None,
            nbf: None,
        },
        SECRET.as_bytes(),
    )
}

/// A `ferry im` process on its own data dir and ports.
pub struct Im {
    child: Option<Child>,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub tcp: SocketAddr,
    pub http: SocketAddr,
    /// WebSocket listener (`/ws`).
    pub ws: SocketAddr,
    pub extra: Vec<String>,
}

pub fn ferry_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferry")
}

impl Im {
    /// Like [`Im::start`] without starting: the test can prepare the data
    /// dir (e.g. mount a tiny filesystem on it), then call [`Im::launch`].
    pub fn prepare(extra: &[&str]) -> Im {
        let tmp = tempfile::tempdir().expect("tempdir");
        Im {
            child: None,
            dir: tmp.path().to_path_buf(),
            _tmp: Some(tmp),
            tcp: SocketAddr::from(([127, 0, 0, 1], free_port())),
            http: SocketAddr::from(([127, 0, 0, 1], free_port())),
            ws: SocketAddr::from(([127, 0, 0, 1], free_port())),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn launch(&mut self) {
        self.spawn();
    }

    /// Starts a single node with the test JWT secret and extra flags.
    pub fn start(extra: &[&str]) -> Im {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut im = Im {
            child: None,
            dir,
            _tmp: Some(tmp),
            tcp: SocketAddr::from(([127, 0, 0, 1], free_port())),
            http: SocketAddr::from(([127, 0, 0, 1], free_port())),
            ws: SocketAddr::from(([127, 0, 0, 1], free_port())),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        im.spawn();
        im
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("im.log"))
            .expect("log file");
        let mut child = Command::new(ferry_bin())
            .arg("im")
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--listen")
            .arg(self.tcp.to_string())
            .arg("--http-listen")
            .arg(self.http.to_string())
            .arg("--ws-listen")
            .arg(self.ws.to_string())
            .arg("--jwt-secret")
            .arg(SECRET)
            .args(&self.extra)
            .env(
                "RUST_LOG",
                std::env::var("FERRY_TEST_LOG").unwrap_or("info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ferry im");
        let ready = try_wait_listening(self.tcp, &mut child, "ferry im")
            .and_then(|()| try_wait_listening(self.http, &mut child, "ferry im http"));
        if let Err(e) = ready {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{e}\n--- im.log ---\n{}", self.log());
        }
        self.child = Some(child);
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        c.wait().expect("wait")
    }

    /// Starts again on the same data dir and ports.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("im.log")).unwrap_or_default()
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Im {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A throwaway `redis-server` on a free loopback port (the harness of
/// `ferry-testkit`, shared with the store's and imr's tests).
pub use ferry_testkit::redis::RedisServer as Redis;
