//! Between lookup and respond: the stored body, or its form in the coding the request
//! prefers (`compress` of the site), compressed once per object and coding.
//!
//! The encoded form is kept inside the stored entry it was made from (see
//! [`crate::storage::entry::Encodings`]) rather than under a key of its own: it then shares the
//! object's purge, lifetime, eviction and replacement by a newer response with no bookkeeping,
//! and a hit finds it without a second lookup. The first request for a coding compresses on
//! the blocking pool while those arriving meanwhile wait for it; the store then weighs the
//! object again so its budget counts the new bytes.
//!
//! A miss streams before it is stored: its 200 body goes to the client compressed chunk by
//! chunk at a fast level as it arrives ([`stream`]), while the stored copy stays the
//! origin's, compressed once at the site's level for later hits. Another node asking gets
//! the origin's bytes. Either way the answer carries `Vary: Accept-Encoding` when the
//! object's forms differ, so caches downstream keep them apart.

use std::io::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};

use super::Proxy;
use super::fill::FillHead;
use super::outcome::Served;
use super::request::RequestContext;
use crate::cache::control::ResponseDirectives;
use crate::cache::encoding::{self, Coding, Levels, Rules, compressible, negotiate};
use crate::service::ProxyBody;
use crate::storage::budget::Reservation;

pub(crate) mod pool;
mod stream;
use crate::storage::{Entry, EntryParts};

/// What a stored entry is answered with.
pub(crate) enum Form {
    /// The entry as it is: compression is off, or does not apply to it.
    AsStored,
    /// The entry as it is, for a request that takes no coding the site offers; the response
    /// says it varies on `Accept-Encoding`.
    Identity,
    /// The entry's encoded form.
    Encoded(Arc<Entry>, Coding),
}

/// The form of `entry` to answer `ctx` with, compressing it first if this is the first
/// request for the coding.
pub(crate) async fn choose(proxy: &Proxy, ctx: &RequestContext, entry: &Arc<Entry>) -> Form {
    let Some(rules) = &ctx.site.compress else {
        return Form::AsStored;
    };
    if entry.chunks.is_some() || applies(rules, entry).is_err() {
        return Form::AsStored;
    }
    let Some(coding) = negotiate(&ctx.headers, &rules.codings) else {
        return Form::Identity;
    };
    if let Some(form) = entry.encoded(coding) {
        return Form::Encoded(form.clone(), coding);
    }
    // Boxed: the first request for a coding is rare, and its future would otherwise make
    // every hit's future (moved on each task spawn) as large as itself.
    match Box::pin(encode_once(proxy, ctx, entry, coding, rules.levels)).await {
        Some(form) => Form::Encoded(form, coding),
        None => Form::Identity,
    }
}

/// `entry` in `coding`, compressed by this request or by the one that came first; `None`
/// (identity) when it is not smaller, or when every compression thread is busy or the fill
/// budget is spent (then the slot stays empty and a later request compresses it).
async fn encode_once(
    proxy: &Proxy,
    ctx: &RequestContext,
    entry: &Arc<Entry>,
    coding: Coding,
    levels: Levels,
) -> Option<Arc<Entry>> {
    let slot = entry.encodings().form(coding);
    let mut made_here = false;
    // One request at a time tries to fill the slot; the others wait for it. A try that finds
    // the pool or the budget full leaves the slot empty (identity for this request), and the
    // next one waiting tries in its turn.
    let made = slot
        .get_or_try_init(|| async {
            let Some(started) = start(proxy, entry, coding, levels) else {
                proxy.metrics.store.compression(coding.token(), "busy");
                return Err(Busy);
            };
            made_here = true;
            Ok(finish(proxy, entry, coding, started).await)
        })
        .await
        .ok()?
        .clone();
    if made_here && made.is_some() {
        // The slot is set: weighed again, the entry counts the encoded bytes.
        proxy.store.reweigh(&ctx.key, entry).await;
    }
    made
}

/// Every compression thread was busy, or the budget spent.
struct Busy;

/// Whether answers from `entry` vary on `Accept-Encoding` (some may be encoded): for the
/// stored responses served without the compress phase (stale, when the origin fails).
pub(crate) fn stored_varies(ctx: &RequestContext, entry: &Entry) -> bool {
    ctx.site
        .compress
        .as_ref()
        .is_some_and(|rules| entry.chunks.is_none() && applies(rules, entry).is_ok())
}

fn applies(rules: &Rules, entry: &Entry) -> Result<(), encoding::Untouched> {
    compressible(
        entry.status,
        &entry.headers,
        entry.directives.no_transform,
        rules,
        entry.len(),
    )
}

/// Whether a response arriving from a fill will have encoded forms once stored, so says it
/// varies on `Accept-Encoding` already. Its length may not be known yet: then only its type
/// and status decide.
pub(crate) fn fill_varies(ctx: &RequestContext, head: &FillHead) -> bool {
    let Some(rules) = &ctx.site.compress else {
        return false;
    };
    let no_transform = ResponseDirectives::parse(&head.headers).no_transform;
    // A length not known yet: its type and status decide.
    let len = head.content_length.unwrap_or(rules.min_size);
    compressible(head.status, &head.headers, no_transform, rules, len).is_ok()
}

/// A miss (a fill streaming to this client) in the coding the request prefers: its 200 body
/// compressed as it streams, at a fast level (see [`stream`]); anything else as it is. Only
/// for a fill that [`fill_varies`] said will be compressed once stored.
pub(crate) fn encode_miss(proxy: &Proxy, ctx: &RequestContext, mut served: Served) -> Served {
    let Some(rules) = &ctx.site.compress else {
        return served;
    };
    let response = &mut served.response;
    if ctx.method != http::Method::GET || response.status() != http::StatusCode::OK {
        return served;
    }
    let Some(coding) = negotiate(&ctx.headers, &rules.codings) else {
        return served;
    };
    if crate::cache::content_length(response.headers()).is_some_and(|l| l > rules.max_size) {
        return served;
    }
    let Some(encoder) = stream::Encoder::start(coding) else {
        return served;
    };
    let body = std::mem::replace(response.body_mut(), ProxyBody::Empty);
    let ProxyBody::Stream { chunks, .. } = body else {
        *response.body_mut() = body;
        return served;
    };
    *response.body_mut() = ProxyBody::Stream {
        chunks: stream::encode_stream(chunks, encoder),
        len: None,
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(coding.token()),
    );
    headers.remove(header::CONTENT_LENGTH);
    if let Some(etag) = headers.get(header::ETAG).cloned() {
        headers.insert(header::ETAG, encoding::encoded_etag(&etag, coding));
    }
    for name in OF_THE_BYTES {
        headers.remove(name);
    }
    add_vary(headers);
    proxy.metrics.store.compressed_response(coding.token());
    served
}

/// Add `Accept-Encoding` to `Vary`, unless it is listed (or `*` is).
pub(crate) fn add_vary(headers: &mut HeaderMap) {
    let listed = headers
        .get_all(header::VARY)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(crate::cache::control::trim_ows)
        .any(|f| f == b"*" || f.eq_ignore_ascii_case(b"accept-encoding"));
    if !listed {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// A compression under way on the pool, and the working memory it holds.
struct Started {
    result: tokio::sync::oneshot::Receiver<std::io::Result<Vec<u8>>>,
    _held: Reservation,
}

/// What a compression of `len` bytes holds while it runs: its output (at most about the
/// input) and the coder's state (brotli's and zstd's windows and tables at the levels
/// offered; deflate's is small).
fn working_memory(coding: Coding, len: usize) -> u64 {
    let state: u64 = match coding {
        Coding::Br => 24 << 20,
        Coding::Zstd => 8 << 20,
        Coding::Gzip => 1 << 20,
    };
    len as u64 + state
}

/// Start compressing `entry`'s body on the pool, within the fill budget; `None` if either
/// is full.
fn start(proxy: &Proxy, entry: &Entry, coding: Coding, levels: Levels) -> Option<Started> {
    let mut held = Reservation::new(proxy.fill_budget.clone());
    if !held.grow(working_memory(coding, entry.body.len())) {
        return None;
    }
    let body = entry.body.clone();
    let result = proxy
        .compress_pool
        .try_run(move || encode(coding, levels, &body))?;
    Some(Started {
        result,
        _held: held,
    })
}

/// The encoded form, once the pool is done: `None` when it would not be smaller or the
/// coder failed.
async fn finish(
    proxy: &Proxy,
    entry: &Arc<Entry>,
    coding: Coding,
    started: Started,
) -> Option<Arc<Entry>> {
    let coded = started.result.await;
    let metrics = &proxy.metrics.store;
    match coded {
        Ok(Ok(coded)) if coded.len() < entry.body.len() => {
            metrics.compression(coding.token(), "stored");
            Some(Arc::new(encoded_entry(entry, coding, Bytes::from(coded))))
        }
        Ok(Ok(_)) => {
            metrics.compression(coding.token(), "larger");
            None
        }
        Ok(Err(e)) => {
            metrics.compression(coding.token(), "failed");
            tracing::warn!(coding = coding.token(), error = %e, "compression failed");
            None
        }
        Err(_) => {
            metrics.compression(coding.token(), "failed");
            tracing::warn!(coding = coding.token(), "compression thread gone");
            None
        }
    }
}

/// `body` compressed as a site's `compress` does it for a stored object: `coding` is `br`,
/// `zstd` or `gzip` and `level` in its range; `None` for another coding or a failure. For
/// benchmarks and tools (`benches/compression.rs`).
pub fn compress(coding: &str, level: i32, body: &[u8]) -> Option<Vec<u8>> {
    let coding = Coding::parse(coding.as_bytes())?;
    let level_u = u32::try_from(level).ok()?;
    let levels = Levels {
        br: level_u,
        zstd: level,
        gzip: level_u,
    };
    encode(coding, levels, body).ok()
}

/// `body` in `coding`.
pub(crate) fn encode(coding: Coding, levels: Levels, body: &[u8]) -> std::io::Result<Vec<u8>> {
    match coding {
        Coding::Br => {
            // A 4 MiB window (lgwin 22, brotli's default) and its usual buffer.
            let mut w = brotli::CompressorWriter::new(Vec::new(), 4096, levels.br, 22);
            w.write_all(body)?;
            w.flush()?;
            Ok(w.into_inner())
        }
        Coding::Zstd => zstd::bulk::compress(body, levels.zstd),
        Coding::Gzip => {
            let level = flate2::Compression::new(levels.gzip);
            let mut w = flate2::write::GzEncoder::new(Vec::new(), level);
            w.write_all(body)?;
            w.finish()
        }
    }
}

/// Fields that describe the identity body's bytes and are wrong for the encoded ones.
const OF_THE_BYTES: [&str; 4] = ["content-md5", "digest", "content-digest", "repr-digest"];

/// The entry of `entry`'s body encoded as `body`: the same freshness, tags, variant and age,
/// with the headers of the encoded bytes.
fn encoded_entry(entry: &Entry, coding: Coding, body: Bytes) -> Entry {
    let mut headers = entry.headers.clone();
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(coding.token()),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    if let Some(etag) = entry.headers.get(header::ETAG) {
        headers.insert(header::ETAG, encoding::encoded_etag(etag, coding));
    }
    for name in OF_THE_BYTES {
        headers.remove(name);
    }
    add_vary(&mut headers);
    Entry::new(EntryParts {
        status: entry.status,
        headers,
        body,
        vary: entry.vary.clone(),
        secondary: entry.secondary.clone(),
        response_time: entry.response_time,
        fetched: entry.fetched,
        corrected_initial_age: entry.corrected_initial_age,
        lifetime: entry.lifetime,
        directives: entry.directives.clone(),
        has_validators: entry.has_validators,
        tags: entry.tags.clone(),
        replica: entry.replica,
        chunks: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `data` decoded from `coding` (one body, or the frames of a stream one after another).
    pub(super) fn decode(coding: Coding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match coding {
            Coding::Br => {
                brotli::BrotliDecompress(&mut &data[..], &mut out).expect("br");
            }
            Coding::Zstd => out = zstd::stream::decode_all(data).expect("zstd"),
            Coding::Gzip => {
                use std::io::Read as _;
                flate2::read::GzDecoder::new(data)
                    .read_to_end(&mut out)
                    .expect("gzip");
            }
        }
        out
    }

    #[test]
    fn every_coding_round_trips_and_shrinks_text() {
        let text: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("<p>line {i} of a page</p>\n").into_bytes())
            .collect();
        for coding in Coding::ALL {
            let coded = encode(coding, Levels::default(), &text).unwrap();
            assert!(coded.len() * 4 < text.len(), "{coding:?}: {}", coded.len());
            assert_eq!(decode(coding, &coded), text, "{coding:?}");
        }
        for coding in Coding::ALL {
            let coded = encode(coding, Levels::default(), b"").unwrap();
            assert!(decode(coding, &coded).is_empty(), "{coding:?}");
        }
    }

    #[test]
    fn vary_is_added_once() {
        let mut h = HeaderMap::new();
        add_vary(&mut h);
        add_vary(&mut h);
        assert_eq!(h.get_all(header::VARY).iter().count(), 1);
        let mut h = HeaderMap::new();
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        add_vary(&mut h);
        let all: Vec<_> = h.get_all(header::VARY).iter().collect();
        assert!(
            all.iter()
                .any(|v| v.to_str().unwrap().contains("Accept-Encoding"))
        );
        let mut h = HeaderMap::new();
        h.insert(header::VARY, HeaderValue::from_static("*"));
        add_vary(&mut h);
        assert_eq!(h.get(header::VARY).unwrap(), "*");
    }
}
