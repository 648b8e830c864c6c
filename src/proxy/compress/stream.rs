//! A miss in a coding: the body compressed as it streams from the fill, at a fast level, so
//! the first visitor of every object (and every visitor of a page too short-lived to be
//! stored) gets it encoded, as nginx's `gzip on` would. Each chunk is compressed and flushed
//! as it arrives: the client gets bytes as soon as the origin sends them. The stored copy is
//! the origin's, compressed once on the pool for later hits, at the site's levels.
//!
//! The work runs on the request's task, a chunk at a time (tens of KiB at a few hundred MB/s:
//! well under a millisecond each), never a whole body at once.

use std::io::Write as _;

use bytes::Bytes;
use futures_util::StreamExt;

use crate::cache::encoding::Coding;
use crate::error::ProxyError;
use crate::service::body::ChunkStream;

/// The levels misses are compressed at: the fastest that still earn most of the ratio on
/// text (a page compresses about 5:1 at these, against 20:1 at the stored levels).
const BR_FAST: u32 = 1;
const ZSTD_FAST: i32 = 1;
const GZIP_FAST: u32 = 1;

/// A streaming coder whose output is taken after each chunk.
pub(crate) enum Encoder {
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
}

impl Encoder {
    /// A coder for `coding` at its fast level; `None` if it cannot start.
    pub(crate) fn start(coding: Coding) -> Option<Self> {
        Self::new(coding).ok()
    }

    fn new(coding: Coding) -> std::io::Result<Self> {
        Ok(match coding {
            // A 1 MiB window (lgwin 20) keeps the coder small for a stream.
            Coding::Br => Self::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                BR_FAST,
                20,
            ))),
            Coding::Zstd => Self::Zstd(zstd::stream::write::Encoder::new(Vec::new(), ZSTD_FAST)?),
            Coding::Gzip => Self::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(GZIP_FAST),
            )),
        })
    }

    /// Compress `chunk` and flush: the bytes that make it decodable so far.
    fn push(&mut self, chunk: &[u8]) -> std::io::Result<Bytes> {
        let out = match self {
            Self::Br(w) => {
                w.write_all(chunk)?;
                w.flush()?;
                w.get_mut()
            }
            Self::Zstd(w) => {
                w.write_all(chunk)?;
                w.flush()?;
                w.get_mut()
            }
            Self::Gzip(w) => {
                w.write_all(chunk)?;
                w.flush()?;
                w.get_mut()
            }
        };
        Ok(Bytes::from(std::mem::take(out)))
    }

    /// The end of the stream.
    fn finish(self) -> std::io::Result<Bytes> {
        let out = match self {
            Self::Br(w) => w.into_inner(),
            Self::Zstd(w) => w.finish()?,
            Self::Gzip(w) => w.finish()?,
        };
        Ok(Bytes::from(out))
    }
}

/// `chunks` through `encoder`, compressed as they come.
pub(crate) fn encode_stream(chunks: ChunkStream, encoder: Encoder) -> ChunkStream {
    let failed = |e: std::io::Error| {
        tracing::debug!(error = %e, "compressing a response as it streams failed");
        ProxyError::Internal("compressing the response failed")
    };
    let stream = futures_util::stream::unfold(
        (chunks, Some(encoder)),
        move |(mut chunks, encoder)| async move {
            let mut encoder = encoder?;
            loop {
                match chunks.next().await {
                    Some(Ok(chunk)) => match encoder.push(&chunk) {
                        // A flush of nothing new: wait for the next chunk.
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Some((Ok(out), (chunks, Some(encoder)))),
                        Err(e) => return Some((Err(failed(e)), (chunks, None))),
                    },
                    Some(Err(e)) => return Some((Err(e), (chunks, None))),
                    None => {
                        return match encoder.finish() {
                            Ok(out) => Some((Ok(out), (chunks, None))),
                            Err(e) => Some((Err(failed(e)), (chunks, None))),
                        };
                    }
                }
            }
        },
    );
    Box::pin(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::tests::decode;

    #[test]
    fn chunks_compressed_as_they_come_decode_to_the_whole_and_each_is_flushed() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let text: Vec<u8> = (0..5000)
            .flat_map(|i| format!("<p>row {i} of a page</p>\n").into_bytes())
            .collect();
        for coding in Coding::ALL {
            let pieces: Vec<Result<Bytes, ProxyError>> = text
                .chunks(7000)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let chunks: ChunkStream = Box::pin(futures_util::stream::iter(pieces));
            let out: Vec<Bytes> = runtime.block_on(async {
                let stream = encode_stream(chunks, Encoder::start(coding).expect("coder"));
                stream.map(|r| r.expect("chunk")).collect().await
            });
            // Output came before the end: every chunk flushed.
            assert!(out.len() > 3, "{coding:?}: {} pieces", out.len());
            let all: Vec<u8> = out.iter().flat_map(|b| b.to_vec()).collect();
            assert!(all.len() * 3 < text.len(), "{coding:?}: {}", all.len());
            assert_eq!(decode(coding, &all), text, "{coding:?}");
        }
    }
}
