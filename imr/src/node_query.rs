//! NODE_QUERY / NODE_REPLY relaying (see `ferry_common::link::NodeQuery`):
//! the admin console of one im reads the others' figures through here. The
//! imr only routes; it keeps no state per query, so a lost asker costs
//! nothing but the replies dropped on arrival.

use crate::outbox::link_frame;
use crate::registry::{Peer, Registry};
use bytes::Bytes;
use ferry_common::link::{NODE_QUERY, NODE_REPLY, NodeQuery, NodeReply};
use ferry_common::protocol::ProtocolError;

/// Forwards a query from `from` to every other linked im, stamped with the
/// asker's link id, then tells the asker how many ims were asked.
pub fn query(reg: &Registry, from: &Peer, body: Bytes) -> Result<(), ProtocolError> {
    let mut q = NodeQuery::decode(body)?;
    q.origin = from.id;
    // Encoded once; every target shares these bytes.
    let bytes = link_frame(NODE_QUERY, q.encode());
    let mut relayed = 0u32;
    for p in reg.snapshot().iter().filter(|p| p.id != from.id) {
        if p.outbox.push(bytes.clone()).is_ok() {
            relayed += 1;
        }
    }
    let count = NodeReply {
        origin: from.id,
        request_id: q.request_id,
        relayed,
        payload: Bytes::new(),
    }
    .encode()?;
    if from.outbox.push(link_frame(NODE_REPLY, count)).is_err() {
        tracing::debug!(link = from.id, "NODE_REPLY count not sent: link closing");
    }
    Ok(())
}

/// Hands an im's answer to the asking link, bytes unchanged; dropped if
/// that link is gone.
pub fn reply(reg: &Registry, body: Bytes) -> Result<(), ProtocolError> {
    // Checked in full so a malformed answer ends the sender's link, not the
    // asker's.
    let r = NodeReply::decode(body.clone())?;
    if let Some(p) = reg.snapshot().iter().find(|p| p.id == r.origin) {
        let _ = p.outbox.push(link_frame(NODE_REPLY, body));
    }
    Ok(())
}
