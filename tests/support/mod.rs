//! Test harness: starts real `ferry` and `redis-server` processes on free
//! loopback ports, waits until they accept connections, and kills them on drop.
#![allow(dead_code)]

pub mod hook;
mod imr;
mod mariadb;
#[allow(unused_imports)]
pub use imr::{Imr, LINK_SECRET, cluster_im, http_get, http_post, wait_until};
#[allow(unused_imports)]
pub use mariadb::MariaDb;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "ferry-test-secret";
pub const APPID: i64 = 7;

/// Ports the harness hands out: below the kernel's ephemeral range
/// (32768–60999 here), so an outgoing client connection of a concurrent test
/// can never take a port between this check and the server's bind, and clear
/// of every default port of ferry (23000, 13891, 14891, 24430, 6666, 4444).
const PORT_RANGE: std::ops::Range<u16> = 15_000..23_000;

/// A port nobody listens on right now and that this test process has not
/// handed out before (so a server restarted on its old port cannot collide
/// with a newer one). Each process starts at its own offset in the range.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(PORT_RANGE.end - PORT_RANGE.start);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::SeqCst) % span;
        let port = PORT_RANGE.start + n as u16;
        if TcpListener::bind(("0.0.0.0", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port in {PORT_RANGE:?}");
}

/// Polls until something accepts on `addr` (bounded), as the server has no
/// other way to say it is ready.
pub fn wait_listening(addr: SocketAddr, child: &mut Child, what: &str) {
    if let Err(e) = try_wait_listening(addr, child, what) {
        panic!("{e}");
    }
}

/// [`wait_listening`] that reports instead of panicking, so a caller can
/// add the process's log to the failure.
pub fn try_wait_listening(addr: SocketAddr, child: &mut Child, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{what} exited before listening on {addr}: {status}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("{what} did not listen on {addr} within 20 s"))
}

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

/// A throwaway `redis-server` on a free loopback port.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    persistence: Vec<String>,
    _tmp: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// Starts with AOF on (`appendfsync always`): survives a restart.
    pub fn start_durable() -> Redis {
        Redis::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    /// Starts with these persistence flags.
    pub fn start_with(persistence: &[&str]) -> Redis {
        let mut r = Redis {
            child: None,
            port: free_port(),
            persistence: persistence.iter().map(|s| s.to_string()).collect(),
            _tmp: tempfile::tempdir().expect("tempdir"),
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(&self.persistence)
            .arg("--dir")
            .arg(self._tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: apt-get install redis-server");
        wait_listening(
            SocketAddr::from(([127, 0, 0, 1], self.port)),
            &mut child,
            "redis-server",
        );
        self.child = Some(child);
    }

    /// SIGKILL (with `start_durable`, every acknowledged write is in the AOF).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and data dir.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs one redis-cli command and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
