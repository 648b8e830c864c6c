//! `outpost demo`: a self-contained demo that needs no setup. It starts a small origin on
//! 127.0.0.1:8081 and a 3-node cluster in front of it (the embedded `config/demo.toml` is the
//! first node; the other two are derived from it), then prints what to try, naming the node
//! that owns the object the lines use.
//!
//! `outpost demo --regions` shows the shield tier instead, on other ports: an origin on
//! 127.0.0.1:8181, a shield node, and two regions of two nodes each that fill from it.
//!
//! Every address is an offset from one base port (8080, or 8180 with `--regions`), so
//! `--base-port` moves a whole demo off ports another program holds.

use std::convert::Infallible;
use std::net::SocketAddr;
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
/// The origin `config/demo.toml` names; the demo points it at its own.
const CONFIG_ORIGIN: &str = "http://127.0.0.1:8081";

/// How far above the base port the admin listeners start (the default cluster demo's are
/// 9090-9092, the regions demo's 9180-9185).
const ADMIN_OFFSET: u16 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(
        "the demo needs {addr}, which another program holds ({error}); stop it, or move the \
         whole demo: outpost demo{regions} --base-port {suggest}",
        regions = if *.demo == Demo::Regions { " --regions" } else { "" }
    )]
    Busy {
        demo: Demo,
        addr: SocketAddr,
        error: std::io::Error,
        suggest: u16,
    },
    #[error(
        "--base-port {base}: the demo uses ports {base} to {last}; give one from 1024 to {max}"
    )]
    BasePort { base: u16, last: u32, max: u16 },
}

/// Which demo: one cluster, or two regions and a shield.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demo {
    Cluster,
    Regions,
}

/// One node of a demo.
#[derive(Debug, Clone)]
pub struct DemoNode {
    pub name: &'static str,
    /// Its region (the regions demo).
    pub region: Option<&'static str>,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

/// The cluster demo's nodes: name and offset of its HTTP port (the origin takes 1).
const CLUSTER_NODES: [(&str, u16); 3] = [("demo-1", 0), ("demo-2", 2), ("demo-3", 3)];
/// The regions demo's nodes: the shield first, then two regions of two nodes each.
const REGION_NODES: [(&str, &str, u16); 5] = [
    ("shield-1", "eu-central", 0),
    ("west-1", "eu-west", 2),
    ("west-2", "eu-west", 3),
    ("east-1", "us-east", 4),
    ("east-2", "us-east", 5),
];

/// Where a demo listens: everything at an offset from one base port.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub demo: Demo,
    base: u16,
}

impl Layout {
    /// The demo's layout from `base` (its default when `None`), refused when a port would
    /// fall outside 1024..=65535.
    pub fn new(demo: Demo, base: Option<u16>) -> Result<Layout, DemoError> {
        let base = base.unwrap_or(match demo {
            Demo::Cluster => 8080,
            Demo::Regions => 8180,
        });
        let layout = Layout { demo, base };
        let span = layout.span();
        let max = u16::MAX - span;
        if base < 1024 || base > max {
            return Err(DemoError::BasePort {
                base,
                last: u32::from(base) + u32::from(span),
                max,
            });
        }
        Ok(layout)
    }

    /// The highest offset used.
    fn span(&self) -> u16 {
        match self.demo {
            // demo-3's admin port, 9092 by default.
            Demo::Cluster => ADMIN_OFFSET + 12,
            Demo::Regions => ADMIN_OFFSET + 5,
        }
    }

    fn at(&self, offset: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base + offset))
    }

    pub fn origin(&self) -> SocketAddr {
        self.at(1)
    }

    pub fn nodes(&self) -> Vec<DemoNode> {
        match self.demo {
            Demo::Cluster => CLUSTER_NODES
                .iter()
                .zip(0u16..)
                .map(|(&(name, offset), i)| DemoNode {
                    name,
                    region: None,
                    http: self.at(offset),
                    admin: self.at(ADMIN_OFFSET + 10 + i),
                })
                .collect(),
            Demo::Regions => REGION_NODES
                .iter()
                .map(|&(name, region, offset)| DemoNode {
                    name,
                    region: Some(region),
                    http: self.at(offset),
                    admin: self.at(ADMIN_OFFSET + offset),
                })
                .collect(),
        }
    }

    /// Every port the demo takes, the origin's first.
    fn addresses(&self) -> Vec<SocketAddr> {
        let mut all = vec![self.origin()];
        for node in self.nodes() {
            all.extend([node.http, node.admin]);
        }
        all
    }

    /// A base port to suggest when one of ours is taken.
    fn elsewhere(&self) -> u16 {
        if self.base < 20000 {
            self.base + 10000
        } else {
            2000
        }
    }

    /// The configuration of node `i`: the embedded one with its name, addresses, origin and
    /// members; in the regions demo each region is a cluster of its own and the edges' site
    /// fills from the shield.
    pub fn config(&self, i: usize) -> Result<Config, ConfigError> {
        let origin = format!("http://{}", self.origin());
        let text = CONFIG.replace(CONFIG_ORIGIN, &origin);
        let mut config = Config::parse(&text, "<embedded demo.toml>", Path::new("."))?;
        let nodes = self.nodes();
        let me = &nodes[i % nodes.len()];
        config.node.name = me.name.to_owned();
        config.node.region = me.region.map(str::to_owned);
        config.listen.http = vec![me.http];
        config.admin.listen = Some(me.admin);
        let members: Vec<SocketAddr> = nodes
            .iter()
            .filter(|n| n.region == me.region)
            .map(|n| n.http)
            .collect();
        if let Some(cluster) = &mut config.cluster {
            cluster.advertise = me.http;
            cluster.members = crate::config::Members::Static(members);
        }
        if self.demo == Demo::Regions && i != 0 {
            for site in &mut config.sites {
                site.shield = vec![nodes[0].http];
            }
        }
        Ok(config)
    }

    /// The error for `addr`, which another program holds.
    fn busy(&self, addr: SocketAddr, error: std::io::Error) -> DemoError {
        DemoError::Busy {
            demo: self.demo,
            addr,
            error,
            suggest: self.elsewhere(),
        }
    }
}

/// Run the demo until `shutdown` completes.
pub async fn run(
    layout: Layout,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), DemoError> {
    // Every port first, so a busy one is named before anything starts.
    for addr in layout.addresses() {
        if let Err(error) = std::net::TcpListener::bind(addr) {
            return Err(layout.busy(addr, error));
        }
    }
    let origin = TcpListener::bind(layout.origin())
        .await
        .map_err(|e| layout.busy(layout.origin(), e))?;
    tokio::spawn(serve_origin(origin));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut nodes = tokio::task::JoinSet::new();
    for i in 0..layout.nodes().len() {
        let config = layout.config(i)?;
        let listeners = match Listeners::bind(&config).await {
            Ok(listeners) => listeners,
            Err(RunError::Bind(addr, error)) => return Err(layout.busy(addr, error)),
            Err(e) => return Err(e.into()),
        };
        let mut stopped = stopped.clone();
        nodes.spawn(crate::runtime::run(config, listeners, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
    }
    match layout.demo {
        Demo::Cluster => {
            let token = layout.config(0)?.admin.token.unwrap_or_default();
            let owner = owner_of(&layout, "http://localhost/hello").await;
            println!("{}", instructions(&layout, &token, owner));
        }
        Demo::Regions => println!("{}", region_instructions(&layout)),
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

/// Which of the cluster demo's nodes owns `url`, as its first node's admin API says (the
/// first node when it cannot say).
async fn owner_of(layout: &Layout, url: &str) -> usize {
    let nodes = layout.nodes();
    let client = crate::ops::client::AdminClient::new(crate::ops::Target {
        admin: nodes[0].admin,
        token: None,
    });
    let path = format!(
        "/cluster/owner?url={}",
        url.replace(':', "%3A").replace('/', "%2F")
    );
    let answer = tokio::time::timeout(Duration::from_secs(5), client.get_json(&path))
        .await
        .ok()
        .and_then(Result::ok);
    let address = answer.as_ref().and_then(|a| a["address"].as_str());
    nodes
        .iter()
        .position(|n| Some(n.http.to_string().as_str()) == address)
        .unwrap_or(0)
}

/// What to try in the cluster demo. `owner` is the node owning `/hello`: the first line goes
/// to another node, so the hop shows; every line says what it shows, and shows it.
fn instructions(layout: &Layout, token: &str, owner: usize) -> String {
    let nodes = layout.nodes();
    let name = |i: usize| nodes[i].name;
    let http = |i: usize| nodes[i].http;
    let (a, b) = ((owner + 1) % nodes.len(), (owner + 2) % nodes.len());
    let admin = nodes[a].admin;
    let origin = layout.origin();
    let members: Vec<String> = nodes
        .iter()
        .map(|n| format!("{} http://{}", n.name, n.http))
        .collect();
    let host = "-H 'Host: localhost'";
    format!(
        "Outpost demo: a 3-node cluster ({members}) in front of a demo origin on http://{origin}.\n\
         Each object has one owner node that fetches and stores it; the others ask the owner.\n\
         {owner_name} owns http://localhost/hello.\n\
         \n\
         Try:\n\
         \x20 curl -si http://{a_http}/hello {host}   # a miss: {a_name} asks {owner_name}, which fetches and stores it (Cache-Status: {owner_name}; fwd=uri-miss; ...; stored; ..., {a_name}; ...)\n\
         \x20 curl -si http://{b_http}/hello {host}   # through {b_name}: {owner_name}'s hit, one hop (Cache-Status: {owner_name}; hit; ..., {b_name}; ...)\n\
         \x20 curl -si http://{o_http}/hello {host}   # on {owner_name} itself: a hit, with Age\n\
         \x20 curl -s 'http://{admin}/cluster/owner?url=http://localhost/hello'   # which node owns it\n\
         \x20 {outpost} cluster --admin {admin}   # members, health, ring shares (curl -s http://{admin}/cluster for JSON)\n\
         \x20 curl -si http://{a_http}/hello {host} -H 'Range: bytes=0-4'   # 206 Partial Content from {owner_name}'s copy (Cache-Status: {owner_name}; hit; ..., {a_name}; ...)\n\
         \x20 curl -si http://{a_http}/private {host}   # not stored (Cache-Status: ...; detail=private)\n\
         \x20 for i in 1 2 3 4 5; do curl -s -o /dev/null -w '%{{http_code}} %header{{cache-status}}\\n' {host} http://{a_http}/slow & done; wait   # 5 clients, one origin fetch of 1 s (the other 4 say collapsed)\n\
         \x20 {outpost} purge --admin {admin} --token {token} http://localhost/hello   # purged on all 3 nodes, each one's answer (the API: POST http://{admin}/purge)\n\
         \x20 curl -si http://{a_http}/hello {host}   # a miss again after the purge\n\
         \x20 curl -s http://{admin}/metrics | grep -E '^outpost_(requests|peer_requests)_total' | grep -v ' 0$'   # requests by cache result, hops by peer\n\
         \x20 {outpost} top --admin {admin} --token {token}   # a live view of {a_name}, refreshed every second (Ctrl-C ends it)\n\
         \n\
         Ctrl-C stops it.",
        members = members.join(", "),
        owner_name = name(owner),
        a_name = name(a),
        b_name = name(b),
        a_http = http(a),
        b_http = http(b),
        o_http = http(owner),
        outpost = outpost_command(),
    )
}

/// How to run this binary from a shell: `outpost` when that is what `PATH` finds, else its
/// full path (a demo started with `cargo run`).
fn outpost_command() -> String {
    let Ok(me) = std::env::current_exe().and_then(|p| p.canonicalize()) else {
        return "outpost".to_owned();
    };
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("outpost"))
        .find(|p| p.is_file());
    match found.and_then(|p| p.canonicalize().ok()) {
        Some(on_path) if on_path == me => "outpost".to_owned(),
        _ => me.display().to_string(),
    }
}

fn region_instructions(layout: &Layout) -> String {
    let nodes = layout.nodes();
    let (shield, west, west2, east, east2) = (
        nodes[0].http,
        nodes[1].http,
        nodes[2].http,
        nodes[3].http,
        nodes[4].http,
    );
    let admin = nodes[3].admin;
    let origin = layout.origin();
    let host = "-H 'Host: localhost'";
    format!(
        "Outpost demo, two regions and a shield: shield-1 (eu-central) http://{shield},\n\
         eu-west: west-1 http://{west}, west-2 http://{west2}; \
         us-east: east-1 http://{east}, east-2 http://{east2}.\n\
         Each region is a cluster; on a miss, a region's owner asks the shield, which asks the origin \
         (http://{origin}).\n\
         \n\
         Try:\n\
         \x20 curl -si http://{west}/hello {host}   # eu-west fills from the shield, which fills from the origin (Cache-Status: shield-1; fwd=uri-miss; ...)\n\
         \x20 curl -si http://{east}/hello {host}   # us-east fills from the shield, which has it (Cache-Status: shield-1; hit; ...)\n\
         \x20 curl -si http://{east2}/hello {host}   # now a hit in us-east itself, no shield in Cache-Status\n\
         \x20 curl -s http://{admin}/cluster   # region, members, shields and their health\n\
         \x20 curl -s http://{admin}/metrics | grep -E '^outpost_(shield_requests|node_info)'   # requests to the shield, this node's region\n\
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
