//! Decoding errors. Every malformed input maps to one of these; nothing in the
//! protocol module panics on bytes from the network.

/// Why a frame or body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("body length {len} out of range (max {max})")]
    BadLength { len: i64, max: usize },
    #[error("command {0} is not accepted from clients")]
    NotAllowed(u8),
    #[error("unknown command {0}")]
    UnknownCommand(u8),
    #[error("body of command {cmd} too short: {got} bytes, need {need}")]
    Truncated { cmd: u8, need: usize, got: usize },
    #[error("command {0} must have an empty body")]
    NonEmptyBody(u8),
    #[error("inner length field of command {0} exceeds the body")]
    BadInnerLength(u8),
    #[error("link protocol: {0}")]
    Link(&'static str),
}
