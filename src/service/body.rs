//! The body of every response Outpost sends: a stored body (no copy), nothing, or a stream
//! of chunks (a coalesced fill, or an origin body passed through).
//!
//! An enum rather than a boxed trait object so a hit allocates no body box.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use http_body::{Body, Frame, SizeHint};

use crate::error::{BodyError, ProxyError};

pub(crate) type ChunkStream = Pin<Box<dyn Stream<Item = Result<Bytes, ProxyError>> + Send>>;

pub(crate) enum ProxyBody {
    Empty,
    Full(Option<Bytes>),
    /// Several stored slices in order (a `multipart/byteranges` answer).
    Parts(std::collections::VecDeque<Bytes>),
    /// A fill's chunks; `len` is the announced length when the origin sent one.
    Stream {
        chunks: ChunkStream,
        len: Option<u64>,
    },
}

impl ProxyBody {
    pub(crate) fn full(bytes: Bytes) -> Self {
        Self::Full(Some(bytes))
    }

    pub(crate) fn text(text: &'static str) -> Self {
        Self::Full(Some(Bytes::from_static(text.as_bytes())))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut *self {
            Self::Empty => Poll::Ready(None),
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Parts(parts) => Poll::Ready(parts.pop_front().map(|b| Ok(Frame::data(b)))),
            Self::Stream { chunks, .. } => match chunks.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError(e)))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Full(bytes) => bytes.is_none(),
            Self::Parts(parts) => parts.is_empty(),
            Self::Stream { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Parts(parts) => SizeHint::with_exact(parts.iter().map(|b| b.len() as u64).sum()),
            Self::Stream { len: Some(n), .. } => SizeHint::with_exact(*n),
            Self::Stream { len: None, .. } => SizeHint::default(),
        }
    }
}
