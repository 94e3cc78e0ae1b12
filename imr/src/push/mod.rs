//! Offline push (spec §3.12): PUSH requests from the ims become JSON entries
//! on Redis lists for receivers that are not online on any im.
//!
//! * [`entry`] — which list and the exact JSON;
//! * [`json`] — Go-compatible JSON writing;
//! * [`queue`] — the bounded buffer and the batching rule;
//! * [`writer`] — the Redis writer task (MULTI/EXEC, retries, at-least-once).

pub mod entry;
pub mod json;
pub mod queue;
pub mod writer;

use crate::registry::Registry;
use crate::stats::{self, Stats};
use ferry_common::link::BatchPush;
use queue::{ENQUEUE_WAIT, PushQueue};

/// What became of one PUSH request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PushOutcome {
    pub offline: usize,
    pub queued: usize,
    pub dropped: usize,
}

/// Handles one PUSH request from a link reader; waits (bounded) when the
/// buffer is full.
pub async fn handle(
    registry: &Registry,
    queue: &PushQueue,
    st: &Stats,
    link: u64,
    req: BatchPush,
) -> PushOutcome {
    stats::add(&st.push_requests, 1);
    let offline = registry.offline(req.appid, &req.receivers);
    if offline.is_empty() {
        return PushOutcome::default();
    }
    let entries = match entry::build(req.appid, &offline, &req.msg) {
        Ok(e) => e,
        Err(e) => {
            stats::add(&st.push_invalid, 1);
            tracing::warn!(link, appid = req.appid, error = %e, "PUSH request ignored");
            return PushOutcome {
                offline: offline.len(),
                ..Default::default()
            };
        }
    };
    let n = entries.len();
    let dropped = queue.enqueue(entries, ENQUEUE_WAIT).await;
    PushOutcome {
        offline: offline.len(),
        queued: n - dropped,
        dropped,
    }
}
