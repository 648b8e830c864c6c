//! `outpost demo`: a self-contained demo that needs no setup. It starts a small origin on
//! 127.0.0.1:8081 and a 3-node cluster in front of it (the embedded `config/demo.toml` is the
//! first node; the other two are derived from it), then prints what to try.

use std::convert::Infallible;
use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::config::{Config, ConfigError};
use crate::runtime::{Listeners, RunError};

pub(crate) const CONFIG: &str = include_str!("../config/demo.toml");
pub(crate) const ORIGIN_ADDR: &str = "127.0.0.1:8081";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("demo origin cannot listen on {ORIGIN_ADDR}: {0}")]
    Origin(std::io::Error),
}

pub(crate) fn config() -> Result<Config, ConfigError> {
    Config::parse(CONFIG, "<embedded demo.toml>", Path::new("."))
}

/// The demo's nodes: `(http, admin)` of demo-1, demo-2, demo-3.
pub(crate) const NODES: [(&str, &str); 3] = [
    ("127.0.0.1:8080", "127.0.0.1:9090"),
    ("127.0.0.1:8082", "127.0.0.1:9091"),
    ("127.0.0.1:8083", "127.0.0.1:9092"),
];

/// The configuration of demo node `i` (0-based): the embedded one with its own name and
/// addresses.
pub(crate) fn node_config(i: usize) -> Result<Config, ConfigError> {
    let mut config = config()?;
    let (http, admin) = NODES[i % NODES.len()];
    // Constant, valid socket addresses.
    let (http, admin) = (
        http.parse()
            .unwrap_or(std::net::SocketAddr::from(([127, 0, 0, 1], 8080))),
        admin.parse().ok(),
    );
    config.node.name = format!("demo-{}", i + 1);
    config.listen.http = vec![http];
    config.admin.listen = admin;
    if let Some(cluster) = &mut config.cluster {
        cluster.advertise = http;
    }
    Ok(config)
}

/// Run the demo until `shutdown` completes.
pub async fn run(shutdown: impl std::future::Future<Output = ()> + Send) -> Result<(), DemoError> {
    let origin = TcpListener::bind(ORIGIN_ADDR)
        .await
        .map_err(DemoError::Origin)?;
    tokio::spawn(serve_origin(origin));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut nodes = tokio::task::JoinSet::new();
    for i in 0..NODES.len() {
        let config = node_config(i)?;
        let listeners = Listeners::bind(&config).await?;
        let mut stopped = stopped.clone();
        nodes.spawn(crate::runtime::run(config, listeners, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
    }
    println!("{}", instructions(&config()?));
    shutdown.await;
    let _ = stop.send(true);
    while let Some(done) = nodes.join_next().await {
        if let Ok(result) = done {
            result?;
        }
    }
    Ok(())
}

fn instructions(config: &Config) -> String {
    let token = config.admin.token.clone().unwrap_or_default();
    let [(one, admin), (two, admin2), (three, _)] = NODES;
    format!(
        "Outpost demo: a 3-node cluster (demo-1 http://{one}, demo-2 http://{two}, demo-3 http://{three})\n\
         in front of a demo origin on http://{ORIGIN_ADDR}. Each object has one owner node; the others ask it.\n\
         \n\
         Try:\n\
         \x20 curl -si http://{one}/hello -H 'Host: localhost'   # a miss (Cache-Status: ...; fwd=uri-miss; stored)\n\
         \x20 curl -si http://{two}/hello -H 'Host: localhost'   # through another node: the owner's hit, one hop\n\
         \x20 curl -s 'http://{admin}/cluster/owner?url=http://localhost/hello'   # which node owns it\n\
         \x20 curl -s http://{admin2}/cluster                    # members, health, ring shares\n\
         \x20 curl -si http://{one}/hello -H 'Host: localhost'   # again: a hit, with Age\n\
         \x20 curl -si http://{one}/hello -H 'Range: bytes=0-4'      # 206 from the cache\n\
         \x20 curl -si http://{one}/private        # not stored (Cache-Control: private)\n\
         \x20 for i in $(seq 5); do curl -s -o /dev/null -w '%{{http_code}}\\n' http://{one}/slow & done; wait\n\
         \x20                                       # 5 clients, one origin fetch (1 s origin)\n\
         \x20 curl -si -X POST http://{admin}/purge -H 'Authorization: Bearer {token}' \\\n\
         \x20      -d '{{\"urls\": [\"http://localhost/hello\"]}}'    # purged on all 3 nodes\n\
         \x20 curl -s http://{admin}/metrics | grep -E 'outpost_(requests|peer_requests)_total'\n\
         \n\
         Ctrl-C stops it.",
    )
}

async fn serve_origin(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = service_fn(|req| async move { Ok::<_, Infallible>(origin(req).await) });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn origin(request: Request<Incoming>) -> Response<Full<Bytes>> {
    let now = httpdate::fmt_http_date(SystemTime::now());
    let (status, cache_control, body) = match request.uri().path() {
        "/" | "/hello" => (
            StatusCode::OK,
            "public, max-age=60",
            "hello from the demo origin\n".to_owned(),
        ),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            (
                StatusCode::OK,
                "max-age=30",
                format!("slow response generated at {now}\n"),
            )
        }
        "/time" => (StatusCode::OK, "max-age=5", format!("{now}\n")),
        "/private" => (
            StatusCode::OK,
            "private",
            format!("only for you, at {now}\n"),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "max-age=10",
            "not found\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static(cache_control),
    );
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::ETAG,
        header::HeaderValue::from_static("\"demo-v1\""),
    );
    response
}
