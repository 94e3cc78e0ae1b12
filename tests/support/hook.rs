//! A real HTTP hook server in the test process (axum): checks every
//! request's signature, answers before-send requests through a test-given
//! rule (after an optional delay) and records event batches. It can be
//! stopped and started again on the same port.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Given a before-send request, the delay and the JSON answer body.
pub type Rule = Arc<dyn Fn(&Value) -> (Duration, String) + Send + Sync>;

#[derive(Default)]
pub struct Seen {
    /// before-send requests, in arrival order.
    pub before: Vec<Value>,
    /// Event batches, each as delivered.
    pub batches: Vec<Vec<Value>>,
    pub good_signatures: u64,
    pub bad_signatures: u64,
    /// Client addresses seen: one per TCP connection the im opened.
    pub peers: std::collections::HashSet<SocketAddr>,
}

impl Seen {
    /// Every event of every batch, in delivery order.
    pub fn events(&self) -> Vec<Value> {
        self.batches.iter().flatten().cloned().collect()
    }
}

pub struct HookState {
    secret: Vec<u8>,
    rule: Rule,
    pub seen: Mutex<Seen>,
}

pub struct HookServer {
    pub addr: SocketAddr,
    pub state: Arc<HookState>,
    running: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
}

/// Allows everything at once.
pub fn allow_all() -> Rule {
    Arc::new(|_| (Duration::ZERO, r#"{"action":"allow"}"#.to_string()))
}

fn signature_ok(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(given) = headers
        .get("x-ferry-signature")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
    else {
        return false;
    };
    let Ok(given) = (0..given.len() / 2)
        .map(|i| u8::from_str_radix(given.get(2 * i..2 * i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
    else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("hmac key");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

async fn handle(
    State(s): State<Arc<HookState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.seen.lock().expect("lock").peers.insert(peer);
    if !signature_ok(&s.secret, &headers, &body) {
        s.seen.lock().expect("lock").bad_signatures += 1;
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not json").into_response();
    };
    let kind = headers
        .get("x-ferry-hook")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    match kind.as_str() {
        "before_send" => {
            let (delay, answer) = (s.rule)(&v);
            {
                let mut seen = s.seen.lock().expect("lock");
                seen.good_signatures += 1;
                seen.before.push(v);
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            answer.into_response()
        }
        "events" => {
            let events = v["events"].as_array().cloned().unwrap_or_default();
            let mut seen = s.seen.lock().expect("lock");
            seen.good_signatures += 1;
            seen.batches.push(events);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => (StatusCode::BAD_REQUEST, "unknown hook type").into_response(),
    }
}

impl HookServer {
    /// Starts on a free loopback port, checking signatures with `secret`.
    pub async fn start(secret: &str, rule: Rule) -> HookServer {
        let mut s = HookServer {
            addr: SocketAddr::from(([127, 0, 0, 1], super::free_port())),
            state: Arc::new(HookState {
                secret: secret.as_bytes().to_vec(),
                rule,
                seen: Mutex::new(Seen::default()),
            }),
            running: None,
        };
        s.resume().await;
        s
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Stops accepting and closes every connection (the recorded state stays).
    pub async fn stop(&mut self) {
        if let Some((tx, task)) = self.running.take() {
            let _ = tx.send(());
            let _ = task.await;
        }
    }

    /// Serves again on the same port.
    pub async fn resume(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("bind hook server");
        let app = Router::new()
            .route("/hook", post(handle))
            .with_state(self.state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        });
        self.running = Some((tx, task));
    }

    /// Polls (every 10 ms, at most 15 s) until `cond` holds for what was
    /// seen; the im delivers asynchronously and this is the only signal.
    pub async fn wait(&self, what: &str, mut cond: impl FnMut(&Seen) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if cond(&self.state.seen.lock().expect("lock")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "hook server: not within 15 s: {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.state.seen.lock().expect("lock"))
    }
}
