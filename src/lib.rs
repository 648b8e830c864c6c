//! # Outpost: an edge CDN node
//!
//! One binary per machine serves clients from an in-memory cache and falls back to the origin
//! on a miss, following HTTP caching as RFC 9111 defines it.
//!
//! ## The request path
//!
//! ```text
//! client ──TLS/h1/h2──▶ listener ──▶ request ──▶ lookup ──hit──────────────────▶ respond
//!                                      │           │ miss / stale
//!                                      │           ▼
//!                                      │        fill (coalesced) ──▶ origin
//!                                      │           │
//!                                      │        store ──────────────────────────▶ respond
//!                                      ▼
//!                               (site by Host; unknown Host refused)
//! ```
//!
//! ## Modules
//!
//! | module | owns |
//! |---|---|
//! | `main.rs` | CLI (`outpost [run] --config`, `check`, `demo`), runtime, signals; wiring only |
//! | [`config`] | TOML → file structs → validated [`config::Config`]; errors with file:line:col |
//! | [`listener`] | TCP and TLS accept loops, SNI, ALPN, connection limit, drain |
//! | [`proxy`] | the phases of the request path, one file each, in call order |
//! | [`cache`] | RFC 9111 policy, pure (no I/O, no clock: `now` is a parameter) |
//! | [`storage`] | the moka store weighed in bytes, variants, request coalescing |
//! | [`origin`] | origin connection pools, timeouts, retries, TLS to origins |
//! | [`admin`] | the admin listener: metrics, health, readiness, purge |
//! | [`observability`] | metric names and handles, logging setup |
//! | [`demo`] | `outpost demo`: a built-in origin and node on loopback |
//!
//! Rules of the house: `cache/` imports nothing async; a cache hit clones an `Arc` and
//! `Bytes`, never copies a body; no global lock on the request path.
//!
//! Tests start a node in-process with [`run`] on listeners bound to port 0.

pub mod admin;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod error;
pub mod listener;
pub mod observability;
pub mod origin;
pub mod proxy;
pub mod storage;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use moka::notification::RemovalCause;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};

use config::Config;
use listener::{Acceptor, ConnSettings, Handler};
use observability::metrics::Metrics;
use proxy::Proxy;
use proxy::body::ProxyBody;
use proxy::request::ClientInfo;
use storage::Store;

/// How long a drain waits for in-flight requests before closing what is left.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The sockets a node serves, bound by the caller (port 0 in tests).
pub struct Listeners {
    pub http: Vec<TcpListener>,
    pub https: Vec<TcpListener>,
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Bind every address the configuration names.
    pub async fn bind(config: &Config) -> Result<Self, RunError> {
        let mut http = Vec::new();
        for addr in &config.listen.http {
            http.push(bind(*addr).await?);
        }
        let mut https = Vec::new();
        for addr in &config.listen.https {
            https.push(bind(*addr).await?);
        }
        let admin = match config.admin.listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Self { http, https, admin })
    }
}

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| RunError::Bind(addr, e))
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {0}: {1}")]
    Bind(std::net::SocketAddr, std::io::Error),
    #[error(transparent)]
    Tls(#[from] listener::tls::TlsSetupError),
    #[error(transparent)]
    Origin(#[from] origin::OriginSetupError),
}

impl Handler for Proxy {
    fn call(
        self: Arc<Self>,
        request: Request<Incoming>,
        client: ClientInfo,
    ) -> impl Future<Output = Response<ProxyBody>> + Send {
        self.handle(request, client)
    }
}

/// Run a node until `shutdown` completes, then drain: stop accepting, turn `/readyz` to 503,
/// let in-flight requests finish (up to 30 s) and return.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    run_with_reloads(config, listeners, shutdown, mpsc::channel(1).1).await
}

/// [`run`], applying configurations sent on `reloads` (the binary sends one per SIGHUP).
pub async fn run_with_reloads(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
    reloads: mpsc::Receiver<Config>,
) -> Result<(), RunError> {
    let metrics = Arc::new(Metrics::new());
    metrics
        .cache_capacity
        .set(i64::try_from(config.cache.memory).unwrap_or(i64::MAX));
    let store = Arc::new(Store::new(
        config.cache.memory,
        config.cache.uncacheable_ttl,
        eviction_hook(&metrics),
    ));
    let ready = Arc::new(AtomicBool::new(true));
    let cluster = config
        .cluster
        .as_ref()
        .map(|c| cluster::Cluster::new(c, &config.node.name, metrics.clone()));
    // Background work of the cluster (probes, DNS discovery, reloads) ends with the node.
    let mut background = tokio::task::JoinSet::new();
    if let Some(cluster) = &cluster {
        background.spawn(cluster.clone().probe_forever());
        if let Some(discovery) = cluster::discovery::start(&config, cluster.clone()) {
            background.spawn(discovery);
        }
        background.spawn(apply_reloads(reloads, cluster.clone()));
    }
    let proxy = Arc::new(Proxy::new(
        &config,
        store,
        metrics.clone(),
        cluster.clone(),
        ready.clone(),
    )?);
    let tls = if listeners.https.is_empty() {
        None
    } else {
        Some(listener::tls_acceptor(listener::tls::server_config(
            &config.tls.certificates,
        )?))
    };
    let (stop, stopped) = watch::channel(false);
    let connections = Arc::new(Semaphore::new(config.listen.max_connections));
    let settings = Arc::new(ConnSettings::from(&config.listen));
    let acceptor = Acceptor {
        handler: proxy.clone(),
        tls: None,
        settings: settings.clone(),
        connections: connections.clone(),
        shutdown: stopped,
    };
    let mut loops = tokio::task::JoinSet::new();
    for socket in listeners.http {
        loops.spawn(listener::accept_loop(socket, acceptor.clone()));
    }
    for socket in listeners.https {
        let acceptor = Acceptor {
            tls: tls.clone(),
            ..acceptor.clone()
        };
        loops.spawn(listener::accept_loop(socket, acceptor));
    }
    // The admin listener outlives the drain so `/readyz` can say 503 while it runs.
    let (admin_stop, admin_stopped) = watch::channel(false);
    let mut admin_loop = None;
    if let Some(socket) = listeners.admin {
        let admin = Arc::new(admin::Admin {
            proxy: proxy.clone(),
            metrics: metrics.clone(),
            token: config.admin.token.clone(),
            ready: ready.clone(),
            cluster: cluster.clone(),
        });
        let acceptor = Acceptor {
            handler: admin,
            tls: None,
            settings,
            connections: Arc::new(Semaphore::new(256)),
            shutdown: admin_stopped,
        };
        admin_loop = Some(tokio::spawn(listener::accept_loop(socket, acceptor)));
    }
    tracing::info!(node = %config.node.name, "serving");
    shutdown.await;
    tracing::info!("draining");
    ready.store(false, Ordering::Relaxed);
    let _ = stop.send(true);
    while loops.join_next().await.is_some() {}
    let all = u32::try_from(config.listen.max_connections).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, connections.acquire_many(all)).await;
    if drained.is_err() {
        tracing::warn!("drain timed out; closing remaining connections");
    }
    let _ = admin_stop.send(true);
    if let Some(admin_loop) = admin_loop {
        let _ = admin_loop.await;
    }
    background.abort_all();
    Ok(())
}

/// Configurations re-read on SIGHUP: the cluster's static member list follows them.
/// (Other settings need a restart for now; a changed value is logged.)
async fn apply_reloads(mut reloads: mpsc::Receiver<Config>, cluster: Arc<cluster::Cluster>) {
    while let Some(config) = reloads.recv().await {
        match config.cluster.as_ref().map(|c| &c.members) {
            Some(config::Members::Static(addrs)) => {
                cluster.set_members(addrs);
                tracing::info!("reloaded cluster members");
            }
            _ => tracing::warn!("reload: only a static [cluster] peers list is applied"),
        }
    }
}

fn eviction_hook(metrics: &Metrics) -> storage::EvictionHook {
    let size = metrics.eviction("size");
    let expired = metrics.eviction("expired");
    let purged = metrics.eviction("purged");
    let replaced = metrics.eviction("replaced");
    Arc::new(move |cause| {
        match cause {
            RemovalCause::Size => &size,
            RemovalCause::Expired => &expired,
            RemovalCause::Explicit => &purged,
            RemovalCause::Replaced => &replaced,
        }
        .inc();
    })
}
