//! `ferry imr` processes and im nodes wired to them, for multi-node tests.

use super::{Im, Redis, ferry_bin, free_port, try_wait_listening};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Link secret shared by every imr and im the harness starts.
pub const LINK_SECRET: &str = "ferry-test-link-secret";

/// A `ferry imr` process on its own ports; its log goes to a temp dir.
pub struct Imr {
    child: Option<Child>,
    pub link: SocketAddr,
    pub http: SocketAddr,
    pub extra: Vec<String>,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Imr {
    /// Starts an imr that writes offline pushes to `redis` (or none with
    /// `--push-disabled` in `extra`).
    pub fn start(redis: Option<&Redis>, extra: &[&str]) -> Imr {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        match redis {
            Some(r) => extra.extend(["--redis".to_string(), r.url()]),
            None => extra.push("--push-disabled".to_string()),
        }
        let mut imr = Imr {
            child: None,
            link: SocketAddr::from(([127, 0, 0, 1], free_port())),
            http: SocketAddr::from(([127, 0, 0, 1], free_port())),
            extra,
            dir: tmp.path().to_path_buf(),
            _tmp: tmp,
        };
        imr.spawn();
        imr
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("imr.log"))
            .expect("log file");
        let mut child = Command::new(ferry_bin())
            .arg("imr")
            .arg("--listen")
            .arg(self.link.to_string())
            .arg("--http-listen")
            .arg(self.http.to_string())
            .arg("--link-secret")
            .arg(LINK_SECRET)
            .args(&self.extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ferry imr");
        let ready = try_wait_listening(self.link, &mut child, "ferry imr")
            .and_then(|()| try_wait_listening(self.http, &mut child, "ferry imr http"));
        if let Err(e) = ready {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{e}\n--- imr.log ---\n{}", self.log());
        }
        self.child = Some(child);
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same ports (after [`Imr::kill`] or while running).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("imr.log")).unwrap_or_default()
    }

    /// Whether the imr's table has (appid, uid) online, per `GET /online`.
    pub fn is_online(&self, appid: i64, uid: i64) -> bool {
        let body = http_get(self.http, &format!("/online?appid={appid}&uid={uid}"));
        body.contains("\"online\":true")
    }

    /// Polls `GET /online` until (appid, uid) is online there: an im
    /// subscribes asynchronously after login, and this is the only signal.
    pub fn wait_online(&self, appid: i64, uid: i64) {
        wait_until(&format!("uid {uid} online at the imr"), || {
            self.is_online(appid, uid)
        });
    }

    /// `GET /subscribers?appid=&uid=`: (links holding the user, links
    /// marking it online).
    pub fn subscribers(&self, appid: i64, uid: i64) -> (u64, u64) {
        let v = self.get_json(&format!("/subscribers?appid={appid}&uid={uid}"));
        (
            v["links"].as_u64().unwrap_or(u64::MAX),
            v["online"].as_u64().unwrap_or(u64::MAX),
        )
    }

    /// Polls until `links` im links hold (appid, uid), all of them online.
    pub fn wait_subscribers(&self, appid: i64, uid: i64, links: u64) {
        wait_until(
            &format!("uid {uid} subscribed online by {links} im links"),
            || self.subscribers(appid, uid) == (links, links),
        );
    }

    /// Polls until no im link holds (appid, uid) any more.
    pub fn wait_unsubscribed(&self, appid: i64, uid: i64) {
        wait_until(&format!("uid {uid} unsubscribed at the imr"), || {
            self.subscribers(appid, uid).0 == 0
        });
    }

    /// Polls until `links` im links are in (appid, room).
    pub fn wait_room(&self, appid: i64, room: i64, links: u64) {
        wait_until(&format!("room {room} held by {links} im links"), || {
            self.get_json(&format!("/subscribers?appid={appid}&room={room}"))["links"].as_u64()
                == Some(links)
        });
    }

    /// `GET /all_online` as (appid, sorted uids) pairs.
    pub fn all_online(&self) -> Vec<(i64, Vec<i64>)> {
        let v = self.get_json("/all_online");
        v.as_array()
            .map(|apps| {
                apps.iter()
                    .map(|a| {
                        let mut users: Vec<i64> = a["users"]
                            .as_array()
                            .map(|u| u.iter().filter_map(|x| x.as_i64()).collect())
                            .unwrap_or_default();
                        users.sort_unstable();
                        (a["appid"].as_i64().unwrap_or(0), users)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn get_json(&self, path: &str) -> serde_json::Value {
        serde_json::from_str(&http_get(self.http, path)).unwrap_or(serde_json::Value::Null)
    }
}

/// Polls `cond` (every 10 ms, at most 10 s): the processes under test have
/// no push signal for these states, so the test asks until it holds.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A minimal HTTP/1.0 POST returning (status, body) (tests only).
pub fn http_post(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .expect("connect to http");
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("send request");
    s.write_all(body).expect("send body");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A minimal HTTP/1.0 GET returning the body (tests only).
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .expect("connect to http");
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("send request");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

impl Drop for Imr {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts an im node linked to `imrs` (in this order on every node) and
/// storing in `store` (a `redis://` URL), plus `extra` flags.
pub fn cluster_im(imrs: &[&Imr], store: &str, extra: &[&str]) -> Im {
    let list = imrs
        .iter()
        .map(|i| i.link.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut args = vec![
        "--imr",
        &list,
        "--store",
        store,
        "--link-secret",
        LINK_SECRET,
    ];
    args.extend_from_slice(extra);
    Im::start(&args)
}
