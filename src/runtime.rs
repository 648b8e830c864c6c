//! A running node and its reloads.
//!
//! Everything a request touches is behind an `ArcSwap` and replaced whole: the [`Front`]'s
//! proxy (sites, origins, cache policy, cluster), the TLS certificates and the connection
//! settings. A reload builds the new pieces first (file, certificates, listeners, origins),
//! and only if every one of them succeeds swaps them in; requests in flight finish on the old
//! ones, new requests start on the new ones, and the cache moves over (its entries are carried
//! into a store of the new size when `cache.memory` changes). An invalid file changes nothing.
//!
//! Not applied without a restart (logged): the admin listener and `listen.max_connections`.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};
use moka::notification::RemovalCause;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

mod persist;

use crate::admin;
use crate::cluster::purges::Purges;
use crate::cluster::{Apply, Cluster};
use crate::config::{Config, ConfigError};
use crate::listener::{self, Acceptor, ConnSettings};
use crate::observability::access::AccessLog;
use crate::observability::metrics::Metrics;
use crate::observability::metrics::PurgeSource;
use crate::proxy::{Front, Proxy};
use crate::storage::{self, Store};

/// The sockets a node serves, bound by the caller (port 0 in tests).
pub struct Listeners {
    pub http: Vec<TcpListener>,
    pub https: Vec<TcpListener>,
    /// HTTP/3 (UDP) sockets.
    pub quic: Vec<std::net::UdpSocket>,
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Bind every address the configuration names.
    pub async fn bind(config: &Config) -> Result<Self, RunError> {
        let mut http = Vec::new();
        for addr in &config.listen.http {
            http.push(bind(*addr)?);
        }
        let mut https = Vec::new();
        for addr in &config.listen.https {
            https.push(bind(*addr)?);
        }
        let mut quic = Vec::new();
        for addr in &config.listen.quic {
            quic.push(bind_udp(*addr)?);
        }
        let admin = match config.admin.listen {
            Some(addr) => Some(bind(addr)?),
            None => None,
        };
        Ok(Self {
            http,
            https,
            quic,
            admin,
        })
    }
}

fn bind_udp(addr: SocketAddr) -> Result<std::net::UdpSocket, RunError> {
    let bound = std::net::UdpSocket::bind(addr).and_then(|socket| {
        // tokio, under quinn, takes the socket as it is.
        socket.set_nonblocking(true)?;
        Ok(socket)
    });
    let socket =
        bound.map_err(|e| RunError::from(listener::quic::QuicSetupError::Bind(addr, e)))?;
    udp_buffers(&socket, addr);
    Ok(socket)
}

/// What a QUIC listener asks of the kernel for each of its socket buffers.
const UDP_BUFFER: usize = 4 << 20;

/// Socket buffers of `UDP_BUFFER` each way. With the default (about 208 KiB), a node busy on
/// its core let client datagrams overflow its receive buffer (1.5 % of them in a 1 KiB hit
/// benchmark, counted in `RcvbufErrors` of `/proc/net/snmp`), and each loss costs QUIC a
/// retransmission and a smaller congestion window. The kernel caps the size at
/// `net.core.rmem_max` / `wmem_max`; a smaller grant is logged, never an error.
fn udp_buffers(socket: &std::net::UdpSocket, addr: SocketAddr) {
    let socket = socket2::SockRef::from(socket);
    let recv = socket
        .set_recv_buffer_size(UDP_BUFFER)
        .and_then(|()| socket.recv_buffer_size());
    let send = socket
        .set_send_buffer_size(UDP_BUFFER)
        .and_then(|()| socket.send_buffer_size());
    match (recv, send) {
        // Linux reports twice what it grants for bookkeeping.
        (Ok(recv), Ok(send)) if recv >= UDP_BUFFER && send >= UDP_BUFFER => {}
        (recv, send) => tracing::info!(
            %addr,
            asked = UDP_BUFFER,
            receive = ?recv,
            send = ?send,
            "QUIC socket buffers smaller than asked; raise net.core.rmem_max and wmem_max"
        ),
    }
}

/// A TCP listener on `addr`, with `SO_REUSEADDR`: a node restarted on its port binds it while
/// the connections its predecessor closed are still in TIME-WAIT there.
fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, RunError> {
    let listen = || {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }?;
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    listen().map_err(|e| RunError::Bind(addr, e))
}

/// Connections the kernel queues before the node accepts them (what `TcpListener::bind`
/// asks for, and `somaxconn` caps).
const LISTEN_BACKLOG: u32 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {0}: {1}")]
    Bind(std::net::SocketAddr, std::io::Error),
    #[error(transparent)]
    Tls(#[from] listener::tls::TlsSetupError),
    #[error(transparent)]
    Quic(#[from] listener::quic::QuicSetupError),
    #[error(transparent)]
    Origin(#[from] crate::origin::OriginSetupError),
    #[error("cache.persist: cannot keep a snapshot in {}: {error}", dir.display())]
    Persist { dir: PathBuf, error: std::io::Error },
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
    let admin_addr = admin_listen.as_ref().and_then(|l| l.local_addr().ok());
    let runtime = Runtime::start(
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
            node: runtime.clone(),
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
            per_client: crate::listener::per_client::PerClient::new(0),
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
    let (http, https) = (
        runtime_addrs(&runtime, false).await,
        runtime_addrs(&runtime, true).await,
    );
    let quic = runtime.quic_addrs().await;
    tracing::info!(?http, ?https, ?quic, admin = ?admin_addr, "serving");
    shutdown.await;
    tracing::info!("draining");
    let drain_started = std::time::Instant::now();
    runtime.ready.store(false, Ordering::Relaxed);
    // A planned leave: peers' probes now hear that this node is leaving and route its keys
    // to their next holders, which ask it for them while it still serves.
    let limit = runtime.listen_config().await.shutdown_timeout;
    if let Some(cluster) = &runtime.front.proxy().cluster
        && cluster.watched()
    {
        let notice = cluster.leave_notice.min(limit / 2);
        let notice_ms = u64::try_from(notice.as_millis()).unwrap_or(u64::MAX);
        tracing::info!(notice_ms, "leaving the cluster");
        tokio::time::sleep(notice).await;
    }
    let _ = stop.send(true);
    reload_task.abort();
    runtime.stop_accepting().await;
    let (connections, max) = runtime.connections();
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let left = limit.saturating_sub(drain_started.elapsed());
    let drained = tokio::time::timeout(left, connections.acquire_many(all)).await;
    if drained.is_err() {
        tracing::warn!("drain timed out; closing remaining connections");
    }
    // Every fill that was going to finish has: write the cache down in what is left of the
    // shutdown timeout.
    {
        let config = runtime.applied.lock().await.config.clone();
        let store = runtime.front.proxy().store().clone();
        let purges = runtime.node.purges.clone();
        persist::save(
            &config,
            store,
            &purges,
            &runtime.metrics,
            drain_started + limit,
        )
        .await;
    }
    let _ = admin_stop.send(true);
    if let Some(admin_loop) = admin_loop {
        let _ = admin_loop.await;
    }
    Ok(())
}

/// The addresses the node's http (or https) accept loops listen on.
async fn runtime_addrs(runtime: &Runtime, https: bool) -> Vec<SocketAddr> {
    let applied = runtime.applied.lock().await;
    let mut addrs: Vec<SocketAddr> = applied
        .loops
        .keys()
        .filter(|(tls, _)| *tls == https)
        .map(|(_, addr)| *addr)
        .collect();
    addrs.sort();
    addrs
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

/// Why a reload was refused; the running configuration stays.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    #[error("the node was started without a configuration file to re-read")]
    NoFile,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Run(#[from] RunError),
}

/// One accept loop and the switch that stops it.
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What the last applied configuration set up.
struct Applied {
    config: Config,
    /// Cluster probes and DNS discovery; replaced with the cluster.
    background: JoinSet<()>,
    loops: HashMap<(bool, SocketAddr), Running>,
    /// The QUIC accept loops and their endpoints (a reload swaps their certificates).
    quic: HashMap<SocketAddr, (Running, quinn::Endpoint)>,
}

pub(crate) struct Runtime {
    path: Option<PathBuf>,
    /// What outlives reloads: the purge log and lease, the channel of purge records to
    /// apply, readiness.
    node: NodeHandles,
    pub(crate) front: Arc<Front>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) ready: Arc<AtomicBool>,
    /// The admin bearer token, reloadable.
    pub(crate) token: ArcSwap<Option<String>>,
    access: Arc<AccessLog>,
    /// `None` while no certificate is configured (no https listener then).
    tls: Arc<ArcSwapOption<ServerConfig>>,
    settings: Arc<ArcSwap<ConnSettings>>,
    connections: Arc<Semaphore>,
    /// The limit per client address (TCP and QUIC together), reloadable.
    per_client: Arc<crate::listener::per_client::PerClient>,
    /// The semaphore's size, fixed at start (a reload does not resize it).
    max_connections: usize,
    shutdown: watch::Receiver<bool>,
    applied: Mutex<Applied>,
}

impl Runtime {
    /// Build the node for `config` and start accepting on `listeners`.
    pub(crate) async fn start(
        config: Config,
        listeners: Listeners,
        path: Option<PathBuf>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, RunError> {
        let metrics = Arc::new(Metrics::new());
        let store = new_store(&config, &metrics);
        let ready = Arc::new(AtomicBool::new(true));
        let purges = Purges::new(metrics.clone());
        let (records, records_in) = mpsc::channel(16);
        let node = NodeHandles {
            purges: purges.clone(),
            records,
            ready: ready.clone(),
            compress_pool: crate::proxy::compress_pool(),
            loaded: watch::channel(false).0,
        };
        let (cluster, background) = start_cluster(&config, &metrics, None, &node);
        let access = Arc::new(AccessLog::new(
            config.log.access,
            metrics.front.access_log_dropped.clone(),
        ));
        let proxy = Proxy::new(&config, store, cluster, node.shared(&metrics, &access))?;
        // Before any listener accepts: the node is ready with its cache back (and the purges
        // it had taken), or not at all; only then does it compare purge logs with its peers.
        persist::load(&config, &proxy, &metrics).await?;
        node.loaded.send_replace(true);
        let tls = Arc::new(ArcSwapOption::new(tls_config(&config)?));
        let front = Front::new(proxy);
        tokio::spawn(apply_records(front.clone(), records_in));
        let runtime = Arc::new(Self {
            path,
            node,
            front,
            metrics,
            ready,
            token: ArcSwap::from_pointee(config.admin.token.clone()),
            access,
            tls,
            settings: Arc::new(ArcSwap::from_pointee(ConnSettings::from(&config.listen))),
            connections: Arc::new(Semaphore::new(config.listen.max_connections)),
            per_client: crate::listener::per_client::PerClient::new(
                config.listen.max_connections_per_client,
            ),
            max_connections: config.listen.max_connections,
            shutdown,
            applied: Mutex::new(Applied {
                config,
                background,
                loops: HashMap::new(),
                quic: HashMap::new(),
            }),
        });
        {
            let mut applied = runtime.applied.lock().await;
            for socket in listeners.http {
                runtime.spawn_loop(&mut applied, socket, false);
            }
            for socket in listeners.https {
                runtime.spawn_loop(&mut applied, socket, true);
            }
            let quic = quic_config(&applied.config)?;
            for socket in listeners.quic {
                runtime.spawn_quic_loop(&mut applied, socket, quic.clone())?;
            }
        }
        Ok(runtime)
    }

    fn spawn_loop(&self, applied: &mut Applied, socket: TcpListener, https: bool) {
        let Ok(addr) = socket.local_addr() else {
            return;
        };
        let (stop, accepting) = watch::channel(false);
        let acceptor = Acceptor {
            handler: self.front.clone(),
            tls: https.then(|| self.tls.clone()),
            settings: self.settings.clone(),
            connections: self.connections.clone(),
            per_client: self.per_client.clone(),
            shutdown: self.shutdown.clone(),
            accepting,
            metrics: Some(self.metrics.clone()),
        };
        let task = tokio::spawn(listener::accept_loop(socket, acceptor));
        applied.loops.insert((https, addr), Running { stop, task });
    }

    fn spawn_quic_loop(
        &self,
        applied: &mut Applied,
        socket: std::net::UdpSocket,
        config: Option<quinn::ServerConfig>,
    ) -> Result<(), RunError> {
        let Ok(addr) = socket.local_addr() else {
            return Ok(());
        };
        let endpoint = listener::quic::endpoint(socket, config)
            .map_err(|e| listener::quic::QuicSetupError::Bind(addr, e))?;
        let (stop, accepting) = watch::channel(false);
        let acceptor = Acceptor {
            handler: self.front.clone(),
            tls: None,
            settings: self.settings.clone(),
            connections: self.connections.clone(),
            per_client: self.per_client.clone(),
            shutdown: self.shutdown.clone(),
            accepting,
            metrics: Some(self.metrics.clone()),
        };
        let task = tokio::spawn(listener::quic::accept_loop(endpoint.clone(), acceptor));
        applied
            .quic
            .insert(addr, (Running { stop, task }, endpoint));
        Ok(())
    }

    /// The addresses the QUIC listeners are bound to.
    async fn quic_addrs(&self) -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = self.applied.lock().await.quic.keys().copied().collect();
        addrs.sort();
        addrs
    }

    /// The connection limit, for the drain.
    pub(crate) fn connections(&self) -> (&Arc<Semaphore>, usize) {
        (&self.connections, self.max_connections)
    }

    /// Stop every accept loop and background task and wait for the loops to end.
    pub(crate) async fn stop_accepting(&self) {
        let mut applied = self.applied.lock().await;
        let applied = &mut *applied;
        let quic = applied.quic.drain().map(|(_, (running, _))| running);
        let running: Vec<_> = applied.loops.drain().map(|(_, r)| r).chain(quic).collect();
        for running in running {
            let _ = running.stop.send(true);
            let _ = running.task.await;
        }
        applied.background.abort_all();
    }

    /// Re-read the file and apply it (SIGHUP, `POST /reload`). Counted and logged either way.
    pub(crate) async fn reload(&self) -> Result<(), ReloadError> {
        let result = self.try_reload().await;
        match &result {
            Ok(()) => {
                self.metrics.front.config_reloads.inc();
                tracing::info!("configuration reloaded");
            }
            Err(e) => {
                self.metrics.front.config_reload_failures.inc();
                tracing::error!("reload refused, keeping the running configuration: {e}");
            }
        }
        result
    }

    async fn try_reload(&self) -> Result<(), ReloadError> {
        let path = self.path.as_ref().ok_or(ReloadError::NoFile)?;
        let config = Config::load(path)?;
        let mut applied = self.applied.lock().await;
        // Everything that can fail, before anything changes.
        let tls = tls_config(&config)?;
        let quic = quic_config(&config)?;
        let mut bound_quic = Vec::new();
        for addr in &config.listen.quic {
            if !applied.quic.contains_key(addr) {
                bound_quic.push(bind_udp(*addr)?);
            }
        }
        let mut bound = Vec::new();
        for (https, addrs) in [(false, &config.listen.http), (true, &config.listen.https)] {
            for addr in addrs {
                if !applied.loops.contains_key(&(https, *addr)) {
                    let socket = bind(*addr)?;
                    bound.push((https, socket));
                }
            }
        }
        let old = self.front.proxy();
        let store = if config.cache.memory == applied.config.cache.memory {
            old.store().clone()
        } else {
            let store = new_store(&config, &self.metrics);
            store.take_from(old.store()).await;
            store
        };
        let reuse = old
            .cluster
            .clone()
            .filter(|_| same_cluster(&applied.config, &config));
        let reused = reuse.is_some();
        let (cluster, background) = start_cluster(&config, &self.metrics, reuse, &self.node);
        let proxy = Proxy::new(
            &config,
            store,
            cluster,
            self.node.shared(&self.metrics, &self.access),
        )
        .map_err(RunError::from)?;
        // Commit.
        if !reused {
            std::mem::replace(&mut applied.background, background).abort_all();
        }
        self.front.replace(proxy);
        self.tls.store(tls);
        self.settings
            .store(Arc::new(ConnSettings::from(&config.listen)));
        self.per_client
            .set_max(config.listen.max_connections_per_client);
        self.token.store(Arc::new(config.admin.token.clone()));
        for (https, socket) in bound {
            self.spawn_loop(&mut applied, socket, https);
        }
        // Certificates and limits for new QUIC connections; those open keep theirs.
        for (_, endpoint) in applied.quic.values() {
            endpoint.set_server_config(quic.clone());
        }
        for socket in bound_quic {
            self.spawn_quic_loop(&mut applied, socket, quic.clone())?;
        }
        let removed: Vec<_> = applied
            .quic
            .keys()
            .filter(|addr| !config.listen.quic.contains(addr))
            .copied()
            .collect();
        for addr in removed {
            if let Some((running, _)) = applied.quic.remove(&addr) {
                let _ = running.stop.send(true);
                let _ = running.task.await;
            }
        }
        let wanted = |https: bool, addr: &SocketAddr| {
            let list = if https {
                &config.listen.https
            } else {
                &config.listen.http
            };
            list.contains(addr)
        };
        let removed: Vec<_> = applied
            .loops
            .keys()
            .filter(|(https, addr)| !wanted(*https, addr))
            .copied()
            .collect();
        for key in removed {
            if let Some(running) = applied.loops.remove(&key) {
                // Its connections carry on until they close; only accepting stops. Waiting for
                // the loop closes the socket, so a later reload can listen there again.
                let _ = running.stop.send(true);
                let _ = running.task.await;
            }
        }
        if config.admin.listen != applied.config.admin.listen
            || config.listen.max_connections != applied.config.listen.max_connections
            || config.log.level != applied.config.log.level
            || config.log.access != applied.config.log.access
        {
            tracing::warn!(
                "admin.listen, listen.max_connections and [log] change only with a restart"
            );
        }
        applied.config = config;
        Ok(())
    }

    pub(crate) async fn listen_config(&self) -> crate::config::ListenConfig {
        self.applied.lock().await.config.listen.clone()
    }

    /// Serving, and (in a cluster) every peer probed once, so the ring routes to the live
    /// ones.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
            && self
                .front
                .proxy()
                .cluster
                .as_ref()
                .is_none_or(|cluster| cluster.probed_once())
    }
}

/// What a node keeps across reloads for its cluster and proxy.
pub(crate) struct NodeHandles {
    pub(crate) purges: Arc<Purges>,
    records: mpsc::Sender<Apply>,
    ready: Arc<AtomicBool>,
    compress_pool: Arc<crate::proxy::CompressPool>,
    /// See `cluster::NodeParts::loaded`; open for the node's life (a cluster made by a
    /// reload reads it too).
    loaded: watch::Sender<bool>,
}

impl NodeHandles {
    /// What a proxy of this node shares with the others it builds.
    fn shared(&self, metrics: &Arc<Metrics>, access: &Arc<AccessLog>) -> crate::proxy::Shared {
        crate::proxy::Shared {
            metrics: metrics.clone(),
            ready: self.ready.clone(),
            access: access.clone(),
            purges: self.purges.clone(),
            compress_pool: self.compress_pool.clone(),
        }
    }
}

/// Apply the purge records comparisons of purge logs found missing, through the proxy
/// serving now, until the node stops.
async fn apply_records(front: Arc<Front>, mut records: mpsc::Receiver<Apply>) {
    while let Some(apply) = records.recv().await {
        let proxy = front.proxy();
        for record in apply.records {
            if crate::proxy::purge::check_record(&record).is_ok() {
                proxy.take_record(record, PurgeSource::Exchange).await;
            }
        }
        let _ = apply.done.send(());
    }
}

fn new_store(config: &Config, metrics: &Metrics) -> Arc<Store> {
    metrics
        .store
        .cache_capacity
        .set(i64::try_from(config.cache.memory).unwrap_or(i64::MAX));
    Arc::new(Store::new(
        config.cache.memory,
        config.cache.uncacheable_ttl,
        eviction_hook(metrics),
    ))
}

/// quinn's configuration for the QUIC listeners, if any are configured (validation made sure
/// there are certificates then).
fn quic_config(config: &Config) -> Result<Option<quinn::ServerConfig>, RunError> {
    if config.listen.quic.is_empty() || config.tls.certificates.is_empty() {
        return Ok(None);
    }
    let tls = listener::tls::quic_server_config(&config.tls.certificates)?;
    let settings = ConnSettings::from(&config.listen);
    Ok(Some(listener::quic::server_config(tls, &settings)?))
}

/// TLS server configuration for the certificates, if any.
fn tls_config(config: &Config) -> Result<Option<Arc<ServerConfig>>, RunError> {
    if config.tls.certificates.is_empty() {
        return Ok(None);
    }
    Ok(Some(listener::tls::server_config(
        &config.tls.certificates,
    )?))
}

/// The cluster of `config`: `reuse` (with the new member list) when only the members changed,
/// otherwise a new one with its own probes and discovery.
fn start_cluster(
    config: &Config,
    metrics: &Arc<Metrics>,
    reuse: Option<Arc<Cluster>>,
    node: &NodeHandles,
) -> (Option<Arc<Cluster>>, JoinSet<()>) {
    let mut background = JoinSet::new();
    let Some(cluster_config) = &config.cluster else {
        node.purges.configure(
            crate::config::DEFAULT_PURGE_LOG_WINDOW,
            crate::config::DEFAULT_PURGE_LOG_MEMORY,
            crate::config::DEFAULT_PURGE_LEASE,
            false,
        );
        return (None, background);
    };
    if let Some(cluster) = reuse {
        if let crate::config::Members::Static(addrs) = &cluster_config.members {
            cluster.set_members(addrs);
        }
        return (Some(cluster), background);
    }
    let mut shields: Vec<SocketAddr> = Vec::new();
    for addr in config.sites.iter().flat_map(|site| &site.shield) {
        if !shields.contains(addr) {
            shields.push(*addr);
        }
    }
    let parts = crate::cluster::NodeParts {
        purges: node.purges.clone(),
        records: node.records.clone(),
        ready: node.ready.clone(),
        shields,
        cache_memory: config.cache.memory,
        loaded: node.loaded.subscribe(),
    };
    let cluster = Cluster::new(cluster_config, &config.node.name, metrics.clone(), parts);
    background.spawn(cluster.clone().probe_forever());
    if let Some(discovery) = crate::cluster::discovery::start(config, cluster.clone()) {
        background.spawn(discovery);
    }
    (Some(cluster), background)
}

/// Whether a running cluster can take the new configuration by updating its members only.
fn same_cluster(old: &Config, new: &Config) -> bool {
    match (&old.cluster, &new.cluster) {
        (Some(a), Some(b)) => {
            let static_members = matches!(
                (&a.members, &b.members),
                (
                    crate::config::Members::Static(_),
                    crate::config::Members::Static(_)
                )
            );
            let shields = |c: &Config| -> Vec<SocketAddr> {
                let mut all: Vec<SocketAddr> =
                    c.sites.iter().flat_map(|s| s.shield.clone()).collect();
                all.sort();
                all.dedup();
                all
            };
            a.advertise == b.advertise
                && a.secret == b.secret
                && a.replicate == b.replicate
                && a.replicas == b.replicas
                && a.probe_interval == b.probe_interval
                && a.peer_timeout == b.peer_timeout
                && a.handoff == b.handoff
                && a.leave_notice == b.leave_notice
                && a.regions == b.regions
                && a.purge_log_window == b.purge_log_window
                && a.purge_log_memory == b.purge_log_memory
                && a.purge_lease == b.purge_lease
                && a.push_memory == b.push_memory
                && old.cache.memory == new.cache.memory
                && shields(old) == shields(new)
                && (static_members || a.members == b.members)
                && old.node.name == new.node.name
                && old.dns.servers == new.dns.servers
        }
        _ => false,
    }
}

impl admin::Node for Runtime {
    fn proxy(&self) -> Arc<Proxy> {
        self.front.proxy()
    }

    fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn is_ready(&self) -> bool {
        Runtime::is_ready(self)
    }

    fn is_draining(&self) -> bool {
        !self.ready.load(Ordering::Relaxed)
    }

    fn token(&self) -> Arc<Option<String>> {
        self.token.load_full()
    }

    async fn reload(&self) -> Result<(), String> {
        Runtime::reload(self).await.map_err(|e| e.to_string())
    }

    fn access_log(&self) -> Arc<AccessLog> {
        self.access.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel grants what the node asks, up to `net.core.rmem_max` / `wmem_max` (and
    /// reports twice the grant); above the default, so a busy node does not drop datagrams.
    #[test]
    fn quic_sockets_get_large_buffers() {
        let socket = bind_udp("127.0.0.1:0".parse().expect("an address")).expect("bind");
        let cap = |file: &str| {
            std::fs::read_to_string(format!("/proc/sys/net/core/{file}"))
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(UDP_BUFFER)
        };
        let socket = socket2::SockRef::from(&socket);
        let recv = socket.recv_buffer_size().expect("SO_RCVBUF");
        let send = socket.send_buffer_size().expect("SO_SNDBUF");
        assert!(
            recv >= 2 * UDP_BUFFER.min(cap("rmem_max")),
            "receive buffer {recv}"
        );
        assert!(
            send >= 2 * UDP_BUFFER.min(cap("wmem_max")),
            "send buffer {send}"
        );
    }
}
