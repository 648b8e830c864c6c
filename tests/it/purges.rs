//! Purges that are never lost, with real processes: a purge reaches another region, a node
//! that was stopped (its snapshot written), one that was frozen while the purge went out,
//! and a fill that was in flight; every row ends with the purged version gone from every
//! node, its peers killed so it cannot learn the purge from them. Bad input stays safe:
//! 10,000 URLs in one purge, a flood of purges, a peer that sends a broken log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;

use crate::harness::*;
use crate::util::{self, Outpost, TempDir, TempFile, free_port, wait_answering};

const SECRET: &str = "purges-test-cluster-secret";

/// An origin whose every object is `v<version>` with that entity tag (answering a matching
/// `If-None-Match` with 304); `version` changes when the test says, as a deploy would.
async fn versioned(delay: Option<(&'static str, Duration)>) -> (Origin, Arc<AtomicU32>) {
    let version = Arc::new(AtomicU32::new(1));
    let current = version.clone();
    let origin = Origin::start(move |seen, _| {
        let v = current.load(Ordering::SeqCst);
        let etag = format!("\"v{v}\"");
        if seen.header("if-none-match") == etag {
            return Reply::ok("")
                .status(304)
                .header("etag", etag)
                .cache("max-age=600");
        }
        let reply = Reply::ok(format!("v{v}"))
            .header("etag", etag)
            .cache("max-age=600");
        match delay {
            Some((path, by)) if seen.path == path => reply.delay(by),
            _ => reply,
        }
    })
    .await;
    (origin, version)
}

/// One real node.
struct Proc {
    http: SocketAddr,
    admin: SocketAddr,
    process: Outpost,
    file: TempFile,
}

impl Proc {
    fn spawn(http: SocketAddr, admin: SocketAddr, text: &str) -> Self {
        let file = TempFile::new("purges", text);
        let process = Outpost::spawn(&["run", "--config", &file.shown()]);
        Self {
            http,
            admin,
            process,
            file,
        }
    }

    async fn restart(&mut self) {
        self.process = Outpost::spawn(&["run", "--config", &self.file.shown()]);
        wait_answering(&mut self.process, self.admin, "/healthz", "admin").await;
    }

    async fn get(&self, path: &str) -> Resp {
        send(
            self.http,
            Method::GET,
            path,
            "example.test",
            &[],
            Bytes::new(),
        )
        .await
    }

    async fn ready(&self) -> bool {
        util::admin_get(self.admin, "/readyz", &[]).await.status == 200
    }
}

fn addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().expect("addr")
}

fn list(addrs: &[SocketAddr]) -> String {
    let quoted: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// What a node's file says: `cluster` and `site` are more keys of those tables, `extra` more
/// tables.
struct NodeText<'a> {
    name: &'a str,
    http: SocketAddr,
    admin: SocketAddr,
    peers: &'a [SocketAddr],
    cluster: &'a str,
    extra: &'a str,
    site: &'a str,
}

impl NodeText<'_> {
    fn render(&self, origin: &Origin) -> String {
        format!(
            r#"
[node]
name = "{name}"
[listen]
http = ["{http}"]
[admin]
listen = "{admin}"
token = "secret"
{extra}
[cluster]
advertise = "{http}"
peers = {peers}
secret = "{SECRET}"
probe_interval = "100ms"
replicate = "none"
{cluster}
[[site]]
hosts = ["example.test"]
origin = ["{origin}"]
{site}
"#,
            name = self.name,
            http = self.http,
            admin = self.admin,
            extra = self.extra,
            peers = list(self.peers),
            cluster = self.cluster,
            origin = origin.url(),
            site = self.site,
        )
    }
}

/// Wait until every node answers and says it is ready.
async fn all_ready(nodes: &mut [&mut Proc]) {
    for n in nodes.iter_mut() {
        wait_answering(&mut n.process, n.admin, "/healthz", "admin").await;
    }
    for n in nodes.iter() {
        wait_until("ready", Duration::from_secs(20), || n.ready()).await;
    }
}

/// Three nodes of one cluster with `replicas = 3` (each holds every object), `extra` more
/// `[cluster]` keys, `tables(i)` more tables for node `i`.
async fn three(origin: &Origin, extra: &str, tables: impl Fn(usize) -> String) -> Vec<Proc> {
    let https: Vec<SocketAddr> = (0..3).map(|_| addr()).collect();
    let mut nodes: Vec<Proc> = (0..3)
        .map(|i| {
            let admin = addr();
            let text = NodeText {
                name: &format!("node-{i}"),
                http: https[i],
                admin,
                peers: &https,
                cluster: &format!("replicas = 3\n{extra}"),
                extra: &tables(i),
                site: "",
            }
            .render(origin);
            Proc::spawn(https[i], admin, &text)
        })
        .collect();
    let mut refs: Vec<&mut Proc> = nodes.iter_mut().collect();
    all_ready(&mut refs).await;
    // Every node sees the others (signed probes both ways).
    for n in &nodes {
        let admin = n.admin;
        wait_until("every peer alive", Duration::from_secs(20), || async move {
            let r = util::admin_get(admin, "/cluster", &[]).await;
            let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let members = json["members"].as_array().cloned().unwrap_or_default();
            members.len() == 3 && members.iter().all(|m| m["alive"] == true)
        })
        .await;
    }
    nodes
}

/// Every node has a copy of `path` (the owner's pushes arrived): each answers it itself.
async fn held_everywhere(nodes: &[Proc], path: &str) {
    for n in nodes {
        let own_hit = format!("{}; hit", name_of(n));
        wait_until("a copy on every node", Duration::from_secs(10), || async {
            n.get(path).await.cache_status().starts_with(&own_hit)
        })
        .await;
    }
}

/// The node's name, from its config.
fn name_of(n: &Proc) -> String {
    let text = std::fs::read_to_string(n.file.path()).expect("config");
    text.lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("name")
        .to_owned()
}

async fn purge_url(admin: SocketAddr, path: &str) -> (serde_json::Value, Duration) {
    let started = Instant::now();
    let body = format!(r#"{{"urls": ["http://example.test{path}"]}}"#);
    let r = util::purge(admin, Some("secret"), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    (
        serde_json::from_slice(&r.body).expect("purge json"),
        started.elapsed(),
    )
}

/// Two edge regions of two nodes each share a shield; each region lists the other
/// (`[cluster.regions]`). A purge at a node of the first region reaches both nodes of the
/// second (and the shield): they serve the new version, not the hit they held.
#[tokio::test]
async fn a_purge_in_one_region_reaches_every_node_of_the_other() {
    let (origin, version) = versioned(None).await;
    let (shield_http, shield_admin) = (addr(), addr());
    let eu: Vec<SocketAddr> = (0..2).map(|_| addr()).collect();
    let us: Vec<SocketAddr> = (0..2).map(|_| addr()).collect();
    let regions =
        |name: &str, nodes: &[SocketAddr]| format!("[cluster.regions]\n{name} = {}", list(nodes));
    let shield_text = NodeText {
        name: "shield",
        http: shield_http,
        admin: shield_admin,
        peers: &[shield_http],
        cluster: &format!("{}\nus = {}", regions("eu", &eu), list(&us)),
        extra: "",
        site: "",
    }
    .render(&origin);
    let mut shield = Proc::spawn(shield_http, shield_admin, &shield_text);
    let site = format!("shield = [\"http://{shield_http}\"]");
    let mut edges = Vec::new();
    for (region, members, other, other_name) in [("eu", &eu, &us, "us"), ("us", &us, &eu, "eu")] {
        for (i, http) in members.iter().enumerate() {
            let admin = addr();
            let text = NodeText {
                name: &format!("{region}-{i}"),
                http: *http,
                admin,
                peers: members,
                cluster: &regions(other_name, other),
                extra: "",
                site: &site,
            }
            .render(&origin);
            edges.push(Proc::spawn(*http, admin, &text));
        }
    }
    let mut all: Vec<&mut Proc> = std::iter::once(&mut shield)
        .chain(edges.iter_mut())
        .collect();
    all_ready(&mut all).await;
    for n in &edges {
        assert_eq!(n.get("/p").await.text(), "v1");
    }
    assert_eq!(
        origin.count("/p"),
        1,
        "the shield fetched it once for both regions"
    );
    for n in &edges {
        let r = n.get("/p").await;
        assert_eq!(r.text(), "v1");
    }
    version.store(2, Ordering::SeqCst);
    let (answer, _) = purge_url(edges[0].admin, "/p").await;
    assert_eq!(answer["complete"], true, "{answer}");
    assert_eq!(
        answer["regions"]["us"].as_array().map(Vec::len),
        Some(2),
        "{answer}"
    );
    assert!(answer["shields"].is_array(), "{answer}");
    for n in &edges {
        let r = n.get("/p").await;
        assert_eq!(r.text(), "v2", "{}: {}", name_of(n), r.cache_status());
    }
    assert_eq!(origin.count("/p"), 2);
    for n in std::iter::once(&mut shield).chain(edges.iter_mut()) {
        n.process.sigkill();
    }
}

/// Three nodes that each hold the object (`replicas = 3`, `persist`): one stops with SIGTERM
/// (its snapshot written), the purge is taken by another, then the two others are killed and
/// the stopped node restarts, alone: it cannot learn the purge from anyone, so it asks the
/// origin before it serves what its snapshot holds, and serves the new version.
#[tokio::test]
async fn a_node_restarted_from_its_snapshot_never_serves_a_purge_it_missed() {
    let (origin, version) = versioned(None).await;
    let dirs: Vec<TempDir> = (0..3).map(|i| TempDir::new(&format!("row2-{i}"))).collect();
    let mut nodes = three(&origin, "", |i| {
        format!("[cache]\npersist = \"{}\"", dirs[i].0.display())
    })
    .await;
    for n in &nodes {
        assert_eq!(n.get("/r").await.text(), "v1");
    }
    held_everywhere(&nodes, "/r").await;
    assert_eq!(origin.count("/r"), 1);
    nodes[2].process.sigterm();
    nodes[2].process.wait_exit(Duration::from_secs(30)).await;
    assert!(dirs[2].0.join("cache.snapshot").exists());
    version.store(2, Ordering::SeqCst);
    let (answer, _) = purge_url(nodes[0].admin, "/r").await;
    assert_eq!(answer["complete"], false, "node-2 was down: {answer}");
    nodes[0].process.sigkill();
    nodes[1].process.sigkill();
    nodes[2].restart().await;
    wait_until("node-2 ready", Duration::from_secs(20), || nodes[2].ready()).await;
    let r = nodes[2].get("/r").await;
    assert_eq!(r.text(), "v2", "{}", r.cache_status());
    assert!(
        r.cache_status().contains("fwd="),
        "asked the origin: {}",
        r.cache_status()
    );
    nodes[2].process.sigkill();
}

/// Three nodes that each hold the object; one is frozen (SIGSTOP) while the purge goes out.
/// The purge waits out that node's lease before it answers, so by then the frozen node no
/// longer trusts its cache; thawed (SIGCONT) with its two peers gone, it asks the origin and
/// serves the new version.
#[tokio::test]
async fn a_node_frozen_while_a_purge_went_out_never_serves_the_purged_version() {
    let (origin, version) = versioned(None).await;
    let mut nodes = three(&origin, "purge_lease = \"1s\"", |_| String::new()).await;
    for n in &nodes {
        assert_eq!(n.get("/s").await.text(), "v1");
    }
    held_everywhere(&nodes, "/s").await;
    nodes[2].process.signal("STOP");
    version.store(2, Ordering::SeqCst);
    let (answer, took) = purge_url(nodes[0].admin, "/s").await;
    assert_eq!(answer["complete"], false, "{answer}");
    let unconfirmed = answer["unconfirmed"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(unconfirmed.len(), 1, "{answer}");
    assert_eq!(unconfirmed[0]["timed_out"], true, "{answer}");
    assert!(took >= Duration::from_secs(5), "answered after {took:?}");
    nodes[0].process.sigkill();
    nodes[1].process.sigkill();
    nodes[2].process.signal("CONT");
    let r = nodes[2].get("/s").await;
    assert_eq!(r.text(), "v2", "{}", r.cache_status());
    nodes[2].process.sigkill();
}

/// A purge while the owner's fill is in flight (the origin answers slowly): the response in
/// flight goes to the request that was waiting for it (it asked before the purge), nothing of
/// it is stored anywhere, and every request after the purge answered gets the new version.
#[tokio::test]
async fn a_purge_racing_a_fill_leaves_nothing_of_the_old_version() {
    let (origin, version) = versioned(Some(("/slow", Duration::from_millis(1500)))).await;
    let mut nodes = three(&origin, "", |_| String::new()).await;
    let first = nodes[1].http;
    let racing = tokio::spawn(async move {
        send(
            first,
            Method::GET,
            "/slow",
            "example.test",
            &[],
            Bytes::new(),
        )
        .await
    });
    wait_until("the origin asked", Duration::from_secs(5), || async {
        origin.count("/slow") == 1
    })
    .await;
    version.store(2, Ordering::SeqCst);
    let (answer, _) = purge_url(nodes[0].admin, "/slow").await;
    assert_eq!(answer["complete"], true, "{answer}");
    let raced = racing.await.expect("racing request");
    assert_eq!(raced.status, 200);
    let mut seen = vec![format!("raced: {} {}", raced.text(), raced.cache_status())];
    for (i, n) in nodes.iter().enumerate() {
        let r = n.get("/slow").await;
        assert_eq!(r.text(), "v2", "{}", r.cache_status());
        seen.push(format!("node-{i}: {} {}", r.text(), r.cache_status()));
    }
    let asked: Vec<String> = origin
        .requests()
        .iter()
        .map(|s| format!("{} {:?}", s.path, s.headers))
        .collect();
    let logs: Vec<String> = nodes.iter().map(|n| n.process.stderr.text()).collect();
    assert_eq!(origin.count("/slow"), 2, "{seen:#?}\n{asked:#?}\n{logs:#?}");
    for n in &mut nodes {
        n.process.sigkill();
    }
}

/// 10,000 URLs in one purge: taken once on every node (one record each), every URL in the
/// answer, the nodes serving on.
#[tokio::test]
async fn ten_thousand_urls_in_one_purge_are_one_record_on_every_node() {
    let (origin, _) = versioned(None).await;
    let cluster = crate::cluster::TestCluster::start_with_site(3, &origin, "", "").await;
    let urls: Vec<String> = (0..10_000)
        .map(|i| format!("\"http://example.test/many/{i}\""))
        .collect();
    let body = format!(r#"{{"urls": [{}]}}"#, urls.join(","));
    let started = Instant::now();
    let r = util::purge(cluster.node(0).admin, Some("secret"), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let json: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(json["urls"].as_array().map(Vec::len), Some(10_000));
    assert_eq!(json["complete"], true);
    for i in 0..3 {
        let node = cluster.node(i);
        assert_eq!(node.metric("outpost_purge_log_records").await, 1.0);
        assert_eq!(get(node, "/after").await.status, 200);
    }
}

/// A flood of purges: each is taken, and the log holds no more than `purge_log_memory` (the
/// oldest dropped and counted); the nodes serve on.
#[tokio::test]
async fn a_flood_of_purges_keeps_the_purge_log_within_its_memory() {
    let (origin, _) = versioned(None).await;
    let cluster = crate::cluster::TestCluster::start_with_site(
        2,
        &origin,
        "purge_log_memory = \"64KiB\"",
        "",
    )
    .await;
    let admin = cluster.node(0).admin;
    let purges = (0..300).map(|i| async move {
        let urls: Vec<String> = (0..10)
            .map(|j| format!("\"http://example.test/flood/{i}/{j}\""))
            .collect();
        let body = format!(r#"{{"urls": [{}]}}"#, urls.join(","));
        util::purge(admin, Some("secret"), &body).await.status
    });
    let statuses = futures_util::future::join_all(purges).await;
    assert!(statuses.iter().all(|s| *s == 200));
    for i in 0..2 {
        let node = cluster.node(i);
        let bytes = node.metric("outpost_purge_log_bytes").await;
        assert!(bytes <= 65_536.0, "node-{i}: {bytes} bytes");
        assert!(node.metric("outpost_purge_log_dropped_total").await > 0.0);
        assert_eq!(get(node, "/after").await.status, 200);
    }
}

/// A member whose probe answers claim purges the node lacks and whose log answers are junk:
/// every exchange fails and is counted, nothing is applied, and the node serves on. A signed
/// message with a malformed record is refused as invalid (400).
#[tokio::test]
async fn a_peer_sending_a_broken_log_changes_nothing() {
    let (origin, _) = versioned(None).await;
    let liar = Origin::start(|seen, _| {
        if seen.path.starts_with("/_outpost/peer") {
            Reply::ok(r#"{"name":"liar","purges":{"since":0,"count":7,"xor":1,"horizon":0}}"#)
        } else if seen.path.starts_with("/_outpost/purges") {
            Reply::ok(r#"{"records": "not a list"}"#)
        } else {
            // Holds nothing (a hand-off asks it first after a start).
            Reply::ok("").status(504)
        }
    })
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let me = listener.local_addr().expect("addr");
    let text = NodeText {
        name: "node-0",
        http: me,
        admin: addr(),
        peers: &[me, liar.addr],
        cluster: "",
        extra: "",
        site: "",
    }
    .render(&origin);
    let node = Node::start_on(&text, false, listener).await;
    wait_until("exchanges tried", Duration::from_secs(10), || async {
        node.metric(r#"outpost_purge_exchanges_total{result="failed"}"#)
            .await
            >= 3.0
    })
    .await;
    assert_eq!(node.metric("outpost_purge_log_records").await, 0.0);
    // A key this node owns (the liar answers its own with what it likes).
    let mut own = None;
    for i in 0..100 {
        let path = format!("/still/{i}");
        let url = format!("http://example.test{path}");
        let page = util::admin_get(node.admin, &format!("/cluster/owner?url={url}"), &[]).await;
        let json: serde_json::Value = serde_json::from_slice(&page.body).expect("json");
        if json["self"] == true {
            own = Some(path);
            break;
        }
    }
    let own = own.expect("a key of its own");
    assert_eq!(get(&node, &own).await.text(), "v1");
    let secret = outpost::cluster::hop::Secret::new(SECRET);
    let body = br#"{"node":"x","at":1,"urls":"not a list"}"#;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let signature = outpost::cluster::message::signature(
        &secret,
        "10.9.9.9:80",
        &Method::POST,
        "/_outpost/purge",
        None,
        body,
        now_ms,
    );
    let r = send(
        node.http,
        Method::POST,
        "/_outpost/purge",
        "example.test",
        &[("outpost-signature", signature.to_str().expect("ascii"))],
        Bytes::from_static(body),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        node.metric(r#"outpost_node_messages_refused_total{reason="invalid"}"#)
            .await,
        1.0
    );
}
