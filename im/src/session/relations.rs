//! Friendship and blacklist checks before a peer message is stored (spec
//! §3.11): gobelieve's MySQL tables ([`crate::relations`]) with `--mysql`,
//! else Ferry's own lists ([`crate::own_relations`]).

use super::encoder::Encoder;
use super::{Authed, Control, Session};
use crate::own_relations::OwnRelations;

impl Session {
    /// `Some` when the message must not be stored: a refusal ACK (1, 2 or 3;
    /// a version-1 client cannot read it and gets its connection closed,
    /// like every refusal), or nothing at all when the lists could not be
    /// read (the client resends, as after a store failure).
    pub(super) async fn relationship_refusal(
        &self,
        a: Authed,
        receiver: i64,
        seq: i32,
        w: &mut Encoder,
    ) -> Option<Control> {
        let cfg = &self.node.cfg;
        if !cfg.enable_friendship && !cfg.enable_blacklist {
            return None;
        }
        let status = match &self.node.relations {
            Some(mysql) => mysql.status(a.appid, a.uid, receiver).await,
            None => {
                let own = OwnRelations {
                    store: self.node.groups.store.clone(),
                };
                own.status(
                    a.appid,
                    a.uid,
                    receiver,
                    cfg.enable_friendship,
                    cfg.enable_blacklist,
                )
                .await
            }
        };
        match status {
            Ok(0) => None,
            Ok(status) => {
                tracing::debug!(
                    appid = a.appid,
                    sender = a.uid,
                    receiver,
                    status,
                    "peer message refused by relationship"
                );
                Some(self.ack(seq, status, 0, w))
            }
            Err(e) => {
                tracing::warn!(error = %e, "relationship check failed; message not acknowledged");
                Some(Control::Continue)
            }
        }
    }
}
