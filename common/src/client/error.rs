//! Errors returned by the client API and the reason a connection ended.

use crate::protocol::{CodecError, ProtocolError};
use std::sync::Arc;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be established.
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// Socket error on an established connection.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent bytes that are not a valid frame.
    #[error("protocol: {0}")]
    Protocol(#[from] ProtocolError),
    /// AUTH_STATUS carried a non-zero status. The connection stays open, so
    /// `auth` may be retried (as gobelieve SDKs do).
    #[error("authentication failed (status {0})")]
    AuthFailed(i32),
    /// No reply (ACK, PONG, AUTH_STATUS, connect) within the configured time.
    #[error("timed out")]
    Timeout,
    /// The connection is gone (server closed it, socket error, or the client
    /// was closed). Every pending request fails with this.
    #[error("connection closed")]
    Closed,
    /// A typed send helper was called before a successful `auth`: the server
    /// silently ignores such frames, so waiting for an ACK would only time out.
    #[error("not authenticated")]
    NotAuthenticated,
    /// `auth` on a connection that is already authenticated: the server
    /// silently ignores a second AUTH_TOKEN, so the call could only time out.
    #[error("already authenticated")]
    AlreadyAuthenticated,
    /// The own uid/appid is unknown (token is not a JWT and `set_identity`
    /// was not called), so a message with a valid sender cannot be built.
    #[error("own uid unknown: use a JWT or call set_identity")]
    UnknownIdentity,
    /// AUTH_TOKEN has a one-byte length: a longer token or device id would
    /// be truncated by the encoder and then fail auth for no visible reason.
    #[error("token or device id of {0} bytes exceeds 255")]
    TokenTooLong(usize),
    /// The body would reach the server's 32 KiB limit; the server would close
    /// the connection instead of answering.
    #[error("body of {0} bytes is too large for the server (limit 32767)")]
    TooLarge(usize),
}

impl From<CodecError> for ClientError {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::Protocol(p) => ClientError::Protocol(p),
            CodecError::Io(io) => ClientError::Io(io),
        }
    }
}

/// Why the connection ended; carried by [`super::Event::Closed`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum CloseReason {
    /// The server closed the connection at a frame boundary.
    #[error("closed by server")]
    Eof,
    /// The server closed the connection in the middle of a frame.
    #[error("closed by server mid-frame")]
    TruncatedFrame,
    /// `close()` was called or every handle was dropped.
    #[error("closed locally")]
    Local,
    /// Socket error (shared so the event stays `Clone`).
    #[error("i/o: {0}")]
    Io(Arc<std::io::Error>),
    /// The server sent an undecodable frame; the client hung up.
    #[error("protocol: {0}")]
    Protocol(ProtocolError),
}

impl From<CodecError> for CloseReason {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::Protocol(p) => CloseReason::Protocol(p),
            CodecError::Io(io) => CloseReason::Io(Arc::new(io)),
        }
    }
}
