//! gobelieve's `im.cfg` (`--gobelieve-config`): its keys become one more
//! layer of [`ImOptions`], below the flags, the environment and `--config`.
//!
//! Keys that mean nothing in Ferry (the ims shards, the group spool, …) are
//! accepted and named in one warning together with what replaces them, so a
//! deployment can start from its existing file; any other key is an error
//! naming it, because a misspelt key silently ignored is a misconfigured
//! server.

use super::{AuthMethod, ConfigError, ImOptions};
use ferry_common::gobelieve::{LogSection, RedisSection, go_listen_addr, memory_limit_mib};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The keys of gobelieve's `im.cfg` (spec §7.1), spelt as there.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImCfg {
    port: Option<u16>,
    ssl_port: Option<u16>,
    route_addrs: Option<Vec<String>>,
    ws_address: Option<String>,
    wss_address: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    http_listen_address: Option<String>,
    mysqldb_datasource: Option<String>,
    kefu_appid: Option<i64>,
    word_file: Option<PathBuf>,
    enable_friendship: Option<bool>,
    enable_blacklist: Option<bool>,
    memory_limit: Option<String>,
    auth_method: Option<String>,
    jwt_signing_key: Option<String>,
    redis: Option<RedisSection>,
    log: Option<LogSection>,
    // Accepted, without effect in Ferry (see `IGNORED`).
    storage_rpc_addrs: Option<toml::Value>,
    group_storage_rpc_addrs: Option<toml::Value>,
    group_route_addrs: Option<toml::Value>,
    rpc_listen_address: Option<toml::Value>,
    pending_root: Option<toml::Value>,
    group_deliver_count: Option<toml::Value>,
    socket_io_address: Option<toml::Value>,
}

/// The gobelieve file as a layer of options, plus what to tell the operator.
#[derive(Debug, Default)]
pub struct GobelieveLayer {
    pub options: ImOptions,
    /// Warning lines to log once logging is up.
    pub warnings: Vec<String>,
    /// `[log] level` as a tracing filter directive.
    pub log_filter: Option<&'static str>,
    /// `http_listen_address` had no host (`":6666"`): Go binds every
    /// interface; Ferry only does that with an API token (see `resolve`).
    pub http_any_host: bool,
}

/// Reads and maps the file.
pub fn read(path: &Path) -> Result<GobelieveLayer, ConfigError> {
    ferry_common::config::read_toml(path, map)
}

/// What each ignored key is replaced by in Ferry.
const IGNORED: &[(&str, &str)] = &[
    (
        "storage_rpc_addrs",
        "messages are stored by the im itself (--store)",
    ),
    ("group_storage_rpc_addrs", "super groups use --store too"),
    (
        "group_route_addrs",
        "super groups are routed by route_addrs",
    ),
    ("rpc_listen_address", "there is no RPC listener"),
    ("socket_io_address", "clients use ws_address"),
    (
        "pending_root",
        "group fan-outs are written by the store in one batch, no spool",
    ),
    (
        "group_deliver_count",
        "group fan-outs are written by the store in one batch, no workers",
    ),
];

fn map(cfg: ImCfg) -> Result<GobelieveLayer, String> {
    let mut layer = GobelieveLayer::default();
    let o = &mut layer.options;

    let mut ignored: Vec<String> = Vec::new();
    let present = [
        cfg.storage_rpc_addrs.is_some(),
        cfg.group_storage_rpc_addrs.is_some(),
        cfg.group_route_addrs.is_some(),
        cfg.rpc_listen_address.is_some(),
        cfg.socket_io_address.is_some(),
        cfg.pending_root.is_some(),
        cfg.group_deliver_count.is_some(),
    ];
    for ((key, why), present) in IGNORED.iter().zip(present) {
        if present {
            ignored.push(format!("{key} ({why})"));
        }
    }

    let any = |port: u16| -> SocketAddr { ([0, 0, 0, 0], port).into() };
    o.listen = cfg.port.map(any);
    o.tls_listen = cfg.ssl_port.map(any);
    if let Some(ws) = &cfg.ws_address {
        o.ws_listen = Some(go_listen_addr("ws_address", ws)?.addr);
    }
    if let Some(wss) = &cfg.wss_address {
        o.wss_listen = Some(go_listen_addr("wss_address", wss)?.addr);
    }
    // gobelieve loads the certificate only for a TLS or WSS listener; the
    // sample file names one with both listeners commented out.
    if cfg.ssl_port.is_some() || cfg.wss_address.is_some() {
        o.tls_cert = cfg.cert_file;
        o.tls_key = cfg.key_file;
    } else if cfg.cert_file.is_some() || cfg.key_file.is_some() {
        ignored.push("cert_file/key_file (no ssl_port or wss_address uses them)".into());
    }
    if let Some(http) = &cfg.http_listen_address {
        let a = go_listen_addr("http_listen_address", http)?;
        o.http_listen = Some(a.addr);
        layer.http_any_host = a.any_host;
    }
    let redis = cfg.redis.unwrap_or_default().url()?;
    if let Some(routes) = cfg.route_addrs.filter(|r| !r.is_empty()) {
        let routes: Vec<String> = routes
            .iter()
            .map(|r| match r.strip_prefix(':') {
                Some(port) => format!("127.0.0.1:{port}"),
                None => r.clone(),
            })
            .collect();
        o.imr = Some(routes.join(","));
        // A cluster needs a store every node reads; gobelieve's ims shards
        // have no Ferry counterpart, the Redis it already runs does.
        o.store = Some(redis.clone());
    }
    o.redis = Some(redis);
    o.kefu_appid = cfg.kefu_appid;
    o.word_file = cfg.word_file.filter(|p| !p.as_os_str().is_empty());
    if let Some(m) = cfg.memory_limit.filter(|m| !m.trim().is_empty()) {
        o.max_rss = Some(memory_limit_mib(&m)?);
    }
    // gobelieve's default is redis.
    o.auth = Some(match cfg.auth_method.as_deref().map(str::trim) {
        None | Some("") | Some("redis") => AuthMethod::Redis,
        Some("jwt") => AuthMethod::Jwt,
        Some(other) => return Err(format!("auth_method {other:?}: expected redis or jwt")),
    });
    o.jwt_secret = cfg.jwt_signing_key.filter(|k| !k.is_empty());
    o.mysql = cfg.mysqldb_datasource.filter(|d| !d.trim().is_empty());
    o.enable_friendship = cfg.enable_friendship;
    o.enable_blacklist = cfg.enable_blacklist;
    let log = cfg.log.unwrap_or_default();
    layer.log_filter = log.filter()?;
    for key in log.ignored_keys() {
        ignored.push(format!("{key} (Ferry logs to stderr)"));
    }
    if !ignored.is_empty() {
        layer.warnings.push(format!(
            "gobelieve config keys without effect in Ferry: {}",
            ignored.join(", ")
        ));
    }
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GobelieveLayer, String> {
        let cfg: ImCfg = toml::from_str(text).map_err(|e| e.to_string())?;
        map(cfg)
    }

    #[test]
    fn sample_keys_map_onto_ferry_options() {
        let l = parse(
            r#"
port = 23000
storage_rpc_addrs = ["127.0.0.1:13333"]
route_addrs = ["127.0.0.1:4444", ":4446"]
ws_address = ":13891"
http_listen_address = ":6666"
cert_file = "fullchain1.pem"
key_file = "privkey1.pem"
kefu_appid = 1000
pending_root = "/tmp/pending"
memory_limit = "4G"
auth_method = "jwt"
jwt_signing_key = "s3cret"
[redis]
address = "127.0.0.1:6379"
password = ""
db = 0
[log]
filename = "im.log"
level = "debug"
"#,
        )
        .expect("valid");
        let o = &l.options;
        assert_eq!(o.listen, Some("0.0.0.0:23000".parse().expect("addr")));
        assert_eq!(o.imr.as_deref(), Some("127.0.0.1:4444,127.0.0.1:4446"));
        assert_eq!(o.store.as_deref(), Some("redis://127.0.0.1:6379/0"));
        assert_eq!(o.ws_listen, Some("0.0.0.0:13891".parse().expect("addr")));
        assert!(l.http_any_host);
        assert_eq!(o.tls_cert, None, "no TLS listener configured");
        assert_eq!(o.kefu_appid, Some(1000));
        assert_eq!(o.max_rss, Some(4096));
        assert_eq!(o.auth, Some(AuthMethod::Jwt));
        assert_eq!(o.jwt_secret.as_deref(), Some("s3cret"));
        assert_eq!(l.log_filter, Some("debug"));
        let w = l.warnings.join("\n");
        for key in [
            "storage_rpc_addrs",
            "pending_root",
            "cert_file",
            "[log] filename",
        ] {
            assert!(w.contains(key), "{key} missing in {w}");
        }
        assert_eq!(l.warnings.len(), 1, "one warning line");
    }

    #[test]
    fn auth_defaults_to_redis_like_gobelieve() {
        let l = parse("port = 1\n").expect("valid");
        assert_eq!(l.options.auth, Some(AuthMethod::Redis));
        assert!(l.warnings.is_empty());
        assert_eq!(l.options.imr, None);
        assert_eq!(l.options.store, None);
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let e = parse("port = 1\nstorage_rpc_adrs = []\n").unwrap_err();
        assert!(e.contains("storage_rpc_adrs"), "{e}");
        let e = parse("[redis]\nhost = \"x\"\n").unwrap_err();
        assert!(e.contains("host"), "{e}");
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(parse("memory_limit = \"much\"\n").is_err());
        assert!(parse("auth_method = \"ldap\"\n").is_err());
        assert!(parse("ws_address = \"nowhere\"\n").is_err());
    }
}
