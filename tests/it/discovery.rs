//! Integration tests against a real UDP DNS responder on loopback.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::dns_server::{DnsServer, Record};
use crate::harness::wait_until;
use outpost::dns::{DiscoveryConfig, Members, Source, resolve, resolver_builder, spawn};
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

const SECOND: Duration = Duration::from_secs(1);

fn a(s: &str) -> Record {
    Record::A(s.parse().expect("IPv4 literal"))
}

fn aaaa(s: &str) -> Record {
    Record::Aaaa(s.parse().expect("IPv6 literal"))
}

fn srv(port: u16, target: &str) -> Record {
    Record::Srv {
        priority: 10,
        weight: 5,
        port,
        target: target.to_owned(),
    }
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    let mut v: Vec<SocketAddr> = list.iter().map(|s| s.parse().expect("addr")).collect();
    v.sort();
    v
}

fn config(
    source: &str,
    server: &DnsServer,
    min_ttl: Duration,
    max_ttl: Duration,
) -> DiscoveryConfig {
    DiscoveryConfig {
        source: source.parse().expect("valid source"),
        servers: Some(vec![server.addr]),
        min_ttl,
        max_ttl,
    }
}

/// Wait (event-driven) until the channel holds `expected`.
async fn wait_members(
    rx: &mut watch::Receiver<Vec<SocketAddr>>,
    expected: &[SocketAddr],
    within: Duration,
) {
    let ok = matches!(
        timeout(within, rx.wait_for(|m| m == expected)).await,
        Ok(Ok(_))
    );
    assert!(
        ok,
        "no member list {expected:?} within {within:?}; current {:?}",
        *rx.borrow()
    );
}

/// Poll a counter until it reaches `target` (counters have no change notification).
async fn wait_counter(counter: &AtomicU64, target: u64, within: Duration) {
    let what = format!("the counter to reach {target}");
    wait_until(&what, within, || async {
        counter.load(Ordering::SeqCst) >= target
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_source_resolves_and_follows_record_changes() {
    let server = DnsServer::start(600).await;
    server.set("edge.internal", vec![a("10.0.0.2"), a("10.0.0.1")]);

    // One-shot resolve.
    let resolver = resolver_builder(Some(&[server.addr]))
        .expect("builder")
        .build()
        .expect("resolver");
    let source: Source = "dns:edge.internal:8080".parse().expect("source");
    let members = resolve(&resolver, &source, SECOND, 300 * SECOND)
        .await
        .expect("resolve");
    assert_eq!(
        members,
        Members {
            addrs: addrs(&["10.0.0.1:8080", "10.0.0.2:8080"]),
            valid_for: 300 * SECOND
        }
    );

    // TTL 600 s was clamped to max_ttl above. With TTL 1 s the task re-resolves every second.
    server.ttl.store(1, Ordering::SeqCst);
    let mut handle = spawn(config(
        "dns:edge.internal:8080",
        &server,
        SECOND,
        300 * SECOND,
    ))
    .expect("spawn");
    wait_members(
        &mut handle.members,
        &addrs(&["10.0.0.1:8080", "10.0.0.2:8080"]),
        3 * SECOND,
    )
    .await;

    server.set(
        "edge.internal",
        vec![a("10.0.0.3"), a("10.0.0.2"), aaaa("fd00::1")],
    );
    let expected = addrs(&["10.0.0.2:8080", "10.0.0.3:8080", "[fd00::1]:8080"]);
    wait_members(&mut handle.members, &expected, 3 * SECOND).await;
    assert!(handle.refreshes.get() >= 2);
    assert_eq!(handle.failures.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_source_resolves_targets_with_srv_ports() {
    let server = DnsServer::start(30).await;
    server.set(
        "_outpost._tcp.edge.internal",
        vec![
            srv(8081, "node-a.edge.internal"),
            srv(8082, "node-b.edge.internal."),
            srv(8083, "node-gone.edge.internal"), // NXDOMAIN target: skipped
        ],
    );
    server.set("node-a.edge.internal", vec![a("10.0.1.1")]);
    server.set("node-b.edge.internal", vec![a("10.0.1.2"), aaaa("fd00::2")]);
    let expected = addrs(&["10.0.1.1:8081", "10.0.1.2:8082", "[fd00::2]:8082"]);

    let resolver = resolver_builder(Some(&[server.addr]))
        .expect("builder")
        .build()
        .expect("resolver");
    let source: Source = "dns+srv:_outpost._tcp.edge.internal"
        .parse()
        .expect("source");
    let members = resolve(&resolver, &source, SECOND, 300 * SECOND)
        .await
        .expect("resolve");
    assert_eq!(
        members,
        Members {
            addrs: expected.clone(),
            valid_for: 30 * SECOND
        }
    );

    let mut handle = spawn(config(
        "dns+srv:_outpost._tcp.edge.internal",
        &server,
        SECOND,
        300 * SECOND,
    ))
    .expect("spawn");
    wait_members(&mut handle.members, &expected, 3 * SECOND).await;

    // No SRV records at all: an error, not an empty cluster.
    let missing: Source = "dns+srv:_none._tcp.edge.internal".parse().expect("source");
    assert!(
        resolve(&resolver, &missing, SECOND, 300 * SECOND)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_keeps_last_good_list_and_recovers() {
    let server = DnsServer::start(1).await;
    server.set("edge.internal", vec![a("10.0.2.1"), a("10.0.2.2")]);
    let mut builder = resolver_builder(Some(&[server.addr])).expect("builder");
    builder.options_mut().timeout = Duration::from_millis(300);
    builder.options_mut().attempts = 1;
    let resolver = builder.build().expect("resolver");
    let source: Source = "dns:edge.internal:9000".parse().expect("source");
    let mut handle =
        outpost::dns::spawn_with_resolver(resolver, source, SECOND, SECOND).expect("spawn");

    let before = addrs(&["10.0.2.1:9000", "10.0.2.2:9000"]);
    wait_members(&mut handle.members, &before, 3 * SECOND).await;

    // Outage: the zone changes but nobody answers.
    server.set_answering(false);
    server.set("edge.internal", vec![a("10.0.2.3")]);
    let failures = handle.failures.get();
    wait_counter(handle.failures.inner(), failures + 2, 10 * SECOND).await;
    assert_eq!(
        *handle.members.borrow(),
        before,
        "last good list must survive the outage"
    );

    // DNS is back: the new list arrives.
    let refreshes = handle.refreshes.get();
    server.set_answering(true);
    wait_members(&mut handle.members, &addrs(&["10.0.2.3:9000"]), 5 * SECOND).await;
    assert!(handle.refreshes.get() > refreshes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_zero_is_not_refreshed_faster_than_min_ttl() {
    let server = DnsServer::start(0).await;
    server.set("edge.internal", vec![a("10.0.3.1")]);
    let mut handle = spawn(config(
        "dns:edge.internal:80",
        &server,
        SECOND,
        300 * SECOND,
    ))
    .expect("spawn");
    wait_members(&mut handle.members, &addrs(&["10.0.3.1:80"]), 3 * SECOND).await;
    let start = Instant::now();
    let first = handle.refreshes.get();
    // Measurement window (a rate needs an interval). Refreshes with an unchanged list must not
    // be sent on the channel, so `changed()` has to time out.
    let changed = timeout(Duration::from_millis(2500), handle.members.changed()).await;
    assert!(changed.is_err(), "an unchanged member list was sent again");
    let done = handle.refreshes.get() - first;
    let allowed = start.elapsed().as_secs() + 1;
    assert!(
        done <= allowed,
        "{done} refreshes in {:?} with min_ttl 1 s",
        start.elapsed()
    );
    assert!(done >= 1, "TTL 0 must still be refreshed (every min_ttl)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_one_day_is_refreshed_by_max_ttl_despite_resolver_cache() {
    let server = DnsServer::start(86_400).await;
    server.set("edge.internal", vec![a("10.0.4.1")]);
    let mut handle = spawn(config("dns:edge.internal:80", &server, SECOND, SECOND)).expect("spawn");
    wait_members(&mut handle.members, &addrs(&["10.0.4.1:80"]), 3 * SECOND).await;
    server.set("edge.internal", vec![a("10.0.4.2")]);
    wait_members(&mut handle.members, &addrs(&["10.0.4.2:80"]), 3 * SECOND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_stops_the_task() {
    let server = DnsServer::start(0).await;
    server.set("edge.internal", vec![a("10.0.5.1")]);
    let handle = spawn(config("dns:edge.internal:80", &server, SECOND, SECOND)).expect("spawn");
    wait_counter(handle.refreshes.inner(), 1, 3 * SECOND).await;
    drop(handle);
    let queries = server.queries.load(Ordering::SeqCst);
    // Longer than two refresh intervals: a live task would have queried again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(server.queries.load(Ordering::SeqCst), queries);
}
