//! `ferry bench` against real servers with tiny counts: every scenario must
//! finish and report zero errors. No timing assertions: the figures
//! themselves belong in BENCHMARKS.md, not in the suite.

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{Im, Imr, Redis, SECRET, cluster_im, ferry_bin, free_port, wait_listening};

/// Runs `ferry bench <args>` to completion (killed after 90 s).
fn bench(args: &[&str]) -> Output {
    let mut cmd = Command::new(ferry_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("FERRY_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .arg("bench")
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry bench");
    // Drain stdout/stderr in threads so a full pipe cannot stall the bench.
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let ot = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut so, &mut v);
        v
    });
    let et = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut se, &mut v);
        v
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ferry bench {args:?} still running after 90 s; stderr:\n{}",
                String::from_utf8_lossy(&et.join().unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: ot.join().unwrap_or_default(),
        stderr: et.join().unwrap_or_default(),
    }
}

/// Asserts success and an `errors 0` row in the results table.
fn assert_clean(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let errors = stdout
        .lines()
        .find_map(|l| l.strip_prefix("errors"))
        .unwrap_or_else(|| panic!("{what}: no errors row in\n{stdout}"));
    assert!(
        errors.trim().starts_with('0'),
        "{what}: errors reported: {errors}\n{stdout}"
    );
    assert!(
        stderr.contains('[') || stderr.contains("bench "),
        "{what}: no progress output on stderr:\n{stderr}"
    );
    stdout
}

fn target_args(im: &Im) -> Vec<String> {
    vec![
        "--target".into(),
        im.tcp.to_string(),
        "--jwt-secret".into(),
        SECRET.into(),
        "--timeout".into(),
        "60".into(),
        "--source-ips".into(),
        "4".into(),
    ]
}

fn run_scenario(scenario: &[&str], common: &[String]) -> String {
    let mut args: Vec<&str> = scenario.to_vec();
    args.extend(common.iter().map(String::as_str));
    assert_clean(&bench(&args), &scenario.join(" "))
}

#[test]
fn every_scenario_runs_clean_against_one_node() {
    let im = Im::start(&[]);
    let common = target_args(&im);
    // Twice: a rerun with the same users must not be taken for resends
    // (the server deduplicates by sender, device and client msgid).
    for _ in 0..2 {
        let out = run_scenario(&["peer", "-c", "3", "-n", "40"], &common);
        assert!(out.contains("120 of 120"), "{out}");
    }
    let out = run_scenario(&["room", "-s", "2", "-r", "10", "-n", "30"], &common);
    assert!(out.contains("600 of 600"), "{out}");
    let pid = im.pid().expect("running").to_string();
    let out = run_scenario(
        &[
            "connections",
            "-n",
            "200",
            "--hold",
            "1",
            "--server-pid",
            &pid,
        ],
        &common,
    );
    assert!(out.contains("RSS/connection"), "{out}");
    assert!(out.contains("200 (200 alive after hold)"), "{out}");
    let out = run_scenario(&["reconnect", "-n", "100"], &common);
    assert!(out.contains("100 (100 back)"), "{out}");
}

/// The group scenario needs the im's `POST /groups`; without it the bench
/// must say so clearly instead of failing obscurely.
#[test]
fn group_scenario_creates_its_group_or_explains_why_not() {
    let im = Im::start(&[]);
    let mut common = target_args(&im);
    common.extend(["--http".to_string(), im.http.to_string()]);
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("group.json");
    let json_s = json.display().to_string();
    let mut args = vec!["group", "-s", "2", "-r", "5", "-n", "20", "--json", &json_s];
    args.extend(common.iter().map(String::as_str));
    let out = bench(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("has no POST /groups") {
        assert!(!out.status.success());
        assert!(
            stderr.contains("HTTP 404") || stderr.contains("HTTP 501"),
            "{stderr}"
        );
    } else {
        let stdout = assert_clean(&out, "group");
        assert!(stdout.contains("200 of 200"), "{stdout}");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).expect("group json"))
                .expect("json");
        assert_eq!(v["scenario"], "group", "{v}");
        assert_eq!(v["summary"]["delivered"].as_u64(), Some(200), "{v}");
        assert_eq!(
            v["summary"]["ack_latency"]["samples"].as_u64(),
            Some(40),
            "{v}"
        );
    }
}

#[test]
fn room_runs_against_the_baseline_server() {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut child: Child = Command::new(ferry_bin())
        .args(["bench", "baseline-server", "--listen", &addr.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn baseline");
    wait_listening(addr, &mut child, "baseline server");
    let out = bench(&[
        "room",
        "-s",
        "2",
        "-r",
        "10",
        "-n",
        "30",
        "--target",
        &addr.to_string(),
        "--jwt-secret",
        "unused",
    ]);
    let _ = child.kill();
    let _ = child.wait();
    let stdout = assert_clean(&out, "room vs baseline");
    assert!(stdout.contains("600 of 600"), "{stdout}");
}

#[test]
fn redis_tokens_work() {
    let redis = Redis::start();
    let im = Im::start(&["--auth", "redis", "--redis", &redis.url()]);
    let out = bench(&[
        "peer",
        "-c",
        "2",
        "-n",
        "20",
        "--target",
        &im.tcp.to_string(),
        "--token-source",
        "redis",
        "--redis",
        &redis.url(),
        "--timeout",
        "60",
    ]);
    let stdout = assert_clean(&out, "peer with Redis tokens");
    assert!(stdout.contains("40 of 40"), "{stdout}");
}

#[test]
fn cross_node_variants_run_through_the_router() {
    let redis = Redis::start();
    let imr = Imr::start(Some(&redis), &[]);
    let a = cluster_im(&[&imr], &redis.url(), &[]);
    let b = cluster_im(&[&imr], &redis.url(), &[]);
    let targets = format!("{},{}", a.tcp, b.tcp);
    let common: Vec<String> = vec![
        "--target".into(),
        targets,
        "--jwt-secret".into(),
        SECRET.into(),
        "--timeout".into(),
        "60".into(),
    ];
    let out = run_scenario(&["peer", "-c", "2", "-n", "20"], &common);
    assert!(out.contains("40 of 40"), "{out}");
    let out = run_scenario(&["room", "-s", "1", "-r", "4", "-n", "20"], &common);
    assert!(out.contains("80 of 80"), "{out}");
}

/// `--json` writes the run (config, per-second series, latency
/// distribution) and `ferry bench plot` overlays two runs in one SVG.
#[test]
fn json_runs_plot_as_one_svg() {
    let im = Im::start(&[]);
    let common = target_args(&im);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for (i, n) in ["200", "100"].iter().enumerate() {
        let file = dir.path().join(format!("run{i}.json"));
        let f = file.display().to_string();
        run_scenario(&["peer", "-c", "2", "-n", n, "--json", &f], &common);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("json written"))
                .expect("valid json");
        assert_eq!(v["scenario"], "peer", "{v}");
        assert_eq!(v["config"]["connections"], 2, "{v}");
        let expected = 2 * n.parse::<u64>().expect("n");
        assert_eq!(v["summary"]["messages"].as_u64(), Some(expected), "{v}");
        assert_eq!(v["latency"]["samples"].as_u64(), Some(expected), "{v}");
        let q = v["latency"]["quantiles"].as_array().expect("quantiles");
        assert!(q.len() >= 5, "{v}");
        // Quantile values never decrease.
        let us: Vec<u64> = q.iter().map(|p| p[1].as_u64().expect("µs")).collect();
        assert!(us.windows(2).all(|w| w[0] <= w[1]), "{us:?}");
        let counted: u64 = v["latency"]["histogram"]
            .as_array()
            .expect("histogram")
            .iter()
            .map(|b| b[1].as_u64().expect("count"))
            .sum();
        assert_eq!(counted, expected, "{v}");
        assert!(v["series"].is_array(), "{v}");
        files.push(f);
    }
    let svg = dir.path().join("ab.svg");
    let svg_s = svg.display().to_string();
    let out = bench(&["plot", &files[0], &files[1], "-o", &svg_s]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&svg).expect("svg written");
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    assert!(text.contains("peer -c 2 -n 200") && text.contains("peer -c 2 -n 100"));
    assert!(text.matches("<polyline").count() >= 2, "{text}");

    // The room scenario records its deliveries the same way.
    let room = dir.path().join("room.json");
    let room_s = room.display().to_string();
    run_scenario(
        &["room", "-s", "1", "-r", "3", "-n", "20", "--json", &room_s],
        &common,
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&room).expect("room json")).expect("json");
    assert_eq!(
        (v["scenario"].as_str(), v["unit"].as_str()),
        (Some("room"), Some("deliveries/s"))
    );
    assert_eq!(v["summary"]["delivered"].as_u64(), Some(60), "{v}");
    assert_eq!(v["latency"]["samples"].as_u64(), Some(60), "{v}");

    // A file that is not a run: a clear error, no SVG.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{}").expect("write");
    let out = bench(&["plot", &bad.display().to_string(), "-o", &svg_s]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a `ferry bench --json` file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
