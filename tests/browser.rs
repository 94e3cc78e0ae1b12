//! The web demo in a real browser: headless Chromium, driven through the
//! DevTools protocol, loads `/demo` twice (uid 1 and uid 2) from a real
//! `ferry im` and chats through it over WebSocket: peer messages both ways
//! with ACKs, a room message, and offline history after a reconnect.
//!
//! Skips (with a message) only when no Chromium is installed and
//! FERRY_REQUIRE_BROWSER is unset; `.ci/run` installs Chromium and sets it.

mod support;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::Im;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const WAIT: Duration = Duration::from_secs(20);

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

struct Browser {
    child: Child,
    port: u16,
    /// Path of the browser-level DevTools endpoint.
    browser_path: String,
    _dir: tempfile::TempDir,
}

impl Browser {
    fn start(bin: &PathBuf) -> Browser {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", dir.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromium");
        // Chromium writes its DevTools port here once it listens.
        let file = dir.path().join("DevToolsActivePort");
        let deadline = Instant::now() + WAIT;
        let (port, browser_path) = loop {
            if let Ok(s) = std::fs::read_to_string(&file) {
                let mut lines = s.lines();
                if let (Some(Ok(p)), Some(path)) =
                    (lines.next().map(|l| l.trim().parse()), lines.next())
                {
                    break (p, path.trim().to_string());
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not open its DevTools port"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Browser {
            child,
            port,
            browser_path,
            _dir: dir,
        }
    }

    /// Opens a new tab on `url` and waits for its load event.
    async fn open(&self, url: &str) -> Page {
        let browser_ws = format!("ws://127.0.0.1:{}{}", self.port, self.browser_path);
        let mut b = Cdp::connect(&browser_ws).await;
        let t = b
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let id = t["targetId"].as_str().expect("targetId");
        let mut page =
            Page(Cdp::connect(&format!("ws://127.0.0.1:{}/devtools/page/{id}", self.port)).await);
        page.0.call("Page.enable", json!({})).await;
        page.0.call("Page.navigate", json!({ "url": url })).await;
        page.0.event("Page.loadEventFired").await;
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("timeout")
        .expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// A DevTools protocol session over WebSocket.
struct Cdp {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next: u64,
    events: Vec<String>,
}

impl Cdp {
    async fn connect(url: &str) -> Cdp {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("devtools websocket");
        Cdp {
            ws,
            next: 0,
            events: Vec::new(),
        }
    }

    async fn read(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("devtools answer within the wait")
                .expect("devtools open")
                .expect("devtools message");
            if let Message::Text(t) = m {
                return serde_json::from_str(&t).expect("devtools json");
            }
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .expect("devtools send");
        loop {
            let v = self.read().await;
            if v["id"].as_u64() == Some(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
            if let Some(m) = v["method"].as_str() {
                self.events.push(m.to_string());
            }
        }
    }

    async fn event(&mut self, name: &str) {
        if let Some(i) = self.events.iter().position(|e| e == name) {
            self.events.remove(i);
            return;
        }
        loop {
            let v = self.read().await;
            if v["method"].as_str() == Some(name) {
                return;
            }
        }
    }
}

struct Page(Cdp);

impl Page {
    /// Evaluates `expr` in the page (promises awaited); panics on a JS error.
    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .0
            .call(
                "Runtime.evaluate",
                json!({ "expression": expr, "awaitPromise": true, "returnByValue": true }),
            )
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            let log = self.log().await;
            panic!("page error in `{expr}`: {e}\npage log:\n{log}");
        }
        r["result"]["value"].clone()
    }

    async fn log(&mut self) -> String {
        let r = self
            .0
            .call(
                "Runtime.evaluate",
                json!({ "expression": "document.getElementById('log').innerText", "returnByValue": true }),
            )
            .await;
        r["result"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Logs in as `uid` the way a user does: dev token, then "connect".
    async fn login(&mut self, uid: i64) {
        let status = self
            .eval(&format!(
                "(async () => {{
                    document.getElementById('uid').value = '{uid}';
                    document.getElementById('token').value = await demo.devToken({uid});
                    await document.getElementById('connect').onclick();
                    return document.getElementById('status').textContent;
                }})()"
            ))
            .await;
        assert_eq!(status, json!(format!("online as uid {uid}")));
    }

    /// Types a peer message into the form and clicks send.
    async fn type_message(&mut self, to: i64, text: &str) {
        self.eval(&format!(
            "document.getElementById('to').value = '{to}';
             document.getElementById('text').value = {text:?};
             document.getElementById('send').click();"
        ))
        .await;
    }

    /// Waits (in the page) for a log line containing `text`; returns it.
    async fn wait_for(&mut self, text: &str) -> String {
        let v = self.eval(&format!("demo.waitFor({text:?}, 15000)")).await;
        v.as_str().expect("log line").to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browser_pages_chat_through_ferry() {
    let Some(bin) = find_chromium() else {
        if std::env::var_os("FERRY_REQUIRE_BROWSER").is_some() {
            panic!("FERRY_REQUIRE_BROWSER is set but no chromium is installed");
        }
        eprintln!(
            "SKIPPED: chromium not installed (apt-get install chromium); set FERRY_REQUIRE_BROWSER=1 to make this fatal"
        );
        return;
    };
    let im = Im::start(&["--dev-tokens"]);
    let browser = Browser::start(&bin);
    let url = format!("http://{}/demo", im.http);
    let mut a = browser.open(&url).await;
    let mut b = browser.open(&url).await;
    a.login(1).await;
    b.login(2).await;

    a.type_message(2, "hello from page A").await;
    a.wait_for("ack @2 #1 stored").await;
    let line = b.wait_for("hello from page A").await;
    assert_eq!(line, "1: hello from page A");

    b.type_message(1, "hi back from page B").await;
    b.wait_for("ack @1 #1 stored").await;
    assert_eq!(
        a.wait_for("hi back from page B").await,
        "2: hi back from page B"
    );

    // A room: both enter room 5, B writes, A sees it.
    for p in [&mut a, &mut b] {
        p.eval(
            "document.getElementById('room').value = '5'; document.getElementById('join').click();",
        )
        .await;
    }
    // A's ENTER_ROOM went out before this message on the same connection,
    // so its ACK proves A is in the room before B writes to it.
    a.type_message(1, "note to self").await;
    a.wait_for("ack @1 #2 stored").await;
    b.eval("document.getElementById('roomtext').value = 'room hello'; document.getElementById('roomsend').click();")
        .await;
    assert_eq!(a.wait_for("room hello").await, "[room 5] 2: room hello");

    // Offline history: B disconnects, A writes, B logs in again and syncs.
    b.eval("demo.ws.close(); demo.waitFor('closed:', 5000)")
        .await;
    a.type_message(2, "while B was away").await;
    a.wait_for("ack @2 #3 stored").await;
    b.login(2).await;
    assert_eq!(
        b.wait_for("while B was away").await,
        "[history] 1: while B was away"
    );
}

#[test]
fn dev_token_endpoint_exists_only_with_the_flag() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let im = Im::start(&[]);
    let body = rt.block_on(http_get(im.http.port(), "/dev/token?uid=1"));
    assert_eq!(body, "not found");
    let page = rt.block_on(http_get(im.http.port(), "/demo"));
    assert!(page.contains(&format!("const WS_PORT = \"{}\"", im.ws.port())));
}
