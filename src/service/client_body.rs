//! The body of a request as the client sends it, whichever protocol carried it: hyper's
//! (HTTP/1.1 and HTTP/2) or the receiving half of an HTTP/3 request stream.
//!
//! An enum rather than a boxed trait object, like [`super::ProxyBody`]: a GET over TCP, by
//! far the most common request, allocates nothing for its (empty) body.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// The receiving half of an HTTP/3 request stream.
type H3Recv = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;

pub(crate) enum ClientBody {
    Http(Incoming),
    H3(Box<H3Recv>),
}

impl From<Incoming> for ClientBody {
    fn from(body: Incoming) -> Self {
        Self::Http(body)
    }
}

/// Why a client's body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientBodyError {
    #[error(transparent)]
    Http(#[from] hyper::Error),
    #[error("HTTP/3 stream: {0}")]
    H3(#[from] h3::error::StreamError),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        match self.get_mut() {
            Self::Http(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(ClientBodyError::from))),
            // Request trailers end the body here: nothing downstream forwards them.
            Self::H3(stream) => stream.poll_recv_data(cx).map(|data| match data {
                Ok(Some(mut buf)) => Some(Ok(Frame::data(buf.copy_to_bytes(buf.remaining())))),
                Ok(None) => None,
                Err(e) => Some(Err(e.into())),
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Http(body) => body.is_end_stream(),
            Self::H3(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Http(body) => body.size_hint(),
            Self::H3(_) => SizeHint::default(),
        }
    }
}
