//! Encodes one connection's outgoing frames into the bytes its transport
//! writes: assigns the per-connection seq numbers, adapts bodies to the
//! connection's version, and keeps a METADATA frame and the frame it
//! describes adjacent (seq n, n + 1). (Named for what it does to frames;
//! the store's writers are something else.)
//!
//! The buffer exists only while there is output, so idle connections hold none.

use crate::metrics::FramesOut;
use crate::outbox::OutFrame;
use bytes::{Buf, Bytes, BytesMut};
use ferry_common::protocol::command::{ACK, METADATA};
use ferry_common::protocol::header::Header;
use ferry_common::protocol::im::body_for_version;
use ferry_common::protocol::metadata::{METADATA_LEN, Metadata};

/// How far the bytes taken from the [`Encoder`] got, for the ACK ledger
/// ([`crate::resend::ledger`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Some are still buffered above the TCP socket (in the TLS layer).
    Unflushed,
    /// The transport cannot tell (WebSocket): taken as delivered.
    Untracked,
    /// All reached the TCP socket, which has carried this many bytes.
    At(u64),
}

#[derive(Default)]
pub struct Encoder {
    seq: i32,
    version: u8,
    buf: Option<BytesMut>,
    /// Bytes handed to the transport so far ([`advance`](Self::advance)d or
    /// [`take_frame`](Self::take_frame)n): the output offset an ACK ledger
    /// counts in.
    written: u64,
}

impl Encoder {
    /// Version used for every later frame (the AUTH_TOKEN frame's version).
    pub fn set_version(&mut self, v: u8) {
        self.version = v;
    }

    pub fn version(&self) -> u8 {
        self.version
    }

    fn next_seq(&mut self) -> i32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn header(&mut self, cmd: u8, flag: u8, len: usize) {
        let h = Header {
            len,
            seq: self.next_seq(),
            cmd,
            version: self.version,
            flag,
        };
        let buf = self.buf.get_or_insert_with(spare::take);
        // One 12-byte copy: field-by-field `put_*` calls cost a bounds
        // check and a memcpy call each, per frame and per recipient.
        buf.extend_from_slice(&h.to_bytes());
    }

    /// Appends a frame whose body is in version-2 form. Only version-0/1
    /// connections need a different body; the usual case copies the shared
    /// body straight into the buffer without touching its refcount.
    pub fn frame(&mut self, cmd: u8, flag: u8, body: &Bytes) {
        self.frame_uncounted(cmd, flag, body);
        crate::metrics::frame_out(cmd);
    }

    fn frame_uncounted(&mut self, cmd: u8, flag: u8, body: &Bytes) {
        let adapted;
        let body: &[u8] = if cmd == ACK && self.version < 2 && body.len() > 4 {
            &body[..4]
        } else if self.version == 0 {
            adapted = body_for_version(cmd, self.version, body);
            &adapted
        } else {
            body
        };
        self.header(cmd, flag, body.len());
        if let Some(buf) = self.buf.as_mut() {
            buf.extend_from_slice(body);
        }
    }

    pub fn metadata(&mut self, m: &Metadata) {
        self.metadata_uncounted(m);
        crate::metrics::frame_out(METADATA);
    }

    fn metadata_uncounted(&mut self, m: &Metadata) {
        self.header(METADATA, 0, METADATA_LEN);
        if let Some(buf) = self.buf.as_mut() {
            m.write(buf);
        }
    }

    /// Appends a queued frame (with its METADATA first, if any).
    pub fn push(&mut self, f: &OutFrame) {
        self.push_counted(f, &mut FramesOut::default());
    }

    /// [`push`](Self::push), counting the frames in `count` (one batch of
    /// pushes adds to the shared counters once).
    pub fn push_counted(&mut self, f: &OutFrame, count: &mut FramesOut) {
        if let Some(m) = &f.meta {
            self.metadata_uncounted(m);
            count.add(METADATA);
        }
        self.frame_uncounted(f.cmd, f.flag, &f.body);
        count.add(f.cmd);
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> usize {
        self.buf.as_ref().map_or(0, BytesMut::len)
    }

    /// The bytes to write next (empty if none).
    pub fn bytes(&self) -> &[u8] {
        self.buf.as_deref().unwrap_or(&[])
    }

    /// Bytes handed to the transport so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Output offset just past the last frame appended.
    pub fn appended(&self) -> u64 {
        self.written + self.pending() as u64
    }

    /// Length of the whole frame at the front of the pending bytes (valid
    /// only at a frame boundary: nothing of it advanced yet).
    pub fn front_frame_len(&self) -> Option<usize> {
        let b = self.buf.as_ref()?;
        let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
        Some(12 + len)
    }

    /// Marks `n` bytes as written; drops the buffer once everything is out.
    pub fn advance(&mut self, n: usize) {
        if let Some(buf) = self.buf.as_mut() {
            let n = n.min(buf.len());
            self.written += n as u64;
            // `advance`, not `split_to`: splitting turns the buffer into a
            // shared one, an allocation per socket write.
            buf.advance(n);
            if buf.is_empty()
                && let Some(buf) = self.buf.take()
            {
                spare::give(buf);
            }
        }
    }

    /// Splits the next whole frame (header + body) off the pending bytes,
    /// for message-based transports (one WebSocket message per frame).
    /// Only valid while nothing was partially [`advance`](Self::advance)d.
    pub fn take_frame(&mut self) -> Option<Bytes> {
        let buf = self.buf.as_mut()?;
        if buf.len() < 12 {
            return None;
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let frame = buf.split_to((12 + len).min(buf.len())).freeze();
        self.written += frame.len() as u64;
        if buf.is_empty() {
            self.buf = None;
        }
        Some(frame)
    }
}

/// One spare write buffer per worker thread. A connection's buffer exists
/// only while it has output (idle connections hold none), so without this
/// every delivery to a reader that keeps up would allocate and free 4 KiB;
/// with it, the buffer emptied by one connection's write serves the next
/// connection on the same thread.
mod spare {
    use bytes::BytesMut;
    use std::cell::RefCell;

    const CAPACITY: usize = 4096;

    thread_local! {
        static SPARE: RefCell<Option<BytesMut>> = const { RefCell::new(None) };
    }

    /// An empty buffer of at least [`CAPACITY`] bytes.
    pub fn take() -> BytesMut {
        SPARE
            .try_with(|s| s.borrow_mut().take())
            .ok()
            .flatten()
            .unwrap_or_else(|| BytesMut::with_capacity(CAPACITY))
    }

    /// Keeps an emptied buffer for the next [`take`] on this thread, if it
    /// is the plain kind: not grown by a burst (that memory goes back to the
    /// allocator) and not shared with frames split off it.
    pub fn give(mut buf: BytesMut) {
        buf.clear();
        // Reclaims the space before the read offset without allocating
        // (the buffer is empty and unshared), and tells a shared one apart.
        if buf.capacity() < CAPACITY && !buf.try_reclaim(CAPACITY) {
            return;
        }
        if buf.capacity() != CAPACITY {
            return;
        }
        let _ = SPARE.try_with(|s| {
            let mut s = s.borrow_mut();
            if s.is_none() {
                *s = Some(buf);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn metadata_is_adjacent_and_acks_shrink_for_v1() {
        let mut w = Encoder::default();
        w.set_version(1);
        let ack = Bytes::from_static(&[0, 0, 0, 7, 0]);
        w.push(&OutFrame::with_meta(
            ACK,
            0,
            ack,
            Metadata {
                sync_key: 5,
                prev_sync_key: 4,
            },
        ));
        let b = w.bytes().to_vec();
        assert_eq!(b.len(), 12 + 32 + 12 + 4);
        assert_eq!(&b[4..8], &1i32.to_be_bytes());
        assert_eq!(b[8], METADATA);
        assert_eq!(&b[44 + 4..44 + 8], &2i32.to_be_bytes());
        assert_eq!(&b[44..48], &4i32.to_be_bytes());
        w.advance(b.len());
        assert_eq!(w.pending(), 0);
    }

    #[test]
    fn take_frame_splits_whole_frames() {
        let mut w = Encoder::default();
        w.set_version(2);
        w.frame(ACK, 0, &Bytes::from_static(&[0, 0, 0, 7, 0]));
        w.frame(14, 0, &Bytes::new());
        assert_eq!(w.take_frame().map(|f| f.len()), Some(17));
        assert_eq!(w.take_frame().map(|f| f.len()), Some(12));
        assert!(w.take_frame().is_none());
        assert_eq!(w.pending(), 0);
    }
}
