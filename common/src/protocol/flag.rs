//! Header flag bits (spec §2.2).

pub const TEXT: u8 = 0x01;
pub const UNPERSISTENT: u8 = 0x02;
pub const GROUP: u8 = 0x04;
pub const SELF: u8 = 0x08;
pub const PUSH: u8 = 0x10;
pub const SUPER_GROUP: u8 = 0x20;
