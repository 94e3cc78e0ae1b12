//! `ferry im` configuration: one struct, filled from flags > env (`FERRY_…`) >
//! TOML file (`--config`) > gobelieve's `im.cfg` (`--gobelieve-config`) >
//! defaults. Unknown TOML keys are rejected.

mod gobelieve;

pub use crate::hooks::{HookFail, HookStream};
pub use ferry_common::redact_url;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Raw options as given on the command line, in the environment or in the
/// file. Every field is optional so the sources can be layered.
#[derive(clap::Args, Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImOptions {
    /// TOML config file (its keys are the long flag names with `_` for `-`).
    #[arg(long, env = "FERRY_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// gobelieve `im.cfg` to start from (below flags, env and --config).
    #[arg(long, env = "FERRY_GOBELIEVE_CONFIG")]
    #[serde(skip)]
    pub gobelieve_config: Option<PathBuf>,
    /// Client TCP listener [default: 0.0.0.0:23000].
    #[arg(long, env = "FERRY_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// WebSocket listener, path /ws [default: 0.0.0.0:13891].
    #[arg(long, env = "FERRY_WS_LISTEN")]
    pub ws_listen: Option<SocketAddr>,
    /// Raw protocol over TLS; started only with --tls-cert/--tls-key [default: 0.0.0.0:24430].
    #[arg(long, env = "FERRY_TLS_LISTEN")]
    pub tls_listen: Option<SocketAddr>,
    /// Secure WebSocket listener, path /ws; started only with --tls-cert/--tls-key [default: 0.0.0.0:14891].
    #[arg(long, env = "FERRY_WSS_LISTEN")]
    pub wss_listen: Option<SocketAddr>,
    /// PEM certificate chain for the TLS and WSS listeners.
    #[arg(long, env = "FERRY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for the TLS and WSS listeners.
    #[arg(long, env = "FERRY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// HTTP API listener [default: 127.0.0.1:6666].
    #[arg(long, env = "FERRY_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Directory of the embedded store and the generated JWT secret [default: ./data].
    #[arg(long, env = "FERRY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Message store: `fjall` (embedded, default) or a
    /// shared Redis `redis://host:port/db` / `redis+cluster://h1:p1,h2:p2`.
    #[arg(long, env = "FERRY_STORE")]
    pub store: Option<String>,
    /// Newest messages kept per queue in the Redis store, 0 = no limit [default: 100000].
    #[arg(long, env = "FERRY_RETENTION_COUNT")]
    pub retention_count: Option<usize>,
    /// Days a message is kept in the Redis store, 0 = no limit [default: 30].
    #[arg(long, env = "FERRY_RETENTION_DAYS")]
    pub retention_days: Option<u64>,
    /// Comma-separated imr addresses; without it the node runs alone.
    #[arg(long, env = "FERRY_IMR")]
    pub imr: Option<String>,
    /// Shared secret presented to the imrs in the link handshake.
    #[arg(long, env = "FERRY_LINK_SECRET", hide_env_values = true)]
    pub link_secret: Option<String>,
    /// Bytes of publishes kept per imr link while it is down [default: 67108864].
    #[arg(long, env = "FERRY_LINK_BUFFER")]
    pub link_buffer: Option<usize>,
    /// Token check: `jwt` (default) or `redis` (gobelieve `access_token_<token>` hashes).
    #[arg(long, env = "FERRY_AUTH")]
    pub auth: Option<AuthMethod>,
    /// HMAC secret for JWT auth; generated once into the data dir when absent.
    #[arg(long, env = "FERRY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Redis URL for `--auth redis` [default: redis://127.0.0.1:6379].
    #[arg(long, env = "FERRY_REDIS")]
    pub redis: Option<String>,
    /// Customer-service appid for CUSTOMER_V2 messages [default: 0 = disabled].
    #[arg(long, env = "FERRY_KEFU_APPID")]
    pub kefu_appid: Option<i64>,
    /// Seconds without a complete frame before a client is dropped [default: 360].
    #[arg(long, env = "FERRY_IDLE_TIMEOUT")]
    pub idle_timeout: Option<u64>,
    /// Seconds during which a resent message is recognised and not stored again [default: 600].
    #[arg(long, env = "FERRY_DEDUP_WINDOW")]
    pub dedup_window: Option<u64>,
    /// Messages per sync window [default: 3000].
    #[arg(long, env = "FERRY_SYNC_LIMIT")]
    pub sync_limit: Option<usize>,
    /// Bytes queued for one client before it counts as a slow consumer and is
    /// disconnected [default: 4194304].
    #[arg(long, env = "FERRY_OUTBOX_BYTES")]
    pub outbox_bytes: Option<usize>,
    /// Serve `/dev/token?uid=N` on the HTTP and WebSocket ports for the web demo (JWT auth
    /// only). Development only: anyone reaching the port can log in as anyone.
    #[arg(long, env = "FERRY_DEV_TOKENS", num_args = 0..=1, default_missing_value = "true")]
    pub dev_tokens: Option<bool>,
    /// Bearer token required by the HTTP API; without it the API only binds loopback.
    #[arg(long, env = "FERRY_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Seconds a new connection has to log in before it is closed [default: 10].
    #[arg(long, env = "FERRY_AUTH_TIMEOUT")]
    pub auth_timeout: Option<u64>,
    /// Frames per second one connection may send (bursts up to one second's
    /// worth); above it the connection is closed, 0 = no limit [default: 20000].
    #[arg(long, env = "FERRY_MAX_FRAMES_PER_SEC")]
    pub max_frames_per_sec: Option<u32>,
    /// Open client connections per node; more are refused, 0 = no limit [default: 0].
    #[arg(long, env = "FERRY_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Logged-in connections per user (appid, uid) on this node; a login
    /// beyond it is refused, 0 = no limit [default: 64].
    #[arg(long, env = "FERRY_MAX_CONNECTIONS_PER_USER")]
    pub max_connections_per_user: Option<usize>,
    /// Resident memory (MiB) above which new connections are refused, 0 = off [default: 0].
    #[arg(long, env = "FERRY_MAX_RSS")]
    pub max_rss: Option<u64>,
    /// Dirty-word dictionary (one word per line, UTF-8): words in the JSON
    /// `"text"` of TEXT messages are replaced by `*`.
    #[arg(long, env = "FERRY_WORD_FILE")]
    pub word_file: Option<PathBuf>,
    /// gobelieve's MySQL database as the group source (read-only):
    /// `mysql://user:pass@host:port/db` or the Go DSN
    /// `user:pass@tcp(host:port)/db`. Changes are followed on the Redis
    /// stream `group_manager_stream` (on --redis).
    #[arg(long, env = "FERRY_MYSQL", hide_env_values = true)]
    pub mysql: Option<String>,
    /// Peer messages need friends both ways (ACK status 1/2 otherwise): the
    /// MySQL `friend` table with --mysql, else Ferry's own lists (HTTP API).
    #[arg(long, env = "FERRY_ENABLE_FRIENDSHIP", num_args = 0..=1, default_missing_value = "true")]
    pub enable_friendship: Option<bool>,
    /// Peer messages to a user who blacklisted the sender are refused (ACK
    /// status 3): MySQL `blacklist` with --mysql, else Ferry's own lists.
    #[arg(long, env = "FERRY_ENABLE_BLACKLIST", num_args = 0..=1, default_missing_value = "true")]
    pub enable_blacklist: Option<bool>,
    /// This node's name in presence answers and hook events [default: <hostname>:<listen port>].
    #[arg(long, env = "FERRY_NODE_NAME")]
    pub node_name: Option<String>,
    /// Seconds a user may be gone before a presence "offline" event is sent
    /// (a reconnect within it is no change) [default: 5].
    #[arg(long, env = "FERRY_PRESENCE_GRACE")]
    pub presence_grace: Option<u64>,
    /// The app's hook endpoint (http://…): before-send checks and, with
    /// --hook-stream http, event batches are POSTed to it.
    #[arg(long, env = "FERRY_HOOK_URL")]
    pub hook_url: Option<String>,
    /// HMAC-SHA256 key; every hook request carries `X-Ferry-Signature: sha256=<hex>` over its body.
    #[arg(long, env = "FERRY_HOOK_SECRET", hide_env_values = true)]
    pub hook_secret: Option<String>,
    /// Milliseconds a before-send answer may take [default: 500].
    #[arg(long, env = "FERRY_HOOK_TIMEOUT_MS")]
    pub hook_timeout_ms: Option<u64>,
    /// What a before-send timeout or error means: `open` (deliver) or `closed` (refuse) [default: open].
    #[arg(long, env = "FERRY_HOOK_FAIL")]
    pub hook_fail: Option<HookFail>,
    /// Comma-separated kinds that ask the hook before they are stored:
    /// im, group_im, customer, room_im [default: none].
    #[arg(long, env = "FERRY_HOOK_BEFORE_SEND")]
    pub hook_before_send: Option<String>,
    /// Comma-separated event kinds to emit: after_send, presence, group [default: none].
    #[arg(long, env = "FERRY_HOOK_EVENTS")]
    pub hook_events: Option<String>,
    /// Where events go: `http` (batches POSTed to --hook-url) or `redis` (XADD to a stream) [default: http].
    #[arg(long, env = "FERRY_HOOK_STREAM")]
    pub hook_stream: Option<HookStream>,
    /// Redis for `--hook-stream redis` [default: the --redis URL].
    #[arg(long, env = "FERRY_HOOK_REDIS")]
    pub hook_redis: Option<String>,
    /// Stream key for `--hook-stream redis` [default: ferry:events].
    #[arg(long, env = "FERRY_HOOK_STREAM_KEY")]
    pub hook_stream_key: Option<String>,
    /// Events held in memory while the sink is slow or down; beyond it new
    /// events are dropped and counted [default: 100000].
    #[arg(long, env = "FERRY_HOOK_QUEUE")]
    pub hook_queue: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    Jwt,
    Redis,
}

/// Configuration errors, reported before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Which message store a node uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// fjall LSM tree under `<data-dir>/fjall` (the default).
    Fjall,
    /// Shared Redis store, standalone (`redis://`, `rediss://`) or cluster
    /// (`redis+cluster://`).
    Redis(String),
}

impl StoreSpec {
    /// Parses a `--store` value.
    pub fn parse(s: &str) -> Result<StoreSpec, ConfigError> {
        match s.trim() {
            "" | "fjall" | "embedded" => Ok(StoreSpec::Fjall),
            "sqlite" => Err(ConfigError::Invalid(
                "--store sqlite was retired: the embedded store is fjall (see \"Stores\" in the README)"
                    .into(),
            )),
            u if u.starts_with("redis://")
                || u.starts_with("rediss://")
                || u.starts_with("redis+cluster://") =>
            {
                Ok(StoreSpec::Redis(u.to_string()))
            }
            other => Err(ConfigError::Invalid(format!(
                "--store {other:?}: expected fjall, redis://… or redis+cluster://…"
            ))),
        }
    }

    /// True for the stores every node of a cluster can read.
    pub fn is_shared(&self) -> bool {
        matches!(self, StoreSpec::Redis(_))
    }
}

/// PEM files of the TLS listeners.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Resolved configuration. Its `Debug` output never shows secrets.
#[derive(Clone)]
pub struct ImConfig {
    pub listen: SocketAddr,
    pub ws_listen: SocketAddr,
    pub tls_listen: SocketAddr,
    pub wss_listen: SocketAddr,
    /// Certificate and key files; the TLS and WSS listeners run only when set.
    pub tls: Option<TlsFiles>,
    pub http_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub store: StoreSpec,
    /// Redis store retention: newest messages kept per queue (0 = unlimited).
    pub retention_count: usize,
    /// Redis store retention by age (zero = unlimited).
    pub retention_age: Duration,
    pub imr: Vec<String>,
    pub link_secret: Option<String>,
    pub link_buffer: usize,
    pub auth: AuthMethod,
    pub jwt_secret: Option<String>,
    pub redis: String,
    /// Follow `speak_forbidden` on `redis` (set when Redis was configured:
    /// `--redis`, `[redis]`, or `--auth redis`).
    pub follow_mutes: bool,
    pub kefu_appid: i64,
    pub idle_timeout: Duration,
    pub dedup_window: Duration,
    pub sync_limit: usize,
    pub outbox_bytes: usize,
    pub api_token: Option<String>,
    pub dev_tokens: bool,
    /// See [`crate::limits`] and [`crate::connection::guard`].
    pub limits: crate::limits::LimitsConfig,
    pub node_name: String,
    pub presence_grace: Duration,
    /// `None` unless `--hook-url` or `--hook-stream redis` is given.
    pub hooks: Option<crate::hooks::HookConfig>,
    /// Dirty-word dictionary, see [`crate::wordfilter`].
    pub word_file: Option<PathBuf>,
    /// MySQL group source as a `mysql://` URL (see [`crate::store::mysql_groups`]).
    pub mysql: Option<String>,
    pub enable_friendship: bool,
    pub enable_blacklist: bool,
    /// Default log filter from gobelieve's `[log] level` (RUST_LOG wins).
    pub log_filter: Option<&'static str>,
    /// Lines to log at warn level once logging is up (ignored gobelieve keys,
    /// adjusted values).
    pub warnings: Vec<String>,
}

impl ImOptions {
    /// Layers `self` (flags and env, already merged by clap) over the file.
    pub fn resolve(self) -> Result<ImConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => ImOptions::default(),
        };
        let gob = match &self.gobelieve_config {
            Some(path) => gobelieve::read(path)?,
            None => gobelieve::GobelieveLayer::default(),
        };
        let mut warnings = gob.warnings;
        let http_from_gobelieve = self.http_listen.is_none() && file.http_listen.is_none();
        let mut o = self.or(file).or(gob.options);
        if http_from_gobelieve && gob.http_any_host && o.api_token.is_none() {
            // Go's ":6666" is every interface; Ferry exposes its unauthenticated
            // API on loopback only (the API server usually runs on the same host).
            if let Some(a) = o.http_listen.as_mut() {
                a.set_ip([127, 0, 0, 1].into());
                warnings.push(format!(
                    "http_listen_address has no host: the HTTP API listens on {a} only; \
                     set --api-token (or api_token) to listen on every interface"
                ));
            }
        }
        let cfg = ImConfig {
            listen: o.listen.unwrap_or_else(|| ([0, 0, 0, 0], 23000).into()),
            ws_listen: o.ws_listen.unwrap_or_else(|| ([0, 0, 0, 0], 13891).into()),
            tls_listen: o.tls_listen.unwrap_or_else(|| ([0, 0, 0, 0], 24430).into()),
            wss_listen: o.wss_listen.unwrap_or_else(|| ([0, 0, 0, 0], 14891).into()),
            tls: match (o.tls_cert, o.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                (None, None) => None,
                _ => {
                    return Err(ConfigError::Invalid(
                        "--tls-cert and --tls-key must be given together".into(),
                    ));
                }
            },
            http_listen: o
                .http_listen
                .unwrap_or_else(|| ([127, 0, 0, 1], 6666).into()),
            data_dir: o.data_dir.unwrap_or_else(|| PathBuf::from("./data")),
            store: StoreSpec::parse(o.store.as_deref().unwrap_or(""))?,
            retention_count: o.retention_count.unwrap_or(100_000),
            retention_age: Duration::from_secs(o.retention_days.unwrap_or(30) * 24 * 3600),
            imr: o
                .imr
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            link_secret: o.link_secret.filter(|s| !s.is_empty()),
            link_buffer: o.link_buffer.unwrap_or(64 * 1024 * 1024),
            auth: o.auth.unwrap_or(AuthMethod::Jwt),
            jwt_secret: o.jwt_secret.filter(|s| !s.is_empty()),
            follow_mutes: o.redis.is_some() || o.auth == Some(AuthMethod::Redis),
            redis: o
                .redis
                .clone()
                .unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
            kefu_appid: o.kefu_appid.unwrap_or(0),
            idle_timeout: Duration::from_secs(o.idle_timeout.unwrap_or(360)),
            dedup_window: Duration::from_secs(o.dedup_window.unwrap_or(600)),
            sync_limit: o.sync_limit.unwrap_or(3000),
            outbox_bytes: o.outbox_bytes.unwrap_or(4 * 1024 * 1024),
            api_token: o.api_token.filter(|s| !s.is_empty()),
            dev_tokens: o.dev_tokens.unwrap_or(false),
            limits: crate::limits::LimitsConfig {
                auth_timeout: Duration::from_secs(o.auth_timeout.unwrap_or(10)),
                max_frames_per_sec: o.max_frames_per_sec.unwrap_or(20_000),
                max_connections: o.max_connections.unwrap_or(0),
                max_connections_per_user: o.max_connections_per_user.unwrap_or(64),
                max_rss_bytes: o.max_rss.unwrap_or(0).saturating_mul(1024 * 1024),
            },
            node_name: o
                .node_name
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| default_node_name(o.listen)),
            presence_grace: Duration::from_secs(o.presence_grace.unwrap_or(5)),
            hooks: crate::hooks::HookConfig::from_options(
                o.hook_url,
                o.hook_secret,
                o.hook_timeout_ms,
                o.hook_fail,
                o.hook_before_send,
                o.hook_events,
                o.hook_stream,
                o.hook_redis.or(o.redis.clone()),
                o.hook_stream_key,
                o.hook_queue,
            )
            .map_err(ConfigError::Invalid)?,
            word_file: o.word_file,
            mysql: o
                .mysql
                .filter(|m| !m.trim().is_empty())
                .map(|m| crate::store::mysql_groups::mysql_url(&m))
                .transpose()
                .map_err(ConfigError::Invalid)?,
            enable_friendship: o.enable_friendship.unwrap_or(false),
            enable_blacklist: o.enable_blacklist.unwrap_or(false),
            log_filter: gob.log_filter,
            warnings,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn or(self, f: ImOptions) -> ImOptions {
        ImOptions {
            config: self.config,
            gobelieve_config: self.gobelieve_config,
            listen: self.listen.or(f.listen),
            ws_listen: self.ws_listen.or(f.ws_listen),
            tls_listen: self.tls_listen.or(f.tls_listen),
            wss_listen: self.wss_listen.or(f.wss_listen),
            tls_cert: self.tls_cert.or(f.tls_cert),
            tls_key: self.tls_key.or(f.tls_key),
            http_listen: self.http_listen.or(f.http_listen),
            data_dir: self.data_dir.or(f.data_dir),
            store: self.store.or(f.store),
            retention_count: self.retention_count.or(f.retention_count),
            retention_days: self.retention_days.or(f.retention_days),
            imr: self.imr.or(f.imr),
            link_secret: self.link_secret.or(f.link_secret),
            link_buffer: self.link_buffer.or(f.link_buffer),
            auth: self.auth.or(f.auth),
            jwt_secret: self.jwt_secret.or(f.jwt_secret),
            redis: self.redis.or(f.redis),
            kefu_appid: self.kefu_appid.or(f.kefu_appid),
            idle_timeout: self.idle_timeout.or(f.idle_timeout),
            dedup_window: self.dedup_window.or(f.dedup_window),
            sync_limit: self.sync_limit.or(f.sync_limit),
            outbox_bytes: self.outbox_bytes.or(f.outbox_bytes),
            api_token: self.api_token.or(f.api_token),
            dev_tokens: self.dev_tokens.or(f.dev_tokens),
            auth_timeout: self.auth_timeout.or(f.auth_timeout),
            max_frames_per_sec: self.max_frames_per_sec.or(f.max_frames_per_sec),
            max_connections: self.max_connections.or(f.max_connections),
            max_connections_per_user: self.max_connections_per_user.or(f.max_connections_per_user),
            max_rss: self.max_rss.or(f.max_rss),
            node_name: self.node_name.or(f.node_name),
            presence_grace: self.presence_grace.or(f.presence_grace),
            hook_url: self.hook_url.or(f.hook_url),
            hook_secret: self.hook_secret.or(f.hook_secret),
            hook_timeout_ms: self.hook_timeout_ms.or(f.hook_timeout_ms),
            hook_fail: self.hook_fail.or(f.hook_fail),
            hook_before_send: self.hook_before_send.or(f.hook_before_send),
            hook_events: self.hook_events.or(f.hook_events),
            hook_stream: self.hook_stream.or(f.hook_stream),
            hook_redis: self.hook_redis.or(f.hook_redis),
            hook_stream_key: self.hook_stream_key.or(f.hook_stream_key),
            hook_queue: self.hook_queue.or(f.hook_queue),
            word_file: self.word_file.or(f.word_file),
            mysql: self.mysql.or(f.mysql),
            enable_friendship: self.enable_friendship.or(f.enable_friendship),
            enable_blacklist: self.enable_blacklist.or(f.enable_blacklist),
        }
    }
}

/// `<hostname>:<client port>`: tells nodes apart in presence answers even
/// when several run on one host.
fn default_node_name(listen: Option<SocketAddr>) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", listen.map_or(23000, |a| a.port()))
}

fn read_file(path: &Path) -> Result<ImOptions, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

impl std::fmt::Debug for ImConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |o: &Option<String>| if o.is_some() { "<set>" } else { "<none>" };
        f.debug_struct("ImConfig")
            .field("listen", &self.listen)
            .field("ws_listen", &self.ws_listen)
            .field("tls_listen", &self.tls_listen)
            .field("wss_listen", &self.wss_listen)
            .field("tls", &self.tls)
            .field("http_listen", &self.http_listen)
            .field("data_dir", &self.data_dir)
            .field("store", &redacted_store(&self.store))
            .field("imr", &self.imr)
            .field("link_secret", &set(&self.link_secret))
            .field("auth", &self.auth)
            .field("jwt_secret", &set(&self.jwt_secret))
            .field("redis", &redact_url(&self.redis))
            .field("follow_mutes", &self.follow_mutes)
            .field("kefu_appid", &self.kefu_appid)
            .field("idle_timeout", &self.idle_timeout)
            .field("api_token", &set(&self.api_token))
            .field("dev_tokens", &self.dev_tokens)
            .field("limits", &self.limits)
            .field("node_name", &self.node_name)
            .field("presence_grace", &self.presence_grace)
            .field("hooks", &self.hooks)
            .field("word_file", &self.word_file)
            .field("mysql", &self.mysql.as_deref().map(redact_url))
            .field("enable_friendship", &self.enable_friendship)
            .field("enable_blacklist", &self.enable_blacklist)
            .field(
                "store_retention",
                &(self.retention_count, self.retention_age),
            )
            .field("link_buffer", &self.link_buffer)
            .field("dedup_window", &self.dedup_window)
            .field("sync_limit", &self.sync_limit)
            .field("outbox_bytes", &self.outbox_bytes)
            .finish_non_exhaustive()
    }
}

pub fn redacted_store(s: &StoreSpec) -> String {
    match s {
        StoreSpec::Redis(u) => redact_url(u),
        other => format!("{other:?}"),
    }
}

impl ImConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.api_token.is_none() && !self.http_listen.ip().is_loopback() {
            return Err(ConfigError::Invalid(format!(
                "--http-listen {} is not a loopback address: set --api-token to expose the HTTP API",
                self.http_listen
            )));
        }
        if self.dev_tokens && self.auth != AuthMethod::Jwt {
            return Err(ConfigError::Invalid(
                "--dev-tokens needs --auth jwt (it mints JWTs)".into(),
            ));
        }
        if self.sync_limit == 0 {
            return Err(ConfigError::Invalid(
                "--sync-limit must be at least 1".into(),
            ));
        }
        if self.idle_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "--idle-timeout must be at least 1 second".into(),
            ));
        }
        if self.limits.auth_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "--auth-timeout must be at least 1 second".into(),
            ));
        }
        if self.outbox_bytes < 64 * 1024 {
            return Err(ConfigError::Invalid(
                "--outbox-bytes must be at least 65536".into(),
            ));
        }
        if !self.imr.is_empty() && !self.store.is_shared() {
            return Err(ConfigError::Invalid(
                "--imr needs a shared store (--store redis://… or redis+cluster://…): a user's messages must be readable on every im node".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults_apply() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("im.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1\"\nkefu_appid = 9\nsync_limit = 10\n",
        )
        .expect("write");
        let cli = ImOptions {
            config: Some(path),
            sync_limit: Some(20),
            ..Default::default()
        };
        let cfg = cli.resolve().expect("valid");
        assert_eq!(cfg.listen, "127.0.0.1:1".parse().expect("addr"));
        assert_eq!(cfg.kefu_appid, 9);
        assert_eq!(cfg.sync_limit, 20);
        assert_eq!(cfg.http_listen, "127.0.0.1:6666".parse().expect("addr"));
        assert_eq!(cfg.auth, AuthMethod::Jwt);
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("im.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:1\"\n").expect("write");
        let err = ImOptions {
            config: Some(path),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn hook_and_presence_keys_come_from_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("im.toml");
        std::fs::write(
            &path,
            "hook_url = \"http://127.0.0.1:9/h\"\nhook_fail = \"closed\"\nhook_before_send = \"im,room_im\"\nhook_events = \"presence\"\npresence_grace = 2\nnode_name = \"n1\"\n",
        )
        .expect("write");
        let cfg = ImOptions {
            config: Some(path),
            hook_timeout_ms: Some(50),
            ..Default::default()
        }
        .resolve()
        .expect("valid");
        let h = cfg.hooks.expect("hooks");
        assert_eq!(h.fail, HookFail::Closed);
        assert_eq!(h.timeout, Duration::from_millis(50));
        assert_eq!(h.before.len(), 2);
        assert_eq!(cfg.presence_grace, Duration::from_secs(2));
        assert_eq!(cfg.node_name, "n1");
        // Without hooks the default node name still names the client port.
        let cfg = ImOptions::default().resolve().expect("valid");
        assert!(cfg.hooks.is_none());
        assert!(cfg.node_name.ends_with(":23000"), "{}", cfg.node_name);
    }

    #[test]
    fn gobelieve_file_is_the_lowest_layer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gob = dir.path().join("im.cfg");
        std::fs::write(
            &gob,
            "port = 1\nhttp_listen_address = \":2\"\nkefu_appid = 3\nword_file = \"w.txt\"\n\
             mysqldb_datasource = \"root:x@tcp(127.0.0.1:3306)/gobelieve\"\n",
        )
        .expect("write");
        let file = dir.path().join("ferry.toml");
        std::fs::write(&file, "kefu_appid = 4\n").expect("write");
        let cfg = ImOptions {
            gobelieve_config: Some(gob.clone()),
            config: Some(file),
            listen: Some("127.0.0.1:5".parse().expect("addr")),
            ..Default::default()
        }
        .resolve()
        .expect("valid");
        assert_eq!(
            cfg.listen,
            "127.0.0.1:5".parse().expect("addr"),
            "flag wins"
        );
        assert_eq!(cfg.kefu_appid, 4, "--config wins over the gobelieve file");
        assert_eq!(cfg.word_file.as_deref(), Some(Path::new("w.txt")));
        assert_eq!(cfg.auth, AuthMethod::Redis, "gobelieve's default");
        assert!(cfg.follow_mutes);
        // ":2" without an API token: loopback only, said in a warning.
        assert_eq!(cfg.http_listen, "127.0.0.1:2".parse().expect("addr"));
        let w = cfg.warnings.join("\n");
        assert!(w.contains("127.0.0.1:2"), "{w}");
        assert_eq!(
            cfg.mysql.as_deref(),
            Some("mysql://root:x@127.0.0.1:3306/gobelieve")
        );
        // With a token the API listens where the file says.
        let cfg = ImOptions {
            gobelieve_config: Some(gob),
            api_token: Some("t".into()),
            ..Default::default()
        }
        .resolve()
        .expect("valid");
        assert_eq!(cfg.http_listen, "0.0.0.0:2".parse().expect("addr"));
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let cfg = ImOptions {
            jwt_secret: Some("jwt-hunter2".into()),
            redis: Some("redis://:redis-hunter2@127.0.0.1:6379/0".into()),
            api_token: Some("api-hunter2".into()),
            link_secret: Some("link-hunter2".into()),
            mysql: Some("root:mysql-hunter2@tcp(127.0.0.1:3306)/gobelieve".into()),
            ..Default::default()
        }
        .resolve()
        .expect("valid");
        let s = format!("{cfg:?}");
        assert!(!s.contains("hunter2"), "{s}");
    }

    #[test]
    fn public_http_needs_api_token() {
        let o = ImOptions {
            http_listen: Some("0.0.0.0:6666".parse().expect("addr")),
            ..Default::default()
        };
        assert!(o.clone().resolve().is_err());
        let o = ImOptions {
            api_token: Some("t".into()),
            ..o
        };
        assert!(o.resolve().is_ok());
    }

    #[test]
    fn retired_sqlite_store_is_refused_with_a_pointer() {
        match StoreSpec::parse("sqlite") {
            Err(ConfigError::Invalid(why)) => assert!(why.contains("retired"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(StoreSpec::parse("fjall").expect("fjall"), StoreSpec::Fjall);
    }
}
