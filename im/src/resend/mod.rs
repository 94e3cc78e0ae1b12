//! When is a send a resend? (README "Resends are idempotent".)
//!
//! A client send with a msgid gets a dedup record: its key `(appid, sender,
//! device, msgid, receiver)`, a digest of its content and its origin (this
//! node's [incarnation](crate::node::Node::incarnation) and the connection). A later
//! send whose key and digest match a record inside `--dedup-window` is a
//! *candidate*; it is a resend (ACKed with the original ids, not stored)
//! only when the earlier ACK may not have reached the client:
//!
//! * the record is marked unconfirmed: its connection ended while the ACK
//!   had not left this host (see [`ledger`]);
//! * its connection is still open here and the ACK is not written yet, or
//!   not acknowledged by the peer's TCP stack within [`ACK_GRACE`];
//! * its node incarnation did not end cleanly and is gone: it crashed
//!   (on an embedded store any other unclean incarnation; on Redis one
//!   whose heartbeat stopped).
//!
//! Anything else is a new message, appended again with
//! [`Dedup::replace`](crate::store::Dedup::replace): stored and delivered.
//! When in doubt the verdict is "new": a rare duplicate, never a loss.

pub mod ledger;
mod tcp_info;
mod verdict;

use crate::store::{INCARNATION_MASK, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// How often a node on a shared store says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// Seconds without a heartbeat after which an unclean incarnation on a
/// shared store is taken for crashed.
pub const DEAD_AFTER_SECS: i64 = 30;

/// How long a verdict waits for the peer to acknowledge an ACK already on
/// the wire (Linux delays an ACK by at most 200 ms).
pub const ACK_GRACE: Duration = Duration::from_millis(250);
const ACK_POLL: Duration = Duration::from_millis(5);

/// A fresh random incarnation id (non-zero, below 2^62).
pub fn new_incarnation() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    (u64::from_le_bytes(b) & INCARNATION_MASK).max(1)
}

/// Records the incarnation as running; on a shared store keeps saying so
/// every [`HEARTBEAT`] until the store closes.
pub async fn announce(store: Arc<dyn Store>, incarnation: u64) -> Result<(), StoreError> {
    store.set_node_state(incarnation, false).await?;
    if store.shared() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            tick.tick().await;
            loop {
                tick.tick().await;
                match store.set_node_state(incarnation, false).await {
                    Ok(()) => {}
                    Err(StoreError::Closed) => return,
                    Err(e) => tracing::warn!(error = %e, "node heartbeat failed; will retry"),
                }
            }
        });
    }
    Ok(())
}
