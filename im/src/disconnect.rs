//! Why a client connection ended: one value from the place that decides it
//! (a transport, the session, the outbox, a guard) to the three places that
//! report it — the `reason` label of `ferry_disconnects_total`, the debug log
//! line, and the WebSocket close frame. Being an enum, a reason cannot be
//! misspelt on one side, and every reason has a close code.

/// Why a connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// The client closed the connection.
    Eof,
    /// Reading from the socket failed.
    ReadError,
    /// Writing to the socket failed.
    WriteError,
    /// A malformed or forbidden frame.
    ProtocolError,
    /// A WebSocket text message (frames travel in binary messages only).
    TextMessage,
    /// The node is shutting down.
    Shutdown,
    /// Nothing arrived within `--idle-timeout`.
    IdleTimeout,
    /// The client did not read what was written to it within the write timeout.
    WriteTimeout,
    /// The client's outbox overflowed (see [`crate::outbox`]).
    SlowConsumer,
    /// A version-1 client sent something that was refused (it cannot read a
    /// refusal ACK).
    RefusedV1,
    /// No successful login within `--auth-timeout`.
    AuthTimeout,
    /// More than `--max-frames-per-sec`.
    FrameRateExceeded,
    /// AUTH_TOKEN was rejected.
    AuthFailed,
    /// `--max-connections-per-user` reached at login.
    TooManyUserConnections,
}

impl Disconnect {
    /// Every reason, in the order `/metrics` lists them.
    pub const ALL: [Disconnect; 14] = [
        Disconnect::Eof,
        Disconnect::ReadError,
        Disconnect::WriteError,
        Disconnect::ProtocolError,
        Disconnect::TextMessage,
        Disconnect::Shutdown,
        Disconnect::IdleTimeout,
        Disconnect::WriteTimeout,
        Disconnect::SlowConsumer,
        Disconnect::RefusedV1,
        Disconnect::AuthTimeout,
        Disconnect::FrameRateExceeded,
        Disconnect::AuthFailed,
        Disconnect::TooManyUserConnections,
    ];

    /// The `reason` label of `ferry_disconnects_total` and of log lines.
    pub fn label(self) -> &'static str {
        match self {
            Disconnect::Eof => "eof",
            Disconnect::ReadError => "read_error",
            Disconnect::WriteError => "write_error",
            Disconnect::ProtocolError => "protocol_error",
            Disconnect::TextMessage => "text_message",
            Disconnect::Shutdown => "shutdown",
            Disconnect::IdleTimeout => "idle_timeout",
            Disconnect::WriteTimeout => "write_timeout",
            Disconnect::SlowConsumer => "slow_consumer",
            Disconnect::RefusedV1 => "refused_v1",
            Disconnect::AuthTimeout => "auth_timeout",
            Disconnect::FrameRateExceeded => "frame_rate_exceeded",
            Disconnect::AuthFailed => "auth_failed",
            Disconnect::TooManyUserConnections => "too_many_user_connections",
        }
    }

    /// Whether the peer can still be told why: after an I/O error the socket
    /// is unusable, and after its EOF the client is the one closing.
    pub fn tells_peer(self) -> bool {
        !matches!(
            self,
            Disconnect::Eof | Disconnect::ReadError | Disconnect::WriteError
        )
    }

    /// WebSocket close code and reason text (RFC 6455 §7.4.1).
    pub fn close_frame(self) -> (u16, &'static str) {
        match self {
            Disconnect::TextMessage => (
                1003,
                "text messages are not supported: send each protocol frame as one binary message",
            ),
            Disconnect::ProtocolError => (1002, "protocol error: malformed or forbidden frame"),
            Disconnect::Shutdown => (1001, "server shutting down"),
            Disconnect::IdleTimeout => (1000, "idle timeout"),
            Disconnect::WriteTimeout => (1008, "client too slow to read"),
            Disconnect::SlowConsumer => (1008, "client too slow to read: outbox overflow"),
            Disconnect::RefusedV1 => (1008, "message refused"),
            Disconnect::Eof
            | Disconnect::ReadError
            | Disconnect::WriteError
            | Disconnect::AuthTimeout
            | Disconnect::FrameRateExceeded
            | Disconnect::AuthFailed
            | Disconnect::TooManyUserConnections => (1000, "closing"),
        }
    }
}

impl std::fmt::Display for Disconnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_once_with_distinct_labels() {
        let mut labels: Vec<_> = Disconnect::ALL.iter().map(|d| d.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Disconnect::ALL.len());
        for (i, d) in Disconnect::ALL.iter().enumerate() {
            assert_eq!(*d as usize, i, "{d} is out of place in ALL");
        }
    }

    #[test]
    fn close_codes_match_what_clients_were_sent_before() {
        assert_eq!(Disconnect::TextMessage.close_frame().0, 1003);
        assert_eq!(Disconnect::ProtocolError.close_frame().0, 1002);
        assert_eq!(Disconnect::Shutdown.close_frame().0, 1001);
        assert_eq!(Disconnect::SlowConsumer.close_frame().0, 1008);
        assert_eq!(Disconnect::AuthFailed.close_frame(), (1000, "closing"));
        assert!(!Disconnect::Eof.tells_peer());
        assert!(Disconnect::AuthTimeout.tells_peer());
    }
}
