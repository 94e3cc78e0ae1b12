//! Starting and stopping the imr: bind both listeners, run the link accept
//! loop, the HTTP API and the push writer, and shut them down in order
//! (links and HTTP first, then a bounded final flush of the push buffer).

use crate::config::ImrConfig;
use crate::push::queue::{self, PushReceiver};
use crate::push::writer;
use crate::registry::Registry;
use crate::state::ImrState;
use crate::stats::Stats;
use crate::{http, link};
use ferry_common::redact_url;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long shutdown waits for link tasks and the HTTP server.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Why the imr could not start (or its HTTP server failed).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("redis: {0}")]
    Redis(String),
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
}

/// A bound, not yet serving imr. Binding first lets callers (tests, the
/// `ferry` binary) learn the real addresses when they asked for port 0.
pub struct Server {
    link: TcpListener,
    http: TcpListener,
    shared: Arc<ImrState>,
    writer: Option<(PushReceiver, redis::aio::ConnectionManager)>,
}

impl Server {
    /// Validates `cfg` and binds both listeners. Redis is not contacted yet
    /// (the imr starts and buffers pushes while Redis is down).
    pub async fn bind(cfg: ImrConfig) -> Result<Server, StartError> {
        cfg.validate()?;
        let link = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| StartError::Bind {
                what: "im links (--listen)",
                addr: cfg.listen,
                source,
            })?;
        let http = TcpListener::bind(cfg.http_listen)
            .await
            .map_err(|source| StartError::Bind {
                what: "HTTP (--http-listen)",
                addr: cfg.http_listen,
                source,
            })?;
        let stats = Arc::new(Stats::default());
        let (push, writer) = if cfg.push_disabled {
            (None, None)
        } else {
            let conn = writer::connect(&cfg.redis).map_err(|e| StartError::Redis(e.to_string()))?;
            let (q, rx) = queue::channel(cfg.push_buffer, stats.clone());
            (Some(q), Some((rx, conn)))
        };
        let link_addr = link.local_addr().unwrap_or(cfg.listen);
        let http_addr = http.local_addr().unwrap_or(cfg.http_listen);
        tracing::info!(
            link = %link_addr,
            http = %http_addr,
            redis = %redact_url(&cfg.redis),
            push = !cfg.push_disabled,
            push_buffer = cfg.push_buffer,
            link_queue = cfg.link_queue,
            secret = if cfg.link_secret.is_empty() { "none" } else { "set" },
            "imr started"
        );
        if cfg.link_secret.is_empty() && !link_addr.ip().is_loopback() {
            tracing::warn!(link = %link_addr, "link listener is not on loopback and no --link-secret is set: any host can join as an im");
        }
        if !http_addr.ip().is_loopback() {
            tracing::warn!(http = %http_addr, "HTTP API is not on loopback: /all_online lists every connected user");
        }
        Ok(Server {
            link,
            http,
            shared: Arc::new(ImrState {
                registry: Registry::new(),
                stats,
                push,
                secret: cfg.link_secret,
                link_queue: cfg.link_queue,
            }),
            writer,
        })
    }

    /// The address ims connect to.
    pub fn link_addr(&self) -> SocketAddr {
        self.link
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The HTTP API address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Live counters (stay valid while and after serving).
    pub fn stats(&self) -> Arc<Stats> {
        self.shared.stats.clone()
    }

    /// Serves until `shutdown` resolves, then stops in order.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
        let Server {
            link,
            http,
            shared,
            writer,
        } = self;
        let stop = CancellationToken::new();
        let push_stop = CancellationToken::new();

        let writer = writer.map(|(rx, conn)| {
            tokio::spawn(writer::run(
                rx,
                conn,
                shared.stats.clone(),
                push_stop.clone(),
            ))
        });
        let http_task = {
            let stop = stop.clone();
            let app = http::router(shared.clone());
            tokio::spawn(async move {
                axum::serve(http, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
            })
        };

        let mut links = JoinSet::new();
        let mut http_task = http_task;
        let mut http_result = None;
        tokio::pin!(shutdown);
        loop {
            while links.try_join_next().is_some() {}
            tokio::select! {
                _ = &mut shutdown => break,
                r = &mut http_task => {
                    // The HTTP server only returns on an error here.
                    http_result = Some(r);
                    break;
                }
                r = link.accept() => match r {
                    Ok((stream, addr)) => {
                        links.spawn(link::serve(stream, addr, shared.clone(), stop.child_token()));
                    }
                    Err(e) => {
                        // E.g. out of file descriptors: don't spin.
                        tracing::warn!(error = %e, "accepting an im link failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }

        tracing::info!("imr stopping");
        stop.cancel();
        drop(link);
        let _ = tokio::time::timeout(STOP_WAIT, async {
            while links.join_next().await.is_some() {}
        })
        .await;
        links.abort_all();
        let http_result = match http_result {
            Some(r) => r,
            None => match tokio::time::timeout(STOP_WAIT, &mut http_task).await {
                Ok(r) => r,
                Err(_) => {
                    http_task.abort();
                    Ok(Ok(()))
                }
            },
        };
        push_stop.cancel();
        if let Some(w) = writer {
            let _ = w.await;
        }
        tracing::info!("imr stopped");
        match http_result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StartError::Http(e)),
            Err(e) => Err(StartError::Http(std::io::Error::other(e))),
        }
    }
}

/// Binds and serves until `shutdown` resolves.
pub async fn run(cfg: ImrConfig, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    Server::bind(cfg).await?.serve(shutdown).await
}
