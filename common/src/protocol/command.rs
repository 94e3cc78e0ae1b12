//! Command numbers (spec §2.1) and which of them a client may send (§1.6).

pub const AUTH_STATUS: u8 = 3;
pub const IM: u8 = 4;
pub const ACK: u8 = 5;
pub const GROUP_NOTIFICATION: u8 = 7;
pub const GROUP_IM: u8 = 8;
pub const PING: u8 = 13;
pub const PONG: u8 = 14;
pub const AUTH_TOKEN: u8 = 15;
pub const RT: u8 = 17;
pub const ENTER_ROOM: u8 = 18;
pub const LEAVE_ROOM: u8 = 19;
pub const ROOM_IM: u8 = 20;
pub const SYSTEM: u8 = 21;
pub const UNREAD_COUNT: u8 = 22;
pub const CUSTOMER: u8 = 24;
pub const CUSTOMER_SUPPORT: u8 = 25;
pub const SYNC: u8 = 26;
pub const SYNC_BEGIN: u8 = 27;
pub const SYNC_END: u8 = 28;
pub const SYNC_NOTIFY: u8 = 29;
pub const SYNC_GROUP: u8 = 30;
pub const SYNC_GROUP_BEGIN: u8 = 31;
pub const SYNC_GROUP_END: u8 = 32;
pub const SYNC_GROUP_NOTIFY: u8 = 33;
pub const SYNC_KEY: u8 = 34;
pub const GROUP_SYNC_KEY: u8 = 35;
pub const NOTIFICATION: u8 = 36;
pub const METADATA: u8 = 37;
pub const CUSTOMER_V2: u8 = 64;

/// True for the commands a client may send (spec §1.6). Anything else closes
/// the connection as soon as the header has been read.
pub fn client_may_send(cmd: u8) -> bool {
    matches!(
        cmd,
        IM | ACK
            | GROUP_IM
            | PING
            | PONG
            | AUTH_TOKEN
            | RT
            | ENTER_ROOM
            | LEAVE_ROOM
            | ROOM_IM
            | UNREAD_COUNT
            | CUSTOMER
            | CUSTOMER_SUPPORT
            | SYNC
            | SYNC_GROUP
            | SYNC_KEY
            | GROUP_SYNC_KEY
            | METADATA
            | CUSTOMER_V2
    )
}

/// Human-readable name, for logs and metrics labels.
pub fn name(cmd: u8) -> &'static str {
    match cmd {
        AUTH_STATUS => "auth_status",
        IM => "im",
        ACK => "ack",
        GROUP_NOTIFICATION => "group_notification",
        GROUP_IM => "group_im",
        PING => "ping",
        PONG => "pong",
        AUTH_TOKEN => "auth_token",
        RT => "rt",
        ENTER_ROOM => "enter_room",
        LEAVE_ROOM => "leave_room",
        ROOM_IM => "room_im",
        SYSTEM => "system",
        UNREAD_COUNT => "unread_count",
        CUSTOMER => "customer",
        CUSTOMER_SUPPORT => "customer_support",
        SYNC => "sync",
        SYNC_BEGIN => "sync_begin",
        SYNC_END => "sync_end",
        SYNC_NOTIFY => "sync_notify",
        SYNC_GROUP => "sync_group",
        SYNC_GROUP_BEGIN => "sync_group_begin",
        SYNC_GROUP_END => "sync_group_end",
        SYNC_GROUP_NOTIFY => "sync_group_notify",
        SYNC_KEY => "sync_key",
        GROUP_SYNC_KEY => "group_sync_key",
        NOTIFICATION => "notification",
        METADATA => "metadata",
        CUSTOMER_V2 => "customer_v2",
        _ => "unknown",
    }
}
