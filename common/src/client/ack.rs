//! The answer to a request that waits for the server's ACK.

use crate::protocol::ack::STATUS_OK;
use crate::protocol::metadata::Metadata;

/// Server ACK of one of our frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// 0 = success; see `protocol::ack::STATUS_*`. Always 0 at version ≤ 1,
    /// where the ACK body has no status byte.
    pub status: u8,
    /// Header flag of the ACK (SUPER_GROUP for a super group's GROUP_IM).
    pub flag: u8,
    /// The METADATA frame right before the ACK (seq adjacency): the server
    /// id of the message in the sender's queue (or the super group's queue)
    /// and the id before it.
    pub metadata: Option<Metadata>,
}

impl Ack {
    pub fn is_ok(&self) -> bool {
        self.status == STATUS_OK
    }
}
