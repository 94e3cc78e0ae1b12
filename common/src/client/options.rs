//! Connection options.

use std::time::Duration;

/// How a [`super::Client`] behaves. `Default` suits tests and apps.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Run the personal sync loop (spec §3.6). On by default; turn it off to
    /// see every frame raw (e.g. protocol tests, or a pure sender in a load
    /// test that does not want its own history).
    pub sync: bool,
    /// Starting sync key. 0 lets the server resume from the key it stored
    /// from our SYNC_KEY reports.
    pub sync_key: i64,
    /// How long to wait for an ACK, PONG or AUTH_STATUS.
    pub request_timeout: Duration,
    /// After this long without SYNC_END a sync no longer blocks new ones
    /// (the server sends nothing when its storage fails).
    pub sync_timeout: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Largest frame body accepted from the server. Servers limit clients to
    /// 32 KiB but may send more (e.g. NOTIFICATION from HTTP), so the client
    /// is generous.
    pub max_body: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            sync: true,
            sync_key: 0,
            request_timeout: Duration::from_secs(10),
            sync_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            max_body: 16 * 1024 * 1024,
        }
    }
}
