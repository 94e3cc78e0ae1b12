//! The web demo in a real browser: headless Chromium, driven through the
//! DevTools protocol, loads `/demo` twice (uid 1 and uid 2) from a real
//! `ferry im` and chats through it over WebSocket: peer messages both ways
//! with ACKs, a room message, and offline history after a reconnect.
//!
//! Skips (with a message) only when no Chromium is installed and
//! FERRY_REQUIRE_BROWSER is unset; `.ci/run` installs Chromium and sets it.

mod support;
mod wire;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{APPID, Im, Imr, Redis, cluster_im};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wire::Raw;

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

    /// Waits (in the page, bounded) until the JS expression `cond` is truthy;
    /// returns its value. Conditions are re-checked every 50 ms in the page.
    async fn wait_js(&mut self, cond: &str) -> Value {
        self.eval(&format!(
            "new Promise((resolve, reject) => {{
                const t0 = Date.now();
                const check = () => {{
                    let v; try {{ v = ({cond}); }} catch (e) {{ v = undefined; }}
                    if (v) resolve(v);
                    else if (Date.now() - t0 > 15000) reject(new Error('timed out waiting for: ' + {cond:?}));
                    else setTimeout(check, 50);
                }};
                check();
            }})"
        ))
        .await
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
    // Where the README sends people: the WebSocket listener (browsers
    // refuse the HTTP port 6666).
    let url = format!("http://{}/demo", im.ws);
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
    // On the WebSocket listener the page connects back to where it came from.
    let body = rt.block_on(http_get(im.ws.port(), "/dev/token?uid=1"));
    assert_eq!(body, "not found");
    let page = rt.block_on(http_get(im.ws.port(), "/demo"));
    assert!(page.contains("const WS_PORT = \"\""), "{page}");
}

/// 6665–6669 are on Chromium's (and Firefox's) blocked-port list: a page on
/// ferry's default HTTP port 6666 cannot be opened at all, which is why the
/// pages live on the WebSocket listener (default 13891, not blocked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_refuse_the_http_port_but_load_pages_from_the_ws_port() {
    let Some(bin) = find_chromium() else {
        if std::env::var_os("FERRY_REQUIRE_BROWSER").is_some() {
            panic!("FERRY_REQUIRE_BROWSER is set but no chromium is installed");
        }
        eprintln!("SKIPPED: chromium not installed");
        return;
    };
    let browser = Browser::start(&bin);
    let im = Im::start(&["--dev-tokens"]);
    let mut page = browser.open("about:blank").await;
    // The browser refuses before connecting, so no listener is needed.
    let r = page
        .0
        .call(
            "Page.navigate",
            json!({ "url": "http://127.0.0.1:6666/demo" }),
        )
        .await;
    assert_eq!(r["errorText"], json!("net::ERR_UNSAFE_PORT"), "{r}");
    let mut demo = browser.open(&format!("http://{}/demo", im.ws)).await;
    let ws_url = demo.eval("document.getElementById('url').value").await;
    assert_eq!(ws_url, json!(format!("ws://{}/ws", im.ws)));
}

const ADMIN_TOKEN: &str = "admin-console-token";

/// The admin console as a newcomer meets it: opened from the WebSocket
/// port, it asks for the API token once, then shows live charts of real
/// traffic (non-zero after some), the rooms table and a user lookup that
/// finds a connected client. A screenshot is saved in the temp dir and must
/// not be blank.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_console_shows_live_traffic_and_finds_a_user() {
    let Some(bin) = find_chromium() else {
        if std::env::var_os("FERRY_REQUIRE_BROWSER").is_some() {
            panic!("FERRY_REQUIRE_BROWSER is set but no chromium is installed");
        }
        eprintln!("SKIPPED: chromium not installed");
        return;
    };
    let im = Im::start(&["--api-token", ADMIN_TOKEN]);
    let browser = Browser::start(&bin);
    let mut page = browser.open(&format!("http://{}/admin", im.ws)).await;
    // No token yet: the node answers 401 and the page asks for one.
    page.wait_js("document.getElementById('auth').style.display === 'block'")
        .await;
    page.eval(&format!(
        "document.getElementById('token').value = {ADMIN_TOKEN:?};
         document.getElementById('savetoken').click();"
    ))
    .await;
    page.wait_js("admin.polls > 0 && document.getElementById('auth').style.display === 'none'")
        .await;

    // Traffic: two TCP clients, one in a room, uid 1 writing to uid 2 until
    // the page has charted it (each round waits for the page's next poll).
    let mut a = Raw::login(im.tcp, 1, "a", 2).await;
    let mut b = Raw::login(im.tcp, 2, "b", 2).await;
    b.enter_room(9).await;
    let mut sent = 0;
    let charted = "Math.max(0, ...(admin.series.frames_in || [])) > 0 \
         && Math.max(0, ...(admin.series.stored || [])) > 0 \
         && Math.max(0, ...(admin.series.logins || [])) > 0 \
         && (admin.series.conn_tcp || []).at(-1) >= 2";
    loop {
        sent += 1;
        a.im(1, 2, sent, "traffic for the console").await;
        let polls = page.eval("admin.polls").await;
        let done = page
            .wait_js(&format!(
                "admin.polls > {polls} && ({charted} ? 'yes' : 'no')"
            ))
            .await;
        if done == json!("yes") {
            break;
        }
        assert!(sent < 30, "the console never charted the traffic");
    }
    for chart in ["frames", "stored", "connections", "logins"] {
        let max = page
            .eval(&format!(
                "Number(document.getElementById('chart-{chart}').dataset.max)"
            ))
            .await;
        assert!(max.as_f64().is_some_and(|m| m > 0.0), "{chart}: {max}");
    }
    let rooms = page
        .wait_js("document.getElementById('rooms').innerText.includes('9') && document.getElementById('rooms').innerText")
        .await;
    assert!(rooms.as_str().is_some_and(|r| r.contains('1')), "{rooms}");

    // User lookup, typed into the form.
    page.eval(
        "document.getElementById('appid').value = '7';
         document.getElementById('uid').value = '2';
         document.getElementById('lookup').click();",
    )
    .await;
    let text = page
        .wait_js("document.getElementById('user').innerText.includes('queue head') && document.getElementById('user').innerText")
        .await;
    let text = text.as_str().expect("lookup text");
    assert!(text.contains("online"), "{text}");
    assert!(text.contains(&format!("queue head {sent}")), "{text}");
    assert!(text.contains("tcp"), "{text}");
    let u = page.eval("admin.lookup(2, 7)").await;
    assert_eq!(u["nodes"][0]["connections"][0]["transport"], "tcp", "{u}");

    // Screenshot: saved, then decoded by the browser and checked for content.
    let shot = page
        .0
        .call("Page.captureScreenshot", json!({ "format": "png" }))
        .await;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let png = b64
        .decode(shot["data"].as_str().expect("screenshot data"))
        .expect("base64 png");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("admin.png");
    std::fs::write(&file, &png).expect("save screenshot");
    let saved = b64.encode(std::fs::read(&file).expect("read screenshot"));
    let stats = page
        .eval(&format!(
            "new Promise((resolve, reject) => {{
                const img = new Image();
                img.onload = () => {{
                    const c = document.createElement('canvas');
                    c.width = img.width; c.height = img.height;
                    const g = c.getContext('2d');
                    g.drawImage(img, 0, 0);
                    const d = g.getImageData(0, 0, c.width, c.height).data;
                    const counts = new Map();
                    for (let i = 0; i < d.length; i += 4) {{
                        const k = (d[i] << 16) | (d[i + 1] << 8) | d[i + 2];
                        counts.set(k, (counts.get(k) || 0) + 1);
                    }}
                    const top = Math.max(...counts.values());
                    resolve({{ w: c.width, h: c.height, colours: counts.size, other: 1 - top / (d.length / 4) }});
                }};
                img.onerror = () => reject(new Error('screenshot does not decode'));
                img.src = 'data:image/png;base64,{saved}';
            }})"
        ))
        .await;
    assert!(stats["w"].as_u64() > Some(100), "{stats}");
    assert!(
        stats["colours"].as_u64() > Some(20),
        "blank screenshot? {stats}"
    );
    assert!(
        stats["other"].as_f64() > Some(0.05),
        "blank screenshot? {stats}"
    );
    eprintln!("admin console screenshot: {} ({stats})", file.display());
    drop(b);
}

/// The console of a cluster, opened on node A: the nodes table lists both
/// nodes, choosing node B draws node B's charts (its TCP client, which node
/// A does not have), and the user lookup finds a client connected to node B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_console_on_a_cluster_shows_every_node() {
    let Some(bin) = find_chromium() else {
        if std::env::var_os("FERRY_REQUIRE_BROWSER").is_some() {
            panic!("FERRY_REQUIRE_BROWSER is set but no chromium is installed");
        }
        eprintln!("SKIPPED: chromium not installed");
        return;
    };
    let redis = Redis::start();
    let imr = Imr::start(Some(&redis), &[]);
    let node_a = cluster_im(&[&imr], &redis.url(), &[]);
    let node_b = cluster_im(&[&imr], &redis.url(), &[]);
    let client = Raw::login(node_b.tcp, 5, "on-b", 2).await;
    let browser = Browser::start(&bin);
    // No token configured: the console answers browsers on loopback.
    let mut page = browser.open(&format!("http://{}/admin", node_a.ws)).await;
    let b_name = page
        .wait_js(&format!(
            "admin.polls > 0 && [...admin.nodes.keys()].find((n) => n !== admin.self && n.endsWith(':{}'))",
            node_b.tcp.port()
        ))
        .await;
    let b_name = b_name.as_str().expect("node B's name").to_string();
    let table = page
        .wait_js("document.getElementById('nodes').innerText.includes('this node') && document.getElementById('nodes').innerText")
        .await;
    let table = table.as_str().expect("nodes table");
    assert!(table.contains(&b_name), "{table}");
    assert!(table.contains(&node_b.tcp.to_string()), "{table}");

    // Choose node B: its charts show its TCP client; node A's would not.
    page.eval(&format!(
        "document.querySelector('#nodes button[data-node={b_name:?}]').click()"
    ))
    .await;
    page.wait_js(&format!(
        "admin.selected === {b_name:?} && (admin.series.conn_tcp || []).at(-1) >= 1 \
         && Number(document.getElementById('chart-connections').dataset.max) >= 1 \
         && document.getElementById('chartsof').innerText.includes({b_name:?})"
    ))
    .await;
    let own = page
        .eval("(admin.nodes.get(admin.self).series.conn_tcp || []).at(-1) || 0")
        .await;
    assert_eq!(own, json!(0), "node A has no TCP client");

    // The lookup typed on node A finds uid 5 on node B.
    let mut found = String::new();
    for _ in 0..10 {
        page.eval(&format!(
            "document.getElementById('user').innerText = '';
             document.getElementById('appid').value = '{APPID}';
             document.getElementById('uid').value = '5';
             document.getElementById('lookup').click();"
        ))
        .await;
        let text = page
            .wait_js("document.getElementById('user').innerText.includes('queue head') && document.getElementById('user').innerText")
            .await;
        found = text.as_str().unwrap_or_default().to_string();
        if found.contains("online on 1 of 2 nodes") {
            break;
        }
    }
    assert!(found.contains("online on 1 of 2 nodes"), "{found}");
    assert!(found.contains(&b_name) && found.contains("tcp"), "{found}");
    drop(client);
}
