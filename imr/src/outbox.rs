//! Outbound queue of one link, bounded in bytes. Producers (the readers of
//! the other links) never wait: a frame either fits or the queue is marked
//! overflowed and the link is dropped. The link's writer takes everything
//! queued at once and sends it with one write.

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::Notify;

/// Encodes one link frame (header version 0, flag 0, seq 0), as queued here.
pub fn link_frame(cmd: u8, body: Bytes) -> Bytes {
    ferry_common::protocol::Frame::new(cmd, 0, 0, 0, body).to_bytes()
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// This push overflowed the queue: the caller must drop the link.
    Overflow,
    /// The queue was already closed (link going away); nothing to do.
    Closed,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Bytes>,
    bytes: usize,
    closed: bool,
}

#[derive(Debug)]
pub struct Outbox {
    limit: usize,
    state: Mutex<State>,
    notify: Notify,
}

impl Outbox {
    /// A queue holding at most `limit` bytes of frames.
    pub fn new(limit: usize) -> Outbox {
        Outbox {
            limit,
            state: Mutex::new(State::default()),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues one encoded frame without waiting. On overflow the queue is
    /// closed (and emptied), so only the first overflow reports `Overflow`.
    pub fn push(&self, frame: Bytes) -> Result<(), PushError> {
        let mut st = self.lock();
        if st.closed {
            return Err(PushError::Closed);
        }
        if st.bytes + frame.len() > self.limit {
            st.closed = true;
            st.frames.clear();
            st.bytes = 0;
            drop(st);
            self.notify.notify_one();
            return Err(PushError::Overflow);
        }
        st.bytes += frame.len();
        st.frames.push_back(frame);
        drop(st);
        self.notify.notify_one();
        Ok(())
    }

    /// Closes the queue: later pushes fail with `Closed`, the writer stops.
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        st.frames.clear();
        st.bytes = 0;
        drop(st);
        self.notify.notify_one();
    }

    /// Moves everything queued into `out`. Returns false once the queue is
    /// closed (nothing more will come).
    fn take_all(&self, out: &mut BytesMut) -> Option<bool> {
        let mut st = self.lock();
        if st.closed {
            return Some(false);
        }
        if st.frames.is_empty() {
            return None;
        }
        out.reserve(st.bytes);
        for f in st.frames.drain(..) {
            out.extend_from_slice(&f);
        }
        st.bytes = 0;
        Some(true)
    }

    /// Waits until something is queued and appends all of it to `out`
    /// (true), or until the queue is closed (false).
    pub async fn next_batch(&self, out: &mut BytesMut) -> bool {
        loop {
            if let Some(more) = self.take_all(out) {
                return more;
            }
            // notify_one stores a permit, so a push between the check above
            // and this await is not missed.
            self.notify.notified().await;
        }
    }

    /// Bytes waiting right now.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_everything_queued() {
        let o = Outbox::new(100);
        o.push(Bytes::from_static(b"ab")).expect("fits");
        o.push(Bytes::from_static(b"cd")).expect("fits");
        let mut buf = BytesMut::new();
        assert!(o.next_batch(&mut buf).await);
        assert_eq!(&buf[..], b"abcd");
        assert_eq!(o.queued_bytes(), 0);
    }

    #[test]
    fn overflow_closes_once() {
        let o = Outbox::new(4);
        o.push(Bytes::from_static(b"abc")).expect("fits");
        assert_eq!(o.push(Bytes::from_static(b"de")), Err(PushError::Overflow));
        assert_eq!(o.push(Bytes::from_static(b"f")), Err(PushError::Closed));
        assert_eq!(o.queued_bytes(), 0);
    }

    #[test]
    fn exact_fit_is_accepted() {
        let o = Outbox::new(4);
        o.push(Bytes::from_static(b"ab")).expect("fits");
        o.push(Bytes::from_static(b"cd")).expect("fits exactly");
    }

    #[tokio::test]
    async fn writer_wakes_on_push_and_close() {
        let o = std::sync::Arc::new(Outbox::new(100));
        let o2 = o.clone();
        let h = tokio::spawn(async move {
            let mut buf = BytesMut::new();
            let first = o2.next_batch(&mut buf).await;
            let got = buf.clone();
            buf.clear();
            let second = o2.next_batch(&mut buf).await;
            (first, got, second)
        });
        o.push(Bytes::from_static(b"x")).expect("fits");
        // Wait (bounded) until the writer has taken it before closing.
        for _ in 0..1000 {
            if o.queued_bytes() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        o.close();
        let (first, got, second) = h.await.expect("join");
        assert!(first);
        assert_eq!(&got[..], b"x");
        assert!(!second);
    }
}
