//! `cache.chunk_size`: objects larger than one chunk are fetched with Range requests and
//! stored as chunks, each owned by its own node of the ring, so an object larger than any
//! node's memory is cached across the cluster. Three real processes of 48 MiB each and a 64 MiB
//! object; an origin that changes the object mid-read, one that ignores Range, and one with no
//! validator, on one node.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::Method;

use crate::harness::*;
use crate::replicas::{get_from, metric, start_three};
use crate::util::{self, purge};

const MIB: usize = 1 << 20;
const SIZE: usize = 64 * MIB;

/// `len` bytes whose every 4-byte word names its offset and the version, so a byte from the
/// wrong place or the wrong version shows.
pub(crate) fn representation(len: usize, version: u32) -> Bytes {
    let mut out = Vec::with_capacity(len + 4);
    let salt = version.wrapping_mul(0x9e37_79b9);
    let mut word = 0u32;
    while out.len() < len {
        out.extend_from_slice(&(word ^ salt).to_le_bytes());
        word += 1;
    }
    out.truncate(len);
    Bytes::from(out)
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// `bytes=first-last` or `bytes=first-` within `len`.
fn one_range(range: &str, len: usize) -> Option<(usize, usize)> {
    let (first, last) = range.strip_prefix("bytes=")?.split_once('-')?;
    let first: usize = first.parse().ok()?;
    let last: usize = match last {
        "" => len - 1,
        last => last.parse::<usize>().ok()?.min(len - 1),
    };
    (first <= last).then_some((first, last))
}

/// What a file server answers for `body` tagged `etag`: one range honoured unless `If-Range`
/// names another tag, the whole otherwise.
pub(crate) fn file_server(seen: &Seen, body: &Bytes, etag: &str) -> Reply {
    let range = seen.header("range");
    let if_range = seen.header("if-range");
    let reply = match one_range(&range, body.len()) {
        Some((first, last)) if if_range.is_empty() || if_range == etag => {
            Reply::ok(body.slice(first..=last)).status(206).header(
                "content-range",
                format!("bytes {first}-{last}/{}", body.len()),
            )
        }
        _ => Reply::ok(body.clone()),
    };
    reply
        .header("etag", etag)
        .header("accept-ranges", "bytes")
        .cache("max-age=600")
}

fn ranged(origin: &Origin) -> Vec<Seen> {
    origin
        .requests()
        .into_iter()
        .filter(|s| !s.header("range").is_empty())
        .collect()
}

async fn get_range(http: std::net::SocketAddr, path: &str, range: &str) -> Resp {
    let headers = [("range", range)];
    send(
        http,
        Method::GET,
        path,
        "example.test",
        &headers,
        Bytes::new(),
    )
    .await
}

#[tokio::test]
async fn a_large_object_is_spread_over_the_cluster_in_chunks() {
    let v1 = representation(SIZE, 1);
    let body = v1.clone();
    let origin = Origin::start(move |seen, _| file_server(seen, &body, "\"v1\"")).await;
    let cache = "[cache]\nmemory = \"48MiB\"\nmax_object = \"256MiB\"\nchunk_size = \"1MiB\"";
    let nodes = start_three(&origin, 1, cache).await;
    let path = "/big.bin";

    let r = get_from(nodes[0].http, path).await;
    assert_eq!(r.status, 200, "{}", r.cache_status());
    assert_eq!(r.body.len(), SIZE);
    assert_eq!(sha256(&r.body), sha256(&v1));
    // One GET whose head said "chunks", then each 1 MiB chunk once, asked with its range and
    // the validator.
    let ranges = ranged(&origin);
    assert_eq!(origin.total() - ranges.len(), 1);
    assert_eq!(ranges.len(), SIZE / MIB);
    assert!(ranges.iter().all(|s| s.header("if-range") == "\"v1\""));
    let mut asked: Vec<String> = ranges.iter().map(|s| s.header("range")).collect();
    asked.sort();
    asked.dedup();
    assert_eq!(asked.len(), SIZE / MIB, "every chunk asked once");
    let fetched = origin.total();

    // Three ranges, one through each node: a chunk's start, across a chunk boundary, the end.
    let cases = [
        ("bytes=0-99", 0, 99),
        ("bytes=1048570-1048580", 1_048_570, 1_048_580),
        ("bytes=-1000", SIZE - 1000, SIZE - 1),
    ];
    for (i, (range, first, last)) in cases.into_iter().enumerate() {
        let r = get_range(nodes[i].http, path, range).await;
        assert_eq!(r.status, 206, "{range}: {}", r.cache_status());
        let want = format!("bytes {first}-{last}/{SIZE}");
        assert_eq!(r.header("content-range"), want);
        assert_eq!(sha256(&r.body), sha256(&v1[first..=last]), "{range}");
    }
    // Two ranges at once: multipart/byteranges, each part from its chunk.
    let r = get_range(nodes[1].http, path, "bytes=10-19,33554432-33554441").await;
    assert_eq!(r.status, 206);
    assert!(r.header("content-type").starts_with("multipart/byteranges"));
    for (first, last) in [(10, 19), (33_554_432, 33_554_441)] {
        let part = &v1[first..=last];
        assert!(
            r.body.windows(part.len()).any(|w| w == part),
            "part {first}-{last}"
        );
    }

    // The whole again, through another node: every chunk from the cluster, read by the node
    // asked from each chunk's owner (the object's owner sends its manifest, not the bytes).
    let owner = util::admin_get(
        nodes[0].admin,
        "/cluster/owner?url=http%3A%2F%2Fexample.test%2Fbig.bin",
        &[],
    )
    .await;
    let owner: serde_json::Value = serde_json::from_slice(&owner.body).expect("owner JSON");
    let asked = (0..3)
        .rev()
        .find(|&i| owner["address"] != nodes[i].http.to_string().as_str())
        .expect("a node that does not own it");
    let ok = r#"outpost_chunk_fetches_total{result="ok"}"#;
    let mut before = Vec::new();
    for n in &nodes {
        before.push(metric(n.admin, ok).await);
    }
    let r = get_from(nodes[asked].http, path).await;
    assert_eq!(r.status, 200);
    assert_eq!(sha256(&r.body), sha256(&v1));
    assert_eq!(origin.total(), fetched, "the origin is not asked again");
    for (i, n) in nodes.iter().enumerate() {
        let read = metric(n.admin, ok).await - before[i];
        let want = if i == asked { (SIZE / MIB) as f64 } else { 0.0 };
        assert_eq!(read, want, "chunks read by node-{i}: {}", r.cache_status());
    }

    // Every node holds some of the chunks, and none more than its memory.
    let mut total = 0.0;
    for (i, n) in nodes.iter().enumerate() {
        let bytes = metric(n.admin, "outpost_cache_bytes").await;
        let mib = bytes / MIB as f64;
        eprintln!("node-{i} holds {mib:.1} MiB");
        assert!((4.0..=48.0).contains(&mib), "node-{i} holds {mib:.1} MiB");
        total += bytes;
    }
    assert!(
        total >= SIZE as f64,
        "the cluster holds the object: {total}"
    );

    // A purge by URL on one node removes every chunk on every node.
    let url = r#"{"urls":["http://example.test/big.bin"]}"#;
    let done = purge(nodes[0].admin, Some("secret"), url).await;
    assert_eq!(done.status, 200, "{}", done.text());
    let r = get_from(nodes[1].http, path).await;
    assert_eq!(sha256(&r.body), sha256(&v1));
    assert_eq!(origin.total(), 2 * fetched, "every chunk fetched again");
}

/// One in-process node storing objects over 64 KiB in chunks of 64 KiB.
async fn small_chunks(origin: &Origin) -> Node {
    let extra = "[cache]\nchunk_size = \"64KiB\"\nchunk_above = \"64KiB\"";
    Node::start(&site_config(&origin.url(), extra)).await
}

#[tokio::test]
async fn a_version_change_mid_object_is_never_stitched() {
    let (v1, v2) = (representation(MIB, 1), representation(MIB, 2));
    let chunk_requests = Arc::new(AtomicUsize::new(0));
    let count = chunk_requests.clone();
    let (old, new) = (v1.clone(), v2.clone());
    // The object changes after the origin answered six chunk requests.
    let origin = Origin::start(move |seen, _| {
        let n = match seen.header("range").is_empty() {
            true => count.load(Ordering::SeqCst),
            false => count.fetch_add(1, Ordering::SeqCst) + 1,
        };
        match n <= 6 {
            true => file_server(seen, &old, "\"v1\""),
            false => file_server(seen, &new, "\"v2\""),
        }
    })
    .await;
    let node = small_chunks(&origin).await;

    // The 7th chunk is asked with If-Range "v1" and comes back as the whole of v2: the body
    // is cut, an error the client sees, never v1's start with v2's end.
    let cut = try_send(
        node.http,
        Method::GET,
        "/v",
        "example.test",
        &[],
        Bytes::new(),
    )
    .await;
    match cut {
        Err(_) => {}
        Ok(r) => panic!(
            "a complete body of {} bytes: {}",
            r.body.len(),
            r.cache_status()
        ),
    }
    let changed = r#"outpost_chunk_fetches_total{result="changed"}"#;
    assert_eq!(node.metric(changed).await, 1.0);
    // The manifest went with it: the next request is the new version, whole.
    let r = get(&node, "/v").await;
    assert_eq!(r.status, 200);
    assert_eq!(sha256(&r.body), sha256(&v2));
    let again = get(&node, "/v").await;
    assert_eq!(sha256(&again.body), sha256(&v2));
    assert!(
        again.cache_status().contains("hit"),
        "{}",
        again.cache_status()
    );
}

#[tokio::test]
async fn an_origin_that_ignores_range_gets_the_object_stored_whole() {
    let body = representation(2 * MIB, 3);
    let whole = body.clone();
    let origin = Origin::start(move |_, _| {
        Reply::ok(whole.clone())
            .header("etag", "\"w\"")
            .cache("max-age=600")
    })
    .await;
    let node = small_chunks(&origin).await;
    let r = get(&node, "/ignores").await;
    assert_eq!(r.status, 200);
    assert_eq!(sha256(&r.body), sha256(&body));
    // The head, the first chunk answered whole, then the object fetched and stored whole.
    assert_eq!(origin.total(), 3);
    let ignored = r#"outpost_chunk_fetches_total{result="ignored"}"#;
    assert_eq!(node.metric(ignored).await, 1.0);
    let r = get(&node, "/ignores").await;
    assert_eq!(sha256(&r.body), sha256(&body));
    assert!(r.cache_status().contains("hit"), "{}", r.cache_status());
    assert_eq!(origin.total(), 3);
}

/// An origin whose 206 answers lack the `ETag` its 200 had (the bytes are right): its ranges
/// cannot be stitched safely, so the object is remembered as one not to chunk, and served
/// and stored whole, as for an origin that ignores `Range`; never a 502.
#[tokio::test]
async fn ranges_without_the_validator_get_the_object_stored_whole() {
    let body = representation(2 * MIB, 5);
    let whole = body.clone();
    let origin = Origin::start(move |seen, _| {
        let reply = file_server(seen, &whole, "\"t\"");
        match seen.header("range").is_empty() {
            true => reply,
            false => reply.without_header("etag"),
        }
    })
    .await;
    let node = small_chunks(&origin).await;
    let r = get(&node, "/untagged").await;
    assert_eq!(r.status, 200, "{}", r.cache_status());
    assert_eq!(sha256(&r.body), sha256(&body));
    // The head, the first chunk without its tag, then the object fetched and stored whole.
    assert_eq!(origin.total(), 3);
    let r = get(&node, "/untagged").await;
    assert_eq!(r.status, 200);
    assert_eq!(sha256(&r.body), sha256(&body));
    assert!(r.cache_status().contains("hit"), "{}", r.cache_status());
    assert_eq!(origin.total(), 3);
}

#[tokio::test]
async fn an_object_without_a_validator_is_not_chunked() {
    let body = representation(2 * MIB, 4);
    let whole = body.clone();
    let origin = Origin::start(move |_, _| Reply::ok(whole.clone()).cache("max-age=600")).await;
    let node = small_chunks(&origin).await;
    for _ in 0..2 {
        let r = get(&node, "/plain").await;
        assert_eq!(sha256(&r.body), sha256(&body));
    }
    assert_eq!(origin.total(), 1);
    assert!(ranged(&origin).is_empty(), "no Range without a validator");
}

#[tokio::test]
async fn a_range_of_a_cold_object_fetches_only_its_chunks() {
    let body = representation(MIB, 5);
    let served = body.clone();
    let origin = Origin::start(move |seen, _| file_server(seen, &served, "\"r\"")).await;
    let node = small_chunks(&origin).await;
    let r = get_range(node.http, "/r", "bytes=200000-200009").await;
    assert_eq!(r.status, 206);
    assert_eq!(&r.body[..], &body[200_000..200_010]);
    // The head (whose body is not read), then the one chunk holding the range.
    let ranges: Vec<String> = ranged(&origin).iter().map(|s| s.header("range")).collect();
    assert_eq!(ranges, ["bytes=196608-262143"]);
}

/// With `replicas = 2` two of three nodes hold each object, and a client's range through a
/// holder that is not the owner goes to the owner as a range: the owner fetches the chunk it
/// covers, where a fill of the whole for a replica would read every chunk of the object.
#[tokio::test]
async fn a_range_through_a_replica_holder_fetches_only_its_chunks() {
    const LEN: usize = 8 * MIB;
    let body = representation(LEN, 7);
    let served = body.clone();
    let origin = Origin::start(move |seen, _| file_server(seen, &served, "\"h\"")).await;
    let cache = "[cache]\nmax_object = \"64MiB\"\nchunk_size = \"1MiB\"\nchunk_above = \"1MiB\"";
    let nodes = start_three(&origin, 2, cache).await;
    // One object per node asked, so each node is the owner of some and a holder of others.
    for (i, n) in nodes.iter().enumerate() {
        for j in 0..3 {
            let path = format!("/range-{i}-{j}.bin");
            let before = ranged(&origin).len();
            let r = get_range(n.http, &path, "bytes=3145728-3145737").await;
            assert_eq!(r.status, 206, "{path}: {}", r.cache_status());
            assert_eq!(&r.body[..], &body[3_145_728..3_145_738], "{path}");
            let asked: Vec<String> = ranged(&origin)[before..]
                .iter()
                .map(|s| s.header("range"))
                .collect();
            assert_eq!(asked, ["bytes=3145728-4194303"], "{path}: only its chunk");
        }
    }
}

/// An object deleted at the origin while its manifest is stored: the next chunk read is
/// refused (404), which drops the manifest and fetches the object again, so the client sees
/// the origin's 404 rather than a 502 until the manifest expires.
#[tokio::test]
async fn a_chunk_refused_by_the_origin_refetches_the_object() {
    let body = representation(MIB, 8);
    let served = body.clone();
    let deleted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gone = deleted.clone();
    let origin = Origin::start(move |seen, _| match gone.load(Ordering::SeqCst) {
        true => Reply::ok(Bytes::from_static(b"no such file")).status(404),
        false => file_server(seen, &served, "\"d\""),
    })
    .await;
    let node = small_chunks(&origin).await;
    let r = get_range(node.http, "/d", "bytes=0-9").await;
    assert_eq!(r.status, 206);
    assert_eq!(&r.body[..], &body[..10]);

    deleted.store(true, Ordering::SeqCst);
    // A chunk not read yet: asked of the origin, refused.
    let r = get_range(node.http, "/d", "bytes=900000-900009").await;
    assert_eq!(r.status, 404, "{}", r.cache_status());
    assert_eq!(&r.body[..], b"no such file");
    let refused = r#"outpost_chunk_fetches_total{result="gone"}"#;
    assert_eq!(node.metric(refused).await, 1.0);
    // The manifest went: even the chunk still stored is not served as the object.
    let r = get_range(node.http, "/d", "bytes=0-9").await;
    assert_eq!(r.status, 404, "{}", r.cache_status());
}

/// A response to a request with credentials that the origin marks shareable is answered
/// whole, never in chunks: the chunks' requests are shared by every client and go without
/// the credentials, which the origin would refuse.
#[tokio::test]
async fn a_request_with_credentials_is_not_chunked() {
    let body = representation(2 * MIB, 9);
    let served = body.clone();
    let origin = Origin::start(move |seen, _| match seen.header("authorization").as_str() {
        "Bearer ok" => {
            let mut reply = file_server(seen, &served, "\"a\"");
            reply.headers.retain(|(name, _)| *name != "cache-control");
            reply.cache("public, max-age=600")
        }
        _ => Reply::ok(Bytes::from_static(b"who are you")).status(401),
    })
    .await;
    let node = small_chunks(&origin).await;
    let headers = [("authorization", "Bearer ok")];
    for _ in 0..2 {
        let r = send(
            node.http,
            Method::GET,
            "/private.bin",
            "example.test",
            &headers,
            Bytes::new(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.cache_status());
        assert_eq!(sha256(&r.body), sha256(&body));
    }
    assert!(ranged(&origin).is_empty(), "no chunk requests");
    assert!(
        origin
            .requests()
            .iter()
            .all(|s| s.header("authorization") == "Bearer ok"),
        "every origin request carried the credentials"
    );
}
