//! AUTH_TOKEN handling (spec §3.1).

use super::encoder::Encoder;
use super::{Authed, Control, Session};
use crate::auth::Authenticator;
use crate::disconnect::Disconnect;
use crate::node::now_secs;
use crate::presence::{DeviceInfo, transport_code};
use crate::registry::LocalConn;
use bytes::Bytes;
use ferry_common::link::Device;
use ferry_common::protocol::auth::{AuthToken, PLATFORM_ANDROID, PLATFORM_IOS, encode_status};
use ferry_common::protocol::command::AUTH_STATUS;
use std::sync::Arc;

impl Session {
    pub(super) async fn login(&mut self, t: AuthToken, version: u8, w: &mut Encoder) -> Control {
        let node = self.node.clone();
        let id = match node.auth.authenticate(&t.token).await {
            Ok(id) => id,
            Err(e) => {
                tracing::info!(peer = %self.peer, reason = %e, "login failed");
                w.frame(AUTH_STATUS, 0, &encode_status(1));
                return Control::Close(Disconnect::AuthFailed);
            }
        };
        let permit = match node.limits.admit_user(id.appid, id.uid) {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(peer = %self.peer, appid = id.appid, uid = id.uid, reason = %e, "login refused");
                w.frame(AUTH_STATUS, 0, &encode_status(1));
                return Control::Close(Disconnect::TooManyUserConnections);
            }
        };
        let device_id = if t.device_id.is_empty() {
            -((node.node_tag << 31) | (self.conn as i64 & 0x7fff_ffff))
        } else {
            let n = match &node.auth {
                Authenticator::Redis(r) => r
                    .device_number(&t.device_id, t.platform_id)
                    .await
                    .map_err(|e| e.to_string()),
                Authenticator::Jwt(_) => node
                    .store
                    .device_number(&t.device_id, t.platform_id)
                    .await
                    .map_err(|e| e.to_string()),
            };
            match n {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(peer = %self.peer, error = %e, "device number allocation failed");
                    w.frame(AUTH_STATUS, 0, &encode_status(1));
                    return Control::Close(Disconnect::AuthFailed);
                }
            }
        };
        if let Some(r) = node.auth.redis()
            && let Err(e) = r.set_unread(id.appid, id.uid, 0).await
        {
            tracing::warn!(error = %e, "resetting unread count failed");
        }
        let mobile = matches!(t.platform_id, PLATFORM_IOS | PLATFORM_ANDROID);
        let a = Authed {
            appid: id.appid,
            uid: id.uid,
            device_id,
            online: mobile || !id.notification_on,
            forbidden: id.forbidden,
        };
        w.set_version(version);
        w.frame(AUTH_STATUS, 0, &encode_status(0));
        let info = DeviceInfo {
            since: now_secs() as i64,
            device_id: Arc::from(t.device_id.as_str()),
        };
        let here = node.delivery.registry.add(
            a.appid,
            a.uid,
            LocalConn {
                conn: self.conn,
                device_id,
                online: a.online,
                transport: self.transport,
                platform: t.platform_id,
                outbox: self.outbox.clone(),
                info: info.clone(),
            },
        );
        node.metrics.logins.inc();
        if let Some(c) = &node.delivery.cluster {
            c.subscribe(a.appid, a.uid, a.online);
            c.device_online(
                a.appid,
                a.uid,
                Device {
                    conn: self.conn,
                    platform: t.platform_id,
                    transport: transport_code(self.transport),
                    since: info.since,
                    device_id: Bytes::from(t.device_id.into_bytes()),
                },
            );
        }
        if here == 1 {
            node.presence_arrived(a.appid, a.uid);
        }
        self.authed = Some(a);
        self.user_permit = Some(permit);
        tracing::debug!(peer = %self.peer, appid = a.appid, uid = a.uid, device_id, version, "login");
        Control::Continue
    }
}
