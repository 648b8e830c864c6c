//! Request coalescing: one origin fetch per key however many clients ask at once, fills that
//! survive their clients, failures that release everyone, and uncacheable keys that are not
//! serialised.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_clients_one_origin_request() {
    let body = Bytes::from(vec![b'z'; 200_000]);
    let served = body.clone();
    let origin = Origin::start(move |_, _| {
        Reply::ok(served.clone())
            .cache("max-age=60")
            .delay(Duration::from_millis(700))
    })
    .await;
    let node = Arc::new(Node::start(&site_config(&origin.url(), "")).await);
    let mut clients = Vec::new();
    for _ in 0..100 {
        let node = node.clone();
        clients.push(tokio::spawn(async move { get(&node, "/cold").await }));
    }
    let mut collapsed = 0;
    for client in clients {
        let r = client.await.expect("client task");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, body, "every client gets the same full body");
        if r.cache_status().contains("collapsed") {
            collapsed += 1;
        }
    }
    assert_eq!(origin.count("/cold"), 1, "exactly one origin request");
    assert_eq!(collapsed, 99, "all but the leader waited on its fill");
    assert_eq!(node.metric("outpost_coalesced_requests_total").await, 99.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_does_not_cancel_the_fill() {
    let origin = Origin::start(|_, _| {
        Reply::ok("survivor")
            .cache("max-age=60")
            .delay(Duration::from_millis(300))
    })
    .await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    let addr = node.http;
    let impatient = tokio::spawn(async move { get_addr(addr, "/leave").await });
    eventually("the origin to receive the fill", || async {
        origin.count("/leave") == 1
    })
    .await;
    impatient.abort();
    eventually("the fill to complete and be stored", || async {
        get_with(&node, "/leave", &[("cache-control", "only-if-cached")])
            .await
            .status
            == 200
    })
    .await;
    let hit = get(&node, "/leave").await;
    assert_eq!(hit.text(), "survivor");
    assert!(hit.cache_status().contains("hit"));
    assert_eq!(origin.count("/leave"), 1);
}

async fn get_addr(addr: std::net::SocketAddr, path: &str) -> Resp {
    send(addr, Method::GET, path, "example.test", &[], Bytes::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fill_answers_every_waiter_at_once() {
    let toml = r#"
[node]
name = "edge-test"
[[site]]
hosts = ["example.test"]
[site.origin]
servers = ["ORIGIN"]
first_byte_timeout = "400ms"
"#;
    let origin = Origin::start(|_, _| {
        Reply::ok("late")
            .cache("max-age=60")
            .delay(Duration::from_secs(3))
    })
    .await;
    let node = Arc::new(Node::start(&toml.replace("ORIGIN", &origin.url())).await);
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..20 {
        let node = node.clone();
        clients.push(tokio::spawn(async move { get(&node, "/slow").await }));
    }
    for client in clients {
        let r = client.await.expect("client");
        assert_eq!(r.status, 504);
        assert!(
            r.cache_status().contains("detail=origin-timeout"),
            "{}",
            r.cache_status()
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waiters were released with the failure"
    );
    assert_eq!(origin.count("/slow"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncacheable_response_releases_waiters_and_is_not_serialised_next_time() {
    let origin = Origin::start(|_, n| {
        Reply::ok(format!("private-{n}"))
            .cache("private")
            .delay(Duration::from_millis(300))
    })
    .await;
    let node = Arc::new(Node::start(&site_config(&origin.url(), "")).await);
    let burst = |node: Arc<Node>| async move {
        let mut clients = Vec::new();
        for _ in 0..10 {
            let node = node.clone();
            clients.push(tokio::spawn(async move { get(&node, "/priv").await }));
        }
        let mut bodies = Vec::new();
        for c in clients {
            bodies.push(c.await.expect("client").text());
        }
        bodies
    };
    let first = burst(node.clone()).await;
    // Nobody got another client's private response.
    assert_eq!(
        count_map(first).values().max(),
        Some(&1),
        "private responses were shared"
    );
    assert_eq!(origin.count("/priv"), 10);
    // The key is now remembered as uncacheable: the next burst goes to the origin in parallel.
    let started = Instant::now();
    let second = burst(node.clone()).await;
    assert_eq!(second.len(), 10);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "second burst was serialised: {:?}",
        started.elapsed()
    );
    assert_eq!(origin.count("/priv"), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_with_another_variant_fetch_their_own() {
    let origin = Origin::start(|seen, _| {
        let lang = seen.header("accept-language");
        Reply::ok(lang)
            .cache("max-age=60")
            .header("vary", "accept-language")
            .delay(Duration::from_millis(300))
    })
    .await;
    let node = Arc::new(Node::start(&site_config(&origin.url(), "")).await);
    let mut clients = Vec::new();
    for lang in ["en", "fr", "en", "fr", "de"] {
        let node = node.clone();
        clients.push(tokio::spawn(async move {
            (
                lang,
                get_with(&node, "/lang", &[("accept-language", lang)]).await,
            )
        }));
    }
    for c in clients {
        let (lang, r) = c.await.expect("client");
        assert_eq!(r.text(), lang, "a follower must never get another variant");
    }
}

#[tokio::test]
async fn objects_over_max_object_stream_through_unstored() {
    let big = Bytes::from(
        (0..3_000_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let served = big.clone();
    let origin = Origin::start(move |_, _| Reply::ok(served.clone()).cache("max-age=60")).await;
    let node = Node::start(&site_config(
        &origin.url(),
        "[cache]\nmax_object = \"1MiB\"",
    ))
    .await;
    let first = get(&node, "/big").await;
    assert_eq!(first.body, big, "streamed intact");
    assert!(
        first.cache_status().contains("detail=too-large"),
        "{}",
        first.cache_status()
    );
    let second = get(&node, "/big").await;
    assert_eq!(second.body, big);
    assert_eq!(origin.count("/big"), 2, "not stored");
}

#[tokio::test]
async fn chunked_objects_that_outgrow_max_object_stream_through_unstored() {
    let chunk = Bytes::from(vec![7u8; 256 * 1024]);
    let chunks: Vec<Bytes> = (0..8).map(|_| chunk.clone()).collect();
    let origin = Origin::start(move |_, _| {
        Reply::ok(Bytes::new())
            .cache("max-age=60")
            .body(ReplyBody::Chunks(chunks.clone(), Duration::from_millis(1)))
    })
    .await;
    let node = Node::start(&site_config(
        &origin.url(),
        "[cache]\nmax_object = \"1MiB\"",
    ))
    .await;
    let first = get(&node, "/chunked").await;
    assert_eq!(first.body.len(), 8 * 256 * 1024);
    assert!(first.body.iter().all(|b| *b == 7));
    get(&node, "/chunked").await;
    assert_eq!(origin.count("/chunked"), 2);
}

#[tokio::test]
async fn small_chunked_objects_are_stored() {
    let origin = Origin::start(|_, _| {
        let parts = vec![
            Bytes::from_static(b"ab"),
            Bytes::from_static(b"cd"),
            Bytes::from_static(b"ef"),
        ];
        Reply::ok(Bytes::new())
            .cache("max-age=60")
            .body(ReplyBody::Chunks(parts, Duration::from_millis(5)))
    })
    .await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    assert_eq!(get(&node, "/small").await.text(), "abcdef");
    let hit = get(&node, "/small").await;
    assert_eq!(hit.text(), "abcdef");
    assert_eq!(hit.header("content-length"), "6");
    assert_eq!(origin.count("/small"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_fills_beyond_the_fill_budget_stream_through() {
    // memory 4 MiB: fills may buffer 1 MiB in all; each object is 900 KiB, sent slowly in
    // chunks of unknown total length, so four at once cannot all be buffered for storing.
    let chunk = Bytes::from(vec![9u8; 100 * 1024]);
    let origin = Origin::start(move |_, _| {
        let parts = (0..9).map(|_| chunk.clone()).collect();
        Reply::ok(Bytes::new())
            .cache("max-age=60")
            .body(ReplyBody::Chunks(parts, Duration::from_millis(30)))
    })
    .await;
    let node = Arc::new(
        Node::start(&site_config(
            &origin.url(),
            "[cache]\nmemory = \"4MiB\"\nmax_object = \"1MiB\"",
        ))
        .await,
    );
    let mut clients = Vec::new();
    for i in 0..4 {
        let node = node.clone();
        clients.push(tokio::spawn(async move {
            get(&node, &format!("/large?{i}")).await
        }));
    }
    for c in clients {
        let r = c.await.expect("client");
        assert_eq!(r.body.len(), 900 * 1024, "every client gets every byte");
        assert!(r.body.iter().all(|b| *b == 9));
    }
    let mut stored = 0;
    for i in 0..4 {
        let r = get_with(
            &node,
            &format!("/large?{i}"),
            &[("cache-control", "only-if-cached")],
        )
        .await;
        if r.status == 200 {
            stored += 1;
        }
    }
    assert!(stored >= 1, "the budget admits at least one fill");
    assert!(
        stored < 4,
        "four 900 KiB fills at once exceed a 1 MiB fill budget, yet all were buffered"
    );
}
