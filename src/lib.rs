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
pub mod dns;
pub mod error;
pub mod hash;
pub mod listener;
pub mod observability;
pub mod origin;
pub mod proxy;
pub mod runtime;
pub mod storage;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use moka::notification::RemovalCause;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};

use config::Config;
use listener::{Acceptor, ConnSettings};
use observability::metrics::Metrics;

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

/// Run a node until `shutdown` completes, then drain: stop accepting, turn `/readyz` to 503,
/// let in-flight requests finish (up to 30 s) and return.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    run_with_reloads(config, listeners, shutdown, None, mpsc::channel(1).1).await
}

/// [`run`], re-reading `path` whenever `reloads` receives (the binary sends one per SIGHUP)
/// and on the admin API's `POST /reload`.
pub async fn run_with_reloads(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
    path: Option<std::path::PathBuf>,
    mut reloads: mpsc::Receiver<()>,
) -> Result<(), RunError> {
    let (stop, stopped) = watch::channel(false);
    let admin_listen = listeners.admin;
    let runtime = runtime::Runtime::start(
        config,
        Listeners {
            admin: None,
            ..listeners
        },
        path,
        stopped,
    )
    .await?;
    let (admin_stop, admin_stopped) = watch::channel(false);
    let mut admin_loop = None;
    if let Some(socket) = admin_listen {
        let admin = Arc::new(admin::Admin {
            runtime: runtime.clone(),
        });
        // Stopped with the node's drain (below), never on its own.
        let accepting = admin_stop.subscribe();
        let acceptor = Acceptor {
            handler: admin,
            tls: None,
            settings: Arc::new(arc_swap::ArcSwap::from_pointee(ConnSettings::from(
                &runtime.listen_config().await,
            ))),
            connections: Arc::new(Semaphore::new(256)),
            shutdown: admin_stopped,
            accepting,
            metrics: None,
        };
        admin_loop = Some(tokio::spawn(listener::accept_loop(socket, acceptor)));
    }
    // The admin listener outlives the drain so `/readyz` can say 503 while it runs.
    let reloader = runtime.clone();
    let reload_task = tokio::spawn(async move {
        while reloads.recv().await.is_some() {
            let _ = reloader.reload().await;
        }
    });
    tracing::info!("serving");
    shutdown.await;
    tracing::info!("draining");
    runtime.ready.store(false, Ordering::Relaxed);
    let _ = stop.send(true);
    reload_task.abort();
    runtime.stop_accepting().await;
    let (connections, max) = runtime.connections();
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let limit = runtime.listen_config().await.shutdown_timeout;
    let drained = tokio::time::timeout(limit, connections.acquire_many(all)).await;
    if drained.is_err() {
        tracing::warn!("drain timed out; closing remaining connections");
    }
    let _ = admin_stop.send(true);
    if let Some(admin_loop) = admin_loop {
        let _ = admin_loop.await;
    }
    Ok(())
}

pub(crate) fn eviction_hook(metrics: &Metrics) -> storage::EvictionHook {
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
