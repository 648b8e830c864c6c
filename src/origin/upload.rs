//! Request bodies on their way to the origin: buffered before an origin connection is taken,
//! and held to a minimum rate.
//!
//! An origin has few connection slots (`max_connections`), and a request that streams its
//! body holds one for as long as the client takes to send it. Three hundred clients sending a
//! few bytes a second held every slot of a site, and every cache miss of that site waited its
//! queue time and got 503. So, like nginx's `proxy_request_buffering`, a body up to the site's
//! `request_buffering` is read whole first, while no slot is held; only larger bodies stream,
//! and the node-wide [`FillBudget`] bounds what all buffered bodies hold together (past it, a
//! body streams). A buffered body is also sent with a `Content-Length`, whatever framing the
//! client used.
//!
//! Every body, buffered or streamed, must keep up a minimum rate ([`Pace`], after Apache's
//! `mod_reqtimeout`): its bytes must arrive by `timeout` plus one second per `min_rate` bytes
//! received so far, and no pause may be longer than `timeout`. A body that falls behind is cut
//! off: 408 while it is buffered; while it streams, the origin request fails with the same
//! error and the client gets 408 if no response has started.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::service::ClientBody;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{LengthLimitError, Limited};
use tokio::time::{Instant, Sleep};

use crate::error::ProxyError;
use crate::storage::budget::{FillBudget, Reservation};

/// A site's limits on request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UploadLimits {
    /// Larger bodies are refused (413).
    pub(crate) max: u64,
    /// Bodies up to this are read whole before the origin is asked; zero streams every body.
    pub(crate) buffer: u64,
    /// The wait for the first byte, and the longest pause between two.
    pub(crate) timeout: Duration,
    /// Bytes per second a body must average (zero: no minimum, only `timeout`).
    pub(crate) min_rate: u64,
}

/// When a body's next bytes must have arrived. Pure: `elapsed` is the time since the body
/// began, `since_last` the time since its last bytes (or its start).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    timeout: Duration,
    min_rate: u64,
    received: u64,
}

impl Pace {
    pub(crate) fn new(limits: &UploadLimits) -> Self {
        Self {
            timeout: limits.timeout,
            min_rate: limits.min_rate,
            received: 0,
        }
    }

    pub(crate) fn received(&mut self, bytes: usize) {
        self.received = self.received.saturating_add(bytes as u64);
    }

    /// How long after the body began its next bytes may arrive, if the last came
    /// `last` after the start: within `timeout` of the last bytes, and (with a minimum rate)
    /// by `timeout` plus the time the bytes so far buy at `min_rate`.
    pub(crate) fn deadline(&self, last: Duration) -> Duration {
        let pause = last.saturating_add(self.timeout);
        if self.min_rate == 0 {
            return pause;
        }
        let whole = self.received / self.min_rate;
        // Below one second: less than 10^9 nanoseconds, so it fits.
        let part =
            u128::from(self.received % self.min_rate) * 1_000_000_000 / u128::from(self.min_rate);
        let earned = Duration::from_secs(whole).saturating_add(Duration::from_nanos(
            u64::try_from(part).unwrap_or(u64::MAX),
        ));
        pause.min(self.timeout.saturating_add(earned))
    }
}

/// Why a client's body was cut off: it fell below the minimum rate or paused too long.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body arrived too slowly")]
pub(crate) struct TooSlow;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body's bytes as they arrive, each by the time its [`Pace`] allows.
struct Paced {
    inner: Limited<ClientBody>,
    pace: Pace,
    started: Instant,
    timer: Pin<Box<Sleep>>,
}

impl Paced {
    fn new(inner: Limited<ClientBody>, limits: &UploadLimits) -> Self {
        let pace = Pace::new(limits);
        let started = Instant::now();
        let timer = Box::pin(tokio::time::sleep_until(
            started + pace.deadline(Duration::ZERO),
        ));
        Self {
            inner,
            pace,
            started,
            timer,
        }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref().filter(|d| !d.is_empty()) {
                    self.pace.received(data.len());
                    let deadline = self.pace.deadline(self.started.elapsed());
                    self.timer.as_mut().reset(self.started + deadline);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(TooSlow)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// A request body as the origin client sends it.
pub(crate) struct RequestBody(Inner);

enum Inner {
    /// Read whole: sent with its length, at once.
    Buffered(Option<Bytes>),
    /// What was read before the body proved larger than the buffer, then the rest as it
    /// arrives. The reservation holds the prefix against the budget until it is sent.
    Streaming {
        prefix: Option<Bytes>,
        rest: Paced,
        _held: Option<Reservation>,
    },
}

impl RequestBody {
    /// Read `body` under `limits`: whole if it fits the buffer (and the budget), or else the
    /// part read so far and the rest to stream. `announced` is its `Content-Length`, if any:
    /// one over the buffer streams at once, one over `max` is refused before a byte is read.
    pub(crate) async fn receive(
        body: ClientBody,
        announced: Option<u64>,
        limits: &UploadLimits,
        budget: &Arc<FillBudget>,
    ) -> Result<Self, ProxyError> {
        if announced.is_some_and(|len| len > limits.max) {
            return Err(ProxyError::BodyTooLarge);
        }
        let limited = Limited::new(body, usize::try_from(limits.max).unwrap_or(usize::MAX));
        let mut paced = Paced::new(limited, limits);
        if announced.is_some_and(|len| len > limits.buffer) || limits.buffer == 0 {
            return Ok(Self::streaming(Bytes::new(), paced, None));
        }
        let mut held = Reservation::new(budget.clone());
        let mut read = BytesMut::new();
        loop {
            let frame = std::future::poll_fn(|cx| paced.poll_frame(cx)).await;
            let data = match frame {
                None => return Ok(Self(Inner::Buffered(Some(read.freeze())))),
                Some(Err(e)) => return Err(client_body_error(&*e)),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    // Trailers: an origin request built from a buffer has none.
                    Err(_) => continue,
                },
            };
            let len = data.len() as u64;
            if read.len() as u64 + len > limits.buffer || !held.grow(len) {
                read.extend_from_slice(&data);
                return Ok(Self::streaming(read.freeze(), paced, Some(held)));
            }
            read.extend_from_slice(&data);
        }
    }

    fn streaming(prefix: Bytes, rest: Paced, held: Option<Reservation>) -> Self {
        Self(Inner::Streaming {
            prefix: (!prefix.is_empty()).then_some(prefix),
            rest,
            _held: held,
        })
    }

    /// Whether the whole body was read before the origin was asked.
    pub(crate) fn is_buffered(&self) -> bool {
        matches!(self.0, Inner::Buffered(_))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().0 {
            Inner::Buffered(body) => Poll::Ready(body.take().map(|b| Ok(Frame::data(b)))),
            Inner::Streaming { prefix, rest, .. } => match prefix.take() {
                Some(prefix) => Poll::Ready(Some(Ok(Frame::data(prefix)))),
                None => rest.poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Buffered(body) => body.is_none(),
            Inner::Streaming { prefix, rest, .. } => prefix.is_none() && rest.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Buffered(body) => {
                SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64))
            }
            Inner::Streaming { prefix, rest, .. } => {
                let before = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let inner = rest.inner.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower().saturating_add(before));
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper.saturating_add(before));
                }
                hint
            }
        }
    }
}

/// The error a failed client body is: too large (413), too slow (408), or broken (400).
pub(crate) fn client_body_error(e: &(dyn std::error::Error + 'static)) -> ProxyError {
    if super::find::<LengthLimitError>(e) {
        ProxyError::BodyTooLarge
    } else if super::find::<TooSlow>(e) {
        ProxyError::BodyTooSlow
    } else {
        ProxyError::ClientBody(super::error_chain(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn limits(timeout_ms: u64, min_rate: u64) -> UploadLimits {
        UploadLimits {
            max: 1 << 20,
            buffer: 1 << 10,
            timeout: Duration::from_millis(timeout_ms),
            min_rate,
        }
    }

    #[test]
    fn the_deadline_is_the_pause_or_the_rate_whichever_comes_first() {
        let ms = Duration::from_millis;
        let mut pace = Pace::new(&limits(1000, 100));
        // Nothing yet: the first byte within the timeout.
        assert_eq!(pace.deadline(ms(0)), ms(1000));
        // 50 bytes buy 500 ms at 100 B/s: due by 1.5 s, though a pause alone would allow 2.2 s.
        pace.received(50);
        assert_eq!(pace.deadline(ms(1200)), ms(1500));
        // 1000 bytes buy 10 s, but no pause may pass the timeout.
        pace.received(950);
        assert_eq!(pace.deadline(ms(1200)), ms(2200));
        // No minimum rate: only pauses count.
        let mut pauses = Pace::new(&limits(1000, 0));
        pauses.received(1);
        assert_eq!(pauses.deadline(ms(5000)), ms(6000));
    }

    #[test]
    fn the_pace_never_overflows() {
        let mut pace = Pace::new(&UploadLimits {
            max: u64::MAX,
            buffer: 0,
            timeout: Duration::MAX,
            min_rate: 1,
        });
        pace.received(usize::MAX);
        pace.received(usize::MAX);
        assert_eq!(pace.deadline(Duration::MAX), Duration::MAX);
    }

    #[tokio::test]
    async fn errors_name_the_limit_that_was_passed() {
        let too_slow: BoxError = Box::new(TooSlow);
        assert_eq!(client_body_error(&*too_slow), ProxyError::BodyTooSlow);
        let over = Limited::new(http_body_util::Full::new(Bytes::from_static(b"ab")), 1);
        let too_large = over.collect().await.expect_err("over the limit");
        assert_eq!(client_body_error(&*too_large), ProxyError::BodyTooLarge);
        let broken: BoxError = "bad chunk".into();
        assert!(matches!(
            client_body_error(&*broken),
            ProxyError::ClientBody(_)
        ));
    }

    #[tokio::test]
    async fn a_buffered_body_is_sent_whole_with_its_length() {
        let body = RequestBody(Inner::Buffered(Some(Bytes::from_static(b"abc"))));
        assert_eq!(body.size_hint().exact(), Some(3));
        let sent = body.collect().await.expect("body").to_bytes();
        assert_eq!(sent, Bytes::from_static(b"abc"));
    }
}
