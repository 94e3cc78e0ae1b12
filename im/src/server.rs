//! Starting and stopping one im node: store, auth, listeners (TCP, WebSocket,
//! and, with a certificate, TLS and secure WebSocket), graceful shutdown.

use crate::auth::{Authenticator, JwtAuth, RedisAuth, load_or_create_secret};
use crate::cluster::{Cluster, NodeInbound};
use crate::config::{AuthMethod, ImConfig, StoreSpec, redact_url};
use crate::connection;
use crate::http;
use crate::metrics::Transport as Kind;
use crate::node::Node;
use crate::store::group::GroupStore;
use crate::store::{
    FjallGroupStore, FjallOptions, FjallStore, RedisGroupStore, RedisStore, RedisStoreOptions,
    Store,
};
use bytes::Bytes;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpSocket};

/// Startup failures, each naming what could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the {what} store in {dir}: {message}")]
    Store {
        what: &'static str,
        dir: String,
        message: String,
    },
    #[error("cannot open the Redis store at {url}: {message}")]
    SharedStore { url: String, message: String },
    #[error("cannot load the JWT secret from {dir}: {source}")]
    Secret { dir: String, source: std::io::Error },
    #[error("cannot use the MySQL group source {url}: {message}")]
    Mysql { url: String, message: String },
    #[error("cannot record this node's start in the store: {0}")]
    Announce(String),
    #[error("cannot connect to Redis for token auth: {0}")]
    Redis(String),
    #[error(transparent)]
    Tls(#[from] connection::tls::TlsError),
    #[error(transparent)]
    WordFile(#[from] crate::wordfilter::WordFileError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Compiles `--word-file`, if given (a bad file stops the start).
fn load_word_filter(
    cfg: &ImConfig,
) -> Result<Option<Arc<crate::wordfilter::WordFilter>>, StartError> {
    let Some(path) = &cfg.word_file else {
        return Ok(None);
    };
    let started = std::time::Instant::now();
    let filter = crate::wordfilter::WordFilter::load(path)?;
    tracing::info!(
        file = %path.display(),
        words = filter.len(),
        ms = started.elapsed().as_millis() as u64,
        "dirty-word filter loaded"
    );
    Ok(Some(Arc::new(filter)))
}

/// Binds with a deep accept backlog so connection storms don't hit SYN retries.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    let err = |source| StartError::Bind { addr, source };
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(err)?;
    sock.set_reuseaddr(true).map_err(err)?;
    sock.bind(addr).map_err(err)?;
    sock.listen(4096).map_err(err)
}

/// Runs the node until `shutdown` resolves, then stops accepting and flushes
/// the store.
pub async fn run(cfg: ImConfig, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let dir = cfg.data_dir.display().to_string();
    let store = open_store(&cfg).await?;
    let mysql = match &cfg.mysql {
        Some(url) => Some(Arc::new(
            crate::store::mysql_groups::MysqlGroupStore::connect(url)
                .await
                .map_err(|e| StartError::Mysql {
                    url: redact_url(url),
                    message: e.to_string(),
                })?,
        )),
        None => None,
    };
    let groups: Arc<dyn GroupStore> = match &mysql {
        Some(m) => m.clone(),
        None => open_group_store(&cfg).await?,
    };
    let auth = match cfg.auth {
        AuthMethod::Jwt => {
            let key = load_or_create_secret(cfg.jwt_secret.as_deref(), &cfg.data_dir).map_err(
                |source| StartError::Secret {
                    dir: dir.clone(),
                    source,
                },
            )?;
            Authenticator::Jwt(JwtAuth::new(key))
        }
        AuthMethod::Redis => Authenticator::Redis(
            RedisAuth::connect(&cfg.redis)
                .await
                .map_err(|e| StartError::Redis(e.to_string()))?,
        ),
    };
    // TLS material is checked before anything listens, so a bad file is a
    // startup error naming it.
    let tls = match &cfg.tls {
        Some(f) => Some(connection::tls::load(&f.cert, &f.key)?),
        None => None,
    };
    let tcp = bind(cfg.listen)?;
    let ws = bind(cfg.ws_listen)?;
    let tls_listeners = match &tls {
        Some(acceptor) => {
            let raw = bind(cfg.tls_listen)?;
            let wss = bind(cfg.wss_listen)?;
            let wss = connection::tls::Listener::new(wss, acceptor.clone()).map_err(|source| {
                StartError::Bind {
                    addr: cfg.wss_listen,
                    source,
                }
            })?;
            Some((acceptor.clone(), raw, wss))
        }
        None => None,
    };
    let http_listener = bind(cfg.http_listen)?;
    let cluster = (!cfg.imr.is_empty()).then(|| {
        Cluster::new(
            &cfg.imr,
            Bytes::from(cfg.link_secret.clone().unwrap_or_default()),
            Bytes::from(cfg.node_name.clone()),
            cfg.link_buffer,
        )
    });
    let word_filter = load_word_filter(&cfg)?;
    let relations = match &cfg.mysql {
        Some(url) if cfg.enable_friendship || cfg.enable_blacklist => Some(Arc::new(
            crate::relations::Relations::connect(url, cfg.enable_friendship, cfg.enable_blacklist)
                .await
                .map_err(|e| StartError::Mysql {
                    url: redact_url(url),
                    message: e.to_string(),
                })?,
        )),
        _ => None,
    };
    let mut node = Node::new(cfg, store.clone(), groups, auth, cluster);
    node.word_filter = word_filter;
    node.relations = relations.clone();
    let node = Arc::new(node);
    // Before any client: dedup records of this incarnation must be judged
    // against a recorded state (see `resend`).
    crate::resend::announce(store.clone(), node.incarnation)
        .await
        .map_err(|e| StartError::Announce(e.to_string()))?;
    let links = match &node.delivery.cluster {
        Some(c) => c.start(Arc::new(NodeInbound(Arc::downgrade(&node)))),
        None => Vec::new(),
    };
    tracing::info!(
        data_dir = %dir,
        store = %crate::config::redacted_store(&node.cfg.store),
        auth = ?node.cfg.auth,
        "ferry im started; {}",
        listening(&node.cfg, tls_listeners.is_some())
    );
    // Connection timeouts, and appends a crashed node left half-written
    // (shared stores); both end with the runtime.
    let timers = node.clone();
    tokio::spawn(async move { timers.wake_list.run_timers().await });
    tokio::spawn(crate::console::sample_history(node.clone()));
    tokio::spawn(recover_interrupted(store.clone()));
    // Hook events outlive the connections' shutdown flush: stopped last.
    let hook_stop = tokio_util::sync::CancellationToken::new();
    let hook_worker = node.hooks.as_ref().and_then(|h| h.start(hook_stop.clone()));
    tokio::spawn(crate::hooks::presence::run_timer(node.clone()));
    if let Some(m) = mysql {
        let sink = crate::groups::feed::GroupSink {
            node: Arc::downgrade(&node),
            store: m,
        };
        tokio::spawn(crate::feed::follow(
            node.shutdown.clone(),
            node.cfg.redis.clone(),
            crate::groups::feed::FEED,
            Arc::new(sink),
        ));
    }
    if let Some(r) = relations {
        tokio::spawn(crate::feed::follow(
            node.shutdown.clone(),
            node.cfg.redis.clone(),
            crate::relations::FEED,
            Arc::new(crate::relations::RelationSink(r)),
        ));
    }
    if node.cfg.follow_mutes {
        let weak = Arc::downgrade(&node);
        tokio::spawn(crate::forbidden::follow(
            node.shutdown.clone(),
            node.cfg.redis.clone(),
            move |appid, uid, flag| {
                let Some(node) = weak.upgrade() else {
                    return false;
                };
                let here = node.delivery.registry.count(appid, uid) > 0;
                node.forbidden.apply(appid, uid, flag, here);
                true
            },
        ));
    }
    let mut accepts = vec![tokio::spawn(accept_loop(node.clone(), tcp, None))];
    let mut servers = vec![tokio::spawn(connection::ws::serve_plain(node.clone(), ws))];
    if let Some((acceptor, raw, wss)) = tls_listeners {
        accepts.push(tokio::spawn(accept_loop(node.clone(), raw, Some(acceptor))));
        servers.push(tokio::spawn(connection::ws::serve_tls(node.clone(), wss)));
    }
    servers.push(tokio::spawn(http::serve(node.clone(), http_listener)));
    shutdown.await;
    let clean = stop(&node, accepts, servers, links).await;
    hook_stop.cancel();
    if let Some(w) = hook_worker {
        let _ = w.await;
    }
    if clean {
        // Every connection ended and wrote its "ACK unconfirmed" marks:
        // records of this incarnation without a mark had their ACK delivered.
        if let Err(e) = store.set_node_state(node.incarnation, true).await {
            tracing::warn!(error = %e, "recording the clean stop failed; resends will be judged as after a crash");
        }
    }
    if let Err(e) = store.close().await {
        tracing::warn!(error = %e, "closing the store failed");
    }
    tracing::info!("stopped");
    Ok(())
}

/// What the node listens on, for the one startup line an operator reads:
/// each listener, and the address a browser opens for the pages (the
/// WebSocket listener; browsers refuse the HTTP port 6666).
fn listening(cfg: &ImConfig, tls: bool) -> String {
    let browser = |a: SocketAddr| match a.ip() {
        ip if ip.is_unspecified() => SocketAddr::new([127, 0, 0, 1].into(), a.port()),
        _ => a,
    };
    let mut s = format!(
        "listening on: clients tcp {}, websocket ws://{}/ws",
        cfg.listen, cfg.ws_listen
    );
    if tls {
        s += &format!(", tls {}, wss://{}/ws", cfg.tls_listen, cfg.wss_listen);
    }
    s += &format!(
        "; http api {}; browser pages http://{}/demo and /admin",
        cfg.http_listen,
        browser(cfg.ws_listen)
    );
    s
}

/// Graceful stop: no new connections; every connection finishes the frame
/// it is handling (store writes included), flushes its replies and queued
/// pushes and closes; in-flight HTTP requests complete; unsubscribes reach
/// the imrs. Each step is bounded so a stuck peer cannot hold the process.
/// True when every client connection ended in time.
async fn stop(
    node: &Node,
    accepts: Vec<tokio::task::JoinHandle<()>>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    links: Vec<tokio::task::JoinHandle<()>>,
) -> bool {
    use std::time::Duration;
    tracing::info!("shutting down: closing listeners and connections");
    for a in &accepts {
        a.abort();
    }
    node.shutdown.cancel();
    // After the cancel: a connection opening now sees the token instead.
    node.wake_list.wake_all();
    node.conns.close();
    let grace = connection::drive::CLOSE_FLUSH + Duration::from_secs(5);
    let all_closed = tokio::time::timeout(grace, node.conns.wait()).await.is_ok();
    if !all_closed {
        tracing::warn!(
            left = node.conns.len(),
            "connections still open after the grace period"
        );
    }
    for s in servers {
        if tokio::time::timeout(Duration::from_secs(5), s)
            .await
            .is_err()
        {
            tracing::warn!("an HTTP/WebSocket listener did not stop in time");
        }
    }
    // Closed sessions queued their unsubscribes; let connected links send them.
    if let Some(c) = &node.delivery.cluster {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while tokio::time::Instant::now() < deadline
            && c.links()
                .iter()
                .any(|l| l.up.load(std::sync::atomic::Ordering::Relaxed) && l.queued_bytes() > 0)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    for l in links {
        l.abort();
    }
    all_closed
}

/// Opens the store `--store` names. Embedded stores live in the data dir.
async fn open_store(cfg: &ImConfig) -> Result<Arc<dyn Store>, StartError> {
    let dir = cfg.data_dir.display().to_string();
    let embedded = |what: &'static str| {
        let dir = dir.clone();
        move |e: crate::store::StoreError| StartError::Store {
            what,
            dir,
            message: e.to_string(),
        }
    };
    Ok(match &cfg.store {
        StoreSpec::Fjall => {
            let opts = FjallOptions {
                dedup_window: cfg.dedup_window,
                ..FjallOptions::default()
            };
            Arc::new(FjallStore::open(&cfg.data_dir, opts).map_err(embedded("fjall"))?)
        }
        StoreSpec::Redis(url) => {
            let opts = RedisStoreOptions {
                dedup_window: cfg.dedup_window,
                retention_count: cfg.retention_count,
                retention_age: cfg.retention_age,
                ..RedisStoreOptions::default()
            };
            let store =
                RedisStore::connect(url, opts)
                    .await
                    .map_err(|e| StartError::SharedStore {
                        url: redact_url(url),
                        message: e.to_string(),
                    })?;
            Arc::new(store)
        }
    })
}

/// Opens the group store matching `--store`: the embedded backends keep
/// groups in their own small database in the data dir; Redis keeps them
/// beside the queues (own connection, same key prefix).
async fn open_group_store(cfg: &ImConfig) -> Result<Arc<dyn GroupStore>, StartError> {
    let dir = cfg.data_dir.display().to_string();
    let embedded = |what: &'static str| {
        let dir = dir.clone();
        move |e: crate::store::StoreError| StartError::Store {
            what,
            dir,
            message: e.to_string(),
        }
    };
    Ok(match &cfg.store {
        StoreSpec::Fjall => {
            Arc::new(FjallGroupStore::open(&cfg.data_dir).map_err(embedded("fjall group"))?)
        }
        StoreSpec::Redis(url) => {
            let store = RedisStore::connect(url, RedisStoreOptions::default())
                .await
                .map_err(|e| StartError::SharedStore {
                    url: redact_url(url),
                    message: e.to_string(),
                })?;
            Arc::new(RedisGroupStore::new(Arc::new(store)))
        }
    })
}

/// Runs [`Store::recover_interrupted`] now and every
/// [`crate::store::RECOVER_EVERY`] until the store is closed.
async fn recover_interrupted(store: Arc<dyn Store>) {
    let mut tick = tokio::time::interval(crate::store::RECOVER_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.recover_interrupted().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(completed = n, "completed appends interrupted by a crash"),
            Err(crate::store::StoreError::Closed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "completing interrupted appends failed; will retry")
            }
        }
    }
}

async fn accept_loop(
    node: Arc<Node>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Refused connections are dropped at once (counted and logged by `limits`).
                let kind = if tls.is_some() { Kind::Tls } else { Kind::Tcp };
                let Ok(permit) = node.limits.admit(kind) else {
                    continue;
                };
                let node2 = node.clone();
                match &tls {
                    None => node
                        .conns
                        .spawn(connection::tcp::serve(node2, stream, peer, permit)),
                    Some(acceptor) => node.conns.spawn(connection::tls::serve(
                        node2,
                        acceptor.clone(),
                        stream,
                        peer,
                        permit,
                    )),
                };
            }
            Err(e) => {
                // EMFILE and friends: keep serving the connections we have.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
