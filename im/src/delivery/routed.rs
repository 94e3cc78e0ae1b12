//! Frames another node sent through an imr, handed to this node's
//! connections exactly like local deliveries.

use super::Delivery;
use crate::outbox::{OutFrame, Unit};
use ferry_common::link::RouteMessage;
use ferry_common::protocol::Frame;
use ferry_common::protocol::command::SYNC_NOTIFY;
use ferry_common::protocol::metadata::Metadata;
use ferry_common::protocol::scalar::encode_i64;

impl Delivery {
    /// Delivers a frame relayed from another node to this node's connections
    /// of `rm.receiver`, with exact METADATA when it is a stored message.
    pub fn routed_here(&self, rm: &RouteMessage, inner: Frame) {
        let stored = rm.msgid > 0 && inner.cmd != SYNC_NOTIFY;
        let meta = Metadata {
            sync_key: rm.msgid,
            prev_sync_key: rm.prev_msgid,
        };
        self.registry.deliver(rm.appid, rm.receiver, |h| {
            if rm.device_id != 0 && h.device_id == rm.device_id {
                return None;
            }
            Some(if stored {
                Unit::two(
                    OutFrame::with_meta(inner.cmd, inner.flag, inner.body.clone(), meta),
                    OutFrame::new(SYNC_NOTIFY, 0, encode_i64(rm.msgid)),
                )
            } else {
                Unit::one(OutFrame::new(inner.cmd, inner.flag, inner.body.clone()))
            })
        });
    }

    /// A broadcast relayed by the imr behind `link`: only users homed there,
    /// so a user never gets the copies sent through other imrs.
    pub fn to_app_here(&self, appid: i64, link: Option<usize>, f: &OutFrame) {
        match (&self.cluster, link) {
            (Some(c), Some(l)) => self.registry.deliver_app(appid, |uid| c.home(uid) == l, f),
            _ => self.registry.deliver_app(appid, |_| true, f),
        };
    }
}
