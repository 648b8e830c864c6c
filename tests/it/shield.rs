//! Regions and the shield tier: edge clusters in two regions fill their misses from one
//! shield node before the origin, so the origin sees each object once; shields that are down
//! cost nothing but the origin's load; tiers that shield each other stop after one shield
//! hop. Every node is a real node on loopback with its own cluster.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::net::TcpListener;

use crate::harness::*;
use crate::topology::names;
use crate::util::admin_get;

const SECRET: &str = "shield-secret-0123456789";

/// The nodes of one region (or of the shield tier): one cluster.
struct Tier {
    nodes: Vec<Node>,
    addrs: Vec<SocketAddr>,
}

async fn listeners(n: usize) -> (Vec<TcpListener>, Vec<SocketAddr>) {
    let mut listeners = Vec::new();
    for _ in 0..n {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    }
    let addrs = listeners
        .iter()
        .map(|l| l.local_addr().expect("addr"))
        .collect();
    (listeners, addrs)
}

fn quoted(addrs: &[SocketAddr], scheme: &str) -> String {
    addrs
        .iter()
        .map(|a| format!("\"{scheme}{a}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A cluster named `{prefix}-{i}` in `region` on `listeners`, whose site fills from `shield`.
async fn tier(
    prefix: &str,
    region: &str,
    (listeners, addrs): (Vec<TcpListener>, Vec<SocketAddr>),
    origin: &Origin,
    shield: &[SocketAddr],
) -> Tier {
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let toml = format!(
            r#"
[node]
name = "{prefix}-{i}"
region = "{region}"
[listen]
http = ["{addr}"]
[admin]
token = "secret"
[cluster]
advertise = "{addr}"
peers = [{peers}]
secret = "{SECRET}"
probe_interval = "100ms"
[[site]]
name = "test"
hosts = ["example.test"]
origin = ["{origin}"]
shield = [{shield}]
"#,
            addr = addrs[i],
            peers = quoted(&addrs, ""),
            origin = origin.url(),
            shield = quoted(shield, "http://"),
        );
        nodes.push(Node::start_on(&toml, false, listener).await);
    }
    Tier { nodes, addrs }
}

/// One shield node, and two regions of two nodes that fill from it.
async fn two_regions(origin: &Origin) -> (Tier, Tier, Tier) {
    let shield = tier("shield", "eu-central", listeners(1).await, origin, &[]).await;
    let west = tier("west", "eu-west", listeners(2).await, origin, &shield.addrs).await;
    let east = tier("east", "us-east", listeners(2).await, origin, &shield.addrs).await;
    (shield, west, east)
}

fn shield_metric(name: &str, shield: SocketAddr, more: &str) -> String {
    format!("outpost_{name}{{site=\"test\",shield=\"{shield}\"{more}}}")
}

async fn sum(nodes: &[Node], sample: &str) -> f64 {
    let mut total = 0.0;
    for node in nodes {
        total += node.metric(sample).await;
    }
    total
}

#[tokio::test]
async fn two_regions_fill_from_one_shield_and_the_origin_sees_each_object_once() {
    let origin =
        Origin::start(|seen, _| Reply::ok(format!("body of {}", seen.path)).cache("max-age=600"))
            .await;
    let (shield, west, east) = two_regions(&origin).await;
    for i in 0..100 {
        let path = format!("/obj/{i}");
        let first = get(&west.nodes[i % 2], &path).await;
        assert_eq!(
            first.text(),
            format!("body of {path}"),
            "{}",
            first.cache_status()
        );
        assert_eq!(names(&first)[0], "shield-0", "{}", first.cache_status());
        let second = get(&east.nodes[i % 2], &path).await;
        assert_eq!(second.text(), format!("body of {path}"));
        // The shield's hit, then the east region's caches, nearest the client last.
        let status = second.cache_status();
        assert!(status.starts_with("shield-0; hit"), "{status}");
        assert!(
            names(&second)[1..].iter().all(|n| n.starts_with("east-")),
            "{status}"
        );
        assert_eq!(origin.count(&path), 1, "{path}: {status}");
    }
    assert_eq!(origin.total(), 100);
    // Each region's owner asked the shield once per object.
    let answered = shield_metric(
        "shield_requests_total",
        shield.addrs[0],
        ",outcome=\"response\"",
    );
    assert_eq!(sum(&west.nodes, &answered).await, 100.0);
    assert_eq!(sum(&east.nodes, &answered).await, 100.0);
    // A second round is served by each region from its own cache.
    for i in 0..100 {
        let r = get(&east.nodes[(i + 1) % 2], &format!("/obj/{i}")).await;
        assert!(
            !r.cache_status().contains("shield-0"),
            "{}",
            r.cache_status()
        );
    }
    assert_eq!(sum(&east.nodes, &answered).await, 100.0);
    // Where the node is, and which shields it uses.
    let page = admin_get(east.nodes[0].admin, "/cluster", &[]).await;
    let json: serde_json::Value = serde_json::from_slice(&page.body).expect("json");
    assert_eq!(json["region"], "us-east");
    assert_eq!(
        json["shields"]["test"][0]["address"],
        shield.addrs[0].to_string()
    );
    assert_eq!(json["shields"]["test"][0]["alive"], true);
    let info = r#"outpost_node_info{name="east-0",region="us-east"}"#;
    assert_eq!(east.nodes[0].metric(info).await, 1.0);
}

#[tokio::test]
async fn a_cold_burst_from_two_regions_reaches_the_origin_once() {
    let origin = Origin::start(|_, _| {
        Reply::ok("cold")
            .cache("max-age=600")
            .delay(Duration::from_millis(300))
    })
    .await;
    let (_shield, west, east) = two_regions(&origin).await;
    let edges: Vec<&Node> = west.nodes.iter().chain(&east.nodes).collect();
    let responses = join_all((0..20).map(|i| get(edges[i % edges.len()], "/burst"))).await;
    for r in &responses {
        assert_eq!(
            (r.status.as_u16(), r.text().as_str()),
            (200, "cold"),
            "{}",
            r.cache_status()
        );
    }
    assert_eq!(origin.count("/burst"), 1, "coalesced across both tiers");
}

#[tokio::test]
async fn with_every_shield_down_edges_fill_from_the_origin() {
    let origin = Origin::start(|_, _| Reply::ok("from origin").cache("max-age=600")).await;
    let gone = [closed_port().await, closed_port().await];
    let edge = tier("edge", "eu-west", listeners(1).await, &origin, &gone).await;
    let node = &edge.nodes[0];
    for i in 0..5 {
        let r = get(node, &format!("/d/{i}")).await;
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "from origin"));
        assert_eq!(names(&r), ["edge-0"], "{}", r.cache_status());
        assert!(r.cache_status().contains("stored"), "{}", r.cache_status());
    }
    assert_eq!(origin.total(), 5);
    let fallbacks = r#"outpost_shield_fallbacks_total{site="test"}"#;
    assert_eq!(node.metric(fallbacks).await, 5.0);
    for shield in gone {
        let up = shield_metric("shield_up", shield, "");
        assert_eq!(node.metric(&up).await, 0.0, "{shield} ejected");
    }
}

#[tokio::test]
async fn tiers_that_shield_each_other_stop_after_one_shield_hop() {
    let origin = Origin::start(|_, _| Reply::ok("once").cache("max-age=600")).await;
    let (a_listeners, a_addrs) = listeners(1).await;
    let (b_listeners, b_addrs) = listeners(1).await;
    let a = tier(
        "a",
        "one",
        (a_listeners, a_addrs.clone()),
        &origin,
        &b_addrs,
    )
    .await;
    let b = tier("b", "two", (b_listeners, b_addrs), &origin, &a_addrs).await;
    let r = get(&a.nodes[0], "/loop").await;
    assert_eq!(r.text(), "once");
    assert_eq!(names(&r), ["b-0", "a-0"], "{}", r.cache_status());
    assert_eq!(origin.count("/loop"), 1);
    let limit = "outpost_hop_limit_total";
    assert_eq!(
        b.nodes[0].metric(limit).await,
        1.0,
        "b did not send it back"
    );
    assert_eq!(a.nodes[0].metric(limit).await, 0.0);
    let asked = shield_metric("shield_requests_total", a.addrs[0], ",outcome=\"response\"");
    assert_eq!(b.nodes[0].metric(&asked).await, 0.0);
}

/// A purge or an unsafe method in one region reaches the shield tier too (which passes it to
/// its members): otherwise the region's next miss would be filled with the shield's old copy.
#[tokio::test]
async fn purges_and_unsafe_methods_reach_the_shield_tier() {
    let origin = Origin::start(|seen, n| match seen.method {
        http::Method::GET => Reply::ok(format!("{} #{n}", seen.path)).cache("max-age=600"),
        _ => Reply::ok("changed"),
    })
    .await;
    let shield = tier("shield", "eu-central", listeners(2).await, &origin, &[]).await;
    let west = tier(
        "west",
        "eu-west",
        listeners(2).await,
        &origin,
        &shield.addrs,
    )
    .await;
    let gets = |path: &str| {
        origin
            .requests()
            .iter()
            .filter(|s| s.method == http::Method::GET && s.path == path)
            .count()
    };
    for path in ["/purged", "/posted"] {
        assert_eq!(get(&west.nodes[0], path).await.text(), format!("{path} #1"));
        assert!(
            get(&west.nodes[1], path)
                .await
                .cache_status()
                .contains("; hit")
        );
    }
    let purged = crate::util::purge(
        west.nodes[0].admin,
        Some("secret"),
        r#"{"urls":["http://example.test/purged"]}"#,
    )
    .await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    let json: serde_json::Value = serde_json::from_slice(&purged.body).expect("json");
    let on_shields: u64 = json["shields"]
        .as_array()
        .expect("shields answered")
        .iter()
        .map(|s| s["result"]["purged"].as_u64().unwrap_or(0))
        .sum();
    // Stored once in the shield tier; both shield nodes pass the purge to each other.
    assert!(on_shields >= 1, "{json}");
    let post = send(
        west.nodes[1].http,
        http::Method::POST,
        "/posted",
        "example.test",
        &[],
        bytes::Bytes::from_static(b"x"),
    )
    .await;
    assert_eq!(post.text(), "changed");
    for path in ["/purged", "/posted"] {
        let r = get(&west.nodes[0], path).await;
        // Fetched again: the origin's latest answer (its count includes the POST).
        let latest = format!("{path} #{}", origin.count(path));
        assert_eq!(r.text(), latest, "{}", r.cache_status());
        assert_eq!(gets(path), 2, "{path}: the shield's copy was dropped too");
    }
}
