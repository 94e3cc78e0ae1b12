//! Pieces of gobelieve's TOML config files (`im.cfg`, `imr.cfg`) that the im
//! and the imr share: Go-style listen addresses, the `[redis]` and `[log]`
//! sections. Each program maps its own keys onto its options; this module
//! only turns gobelieve's spellings into Ferry's.

use serde::Deserialize;
use std::net::{SocketAddr, ToSocketAddrs};

/// gobelieve's `[redis]` section.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// `host:port` (no scheme), default `127.0.0.1:6379`.
    pub address: Option<String>,
    #[serde(default)]
    pub password: String,
    /// gobelieve SELECTs it only when 0 < db < 16; the URL carries it as is.
    #[serde(default)]
    pub db: i64,
}

impl RedisSection {
    /// The section as a `redis://` URL (password percent-encoded).
    pub fn url(&self) -> Result<String, String> {
        let address = self
            .address
            .as_deref()
            .filter(|a| !a.trim().is_empty())
            .unwrap_or("127.0.0.1:6379")
            .trim();
        if address.contains("://") {
            return Err(format!(
                "[redis] address {address:?}: expected host:port without a scheme"
            ));
        }
        let host = match address.strip_prefix(':') {
            Some(port) => format!("127.0.0.1:{port}"),
            None => address.to_string(),
        };
        if !(0..16).contains(&self.db) {
            return Err(format!("[redis] db {}: expected 0..15", self.db));
        }
        let auth = if self.password.is_empty() {
            String::new()
        } else {
            format!(":{}@", percent_encode(&self.password))
        };
        Ok(format!("redis://{auth}{host}/{}", self.db))
    }
}

/// gobelieve's `[log]` section. Only `level` carries over: Ferry logs to
/// stderr (the service manager keeps and rotates it).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub filename: Option<String>,
    pub level: Option<String>,
    pub backup: Option<i64>,
    pub age: Option<i64>,
    pub caller: Option<bool>,
}

impl LogSection {
    /// The `tracing` filter directive for `level` (`fatal` has no tracing
    /// counterpart and becomes `error`).
    pub fn filter(&self) -> Result<Option<&'static str>, String> {
        let Some(level) = self.level.as_deref() else {
            return Ok(None);
        };
        Ok(Some(match level.trim().to_ascii_lowercase().as_str() {
            "trace" => "trace",
            "debug" => "debug",
            "info" | "" => "info",
            "warn" | "warning" => "warn",
            "error" | "fatal" | "panic" => "error",
            other => {
                return Err(format!(
                    "[log] level {other:?}: expected debug, info, warn, error or fatal"
                ));
            }
        }))
    }

    /// Names of the keys that have no effect in Ferry.
    pub fn ignored_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.filename.is_some() {
            keys.push("[log] filename");
        }
        if self.backup.is_some() {
            keys.push("[log] backup");
        }
        if self.age.is_some() {
            keys.push("[log] age");
        }
        if self.caller.is_some() {
            keys.push("[log] caller");
        }
        keys
    }
}

/// How a Go listen address (`":6666"`, `"0.0.0.0:6666"`, `"localhost:6666"`)
/// was written: an empty host means every interface in Go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoAddr {
    pub addr: SocketAddr,
    /// True when the host part was empty (`":6666"`).
    pub any_host: bool,
}

/// Parses a Go `net.Listen` address.
pub fn go_listen_addr(key: &str, s: &str) -> Result<GoAddr, String> {
    let s = s.trim();
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| format!("{key} {s:?}: bad port"))?;
        return Ok(GoAddr {
            addr: ([0, 0, 0, 0], port).into(),
            any_host: true,
        });
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(GoAddr {
            addr,
            any_host: false,
        });
    }
    // A host name: resolved once at start, like Go's listener does.
    let addr = s
        .to_socket_addrs()
        .map_err(|e| format!("{key} {s:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{key} {s:?}: the host name resolves to nothing"))?;
    Ok(GoAddr {
        addr,
        any_host: false,
    })
}

/// Parses gobelieve's `memory_limit` (`"4096M"`, `"8G"`, `"512K"`, bytes
/// without a suffix) into MiB (rounded up).
pub fn memory_limit_mib(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || format!("memory_limit {s:?}: expected a size such as 4096M or 8G");
    let (digits, mult): (&str, u64) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1 << 10),
        Some((i, 'm' | 'M')) => (&t[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&t[..i], 1 << 30),
        Some(_) => (t, 1),
        None => return Err(bad()),
    };
    let n: u64 = digits.trim().parse().map_err(|_| bad())?;
    let bytes = n.checked_mul(mult).ok_or_else(bad)?;
    Ok(bytes.div_ceil(1 << 20))
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for a
/// user name or password placed in a URL.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_section_becomes_a_url() {
        let r = RedisSection {
            address: Some("10.0.0.2:6380".into()),
            password: "p@ss:w".into(),
            db: 3,
        };
        assert_eq!(r.url().expect("url"), "redis://:p%40ss%3Aw@10.0.0.2:6380/3");
        assert_eq!(
            RedisSection::default().url().expect("url"),
            "redis://127.0.0.1:6379/0"
        );
        let bad = RedisSection {
            db: 16,
            ..Default::default()
        };
        assert!(bad.url().unwrap_err().contains("db"));
    }

    #[test]
    fn go_addresses() {
        let a = go_listen_addr("port", ":6666").expect("addr");
        assert_eq!(a.addr, "0.0.0.0:6666".parse().expect("addr"));
        assert!(a.any_host);
        let a = go_listen_addr("port", "127.0.0.1:1").expect("addr");
        assert!(!a.any_host);
        assert!(
            go_listen_addr("ws_address", ":x")
                .unwrap_err()
                .contains("ws_address")
        );
    }

    #[test]
    fn memory_limits() {
        assert_eq!(memory_limit_mib("4096M"), Ok(4096));
        assert_eq!(memory_limit_mib("8G"), Ok(8192));
        assert_eq!(memory_limit_mib("1048576"), Ok(1));
        assert!(memory_limit_mib("lots").is_err());
        assert!(memory_limit_mib("").is_err());
    }

    #[test]
    fn log_levels() {
        let l = LogSection {
            level: Some("fatal".into()),
            ..Default::default()
        };
        assert_eq!(l.filter(), Ok(Some("error")));
        let l = LogSection {
            level: Some("loud".into()),
            ..Default::default()
        };
        assert!(l.filter().is_err());
    }
}
