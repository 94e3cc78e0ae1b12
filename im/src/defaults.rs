//! Every default of `ferry im`, stated once: `config` resolves unset options
//! to these, and the components that also have a `Default` of their own (the
//! stores, the limits, the hooks) take theirs from here, so a default cannot
//! differ between the command line and a library user. The `[default: …]`
//! in each flag's help is checked against these by a test in `config`.
//!
//! A leaf module: it uses nothing of the crate, so anything may use it
//! without closing an import circle.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

const fn addr(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

/// `--listen`: client TCP.
pub const LISTEN: SocketAddr = addr(Ipv4Addr::UNSPECIFIED, 23000);
/// `--ws-listen`.
pub const WS_LISTEN: SocketAddr = addr(Ipv4Addr::UNSPECIFIED, 13891);
/// `--tls-listen`.
pub const TLS_LISTEN: SocketAddr = addr(Ipv4Addr::UNSPECIFIED, 24430);
/// `--wss-listen`.
pub const WSS_LISTEN: SocketAddr = addr(Ipv4Addr::UNSPECIFIED, 14891);
/// `--http-listen`: loopback, because the API has no token by default.
pub const HTTP_LISTEN: SocketAddr = addr(Ipv4Addr::LOCALHOST, 6666);
/// `--data-dir`.
pub const DATA_DIR: &str = "./data";
/// `--retention-count` (Redis store).
pub const RETENTION_COUNT: usize = 100_000;
/// `--retention-days` (Redis store).
pub const RETENTION_DAYS: u64 = 30;
/// `--link-buffer`, bytes.
pub const LINK_BUFFER: usize = 64 * 1024 * 1024;
/// `--redis`, and `--hook-redis` when neither is given.
pub const REDIS: &str = "redis://127.0.0.1:6379";
/// `--kefu-appid`: 0 = customer service disabled.
pub const KEFU_APPID: i64 = 0;
/// `--idle-timeout`, seconds.
pub const IDLE_TIMEOUT_SECS: u64 = 360;
/// `--dedup-window`, seconds (also the stores' own default).
pub const DEDUP_WINDOW_SECS: u64 = 600;
/// `--sync-limit`, messages per window.
pub const SYNC_LIMIT: usize = 3000;
/// `--outbox-bytes`.
pub const OUTBOX_BYTES: usize = 4 * 1024 * 1024;
/// `--auth-timeout`, seconds.
pub const AUTH_TIMEOUT_SECS: u64 = 10;
/// `--max-frames-per-sec` (0 = no limit).
pub const MAX_FRAMES_PER_SEC: u32 = 20_000;
/// `--max-connections` (0 = no limit).
pub const MAX_CONNECTIONS: usize = 0;
/// `--max-connections-per-user` (0 = no limit).
pub const MAX_CONNECTIONS_PER_USER: usize = 64;
/// `--max-rss`, MiB (0 = off).
pub const MAX_RSS_MIB: u64 = 0;
/// `--presence-grace`, seconds.
pub const PRESENCE_GRACE_SECS: u64 = 5;
/// `--hook-timeout-ms`.
pub const HOOK_TIMEOUT_MS: u64 = 500;
/// `--hook-stream-key`.
pub const HOOK_STREAM_KEY: &str = "ferry:events";
/// `--hook-queue`, events.
pub const HOOK_QUEUE: usize = 100_000;
