//! Peers: the HTTP client that forwards a request to the owner of its key, health probes,
//! and ejection.
//!
//! A peer that refuses or resets a connection is ejected at once (its keys go to the next
//! live node of their preference order); probes every `probe_interval` bring it back when it
//! answers again. A slow owner is not ejected: it is alive, just waiting on its origin. Nor is
//! a peer whose probe answer is late once: a node busy with a burst answers its probe after
//! the requests queued before it, and ejecting it then would send its keys to the origin a
//! second time. Only [`PROBE_FALL`] late probes in a row eject it; a refusal, a reset or a
//! non-200 answer ejects at once.

use crate::locks::lock;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::hop::HOP_HEADER;
use super::ring::NodeId;
use crate::observability::metrics::{Metrics, PeerMetrics, PeerOutcome};
use crate::origin::{OriginRequest, error_chain};

/// Path on a node's http listener that answers probes with its name.
pub(crate) const PROBE_PATH: &str = "/_outpost/peer";
/// Late probes in a row that eject a peer (a hung peer is out after this many intervals).
pub(crate) const PROBE_FALL: u32 = 3;
/// Path on a node's http listener that applies a purge or an invalidation another node took.
pub(crate) const PURGE_PATH: &str = "/_outpost/purge";
/// Path on a node's http listener that answers with the purge records the asker lacks.
pub(crate) const PURGE_LOG_PATH: &str = "/_outpost/purges";
/// Path on a node's http listener that stores an entry another node pushed to it.
pub(crate) const REPLICA_PATH: &str = "/_outpost/replica";
/// The query of a purge sent to a shield node: apply it and pass it on to the shield's own
/// members (under the signature like the rest).
pub(crate) const CASCADE: &str = "cascade";

pub(crate) struct Peer {
    pub(crate) id: NodeId,
    pub(crate) addr: SocketAddr,
    alive: AtomicBool,
    /// Its probe said it is draining; cleared by any other probe answer or failure.
    leaving: AtomicBool,
    /// Probes in a row that got no answer in time; reset by any answer.
    late_probes: AtomicU32,
    /// Forwarded requests in a row it answered neither with a head nor by working on them;
    /// reset by a response head.
    stalled: AtomicU32,
    /// When it last answered a forwarded request with a head, in ms of [`monotonic_ms`].
    last_response_ms: AtomicU64,
    /// The node name it reports in probes.
    name: Mutex<Option<String>>,
    last_change: Mutex<SystemTime>,
    /// Whether it has answered anything since this node started: until then it is probed
    /// fast (a node of a rolling start may not be listening yet).
    seen: AtomicBool,
    pub(crate) metrics: PeerMetrics,
}

/// Milliseconds on a monotonic clock since its first use.
pub(crate) fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Peer {
    pub(crate) fn new(id: NodeId, addr: SocketAddr, metrics: &Metrics) -> Self {
        let metrics = metrics.peer(&id.0);
        Self::with_metrics(id, addr, metrics)
    }

    /// A node counted under `metrics` (a shield node's, say, rather than a member's).
    pub(crate) fn with_metrics(id: NodeId, addr: SocketAddr, metrics: PeerMetrics) -> Self {
        metrics.up.set(1);
        Self {
            id,
            addr,
            alive: AtomicBool::new(true),
            leaving: AtomicBool::new(false),
            late_probes: AtomicU32::new(0),
            stalled: AtomicU32::new(0),
            last_response_ms: AtomicU64::new(0),
            name: Mutex::new(None),
            last_change: Mutex::new(SystemTime::now()),
            seen: AtomicBool::new(false),
            metrics,
        }
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    pub(crate) fn name(&self) -> Option<String> {
        lock(&self.name).clone()
    }

    pub(crate) fn last_change(&self) -> SystemTime {
        *lock(&self.last_change)
    }

    /// Draining: out of the ring's live set, but still serving what it holds (see
    /// [`crate::cluster::Cluster::handoff_peer`]) until it stops answering.
    pub(crate) fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::Relaxed)
    }

    /// It sent this node a signed probe: it is up (and listening: a node probes only once
    /// its listeners are bound), so its keys go to it again at once.
    pub(crate) fn heard_from(&self, draining: bool) {
        if draining {
            self.leave();
        } else {
            self.answered();
        }
    }

    /// A forwarded request got no head in time and the peer was not working on it: after
    /// [`PROBE_FALL`] in a row it is ejected, although it answers its probes.
    fn stall(&self, why: &str) {
        let stalled = self.stalled.fetch_add(1, Ordering::Relaxed) + 1;
        if stalled >= PROBE_FALL {
            self.eject(&format!("{stalled} requests in a row not answered: {why}"));
        }
    }

    /// How long since it last answered a forwarded request with a head.
    fn silent_to_requests(&self) -> Duration {
        let last = self.last_response_ms.load(Ordering::Relaxed);
        Duration::from_millis(monotonic_ms().saturating_sub(last))
    }

    /// Its probe said it is draining: its keys move to the next live node, which asks it
    /// for them while it still answers.
    fn leave(&self) {
        self.heard();
        self.leaving.store(true, Ordering::Relaxed);
        if self.take_out() {
            // A planned stop (a deploy, Ctrl-C): nothing for an operator to act on.
            tracing::info!(peer = %self.id.0, "peer left the ring: draining");
        }
    }

    /// Take it out of the ring's live set; its keys move to the next live node.
    pub(crate) fn eject(&self, why: &str) {
        self.leaving.store(false, Ordering::Relaxed);
        if self.take_out() {
            tracing::warn!(peer = %self.id.0, why, "peer ejected");
        }
    }

    /// Out of the live set; whether it was in it.
    fn take_out(&self) -> bool {
        let was_alive = self.alive.swap(false, Ordering::Relaxed);
        if was_alive {
            self.metrics.ejections.inc();
            self.metrics.up.set(0);
            *lock(&self.last_change) = SystemTime::now();
        }
        was_alive
    }

    /// A probe got no answer in time: ejected only after [`PROBE_FALL`] in a row.
    fn probe_late(&self) {
        let late = self.late_probes.fetch_add(1, Ordering::Relaxed) + 1;
        if late >= PROBE_FALL {
            self.eject(&format!("{late} probes in a row timed out"));
        }
    }

    /// It answered: alive, with no late probes counted against it.
    fn answered(&self) {
        self.heard();
        self.late_probes.store(0, Ordering::Relaxed);
        self.leaving.store(false, Ordering::Relaxed);
        self.revive();
    }

    /// It answered something just now.
    fn heard(&self) {
        self.seen.store(true, Ordering::Relaxed);
    }

    /// Whether it has ever answered (see [`Peer::seen`]).
    pub(crate) fn seen(&self) -> bool {
        self.seen.load(Ordering::Relaxed)
    }

    fn revive(&self) {
        if !self.alive.swap(true, Ordering::Relaxed) {
            tracing::info!(peer = %self.id.0, "peer is back");
            self.metrics.up.set(1);
            *lock(&self.last_change) = SystemTime::now();
        }
    }
}

/// A probe answer's body says the node is draining (see `proxy::internal`).
fn says_leaving(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|v| v["draining"] == serde_json::Value::Bool(true))
}

/// A probe answer's body says the node is working on the request the probe named.
fn says_working(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|v| v["working"] == serde_json::Value::Bool(true))
}

/// Why a forwarded request got no response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    /// Refused, reset or closed before the response head: ask someone else.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// Connected, but no response head in time: the owner is slow (its origin is).
    #[error("peer did not answer in time")]
    Timeout,
    /// It answers probes but is not working on the request: ask the next holder.
    #[error("peer answers probes but not the request: {0}")]
    Stalled(String),
}

/// A signed probe that names the key a forwarded request is for (see
/// [`super::progress`]): its path and query, and its headers.
pub(crate) type ProgressCheck<'a> = &'a (dyn Fn() -> (String, HeaderMap) + Send + Sync);

/// Why a small exchange with a peer (probe, purge fan-out) got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    #[error("timed out")]
    TimedOut,
    #[error("{0}")]
    Failed(String),
}

type PeerBody = Full<Bytes>;

#[derive(Clone)]
pub(crate) struct PeerClient {
    client: Client<HttpConnector, PeerBody>,
    /// The same, reading answers in small frames ([`Reads::Small`]).
    small: Client<HttpConnector, PeerBody>,
}

/// How the answer to a forwarded request is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reads {
    /// In frames as large as the connection gives (hyper grows them to about 400 KiB): the
    /// fewest wake-ups, for a body read as fast as it comes.
    Large,
    /// In frames of about [`SMALL_READS`] (hyper's read buffer bound; a frame is at most
    /// twice that): a chunk sent to its client as it arrives. At each step on the way (the
    /// connection's read buffer, the fill, the response's window, the client connection's
    /// write queue) a client that reads slowly holds a frame or so of it. 50 slow clients of
    /// one object through a node that does not own it grew it by 57-103 MiB with large
    /// frames, by 22-38 MiB with these (its read-ahead budget, 38 MiB, included).
    Small,
}

/// The read buffer bound of [`Reads::Small`] connections.
const SMALL_READS: usize = 64 << 10;

impl Default for PeerClient {
    fn default() -> Self {
        Self::new()
    }
}

impl PeerClient {
    pub(crate) fn new() -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(1)));
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new());
        let client = builder.build(http.clone());
        let small = builder.http1_max_buf_size(SMALL_READS).build(http);
        Self { client, small }
    }

    /// This client, reading the answers it forwards as `reads` says (each kind over
    /// connections of its own).
    pub(crate) fn reading(&self, reads: Reads) -> Self {
        match reads {
            Reads::Large => self.clone(),
            Reads::Small => Self {
                client: self.small.clone(),
                small: self.small.clone(),
            },
        }
    }

    /// Forward a fill to its owner and wait for the response head, at most `timeout` (the
    /// owner may be waiting on a slow origin). A hung owner (stopped, wedged) still accepts
    /// connections, so its silence looks like a slow origin. Each `peer_timeout` without a
    /// head, unless it answered another request meanwhile, the owner is asked with `check`
    /// (a probe naming the key) whether it is working on this request: yes, the wait goes on;
    /// no (its request path is stuck behind a probe handler that answers), the request goes
    /// to the next holder after about twice `peer_timeout` ([`PeerError::Stalled`]); no
    /// answer at all, it is ejected ([`PeerError::Unreachable`]).
    pub(crate) async fn forward(
        &self,
        peer: &Peer,
        request: &OriginRequest,
        hop: HeaderValue,
        peer_timeout: Duration,
        timeout: Duration,
        check: ProgressCheck<'_>,
    ) -> Result<Response<Incoming>, PeerError> {
        let mut headers = request.headers.clone();
        headers.insert(HOP_HEADER, hop);
        let uri = peer_uri(peer.addr, request.path_and_query.as_str())
            .ok_or_else(|| PeerError::Unreachable("bad peer URI".to_owned()))?;
        let mut outgoing = Request::new(Full::new(Bytes::new()));
        *outgoing.method_mut() = request.method.clone();
        *outgoing.uri_mut() = uri;
        *outgoing.headers_mut() = headers;
        let started = Instant::now();
        let sent = self.client.request(outgoing);
        tokio::pin!(sent);
        let answered = loop {
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                break Err(());
            }
            if let Ok(answer) = tokio::time::timeout(peer_timeout.min(left), &mut sent).await {
                break Ok(answer);
            }
            // Answering other requests just now: alive and serving, busy or waiting on its
            // origin for this one.
            if peer.silent_to_requests() < peer_timeout {
                continue;
            }
            let (target, headers) = check();
            let probe = self.exchange(
                peer.addr,
                Method::GET,
                &target,
                headers,
                Bytes::new(),
                peer_timeout,
            );
            match probe.await {
                Ok((StatusCode::OK, body)) if says_working(&body) => {
                    peer.heard();
                    continue;
                }
                Ok((StatusCode::OK, _)) => {
                    peer.heard();
                    peer.metrics.request(PeerOutcome::Timeout);
                    let why = "not working on it after peer_timeout";
                    peer.stall(why);
                    return Err(PeerError::Stalled(why.to_owned()));
                }
                // Draining: it still serves what it holds, this request among them; it is
                // out of the live set but stays asked as the leaving holder, not ejected.
                Ok((StatusCode::SERVICE_UNAVAILABLE, body)) if says_leaving(&body) => {
                    peer.leave();
                    continue;
                }
                _ => {}
            }
            peer.metrics.request(PeerOutcome::Unreachable);
            let why = format!(
                "silent for peer_timeout ({} ms), also to a probe",
                peer_timeout.as_millis()
            );
            peer.eject(&why);
            return Err(PeerError::Unreachable(why));
        };
        match answered {
            Ok(Ok(response)) => {
                peer.heard();
                peer.last_response_ms
                    .store(monotonic_ms(), Ordering::Relaxed);
                peer.stalled.store(0, Ordering::Relaxed);
                peer.metrics.request(PeerOutcome::Response);
                // Answering requests: a late probe before this one says nothing.
                peer.late_probes.store(0, Ordering::Relaxed);
                peer.metrics
                    .duration
                    .observe(started.elapsed().as_secs_f64());
                Ok(response)
            }
            Ok(Err(e)) => {
                peer.metrics.request(PeerOutcome::Unreachable);
                let why = error_chain(&e);
                peer.eject(&why);
                Err(PeerError::Unreachable(why))
            }
            Err(_) => {
                peer.metrics.request(PeerOutcome::Timeout);
                peer.stall("no response head within the origin's first-byte timeout");
                Err(PeerError::Timeout)
            }
        }
    }

    /// One health probe: alive if the peer answers its probe path in time.
    pub(crate) async fn probe(&self, peer: &Peer, timeout: Duration) {
        self.probe_with(peer, timeout, PROBE_PATH, HeaderMap::new())
            .await;
    }

    /// A health probe to `target` (the probe path and a query) with `headers` (a signature):
    /// the peer's state follows its answer, and a 200's body comes back.
    pub(crate) async fn probe_with(
        &self,
        peer: &Peer,
        timeout: Duration,
        target: &str,
        headers: HeaderMap,
    ) -> Option<Bytes> {
        let answer = self
            .exchange(
                peer.addr,
                Method::GET,
                target,
                headers,
                Bytes::new(),
                timeout,
            )
            .await;
        match answer {
            Ok((StatusCode::OK, body)) => {
                let name = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["name"].as_str().map(str::to_owned));
                if name.is_some() {
                    *lock(&peer.name) = name;
                }
                peer.answered();
                return Some(body);
            }
            Ok((StatusCode::SERVICE_UNAVAILABLE, body)) if says_leaving(&body) => peer.leave(),
            Ok((status, _)) => peer.eject(&format!("probe answered {status}")),
            Err(ExchangeError::TimedOut) => peer.probe_late(),
            Err(ExchangeError::Failed(why)) => peer.eject(&why),
        }
        None
    }

    /// A small request with a whole body each way (probes, purge fan-out).
    pub(crate) async fn exchange(
        &self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), ExchangeError> {
        let failed = ExchangeError::Failed;
        let uri = peer_uri(addr, path).ok_or_else(|| failed("bad peer URI".to_owned()))?;
        let mut outgoing = Request::new(Full::new(body));
        *outgoing.method_mut() = method;
        *outgoing.uri_mut() = uri;
        *outgoing.headers_mut() = headers;
        let exchange = async {
            let response = self
                .client
                .request(outgoing)
                .await
                .map_err(|e| failed(error_chain(&e)))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| failed(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ExchangeError::TimedOut)?
    }
}

fn peer_uri(addr: SocketAddr, path: &str) -> Option<Uri> {
    format!("http://{addr}{path}").parse().ok()
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// The largest frame of a 4 MiB body, sent at once by a server on loopback, as `reads`
    /// reads it.
    async fn largest_frame(reads: Reads) -> usize {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).await.expect("request");
                head.push(byte[0]);
            }
            let body = vec![7u8; 4 << 20];
            let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            stream.write_all(answer.as_bytes()).await.expect("head");
            stream.write_all(&body).await.expect("body");
        });
        let client = PeerClient::new().reading(reads);
        let request = Request::get(format!("http://{addr}/big"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let mut body = client
            .client
            .request(request)
            .await
            .expect("answer")
            .into_body();
        let (mut largest, mut total) = (0, 0);
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("frame").into_data() {
                largest = largest.max(data.len());
                total += data.len();
            }
        }
        assert_eq!(total, 4 << 20);
        server.await.expect("server");
        largest
    }

    #[tokio::test]
    async fn small_reads_take_a_peer_answer_in_small_frames() {
        // hyper reads into its buffer's spare room, up to about twice its bound (120 KiB
        // measured here, against 504 KiB read large).
        assert!(largest_frame(Reads::Small).await <= 2 * SMALL_READS);
        // What the small ones are not: a fast body grows the frames past them.
        assert!(largest_frame(Reads::Large).await > 2 * SMALL_READS);
    }
}
