//! Per-connection defences, independent of the transport: the login deadline
//! (a connection that has not authenticated within `--auth-timeout` is closed,
//! however many bytes it trickles in) and the frame-rate limit (a token bucket
//! of `--max-frames-per-sec` tokens per second, holding at most one second's
//! worth; a connection that overdraws it is closed with reason
//! `frame_rate_exceeded`).
//!
//! Both close with a reason the transport logs at info level, with the peer
//! address, and count in the node's [`Metrics`].

use crate::disconnect::Disconnect;
use crate::limits::{LimitsConfig, once_per_second};
use crate::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use tokio::time::Instant;

/// Last second a close of each kind was logged (see [`once_per_second`]).
static LOGGED_AUTH_TIMEOUT: AtomicU64 = AtomicU64::new(0);
static LOGGED_RATE: AtomicU64 = AtomicU64::new(0);

pub struct Guard {
    auth_deadline: Option<Instant>,
    rate: Option<Bucket>,
}

/// Token bucket refilled continuously.
struct Bucket {
    per_sec: f64,
    tokens: f64,
    at: Instant,
}

impl Guard {
    pub fn new(cfg: &LimitsConfig) -> Guard {
        let now = Instant::now();
        Guard {
            auth_deadline: Some(now + cfg.auth_timeout),
            rate: (cfg.max_frames_per_sec > 0).then(|| Bucket {
                per_sec: f64::from(cfg.max_frames_per_sec),
                tokens: f64::from(cfg.max_frames_per_sec),
                at: now,
            }),
        }
    }

    /// The connection logged in: no login deadline any more.
    pub fn authenticated(&mut self) {
        self.auth_deadline = None;
    }

    /// When the connection must be closed unless it logs in first.
    pub fn auth_deadline(&self) -> Option<Instant> {
        self.auth_deadline
    }

    /// `deadline` moved earlier to the login deadline, if one is pending.
    pub fn earliest(&self, deadline: Instant) -> Instant {
        self.auth_deadline.map_or(deadline, |d| d.min(deadline))
    }

    /// Whether the login deadline has passed (checked when a timer fires).
    pub fn auth_expired(&self, metrics: &Metrics, peer: SocketAddr) -> bool {
        let expired = self.auth_deadline.is_some_and(|d| d <= Instant::now());
        if expired {
            metrics.auth_timeouts.inc();
            if once_per_second(&LOGGED_AUTH_TIMEOUT) {
                tracing::info!(%peer, reason = Disconnect::AuthTimeout.label(), total = metrics.auth_timeouts.get(), "closing a connection that did not log in");
            }
        }
        expired
    }

    /// Charges `n` received frames; `Err(reason)` when the rate is exceeded.
    pub fn charge(
        &mut self,
        n: usize,
        metrics: &Metrics,
        peer: SocketAddr,
    ) -> Result<(), Disconnect> {
        self.charge_at(n, Instant::now(), metrics, peer)
    }

    fn charge_at(
        &mut self,
        n: usize,
        now: Instant,
        metrics: &Metrics,
        peer: SocketAddr,
    ) -> Result<(), Disconnect> {
        let Some(b) = &mut self.rate else {
            return Ok(());
        };
        if n == 0 {
            return Ok(());
        }
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * b.per_sec;
        b.tokens = (b.tokens + refill).min(b.per_sec);
        b.at = now;
        b.tokens -= n as f64;
        if b.tokens < 0.0 {
            metrics.rate_limited.inc();
            if once_per_second(&LOGGED_RATE) {
                tracing::info!(%peer, reason = Disconnect::FrameRateExceeded.label(), limit = b.per_sec, total = metrics.rate_limited.get(), "closing a connection that sends too many frames");
            }
            return Err(Disconnect::FrameRateExceeded);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(rate: u32) -> LimitsConfig {
        LimitsConfig {
            auth_timeout: Duration::from_secs(5),
            max_frames_per_sec: rate,
            ..LimitsConfig::default()
        }
    }

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1))
    }

    #[test]
    fn bucket_allows_one_second_burst_then_refills() {
        let metrics = Metrics::default();
        let mut g = Guard::new(&cfg(100));
        let t0 = Instant::now();
        assert!(g.charge_at(100, t0, &metrics, peer()).is_ok());
        assert_eq!(
            g.charge_at(1, t0, &metrics, peer()),
            Err(Disconnect::FrameRateExceeded)
        );
        assert_eq!(metrics.rate_limited.get(), 1);
        let mut g = Guard::new(&cfg(100));
        let t0 = Instant::now();
        assert!(g.charge_at(100, t0, &metrics, peer()).is_ok());
        let t1 = t0 + Duration::from_millis(500);
        assert!(g.charge_at(50, t1, &metrics, peer()).is_ok());
        assert!(g.charge_at(1, t1, &metrics, peer()).is_err());
        // Idle for a long time: the bucket holds at most one second's worth.
        let mut g = Guard::new(&cfg(100));
        let later = Instant::now() + Duration::from_secs(60);
        assert!(g.charge_at(101, later, &metrics, peer()).is_err());
    }

    #[test]
    fn zero_rate_means_unlimited() {
        let metrics = Metrics::default();
        let mut g = Guard::new(&cfg(0));
        assert!(g.charge(10_000_000, &metrics, peer()).is_ok());
    }

    #[test]
    fn auth_deadline_expires_unless_authenticated() {
        let metrics = Metrics::default();
        let mut g = Guard::new(&cfg(0));
        let far = Instant::now() + Duration::from_secs(360);
        assert!(g.earliest(far) < far);
        assert!(!g.auth_expired(&metrics, peer()));
        g.auth_deadline = Some(Instant::now());
        assert!(g.auth_expired(&metrics, peer()));
        assert_eq!(metrics.auth_timeouts.get(), 1);
        g.authenticated();
        assert_eq!(g.earliest(far), far);
        assert!(!g.auth_expired(&metrics, peer()));
    }
}
