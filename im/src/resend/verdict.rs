//! The verdict on a send whose dedup record already exists: a resend of
//! the earlier send (answer with its ids) or a new message (write it). See
//! the [module docs](super).

use super::ledger::AckState;
use super::{ACK_GRACE, ACK_POLL, DEAD_AFTER_SECS};
use crate::node::Node;
use crate::store::{AppendOutcome, AppendRequest, Dedup, DedupKey, Earlier, NewEntry, StoreError};

impl Node {
    /// Appends a client send that may repeat an earlier one: the first
    /// append is a candidate (a found record answers with its ids); unless
    /// the verdict says resend, the same entries are written for real,
    /// replacing the record. `entries` is called once per append.
    pub(crate) async fn append_send(
        &self,
        entries: impl Fn() -> Vec<NewEntry>,
        dedup: Option<Dedup>,
        ticket: Option<u64>,
    ) -> Result<AppendOutcome, StoreError> {
        let out = self
            .store
            .append(AppendRequest {
                entries: entries(),
                dedup,
            })
            .await?;
        match (dedup, out.earlier) {
            (Some(d), Some(e)) if !self.is_resend(&d.key, e, ticket).await => {
                self.store
                    .append(AppendRequest {
                        entries: entries(),
                        dedup: Some(Dedup { replace: true, ..d }),
                    })
                    .await
            }
            _ => Ok(out),
        }
    }

    /// The verdict on a candidate (see the module docs): true = resend.
    /// `own`: the send's ledger ticket, so its own entry is not taken for
    /// the earlier send's.
    pub(crate) async fn is_resend(&self, key: &DedupKey, e: Earlier, own: Option<u64>) -> bool {
        if e.unconfirmed {
            return true;
        }
        if e.origin.incarnation == self.incarnation {
            // Closed without a mark: its ACK was confirmed.
            let Some(l) = self.ledgers.get(e.origin.connection) else {
                // Closed: its mark may have been written after the record
                // was read; the close left the marked keys in memory.
                return self.ledgers.was_marked(e.origin.connection, key);
            };
            // A client that read the ACK may not have acknowledged it yet
            // (delayed ACKs: 40 ms, at most 200 ms): give it that long.
            let deadline = tokio::time::Instant::now() + ACK_GRACE;
            loop {
                match l.ack_state(key, own) {
                    Some(AckState::Confirmed) => return false,
                    // Pruned as confirmed, or the connection closed while
                    // we waited (its ledger is emptied after the close
                    // remembered what it marked).
                    None => return self.ledgers.was_marked(e.origin.connection, key),
                    Some(AckState::NotSent) => return true,
                    Some(AckState::Unacked) if tokio::time::Instant::now() >= deadline => {
                        return true;
                    }
                    Some(AckState::Unacked) => tokio::time::sleep(ACK_POLL).await,
                }
            }
        }
        match self.store.node_state(e.origin.incarnation).await {
            Ok(Some(s)) if s.clean => false,
            Ok(Some(s)) if self.store.shared() => {
                // Alive elsewhere → new; silent → crashed → resend.
                let now = crate::node::now_secs() as i64;
                now.saturating_sub(s.seen_secs) >= DEAD_AFTER_SECS
            }
            // Unclean and not running (one process per embedded store), or
            // never recorded: crashed.
            Ok(_) => true,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read a node's state; taking the send for new");
                false
            }
        }
    }
}
