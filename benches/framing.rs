//! The HTTP/1.1 framing watch (`listener::framing`), which follows every byte a client sends
//! on an HTTP/1.1 connection to catch a head with both Transfer-Encoding and Content-Length.
//! It parses each request head a second time (hyper parses it first), so its cost is set
//! beside what that first parse costs: httparse on the same bytes, as hyper calls it.
//!
//! `cargo bench --bench framing`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use outpost::listener::framing::Framing;

/// A browser's GET, as one read returns it (about 600 bytes).
const GET: &[u8] = b"GET /assets/app.3f9a1c.js?v=2 HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: */*\r\n\
Accept-Language: en-GB,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.com/products/42\r\n\
Connection: keep-alive\r\n\
Cookie: session=4f1c2a9e8b7d6c5e; theme=dark; consent=1\r\n\
Sec-Fetch-Dest: script\r\n\
Sec-Fetch-Mode: no-cors\r\n\
Sec-Fetch-Site: same-origin\r\n\
If-None-Match: \"5f3e-1a2b\"\r\n\
Priority: u=2\r\n\
\r\n";

/// hyper's first parse of the same head.
fn httparse_head(bytes: &[u8]) -> usize {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => 0,
    }
}

fn bench_framing(c: &mut Criterion) {
    let mut group = c.benchmark_group("framing");
    group.throughput(Throughput::Bytes(GET.len() as u64));
    group.bench_function("httparse_get_head", |b| {
        b.iter(|| black_box(httparse_head(black_box(GET))))
    });
    // A connection's next request: the watch state carries over, as on a keep-alive
    // connection.
    let mut framing = Framing::new(64 << 10, 100);
    group.bench_function("watch_get_head", |b| {
        b.iter(|| black_box(framing.feed(black_box(GET))))
    });
    // The same head dripped in 16-byte reads (a slow client): each read is looked at once.
    group.bench_function("watch_get_head_16_byte_reads", |b| {
        b.iter(|| {
            let mut framing = Framing::new(64 << 10, 100);
            for piece in GET.chunks(16) {
                black_box(framing.feed(black_box(piece)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_framing);
criterion_main!(benches);
