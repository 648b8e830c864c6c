//! Every way a request can fail, as small typed errors, and the one place they become HTTP.
//!
//! A fill is shared by many clients, so errors are `Clone` (strings, not sources). Each error
//! knows whose fault it is, which status it maps to, and the short token that goes into the
//! `detail` parameter of `Cache-Status` (RFC 9211 §2.8) and the access log.

use http::StatusCode;

mod origin;

pub use origin::OriginFailure;

/// Whose fault a failure is: decides the status class and what an operator should look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    Client,
    Origin,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// No `Host` / `:authority`, or one we cannot parse.
    #[error("request has no usable host")]
    MissingHost,
    /// The host names no configured site: refused so the node is never an open proxy.
    #[error("no site is configured for host {0:?}")]
    UnknownHost(String),
    /// The request already went through this node (`Via` names it): the origin points back.
    #[error("request loops through this node")]
    Loop,
    /// `only-if-cached` (RFC 9111 §5.2.1.7) and nothing usable is stored.
    #[error("only-if-cached and nothing stored")]
    NotCached,
    /// A request to an origin server (or to the owner peer, for a timeout) failed, and why,
    /// where there is more to say than the failure's own words.
    #[error("{}{}{}", .0.describe(), if .1.is_empty() { "" } else { ": " }, .1)]
    Origin(OriginFailure, String),
    /// Every server of the site is out of rotation after failing (passive health).
    #[error("every origin server is out of rotation")]
    OriginDown,
    /// The stored response may not be served stale (must-revalidate, proxy-revalidate,
    /// s-maxage) and revalidating it failed: RFC 9111 §5.2.2.2 requires an error, 504.
    #[error("stored response must be revalidated and the origin failed")]
    MustRevalidate,
    #[error("origin response body failed: {0}")]
    OriginBody(String),
    /// The client's request body broke while it was forwarded (bad chunked framing, cut).
    #[error("request body failed: {0}")]
    ClientBody(String),
    /// RFC 9112 §6.1, §7: Transfer-Encoding together with Content-Length, or chunked
    /// applied twice; where the body ends is not certain, so the connection closes too.
    #[error("request framing is ambiguous: {0}")]
    AmbiguousFraming(&'static str),
    /// RFC 9112 §6.1: a transfer coding other than chunked, which Outpost does not decode.
    #[error("request uses a transfer coding other than chunked")]
    TransferCoding,
    /// The request body is larger than the site's `max_request_body`.
    #[error("request body too large")]
    BodyTooLarge,
    /// The request body fell below the site's minimum rate or paused too long.
    #[error("request body arrived too slowly")]
    BodyTooSlow,
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl ProxyError {
    pub(crate) fn fault(&self) -> Fault {
        match self {
            Self::MissingHost
            | Self::UnknownHost(_)
            | Self::NotCached
            | Self::Loop
            | Self::BodyTooLarge
            | Self::BodyTooSlow
            | Self::AmbiguousFraming(_)
            | Self::TransferCoding
            | Self::ClientBody(_) => Fault::Client,
            Self::Origin(..) | Self::OriginDown | Self::MustRevalidate | Self::OriginBody(_) => {
                Fault::Origin
            }
            Self::Internal(_) => Fault::Internal,
        }
    }

    /// The one error → status mapping (DESIGN: 502 bad origin, 503 no upstream, 504 timeout).
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::MissingHost | Self::ClientBody(_) | Self::AmbiguousFraming(_) => {
                StatusCode::BAD_REQUEST
            }
            // RFC 9112 §6.1: "SHOULD respond with 501 (Not Implemented)".
            Self::TransferCoding => StatusCode::NOT_IMPLEMENTED,
            Self::Origin(failure, _) => failure.status(),
            Self::OriginDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTooSlow => StatusCode::REQUEST_TIMEOUT,
            Self::UnknownHost(_) => StatusCode::MISDIRECTED_REQUEST,
            Self::Loop => StatusCode::LOOP_DETECTED,
            // RFC 9111 §5.2.1.7: "respond ... with a 504 (Gateway Timeout)".
            Self::NotCached | Self::MustRevalidate => StatusCode::GATEWAY_TIMEOUT,
            Self::OriginBody(_) => StatusCode::BAD_GATEWAY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Token for `Cache-Status; detail=` and logs.
    pub(crate) fn detail(&self) -> &'static str {
        match self {
            Self::MissingHost => "missing-host",
            Self::BodyTooLarge => "body-too-large",
            Self::BodyTooSlow => "body-too-slow",
            Self::ClientBody(_) => "bad-request-body",
            Self::AmbiguousFraming(_) => "ambiguous-framing",
            Self::TransferCoding => "transfer-coding",
            Self::UnknownHost(_) => "unknown-host",
            Self::NotCached => "only-if-cached",
            Self::Loop => "loop",
            Self::Origin(failure, _) => failure.detail(),
            Self::OriginDown => "origin-down",
            Self::MustRevalidate => "must-revalidate",
            Self::OriginBody(_) => "origin-body",
            Self::Internal(_) => "internal",
        }
    }

    /// Whether the origin could not be reached (see [`OriginFailure::disconnected`]).
    pub(crate) fn is_disconnected(&self) -> bool {
        match self {
            Self::Origin(failure, _) => failure.disconnected(),
            Self::OriginDown => true,
            _ => false,
        }
    }

    /// Whether the response must close the connection: after a request whose framing is in
    /// doubt, the next bytes are not known to start a request (RFC 9112 §6.1), and after a
    /// body cut off unread (RFC 9110 §15.5.9: a 408 closes).
    pub(crate) fn closes_connection(&self) -> bool {
        matches!(
            self,
            Self::AmbiguousFraming(_) | Self::TransferCoding | Self::BodyTooSlow
        )
    }

    /// Whether the request may be sent again to another origin server: only failures that
    /// happened before the origin could have acted on it ([`OriginFailure::retryable`]).
    pub(crate) fn retryable(&self) -> bool {
        self.origin_failure().is_some_and(OriginFailure::retryable)
    }

    /// The failure of a request to an origin server this error stands for, if it is one.
    pub(crate) fn origin_failure(&self) -> Option<OriginFailure> {
        match self {
            Self::Origin(failure, _) => Some(*failure),
            _ => None,
        }
    }

    /// An origin server has no free connection and its queue is full (or waited too long).
    pub(crate) fn busy() -> Self {
        Self::Origin(OriginFailure::Overload, String::new())
    }

    /// The owner peer or the origin gave no response head, or no body chunk, in time.
    pub(crate) fn timeout() -> Self {
        Self::Origin(OriginFailure::Timeout, String::new())
    }
}

/// Error of a response body we stream to a client: the transfer is aborted, so the client
/// sees a truncated response rather than a short "complete" one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("response body aborted: {0}")]
pub(crate) struct BodyError(pub ProxyError);
