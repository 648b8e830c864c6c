//! Compression at the edge (`compress` of a site), through real nodes: the coding the
//! request weighs highest, compressed once per object and coding and kept with it, weak
//! suffixed ETags, conditionals and ranges over the encoded bytes, what is never touched,
//! and a purge that takes the encoded forms with the object.
//!
//! The table runs each case on one node and through a node that does not own the object;
//! the client sees the same bytes both ways.

use std::io::Read as _;

use bytes::Bytes;
use http::Method;

use crate::harness::*;
use crate::topology::{Ctx, both_ways};

both_ways! {
    a_hit_is_served_in_the_coding_the_request_weighs_highest
        with "compress = [\"br\", \"zstd\", \"gzip\"]\n",
    conditionals_and_ranges_apply_to_the_encoded_bytes with "compress = [\"br\", \"gzip\"]\n",
    what_is_never_compressed with "compress = [\"gzip\"]\ncompress_min_size = \"2KiB\"\n",
    a_purge_takes_the_encoded_forms_with_the_object with "compress = [\"br\"]\n",
}

/// A 100 KiB HTML page: repetitive, as pages are.
fn page(version: usize) -> Bytes {
    let mut html = String::from("<!doctype html><html><body>\n");
    let mut i = 0;
    while html.len() < 100 * 1024 {
        html.push_str(&format!(
            "<p class=\"row\">version {version}, row {i}: the quick brown fox</p>\n"
        ));
        i += 1;
    }
    html.push_str("</body></html>\n");
    Bytes::from(html)
}

fn decode(coding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "br" => brotli::BrotliDecompress(&mut &data[..], &mut out).expect("brotli"),
        "zstd" => out = zstd::stream::decode_all(data).expect("zstd"),
        "gzip" => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .expect("gzip");
        }
        other => panic!("unexpected coding {other:?}"),
    }
    out
}

fn varies_on_accept_encoding(r: &Resp) -> bool {
    r.headers
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|f| f.trim().eq_ignore_ascii_case("accept-encoding"))
}

fn html(body: Bytes) -> Reply {
    Reply::ok(body)
        .cache("max-age=600")
        .header("content-type", "text/html; charset=utf-8")
        .header("etag", "\"v1\"")
}

async fn a_hit_is_served_in_the_coding_the_request_weighs_highest(t: Ctx) {
    let body = page(1);
    let sent = body.clone();
    t.origin_answers(move |_, _| html(sent.clone()));
    let accept = ("accept-encoding", "gzip, deflate, br, zstd");
    // The miss is compressed as it streams (a fast level), and says answers vary; the
    // stored copy is the origin's.
    let miss = t.get_with("/p", &[accept]).await;
    assert_eq!(miss.header("content-encoding"), "br");
    assert_eq!(
        miss.header("content-length"),
        "",
        "streamed: no length known"
    );
    assert!(
        decode("br", &miss.body) == body,
        "the miss decodes to the body"
    );
    assert!(
        miss.body.len() * 5 < body.len(),
        "{} bytes",
        miss.body.len()
    );
    assert_eq!(miss.header("etag"), "W/\"v1-br\"");
    assert!(varies_on_accept_encoding(&miss), "{:?}", miss.headers);
    // Without a coding asked for, the origin's bytes.
    let plain = t.get("/p").await;
    assert!(plain.body == body);
    assert_eq!(plain.header("content-encoding"), "");
    let cases = [
        ("gzip, deflate, br, zstd", "br"),
        ("br;q=0.5, zstd;q=0.8, gzip;q=0.1", "zstd"),
        ("gzip", "gzip"),
        ("x-gzip", "gzip"),
        ("*", "br"),
        ("br;q=0, zstd;q=0, *;q=0.3", "gzip"),
    ];
    for (accept, want) in cases {
        let r = t.get_with("/p", &[("accept-encoding", accept)]).await;
        assert_eq!(r.status, 200, "{accept}");
        assert!(
            t.holder(&r).starts_with("hit"),
            "{accept}: {}",
            r.cache_status()
        );
        assert_eq!(r.header("content-encoding"), want, "{accept}");
        assert_eq!(r.header("content-length"), r.body.len().to_string());
        assert!(
            r.body.len() * 10 < body.len(),
            "{accept}: {} bytes",
            r.body.len()
        );
        assert_eq!(decode(want, &r.body), body, "{accept}");
        assert_eq!(r.header("etag"), format!("W/\"v1-{want}\""), "{accept}");
        assert!(varies_on_accept_encoding(&r), "{accept}");
    }
    // No coding acceptable, or none asked for: identity, still saying it varies.
    for headers in [
        &[("accept-encoding", "identity")][..],
        &[("accept-encoding", "br;q=0, zstd;q=0, gzip;q=0")],
        &[("accept-encoding", "deflate")],
        &[],
    ] {
        let r = t.get_with("/p", headers).await;
        assert_eq!(r.header("content-encoding"), "", "{headers:?}");
        assert_eq!(r.body, body, "{headers:?}");
        assert_eq!(r.header("etag"), "\"v1\"", "{headers:?}");
        assert!(varies_on_accept_encoding(&r), "{headers:?}");
    }
    // Every answer came from the one origin fetch.
    assert_eq!(t.origin.count("/p"), 1);
}

async fn conditionals_and_ranges_apply_to_the_encoded_bytes(t: Ctx) {
    let body = page(1);
    let sent = body.clone();
    t.origin_answers(move |_, _| html(sent.clone()));
    let br = ("accept-encoding", "br");
    t.get("/c").await;
    let whole = t.get_with("/c", &[br]).await;
    assert_eq!(whole.header("content-encoding"), "br");
    let encoded = whole.body.clone();
    // A client holding the encoded body revalidates it; one holding the identity body is
    // not told its copy is the encoded one.
    let same = t
        .get_with("/c", &[br, ("if-none-match", "W/\"v1-br\"")])
        .await;
    assert_eq!(same.status, 304, "{}", same.cache_status());
    assert!(same.body.is_empty());
    let other = t.get_with("/c", &[br, ("if-none-match", "\"v1\"")]).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.body, encoded);
    let identity = t.get_with("/c", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(identity.status, 304);
    // A range of the encoded form is a range of its bytes.
    let range = t.get_with("/c", &[br, ("range", "bytes=10-99")]).await;
    assert_eq!(range.status, 206);
    assert_eq!(range.header("content-encoding"), "br");
    assert_eq!(
        range.header("content-range"),
        format!("bytes 10-99/{}", encoded.len())
    );
    assert_eq!(range.body, encoded.slice(10..100));
    // If-Range with the identity's strong tag does not hold for the encoded form: all of it.
    let changed = t
        .get_with("/c", &[br, ("range", "bytes=0-9"), ("if-range", "\"v1\"")])
        .await;
    assert_eq!(changed.status, 200);
    assert_eq!(changed.body, encoded);
    // The identity form still answers ranges of its own bytes.
    let plain = t.get_with("/c", &[("range", "bytes=0-14")]).await;
    assert_eq!(plain.status, 206);
    assert_eq!(plain.body, body.slice(0..15));
    let head = t.send(Method::HEAD, "/c", &[br], Bytes::new()).await;
    assert_eq!(head.header("content-encoding"), "br");
    assert_eq!(head.header("content-length"), encoded.len().to_string());
    assert!(head.body.is_empty());
    assert_eq!(t.origin.count("/c"), 1);
}

async fn what_is_never_compressed(t: Ctx) {
    let text = page(1);
    let small = Bytes::from_static(&[b'a'; 2000]);
    let (text2, small2) = (text.clone(), small.clone());
    t.origin_answers(move |seen, _| {
        let (body, kind) = match seen.path.as_str() {
            "/small" => (small2.clone(), "text/plain"),
            "/image" => (text2.clone(), "image/png"),
            _ => (text2.clone(), "text/html"),
        };
        let reply = Reply::ok(body).header("content-type", kind);
        match seen.path.as_str() {
            "/no-transform" => reply.cache("max-age=600, no-transform"),
            "/encoded" => reply
                .cache("max-age=600")
                .header("content-encoding", "gzip"),
            _ => reply.cache("max-age=600"),
        }
    });
    let accept = ("accept-encoding", "gzip");
    for (path, body) in [
        ("/small", &small),
        ("/image", &text),
        ("/no-transform", &text),
        ("/encoded", &text),
    ] {
        t.get_with(path, &[accept]).await;
        let r = t.get_with(path, &[accept]).await;
        assert!(
            t.holder(&r).starts_with("hit"),
            "{path}: {}",
            r.cache_status()
        );
        assert_eq!(&r.body, body, "{path}");
        let origin_coding = if path == "/encoded" { "gzip" } else { "" };
        assert_eq!(r.header("content-encoding"), origin_coding, "{path}");
        assert!(!varies_on_accept_encoding(&r), "{path}: {:?}", r.headers);
        assert_eq!(t.origin.count(path), 1, "{path}");
    }
}

async fn a_purge_takes_the_encoded_forms_with_the_object(t: Ctx) {
    t.origin_answers(|_, n| html(page(n)));
    let br = ("accept-encoding", "br");
    t.get("/u").await;
    let first = t.get_with("/u", &[br]).await;
    assert_eq!(decode("br", &first.body), page(1));
    let purged = t.purge("/u", r#"{"urls":["http://example.test/u"]}"#).await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    let miss = t.get_with("/u", &[br]).await;
    assert!(
        t.holder(&miss).starts_with("fwd=uri-miss"),
        "{}",
        miss.cache_status()
    );
    assert!(
        decode("br", &miss.body) == page(2),
        "the miss is the new version"
    );
    let hit = t.get_with("/u", &[br]).await;
    assert_eq!(hit.header("content-encoding"), "br");
    assert_eq!(decode("br", &hit.body), page(2), "never the purged version");
    assert_eq!(t.origin.count("/u"), 2);
}

/// A burst of requests for an object not yet compressed compresses it once, and the
/// cache's budget counts the encoded bytes.
#[tokio::test]
async fn a_burst_compresses_once_and_the_budget_counts_the_encoded_bytes() {
    let body = page(1);
    let sent = body.clone();
    let origin = Origin::start(move |_, _| html(sent.clone())).await;
    let toml = site_config(&origin.url(), "") + "compress = [\"br\", \"gzip\"]\n";
    let node = Node::start(&toml).await;
    get(&node, "/burst").await;
    let owner_bytes = "outpost_cache_role_bytes{role=\"owner\"}";
    let before = node.metric(owner_bytes).await;
    let requests = (0..24).map(|_| get_with(&node, "/burst", &[("accept-encoding", "br")]));
    let answers = futures_util::future::join_all(requests).await;
    let encoded = answers[0].body.clone();
    for r in &answers {
        assert_eq!(r.header("content-encoding"), "br");
        assert_eq!(r.body, encoded, "one encoded form for all");
    }
    assert_eq!(decode("br", &encoded), body);
    let stored = "outpost_compressions_total{coding=\"br\",result=\"stored\"}";
    assert_eq!(node.metric(stored).await, 1.0, "compressed once");
    let served = "outpost_compressed_responses_total{coding=\"br\"}";
    assert_eq!(node.metric(served).await, 24.0);
    let after = node.metric(owner_bytes).await;
    let grown = after - before;
    let expected = encoded.len() as f64;
    assert!(
        grown >= expected && grown < expected + 4096.0,
        "owner bytes grew by {grown}, the encoded form is {expected}"
    );
    // A second coding is a second form, compressed once too.
    for _ in 0..3 {
        let r = get_with(&node, "/burst", &[("accept-encoding", "gzip")]).await;
        assert_eq!(decode("gzip", &r.body), body);
    }
    let gzip = "outpost_compressions_total{coding=\"gzip\",result=\"stored\"}";
    assert_eq!(node.metric(gzip).await, 1.0);
    assert_eq!(origin.count("/burst"), 1);
}

/// Binary data does not shrink: identity is served, and the attempt is not repeated.
#[tokio::test]
async fn a_body_that_does_not_shrink_is_served_as_is() {
    // Bytes of a xorshift generator: incompressible.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let noise = Bytes::from(noise);
    let sent = noise.clone();
    let origin = Origin::start(move |_, _| {
        Reply::ok(sent.clone())
            .cache("max-age=600")
            .header("content-type", "application/json")
    })
    .await;
    let toml = site_config(&origin.url(), "") + "compress = [\"gzip\"]\n";
    let node = Node::start(&toml).await;
    get(&node, "/noise").await;
    for _ in 0..3 {
        let r = get_with(&node, "/noise", &[("accept-encoding", "gzip")]).await;
        assert_eq!(r.header("content-encoding"), "");
        assert_eq!(r.body, noise);
        assert!(varies_on_accept_encoding(&r));
    }
    let larger = "outpost_compressions_total{coding=\"gzip\",result=\"larger\"}";
    assert_eq!(node.metric(larger).await, 1.0);
}

/// A stale object served for a failing origin is served as stored, and still says it
/// varies: a cache downstream must not keep it for every coding.
#[tokio::test]
async fn a_stale_answer_for_a_failing_origin_still_varies() {
    let body = page(1);
    let sent = body.clone();
    let origin = Origin::start(move |_, n| match n {
        1 => Reply::ok(sent.clone())
            .cache("max-age=0, stale-if-error=600")
            .header("content-type", "text/html"),
        _ => Reply::ok("down").status(503),
    })
    .await;
    let toml = site_config(&origin.url(), "") + "compress = [\"br\"]\n";
    let node = Node::start(&toml).await;
    get(&node, "/s").await;
    let r = get_with(&node, "/s", &[("accept-encoding", "br")]).await;
    assert_eq!(r.status, 200, "{}", r.cache_status());
    assert!(
        r.cache_status().contains("fwd-status=503"),
        "{}",
        r.cache_status()
    );
    assert_eq!(r.body, body);
    assert!(varies_on_accept_encoding(&r), "{:?}", r.headers);
}

/// Many large objects asked at once in a coding: at most as many compressions run as the
/// pool has threads (one fewer than the cores, at least one); the others are answered with
/// the identity body at once (counted `busy`), not queued; every answer is the object's
/// exact bytes; and hits of another object meanwhile stay fast.
#[tokio::test]
async fn a_burst_of_distinct_objects_never_queues_behind_compressions_nor_slows_hits() {
    const OBJECTS: usize = 40;
    // 1 MiB of text per object, distinct per path.
    let big = |path: &str| {
        let mut text = String::with_capacity(1 << 20);
        let mut i = 0;
        while text.len() < 1 << 20 {
            text.push_str(&format!("<p>{path} row {i}: the quick brown fox</p>\n"));
            i += 1;
        }
        Bytes::from(text)
    };
    let origin = Origin::start(move |seen, _| html(big(&seen.path))).await;
    let toml = site_config(&origin.url(), "") + "compress = [\"br\"]\n";
    let toml = toml.replace("[[site]]", "[cache]\nmemory = \"512MiB\"\n[[site]]");
    let node = Node::start(&toml).await;
    let paths: Vec<String> = (0..OBJECTS).map(|i| format!("/big/{i}")).collect();
    for path in &paths {
        assert_eq!(get(&node, path).await.status, 200);
    }
    get(&node, "/probe").await;
    let node = &node;
    let burst = futures_util::future::join_all(paths.iter().map(|path| async move {
        (
            path,
            get_with(node, path, &[("accept-encoding", "br")]).await,
        )
    }));
    let probe = async {
        let mut took = Vec::new();
        for _ in 0..200 {
            let started = std::time::Instant::now();
            let r = get(node, "/probe").await;
            took.push(started.elapsed());
            assert_eq!(r.status, 200);
        }
        took
    };
    let (answers, mut took) = tokio::join!(burst, probe);
    for (path, r) in &answers {
        let body = match r.header("content-encoding") {
            "br" => Bytes::from(decode("br", &r.body)),
            "" => r.body.clone(),
            other => panic!("{path}: coding {other}"),
        };
        assert_eq!(body, big(path), "{path}");
    }
    let busy = node
        .metric("outpost_compressions_total{coding=\"br\",result=\"busy\"}")
        .await;
    let stored = node
        .metric("outpost_compressions_total{coding=\"br\",result=\"stored\"}")
        .await;
    let threads =
        std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1));
    assert!(
        stored >= 1.0 && stored <= threads as f64 + 1.0,
        "stored {stored}"
    );
    assert!(
        busy >= (OBJECTS - threads - 1) as f64,
        "busy {busy}: queued instead"
    );
    took.sort();
    let p99 = took[took.len() * 99 / 100];
    assert!(
        p99 < std::time::Duration::from_millis(250),
        "hit p99 {p99:?}"
    );
    assert_eq!(origin.total(), OBJECTS + 1);
}
