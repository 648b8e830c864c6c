//! The cluster: 3-5 real nodes on loopback in front of one origin. Ownership by the ring, one
//! origin fetch per object across nodes, the hop header and its MAC, failover when a node
//! dies, replicas, cluster-wide purge, and the admin pages.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::future::join_all;
use http::Method;
use tokio::net::TcpListener;

use crate::harness::*;
use crate::util::{admin_get, purge};

const SECRET: &str = "cluster-secret-0123456789";

/// Nodes `node-0` … `node-{n-1}` in one cluster; `members(i)` lists who node i believes is
/// in the cluster (by index), `cluster_extra` adds `[cluster]` keys.
pub(crate) struct TestCluster {
    nodes: Vec<Option<Node>>,
    addrs: Vec<SocketAddr>,
}

impl TestCluster {
    async fn start(n: usize, origin: &Origin, cluster_extra: &str) -> Self {
        Self::start_with(n, origin, cluster_extra, |_| (0..n).collect()).await
    }

    /// `n` nodes that all know each other, `site_extra` added to the `[[site]]` table (more
    /// keys, or its subtables).
    pub(crate) async fn start_with_site(
        n: usize,
        origin: &Origin,
        cluster_extra: &str,
        site_extra: &str,
    ) -> Self {
        Self::launch(n, origin, cluster_extra, site_extra, |_| (0..n).collect()).await
    }

    async fn start_with(
        n: usize,
        origin: &Origin,
        cluster_extra: &str,
        members: impl Fn(usize) -> Vec<usize>,
    ) -> Self {
        Self::launch(n, origin, cluster_extra, "", members).await
    }

    async fn launch(
        n: usize,
        origin: &Origin,
        cluster_extra: &str,
        site_extra: &str,
        members: impl Fn(usize) -> Vec<usize>,
    ) -> Self {
        let mut listeners = Vec::new();
        for _ in 0..n {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
        }
        let addrs: Vec<SocketAddr> = listeners
            .iter()
            .map(|l| l.local_addr().expect("addr"))
            .collect();
        let mut nodes = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            // The site table comes last: what follows it is in it.
            let toml = config(i, &addrs, &members(i), origin, cluster_extra) + site_extra;
            nodes.push(Some(Node::start_on(&toml, false, listener).await));
        }
        let cluster = Self { nodes, addrs };
        // Every node has probed the peers it knows (and learnt their names).
        for i in 0..n {
            let known = members(i).len();
            let admin = cluster.node(i).admin;
            eventually("peers probed", || async move {
                let r = admin_get(admin, "/cluster", &[]).await;
                let json: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
                let members = json["members"].as_array().cloned().unwrap_or_default();
                members.len() == known && members.iter().all(|m| m["name"].is_string())
            })
            .await;
        }
        cluster
    }

    pub(crate) fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("node running")
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    async fn stop(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
            node.stop().await;
        }
    }

    /// The address of node `i`'s http listener.
    pub(crate) fn address(&self, i: usize) -> String {
        self.addrs[i].to_string()
    }

    /// Which node owns `path` and the addresses of every node in its preference order, as
    /// node `asking` sees them (`/cluster/owner`).
    pub(crate) async fn preference(&self, asking: usize, path: &str) -> (String, Vec<String>) {
        let json = self.owner_page(asking, path).await;
        let preference = json["preference"]
            .as_array()
            .expect("preference")
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
        (
            json["owner"].as_str().expect("owner").to_owned(),
            preference,
        )
    }

    /// Which node owns `path`, as node `asking` sees it (`/cluster/owner`).
    pub(crate) async fn owner(&self, asking: usize, path: &str) -> String {
        let json = self.owner_page(asking, path).await;
        json["owner"].as_str().expect("owner").to_owned()
    }

    async fn owner_page(&self, asking: usize, path: &str) -> serde_json::Value {
        // The URL is a query value: its own query must not end the parameter.
        let path = path
            .replace('%', "%25")
            .replace('?', "%3F")
            .replace('&', "%26");
        let url = format!("http://example.test{path}");
        let r = admin_get(
            self.node(asking).admin,
            &format!("/cluster/owner?url={url}"),
            &[],
        )
        .await;
        serde_json::from_slice(&r.body).expect("owner json")
    }
}

fn config(
    i: usize,
    addrs: &[SocketAddr],
    members: &[usize],
    origin: &Origin,
    extra: &str,
) -> String {
    let peers: Vec<String> = members
        .iter()
        .map(|m| format!("\"{}\"", addrs[*m]))
        .collect();
    format!(
        r#"
[node]
name = "node-{i}"
[listen]
http = ["{addr}"]
[admin]
token = "secret"
[cluster]
advertise = "{addr}"
peers = [{peers}]
secret = "{SECRET}"
probe_interval = "100ms"
{extra}
[[site]]
name = "test"
hosts = ["example.test"]
origin = ["{origin}"]
"#,
        addr = addrs[i],
        peers = peers.join(", "),
        origin = origin.url(),
    )
}

fn cacheable_origin() -> impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static {
    |seen, _| Reply::ok(format!("body of {}", seen.path)).cache("max-age=600")
}

/// Names in `Cache-Status`, in order (closest to the origin first).
fn caches(r: &Resp) -> Vec<String> {
    r.cache_status()
        .split(',')
        .filter_map(|member| member.split(';').next())
        .map(|name| name.trim().to_owned())
        .collect()
}

#[tokio::test]
async fn each_object_is_fetched_once_across_the_cluster() {
    let origin = Origin::start(cacheable_origin()).await;
    // 600 requests at once on three nodes, the origin and the client in one process: on two
    // shared cores a node can be silent past the default peer_timeout while it works through
    // the burst, and a fill would then (rightly, for a hung node) go to the origin too. This
    // test is about coalescing, not hung peers: give it room.
    let cluster =
        TestCluster::start(3, &origin, "replicate = \"none\"\npeer_timeout = \"3s\"").await;
    // 300 objects, each asked through two different nodes, concurrently.
    let requests = (0..600).map(|j| {
        let (i, via) = (j / 2, j / 2 + j % 2);
        let node = cluster.node(via % 3);
        async move { get(node, &format!("/obj/{i}")).await }
    });
    let answers = join_all(requests).await;
    assert!(answers.iter().all(|r| r.status == 200));
    for i in 0..300 {
        assert_eq!(origin.count(&format!("/obj/{i}")), 1, "/obj/{i}");
    }
    assert_eq!(origin.total(), 300);

    // Through a non-owner: the owner's Cache-Status member comes first, then the edge's.
    let owner = cluster.owner(0, "/obj/7").await;
    let edge = (0..3)
        .find(|i| format!("node-{i}") != owner)
        .expect("a non-owner");
    let r = get(cluster.node(edge), "/obj/7").await;
    assert_eq!(
        caches(&r),
        [owner.clone(), format!("node-{edge}")],
        "{}",
        r.cache_status()
    );
    assert!(
        r.cache_status().starts_with(&format!("{owner}; hit")),
        "{}",
        r.cache_status()
    );
    // Every node agrees on the owner.
    for i in 0..3 {
        assert_eq!(cluster.owner(i, "/obj/7").await, owner);
    }
}

#[tokio::test]
async fn the_ring_spreads_objects_over_the_nodes() {
    let origin = Origin::start(cacheable_origin()).await;
    let cluster = TestCluster::start(3, &origin, "").await;
    let mut per_node = std::collections::HashMap::new();
    for i in 0..300 {
        *per_node
            .entry(cluster.owner(0, &format!("/spread/{i}")).await)
            .or_insert(0) += 1;
    }
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(
        per_node.values().all(|n| (70..=130).contains(n)),
        "{per_node:?}"
    );
    let page = admin_get(cluster.node(0).admin, "/cluster", &[]).await;
    let json: serde_json::Value = serde_json::from_slice(&page.body).expect("cluster json");
    let members = json["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{json}");
    for m in members {
        assert!(m["alive"].as_bool().expect("alive"), "{json}");
        assert!(
            (m["share"].as_f64().expect("share") - 1.0 / 3.0).abs() < 1e-9,
            "{json}"
        );
    }
}

#[tokio::test]
async fn a_hop_with_a_bad_mac_is_an_ordinary_request_and_a_good_one_is_not_forwarded() {
    let origin = Origin::start(cacheable_origin()).await;
    let cluster = TestCluster::start(3, &origin, "replicate = \"none\"").await;
    let owner = cluster.owner(0, "/h").await;
    let edge = (0..3)
        .find(|i| format!("node-{i}") != owner)
        .expect("a non-owner");

    // Forged: routed like any client request (through the owner), never shown to the origin.
    let forged = "from=\"127.0.0.1:1\"; proto=http; ts=1; mac=00";
    let r = get_with(cluster.node(edge), "/h", &[("outpost-hop", forged)]).await;
    assert_eq!(caches(&r), [owner.clone(), format!("node-{edge}")]);
    assert_eq!(origin.last("/h").header("outpost-hop"), "");

    // Signed with the secret: served by the receiving node itself, even though it does not
    // own the key (one hop at most).
    let secret = outpost::cluster::hop::Secret::new(SECRET);
    let hop = secret.sign(
        "127.0.0.1:1",
        false,
        &Method::GET,
        "example.test/h2",
        SystemTime::now(),
    );
    let hop = hop.to_str().expect("ascii").to_owned();
    let owner2 = cluster.owner(0, "/h2").await;
    let edge2 = (0..3)
        .find(|i| format!("node-{i}") != owner2)
        .expect("a non-owner");
    let r = get_with(cluster.node(edge2), "/h2", &[("outpost-hop", hop.as_str())]).await;
    assert_eq!(
        caches(&r),
        [format!("node-{edge2}")],
        "{}",
        r.cache_status()
    );
    // The same header on another URL does not verify.
    let r = get_with(cluster.node(edge2), "/h3", &[("outpost-hop", hop.as_str())]).await;
    let owner3 = cluster.owner(0, "/h3").await;
    if owner3 != format!("node-{edge2}") {
        assert_eq!(caches(&r).len(), 2, "{}", r.cache_status());
    }
}

#[tokio::test]
async fn killing_a_node_under_load_leaves_every_request_answered() {
    let origin = Origin::start(cacheable_origin()).await;
    let mut cluster = TestCluster::start(3, &origin, "replicate = \"none\"").await;
    for i in 0..60 {
        get(cluster.node(i % 3), &format!("/k/{i}")).await;
    }
    cluster.stop(2).await;
    let started = Instant::now();
    let answers = join_all((0..60).map(|i| {
        let node = cluster.node(i % 2);
        async move { get(node, &format!("/k/{i}")).await }
    }))
    .await;
    let failed: Vec<_> = answers.iter().filter(|r| r.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{:?}",
        failed.iter().map(|r| r.cache_status()).collect::<Vec<_>>()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Ejected: the survivors agree the dead node owns nothing now.
    eventually("node-2 ejected everywhere", || async {
        let mut owners = Vec::new();
        for i in 0..40 {
            owners.push(cluster.owner(0, &format!("/k/{i}")).await);
        }
        !owners.iter().any(|o| o == "node-2")
    })
    .await;
    let metrics = cluster.node(0).metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("outpost_peer_ejections_total") && l.ends_with(" 1")),
        "{metrics}"
    );
    if let Some(promtool) = crate::util::promtool() {
        let (code, output) = crate::util::promtool_check(&promtool, &metrics);
        assert_eq!(code, Some(0), "promtool: {output}");
    }
}

#[tokio::test]
async fn an_ejected_peer_is_probed_back_in() {
    let origin = Origin::start(cacheable_origin()).await;
    let mut cluster = TestCluster::start(3, &origin, "").await;
    let addr = cluster.addrs[2];
    cluster.stop(2).await;
    let alive = |json: &serde_json::Value| -> Option<bool> {
        json["members"]
            .as_array()?
            .iter()
            .find(|m| m["address"] == addr.to_string())?["alive"]
            .as_bool()
    };
    let admin = cluster.node(0).admin;
    let page = || async move {
        let r = admin_get(admin, "/cluster", &[]).await;
        serde_json::from_slice::<serde_json::Value>(&r.body).expect("json")
    };
    eventually("node-2 ejected", || async {
        alive(&page().await) == Some(false)
    })
    .await;
    // Back on the same address.
    let listener = TcpListener::bind(addr).await.expect("rebind");
    let toml = config(2, &cluster.addrs, &[0, 1, 2], &origin, "");
    cluster.nodes[2] = Some(Node::start_on(&toml, false, listener).await);
    eventually("node-2 probed back in", || async {
        alive(&page().await) == Some(true)
    })
    .await;
}

#[tokio::test]
async fn hot_objects_get_a_replica_on_the_nodes_that_serve_them() {
    let origin = Origin::start(cacheable_origin()).await;
    let cluster = TestCluster::start(3, &origin, "replicate = \"hot\"").await;
    let owner = cluster.owner(0, "/hot").await;
    let edge = (0..3)
        .find(|i| format!("node-{i}") != owner)
        .expect("a non-owner");
    let mut local = None;
    for n in 1..=20 {
        let r = get(cluster.node(edge), "/hot").await;
        if caches(&r) == [format!("node-{edge}")] {
            local = Some(n);
            break;
        }
    }
    let n = local.expect("the edge never kept a replica of a hot object");
    assert!(n > 3, "replicated after {n} requests: not hot yet");
    assert_eq!(origin.count("/hot"), 1, "replicas come from the owner");
    let metrics = cluster.node(edge).metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("outpost_replica_hits_total") && !l.ends_with(" 0")),
        "{metrics}"
    );

    // A cold object is not replicated.
    let cold_owner = cluster.owner(0, "/cold").await;
    let cold_edge = (0..3)
        .find(|i| format!("node-{i}") != cold_owner)
        .expect("a non-owner");
    get(cluster.node(cold_edge), "/cold").await;
    let again = get(cluster.node(cold_edge), "/cold").await;
    assert_eq!(caches(&again).len(), 2, "{}", again.cache_status());
}

#[tokio::test]
async fn a_purge_on_one_node_reaches_every_node() {
    let origin = Origin::start(|seen, n| {
        Reply::ok(format!("{} v{n}", seen.path))
            .cache("max-age=600")
            .header("surrogate-key", "everything")
    })
    .await;
    let cluster = TestCluster::start(3, &origin, "replicate = \"all\"").await;
    // Stored on its owner and replicated on both other nodes.
    for i in 0..3 {
        get(cluster.node(i), "/p").await;
    }
    for i in 0..3 {
        assert!(
            get(cluster.node(i), "/p")
                .await
                .cache_status()
                .starts_with(&format!("node-{i}; hit"))
        );
    }
    let started = Instant::now();
    let done = purge(
        cluster.node(1).admin,
        Some("secret"),
        r#"{"urls":["http://example.test/p"]}"#,
    )
    .await;
    let took = started.elapsed();
    assert_eq!(done.status, 200, "{}", done.text());
    let json: serde_json::Value = serde_json::from_slice(&done.body).expect("json");
    let nodes = json["nodes"].as_array().expect("per-node results");
    assert_eq!(nodes.len(), 3, "{json}");
    assert!(nodes.iter().all(|n| n["result"]["purged"] == 1), "{json}");
    assert_eq!(json["purged"], 3, "{json}");
    assert!(took < Duration::from_secs(1), "purge took {took:?}");
    eprintln!("cluster purge answered by 3 nodes in {took:?}");
    // No node still has the old version: replicas went with the owner's copy.
    for i in 0..3 {
        let r = get(cluster.node(i), "/p").await;
        assert_eq!(r.text(), "/p v2", "node-{i}: {}", r.cache_status());
    }
    assert_eq!(origin.count("/p"), 2);
    // By tag too, and a forged fan-out is refused.
    let tags = purge(
        cluster.node(0).admin,
        Some("secret"),
        r#"{"tags":["everything"]}"#,
    )
    .await;
    let json: serde_json::Value = serde_json::from_slice(&tags.body).expect("json");
    assert_eq!(json["nodes"].as_array().map(Vec::len), Some(3), "{json}");
    let forged = send(
        cluster.node(2).http,
        Method::POST,
        "/_outpost/purge",
        "example.test",
        &[("outpost-purge-mac", "00")],
        Bytes::from_static(br#"{"tags":["everything"]}"#),
    )
    .await;
    assert_eq!(forged.status, 403);
}

#[tokio::test]
async fn nodes_that_disagree_about_membership_never_loop() {
    let origin = Origin::start(cacheable_origin()).await;
    // node-0 knows all three; node-1 and node-2 each believe they are alone with node-0.
    let cluster = TestCluster::start_with(3, &origin, "replicate = \"none\"", |i| match i {
        0 => vec![0, 1, 2],
        i => vec![0, i],
    })
    .await;
    let answers = join_all((0..90).map(|i| {
        let node = cluster.node(i % 3);
        async move { get(node, &format!("/d/{i}")).await }
    }))
    .await;
    for r in &answers {
        assert_eq!(r.status, 200, "{}", r.cache_status());
        assert!(
            caches(r).len() <= 2,
            "more than one hop: {}",
            r.cache_status()
        );
    }
}

#[tokio::test]
async fn members_follow_dns_srv_records() {
    use crate::dns_server::{DnsServer, Record};
    let origin = Origin::start(cacheable_origin()).await;
    let dns = DnsServer::start(1).await;
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    }
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .map(|l| l.local_addr().expect("addr"))
        .collect();
    let srv = |n: usize| -> Vec<Record> {
        (0..n)
            .map(|i| Record::Srv {
                priority: 0,
                weight: 0,
                port: addrs[i].port(),
                target: format!("n{i}.edge.test"),
            })
            .collect()
    };
    for i in 0..3 {
        dns.set(
            &format!("n{i}.edge.test"),
            vec![Record::A([127, 0, 0, 1].into())],
        );
    }
    dns.set("_outpost._tcp.edge.test", srv(2));
    let toml = |i: usize| {
        format!(
            r#"
[node]
name = "node-{i}"
[cluster]
advertise = "{addr}"
discovery = "dns+srv:_outpost._tcp.edge.test"
secret = "{SECRET}"
probe_interval = "100ms"
[dns]
servers = ["{dns}"]
min_ttl = "1s"
max_ttl = "1s"
[[site]]
hosts = ["example.test"]
origin = ["{origin}"]
"#,
            addr = addrs[i],
            dns = dns.addr,
            origin = origin.url(),
        )
    };
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        nodes.push(Node::start_on(&toml(i), false, listener).await);
    }
    let members = |admin: SocketAddr| async move {
        let r = admin_get(admin, "/cluster", &[]).await;
        let json: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
        json["members"].as_array().map_or(0, Vec::len)
    };
    eventually("two members from DNS", || async {
        members(nodes[0].admin).await == 2
    })
    .await;
    // A record appears: every node follows within about a TTL, no restart.
    dns.set("_outpost._tcp.edge.test", srv(3));
    for node in &nodes {
        eventually("three members", || async { members(node.admin).await == 3 }).await;
    }
    // Objects are still fetched once across the three.
    let answers = join_all((0..60).map(|i| {
        let node = &nodes[i % 3];
        async move { get(node, &format!("/dns/{}", i / 2)).await }
    }))
    .await;
    assert!(answers.iter().all(|r| r.status == 200));
    assert_eq!(origin.total(), 30);
}

/// A node busy with a burst answers its probe after the requests queued before it. One late
/// answer must not eject it (its keys would go to the origin a second time, which made
/// `each_object_is_fetched_once_across_the_cluster` fail under load); a peer whose probes
/// keep timing out is ejected all the same.
#[tokio::test]
async fn one_late_probe_keeps_a_peer_and_a_hung_peer_is_ejected() {
    let origin = Origin::start(cacheable_origin()).await;
    // Stand-ins for two peers on the probe path: late the first time, or always.
    let slow = Origin::start(|_, n| {
        let reply = Reply::ok(r#"{"name":"slow"}"#);
        match n {
            1 => reply.delay(Duration::from_millis(1500)),
            _ => reply,
        }
    })
    .await;
    let hung = Origin::start(|_, _| Reply::ok("{}").delay(Duration::from_secs(30))).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addrs = [listener.local_addr().expect("addr"), slow.addr, hung.addr];
    let toml = config(0, &addrs, &[0, 1, 2], &origin, "");
    let node = Node::start_on(&toml, false, listener).await;
    let ejections = |addr: SocketAddr| format!("outpost_peer_ejections_total{{peer=\"{addr}\"}}");
    let (node, ejections) = (&node, &ejections);
    wait_until(
        "the hung peer ejected",
        Duration::from_secs(10),
        || async move { node.metric(&ejections(hung.addr)).await == 1.0 },
    )
    .await;
    // Three probes of the hung peer timed out, so the slow one has been asked at least as
    // often, and answered late only the first time.
    assert!(
        slow.count_prefix("/_outpost/peer") >= 3,
        "{}",
        slow.count_prefix("/_outpost/peer")
    );
    assert!(hung.count_prefix("/_outpost/peer") >= 3);
    assert_eq!(node.metric(&ejections(slow.addr)).await, 0.0);
    let page = admin_get(node.admin, "/cluster", &[]).await;
    let json: serde_json::Value = serde_json::from_slice(&page.body).expect("json");
    let alive = |addr: SocketAddr| {
        json["members"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["address"] == addr.to_string()))
            .and_then(|m| m["alive"].as_bool())
    };
    assert_eq!(alive(slow.addr), Some(true), "{json}");
    assert_eq!(alive(hung.addr), Some(false), "{json}");
}

/// A path node `asking` says `owner` (its address, or its name once probed) owns.
async fn path_owned_by(asking: &Node, owner: &[&str]) -> String {
    for i in 0..200 {
        let path = format!("/owned-{i}");
        let url = format!("http://example.test{path}");
        let r = admin_get(asking.admin, &format!("/cluster/owner?url={url}"), &[]).await;
        let json: serde_json::Value = serde_json::from_slice(&r.body).expect("owner json");
        if json["owner"].as_str().is_some_and(|o| owner.contains(&o)) {
            return path;
        }
    }
    panic!("no path owned by {owner:?}");
}

#[tokio::test]
async fn a_hung_owner_costs_about_two_peer_timeouts_and_is_ejected() {
    let origin = Origin::start(cacheable_origin()).await;
    // Accepts connections and never answers in time: a stopped node.
    let hung = Origin::start(|_, _| Reply::ok("{}").delay(Duration::from_secs(30))).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addrs = [listener.local_addr().expect("addr"), hung.addr];
    // Probes too slow to find it first.
    let toml = config(0, &addrs, &[0, 1], &origin, "").replace(
        "probe_interval = \"100ms\"",
        "probe_interval = \"20s\"\npeer_timeout = \"200ms\"",
    );
    let node = Node::start_on(&toml, false, listener).await;
    let path = path_owned_by(&node, &[&hung.addr.to_string()]).await;
    let started = Instant::now();
    let r = get(&node, &path).await;
    let took = started.elapsed();
    assert_eq!(r.text(), format!("body of {path}"), "{}", r.cache_status());
    assert!(
        took < Duration::from_millis(1500),
        "waited {took:?} on a hung owner"
    );
    assert_eq!(origin.count(&path), 1);
    assert_eq!(hung.count(&path), 1, "the hop was sent");
    let ejected = format!("outpost_peer_ejections_total{{peer=\"{}\"}}", hung.addr);
    assert_eq!(node.metric(&ejected).await, 1.0);
    node.stop().await;
}

/// A member whose probe handler answers while its request path hangs (a stand-in: `200` on
/// `/_outpost/peer`, nothing else ever answered). A request for one of its keys waits one
/// `peer_timeout`, asks it whether it is working on the request (it says nothing of the
/// kind), and goes to the key's next holder, which serves it or fills it from the origin:
/// answered within about twice `peer_timeout`. After three such requests in a row it is
/// ejected although it still answers probes, and its keys go to their next holders at once.
#[tokio::test]
async fn a_member_answering_probes_but_not_requests_costs_about_two_peer_timeouts() {
    let origin = Origin::start(cacheable_origin()).await;
    let wedged = Origin::start(|seen, _| {
        if seen.path.starts_with("/_outpost/peer") {
            Reply::ok(r#"{"name":"wedged"}"#)
        } else {
            Reply::ok("").delay(Duration::from_secs(60))
        }
    })
    .await;
    let listeners = [
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
    ];
    let addrs = [
        listeners[0].local_addr().expect("addr"),
        listeners[1].local_addr().expect("addr"),
        wedged.addr,
    ];
    let extra = "replicas = 2\npeer_timeout = \"300ms\"\nreplicate = \"none\"";
    let [l0, l1] = listeners;
    let a = Node::start_on(&config(0, &addrs, &[0, 1, 2], &origin, extra), false, l0).await;
    let b = Node::start_on(&config(1, &addrs, &[0, 1, 2], &origin, extra), false, l1).await;
    let owned = |n: usize| async move {
        let mut paths = Vec::new();
        for i in 0..400 {
            let path = format!("/wedged-{i}");
            let url = format!("http://example.test{path}");
            let page = admin_get(a.admin, &format!("/cluster/owner?url={url}"), &[]).await;
            let json: serde_json::Value = serde_json::from_slice(&page.body).expect("json");
            if json["address"] == wedged.addr.to_string() {
                paths.push(path);
                if paths.len() == n {
                    break;
                }
            }
        }
        paths
    };
    let paths = owned(6).await;
    assert_eq!(paths.len(), 6);
    for path in &paths {
        let started = Instant::now();
        let r = get(&a, path).await;
        let took = started.elapsed();
        assert_eq!(r.text(), format!("body of {path}"), "{}", r.cache_status());
        assert!(
            took < Duration::from_millis(1500),
            "{path}: waited {took:?} on a member that does not serve"
        );
        assert_eq!(origin.count(path), 1, "{path}");
    }
    let up = format!("outpost_peer_up{{peer=\"{}\"}}", wedged.addr);
    assert_eq!(
        a.metric(&up).await,
        0.0,
        "ejected although it answers probes"
    );
    // Its keys' next holders answer them now, from what they stored.
    let r = get(&b, &paths[0]).await;
    assert_eq!(r.text(), format!("body of {}", paths[0]));
    assert_eq!(origin.count(&paths[0]), 1);
    // The stand-in was asked: each request once (the first three, before it was ejected).
    let asked = wedged
        .requests()
        .iter()
        .filter(|s| s.path.starts_with("/wedged-"))
        .count();
    assert!((3..=4).contains(&asked), "{asked}");
}

#[tokio::test]
async fn a_live_owner_waiting_on_a_slow_origin_is_waited_for() {
    let origin = Origin::start(|seen, _| {
        Reply::ok(format!("body of {}", seen.path))
            .cache("max-age=600")
            .delay(Duration::from_millis(900))
    })
    .await;
    let cluster = TestCluster::start(2, &origin, "peer_timeout = \"100ms\"").await;
    let owner = cluster.addrs[1].to_string();
    let path = path_owned_by(cluster.node(0), &[&owner, "node-1"]).await;
    let r = get(cluster.node(0), &path).await;
    assert_eq!(r.text(), format!("body of {path}"));
    assert_eq!(caches(&r), ["node-1", "node-0"], "{}", r.cache_status());
    assert_eq!(origin.count(&path), 1, "fetched once, by the owner");
    let ejected = format!(
        "outpost_peer_ejections_total{{peer=\"{}\"}}",
        cluster.addrs[1]
    );
    assert_eq!(cluster.node(0).metric(&ejected).await, 0.0);
}

/// RFC 9111 §4.4 in a cluster: an unsafe method through any node removes the owner's copy,
/// every replica and the same-origin `Location` target's copies before its response is sent.
#[tokio::test]
async fn an_unsafe_method_invalidates_the_owner_and_every_replica() {
    let origin = Origin::start(|seen, n| match seen.method {
        Method::GET => Reply::ok(format!("{} #{n}", seen.path)).cache("max-age=600"),
        _ => Reply::ok("created").status(201).header("location", "/new"),
    })
    .await;
    let cluster = TestCluster::start(3, &origin, "replicate = \"all\"").await;
    let gets = |path: &str| {
        origin
            .requests()
            .iter()
            .filter(|s| s.method == Method::GET && s.path == path)
            .count()
    };
    // Stored on the owner and replicated on the two other nodes.
    for path in ["/doc", "/new"] {
        for i in 0..3 {
            get(cluster.node(i), path).await;
        }
        for i in 0..3 {
            let r = get(cluster.node(i), path).await;
            assert!(
                r.cache_status().starts_with(&format!("node-{i}; hit")),
                "{path} on node-{i}: {}",
                r.cache_status()
            );
        }
        assert_eq!(gets(path), 1, "{path}");
    }
    let owner = cluster.owner(0, "/doc").await;
    let edge = (0..3)
        .find(|i| format!("node-{i}") != owner)
        .expect("a non-owner");
    let post = send(
        cluster.node(edge).http,
        Method::POST,
        "/doc",
        "example.test",
        &[],
        Bytes::from_static(b"new"),
    )
    .await;
    assert_eq!(post.status, 201);
    // No node serves a copy from before the POST: the owner fetches once more, and every node
    // serves that (its count includes the POST).
    for path in ["/doc", "/new"] {
        for i in 0..3 {
            let r = get(cluster.node(i), path).await;
            let latest = format!("{path} #{}", origin.count(path));
            assert_eq!(r.text(), latest, "node-{i}: {}", r.cache_status());
        }
        assert_eq!(gets(path), 2, "{path}");
    }
    for i in 0..3 {
        let metrics = cluster.node(i).metrics().await;
        assert!(
            metrics
                .lines()
                .filter(|l| l.starts_with("outpost_peer_invalidations_failed_total"))
                .all(|l| l.ends_with(" 0")),
            "{metrics}"
        );
    }
}

/// A peer that never confirms an invalidation (hung) or cannot be reached delays the unsafe
/// method's response by a short bound at most; it is logged and counted per peer.
#[tokio::test]
async fn an_unsafe_method_is_answered_when_peers_do_not_confirm_its_invalidation() {
    let origin = Origin::start(|_, _| Reply::ok("done")).await;
    let hung = Origin::start(|_, _| Reply::ok("{}").delay(Duration::from_secs(30))).await;
    let gone = closed_port().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addrs = [listener.local_addr().expect("addr"), hung.addr, gone];
    let toml = config(0, &addrs, &[0, 1, 2], &origin, "");
    let node = Node::start_on(&toml, false, listener).await;
    let started = Instant::now();
    let post = send(
        node.http,
        Method::POST,
        "/doc",
        "example.test",
        &[],
        Bytes::from_static(b"x"),
    )
    .await;
    let took = started.elapsed();
    assert_eq!((post.status.as_u16(), post.text().as_str()), (200, "done"));
    assert!(
        took < Duration::from_millis(2500),
        "answered after {took:?}"
    );
    assert_eq!(hung.count_prefix("/_outpost/purge"), 1);
    let failed =
        |addr: SocketAddr| format!("outpost_peer_invalidations_failed_total{{peer=\"{addr}\"}}");
    assert_eq!(node.metric(&failed(hung.addr)).await, 1.0);
    assert_eq!(node.metric(&failed(gone)).await, 1.0);
}

/// A message from one node to another (here an invalidation) is applied only when its
/// signature verifies: over its method, path, query, body and time, within five minutes. A
/// forged, altered or stale one is refused (403, counted); the same valid message replayed
/// is a no-op, whatever was stored since.
#[tokio::test]
async fn forged_altered_or_replayed_node_messages_change_nothing() {
    let origin = Origin::start(cacheable_origin()).await;
    let cluster = TestCluster::start(3, &origin, "replicate = \"none\"").await;
    let owner = cluster.owner(0, "/keep").await;
    let owner = (0..3)
        .find(|i| format!("node-{i}") == owner)
        .expect("the owner");
    let node = cluster.node(owner);
    get(node, "/keep").await;
    let secret = outpost::cluster::hop::Secret::new(SECRET);
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let record = format!(
        r#"{{"node":"10.9.9.9:80","at":{},"keys":["http://example.test/keep"]}}"#,
        now_ms << 16
    );
    let body = Bytes::from(record);
    let post = |signature: String, query: &'static str, body: Bytes| async move {
        send(
            node.http,
            Method::POST,
            &format!("/_outpost/purge{query}"),
            "example.test",
            &[("outpost-signature", signature.as_str())],
            body,
        )
        .await
    };
    let sign = |body: &[u8], query: Option<&str>, at_ms: u64| {
        outpost::cluster::message::signature(
            &secret,
            "10.9.9.9:80",
            &Method::POST,
            "/_outpost/purge",
            query,
            body,
            at_ms,
        )
        .to_str()
        .expect("ascii")
        .to_owned()
    };
    let still_cached = || async {
        let r = get(node, "/keep").await;
        assert!(r.cache_status().contains("hit"), "{}", r.cache_status());
    };
    // Unsigned, wrong secret, altered body, a query added, signed six minutes ago.
    let refused = [
        post(String::new(), "", body.clone()).await,
        post(
            outpost::cluster::message::signature(
                &outpost::cluster::hop::Secret::new("another-secret-0123456789"),
                "10.9.9.9:80",
                &Method::POST,
                "/_outpost/purge",
                None,
                &body,
                now_ms,
            )
            .to_str()
            .expect("ascii")
            .to_owned(),
            "",
            body.clone(),
        )
        .await,
        post(
            sign(&body, None, now_ms),
            "",
            Bytes::from(String::from_utf8_lossy(&body).replace("keep", "kept")),
        )
        .await,
        post(sign(&body, None, now_ms), "?cascade", body.clone()).await,
        post(sign(&body, None, now_ms - 360_000), "", body.clone()).await,
    ];
    for r in &refused {
        assert_eq!(r.status, 403, "{}", r.text());
    }
    still_cached().await;
    let mut refusals = 0.0;
    for reason in ["unsigned", "malformed", "bad_mac", "out_of_window"] {
        let sample = format!("outpost_node_messages_refused_total{{reason=\"{reason}\"}}");
        refusals += node.metric(&sample).await;
    }
    assert_eq!(refusals, 5.0);
    // Signed right: applied once.
    let signature = sign(&body, None, now_ms);
    let applied = post(signature.clone(), "", body.clone()).await;
    assert_eq!(applied.status, 200, "{}", applied.text());
    let r = get(node, "/keep").await;
    assert!(
        r.cache_status().contains("fwd=uri-miss"),
        "{}",
        r.cache_status()
    );
    assert_eq!(origin.count("/keep"), 2);
    // The same message again, after the object was stored again: nothing happens.
    let replayed = post(signature, "", body).await;
    assert_eq!(replayed.status, 200, "{}", replayed.text());
    assert!(
        replayed.text().contains("\"known\":true"),
        "{}",
        replayed.text()
    );
    still_cached().await;
    assert_eq!(origin.count("/keep"), 2);
}

/// A rolling start: node B is not listening yet when node A starts, so A's first probe finds it
/// refusing and ejects it. A peer never seen alive is probed fast (100 ms, doubling), so A
/// routes to B soon after B listens, not a whole `probe_interval` (here 5 s) later; and A says
/// ready only once it has probed every peer.
#[tokio::test]
async fn a_peer_that_starts_later_is_found_within_a_fraction_of_the_probe_interval() {
    let origin = Origin::start(cacheable_origin()).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let later = closed_port().await;
    let addrs = [listener.local_addr().expect("addr"), later];
    let slow_probes = |i| {
        config(i, &addrs, &[0, 1], &origin, "")
            .replace("probe_interval = \"100ms\"", "probe_interval = \"5s\"")
    };
    let a = Node::start_on(&slow_probes(0), false, listener).await;
    eventually("A ready after probing B once", || async {
        admin_get(a.admin, "/readyz", &[]).await.status == 200
    })
    .await;
    let up = format!("outpost_peer_up{{peer=\"{later}\"}}");
    assert_eq!(a.metric(&up).await, 0.0, "B refused A's first probe");
    let b_listener = TcpListener::bind(later).await.expect("B's port again");
    let b = Node::start_on(&slow_probes(1), false, b_listener).await;
    let started = Instant::now();
    // B is sent requests once it says it is ready, as a load balancer would.
    eventually("B ready", || async {
        admin_get(b.admin, "/readyz", &[]).await.status == 200
    })
    .await;
    wait_until("A sees B", Duration::from_secs(3), || async {
        a.metric(&up).await == 1.0
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(3));
    // Every key is fetched once, by its owner, whichever node is asked.
    for i in 0..50 {
        let path = format!("/rolling/{i}");
        let ra = get(&a, &path).await;
        let rb = get(&b, &path).await;
        assert_eq!(
            origin.count(&path),
            1,
            "{path}: {} / {}",
            ra.cache_status(),
            rb.cache_status()
        );
    }
    b.stop().await;
    a.stop().await;
}

/// A 4th node joins a warm cluster of three (members from DNS SRV records). The keys it now
/// owns were cached on their previous owners: within `handoff`, its misses ask them first
/// (`only-if-cached`), so the join sends almost none of the moved keys to the origin. With
/// `handoff = "0s"` most moved keys are fetched again, which shows the test can fail.
#[tokio::test]
async fn a_node_that_joins_takes_its_keys_from_their_previous_owners() {
    use crate::dns_server::{DnsServer, Record};
    for handoff in ["60s", "0s"] {
        let origin = Origin::start(cacheable_origin()).await;
        let dns = DnsServer::start(1).await;
        let mut listeners = Vec::new();
        for _ in 0..4 {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
        }
        let addrs: Vec<SocketAddr> = listeners
            .iter()
            .map(|l| l.local_addr().expect("addr"))
            .collect();
        let srv = |n: usize| -> Vec<Record> {
            (0..n)
                .map(|i| Record::Srv {
                    priority: 0,
                    weight: 0,
                    port: addrs[i].port(),
                    target: format!("n{i}.join.test"),
                })
                .collect()
        };
        for i in 0..4 {
            dns.set(
                &format!("n{i}.join.test"),
                vec![Record::A([127, 0, 0, 1].into())],
            );
        }
        dns.set("_outpost._tcp.join.test", srv(3));
        let toml = |i: usize| {
            format!(
                r#"
[node]
name = "node-{i}"
[admin]
token = "secret"
[cluster]
advertise = "{addr}"
discovery = "dns+srv:_outpost._tcp.join.test"
secret = "{SECRET}"
probe_interval = "100ms"
replicate = "none"
handoff = "{handoff}"
[dns]
servers = ["{dns}"]
min_ttl = "1s"
max_ttl = "1s"
[[site]]
hosts = ["example.test"]
origin = ["{origin}"]
"#,
                addr = addrs[i],
                dns = dns.addr,
                origin = origin.url(),
            )
        };
        let mut listeners = listeners.into_iter();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let listener = listeners.next().expect("listener");
            nodes.push(Node::start_on(&toml(i), false, listener).await);
        }
        let members = |admin: SocketAddr| async move {
            let r = admin_get(admin, "/cluster", &[]).await;
            let json: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
            json["members"].as_array().map_or(0, Vec::len)
        };
        for node in &nodes {
            eventually("three members", || async { members(node.admin).await == 3 }).await;
        }
        for i in 0..300 {
            get(&nodes[i % 3], &format!("/warm/{i}")).await;
        }
        assert_eq!(origin.total(), 300);
        // The 4th node joins.
        let listener = listeners.next().expect("listener");
        nodes.push(Node::start_on(&toml(3), false, listener).await);
        dns.set("_outpost._tcp.join.test", srv(4));
        for node in &nodes {
            eventually("four members", || async { members(node.admin).await == 4 }).await;
        }
        let mut moved = 0;
        for i in 0..300 {
            let path = format!("/warm/{i}");
            let url = format!("http://example.test{path}");
            let r = admin_get(nodes[0].admin, &format!("/cluster/owner?url={url}"), &[]).await;
            let json: serde_json::Value = serde_json::from_slice(&r.body).expect("owner json");
            if json["owner"] == "node-3" || json["owner"] == addrs[3].to_string() {
                moved += 1;
            }
            let r = get(&nodes[i % 4], &path).await;
            assert_eq!(r.text(), format!("body of {path}"), "{}", r.cache_status());
        }
        assert!(moved > 30, "a quarter of the keys moved: {moved}");
        let refetched = origin.total() - 300;
        if handoff == "0s" {
            // All but those asked through their previous owner (its own hits).
            assert!(
                refetched * 2 > moved,
                "handoff {handoff}: {refetched} of {moved} moved keys fetched again"
            );
        } else {
            // At most 1% of the moved keys.
            assert!(
                refetched * 100 <= moved,
                "handoff {handoff}: {refetched} of {moved} moved keys fetched again"
            );
            // Those asked through their previous owner were its own hits; the rest were
            // handed off.
            let hits = r#"outpost_handoff_requests_total{result="hit"}"#;
            let handed = nodes[3].metric(hits).await;
            assert!(
                handed > 0.0 && handed <= moved as f64,
                "{handed} of {moved}"
            );
        }
        for node in nodes {
            node.stop().await;
        }
    }
}
