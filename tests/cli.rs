//! The `ferry` command line: `ferry token` shares the generated secret with
//! `ferry im`, and configuration mistakes stop `ferry im` before it serves.

mod support;
mod wire;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{ferry_bin, free_port, wait_listening};
use wire::*;

/// `ferry` with no FERRY_* variables from the caller's environment.
fn ferry() -> Command {
    let mut c = Command::new(ferry_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("FERRY_") {
            c.env_remove(k);
        }
    }
    c.env("RUST_LOG", "info");
    c
}

/// Runs to completion (bounded); a process still running after 15 s is killed and fails the test.
fn run(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry");
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "ferry kept running (it should have refused to start); stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ferry im` on `dir` without --jwt-secret.
fn start_without_secret(dir: &Path) -> (Server, SocketAddr) {
    let tcp = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut child = ferry()
        .arg("im")
        .arg("--data-dir")
        .arg(dir)
        .arg("--listen")
        .arg(tcp.to_string())
        .arg("--http-listen")
        .arg(http.to_string())
        .arg("--ws-listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ferry im");
    wait_listening(tcp, &mut child, "ferry im");
    (Server(child), tcp)
}

fn mint(dir: &Path, uid: &str) -> String {
    let mut cmd = ferry();
    cmd.args(["token", "--uid", uid, "--appid", "7", "--data-dir"])
        .arg(dir);
    let out = run(cmd);
    assert!(
        out.status.success(),
        "ferry token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_command_and_server_share_the_generated_secret() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let token = mint(&dir, "3");
    let secret = dir.join("jwt_secret");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&secret)
            .expect("jwt_secret created")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "jwt_secret mode {:o}", mode & 0o777);
    let before = std::fs::read(&secret).expect("read secret");

    let (_server, tcp) = start_without_secret(&dir);
    let mut c = Raw::connect(tcp).await;
    assert_eq!(
        c.auth(&token, 1, "cli", 2).await,
        0,
        "server accepts the token minted from the same data dir"
    );
    // Logged in as uid 3.
    let seq = c.send_im(4, 5, 1, "not me").await;
    c.expect_refused(seq, 66).await;
    assert_eq!(
        std::fs::read(&secret).expect("read secret"),
        before,
        "the server kept the secret"
    );

    // A token minted with another data dir's secret is refused.
    let other = tmp.path().join("other");
    let foreign = mint(&other, "3");
    let mut c = Raw::connect(tcp).await;
    assert_eq!(c.auth(&foreign, 1, "cli", 2).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_config_key_is_rejected_by_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:0\"\nidle_timeot = 5\n").expect("write");
    let mut cmd = ferry();
    cmd.arg("im")
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--http-listen")
        .arg(format!("127.0.0.1:{}", free_port()));
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "must exit non-zero; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("idle_timeot"),
        "stderr must name the unknown key:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_http_listen_without_api_token_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cmd = ferry();
    cmd.arg("im")
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--http-listen")
        .arg(format!("0.0.0.0:{}", free_port()));
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "must exit non-zero; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("--api-token"),
        "stderr must say how to fix it:\n{stderr}"
    );
    assert!(
        stderr.contains("0.0.0.0"),
        "stderr must name the address:\n{stderr}"
    );
}
