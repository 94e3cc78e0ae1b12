//! One persistent link to one imr: subscription counters, a bounded send
//! buffer that survives disconnects, reconnect with capped backoff, and a
//! full resubscribe on every (re)connect before anything queued is sent.
//!
//! Ordering: counters and the send queue live under one lock, so the
//! SUBSCRIBE/UNSUBSCRIBE frames of one user leave in the order the changes
//! happened. While the link is down no subscription frame is queued — the
//! snapshot taken at reconnect (under the same lock) already holds the final
//! state — but publishes and pushes are kept, up to the buffer bound.
//! After the resubscribe the im sends MARK; the imr echoes it once it has
//! applied everything before it, and only then are local users told to sync
//! (so nothing routed after their sync can miss a subscription).
//! Subscription frames still queued when the link drops are discarded: sent
//! after the next snapshot they would replay stale state (a SUBSCRIBE of a
//! user who has left since would leave a ghost entry at the imr).

use super::counters::{self, SubChange};
use bytes::{Bytes, BytesMut};
use ferry_common::link::{
    DEVICE_OFFLINE, DEVICE_ONLINE, Device, DeviceOffline, DeviceOnline, HELLO, Hello, LINK_VERSION,
    MARK, MAX_LINK_BODY, NODE_QUERY, NODE_REPLY, PRESENCE_QUERY, PRESENCE_REPLY, PUBLISH_GROUP,
    PresenceQuery, PresenceReply, RoomSubscription, SUBSCRIBE, SUBSCRIBE_ROOM, Subscribe,
    UNSUBSCRIBE, UNSUBSCRIBE_ROOM, Unsubscribe,
};
use ferry_common::protocol::{Frame, FrameCodec};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Encodes one link frame (seq 0: the peer ignores it).
pub fn link_frame(cmd: u8, body: Bytes) -> Bytes {
    Frame::new(cmd, 0, 0, 0, body).to_bytes()
}

fn sub_frame(appid: i64, uid: i64, change: SubChange) -> Bytes {
    match change {
        SubChange::Subscribe { online } => {
            link_frame(SUBSCRIBE, Subscribe { appid, uid, online }.encode())
        }
        SubChange::Unsubscribe => link_frame(UNSUBSCRIBE, Unsubscribe { appid, uid }.encode()),
    }
}

#[derive(Default)]
struct State {
    users: HashMap<(i64, i64), u32>,
    rooms: HashMap<(i64, i64), u32>,
    /// Logged-in connections of users homed here, by connection id, for the
    /// imr's presence table (resent whole on every connect).
    devices: HashMap<u64, (i64, i64, Device)>,
    /// Frames to send, each flagged `true` if it is a subscription change.
    queue: VecDeque<(Bytes, bool)>,
    queued: usize,
    connected: bool,
}

/// Counters of one link, for logs and metrics.
#[derive(Default)]
pub struct LinkStats {
    /// Completed (re)connects: HELLO exchanged and resubscribe written.
    pub connects: AtomicU64,
    /// When the last TCP connect to the imr succeeded (to time resubscribes).
    pub last_connect: Mutex<Option<std::time::Instant>>,
    pub dropped_frames: AtomicU64,
    pub sent_frames: AtomicU64,
    /// Routed frames received from the imr (everything but MARK echoes and
    /// the admin console's NODE_QUERY / NODE_REPLY).
    pub received_frames: AtomicU64,
    /// Of those, PUBLISH_GROUP frames: shows that super-group messages
    /// reach only the nodes holding members.
    pub received_group_frames: AtomicU64,
}

impl LinkStats {
    fn count_received(&self, cmd: u8) {
        if cmd == NODE_QUERY || cmd == NODE_REPLY {
            return;
        }
        self.received_frames.fetch_add(1, Ordering::Relaxed);
        if cmd == PUBLISH_GROUP {
            self.received_group_frames.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub struct Link {
    pub index: usize,
    pub addr: String,
    secret: Bytes,
    /// This node's name, presented in HELLO (shown in presence answers).
    name: Bytes,
    limit: usize,
    state: Mutex<State>,
    /// Presence queries waiting for their PRESENCE_REPLY, by query id.
    pending: Mutex<HashMap<u64, tokio::sync::oneshot::Sender<PresenceReply>>>,
    next_query: AtomicU64,
    notify: Notify,
    pub up: AtomicBool,
    pub stats: LinkStats,
}

impl Link {
    pub fn new(index: usize, addr: String, secret: Bytes, name: Bytes, limit: usize) -> Link {
        Link {
            index,
            addr,
            secret,
            name,
            limit,
            state: Mutex::new(State::default()),
            pending: Mutex::new(HashMap::new()),
            next_query: AtomicU64::new(1),
            notify: Notify::new(),
            up: AtomicBool::new(false),
            stats: LinkStats::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enqueue(&self, st: &mut State, frame: Bytes, subscription: bool) {
        if st.queued + frame.len() > self.limit {
            let n = self.stats.dropped_frames.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!(imr = %self.addr, dropped = n + 1, "imr link buffer full: dropping frames (receivers recover by sync)");
            }
            return;
        }
        st.queued += frame.len();
        st.queue.push_back((frame, subscription));
        self.notify.notify_one();
    }

    /// Queues a publish or push frame (kept while the link is down).
    pub fn send(&self, frame: Bytes) {
        let mut st = self.lock();
        self.enqueue(&mut st, frame, false);
    }

    pub fn user_add(&self, appid: i64, uid: i64, online: bool) {
        let mut st = self.lock();
        let c = st.users.get(&(appid, uid)).copied().unwrap_or(0);
        let (c2, change) = counters::add(c, online);
        st.users.insert((appid, uid), c2);
        if let Some(ch) = change
            && st.connected
        {
            self.enqueue(&mut st, sub_frame(appid, uid, ch), true);
        }
    }

    pub fn user_remove(&self, appid: i64, uid: i64, online: bool) {
        let mut st = self.lock();
        let c = st.users.get(&(appid, uid)).copied().unwrap_or(0);
        let (c2, change) = counters::remove(c, online);
        if counters::total(c2) == 0 {
            st.users.remove(&(appid, uid));
        } else {
            st.users.insert((appid, uid), c2);
        }
        if let Some(ch) = change
            && st.connected
        {
            self.enqueue(&mut st, sub_frame(appid, uid, ch), true);
        }
    }

    /// A connection of a user homed here logged in.
    pub fn device_add(&self, appid: i64, uid: i64, device: Device) {
        let mut st = self.lock();
        let frame = st.connected.then(|| {
            link_frame(
                DEVICE_ONLINE,
                DeviceOnline {
                    appid,
                    uid,
                    device: device.clone(),
                }
                .encode(),
            )
        });
        st.devices.insert(device.conn, (appid, uid, device));
        if let Some(f) = frame {
            self.enqueue(&mut st, f, true);
        }
    }

    /// That connection ended.
    pub fn device_remove(&self, appid: i64, uid: i64, conn: u64) {
        let mut st = self.lock();
        if st.devices.remove(&conn).is_some() && st.connected {
            let f = link_frame(DEVICE_OFFLINE, DeviceOffline { appid, uid, conn }.encode());
            self.enqueue(&mut st, f, true);
        }
    }

    /// Asks the imr which of `uids` have devices anywhere (one round trip).
    /// Fails at once while the link is down, and after `timeout`.
    pub async fn query_presence(
        &self,
        appid: i64,
        uids: Vec<i64>,
        timeout: Duration,
    ) -> Result<PresenceReply, QueryError> {
        if !self.up.load(Ordering::Relaxed) {
            return Err(QueryError::Down);
        }
        let id = self.next_query.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pending_lock().insert(id, tx);
        let body = PresenceQuery { id, appid, uids }.encode();
        self.send(link_frame(PRESENCE_QUERY, body));
        let res = tokio::time::timeout(timeout, rx).await;
        self.pending_lock().remove(&id);
        match res {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(QueryError::Lost),
            Err(_) => Err(QueryError::Timeout),
        }
    }

    fn pending_lock(
        &self,
    ) -> MutexGuard<'_, HashMap<u64, tokio::sync::oneshot::Sender<PresenceReply>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn on_presence_reply(&self, body: Bytes) {
        match PresenceReply::decode(body) {
            Ok(r) => {
                if let Some(tx) = self.pending_lock().remove(&r.id) {
                    let _ = tx.send(r);
                }
            }
            Err(e) => {
                tracing::warn!(imr = %self.addr, error = %e, "undecodable PRESENCE_REPLY ignored")
            }
        }
    }

    pub fn room_add(&self, appid: i64, room: i64) {
        let mut st = self.lock();
        let c = st.rooms.entry((appid, room)).or_insert(0);
        *c += 1;
        if *c == 1 && st.connected {
            let f = link_frame(
                SUBSCRIBE_ROOM,
                RoomSubscription {
                    appid,
                    room_id: room,
                }
                .encode(),
            );
            self.enqueue(&mut st, f, true);
        }
    }

    pub fn room_remove(&self, appid: i64, room: i64) {
        let mut st = self.lock();
        let Some(c) = st.rooms.get_mut(&(appid, room)) else {
            return;
        };
        *c -= 1;
        if *c == 0 {
            st.rooms.remove(&(appid, room));
            if st.connected {
                let f = link_frame(
                    UNSUBSCRIBE_ROOM,
                    RoomSubscription {
                        appid,
                        room_id: room,
                    }
                    .encode(),
                );
                self.enqueue(&mut st, f, true);
            }
        }
    }

    /// Users subscribed through this link (for SYNC_NOTIFY after a gap).
    /// Bytes waiting to be sent to the imr (grows while the link is down).
    pub fn queued_bytes(&self) -> usize {
        self.lock().queued
    }

    pub fn users(&self) -> Vec<(i64, i64)> {
        self.lock().users.keys().copied().collect()
    }

    /// Marks the link connected and returns the resubscribe frames, encoded
    /// into one buffer. Taken under the lock so no change slips between.
    fn connect_snapshot(&self) -> (Bytes, usize) {
        let mut st = self.lock();
        st.connected = true;
        let mut buf = BytesMut::with_capacity(
            st.users.len() * 29 + st.rooms.len() * 28 + st.devices.len() * 64,
        );
        let mut n = 0;
        for (&(appid, uid), &c) in &st.users {
            let online = counters::online(c) > 0;
            Frame::new(
                SUBSCRIBE,
                0,
                0,
                0,
                Subscribe { appid, uid, online }.encode(),
            )
            .write_to(&mut buf);
            n += 1;
        }
        for &(appid, room) in st.rooms.keys() {
            Frame::new(
                SUBSCRIBE_ROOM,
                0,
                0,
                0,
                RoomSubscription {
                    appid,
                    room_id: room,
                }
                .encode(),
            )
            .write_to(&mut buf);
            n += 1;
        }
        for (appid, uid, device) in st.devices.values() {
            let body = DeviceOnline {
                appid: *appid,
                uid: *uid,
                device: device.clone(),
            }
            .encode();
            Frame::new(DEVICE_ONLINE, 0, 0, 0, body).write_to(&mut buf);
            n += 1;
        }
        (buf.freeze(), n)
    }

    fn disconnected(&self) {
        let mut st = self.lock();
        st.connected = false;
        let before = st.queue.len();
        st.queue.retain(|(_, sub)| !sub);
        if st.queue.len() != before {
            st.queued = st.queue.iter().map(|(f, _)| f.len()).sum();
        }
        drop(st);
        self.up.store(false, Ordering::Relaxed);
        // Queries sent on the lost connection will never be answered.
        self.pending_lock().clear();
    }

    /// Takes everything queued (bounded) as one write.
    /// The frames waiting to be sent (tests).
    #[cfg(test)]
    pub(super) fn queued_frames(&self) -> Vec<Bytes> {
        self.lock().queue.iter().map(|(f, _)| f.clone()).collect()
    }

    fn drain(&self, max: usize) -> Option<BytesMut> {
        let mut st = self.lock();
        if st.queue.is_empty() {
            return None;
        }
        let mut buf = BytesMut::with_capacity(st.queued.min(max));
        while let Some((f, _)) = st.queue.front() {
            if !buf.is_empty() && buf.len() + f.len() > max {
                break;
            }
            let (f, _) = st.queue.pop_front().unwrap_or_default();
            st.queued -= f.len();
            buf.extend_from_slice(&f);
            self.stats.sent_frames.fetch_add(1, Ordering::Relaxed);
        }
        Some(buf)
    }
}

/// Why a link session ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("imr speaks link version {theirs}, this im speaks {LINK_VERSION}")]
    Version { theirs: u16 },
    #[error("imr closed the link during the handshake (wrong --link-secret?)")]
    Refused,
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
}

/// Why a presence query got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("link down")]
    Down,
    #[error("link lost before the answer")]
    Lost,
    #[error("no answer in time")]
    Timeout,
}

/// Handles frames arriving from the imr.
pub trait Inbound: Send + Sync + 'static {
    fn on_frame(&self, link: usize, frame: Frame);
    /// Called once the link is up (again): anything routed to us while it
    /// was down is lost.
    fn on_gap(&self, link: usize);
}

/// Keeps the link up forever (until the task is aborted).
pub async fn run(link: Arc<Link>, inbound: Arc<dyn Inbound>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match session(&link, &*inbound).await {
            Ok(()) => {}
            Err(LinkError::Version { theirs }) => {
                tracing::error!(imr = %link.addr, theirs, ours = LINK_VERSION, "imr link refused: version mismatch");
            }
            Err(e) => tracing::warn!(imr = %link.addr, error = %e, "imr link down"),
        }
        if link.up.load(Ordering::Relaxed) {
            backoff = Duration::from_millis(200);
        }
        link.disconnected();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn session(link: &Link, inbound: &dyn Inbound) -> Result<(), LinkError> {
    let stream = TcpStream::connect(&link.addr)
        .await
        .map_err(LinkError::Connect)?;
    *link
        .stats
        .last_connect
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut reader = tokio_util::codec::FramedRead::new(rd, FrameCodec::new(MAX_LINK_BODY));
    let hello = Hello {
        version: LINK_VERSION,
        secret: link.secret.clone(),
        name: link.name.clone(),
    };
    wr.write_all(&link_frame(HELLO, hello.encode())).await?;
    let reply = match next_frame(&mut reader).await? {
        Some(f) if f.cmd == HELLO => {
            Hello::decode(f.body).map_err(|e| LinkError::Protocol(e.to_string()))?
        }
        Some(f) => {
            return Err(LinkError::Protocol(format!(
                "expected HELLO, got command {}",
                f.cmd
            )));
        }
        None => return Err(LinkError::Refused),
    };
    if reply.version != LINK_VERSION {
        return Err(LinkError::Version {
            theirs: reply.version,
        });
    }
    let (snapshot, n) = link.connect_snapshot();
    let started = std::time::Instant::now();
    wr.write_all(&snapshot).await?;
    drop(snapshot);
    wr.write_all(&link_frame(MARK, Bytes::new())).await?;
    link.up.store(true, Ordering::Relaxed);
    link.stats.connects.fetch_add(1, Ordering::Relaxed);
    tracing::info!(imr = %link.addr, subscriptions = n, elapsed_ms = started.elapsed().as_millis() as u64, "imr link up, resubscribed");
    loop {
        tokio::select! {
            f = next_frame(&mut reader) => match f? {
                // The imr has applied the resubscribe. Also after the first
                // connect: clients that logged in before the link came up
                // missed whatever other nodes routed to them meanwhile.
                Some(frame) if frame.cmd == MARK => inbound.on_gap(link.index),
                Some(frame) if frame.cmd == PRESENCE_REPLY => link.on_presence_reply(frame.body),
                Some(frame) => {
                    link.stats.count_received(frame.cmd);
                    inbound.on_frame(link.index, frame);
                }
                None => return Ok(()),
            },
            _ = link.notify.notified() => {
                while let Some(buf) = link.drain(1 << 20) {
                    wr.write_all(&buf).await?;
                }
            }
        }
    }
}

async fn next_frame(
    r: &mut tokio_util::codec::FramedRead<tokio::net::tcp::OwnedReadHalf, FrameCodec>,
) -> Result<Option<Frame>, LinkError> {
    use ferry_common::protocol::CodecError;
    use futures_util::StreamExt;
    match r.next().await {
        None => Ok(None),
        Some(Ok(f)) => Ok(Some(f)),
        Some(Err(CodecError::Io(e))) => Err(LinkError::Io(e)),
        Some(Err(CodecError::Protocol(e))) => Err(LinkError::Protocol(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(l: &Link) -> Vec<u8> {
        l.lock()
            .queue
            .iter()
            .map(|(f, _)| f.get(8).copied().unwrap_or(0))
            .collect()
    }

    fn device(conn: u64) -> Device {
        Device {
            conn,
            platform: 1,
            transport: 1,
            since: 0,
            device_id: Bytes::from_static(b"d"),
        }
    }

    #[test]
    fn devices_are_resent_on_connect_and_dropped_frames_do_not_replay() {
        let l = Link::new(0, "127.0.0.1:1".into(), Bytes::new(), Bytes::new(), 1 << 20);
        // Down: nothing queued, but remembered for the snapshot.
        l.device_add(7, 1, device(10));
        l.device_add(7, 2, device(11));
        assert!(queued(&l).is_empty());
        let (_, n) = l.connect_snapshot();
        assert_eq!(n, 2);
        l.device_remove(7, 1, 10);
        l.device_add(7, 3, device(12));
        assert_eq!(queued(&l), vec![DEVICE_OFFLINE, DEVICE_ONLINE]);
        // A drop discards them; the next snapshot holds the final state.
        l.disconnected();
        assert!(queued(&l).is_empty());
        let (snap, n) = l.connect_snapshot();
        assert_eq!(n, 2);
        let mut buf = BytesMut::from(&snap[..]);
        let mut conns = Vec::new();
        while let Ok(Some(f)) = ferry_common::protocol::split_frame(&mut buf, MAX_LINK_BODY) {
            assert_eq!(f.cmd, DEVICE_ONLINE);
            conns.push(DeviceOnline::decode(f.body).expect("device").device.conn);
        }
        conns.sort_unstable();
        assert_eq!(conns, vec![11, 12]);
        // Removing an unknown connection sends nothing.
        l.device_remove(7, 9, 99);
        assert!(queued(&l).is_empty());
    }

    #[tokio::test]
    async fn presence_queries_fail_fast_when_down_and_on_a_drop() {
        let l = Arc::new(Link::new(
            0,
            "127.0.0.1:1".into(),
            Bytes::new(),
            Bytes::new(),
            1 << 20,
        ));
        let r = l.query_presence(7, vec![1], Duration::from_secs(5)).await;
        assert_eq!(r.unwrap_err(), QueryError::Down);
        l.up.store(true, Ordering::Relaxed);
        let q = tokio::spawn({
            let l = l.clone();
            async move { l.query_presence(7, vec![1], Duration::from_secs(5)).await }
        });
        while l.pending_lock().is_empty() {
            tokio::task::yield_now().await;
        }
        l.disconnected();
        assert_eq!(q.await.expect("join").unwrap_err(), QueryError::Lost);
        // A reply completes the waiting query.
        l.up.store(true, Ordering::Relaxed);
        let q = tokio::spawn({
            let l = l.clone();
            async move { l.query_presence(7, vec![1], Duration::from_secs(5)).await }
        });
        let id = loop {
            if let Some(id) = l.pending_lock().keys().next().copied() {
                break id;
            }
            tokio::task::yield_now().await;
        };
        l.on_presence_reply(
            PresenceReply {
                id,
                nodes: vec!["n".into()],
                users: vec![],
            }
            .encode(),
        );
        assert_eq!(
            q.await.expect("join").expect("reply").nodes,
            vec!["n".to_string()]
        );
    }

    #[test]
    fn subscription_frames_do_not_outlive_a_drop() {
        let l = Link::new(0, "127.0.0.1:1".into(), Bytes::new(), Bytes::new(), 1 << 20);
        let _ = l.connect_snapshot();
        l.user_add(7, 1, true);
        l.send(link_frame(
            ferry_common::link::PUBLISH,
            Bytes::from_static(b"x"),
        ));
        l.room_add(7, 5);
        assert_eq!(
            queued(&l),
            vec![SUBSCRIBE, ferry_common::link::PUBLISH, SUBSCRIBE_ROOM]
        );
        // The link drops before anything was written; the user leaves.
        l.disconnected();
        l.user_remove(7, 1, true);
        assert_eq!(queued(&l), vec![ferry_common::link::PUBLISH]);
        {
            let st = l.lock();
            assert_eq!(st.queued, st.queue[0].0.len());
        }
        // The reconnect snapshot holds only the room; no stale SUBSCRIBE follows.
        let (_, n) = l.connect_snapshot();
        assert_eq!(n, 1);
        assert_eq!(queued(&l), vec![ferry_common::link::PUBLISH]);
    }
}
