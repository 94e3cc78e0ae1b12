//! One task per connected im: the HELLO handshake, then a reader that
//! applies subscriptions, relays PUBLISH* frames and hands PUSH requests to
//! the push buffer, and a writer task that drains the link's outbound queue
//! with one write per batch.
//!
//! A link ends on EOF, an I/O error, a malformed frame (logged, counted), an
//! overflowing outbound queue (slow im), a stuck write, or shutdown. Its
//! subscription table is removed with it. Nothing here can stall another
//! link: relaying only ever queues without waiting.

pub use crate::outbox::link_frame;
use crate::push;
use crate::registry::Peer;
use crate::relay::{self, Route};
use crate::state::ImrState;
use crate::stats;
use bytes::{Bytes, BytesMut};
use ferry_common::link::{
    BatchPush, DEVICE_OFFLINE, DEVICE_ONLINE, DeviceOffline, DeviceOnline, GroupPublish, HELLO,
    Hello, LINK_VERSION, MARK, MAX_LINK_BODY, NODE_QUERY, NODE_REPLY, PRESENCE_QUERY,
    PRESENCE_REPLY, PUBLISH_GROUP, PUSH, PresenceQuery, RoomSubscription, SUBSCRIBE,
    SUBSCRIBE_ROOM, Subscribe, UNSUBSCRIBE, UNSUBSCRIBE_ROOM, Unsubscribe,
};
use ferry_common::protocol::command::name;
use ferry_common::protocol::{CodecError, Frame, FrameCodec, ProtocolError};
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

/// The im must send HELLO within this time after connecting.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A write to an im that makes no progress for this long drops the link.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Body limit before the handshake: a HELLO (magic, version, u16-length
/// secret, u16-length node name).
const HELLO_MAX_BODY: usize = 10 + 2 * u16::MAX as usize;
/// Write buffers that grew past this are released after use.
const KEEP_WRITE_BUF: usize = 1 << 20;

type Reader = FramedRead<OwnedReadHalf, FrameCodec>;

/// Serves one accepted connection until it ends.
pub(crate) async fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    sh: Arc<ImrState>,
    shutdown: CancellationToken,
) {
    configure_socket(&stream);
    let (rd, mut wr) = stream.into_split();
    let mut reader = FramedRead::new(rd, FrameCodec::new(HELLO_MAX_BODY));
    let hello = tokio::select! {
        biased;
        _ = shutdown.cancelled() => return,
        h = handshake(&mut reader, &mut wr, &sh, addr) => h,
    };
    let Ok(name) = hello else {
        stats::add(&sh.stats.handshakes_refused, 1);
        let _ = wr.shutdown().await;
        return;
    };
    *reader.decoder_mut() = FrameCodec::new(MAX_LINK_BODY);

    let id = sh.registry.next_id();
    let cancel = shutdown.child_token();
    let name = name.unwrap_or_else(|| addr.to_string());
    let peer = Arc::new(Peer::named(id, addr, name, sh.link_queue, cancel.clone()));
    sh.registry.add(peer.clone());
    stats::add(&sh.stats.links, 1);
    stats::add(&sh.stats.links_total, 1);
    tracing::info!(link = id, peer = %addr, "im linked");

    let writer = tokio::spawn(write_loop(wr, peer.clone(), sh.clone()));
    let end = read_loop(&mut reader, &peer, &sh).await;

    sh.registry.remove(id);
    stats::sub(&sh.stats.links, 1);
    peer.outbox.close();
    cancel.cancel();
    let _ = writer.await;
    let (users, rooms) = peer.table().len();
    match &end {
        End::Malformed(e) => {
            tracing::warn!(link = id, peer = %addr, users, rooms, error = %e, "im link closed: malformed frame")
        }
        End::Io(e) => {
            tracing::info!(link = id, peer = %addr, users, rooms, error = %e, "im link closed: I/O error")
        }
        End::Eof => {
            tracing::info!(link = id, peer = %addr, users, rooms, "im link closed by the im")
        }
        End::Cancelled => tracing::info!(link = id, peer = %addr, users, rooms, "im link closed"),
    }
}

fn configure_socket(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10));
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
    let ka = ka.with_retries(3);
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&ka);
}

/// Why the handshake failed (already logged).
#[derive(Debug)]
struct Refused;

/// Returns the node name the im presented, if any.
async fn handshake(
    reader: &mut Reader,
    wr: &mut OwnedWriteHalf,
    sh: &ImrState,
    addr: SocketAddr,
) -> Result<Option<String>, Refused> {
    let first = match tokio::time::timeout(HANDSHAKE_TIMEOUT, reader.next()).await {
        Err(_) => {
            tracing::warn!(peer = %addr, "link refused: no HELLO within {HANDSHAKE_TIMEOUT:?}");
            return Err(Refused);
        }
        Ok(None) => {
            tracing::debug!(peer = %addr, "connection closed before HELLO");
            return Err(Refused);
        }
        Ok(Some(Err(e))) => {
            tracing::warn!(peer = %addr, error = %e, "link refused: bad first frame");
            return Err(Refused);
        }
        Ok(Some(Ok(f))) => f,
    };
    if first.cmd != HELLO {
        tracing::warn!(peer = %addr, cmd = first.cmd, "link refused: first frame is not HELLO (is this an im speaking the Ferry link protocol?)");
        return Err(Refused);
    }
    let hello = match Hello::decode(first.body) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(peer = %addr, error = %e, "link refused: bad HELLO");
            return Err(Refused);
        }
    };
    let ours = link_frame(
        HELLO,
        Hello {
            version: LINK_VERSION,
            secret: Bytes::new(),
            name: Bytes::new(),
        }
        .encode(),
    );
    if hello.version != LINK_VERSION {
        tracing::error!(
            peer = %addr,
            theirs = hello.version,
            ours = LINK_VERSION,
            "link refused: im speaks link version {}, this imr speaks {}; upgrade one side",
            hello.version,
            LINK_VERSION
        );
        // Our HELLO tells the im which version we speak.
        let _ = tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&ours)).await;
        return Err(Refused);
    }
    if !secret_matches(&hello.secret, sh.secret.as_bytes()) {
        // No HELLO back: the im then reports "imr closed the link during
        // the handshake (wrong --link-secret?)" and backs off, instead of
        // treating the link as up.
        tracing::error!(
            peer = %addr,
            presented = if hello.secret.is_empty() { "none" } else { "a different one" },
            "link refused: wrong link secret (check --link-secret on the im and this imr)"
        );
        return Err(Refused);
    }
    let name = (!hello.name.is_empty()).then(|| String::from_utf8_lossy(&hello.name).into_owned());
    match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&ours)).await {
        Ok(Ok(())) => Ok(name),
        Ok(Err(e)) => {
            tracing::info!(peer = %addr, error = %e, "link lost during the handshake");
            Err(Refused)
        }
        Err(_) => {
            tracing::warn!(peer = %addr, "link refused: HELLO reply not written in time");
            Err(Refused)
        }
    }
}

/// Compares secrets without an early exit on the first differing byte.
/// An empty expected secret accepts anything.
fn secret_matches(given: &[u8], expected: &[u8]) -> bool {
    if expected.is_empty() {
        return true;
    }
    if given.len() != expected.len() {
        return false;
    }
    given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

enum End {
    Eof,
    Io(std::io::Error),
    Malformed(ProtocolError),
    Cancelled,
}

async fn read_loop(reader: &mut Reader, peer: &Arc<Peer>, sh: &Arc<ImrState>) -> End {
    loop {
        let next = tokio::select! {
            biased;
            _ = peer.cancel.cancelled() => return End::Cancelled,
            n = reader.next() => n,
        };
        let frame = match next {
            None => return End::Eof,
            Some(Err(CodecError::Io(e))) => return End::Io(e),
            Some(Err(CodecError::Protocol(e))) => {
                stats::add(&sh.stats.malformed_frames, 1);
                return End::Malformed(e);
            }
            Some(Ok(f)) => f,
        };
        if let Err(e) = handle(frame, peer, sh).await {
            stats::add(&sh.stats.malformed_frames, 1);
            return End::Malformed(e);
        }
    }
}

/// Applies one frame. An error means the frame was malformed.
async fn handle(frame: Frame, peer: &Arc<Peer>, sh: &Arc<ImrState>) -> Result<(), ProtocolError> {
    match frame.cmd {
        SUBSCRIBE => {
            let s = Subscribe::decode(frame.body)?;
            peer.table_mut().subscribe(s.appid, s.uid, s.online);
        }
        UNSUBSCRIBE => {
            let u = Unsubscribe::decode(frame.body)?;
            peer.table_mut().unsubscribe(u.appid, u.uid);
        }
        SUBSCRIBE_ROOM => {
            let r = RoomSubscription::decode(frame.cmd, frame.body)?;
            peer.table_mut().subscribe_room(r.appid, r.room_id);
        }
        UNSUBSCRIBE_ROOM => {
            let r = RoomSubscription::decode(frame.cmd, frame.body)?;
            peer.table_mut().unsubscribe_room(r.appid, r.room_id);
        }
        DEVICE_ONLINE => {
            let d = DeviceOnline::decode(frame.body)?;
            peer.table_mut().device_online(d.appid, d.uid, d.device);
        }
        DEVICE_OFFLINE => {
            let d = DeviceOffline::decode(frame.body)?;
            peer.table_mut().device_offline(d.appid, d.uid, d.conn);
        }
        // Answered in link order, so it reflects every device this im
        // reported before asking.
        PRESENCE_QUERY => {
            let q = PresenceQuery::decode(frame.body)?;
            stats::add(&sh.stats.presence_queries, 1);
            let reply = crate::presence::answer(&sh.registry, &q);
            if peer
                .outbox
                .push(link_frame(PRESENCE_REPLY, reply.encode()))
                .is_err()
            {
                tracing::debug!(link = peer.id, "presence reply not sent: link closing");
            }
        }
        PUBLISH_GROUP => {
            let g = GroupPublish::decode(frame.body.clone())?;
            stats::add(&sh.stats.frames_received, 1);
            // Relayed as received: the other ims deliver to the listed
            // members they hold; encoded once, shared by every target.
            let bytes = link_frame(PUBLISH_GROUP, frame.body);
            relay::relay(&sh.registry, &sh.stats, peer.id, Route::group(&g), &bytes);
        }
        cmd if relay::is_routed(cmd) => {
            let rm = ferry_common::link::RouteMessage::decode(cmd, frame.body.clone())?;
            stats::add(&sh.stats.frames_received, 1);
            if let Some(route) = Route::of(cmd, &rm) {
                // Encoded once; every target shares these bytes.
                let bytes = link_frame(cmd, frame.body);
                relay::relay(&sh.registry, &sh.stats, peer.id, route, &bytes);
            }
        }
        PUSH => {
            let req = BatchPush::decode(frame.body)?;
            match &sh.push {
                Some(queue) => {
                    tokio::select! {
                        biased;
                        _ = peer.cancel.cancelled() => {}
                        _ = push::handle(&sh.registry, queue, &sh.stats, peer.id, req) => {}
                    }
                }
                None => stats::add(&sh.stats.push_requests, 1),
            }
        }
        // Frames of one link are applied in order: echoing MARK now tells the
        // im that everything it sent before is in the table.
        MARK => {
            if peer.outbox.push(link_frame(MARK, Bytes::new())).is_err() {
                tracing::debug!(link = peer.id, "MARK not echoed: link closing");
            }
        }
        NODE_QUERY => crate::node_query::query(&sh.registry, peer, frame.body)?,
        NODE_REPLY => crate::node_query::reply(&sh.registry, frame.body)?,
        HELLO => return Err(ProtocolError::Link("HELLO after the handshake")),
        other => {
            stats::add(&sh.stats.frames_ignored, 1);
            tracing::warn!(link = peer.id, peer = %peer.addr, cmd = other, name = name(other), "unknown link command ignored");
        }
    }
    Ok(())
}

async fn write_loop(mut wr: OwnedWriteHalf, peer: Arc<Peer>, sh: Arc<ImrState>) {
    let mut buf = BytesMut::new();
    loop {
        let more = tokio::select! {
            biased;
            _ = peer.cancel.cancelled() => break,
            m = peer.outbox.next_batch(&mut buf) => m,
        };
        if !more {
            break;
        }
        let res = tokio::select! {
            biased;
            _ = peer.cancel.cancelled() => break,
            r = tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&buf)) => r,
        };
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(link = peer.id, error = %e, "write to im failed");
                break;
            }
            Err(_) => {
                stats::add(&sh.stats.link_drops, 1);
                tracing::warn!(link = peer.id, peer = %peer.addr, "im link stuck: no write progress for {WRITE_TIMEOUT:?}, dropping the link");
                break;
            }
        }
        buf.clear();
        if buf.capacity() > KEEP_WRITE_BUF {
            buf = BytesMut::new();
        }
    }
    peer.cancel.cancel();
    let _ = wr.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_check() {
        assert!(secret_matches(b"", b""));
        assert!(secret_matches(b"anything", b""));
        assert!(secret_matches(b"s3cret", b"s3cret"));
        assert!(!secret_matches(b"s3cres", b"s3cret"));
        assert!(!secret_matches(b"s3cre", b"s3cret"));
        assert!(!secret_matches(b"", b"s3cret"));
    }
}
