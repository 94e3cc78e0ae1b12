//! Turns decoded server frames into replies for waiting callers, sync-loop
//! actions and [`Event`]s. Runs inside the connection task, one frame at a
//! time, in arrival order.

use super::ack::Ack;
use super::error::CloseReason;
use super::event::Event;
use super::state::{ClientState, lock};
use crate::protocol::command::{METADATA, SYNC, SYNC_KEY};
use crate::protocol::flag::SUPER_GROUP;
use crate::protocol::metadata::Metadata;
use crate::protocol::scalar::encode_i64;
use crate::protocol::{Frame, Message, ProtocolError};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::sync::mpsc;

pub(crate) struct Dispatcher {
    shared: Arc<ClientState>,
    events: mpsc::UnboundedSender<Event>,
    /// The last METADATA frame and its seq. It belongs to the next frame only
    /// if that frame's seq is exactly one more (spec §1.5); otherwise the
    /// SDKs discard it, and so do we.
    last_meta: Option<(i32, Metadata)>,
    /// Between SYNC_GROUP_BEGIN and SYNC_GROUP_END (a super-group sync the
    /// app asked for): those messages carry no METADATA and must not be
    /// mistaken for pushes.
    group_batch: bool,
}

impl Dispatcher {
    pub(crate) fn new(
        shared: Arc<ClientState>,
        events: mpsc::UnboundedSender<Event>,
    ) -> Dispatcher {
        Dispatcher {
            shared,
            events,
            last_meta: None,
            group_batch: false,
        }
    }

    fn emit(&self, ev: Event) {
        // The app may have dropped its event receiver; that is its choice.
        let _ = self.events.send(ev);
    }

    /// Queues SYNC(key). A failure means the connection is closing, which the
    /// read loop will notice by itself.
    fn send_scalar(&self, cmd: u8, key: i64) {
        let _ = self.shared.send(cmd, None, 0, encode_i64(key), |_, _| {});
    }

    /// Handles one frame. An error closes the connection.
    pub(crate) fn handle(&mut self, frame: Frame) -> Result<(), CloseReason> {
        self.shared
            .counters
            .frames_received
            .fetch_add(1, Ordering::Relaxed);
        if frame.cmd == METADATA {
            let meta = Metadata::decode(frame.body).map_err(CloseReason::Protocol)?;
            self.last_meta = Some((frame.seq, meta));
            return Ok(());
        }
        let meta = match self.last_meta.take() {
            Some((seq, m)) if seq.wrapping_add(1) == frame.seq => Some(m),
            _ => None,
        };
        let flag = frame.flag;
        let msg = match Message::decode(frame.cmd, frame.version, frame.body.clone()) {
            Ok(m) => m,
            Err(ProtocolError::UnknownCommand(_)) => {
                self.emit(Event::Unknown(frame));
                return Ok(());
            }
            Err(e) => return Err(CloseReason::Protocol(e)),
        };
        let now = Instant::now();
        match msg {
            Message::AuthStatus(status) => self.on_auth_status(status, flag, now),
            Message::Ack(a) => self.on_ack(a.seq, a.status, flag, meta, now),
            Message::Pong => self.on_pong(flag),
            Message::SyncBegin(k) => match &self.shared.sync {
                Some(sync) => lock(sync).on_begin(),
                None => self.emit(Event::Control {
                    msg: Message::SyncBegin(k),
                    flag,
                }),
            },
            Message::SyncEnd(k) => match &self.shared.sync {
                Some(sync) => {
                    let end = {
                        let mut s = lock(sync);
                        let end = s.on_end(k, now);
                        if let Some(key) = end.resync {
                            self.send_scalar(SYNC, key);
                        }
                        end
                    };
                    self.emit(Event::SyncDone {
                        sync_key: end.key,
                        messages: end.messages,
                    });
                }
                None => self.emit(Event::Control {
                    msg: Message::SyncEnd(k),
                    flag,
                }),
            },
            Message::SyncNotify(k) => match &self.shared.sync {
                Some(sync) => {
                    let mut s = lock(sync);
                    if let Some(key) = s.on_notify(k, now) {
                        self.send_scalar(SYNC, key);
                    }
                }
                None => self.emit(Event::SyncNotify(k)),
            },
            Message::SyncGroupNotify(g) => self.emit(Event::SyncGroupNotify(g)),
            Message::SyncGroupBegin(_) | Message::SyncGroupEnd(_) => {
                self.group_batch = matches!(msg, Message::SyncGroupBegin(_));
                self.emit(Event::Control { msg, flag });
            }
            Message::Notification(b) => self.emit(Event::Notification(b)),
            Message::RoomIm(r) => self.emit(Event::Room(r)),
            Message::Rt(r) => self.emit(Event::Rt(r)),
            Message::Im(_)
            | Message::GroupIm(_)
            | Message::CustomerV2(_)
            | Message::System(_)
            | Message::GroupNotification(_) => self.on_stored(msg, flag, meta, now),
            other => self.emit(Event::Control { msg: other, flag }),
        }
        Ok(())
    }

    /// After all complete frames of one read: report an advanced sync key
    /// once, however many pushes in that read advanced it.
    pub(crate) fn end_of_read(&mut self) {
        if let Some(sync) = &self.shared.sync {
            let report = lock(sync).take_report();
            if let Some(k) = report {
                self.send_scalar(SYNC_KEY, k);
            }
        }
    }

    /// The last event.
    pub(crate) fn closed(self, reason: CloseReason) {
        self.emit(Event::Closed(reason));
    }

    fn on_auth_status(&mut self, status: i32, flag: u8, now: Instant) {
        let waiter = lock(&self.shared.pending).auth.take();
        let Some((version, tx)) = waiter else {
            self.emit(Event::Control {
                msg: Message::AuthStatus(status),
                flag,
            });
            return;
        };
        if status == 0 {
            // Version first: the SYNC below and every later frame use it.
            self.shared.version.store(version, Ordering::Release);
            self.shared.authenticated.store(true, Ordering::Release);
            if let Some(sync) = &self.shared.sync {
                let mut s = lock(sync);
                if let Some(key) = s.start(now) {
                    self.send_scalar(SYNC, key);
                }
            }
        }
        let _ = tx.send(status);
    }

    fn on_ack(&mut self, seq: i32, status: u8, flag: u8, meta: Option<Metadata>, now: Instant) {
        // The METADATA of our own message describes our personal queue,
        // unless it is a super group's ACK.
        if flag & SUPER_GROUP == 0
            && let Some(sync) = &self.shared.sync
        {
            lock(sync).on_own_ack(meta, now);
        }
        let ack = Ack {
            status,
            flag,
            metadata: meta,
        };
        let waiter = lock(&self.shared.pending).acks.remove(&seq);
        let unclaimed = match waiter {
            Some(tx) => tx.send(ack).err(),
            None => Some(ack),
        };
        if let Some(a) = unclaimed {
            self.emit(Event::Ack {
                seq,
                status: a.status,
                flag: a.flag,
                metadata: a.metadata,
            });
        }
    }

    fn on_pong(&mut self, flag: u8) {
        let mut p = lock(&self.shared.pending);
        while let Some(tx) = p.pongs.pop_front() {
            // Skip waiters that gave up (timed out).
            if tx.send(()).is_ok() {
                return;
            }
        }
        drop(p);
        self.emit(Event::Control {
            msg: Message::Pong,
            flag,
        });
    }

    /// IM, GROUP_IM, CUSTOMER_V2, SYSTEM, GROUP_NOTIFICATION: kinds that are
    /// stored in a queue and can therefore arrive by push and by sync.
    fn on_stored(&mut self, msg: Message, flag: u8, meta: Option<Metadata>, now: Instant) {
        let Some(sync) = &self.shared.sync else {
            self.emit(Event::Message {
                msg,
                flag,
                metadata: meta,
            });
            return;
        };
        let counters = &self.shared.counters;
        let mut s = lock(sync);
        if self.group_batch && !s.in_batch() {
            drop(s);
            counters.synced.fetch_add(1, Ordering::Relaxed);
            let msgid = meta.map(|m| m.sync_key);
            self.emit(Event::Synced { msgid, msg, flag });
            return;
        }
        if s.in_batch() {
            let msgid = meta.map(|m| m.sync_key);
            let deliver = s.on_batch_message(msgid);
            drop(s);
            if deliver {
                counters.synced.fetch_add(1, Ordering::Relaxed);
                self.emit(Event::Synced { msgid, msg, flag });
            }
            return;
        }
        // A super group's push is keyed by the group's queue, not ours.
        let super_group = matches!(msg, Message::GroupIm(_)) && flag & SUPER_GROUP != 0;
        let accept = super_group || s.on_push(meta, now);
        drop(s);
        if accept {
            counters.pushes_accepted.fetch_add(1, Ordering::Relaxed);
            self.emit(Event::Message {
                msg,
                flag,
                metadata: meta,
            });
        } else {
            counters.pushes_ignored.fetch_add(1, Ordering::Relaxed);
        }
    }
}
