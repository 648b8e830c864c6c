//! The integration harness: a programmable origin, a node started in-process on port 0, and
//! real HTTP clients (hyper h1, h2 prior knowledge, TLS with the test CA).

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use outpost::config::Config;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

pub fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

// ---------------------------------------------------------------------------------------------
// Origin

/// What the origin saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    /// A request header as text; empty when absent.
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }
}

/// How the origin answers.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: ReplyBody,
    pub delay: Duration,
}

pub enum ReplyBody {
    Full(Bytes),
    /// Sent as chunks (no Content-Length unless a header says so), `gap` apart.
    Chunks(Vec<Bytes>, Duration),
    /// Announces `len` bytes, sends `first`, then breaks the connection.
    Broken {
        first: Bytes,
        len: u64,
    },
}

impl Reply {
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            body: ReplyBody::Full(body.into()),
            delay: Duration::ZERO,
        }
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Without any `name` field set so far.
    pub fn without_header(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    pub fn cache(self, cache_control: &str) -> Self {
        self.header("cache-control", cache_control)
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn body(mut self, body: ReplyBody) -> Self {
        self.body = body;
        self
    }
}

type Route = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

/// A real HTTP/1.1 + h2c origin on loopback that records what it receives.
pub struct Origin {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _stop: oneshot::Sender<()>,
}

impl Origin {
    /// `route(request, n)` answers the n-th request (1-based) for that path.
    pub async fn start(route: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let route: Route = Arc::new(route);
        let (stop, mut stopped) = oneshot::channel::<()>();
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    _ = &mut stopped => return,
                };
                let route = route.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let route = route.clone();
                        let log = log.clone();
                        async move { Ok::<_, Infallible>(answer(req, &route, &log).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            _stop: stop,
        }
    }

    /// Answers every path with a fixed body and Cache-Control.
    pub async fn fixed(body: &'static str, cache_control: &'static str) -> Self {
        Self::start(move |_, _| Reply::ok(body).cache(cache_control)).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("origin log").clone()
    }

    /// Requests received for `path` (path and query).
    pub fn count(&self, path: &str) -> usize {
        self.requests().iter().filter(|s| s.path == path).count()
    }

    /// Requests received whose path (and query) starts with `prefix`.
    pub fn count_prefix(&self, prefix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|s| s.path.starts_with(prefix))
            .count()
    }

    pub fn total(&self) -> usize {
        self.requests().len()
    }

    pub fn last(&self, path: &str) -> Seen {
        self.requests()
            .into_iter()
            .rev()
            .find(|s| s.path == path)
            .unwrap_or_else(|| panic!("origin saw no request for {path}"))
    }
}

async fn answer(
    req: Request<Incoming>,
    route: &Route,
    log: &Mutex<Vec<Seen>>,
) -> Response<BoxBody<Bytes, Error>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let seen = Seen {
        method: parts.method,
        path: parts
            .uri
            .path_and_query()
            .map_or("/".into(), |p| p.as_str().to_owned()),
        headers: parts.headers,
        body,
    };
    let n = {
        let mut log = log.lock().expect("origin log");
        log.push(seen.clone());
        log.iter().filter(|s| s.path == seen.path).count()
    };
    let reply = route(&seen, n);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let body: BoxBody<Bytes, Error> = match reply.body {
        ReplyBody::Full(b) => Full::new(b).map_err(|e| match e {}).boxed(),
        ReplyBody::Chunks(chunks, gap) => {
            let s = stream::unfold(chunks.into_iter(), move |mut it| async move {
                let next = it.next()?;
                tokio::time::sleep(gap).await;
                Some((Ok::<_, Error>(Frame::data(next)), it))
            });
            StreamBody::new(s).boxed()
        }
        ReplyBody::Broken { first, .. } => {
            let s = stream::iter(vec![
                Ok::<_, Error>(Frame::data(first)),
                Err::<Frame<Bytes>, Error>("origin breaks the body".into()),
            ]);
            StreamBody::new(s).boxed()
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(reply.status).expect("status");
    for (name, value) in reply.headers {
        response.headers_mut().append(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).expect("value"),
        );
    }
    response
}

/// A TCP "origin" that answers every connection with `raw` bytes and closes.
pub async fn raw_origin(raw: &'static [u8]) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind raw origin");
    let addr = listener.local_addr().expect("raw addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(raw).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// An address nothing listens on.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

// ---------------------------------------------------------------------------------------------
// Node

/// A node running in-process on ephemeral ports.
pub struct Node {
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// A config whose site uses the long `[site.origin]` form: `origin_extra` are more keys
/// there, `extra` more top-level tables (before the site).
pub fn long_form_config(servers: &[String], origin_extra: &str, extra: &str) -> String {
    let servers: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        r#"
[node]
name = "edge-test"
[admin]
token = "secret"
{extra}
[[site]]
name = "test"
hosts = ["example.test", "*.wild.test"]
[site.origin]
servers = [{}]
{origin_extra}
"#,
        servers.join(", ")
    )
}

/// A config for one site `hosts` in front of `origin`, with an admin token "secret".
pub fn site_config(origin: &str, extra: &str) -> String {
    format!(
        r#"
[node]
name = "edge-test"
[admin]
token = "secret"
{extra}
[[site]]
name = "test"
hosts = ["example.test", "*.wild.test"]
origin = ["{origin}"]
"#
    )
}

impl Node {
    pub async fn start(toml: &str) -> Self {
        Self::start_tls(toml, false).await
    }

    pub async fn start_tls(toml: &str, https: bool) -> Self {
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::start_on(toml, https, http).await
    }

    /// Start on an http listener bound by the caller (cluster members know each other's
    /// addresses before they start).
    pub async fn start_on(toml: &str, https: bool, http: TcpListener) -> Self {
        Self::start_with(toml, https, http, None).await
    }

    /// Start with an HTTP/3 socket too (the config names its address in `listen.quic`).
    pub async fn start_quic(toml: &str, quic: std::net::UdpSocket) -> Self {
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::start_with(toml, true, http, Some(quic)).await
    }

    async fn start_with(
        toml: &str,
        https: bool,
        http: TcpListener,
        quic: Option<std::net::UdpSocket>,
    ) -> Self {
        let config = Config::parse(toml, "test.toml", &fixtures().join("tls"))
            .unwrap_or_else(|e| panic!("test config: {e}"));
        let bind = || async { TcpListener::bind("127.0.0.1:0").await.expect("bind") };
        let admin = bind().await;
        let tls = if https { Some(bind().await) } else { None };
        let addrs = (
            http.local_addr().expect("addr"),
            tls.as_ref().map(|l| l.local_addr().expect("addr")),
            admin.local_addr().expect("addr"),
        );
        let listeners = outpost::Listeners {
            http: vec![http],
            https: tls.into_iter().collect(),
            quic: quic.into_iter().collect(),
            admin: Some(admin),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            outpost::run(config, listeners, async {
                let _ = stopped.await;
            })
            .await
            .expect("node run");
        });
        Self {
            http: addrs.0,
            https: addrs.1,
            admin: addrs.2,
            stop: Some(stop),
            task,
        }
    }

    /// Drain and wait for the node to return.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// The admin `/metrics` page (classic text format).
    pub async fn metrics(&self) -> String {
        let r = send(
            self.admin,
            Method::GET,
            "/metrics",
            "admin",
            &[],
            Bytes::new(),
        )
        .await;
        String::from_utf8(r.body.to_vec()).expect("utf-8 metrics")
    }

    /// Value of one sample line of `/metrics` (e.g. `outpost_requests_total{site="test",cache="hit"}`).
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(sample)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

impl Resp {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn cache_status(&self) -> &str {
        self.header("cache-status")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn request(
    method: Method,
    addr: SocketAddr,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("host", host);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Full::new(body)).expect("request")
}

pub async fn collect(response: Response<Incoming>) -> Result<Resp, Error> {
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Resp {
        status: parts.status,
        headers: parts.headers,
        body,
        version: parts.version,
    })
}

/// One HTTP/1.1 request; panics on transport errors.
pub async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Resp {
    try_send(addr, method, path, host, headers, body)
        .await
        .expect("request failed")
}

pub async fn try_send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Resp, Error> {
    let response = client()
        .request(request(method, addr, path, host, headers, body))
        .await?;
    collect(response).await
}

/// GET through the node for host `example.test`.
pub async fn get(node: &Node, path: &str) -> Resp {
    send(
        node.http,
        Method::GET,
        path,
        "example.test",
        &[],
        Bytes::new(),
    )
    .await
}

pub async fn get_with(node: &Node, path: &str, headers: &[(&str, &str)]) -> Resp {
    send(
        node.http,
        Method::GET,
        path,
        "example.test",
        headers,
        Bytes::new(),
    )
    .await
}

/// A GET over HTTP/2 with prior knowledge (h2c).
pub async fn get_h2c(addr: SocketAddr, path: &str, authority: &str) -> Resp {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = Request::builder()
        .uri(format!("http://{authority}{path}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    // The URI names the site; connect to the node's address through a fixed connector.
    let mut connector = HttpConnector::new();
    connector.enforce_http(false);
    let _ = client;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(FixedAddr(addr, connector));
    collect(client.request(req).await.expect("h2c request"))
        .await
        .expect("h2c body")
}

/// A connector that always dials one address, whatever the URI says (so the URI can carry
/// the site's authority).
#[derive(Clone)]
pub struct FixedAddr(pub SocketAddr, pub HttpConnector);

impl tower_service::Service<http::Uri> for FixedAddr {
    type Response = <HttpConnector as tower_service::Service<http::Uri>>::Response;
    type Error = <HttpConnector as tower_service::Service<http::Uri>>::Error;
    type Future = <HttpConnector as tower_service::Service<http::Uri>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.1.poll_ready(cx)
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let uri: http::Uri = format!("http://{}", self.0).parse().expect("uri");
        self.1.call(uri)
    }
}

/// Poll `check` every 10 ms until it holds, for effects that complete after a response was
/// sent and have no event to await (a fill storing its entry, a metric, a peer probe). Panics
/// naming `what` once `within` has passed.
pub async fn wait_until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`wait_until`] with the usual bound, 5 s.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_until(what, Duration::from_secs(5), check).await;
}

pub fn count_map(items: impl IntoIterator<Item = String>) -> HashMap<String, usize> {
    let mut map = HashMap::new();
    for item in items {
        *map.entry(item).or_insert(0) += 1;
    }
    map
}
