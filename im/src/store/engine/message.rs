//! What the engine, its writer thread and its committer thread say to each
//! other: the operations callers queue ([`Op`]), what a finished one
//! returns ([`Done`]) and where it goes ([`Reply`]). Kept apart from both
//! threads so neither has to import the other for them.

use crate::store::{AppendOutcome, AppendRequest, DedupKey, StoreError};
use tokio::sync::oneshot;

/// Where an operation's result goes.
pub(crate) type Reply = oneshot::Sender<Result<Done, StoreError>>;

/// A write operation for the writer thread.
pub(crate) enum Op {
    Append(AppendRequest),
    /// An append that also gets its position in `stream` (see
    /// [`crate::store::Store::append_ordered`]).
    AppendOrdered(AppendRequest, (i64, i64)),
    DeviceNumber {
        device_id: String,
        platform: u8,
    },
    /// Sets the "ACK unconfirmed" mark of these records.
    Mark(Vec<DedupKey>),
    /// Raises a `meta` integer (a node state) and answers once it is durable.
    RaiseDurable {
        key: Vec<u8>,
        value: i64,
    },
    /// Test hook: number of dedup records in the in-memory index.
    #[cfg(test)]
    DedupIndexLen,
}

/// Result of a successful [`Op`].
#[derive(Debug)]
pub(crate) enum Done {
    Append(AppendOutcome),
    Ordered(AppendOutcome, u64),
    Unit,
    Number(i64),
}

/// What travels over the writer's channel.
pub(crate) enum Msg {
    Job {
        op: Op,
        reply: Reply,
    },
    /// Finish everything queued, close the database, then signal.
    Close(oneshot::Sender<()>),
    /// Something to look at: a batch was committed.
    Wake,
    /// Write pending sync keys even if no request comes.
    FlushSyncKeys,
}
