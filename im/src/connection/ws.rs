//! WebSocket (`--ws-listen`) and secure WebSocket (`--wss-listen`), path
//! `/ws`, any Origin (spec §1.3). Each binary message carries exactly one
//! frame in each direction; only the first frame of a client message counts.
//! A text message closes the connection with close code 1003 and a reason.
//!
//! Memory: tungstenite's read buffer is cut from 128 KiB to
//! [`READ_BUFFER`], and the write buffer to 0 (every message goes straight
//! to the socket), so an idle WebSocket costs about what a TCP one does.

use super::drive::{Io, Transport};
use super::read::parse_message;
use crate::disconnect::Disconnect;
use crate::metrics::Transport as Kind;
use crate::node::Node;
use crate::session::encoder::Encoder;
use axum::Router;
use axum::extract::State;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::serve::IncomingStream;
use ferry_common::protocol::{Frame, HEADER_LEN, MAX_CLIENT_BODY};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;

/// tungstenite's read buffer per connection (its default is 128 KiB).
pub const READ_BUFFER: usize = 4096;
/// Largest WebSocket message accepted: one maximal client frame.
const MAX_MESSAGE: usize = HEADER_LEN + MAX_CLIENT_BODY;

/// The client's address, for both plain and TLS listeners.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(s: IncomingStream<'_, TcpListener>) -> Peer {
        Peer(*s.remote_addr())
    }
}

impl Connected<IncomingStream<'_, super::tls::Listener>> for Peer {
    fn connect_info(s: IncomingStream<'_, super::tls::Listener>) -> Peer {
        Peer(*s.remote_addr())
    }
}

#[derive(Clone)]
struct WsState {
    node: Arc<Node>,
    kind: Kind,
}

/// The router of a WebSocket listener: `/ws`, and the browser pages
/// (`/demo`, `/admin`), which browsers cannot load from the HTTP port.
pub fn router(node: Arc<Node>, kind: Kind) -> Router {
    Router::new()
        .route("/ws", any(upgrade))
        .with_state(WsState {
            node: node.clone(),
            kind,
        })
        .merge(crate::http::pages(node))
}

/// Serves WebSocket clients on `listener` until `stop` resolves.
pub async fn serve_plain(node: Arc<Node>, listener: TcpListener) {
    let stop = node.shutdown.clone().cancelled_owned();
    let app = router(node, Kind::Ws).into_make_service_with_connect_info::<Peer>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "ws listener stopped");
    }
}

/// Serves secure WebSocket clients until the node shuts down.
pub async fn serve_tls(node: Arc<Node>, listener: super::tls::Listener) {
    let stop = node.shutdown.clone().cancelled_owned();
    let app = router(node, Kind::Wss).into_make_service_with_connect_info::<Peer>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "wss listener stopped");
    }
}

async fn upgrade(
    State(s): State<WsState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    ws: WebSocketUpgrade,
) -> Response {
    if s.node.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    // Refusals are counted and logged by `limits`.
    let Ok(permit) = s.node.limits.admit(s.kind) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "connection limit reached").into_response();
    };
    let node = s.node.clone();
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| {
            let tracker = node.conns.clone();
            tracker.track_future(super::serve(node, Ws::new(socket), peer, s.kind, permit))
        })
}

pub struct Ws {
    ws: WebSocket,
    unflushed: bool,
}

impl Ws {
    pub fn new(ws: WebSocket) -> Ws {
        Ws {
            ws,
            unflushed: false,
        }
    }
}

impl Transport for Ws {
    fn poll_io(
        &mut self,
        cx: &mut Context<'_>,
        w: &mut Encoder,
        read: bool,
        out: &mut Vec<Frame>,
    ) -> Poll<Io> {
        let mut progress = false;
        while w.pending() > 0 {
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(Io::Failed(Disconnect::WriteError)),
                Poll::Pending => break,
            }
            // Every server frame is its own binary message (the JS SDK
            // decodes one frame per message).
            let Some(frame) = w.take_frame() else { break };
            if Pin::new(&mut self.ws)
                .start_send(Message::Binary(frame))
                .is_err()
            {
                return Poll::Ready(Io::Failed(Disconnect::WriteError));
            }
            self.unflushed = true;
            progress = true;
        }
        if self.unflushed {
            match Pin::new(&mut self.ws).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(_)) => return Poll::Ready(Io::Failed(Disconnect::WriteError)),
                Poll::Pending => {}
            }
        }
        if read {
            loop {
                match Pin::new(&mut self.ws).poll_next(cx) {
                    Poll::Pending => break,
                    Poll::Ready(None) | Poll::Ready(Some(Ok(Message::Close(_)))) => {
                        return Poll::Ready(Io::Eof);
                    }
                    Poll::Ready(Some(Err(_))) => {
                        return Poll::Ready(Io::Failed(Disconnect::ReadError));
                    }
                    Poll::Ready(Some(Ok(Message::Binary(b)))) => match parse_message(b) {
                        Ok(f) => {
                            out.push(f);
                            return Poll::Ready(Io::Progress);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "protocol error");
                            return Poll::Ready(Io::Closing(Disconnect::ProtocolError));
                        }
                    },
                    Poll::Ready(Some(Ok(Message::Text(_)))) => {
                        return Poll::Ready(Io::Closing(Disconnect::TextMessage));
                    }
                    // tungstenite answers pings itself; pongs are ignored.
                    Poll::Ready(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                }
            }
        }
        if progress {
            Poll::Ready(Io::Progress)
        } else {
            Poll::Pending
        }
    }

    async fn close(mut self, reason: Disconnect) {
        let bounded = Duration::from_secs(2);
        if matches!(reason, Disconnect::ReadError | Disconnect::WriteError) {
            return;
        }
        if reason.tells_peer() {
            let (code, text) = reason.close_frame();
            let frame = CloseFrame {
                code,
                reason: text.into(),
            };
            let _ = tokio::time::timeout(bounded, self.ws.send(Message::Close(Some(frame)))).await;
        }
        // Flush our close (or the automatic reply to the client's) and let
        // the client finish the closing handshake.
        let _ = tokio::time::timeout(bounded, async {
            let _ = self.ws.flush().await;
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}
