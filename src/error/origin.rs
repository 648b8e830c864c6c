//! Why a request to an origin server failed, classified once: the error's status and
//! `Cache-Status` detail ([`ProxyError::Origin`](crate::error::ProxyError::Origin)), the metric
//! label it counts under, whether it counts against the server's health, and whether the
//! request may go to another server all follow from it.

use http::StatusCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginFailure {
    /// No TCP connection (refused, unreachable, connect timeout, no address from DNS).
    Connect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// No response head within `first_byte_timeout`.
    Timeout,
    /// The connection was reset or closed before a response head.
    Reset,
    /// A response that is not HTTP.
    Protocol,
    /// No free connection: the queue was full or the wait too long.
    Overload,
}

impl OriginFailure {
    pub(crate) const ALL: [OriginFailure; 6] = [
        Self::Connect,
        Self::Tls,
        Self::Timeout,
        Self::Reset,
        Self::Protocol,
        Self::Overload,
    ];

    /// The `kind` label of `outpost_origin_server_errors_total`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Reset => "reset",
            Self::Protocol => "protocol",
            Self::Overload => "overload",
        }
    }

    /// How the error says it, before any detail.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Connect => "origin connection failed",
            Self::Tls => "origin TLS failed",
            Self::Timeout => "origin did not answer in time",
            Self::Reset => "origin connection reset",
            Self::Protocol => "origin sent an invalid response",
            Self::Overload => "origin server busy: max_connections reached",
        }
    }

    /// The status a client gets (DESIGN: 502 bad origin, 503 no upstream, 504 timeout).
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Overload => StatusCode::SERVICE_UNAVAILABLE,
            Self::Connect | Self::Tls | Self::Reset | Self::Protocol => StatusCode::BAD_GATEWAY,
        }
    }

    /// The token for `Cache-Status; detail=`.
    pub(crate) fn detail(self) -> &'static str {
        match self {
            Self::Connect => "origin-connect",
            Self::Tls => "origin-tls",
            Self::Timeout => "origin-timeout",
            Self::Reset => "origin-reset",
            Self::Protocol => "origin-protocol",
            Self::Overload => "origin-busy",
        }
    }

    /// Whether it marks the server as failing (passive health). A busy server is not failing.
    pub(crate) fn counts_against_health(self) -> bool {
        self != Self::Overload
    }

    /// Whether the origin could not be reached at all (no response came), so RFC 9111 §4.2.4
    /// lets a stale response stand in: not a busy server (ours to queue), not a broken
    /// response (the origin answered).
    pub(crate) fn disconnected(self) -> bool {
        matches!(
            self,
            Self::Connect | Self::Tls | Self::Timeout | Self::Reset
        )
    }

    /// Whether a request without a body may be sent again to another server: only failures
    /// that happened before the origin could have acted on it.
    pub(crate) fn retryable(self) -> bool {
        matches!(self, Self::Connect | Self::Reset | Self::Overload)
    }
}

#[cfg(test)]
mod tests {
    use super::OriginFailure;
    use crate::error::ProxyError;

    /// Each failure's error names it, and reads as before the variants were one.
    #[test]
    fn errors_name_their_failure() {
        for failure in OriginFailure::ALL {
            let error = ProxyError::Origin(failure, "why".to_owned());
            assert_eq!(error.origin_failure(), Some(failure), "{error:?}");
        }
        let refused = ProxyError::Origin(OriginFailure::Connect, "refused".to_owned());
        assert_eq!(refused.to_string(), "origin connection failed: refused");
        assert_eq!(
            ProxyError::timeout().to_string(),
            "origin did not answer in time"
        );
    }

    /// Per failure: passive health, retry, status and `Cache-Status` detail.
    #[test]
    fn health_retry_status_and_detail_per_failure() {
        use OriginFailure::*;
        let table = [
            (Connect, true, true, 502, "origin-connect"),
            (Tls, true, false, 502, "origin-tls"),
            (Timeout, true, false, 504, "origin-timeout"),
            (Reset, true, true, 502, "origin-reset"),
            (Protocol, true, false, 502, "origin-protocol"),
            (Overload, false, true, 503, "origin-busy"),
        ];
        for (failure, health, retry, status, detail) in table {
            let error = ProxyError::Origin(failure, String::new());
            assert_eq!(failure.counts_against_health(), health, "{failure:?}");
            assert_eq!(failure.retryable(), retry, "{failure:?}");
            assert_eq!(error.retryable(), retry, "{failure:?}");
            assert_eq!(error.status().as_u16(), status, "{failure:?}");
            assert_eq!(error.detail(), detail, "{failure:?}");
        }
    }
}
