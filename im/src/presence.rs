//! Presence queries: which devices of a user are logged in, on which node,
//! over which transport, since when.
//!
//! A single node answers from its registry. In a cluster every im reports
//! each login and logout of a user to the user's home imr (DEVICE_ONLINE /
//! DEVICE_OFFLINE, next to the SUBSCRIBE it already sends), so a query is
//! one PRESENCE_QUERY round trip per imr holding a share of the uids, the
//! imrs asked concurrently — never a broadcast to every im.

use crate::metrics::Transport;
use crate::node::Node;
pub use crate::registry::DeviceInfo;
use crate::registry::LocalConn;
use std::time::Duration;

/// How long a presence query waits for the imrs.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// A device somewhere in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAt {
    pub node: String,
    pub platform: u8,
    /// Transport code, see [`transport_code`].
    pub transport: u8,
    pub since: i64,
    pub device_id: String,
}

/// A user's devices (empty: offline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDevices {
    pub uid: i64,
    pub devices: Vec<DeviceAt>,
}

#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    #[error("imr {0} did not answer the presence query: {1}")]
    Imr(String, crate::cluster::QueryError),
}

/// The link code of a transport (1 tcp, 2 tls, 3 ws, 4 wss).
pub fn transport_code(t: Transport) -> u8 {
    match t {
        Transport::Tcp => 1,
        Transport::Tls => 2,
        Transport::Ws => 3,
        Transport::Wss => 4,
    }
}

pub fn transport_name(code: u8) -> &'static str {
    match code {
        1 => "tcp",
        2 => "tls",
        3 => "ws",
        4 => "wss",
        _ => "unknown",
    }
}

/// gobelieve's platform ids by name; others as `platform_<n>`.
pub fn platform_name(p: u8) -> std::borrow::Cow<'static, str> {
    use ferry_common::protocol::auth::{PLATFORM_ANDROID, PLATFORM_IOS, PLATFORM_WEB};
    match p {
        PLATFORM_IOS => "ios".into(),
        PLATFORM_ANDROID => "android".into(),
        PLATFORM_WEB => "web".into(),
        other => format!("platform_{other}").into(),
    }
}

fn local(node: &Node, h: &LocalConn) -> DeviceAt {
    DeviceAt {
        node: node.cfg.node_name.clone(),
        platform: h.platform,
        transport: transport_code(h.transport),
        since: h.info.since,
        device_id: h.info.device_id.to_string(),
    }
}

impl Node {
    /// The devices of each of `uids` (same order, duplicates kept), on this
    /// node alone or, in a cluster, on every node.
    pub async fn presence(
        &self,
        appid: i64,
        uids: &[i64],
    ) -> Result<Vec<UserDevices>, PresenceError> {
        let Some(cluster) = &self.delivery.cluster else {
            return Ok(uids
                .iter()
                .map(|&uid| UserDevices {
                    uid,
                    devices: self
                        .delivery
                        .registry
                        .map_user(appid, uid, |h| local(self, h)),
                })
                .collect());
        };
        let replies = cluster
            .query_presence(appid, uids, QUERY_TIMEOUT)
            .await
            .map_err(|(addr, e)| PresenceError::Imr(addr, e))?;
        let mut found: std::collections::HashMap<i64, Vec<DeviceAt>> = Default::default();
        for r in replies {
            for u in r.users {
                let devs = found.entry(u.uid).or_default();
                for d in u.devices {
                    devs.push(DeviceAt {
                        node: r.nodes.get(d.node as usize).cloned().unwrap_or_default(),
                        platform: d.platform,
                        transport: d.transport,
                        since: d.since,
                        device_id: String::from_utf8_lossy(&d.device_id).into_owned(),
                    });
                }
            }
        }
        Ok(uids
            .iter()
            .map(|&uid| UserDevices {
                uid,
                devices: found.get(&uid).cloned().unwrap_or_default(),
            })
            .collect())
    }
}
