//! Replication that is exact, with real processes: a holder gets a copy of what the owner
//! stored and nothing else happens (the semantics table in `topology` runs every caching case
//! through `replicas` 2 and 3 and counts the origin's requests); chunks and manifests are
//! held twice, so losing a node refetches none of a large object; a node that restarts from
//! its snapshot serves its chunks; and a rolling start routes every key the same way on every
//! node.

use std::net::SocketAddr;
use std::time::Duration;

use http::Method;

use crate::chunks::{file_server, representation, sha256};
use crate::harness::*;
use crate::replicas::{Launch, get_from, metric, start_members};
use crate::util::TempDir;

const MIB: usize = 1 << 20;

/// Sum of a sample over nodes.
async fn total(admins: &[SocketAddr], sample: &str) -> f64 {
    let mut sum = 0.0;
    for admin in admins {
        sum += metric(*admin, sample).await;
    }
    sum
}

/// Ten nodes, `replicas = 2`, a 256 MiB object in 4 MiB chunks: every chunk and the manifest
/// pushed to its second holder (the nodes hold about two copies); exact bytes whole and by
/// range; a SIGKILLed node costs the origin nothing on the next full download; a node
/// stopped with SIGTERM writes its chunks to its snapshot, and after a restart serves them
/// with no origin request.
#[tokio::test]
async fn ten_nodes_hold_a_chunked_object_twice_and_a_lost_node_costs_the_origin_nothing() {
    const SIZE: usize = 256 * MIB;
    const CHUNKS: usize = SIZE / (4 * MIB);
    let v1 = representation(SIZE, 1);
    let body = v1.clone();
    let origin = Origin::start(move |seen, _| file_server(seen, &body, "\"v1\"")).await;
    let dirs: Vec<TempDir> = (0..10).map(|i| TempDir::new(&format!("ten-{i}"))).collect();
    let extra = |i: usize| {
        format!(
            "[cache]\nmemory = \"160MiB\"\nmax_object = \"1GiB\"\nchunk_size = \"4MiB\"\npersist = \"{}\"",
            dirs[i].0.display()
        )
    };
    let mut nodes = start_members(
        &origin,
        &Launch {
            nodes: 10,
            cluster: "replicas = 2",
            extra: &extra,
            probe_interval: "100ms",
            one_by_one: false,
        },
    )
    .await;
    let admins: Vec<SocketAddr> = nodes.iter().map(|n| n.admin).collect();
    let path = "/big.bin";
    let r = get_from(nodes[0].http, path).await;
    assert_eq!(r.status, 200, "{}", r.cache_status());
    assert_eq!(sha256(&r.body), sha256(&v1));
    assert_eq!(origin.total(), 1 + CHUNKS, "the head, then each chunk once");

    // Each chunk and the manifest is pushed to its other holder.
    let stored = r#"outpost_replica_pushes_total{result="stored"}"#;
    wait_until("every push stored", Duration::from_secs(60), || {
        let admins = admins.clone();
        async move { total(&admins, stored).await >= (CHUNKS + 1) as f64 }
    })
    .await;
    let owner = total(&admins, r#"outpost_cache_role_bytes{role="owner"}"#).await;
    let replica = total(&admins, r#"outpost_cache_role_bytes{role="replica"}"#).await;
    // What crossed is the object once more and a few hundred bytes per entry.
    let pushed = total(&admins, "outpost_replica_push_bytes_total").await;
    assert!(
        pushed >= SIZE as f64 && pushed < SIZE as f64 * 1.01,
        "pushed {pushed}"
    );
    assert!(owner >= SIZE as f64, "owner bytes {owner}");
    assert!(
        replica >= SIZE as f64,
        "replica bytes {replica}: one copy only"
    );

    let cases = [
        ("bytes=0-99", 0, 99),
        ("bytes=4194300-4194310", 4_194_300, 4_194_310),
        ("bytes=-1000", SIZE - 1000, SIZE - 1),
    ];
    for (i, (range, first, last)) in cases.into_iter().enumerate() {
        let headers = [("range", range)];
        let r = send(
            nodes[i + 1].http,
            Method::GET,
            path,
            "example.test",
            &headers,
            bytes::Bytes::new(),
        )
        .await;
        assert_eq!(r.status, 206, "{range}: {}", r.cache_status());
        assert_eq!(sha256(&r.body), sha256(&v1[first..=last]), "{range}");
    }
    let fetched = origin.total();

    // A node dies: its chunks and copies are served by their other holders.
    let held = metric(nodes[4].admin, r#"outpost_cache_role_bytes{role="owner"}"#).await;
    assert!(held > 0.0, "node-4 holds part of the object");
    nodes[4].process.sigkill();
    let r = get_from(nodes[5].http, path).await;
    assert_eq!(r.status, 200, "{}", r.cache_status());
    assert_eq!(sha256(&r.body), sha256(&v1));
    assert_eq!(origin.total(), fetched, "the origin was asked again");

    // A planned restart: the snapshot holds the node's chunks and manifest.
    nodes[6].process.sigterm();
    nodes[6].process.wait_exit(Duration::from_secs(30)).await;
    nodes[6].restart().await;
    wait_until("node-6 ready", Duration::from_secs(20), || nodes[6].ready()).await;
    let loaded = r#"outpost_cache_snapshot_entries_total{op="load",result="loaded"}"#;
    assert!(metric(nodes[6].admin, loaded).await > 0.0, "chunks loaded");
    let r = get_from(nodes[6].http, path).await;
    assert_eq!(r.status, 200, "{}", r.cache_status());
    assert_eq!(sha256(&r.body), sha256(&v1));
    assert_eq!(origin.total(), fetched, "the origin was asked again");
    for n in &mut nodes {
        n.process.sigkill();
    }
}

/// A rolling start: three real processes, each started once the one before says it is
/// ready, then 300 keys asked through the node started last and through another, one after
/// the other. Every node routes every key as the others do: each reaches the origin once.
#[tokio::test]
async fn a_node_started_last_routes_every_key_as_its_peers_do() {
    let origin =
        Origin::start(|seen, _| Reply::ok(format!("body of {}", seen.path)).cache("max-age=600"))
            .await;
    let none = |_: usize| String::new();
    let mut nodes = start_members(
        &origin,
        &Launch {
            nodes: 3,
            cluster: "",
            extra: &none,
            probe_interval: "1s",
            one_by_one: true,
        },
    )
    .await;
    for i in 0..300 {
        let path = format!("/cold/{i}");
        let last = get_from(nodes[2].http, &path).await;
        let other = get_from(nodes[i % 2].http, &path).await;
        assert_eq!(
            origin.count(&path),
            1,
            "{path}: {} / {}",
            last.cache_status(),
            other.cache_status()
        );
    }
    for n in &mut nodes {
        n.process.sigkill();
    }
}
