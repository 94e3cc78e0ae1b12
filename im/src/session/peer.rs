//! IM (spec §3.5) and CUSTOMER_V2 (§3.9).

use super::encoder::Encoder;
use super::{Authed, Control, Session};
use crate::hooks::Kind;
use crate::messaging::PeerSend;
use crate::node::now_secs;
use crate::outbox::OutFrame;
use crate::store::{DedupKey, QueueId};
use ferry_common::protocol::ack::STATUS_INVALID_SENDER;
use ferry_common::protocol::command::{ACK, CUSTOMER_V2, IM};
use ferry_common::protocol::customer::CustomerV2;
use ferry_common::protocol::im::Im;
use ferry_common::protocol::metadata::Metadata;

impl Session {
    pub(super) async fn peer_im(
        &mut self,
        a: Authed,
        seq: i32,
        flag: u8,
        mut m: Im,
        w: &mut Encoder,
    ) -> Control {
        if m.sender != a.uid || m.receiver == 0 {
            return self.ack(seq, STATUS_INVALID_SENDER, 0, w);
        }
        if let Some(c) = self.relationship_refusal(a, m.receiver, seq, w).await {
            return c;
        }
        if let Err(status) = self
            .before_send(Kind::Im, a, m.receiver, None, &mut m.content)
            .await
        {
            return self.ack(seq, status, 0, w);
        }
        m.timestamp = now_secs();
        let receiver = QueueId {
            appid: a.appid,
            uid: m.receiver,
        };
        let key = DedupKey {
            appid: a.appid,
            sender: a.uid,
            device_id: a.device_id,
            client_msgid: m.msgid as i64,
            receiver: m.receiver,
        };
        let (dedup, ticket) = self.dedup(key, &m.content, receiver).unzip();
        let p = PeerSend {
            cmd: IM,
            flag,
            body: m.encode(2),
            sender: a.queue(),
            receiver,
            device_id: a.device_id,
            dedup,
            ticket,
        };
        self.store_and_ack(p, seq, w).await
    }

    pub(super) async fn customer(
        &mut self,
        a: Authed,
        seq: i32,
        flag: u8,
        mut m: CustomerV2,
        w: &mut Encoder,
    ) -> Control {
        let kefu = self.node.cfg.kefu_appid;
        let valid = m.sender_appid == a.appid
            && m.sender == a.uid
            && m.receiver != 0
            && kefu != 0
            && (m.sender_appid == kefu || m.receiver_appid == kefu);
        if !valid {
            return self.ack(seq, STATUS_INVALID_SENDER, 0, w);
        }
        if let Err(status) = self
            .before_send(
                Kind::Customer,
                a,
                m.receiver,
                Some(m.receiver_appid),
                &mut m.content,
            )
            .await
        {
            return self.ack(seq, status, 0, w);
        }
        m.timestamp = now_secs();
        let p = PeerSend {
            cmd: CUSTOMER_V2,
            flag,
            body: m.encode(),
            sender: a.queue(),
            receiver: QueueId {
                appid: m.receiver_appid,
                uid: m.receiver,
            },
            device_id: a.device_id,
            // CUSTOMER_V2 carries no client message id, so a resend cannot be
            // told from a second identical message: no dedup key.
            dedup: None,
            ticket: None,
        };
        self.store_and_ack(p, seq, w).await
    }

    /// Stores, then ACKs with the sender-queue METADATA in front. On a store
    /// error nothing is ACKed: the client resends, and the ledger (ACK never
    /// written) makes the resend find what was stored, if anything.
    async fn store_and_ack(&mut self, p: PeerSend, seq: i32, w: &mut Encoder) -> Control {
        let kind = if p.cmd == CUSTOMER_V2 {
            Kind::Customer
        } else {
            Kind::Im
        };
        let receiver = p.receiver;
        let ticket = p.ticket;
        match self.node.send_peer(p).await {
            Ok(out) => {
                if !out.duplicate {
                    self.after_send(
                        kind,
                        receiver.appid,
                        receiver.uid,
                        Some(receiver.into()),
                        Some(out.receiver.msgid),
                    );
                }
                let meta = Metadata {
                    sync_key: out.sender.msgid,
                    prev_sync_key: out.sender.prev,
                };
                let ack = ferry_common::protocol::ack::Ack { seq, status: 0 }.encode(2);
                w.push(&OutFrame::with_meta(ACK, 0, ack, meta));
                self.acked(ticket, None, w);
                Control::Continue
            }
            Err(e) => {
                tracing::warn!(peer = %self.peer, error = %e, "store failed; message not acknowledged");
                Control::Continue
            }
        }
    }
}
