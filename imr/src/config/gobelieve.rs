//! gobelieve's `imr.cfg` (`--gobelieve-config`): `listen`,
//! `http_listen_address`, `push_disabled`, `[redis]`, `[log]` become one more
//! layer of [`ImrOptions`], below the flags, the environment and `--config`.
//! Unknown keys are errors naming the key.

use super::{ConfigError, ImrOptions};
use ferry_common::gobelieve::{LogSection, RedisSection, go_listen_addr};
use serde::Deserialize;
use std::path::Path;

/// The keys of gobelieve's `imr.cfg` (spec §7.2).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImrCfg {
    listen: Option<String>,
    http_listen_address: Option<String>,
    push_disabled: Option<bool>,
    redis: Option<RedisSection>,
    log: Option<LogSection>,
}

/// The gobelieve file as a layer of options, plus what to tell the operator.
#[derive(Debug, Default)]
pub struct GobelieveLayer {
    pub options: ImrOptions,
    pub warnings: Vec<String>,
    pub log_filter: Option<&'static str>,
}

/// Reads and maps the file.
pub fn read(path: &Path) -> Result<GobelieveLayer, ConfigError> {
    ferry_common::config::read_toml(path, map)
}

fn map(cfg: ImrCfg) -> Result<GobelieveLayer, String> {
    let mut layer = GobelieveLayer::default();
    let o = &mut layer.options;
    if let Some(l) = &cfg.listen {
        o.listen = Some(go_listen_addr("listen", l)?.addr);
    }
    if let Some(h) = &cfg.http_listen_address {
        o.http_listen = Some(go_listen_addr("http_listen_address", h)?.addr);
    }
    o.push_disabled = cfg.push_disabled;
    o.redis = Some(cfg.redis.unwrap_or_default().url()?);
    let log = cfg.log.unwrap_or_default();
    layer.log_filter = log.filter()?;
    let ignored = log.ignored_keys();
    if !ignored.is_empty() {
        layer.warnings.push(format!(
            "gobelieve config keys without effect in Ferry: {} (Ferry logs to stderr)",
            ignored.join(", ")
        ));
    }
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GobelieveLayer, String> {
        let cfg: ImrCfg = toml::from_str(text).map_err(|e| e.to_string())?;
        map(cfg)
    }

    #[test]
    fn sample_maps() {
        let l = parse(
            "listen = \":4444\"\nhttp_listen_address = \"127.0.0.1:4445\"\npush_disabled = true\n\
             [redis]\naddress = \"127.0.0.1:6380\"\npassword = \"pw\"\ndb = 1\n\
             [log]\nfilename = \"imr.log\"\nlevel = \"warn\"\n",
        )
        .expect("valid");
        assert_eq!(
            l.options.listen,
            Some("0.0.0.0:4444".parse().expect("addr"))
        );
        assert_eq!(
            l.options.http_listen,
            Some("127.0.0.1:4445".parse().expect("addr"))
        );
        assert_eq!(l.options.push_disabled, Some(true));
        assert_eq!(
            l.options.redis.as_deref(),
            Some("redis://:pw@127.0.0.1:6380/1")
        );
        assert_eq!(l.log_filter, Some("warn"));
        assert!(l.warnings[0].contains("[log] filename"), "{:?}", l.warnings);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("listen = \":4444\"\nlisten_port = 1\n").unwrap_err();
        assert!(e.contains("listen_port"), "{e}");
    }
}
