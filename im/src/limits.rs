//! Node-wide admission limits: open connections per node, logged-in
//! connections per user, and a memory guard that refuses new connections
//! while the process's resident memory is above a bound.
//!
//! Each admitted connection (or login) holds a permit whose `Drop` gives the
//! slot back, so a slot can never leak on an early return or a panic in the
//! connection task. Refusals are counted in [`Metrics`] and logged at most
//! once per second per kind, so a connection storm cannot flood the log.
//!
//! The open-connection count admitted against is the `ferry_connections`
//! gauge itself ([`Metrics::open_connections`]): a permit is the only way in
//! or out of it.

use crate::metrics::{Counter, Metrics, Transport};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The limit flags, resolved (`0` = no limit).
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Time a connection has to send a successful AUTH_TOKEN.
    pub auth_timeout: Duration,
    /// Frames per second one connection may send (token bucket, burst = one second).
    pub max_frames_per_sec: u32,
    pub max_connections: usize,
    pub max_connections_per_user: usize,
    pub max_rss_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            auth_timeout: Duration::from_secs(10),
            max_frames_per_sec: 20_000,
            max_connections: 0,
            max_connections_per_user: 64,
            max_rss_bytes: 0,
        }
    }
}

/// Why a connection or login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("node connection limit reached")]
    NodeFull,
    #[error("per-user connection limit reached")]
    UserFull,
    #[error("resident memory above --max-rss")]
    Memory,
}

/// How long a measured RSS is trusted: reading /proc on every accept of a
/// storm would cost more than the accept itself.
const RSS_TTL: Duration = Duration::from_millis(100);

pub struct Limits {
    cfg: LimitsConfig,
    metrics: Arc<Metrics>,
    per_user: Mutex<HashMap<(i64, i64), usize>>,
    rss: Mutex<(Instant, u64)>,
    /// Unix second of the last refusal log line, per [`Refusal`] kind.
    logged: [AtomicU64; 3],
}

impl Limits {
    pub fn new(cfg: LimitsConfig, metrics: Arc<Metrics>) -> Arc<Limits> {
        Arc::new(Limits {
            cfg,
            metrics,
            per_user: Mutex::new(HashMap::new()),
            rss: Mutex::new((Instant::now() - RSS_TTL * 2, 0)),
            logged: Default::default(),
        })
    }

    pub fn config(&self) -> &LimitsConfig {
        &self.cfg
    }

    /// Admits a new client connection over `transport`, or refuses it
    /// (counted and logged).
    pub fn admit(self: &Arc<Self>, transport: Transport) -> Result<ConnPermit, Refusal> {
        if self.cfg.max_rss_bytes > 0 {
            let rss = self.rss_bytes();
            if rss > self.cfg.max_rss_bytes {
                self.refuse(Refusal::Memory, rss);
                return Err(Refusal::Memory);
            }
        }
        let max = self.cfg.max_connections as u64;
        let open = self.metrics.open(transport);
        if max > 0 && open > max {
            self.metrics.close(transport);
            self.refuse(Refusal::NodeFull, max);
            return Err(Refusal::NodeFull);
        }
        Ok(ConnPermit {
            limits: self.clone(),
            transport,
        })
    }

    /// Admits one more logged-in connection of (appid, uid).
    pub fn admit_user(self: &Arc<Self>, appid: i64, uid: i64) -> Result<UserPermit, Refusal> {
        let max = self.cfg.max_connections_per_user;
        {
            let mut m = self.per_user.lock().unwrap_or_else(|e| e.into_inner());
            let n = m.entry((appid, uid)).or_insert(0);
            if max == 0 || *n < max {
                *n += 1;
                return Ok(UserPermit {
                    limits: self.clone(),
                    key: (appid, uid),
                });
            }
        }
        self.refuse(Refusal::UserFull, max as u64);
        Err(Refusal::UserFull)
    }

    /// Logged-in connections of (appid, uid) holding a permit.
    pub fn user_connections(&self, appid: i64, uid: i64) -> usize {
        let m = self.per_user.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&(appid, uid)).copied().unwrap_or(0)
    }

    fn rss_bytes(&self) -> u64 {
        let mut c = self.rss.lock().unwrap_or_else(|e| e.into_inner());
        if c.0.elapsed() >= RSS_TTL {
            // Unreadable /proc (not Linux): the guard stays open rather than
            // refusing everyone.
            *c = (Instant::now(), current_rss().unwrap_or(0));
        }
        c.1
    }

    fn counter(&self, why: Refusal) -> &Counter {
        match why {
            Refusal::NodeFull => &self.metrics.refused_connections,
            Refusal::UserFull => &self.metrics.refused_user_connections,
            Refusal::Memory => &self.metrics.refused_memory,
        }
    }

    /// Counts a refusal and logs it (at most once a second per kind).
    fn refuse(&self, why: Refusal, limit_or_value: u64) {
        let counter = self.counter(why);
        counter.inc();
        let total = counter.get();
        if !once_per_second(&self.logged[why as usize]) {
            return;
        }
        match why {
            Refusal::Memory => tracing::warn!(
                rss_bytes = limit_or_value,
                max_rss_bytes = self.cfg.max_rss_bytes,
                refused_total = total,
                "refusing connection: {why}"
            ),
            _ => tracing::warn!(
                limit = limit_or_value,
                refused_total = total,
                "refusing connection: {why}"
            ),
        }
    }
}

/// True at most once per wall-clock second per `slot`: keeps an attack
/// from turning into a log flood (the counters still count every event).
pub fn once_per_second(slot: &AtomicU64) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    slot.swap(now, Ordering::Relaxed) != now
}

/// Resident set size of this process, from `/proc/self/status` (`VmRSS`).
pub fn current_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vmrss(&s)
}

fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// One node connection slot; released on drop.
pub struct ConnPermit {
    limits: Arc<Limits>,
    transport: Transport,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.limits.metrics.close(self.transport);
    }
}

/// One per-user login slot; released on drop.
pub struct UserPermit {
    limits: Arc<Limits>,
    key: (i64, i64),
}

impl Drop for UserPermit {
    fn drop(&mut self) {
        let mut m = self
            .limits
            .per_user
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(f: impl FnOnce(&mut LimitsConfig)) -> Arc<Limits> {
        let mut c = LimitsConfig::default();
        f(&mut c);
        Limits::new(c, Arc::default())
    }

    #[test]
    fn node_limit_refuses_and_releases() {
        let l = limits(|c| c.max_connections = 2);
        let a = l.admit(Transport::Tcp).expect("first");
        let _b = l.admit(Transport::Ws).expect("second");
        assert_eq!(l.admit(Transport::Tcp).err(), Some(Refusal::NodeFull));
        assert_eq!(l.metrics.refused_connections.get(), 1);
        assert_eq!(l.metrics.open_connections(), [1, 0, 1, 0]);
        drop(a);
        assert_eq!(l.metrics.open_total(), 1);
        assert!(l.admit(Transport::Tls).is_ok());
    }

    #[test]
    fn user_limit_is_per_user_and_released() {
        let l = limits(|c| c.max_connections_per_user = 1);
        let a = l.admit_user(1, 10).expect("first");
        assert!(l.admit_user(1, 11).is_ok(), "other uid");
        assert!(l.admit_user(2, 10).is_ok(), "other appid");
        assert_eq!(l.admit_user(1, 10).err(), Some(Refusal::UserFull));
        assert_eq!(l.metrics.refused_user_connections.get(), 1);
        drop(a);
        assert_eq!(l.user_connections(1, 10), 0);
        assert!(l.admit_user(1, 10).is_ok());
    }

    #[test]
    fn memory_guard_refuses_above_bound() {
        let l = limits(|c| c.max_rss_bytes = 1024);
        assert_eq!(l.admit(Transport::Tcp).err(), Some(Refusal::Memory));
        assert_eq!(l.metrics.refused_memory.get(), 1);
        assert_eq!(l.metrics.open_total(), 0);
        let l = limits(|c| c.max_rss_bytes = 1 << 50);
        assert!(l.admit(Transport::Tcp).is_ok());
    }

    #[test]
    fn parses_vmrss() {
        let s = "Name:\tferry\nVmPeak:\t  9999 kB\nVmRSS:\t   1234 kB\nThreads: 3\n";
        assert_eq!(parse_vmrss(s), Some(1234 * 1024));
        assert_eq!(parse_vmrss("VmRSS: lots"), None);
        assert!(current_rss().is_some_and(|r| r > 0));
    }
}
