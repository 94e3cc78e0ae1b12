//! `ferry imr` configuration: one struct, filled from flags > env
//! (`FERRY_IMR_…`, plus the shared `FERRY_LINK_SECRET`) > TOML file
//! (`--config`) > gobelieve's `imr.cfg` (`--gobelieve-config`) > defaults.
//! Unknown TOML keys are rejected.
//!
//! The environment variables are prefixed `FERRY_IMR_` (not `FERRY_` as for
//! `ferry im`) so an im and an imr started from the same environment do not
//! pick up each other's listen addresses or config file. The link secret is
//! the exception: both sides must agree on it, so both read `FERRY_LINK_SECRET`.

mod gobelieve;

pub use ferry_common::config::ConfigError;
use ferry_common::config::{Layer, read_layer};
use ferry_common::redact_url;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

ferry_common::layered_options! {
/// Raw options as given on the command line, in the environment or in the
/// file. Every field is optional so the sources can be layered.
#[derive(clap::Args, Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImrOptions {
    /// TOML config file (its keys are the long flag names with `_` for `-`).
    #[arg(long, env = "FERRY_IMR_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// gobelieve `imr.cfg` to start from (below flags, env and --config).
    #[arg(long, env = "FERRY_IMR_GOBELIEVE_CONFIG")]
    #[serde(skip)]
    pub gobelieve_config: Option<PathBuf>,
    /// Link listener the im nodes connect to [default: 127.0.0.1:4444].
    #[arg(long, env = "FERRY_IMR_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// HTTP listener (/online, /all_online, /health, /stats) [default: 127.0.0.1:4445].
    #[arg(long, env = "FERRY_IMR_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Redis URL for the offline push queues [default: redis://127.0.0.1:6379].
    #[arg(long, env = "FERRY_IMR_REDIS")]
    pub redis: Option<String>,
    /// Do not write offline push entries (PUSH requests are ignored).
    #[arg(
        long,
        env = "FERRY_IMR_PUSH_DISABLED",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub push_disabled: Option<bool>,
    /// Shared secret every im must present in the link handshake [default: none].
    #[arg(long, env = "FERRY_LINK_SECRET", hide_env_values = true)]
    pub link_secret: Option<String>,
    /// Push entries kept in memory while waiting for Redis [default: 100000].
    #[arg(long, env = "FERRY_IMR_PUSH_BUFFER")]
    pub push_buffer: Option<usize>,
    /// Bytes queued towards one im before that link counts as too slow and is
    /// dropped (the im reconnects and resubscribes) [default: 67108864].
    #[arg(long, env = "FERRY_IMR_LINK_QUEUE")]
    pub link_queue: Option<usize>,
}
}

/// Resolved configuration.
#[derive(Clone)]
pub struct ImrConfig {
    pub listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub redis: String,
    pub push_disabled: bool,
    /// Empty = no secret required.
    pub link_secret: String,
    pub push_buffer: usize,
    pub link_queue: usize,
    /// Default log filter from gobelieve's `[log] level` (RUST_LOG wins).
    pub log_filter: Option<&'static str>,
    /// Lines to log at warn level once logging is up.
    pub warnings: Vec<String>,
}

/// Smallest accepted `--link-queue`: one large routed frame must fit.
pub const MIN_LINK_QUEUE: usize = 64 * 1024;

impl Default for ImrConfig {
    fn default() -> ImrConfig {
        ImrConfig {
            listen: ([127, 0, 0, 1], 4444).into(),
            http_listen: ([127, 0, 0, 1], 4445).into(),
            redis: "redis://127.0.0.1:6379".into(),
            push_disabled: false,
            link_secret: String::new(),
            push_buffer: 100_000,
            link_queue: 64 * 1024 * 1024,
            log_filter: None,
            warnings: Vec::new(),
        }
    }
}

/// Never prints the secret, only whether one is set.
impl std::fmt::Debug for ImrConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImrConfig")
            .field("listen", &self.listen)
            .field("http_listen", &self.http_listen)
            .field("redis", &redact_url(&self.redis))
            .field("push_disabled", &self.push_disabled)
            .field(
                "link_secret",
                &if self.link_secret.is_empty() {
                    "<none>"
                } else {
                    "<set>"
                },
            )
            .field("push_buffer", &self.push_buffer)
            .field("link_queue", &self.link_queue)
            .finish()
    }
}

impl ImrOptions {
    /// Layers `self` (flags and env, already merged by clap) over the file.
    pub fn resolve(self) -> Result<ImrConfig, ConfigError> {
        let file = read_layer(self.config.as_deref())?;
        let gob = match &self.gobelieve_config {
            Some(path) => gobelieve::read(path)?,
            None => gobelieve::GobelieveLayer::default(),
        };
        let o = self.or(file).or(gob.options);
        let d = ImrConfig::default();
        let cfg = ImrConfig {
            listen: o.listen.unwrap_or(d.listen),
            http_listen: o.http_listen.unwrap_or(d.http_listen),
            redis: o.redis.filter(|s| !s.is_empty()).unwrap_or(d.redis),
            push_disabled: o.push_disabled.unwrap_or(d.push_disabled),
            link_secret: o.link_secret.unwrap_or(d.link_secret),
            push_buffer: o.push_buffer.unwrap_or(d.push_buffer),
            link_queue: o.link_queue.unwrap_or(d.link_queue),
            log_filter: gob.log_filter,
            warnings: gob.warnings,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

impl ImrConfig {
    /// Checks value ranges (addresses and the URL are checked when binding).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.push_buffer == 0 {
            return Err(ConfigError::Invalid(
                "--push-buffer must be at least 1".into(),
            ));
        }
        if self.link_queue < MIN_LINK_QUEUE {
            return Err(ConfigError::Invalid(format!(
                "--link-queue must be at least {MIN_LINK_QUEUE} bytes"
            )));
        }
        if self.link_secret.len() > u16::MAX as usize {
            return Err(ConfigError::Invalid(
                "--link-secret must be at most 65535 bytes (it travels with a u16 length)".into(),
            ));
        }
        if !self.push_disabled
            && let Err(e) = redis::Client::open(self.redis.as_str())
        {
            return Err(ConfigError::Invalid(format!(
                "--redis is not a usable Redis URL: {e}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        opts: ImrOptions,
    }

    #[test]
    fn flags_override_file_and_defaults_apply() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("imr.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1\"\npush_buffer = 9\npush_disabled = true\nlink_secret = \"s\"\n",
        )
        .expect("write");
        let cli = ImrOptions {
            config: Some(path),
            push_buffer: Some(20),
            ..Default::default()
        };
        let cfg = cli.resolve().expect("valid");
        assert_eq!(cfg.listen, "127.0.0.1:1".parse().expect("addr"));
        assert_eq!(cfg.push_buffer, 20);
        assert!(cfg.push_disabled);
        assert_eq!(cfg.link_secret, "s");
        assert_eq!(cfg.http_listen, "127.0.0.1:4445".parse().expect("addr"));
        assert_eq!(cfg.redis, "redis://127.0.0.1:6379");
        assert_eq!(cfg.link_queue, 64 * 1024 * 1024);
    }

    #[test]
    fn defaults() {
        let cfg = ImrOptions::default().resolve().expect("valid");
        assert_eq!(cfg.listen, "127.0.0.1:4444".parse().expect("addr"));
        assert!(!cfg.push_disabled);
        assert!(cfg.link_secret.is_empty());
        assert_eq!(cfg.push_buffer, 100_000);
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("imr.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:1\"\n").expect("write");
        let err = ImrOptions {
            config: Some(path),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn push_disabled_is_a_plain_flag() {
        let cli = Cli::try_parse_from(["imr", "--push-disabled"]).expect("parse");
        assert_eq!(cli.opts.push_disabled, Some(true));
        let cli = Cli::try_parse_from(["imr", "--push-disabled=false"]).expect("parse");
        assert_eq!(cli.opts.push_disabled, Some(false));
        let cli = Cli::try_parse_from(["imr", "--listen", "127.0.0.1:9"]).expect("parse");
        assert_eq!(cli.opts.push_disabled, None);
    }

    #[test]
    fn bad_values_are_rejected() {
        let o = ImrOptions {
            push_buffer: Some(0),
            ..Default::default()
        };
        assert!(o.resolve().is_err());
        let o = ImrOptions {
            link_queue: Some(10),
            ..Default::default()
        };
        assert!(o.resolve().is_err());
        let o = ImrOptions {
            redis: Some("127.0.0.1:6379".into()),
            ..Default::default()
        };
        assert!(o.resolve().is_err());
    }

    /// The `[default: …]` of every flag's help names the value of
    /// [`ImrConfig::default`], so the help cannot drift from it.
    #[test]
    fn help_shows_the_defaults_resolve_uses() {
        use clap::Args;
        let d = ImrConfig::default();
        let shown: &[(&str, String)] = &[
            ("listen", d.listen.to_string()),
            ("http_listen", d.http_listen.to_string()),
            ("redis", d.redis.clone()),
            ("link_secret", "none".to_string()),
            ("push_buffer", d.push_buffer.to_string()),
            ("link_queue", d.link_queue.to_string()),
        ];
        let cmd = ImrOptions::augment_args(clap::Command::new("imr"));
        let helps = cmd.get_arguments().map(|a| {
            let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            (a.get_id().to_string(), help)
        });
        ferry_common::config::check_help_defaults(helps, shown).expect("help states the defaults");
    }

    #[test]
    fn debug_hides_the_secret() {
        let cfg = ImrConfig {
            link_secret: "hunter2".into(),
            ..Default::default()
        };
        let s = format!("{cfg:?}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("<set>"), "{s}");
    }
}
