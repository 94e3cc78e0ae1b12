//! The dirty-word filter applied to what a client sends (spec §3.13): IM,
//! GROUP_IM, CUSTOMER_V2 and ROOM_IM frames flagged TEXT, before anything
//! else looks at them, so the stored copy, the pushes and the sync all carry
//! the masked text.

use super::Session;
use crate::wordfilter::WordFilter;
use bytes::Bytes;
use ferry_common::protocol::Message;
use ferry_common::protocol::flag::TEXT;

impl Session {
    pub(super) fn filter_words(&self, msg: Message, flag: u8) -> Message {
        let Some(filter) = self.node.word_filter.as_deref() else {
            return msg;
        };
        if flag & TEXT == 0 {
            return msg;
        }
        let apply = |content: &mut Bytes| mask(filter, content);
        match msg {
            Message::Im(mut m) => {
                apply(&mut m.content);
                Message::Im(m)
            }
            Message::GroupIm(mut m) => {
                apply(&mut m.content);
                Message::GroupIm(m)
            }
            Message::CustomerV2(mut m) => {
                apply(&mut m.content);
                Message::CustomerV2(m)
            }
            Message::RoomIm(mut m) => {
                apply(&mut m.content);
                Message::RoomIm(m)
            }
            other => other,
        }
    }
}

fn mask(filter: &WordFilter, content: &mut Bytes) {
    if let Some(masked) = filter.filter_content(content) {
        *content = masked;
    }
}
