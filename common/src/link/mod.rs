//! im ↔ imr link protocol (spec §4.2), improved where §4.6/§10 show flaws:
//! route messages carry `prev_msgid` (exact METADATA across nodes), embedded
//! frames have u32 lengths (every valid client message crosses), receiver
//! lists have u32 counts, and a HELLO handshake checks the version when a link
//! opens. The gobelieve layouts stay available (`*_legacy`) for tests and tools.
//!
//! Link frames use the ordinary 12-byte header (version 0, flag 0) with a
//! larger body limit, [`MAX_LINK_BODY`].

mod group;
mod hello;
mod node_query;
mod presence;
mod push;
mod route;
mod subscribe;

pub use group::{GROUP_PUBLISH_OVERHEAD, GroupPublish};
pub use hello::{Hello, LINK_MAGIC, LINK_VERSION};
pub use node_query::{MAX_NODE_PAYLOAD, NodeAsk, NodeQuery, NodeReply};
pub use presence::{
    Device, DeviceOffline, DeviceOnline, MAX_PRESENCE_UIDS, NodeDevice, PresenceQuery,
    PresenceReply, UserPresence,
};
pub use push::BatchPush;
pub use route::RouteMessage;
pub use subscribe::{RoomSubscription, Subscribe, Unsubscribe};

/// Ferry addition: first frame on a link, both directions.
pub const HELLO: u8 = 128;
pub const SUBSCRIBE: u8 = 130;
pub const UNSUBSCRIBE: u8 = 131;
pub const PUBLISH: u8 = 132;
pub const PUSH: u8 = 134;
/// Body: a [`GroupPublish`] (Ferry: the route message plus the members
/// homed on the receiving imr; the imr forwards it only to links holding at
/// least one of them).
pub const PUBLISH_GROUP: u8 = 135;
pub const SUBSCRIBE_ROOM: u8 = 136;
pub const UNSUBSCRIBE_ROOM: u8 = 137;
pub const PUBLISH_ROOM: u8 = 138;
/// Ferry addition: broadcast to every connected user of an app. Body: a
/// RouteMessage whose `receiver` is ignored; the imr forwards it to every
/// other link with at least one user of `appid` subscribed.
pub const PUBLISH_APP: u8 = 139;
/// Ferry addition: a group's membership changed. Body: a RouteMessage with
/// `appid`, `receiver` = gid and an empty `msg`; the imr relays it to every
/// other link and each im drops its cached copy of the group.
pub const GROUP_CHANGED: u8 = 140;
/// Ferry addition: barrier, empty body. The im sends it right after its
/// resubscribe; the imr echoes it back once it has applied every frame the
/// im sent before it. Only then does the im tell its users to sync, so no
/// message can be relayed to a subscription the imr does not know yet.
pub const MARK: u8 = 141;
/// Ferry addition (link version 4): im → imr → every other im, "send me
/// your console figures". Body: [`NodeQuery`].
pub const NODE_QUERY: u8 = 146;
/// Ferry addition (link version 4): an im's answer to NODE_QUERY, or the
/// imr's count of ims it asked; the imr routes it to the asker only.
/// Body: [`NodeReply`].
pub const NODE_REPLY: u8 = 147;
/// Ferry addition (link version 4): a connection of a user logged in on the
/// sending im. Body: [`DeviceOnline`]; sent to the user's home imr only.
pub const DEVICE_ONLINE: u8 = 142;
/// Ferry addition (link version 4): that connection ended. Body: [`DeviceOffline`].
pub const DEVICE_OFFLINE: u8 = 143;
/// Ferry addition (link version 4): im → imr, which of these users have
/// devices on any im linked to this imr. Body: [`PresenceQuery`].
pub const PRESENCE_QUERY: u8 = 144;
/// Ferry addition (link version 4): imr → the asking im. Body: [`PresenceReply`].
pub const PRESENCE_REPLY: u8 = 145;

/// Largest link frame body: 16 MiB, far above any valid client message.
pub const MAX_LINK_BODY: usize = 16 * 1024 * 1024;
