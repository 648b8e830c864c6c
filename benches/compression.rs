//! What one core compresses per second, by coding and level, on a 100 KiB HTML page: the
//! figures behind the default levels (stored objects at 6, misses as they stream at 1) and
//! the statement of them in docs/configuration.md.
//!
//! `cargo bench --bench compression`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use outpost::proxy::compress::compress;

/// A 100 KiB page: repetitive markup, as pages are.
fn page() -> Vec<u8> {
    let mut html = String::from("<!doctype html><html><body>\n");
    let mut i = 0;
    while html.len() < 100 * 1024 {
        html.push_str(&format!(
            "<p class=\"row\">row {i}: the quick brown fox jumps over the lazy dog</p>\n"
        ));
        i += 1;
    }
    html.push_str("</body></html>\n");
    html.into_bytes()
}

fn bench_compression(c: &mut Criterion) {
    let body = page();
    let mut group = c.benchmark_group("compress_100k_page");
    group.throughput(Throughput::Bytes(body.len() as u64));
    for (coding, level) in [
        ("br", 1),
        ("br", 4),
        ("br", 6),
        ("zstd", 1),
        ("zstd", 6),
        ("gzip", 1),
        ("gzip", 6),
    ] {
        let coded = compress(coding, level, &body).expect("compresses");
        let ratio = body.len() as f64 / coded.len() as f64;
        group.bench_function(format!("{coding}_{level} (ratio {ratio:.1})"), |b| {
            b.iter(|| compress(coding, level, black_box(&body)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_compression);
criterion_main!(benches);
