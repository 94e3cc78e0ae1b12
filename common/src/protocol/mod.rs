//! The gobelieve client wire protocol (spec §1–2): a 12-byte header and one
//! body layout per command, one file per body kind.

pub mod ack;
pub mod auth;
pub mod codec;
pub mod command;
pub mod customer;
mod error;
pub mod flag;
pub mod frame;
pub mod group_sync;
pub mod header;
pub mod im;
pub mod message;
pub mod metadata;
pub(crate) mod reader;
pub mod realtime;
pub mod scalar;

pub use codec::{CodecError, FrameCodec, split_frame};
pub use error::ProtocolError;
pub use frame::Frame;
pub use header::{DEFAULT_VERSION, HEADER_LEN, Header, MAX_CLIENT_BODY};
pub use message::Message;
