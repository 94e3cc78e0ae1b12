//! Throwaway `redis-server` processes for tests: a standalone server or a
//! three-node Redis Cluster on free loopback ports, killed on drop. One
//! harness for the store's unit tests, imr's tests and the end-to-end tests
//! (there used to be one in each). Readiness is awaited with bounded polling
//! loops (PING answered), never a fixed sleep.

use crate::net::free_port;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REDIS_SERVER: &str = "/usr/bin/redis-server";
const REDIS_CLI: &str = "/usr/bin/redis-cli";
/// Longest wait for a server (or cluster) to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(5);

/// A running `redis-server`; see the module docs.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    /// Owned data directory (None when the caller supplied one).
    _tmp: Option<tempfile::TempDir>,
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("random bytes");
    u32::from_le_bytes(b)
}

/// Sends one inline command and returns the raw reply (test helper).
fn raw_command(port: u16, cmd: &str) -> std::io::Result<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    s.write_all(format!("{cmd}\r\n").as_bytes())?;
    let mut buf = vec![0u8; 8192];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

impl RedisServer {
    /// A fresh server without persistence in its own temporary directory.
    pub fn start() -> RedisServer {
        Self::start_with(&["--appendonly", "no"])
    }

    /// A server with AOF on (`appendfsync always`): every acknowledged write
    /// survives [`RedisServer::stop`] and [`RedisServer::restart`].
    pub fn start_durable() -> RedisServer {
        Self::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    /// A server with `extra` options in its own temporary directory.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Self::start_in(&dir, extra);
        s._tmp = Some(tmp);
        s
    }

    /// A server without persistence on `port`, chosen by the caller (a test
    /// that starts a client before the server it will find there).
    pub fn start_on(port: u16) -> RedisServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = RedisServer {
            child: None,
            port,
            dir: tmp.path().to_path_buf(),
            args: vec!["--appendonly".into(), "no".into()],
            _tmp: Some(tmp),
        };
        if let Err(e) = s.spawn() {
            panic!("redis-server on port {port}: {e}");
        }
        s
    }

    /// A server on a free port with its data in `dir`, plus `extra` options.
    pub fn start_in(dir: &Path, extra: &[&str]) -> RedisServer {
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        for _ in 0..20 {
            let mut s = RedisServer {
                child: None,
                port: free_port(),
                dir: dir.to_path_buf(),
                args: args.clone(),
                _tmp: None,
            };
            if s.spawn().is_ok() {
                return s;
            }
        }
        panic!("could not start redis-server");
    }

    /// Starts the process on `self.port` and waits until it answers PING.
    /// `Err` when it exited (port taken) or never became ready.
    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.join(format!("redis-{}.log", self.port));
        let child = Command::new(REDIS_SERVER)
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", ""])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {REDIS_SERVER}: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("redis-server exited: {status}"));
            }
            if raw_command(self.port, "PING").is_ok_and(|r| r.starts_with("+PONG")) {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err("redis-server did not become ready".into());
            }
            std::thread::sleep(POLL);
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL: nothing gets a chance to flush).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port, directory and options.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("restart failed: {e}"),
                Err(_) => std::thread::sleep(POLL),
            }
        }
    }

    /// Runs a command through `redis-cli` and returns its output, trimmed
    /// (its error text when it printed nothing else).
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new(REDIS_CLI)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if stdout.is_empty() {
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    } else {
        stdout
    }
}

/// A three-master Redis Cluster without replicas.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    _tmp: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let tmp = tempfile::tempdir().expect("tempdir");
        for _ in 0..10 {
            // Node ports P..P+2 below 30000, so the bus ports (port + 10000)
            // stay below 40000; all six must be free.
            let base = 20_000 + (random_u32() % 9_000) as u16;
            let ports = [base, base + 1, base + 2];
            if !ports
                .iter()
                .all(|&p| port_is_free(p) && port_is_free(p + 10_000))
            {
                continue;
            }
            let mut nodes = Vec::new();
            for &port in &ports {
                let conf = tmp.path().join(format!("nodes-{port}.conf"));
                let mut s = RedisServer {
                    child: None,
                    port,
                    dir: tmp.path().to_path_buf(),
                    args: vec![
                        "--appendonly".into(),
                        "no".into(),
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-config-file".into(),
                        conf.display().to_string(),
                        "--cluster-node-timeout".into(),
                        "5000".into(),
                    ],
                    _tmp: None,
                };
                if s.spawn().is_err() {
                    break;
                }
                nodes.push(s);
            }
            if nodes.len() != 3 {
                continue;
            }
            let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
            let mut args = vec!["--cluster", "create"];
            args.extend(addrs.iter().map(String::as_str));
            args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
            let out = cli(base, &args);
            assert!(out.contains("[OK]"), "cluster create failed:\n{out}");
            let deadline = Instant::now() + READY_TIMEOUT;
            while !ports
                .iter()
                .all(|&p| cli(p, &["cluster", "info"]).contains("cluster_state:ok"))
            {
                assert!(Instant::now() < deadline, "cluster never reached state ok");
                std::thread::sleep(Duration::from_millis(20));
            }
            return RedisCluster { nodes, _tmp: tmp };
        }
        panic!("could not start a redis cluster");
    }

    /// `redis+cluster://` url naming every node.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }
}
