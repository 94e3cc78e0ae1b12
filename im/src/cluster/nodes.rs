//! Asking every other im for its console figures (NODE_QUERY / NODE_REPLY,
//! see `ferry_common::link::NodeQuery`), and answering their questions.
//!
//! A query goes to every imr that is up. Each imr answers at once with the
//! number of ims it forwarded the query to, so the asker is done as soon as
//! every imr's count is in and that many answers have arrived; the timeout
//! only matters when a node or link is slow or goes down mid-query. With
//! several imrs every node answers once per imr; [`Gathered`] keeps the
//! first answer of each node.

use super::Cluster;
use super::link::link_frame;
use bytes::Bytes;
use ferry_common::link::{NODE_QUERY, NODE_REPLY, NodeAsk, NodeQuery, NodeReply};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;

/// Answers kept per query, whatever arrives: a bound on memory if an imr
/// reports absurd counts.
const MAX_ANSWERS: usize = 1024;

/// The asker's pending queries, by request id.
#[derive(Default)]
pub struct NodeQueries {
    next: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
}

struct Pending {
    /// imrs the query went to.
    asked: usize,
    /// imr counts received so far, and their sum.
    counts: usize,
    expected: u64,
    /// Answers received so far (duplicates from several imrs included).
    answered: u64,
    answers: Vec<Bytes>,
    done: Option<oneshot::Sender<()>>,
}

impl Pending {
    fn complete(&self) -> bool {
        self.counts >= self.asked && self.answered >= self.expected
    }
}

/// The answers to one query (JSON payloads, as the nodes sent them).
#[derive(Debug, Default)]
pub struct Gathered {
    pub answers: Vec<Bytes>,
    /// Every imr reported and every node it asked answered in time.
    pub complete: bool,
    /// imrs the query went to (those whose link was up).
    pub imrs: usize,
}

/// Removes the pending entry however the asking future ends (an HTTP
/// client that goes away cancels it).
struct Forget<'a>(&'a NodeQueries, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.lock().remove(&self.1);
    }
}

impl NodeQueries {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks every other node linked to an imr that is up, and waits for the
    /// answers, `timeout` at most.
    pub async fn ask(&self, cluster: &Cluster, ask: NodeAsk, timeout: Duration) -> Gathered {
        let up: Vec<_> = cluster
            .links()
            .iter()
            .filter(|l| l.up.load(Ordering::Relaxed))
            .collect();
        if up.is_empty() {
            return Gathered {
                complete: true,
                ..Gathered::default()
            };
        }
        let request_id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        self.lock().insert(
            request_id,
            Pending {
                asked: up.len(),
                counts: 0,
                expected: 0,
                answered: 0,
                answers: Vec::new(),
                done: Some(tx),
            },
        );
        let _forget = Forget(self, request_id);
        let frame = link_frame(
            NODE_QUERY,
            NodeQuery {
                origin: 0,
                request_id,
                ask,
            }
            .encode(),
        );
        for l in &up {
            l.send(frame.clone());
        }
        let _ = tokio::time::timeout(timeout, rx).await;
        let mut map = self.lock();
        let Some(p) = map.remove(&request_id) else {
            return Gathered::default();
        };
        Gathered {
            complete: p.complete(),
            answers: p.answers,
            imrs: up.len(),
        }
    }

    /// A NODE_REPLY from an imr: a count or a node's answer. Replies to
    /// queries no longer pending (timed out) are dropped.
    pub fn on_reply(&self, r: NodeReply) {
        let mut map = self.lock();
        let Some(p) = map.get_mut(&r.request_id) else {
            return;
        };
        if r.payload.is_empty() {
            p.counts += 1;
            p.expected += u64::from(r.relayed);
        } else {
            p.answered += 1;
            if p.answers.len() < MAX_ANSWERS {
                p.answers.push(r.payload);
            }
        }
        if p.complete()
            && let Some(tx) = p.done.take()
        {
            let _ = tx.send(());
        }
    }
}

/// The NODE_REPLY frame answering `q` with `payload` (JSON); `None` if the
/// payload is too large to send (logged).
pub fn answer_frame(q: &NodeQuery, payload: Vec<u8>) -> Option<Bytes> {
    let reply = NodeReply {
        origin: q.origin,
        request_id: q.request_id,
        relayed: 0,
        payload: Bytes::from(payload),
    };
    match reply.encode() {
        Ok(body) => Some(link_frame(NODE_REPLY, body)),
        Err(e) => {
            tracing::warn!(error = %e, "console answer to another node not sent");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(request_id: u64, relayed: u32, payload: &'static [u8]) -> NodeReply {
        NodeReply {
            origin: 1,
            request_id,
            relayed,
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn a_query_completes_once_every_count_and_answer_is_in() {
        let q = NodeQueries::default();
        let (tx, mut rx) = oneshot::channel();
        q.lock().insert(
            5,
            Pending {
                asked: 2,
                counts: 0,
                expected: 0,
                answered: 0,
                answers: Vec::new(),
                done: Some(tx),
            },
        );
        q.on_reply(reply(5, 1, b""));
        q.on_reply(reply(5, 0, b"{\"a\":1}"));
        // One imr has not reported yet.
        assert!(rx.try_recv().is_err());
        // Unknown request ids are ignored.
        q.on_reply(reply(6, 0, b"{}"));
        q.on_reply(reply(5, 1, b""));
        assert!(rx.try_recv().is_err());
        q.on_reply(reply(5, 0, b"{\"a\":1}"));
        assert!(rx.try_recv().is_ok());
        assert_eq!(q.lock()[&5].answers.len(), 2);
    }
}
