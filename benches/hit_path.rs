//! The cache-hit path, piece by piece and whole: request phase (site, key, directives),
//! store lookup, variant choice and freshness, and the response with Age / Cache-Status / Via.
//!
//! `cargo bench --bench hit_path`

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use outpost::cache::freshness::HeuristicPolicy;
use outpost::cache::policy::Policy;
use outpost::cluster::hop::Hops;
use outpost::config::Config;
use outpost::observability::metrics::Metrics;
use outpost::proxy::lookup::{self, Lookup};
use outpost::proxy::outcome::Outcome;
use outpost::proxy::request::{self, Sites};
use outpost::proxy::respond::{self, Node};
use outpost::proxy::store::{OriginHead, build_entry};
use outpost::service::ClientInfo;
use outpost::storage::{PurgeMode, Store};

const CONFIG: &str = r#"
[[site]]
hosts = ["example.com", "*.example.com"]
origin = ["http://127.0.0.1:9"]
"#;

fn origin_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ETAG, HeaderValue::from_static("\"5f3e-1a2b\""));
    h.insert(
        header::LAST_MODIFIED,
        HeaderValue::from_static("Mon, 01 Jan 2024 00:00:00 GMT"),
    );
    h.insert(
        header::DATE,
        HeaderValue::from_str(&httpdate::fmt_http_date(SystemTime::now())).expect("date"),
    );
    h
}

fn bench_hit_path(c: &mut Criterion) {
    let config = Config::parse(CONFIG, "bench.toml", Path::new(".")).expect("bench config");
    let metrics = Metrics::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let sites = Sites::build(
        &config.sites,
        HeuristicPolicy::default(),
        &config.dns,
        &metrics,
    )
    .expect("sites");
    let store = Store::new(64 << 20, Duration::from_secs(30), Arc::new(|_| {}));
    let now = SystemTime::now();
    let head = OriginHead {
        status: StatusCode::OK,
        headers: &origin_headers(),
        request_time: now,
        response_time: now,
    };
    let entry = Arc::new(build_entry(
        &head,
        origin_headers(),
        Bytes::from(vec![0u8; 1024]),
        &HeaderMap::new(),
        &Policy::default(),
        false,
    ));
    let client = ClientInfo {
        addr: "127.0.0.1:40000".parse().expect("addr"),
        scheme: http::uri::Scheme::HTTP,
    };
    let (parts, ()) = Request::builder()
        .uri("/f/1k")
        .header("host", "example.com:8080")
        .header("user-agent", "wrk")
        .header("accept", "*/*")
        .body(())
        .expect("request")
        .into_parts();
    let node = Node::new("edge-1");

    c.bench_function("request_phase", |b| {
        b.iter(|| {
            black_box(
                request::prepare(
                    &sites,
                    black_box(parts.clone()),
                    &client,
                    "edge-1",
                    Hops::default(),
                )
                .is_ok(),
            )
        })
    });
    let ctx =
        request::prepare(&sites, parts.clone(), &client, "edge-1", Hops::default()).expect("ctx");
    // Stored under the key the request phase computes (host and non-default port).
    runtime.block_on(store.insert(&ctx.key, entry.clone(), 16));
    c.bench_function("store_get", |b| {
        b.iter(|| {
            runtime.block_on(async { black_box(store.get(black_box(&ctx.key)).await.is_some()) })
        })
    });
    let variants = runtime.block_on(store.get(&ctx.key)).expect("stored");
    c.bench_function("lookup_decide", |b| {
        b.iter(|| {
            let decision = lookup::decide(
                Some(&variants),
                &ctx.headers,
                &ctx.directives,
                SystemTime::now(),
            );
            black_box(matches!(decision, Lookup::Hit { .. }))
        })
    });
    c.bench_function("respond_from_entry", |b| {
        b.iter(|| {
            black_box(respond::from_entry(
                &node,
                &entry,
                &ctx,
                SystemTime::now(),
                Outcome::hit(3599),
            ))
        })
    });
    c.bench_function("hit_path_whole", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let ctx =
                    request::prepare(&sites, parts.clone(), &client, "edge-1", Hops::default())
                        .expect("ctx");
                let now = SystemTime::now();
                let variants = store.get(&ctx.key).await;
                match lookup::decide(variants.as_deref(), &ctx.headers, &ctx.directives, now) {
                    Lookup::Hit { entry, freshness } => {
                        let outcome = Outcome::hit(freshness.ttl_secs());
                        black_box(respond::from_entry(&node, &entry, &ctx, now, outcome));
                    }
                    _ => unreachable!("the entry was stored above"),
                }
            })
        })
    });
}

/// Lookup among 8 stored variants of one URL (`Vary: Accept-Language`), matching the last.
fn bench_vary_lookup(c: &mut Criterion) {
    let languages = ["en", "fr", "de", "es", "it", "nl", "pt", "sv"];
    let now = SystemTime::now();
    let mut headers = origin_headers();
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Language"));
    let head = OriginHead {
        status: StatusCode::OK,
        headers: &headers,
        request_time: now,
        response_time: now,
    };
    let mut variants = outpost::storage::Variants::default();
    for lang in languages {
        let mut request = HeaderMap::new();
        request.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_static(lang));
        let entry = build_entry(
            &head,
            headers.clone(),
            Bytes::from_static(b"x"),
            &request,
            &Policy::default(),
            false,
        );
        variants = variants.with(Arc::new(entry), 16);
    }
    let mut request = HeaderMap::new();
    request.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_static("en"));
    c.bench_function("vary_select_8_variants", |b| {
        b.iter(|| black_box(variants.select(black_box(&request)).is_some()))
    });
}

/// Entries in the purge benchmark: 100k when benchmarking, a few when `cargo test` only checks
/// that the benchmark runs (in a debug build).
fn purge_entries() -> u32 {
    if std::env::args().any(|a| a == "--bench") {
        100_000
    } else {
        1_000
    }
}

/// A store of 100k small entries, every second one tagged `half` (`Surrogate-Key: half all`).
fn tagged_store(runtime: &tokio::runtime::Runtime) -> Store {
    let store = Store::new(1 << 30, Duration::from_secs(30), Arc::new(|_| {}));
    let now = SystemTime::now();
    let policy = Policy::default();
    runtime.block_on(async {
        for i in 0..purge_entries() {
            let mut headers = origin_headers();
            let tags = if i % 2 == 0 { "half all" } else { "all" };
            headers.insert("surrogate-key", HeaderValue::from_static(tags));
            let head = OriginHead {
                status: StatusCode::OK,
                headers: &headers,
                request_time: now,
                response_time: now,
            };
            let entry = build_entry(
                &head,
                headers.clone(),
                Bytes::new(),
                &HeaderMap::new(),
                &policy,
                false,
            );
            store
                .insert(&format!("http://example.com/o/{i}"), Arc::new(entry), 16)
                .await;
        }
        store.run_pending_tasks().await;
    });
    store
}

/// Purging a tag that 50k of 100k entries carry: the scan, then the removals.
fn bench_purge_by_tag(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("purge_by_tag_100k_entries");
    group.sample_size(10);
    let tags: Arc<[String]> = Arc::from(["half".to_owned()]);
    let store = tagged_store(&runtime);
    group.bench_function("soft_50k", |b| {
        b.iter(|| runtime.block_on(store.purge_tags(tags.clone(), PurgeMode::Soft)))
    });
    group.bench_function("hard_50k", |b| {
        b.iter_batched(
            || tagged_store(&runtime),
            |store| {
                let purged = runtime.block_on(store.purge_tags(tags.clone(), PurgeMode::Hard));
                assert_eq!(purged as u32, purge_entries() / 2);
                store
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_hit_path,
    bench_vary_lookup,
    bench_purge_by_tag
);
criterion_main!(benches);
