//! `outpost demo`: a self-contained demo that needs no setup. It starts a small origin on
//! 127.0.0.1:8081 and a 3-node cluster in front of it (the embedded `config/demo.toml` is the
//! first node; the other two are derived from it), then prints what to try.
//!
//! `outpost demo --regions` shows the shield tier instead, on other ports: an origin on
//! 127.0.0.1:8181, a shield node, and two regions of two nodes each that fill from it.

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
    #[error("demo origin cannot listen on {0}: {1}")]
    Origin(&'static str, std::io::Error),
}

/// Which demo: one cluster, or two regions and a shield.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demo {
    Cluster,
    Regions,
}

/// The regions demo's origin.
pub(crate) const REGIONS_ORIGIN_ADDR: &str = "127.0.0.1:8181";

/// The regions demo's nodes: `(name, region, http, admin)`. The first is the shield; each
/// region is a cluster of its own two nodes.
pub(crate) const REGION_NODES: [(&str, &str, u16, u16); 5] = [
    ("shield-1", "eu-central", 8180, 9180),
    ("west-1", "eu-west", 8182, 9182),
    ("west-2", "eu-west", 8183, 9183),
    ("east-1", "us-east", 8184, 9184),
    ("east-2", "us-east", 8185, 9185),
];

fn loopback(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// The configuration of regions-demo node `i`: the embedded one, renamed and readdressed,
/// each region its own cluster, the edges' site filling from the shield.
pub(crate) fn region_config(i: usize) -> Result<Config, ConfigError> {
    let text = CONFIG.replace(
        &format!("http://{ORIGIN_ADDR}"),
        &format!("http://{REGIONS_ORIGIN_ADDR}"),
    );
    let mut config = Config::parse(&text, "<embedded demo.toml>", Path::new("."))?;
    let (name, region, http, admin) = REGION_NODES[i % REGION_NODES.len()];
    config.node.name = name.to_owned();
    config.node.region = Some(region.to_owned());
    config.listen.http = vec![loopback(http)];
    config.admin.listen = Some(loopback(admin));
    let members: Vec<_> = REGION_NODES
        .iter()
        .filter(|(_, r, _, _)| *r == region)
        .map(|(_, _, port, _)| loopback(*port))
        .collect();
    let shield = loopback(REGION_NODES[0].2);
    if let Some(cluster) = &mut config.cluster {
        cluster.advertise = loopback(http);
        cluster.members = crate::config::Members::Static(members);
    }
    if i != 0 {
        for site in &mut config.sites {
            site.shield = vec![shield];
        }
    }
    Ok(config)
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
pub async fn run(
    demo: Demo,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), DemoError> {
    let (origin_addr, count) = match demo {
        Demo::Cluster => (ORIGIN_ADDR, NODES.len()),
        Demo::Regions => (REGIONS_ORIGIN_ADDR, REGION_NODES.len()),
    };
    let origin = TcpListener::bind(origin_addr)
        .await
        .map_err(|e| DemoError::Origin(origin_addr, e))?;
    tokio::spawn(serve_origin(origin));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut nodes = tokio::task::JoinSet::new();
    for i in 0..count {
        let config = match demo {
            Demo::Cluster => node_config(i)?,
            Demo::Regions => region_config(i)?,
        };
        let listeners = Listeners::bind(&config).await?;
        let mut stopped = stopped.clone();
        nodes.spawn(crate::runtime::run(config, listeners, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
    }
    match demo {
        Demo::Cluster => println!("{}", instructions(&config()?)),
        Demo::Regions => println!("{}", region_instructions()),
    }
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

fn region_instructions() -> String {
    let port = |i: usize| REGION_NODES[i].2;
    let admin = |i: usize| REGION_NODES[i].3;
    let (shield, west, east, east2) = (port(0), port(1), port(3), port(4));
    format!(
        "Outpost demo, two regions and a shield: shield-1 (eu-central) http://127.0.0.1:{shield},\n\
         eu-west: west-1 http://127.0.0.1:{west}, west-2 http://127.0.0.1:{w2}; \
         us-east: east-1 http://127.0.0.1:{east}, east-2 http://127.0.0.1:{east2}.\n\
         Each region is a cluster; on a miss, a region's owner asks the shield, which asks the origin \
         (http://{REGIONS_ORIGIN_ADDR}).\n\
         \n\
         Try:\n\
         \x20 curl -si http://127.0.0.1:{west}/hello -H 'Host: localhost'   # eu-west fills from the shield, which fills from the origin\n\
         \x20 curl -si http://127.0.0.1:{east}/hello -H 'Host: localhost'   # us-east fills from the shield: Cache-Status starts with shield-1; hit\n\
         \x20 curl -si http://127.0.0.1:{east2}/hello -H 'Host: localhost'  # now a hit in us-east itself\n\
         \x20 curl -s http://127.0.0.1:{a3}/cluster                  # region, members, shields and their health\n\
         \x20 curl -s http://127.0.0.1:{a3}/metrics | grep -E 'outpost_(shield_requests|node_info)'\n\
         \n\
         Ctrl-C stops it.",
        w2 = port(2),
        a3 = admin(3),
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
