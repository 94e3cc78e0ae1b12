//! The public API: [`Client`] = a cloneable [`ClientHandle`] for sending
//! plus an [`Events`] receiver for what arrives.

use super::ack::Ack;
use super::connection::Connection;
use super::error::ClientError;
use super::event::Event;
use super::options::ClientOptions;
use super::state::{self, ClientState, Outgoing, lock};
use super::sync::SyncMachine;
use crate::protocol::auth::AuthToken;
use crate::protocol::command::{AUTH_TOKEN, PING, SYNC};
use crate::protocol::customer::CustomerV2;
use crate::protocol::im::Im;
use crate::protocol::realtime::Realtime;
use crate::protocol::scalar::encode_i64;
use crate::protocol::{Frame, MAX_CLIENT_BODY, Message};
use crate::token::Claims;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};

/// A connection to an im server: send with the [`ClientHandle`] methods
/// (reachable through `Deref`), receive with [`Client::recv`].
///
/// The connection stays open while the `Client` or any handle cloned from
/// it exists, or until [`ClientHandle::close`].
pub struct Client {
    handle: ClientHandle,
    events: Events,
}

/// Cloneable sending side of a connection. All methods take `&self`, so one
/// handle can be shared by tasks.
#[derive(Clone)]
pub struct ClientHandle {
    shared: Arc<ClientState>,
    guard: Arc<CloseGuard>,
}

/// Receiving side: the ordered stream of [`Event`]s. Unbounded, so a slow
/// consumer never stalls ACK processing; a consumer that never reads only
/// costs memory.
pub struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
}

/// Dropping the last handle stops the connection task.
struct CloseGuard {
    tx: std::sync::Mutex<Option<oneshot::Sender<()>>>,
}

impl CloseGuard {
    fn close(&self) {
        if let Some(tx) = lock(&self.tx).take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        self.close();
    }
}

/// Counters of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Stored messages taken from real-time pushes.
    pub pushes_accepted: u64,
    /// Pushes left to the sync loop (METADATA did not continue the key).
    pub pushes_ignored: u64,
    /// Messages delivered from sync batches.
    pub synced: u64,
    /// Frames read, METADATA included.
    pub frames_received: u64,
}

fn unix_now() -> i32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i32)
        .unwrap_or(0)
}

/// Reads `appid`/`uid` from a JWT's payload without verifying it: the client
/// only needs to know who it is, the server does the verification.
fn jwt_identity(token: &str) -> Option<(i64, i64)> {
    let payload = token.split('.').nth(1)?;
    let json = B64.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Claims = serde_json::from_slice(&json).ok()?;
    Some((claims.appid, claims.uid))
}

impl Client {
    /// Connects with default options (sync loop on).
    pub async fn connect(
        addr: impl ToSocketAddrs + std::fmt::Display,
    ) -> Result<Client, ClientError> {
        Client::connect_with(addr, ClientOptions::default()).await
    }

    /// Connects over TCP and starts the connection task. Nothing is sent
    /// until [`ClientHandle::auth`].
    pub async fn connect_with(
        addr: impl ToSocketAddrs + std::fmt::Display,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let name = addr.to_string();
        let stream =
            match tokio::time::timeout(options.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(source)) => return Err(ClientError::Connect { addr: name, source }),
                Err(_) => return Err(ClientError::Timeout),
            };
        Client::from_stream(stream, options)
    }

    /// Starts the connection task on an already connected stream (e.g. one
    /// bound to a chosen source address before connecting, as the load tool
    /// does to spread many connections over 127.0.0.x).
    pub fn from_stream(stream: TcpStream, options: ClientOptions) -> Result<Client, ClientError> {
        // One request in flight is the common pattern; don't let Nagle hold it.
        stream.set_nodelay(true)?;
        let sync = options
            .sync
            .then(|| SyncMachine::new(options.sync_key, options.sync_timeout));
        let (shared, rx) = state::shared(sync, options.request_timeout);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (close_tx, close_rx) = oneshot::channel();
        let conn = Connection {
            stream,
            shared: shared.clone(),
            rx,
            events: events_tx,
            shutdown: close_rx,
            max_body: options.max_body,
        };
        tokio::spawn(conn.run());
        Ok(Client {
            handle: ClientHandle {
                shared,
                guard: Arc::new(CloseGuard {
                    tx: std::sync::Mutex::new(Some(close_tx)),
                }),
            },
            events: Events { rx: events_rx },
        })
    }

    /// Next event; `None` after [`Event::Closed`] has been returned.
    pub async fn recv(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Next event within `timeout`: `Err(Timeout)` if none came,
    /// `Err(Closed)` once the stream has ended.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<Event, ClientError> {
        self.events.recv_timeout(timeout).await
    }

    /// An event if one is queued right now.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.events.try_recv()
    }

    /// A handle for another task.
    pub fn handle(&self) -> ClientHandle {
        self.handle.clone()
    }

    /// Separates sending and receiving, e.g. to receive in its own task.
    pub fn split(self) -> (ClientHandle, Events) {
        (self.handle, self.events)
    }
}

impl Deref for Client {
    type Target = ClientHandle;

    fn deref(&self) -> &ClientHandle {
        &self.handle
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.handle.fmt(f)
    }
}

impl std::fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandle")
            .field("appid", &self.appid())
            .field("uid", &self.uid())
            .field("authenticated", &self.is_authenticated())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Events {
    /// Next event; `None` after [`Event::Closed`] has been returned.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// Next event within `timeout`.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<Event, ClientError> {
        match tokio::time::timeout(timeout, self.rx.recv()).await {
            Ok(Some(ev)) => Ok(ev),
            Ok(None) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout),
        }
    }

    /// An event if one is queued right now.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

impl ClientHandle {
    /// Own uid (from the JWT or [`Self::set_identity`]); 0 if unknown.
    pub fn uid(&self) -> i64 {
        self.shared.uid.load(Ordering::Acquire)
    }

    /// Own appid (from the JWT or [`Self::set_identity`]); 0 if unknown.
    pub fn appid(&self) -> i64 {
        self.shared.appid.load(Ordering::Acquire)
    }

    /// Sets who we are, for tokens the client cannot read (Redis tokens).
    /// The server ignores messages whose sender is not the logged-in uid.
    pub fn set_identity(&self, appid: i64, uid: i64) {
        self.shared.appid.store(appid, Ordering::Release);
        self.shared.uid.store(uid, Ordering::Release);
    }

    /// Header version of outgoing frames (0 before auth).
    pub fn version(&self) -> u8 {
        self.shared.version.load(Ordering::Acquire)
    }

    pub fn is_authenticated(&self) -> bool {
        self.shared.authenticated.load(Ordering::Acquire)
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// The personal sync key (0 with the sync loop off).
    pub fn current_sync_key(&self) -> i64 {
        self.shared.sync.as_ref().map_or(0, |s| lock(s).key())
    }

    pub fn stats(&self) -> ClientStats {
        let c = &self.shared.counters;
        ClientStats {
            pushes_accepted: c.pushes_accepted.load(Ordering::Relaxed),
            pushes_ignored: c.pushes_ignored.load(Ordering::Relaxed),
            synced: c.synced.load(Ordering::Relaxed),
            frames_received: c.frames_received.load(Ordering::Relaxed),
        }
    }

    /// Closes the connection (after flushing frames already queued, for at
    /// most a second). Pending requests fail with `Closed`.
    pub fn close(&self) {
        self.guard.close();
    }

    /// Logs in: AUTH_TOKEN at header `version`, then waits for AUTH_STATUS.
    /// On success all later frames use `version`, and the sync loop (if on)
    /// sends its first SYNC. On failure the connection stays usable for
    /// another attempt. If the token is a JWT its `appid`/`uid` become the
    /// identity (unless `set_identity` already set one).
    pub async fn auth(
        &self,
        token: &str,
        platform_id: u8,
        device_id: &str,
        version: u8,
    ) -> Result<(), ClientError> {
        if self.is_authenticated() {
            return Err(ClientError::AlreadyAuthenticated);
        }
        if let Some(len) = [token.len(), device_id.len()]
            .into_iter()
            .find(|&l| l > 255)
        {
            return Err(ClientError::TokenTooLong(len));
        }
        let body = AuthToken {
            platform_id,
            token: token.to_owned(),
            device_id: device_id.to_owned(),
        }
        .encode();
        let (tx, rx) = oneshot::channel();
        self.shared
            .send(AUTH_TOKEN, Some(version), 0, body, |_, p| {
                p.auth = Some((version, tx))
            })?;
        let status = match tokio::time::timeout(self.shared.request_timeout, rx).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return Err(ClientError::Closed),
            Err(_) => {
                lock(&self.shared.pending).auth = None;
                return Err(ClientError::Timeout);
            }
        };
        if status != 0 {
            return Err(ClientError::AuthFailed(status));
        }
        if self.uid() == 0
            && let Some((appid, uid)) = jwt_identity(token)
        {
            self.set_identity(appid, uid);
        }
        Ok(())
    }

    fn require_identity(&self) -> Result<(i64, i64), ClientError> {
        if !self.is_authenticated() {
            return Err(ClientError::NotAuthenticated);
        }
        match (self.appid(), self.uid()) {
            (_, 0) => Err(ClientError::UnknownIdentity),
            ids => Ok(ids),
        }
    }

    /// Sends `msg` with the next seq at the connection's version, without
    /// waiting for anything. Returns the seq. Refuses bodies the server
    /// would reject by closing the connection.
    pub fn send_message(&self, msg: &Message, flag: u8) -> Result<i32, ClientError> {
        let version = self.version();
        let body = msg.encode(version);
        if body.len() > MAX_CLIENT_BODY {
            return Err(ClientError::TooLarge(body.len()));
        }
        self.shared
            .send(msg.cmd(), Some(version), flag, body, |_, _| {})
    }

    /// Sends `msg` and waits for the server's ACK of it.
    pub async fn request(&self, msg: &Message, flag: u8) -> Result<Ack, ClientError> {
        let version = self.version();
        let body = msg.encode(version);
        if body.len() > MAX_CLIENT_BODY {
            return Err(ClientError::TooLarge(body.len()));
        }
        let (tx, rx) = oneshot::channel();
        let seq = self
            .shared
            .send(msg.cmd(), Some(version), flag, body, |seq, p| {
                p.acks.insert(seq, tx);
            })?;
        match tokio::time::timeout(self.shared.request_timeout, rx).await {
            Ok(Ok(ack)) => Ok(ack),
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => {
                lock(&self.shared.pending).acks.remove(&seq);
                Err(ClientError::Timeout)
            }
        }
    }

    /// Sends a frame exactly as given (seq, version, flag untouched; no seq
    /// is consumed). For tests that need odd frames; an ACK for it arrives as
    /// [`Event::Ack`].
    pub fn send_frame(&self, frame: Frame) -> Result<(), ClientError> {
        self.shared.send_raw(Outgoing::Frame(frame))
    }

    /// Writes raw bytes to the socket (e.g. a header with a bad length).
    pub fn send_bytes(&self, bytes: Bytes) -> Result<(), ClientError> {
        self.shared.send_raw(Outgoing::Raw(bytes))
    }

    /// Peer message (IM) from us to `receiver`; `msgid` is our local id,
    /// which the receiver sees unchanged. Waits for the ACK.
    pub async fn send_im(
        &self,
        receiver: i64,
        content: impl Into<Bytes>,
        msgid: i32,
    ) -> Result<Ack, ClientError> {
        let (_, uid) = self.require_identity()?;
        let im = Im {
            sender: uid,
            receiver,
            timestamp: unix_now(),
            msgid,
            content: content.into(),
        };
        self.request(&Message::Im(im), 0).await
    }

    /// Group message to `group_id`. Waits for the ACK (status 64/65 for
    /// not-a-member / no-such-group).
    pub async fn send_group_im(
        &self,
        group_id: i64,
        content: impl Into<Bytes>,
        msgid: i32,
    ) -> Result<Ack, ClientError> {
        let (_, uid) = self.require_identity()?;
        let im = Im {
            sender: uid,
            receiver: group_id,
            timestamp: unix_now(),
            msgid,
            content: content.into(),
        };
        self.request(&Message::GroupIm(im), 0).await
    }

    /// Chat room message; we must have entered `room_id`. Waits for the ACK
    /// (gobelieve sends none when we are not in the room: `Timeout`).
    pub async fn send_room_im(
        &self,
        room_id: i64,
        content: impl Into<Bytes>,
    ) -> Result<Ack, ClientError> {
        let (_, uid) = self.require_identity()?;
        let m = Realtime {
            sender: uid,
            receiver: room_id,
            content: content.into(),
        };
        self.request(&Message::RoomIm(m), 0).await
    }

    /// Real-time message: not stored, not acknowledged.
    pub fn send_rt(&self, receiver: i64, content: impl Into<Bytes>) -> Result<(), ClientError> {
        let (_, uid) = self.require_identity()?;
        let m = Realtime {
            sender: uid,
            receiver,
            content: content.into(),
        };
        self.send_message(&Message::Rt(m), 0).map(|_| ())
    }

    /// ENTER_ROOM (no reply).
    pub fn enter_room(&self, room_id: i64) -> Result<(), ClientError> {
        self.send_message(&Message::EnterRoom(room_id), 0)
            .map(|_| ())
    }

    /// LEAVE_ROOM (no reply).
    pub fn leave_room(&self, room_id: i64) -> Result<(), ClientError> {
        self.send_message(&Message::LeaveRoom(room_id), 0)
            .map(|_| ())
    }

    /// CUSTOMER_V2 from (own appid, own uid) to (`receiver_appid`,
    /// `receiver`). One of the two appids must be the server's kefu appid,
    /// else gobelieve drops it silently (`Timeout`). Waits for the ACK.
    pub async fn send_customer_v2(
        &self,
        receiver_appid: i64,
        receiver: i64,
        content: impl Into<Bytes>,
    ) -> Result<Ack, ClientError> {
        let (appid, uid) = self.require_identity()?;
        let m = CustomerV2 {
            sender_appid: appid,
            sender: uid,
            receiver_appid,
            receiver,
            timestamp: unix_now(),
            content: content.into(),
        };
        self.request(&Message::CustomerV2(m), 0).await
    }

    /// PING; waits for a PONG and returns the round-trip time.
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        let (tx, rx) = oneshot::channel();
        let start = Instant::now();
        self.shared
            .send(PING, None, 0, Bytes::new(), |_, p| p.pongs.push_back(tx))?;
        match tokio::time::timeout(self.shared.request_timeout, rx).await {
            Ok(Ok(())) => Ok(start.elapsed()),
            Ok(Err(_)) => Err(ClientError::Closed),
            // The dead waiter is skipped when a PONG comes.
            Err(_) => Err(ClientError::Timeout),
        }
    }

    /// SYNC_KEY(k): tells the server which key we have (it keeps the max).
    /// The sync loop already does this by itself.
    pub fn sync_key(&self, k: i64) -> Result<(), ClientError> {
        self.send_message(&Message::SyncKey(k), 0).map(|_| ())
    }

    /// Asks the sync loop for a sync now (after the one in flight, if any);
    /// its end shows up as [`Event::SyncDone`]. With the loop off, sends
    /// SYNC(0), i.e. "from the key the server stored".
    pub fn request_sync(&self) -> Result<(), ClientError> {
        match &self.shared.sync {
            Some(sync) => {
                let mut s = lock(sync);
                match s.request(Instant::now()) {
                    Some(key) => self
                        .shared
                        .send(SYNC, None, 0, encode_i64(key), |_, _| {})
                        .map(|_| ()),
                    None => Ok(()),
                }
            }
            None => self.send_message(&Message::Sync(0), 0).map(|_| ()),
        }
    }

    /// UNREAD_COUNT (badge for offline push).
    pub fn set_unread_count(&self, count: i32) -> Result<(), ClientError> {
        self.send_message(&Message::UnreadCount(count), 0)
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_from_jwt() {
        let t = crate::token::sign(
            &Claims {
                appid: 7,
                uid: 1234,
                exp: None,
                nbf: None,
            },
            b"k",
        );
        assert_eq!(jwt_identity(&t), Some((7, 1234)));
        assert_eq!(jwt_identity("not-a-jwt"), None);
        assert_eq!(jwt_identity("a.%%%.c"), None);
    }
}
