//! TLS (rustls): the raw protocol over TLS on `--tls-listen`, and the TLS
//! layer under secure WebSocket on `--wss-listen`.
//!
//! There is no readiness API on a TLS stream, so reads go through
//! `poll_read` into the same per-thread scratch buffer the TCP transport
//! uses; rustls itself keeps its small at-rest buffers.
//!
//! Every frame gets its own TLS record (one `poll_write` per frame; rustls
//! seals each write separately; several records may still leave in one
//! socket write). A client that waits for its socket to turn readable
//! before reading each frame (gobelieve's Python client, OpenSSL without
//! read-ahead) would otherwise find the frames after the first already
//! decrypted in its TLS layer and wait for the next packet. The raw TLS
//! transport also counts the ciphertext bytes written to the TCP socket
//! ([`Counted`]) for the ACK ledger.

use super::drive::{Io, Transport};
use super::read::{absorb, with_scratch};
use crate::disconnect::Disconnect;
use crate::limits::ConnPermit;
use crate::metrics::Transport as Kind;
use crate::node::Node;
use crate::session::encoder::{Encoder, Wire};
use bytes::BytesMut;
use ferry_common::protocol::Frame;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;

/// A client that has not finished its TLS handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the TLS material could not be loaded; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS certificate file {path}: {message}")]
    Cert { path: PathBuf, message: String },
    #[error("TLS certificate file {path} contains no PEM CERTIFICATE block")]
    NoCert { path: PathBuf },
    #[error("cannot read TLS private key file {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("TLS key {key} does not fit certificate {cert}: {message}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

/// Loads a PEM certificate chain and private key into a server config.
pub fn load(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let cert_err = |e: &dyn std::fmt::Display| TlsError::Cert {
        path: cert.to_path_buf(),
        message: e.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(&e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCert {
            path: cert.to_path_buf(),
        });
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        message: e.to_string(),
    })?;
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| TlsError::Mismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            message: e.to_string(),
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A TCP stream that counts the bytes written to it.
pub struct Counted {
    inner: TcpStream,
    written: u64,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.written += n as u64;
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.written += n as u64;
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Handshakes with a timeout; failures are the client's problem, logged at debug.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    let _ = stream.set_nodelay(true);
    accept(acceptor, stream, peer).await
}

async fn accept<IO: AsyncRead + AsyncWrite + Unpin>(
    acceptor: &TlsAcceptor,
    stream: IO,
    peer: SocketAddr,
) -> Option<TlsStream<IO>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "tls handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "tls handshake timed out");
            None
        }
    }
}

/// The raw protocol over TLS.
pub struct Stream {
    io: TlsStream<Counted>,
    partial: Option<BytesMut>,
    /// Bytes handed to the stream that may still sit in its buffer.
    unflushed: bool,
    /// Bytes of the frame being written that rustls has not taken yet (0 at
    /// a frame boundary).
    frame_left: usize,
}

impl Stream {
    pub fn new(io: TlsStream<Counted>) -> Stream {
        Stream {
            io,
            partial: None,
            unflushed: false,
            frame_left: 0,
        }
    }
}

/// Serves one raw-TLS client: handshake, then the shared connection loop.
pub async fn serve(
    node: Arc<Node>,
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    permit: ConnPermit,
) {
    let _ = stream.set_nodelay(true);
    let counted = Counted {
        inner: stream,
        written: 0,
    };
    if let Some(s) = accept(&acceptor, counted, peer).await {
        super::serve(node, Stream::new(s), peer, Kind::Tls, permit).await;
    }
}

impl Transport for Stream {
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        Some(self.io.get_ref().0.inner.as_raw_fd())
    }

    fn wire(&self, _w: &Encoder) -> Wire {
        if self.unflushed {
            Wire::Unflushed
        } else {
            Wire::At(self.io.get_ref().0.written)
        }
    }

    fn poll_io(
        &mut self,
        cx: &mut Context<'_>,
        w: &mut Encoder,
        read: bool,
        out: &mut Vec<Frame>,
    ) -> Poll<Io> {
        let mut progress = false;
        while w.pending() > 0 {
            if self.frame_left == 0 {
                self.frame_left = w.front_frame_len().unwrap_or(w.pending());
            }
            let chunk = &w.bytes()[..self.frame_left.min(w.pending())];
            match Pin::new(&mut self.io).poll_write(cx, chunk) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    return Poll::Ready(Io::Failed(Disconnect::WriteError));
                }
                Poll::Ready(Ok(n)) => {
                    w.advance(n);
                    self.frame_left = self.frame_left.saturating_sub(n);
                    self.unflushed = true;
                    progress = true;
                }
                Poll::Pending => break,
            }
        }
        if self.unflushed {
            match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(_)) => return Poll::Ready(Io::Failed(Disconnect::WriteError)),
                Poll::Pending => {}
            }
        }
        if read {
            let io = &mut self.io;
            let partial = &mut self.partial;
            let r = with_scratch(|scratch| {
                let mut buf = ReadBuf::new(scratch);
                match Pin::new(io).poll_read(cx, &mut buf) {
                    Poll::Pending => None,
                    Poll::Ready(Err(_)) => Some(Io::Failed(Disconnect::ReadError)),
                    Poll::Ready(Ok(())) if buf.filled().is_empty() => Some(Io::Eof),
                    Poll::Ready(Ok(())) => match absorb(buf.filled(), partial, out) {
                        Ok(()) => Some(Io::Progress),
                        Err(e) => {
                            tracing::debug!(error = %e, "protocol error");
                            Some(Io::Closing(Disconnect::ProtocolError))
                        }
                    },
                }
            });
            if let Some(io) = r {
                return Poll::Ready(io);
            }
        }
        if progress {
            Poll::Ready(Io::Progress)
        } else {
            Poll::Pending
        }
    }

    async fn close(mut self, _reason: Disconnect) {
        // Sends close_notify and flushes; bounded so a stuck peer can't hold us.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.io.shutdown()).await;
        super::read::linger(&mut self.io).await;
    }
}

/// Accepts TCP connections and hands out completed TLS streams, so the
/// HTTP/WebSocket server on top sees only finished handshakes and one slow
/// handshake never blocks the others.
pub struct Listener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl Listener {
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Listener> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let accept_task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Some(s) = handshake(&acceptor, stream, peer).await {
                        let _ = tx.send((s, peer)).await;
                    }
                });
            }
        });
        Ok(Listener {
            rx,
            local,
            accept_task,
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for Listener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            // The accept task only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::time::Instant;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_rustls::rustls::{
        ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection,
    };

    fn pair() -> (ServerConnection, ClientConnection) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
        let der: CertificateDer<'static> = ck.cert.der().clone();
        let key = PrivateKeyDer::try_from(ck.signing_key.serialize_der()).expect("key");
        let scfg = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .expect("server config");
        let mut roots = RootCertStore::empty();
        roots.add(der).expect("root");
        let ccfg = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut s = ServerConnection::new(Arc::new(scfg)).expect("server");
        let name = ServerName::try_from("localhost").expect("name");
        let mut c = ClientConnection::new(Arc::new(ccfg), name).expect("client");
        while c.is_handshaking() || s.is_handshaking() {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).expect("client out");
            }
            s.read_tls(&mut &buf[..]).expect("server in");
            s.process_new_packets().expect("server");
            buf.clear();
            while s.wants_write() {
                s.write_tls(&mut buf).expect("server out");
            }
            c.read_tls(&mut &buf[..]).expect("client in");
            c.process_new_packets().expect("client");
        }
        (s, c)
    }

    /// Cost of one TLS record per frame against one record per batch, in
    /// the same run: a push (METADATA 44 + IM 80 + SYNC_NOTIFY 20 bytes)
    /// sealed by the server and opened by the client.
    /// `cargo test -p ferry-im --release --lib record_per_frame_cost -- --ignored --nocapture`
    #[test]
    #[ignore = "measurement"]
    fn record_per_frame_cost() {
        const PUSHES: usize = 100_000;
        let frames = [vec![1u8; 44], vec![2u8; 80], vec![3u8; 20]];
        for per_frame in [false, true, false, true] {
            let (mut s, mut c) = pair();
            let mut wire = Vec::with_capacity(1 << 20);
            let mut plain = vec![0u8; 1 << 16];
            let mut bytes = 0;
            let t = Instant::now();
            for _ in 0..PUSHES {
                if per_frame {
                    for f in &frames {
                        s.writer().write_all(f).expect("seal");
                    }
                } else {
                    let batch: Vec<u8> = frames.concat();
                    s.writer().write_all(&batch).expect("seal");
                }
                wire.clear();
                while s.wants_write() {
                    s.write_tls(&mut wire).expect("out");
                }
                bytes += wire.len();
                c.read_tls(&mut &wire[..]).expect("in");
                c.process_new_packets().expect("open");
                while let Ok(n) = c.reader().read(&mut plain) {
                    if n == 0 {
                        break;
                    }
                }
            }
            let ns = t.elapsed().as_nanos() as f64 / PUSHES as f64;
            eprintln!(
                "{}: {ns:.0} ns and {:.1} wire bytes per push (144 bytes of frames)",
                if per_frame {
                    "record per frame"
                } else {
                    "record per batch"
                },
                bytes as f64 / PUSHES as f64
            );
        }
    }
}
