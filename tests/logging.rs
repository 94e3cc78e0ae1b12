//! Logs never contain secrets: a node run at debug level, in both formats,
//! through logins (good and bad tokens), an authenticated HTTP call and a
//! shutdown, must not print the JWT secret, the API token, the link secret
//! or any login token.

mod support;
mod wire;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use support::{SECRET, ferry_bin, free_port, token, wait_listening};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wire::Raw;

const API_TOKEN: &str = "api-token-that-must-not-leak";

async fn run_node(format: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let tcp = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let log = dir.path().join("im.log");
    let mut child = Command::new(ferry_bin())
        .args(["--log-format", format, "im", "--jwt-secret", SECRET])
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--listen",
            &tcp.to_string(),
            "--http-listen",
            &http.to_string(),
        ])
        .args(["--ws-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--api-token", API_TOKEN])
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");
    wait_listening(tcp, &mut child, "ferry im");
    wait_listening(http, &mut child, "ferry im http");

    let mut ok = Raw::connect(tcp).await;
    assert_eq!(ok.auth(&token(1), 3, "dev", 2).await, 0);
    let forged = ferry_common::token::sign(
        &ferry_common::token::Claims {
            appid: 7,
            uid: 2,
            exp: None,
            nbf: None,
        },
        b"some-other-secret",
    );
    let mut bad = Raw::connect(tcp).await;
    assert_ne!(bad.auth(&forged, 3, "dev", 2).await, 0);

    let mut s = TcpStream::connect(http).await.expect("http");
    let req = format!(
        "GET /summary HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_TOKEN}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(child.wait().expect("wait").success());
    let text = std::fs::read_to_string(&log).expect("read log");
    for (what, secret) in [
        ("JWT secret", SECRET.to_string()),
        ("API token", API_TOKEN.to_string()),
        ("login token", token(1)),
        ("forged token", forged),
    ] {
        assert!(
            !text.contains(&secret),
            "{format} log leaks the {what}:\n{text}"
        );
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_hold_no_secrets() {
    let text = run_node("text").await;
    assert!(text.contains("login failed"), "{text}");
    assert!(text.contains("ferry im started"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_hold_no_secrets() {
    let text = run_node("json").await;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
    assert!(text.contains("login failed"), "{text}");
}

/// Out of the box (no RUST_LOG, stderr a file): no colour codes, none of
/// the embedded store's INFO lines (also not when it recovers at the next
/// start), and one line per start naming every listener and the browser
/// address of the pages.
#[test]
fn default_logs_are_plain_quiet_and_say_where_ferry_listens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("im.log");
    let tcp = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let ws = SocketAddr::from(([127, 0, 0, 1], free_port()));
    for _ in 0..2 {
        let mut child = Command::new(ferry_bin())
            .args(["im", "--jwt-secret", SECRET])
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--listen", &tcp.to_string()])
            .args(["--http-listen", &http.to_string()])
            .args(["--ws-listen", &ws.to_string()])
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .expect("log"),
            )
            .spawn()
            .expect("spawn");
        wait_listening(ws, &mut child, "ferry im ws");
        wait_listening(http, &mut child, "ferry im http");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(child.wait().expect("wait").success());
    }
    let text = std::fs::read_to_string(&log).expect("read log");
    assert!(!text.contains('\x1b'), "colour codes in a file:\n{text}");
    for noisy in ["fjall::", "lsm_tree::", "value_log::"] {
        assert!(!text.contains(noisy), "store chatter ({noisy}):\n{text}");
    }
    let started: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ferry im started"))
        .collect();
    assert_eq!(started.len(), 2, "{text}");
    for want in [
        format!("clients tcp {tcp}"),
        format!("websocket ws://{ws}/ws"),
        format!("http api {http}"),
        format!("browser pages http://{ws}/demo and /admin"),
    ] {
        assert!(
            started[0].contains(&want),
            "{want:?} missing in {}",
            started[0]
        );
    }
}
