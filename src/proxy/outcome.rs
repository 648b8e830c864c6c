//! How one response was served: the single record that the `cache` label of
//! `outpost_requests_total`, this node's `Cache-Status` member (RFC 9211) and the access log's
//! `upstream` field are all read from, so the three can never disagree.
//!
//! Each constructor is one way a response can be served and sets the metric result and the
//! `Cache-Status` parameters together; nothing else builds one.

use http::Response;

use super::fill::FillHead;
use crate::cache::status::{CacheStatus, Fwd, NoCacheReason};
use crate::error::ProxyError;
use crate::observability::metrics::CacheResult;
use crate::service::ProxyBody;

/// What happened to one client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    result: CacheResult,
    status: CacheStatus,
}

/// A response and how it was served.
pub struct Served {
    pub(crate) response: Response<ProxyBody>,
    pub(crate) outcome: Outcome,
}

impl Outcome {
    /// A fresh stored response.
    pub fn hit(ttl: i64) -> Self {
        Self {
            result: CacheResult::Hit,
            status: CacheStatus {
                hit: true,
                ttl: Some(ttl),
                ..CacheStatus::default()
            },
        }
    }

    /// RFC 5861 §3: a stale stored response, served while a background fill renews it.
    pub(crate) fn stale_while_revalidate(ttl: i64) -> Self {
        Self {
            result: CacheResult::Stale,
            status: CacheStatus {
                hit: true,
                ttl: Some(ttl),
                detail: Some("stale-while-revalidate".to_owned()),
                ..CacheStatus::default()
            },
        }
    }

    /// RFC 5861 §4: a stale stored response in place of an origin failure (`fwd_status` when
    /// the origin answered with a 5xx).
    pub(crate) fn stale_if_error(
        fwd: Fwd,
        fwd_status: Option<u16>,
        collapsed: bool,
        ttl: i64,
    ) -> Self {
        Self {
            result: CacheResult::Stale,
            status: CacheStatus {
                fwd: Some(fwd),
                fwd_status,
                collapsed,
                ttl: Some(ttl),
                detail: Some("stale-if-error".to_owned()),
                ..CacheStatus::default()
            },
        }
    }

    /// RFC 9111 §4.2.4: a stale stored response because the origin could not be reached at
    /// all (no response, so no `fwd-status`).
    pub(crate) fn stale_disconnected(fwd: Fwd, collapsed: bool, ttl: i64) -> Self {
        Self {
            result: CacheResult::Stale,
            status: CacheStatus {
                fwd: Some(fwd),
                collapsed,
                ttl: Some(ttl),
                detail: Some("stale-disconnected".to_owned()),
                ..CacheStatus::default()
            },
        }
    }

    /// RFC 9111 §4.3.4: a 304 freshened the stored response.
    pub(crate) fn revalidated(fwd: Fwd, collapsed: bool, ttl: i64) -> Self {
        Self {
            result: CacheResult::Revalidated,
            status: CacheStatus {
                fwd: Some(fwd),
                fwd_status: Some(304),
                stored: true,
                collapsed,
                ttl: Some(ttl),
                ..CacheStatus::default()
            },
        }
    }

    /// An object the origin's 200 head said to store in chunks: its manifest was stored,
    /// and the body comes from the chunks.
    pub(crate) fn chunked(fwd: Fwd, collapsed: bool, ttl: i64) -> Self {
        Self {
            result: CacheResult::Miss,
            status: CacheStatus {
                fwd: Some(fwd),
                fwd_status: Some(200),
                stored: true,
                collapsed,
                ttl: Some(ttl),
                ..CacheStatus::default()
            },
        }
    }

    /// A response streamed from a fill: stored (a miss), fetched through the owner node
    /// (peer), or not storable (pass).
    pub(crate) fn fetched(fwd: Fwd, head: &FillHead, collapsed: bool) -> Self {
        let result = match head.not_stored {
            None => CacheResult::Miss,
            Some(NoCacheReason::NotOwner) => CacheResult::Peer,
            Some(_) => CacheResult::Pass,
        };
        Self {
            result,
            status: CacheStatus {
                fwd: Some(fwd),
                fwd_status: Some(head.status.as_u16()),
                stored: head.storing,
                collapsed,
                ttl: head.storing.then_some(head.ttl),
                detail: head.not_stored.map(|r| r.as_str().to_owned()),
                ..CacheStatus::default()
            },
        }
    }

    /// A method the cache does not handle, passed through to the origin.
    pub(crate) fn passed(fwd_status: u16) -> Self {
        Self {
            result: CacheResult::Pass,
            status: CacheStatus {
                fwd: Some(Fwd::Method),
                fwd_status: Some(fwd_status),
                ..CacheStatus::default()
            },
        }
    }

    /// An error answered by this node, after the origin answered `fwd_status` if it did.
    /// `only-if-cached` with nothing stored is a miss answered without fetching (another
    /// node's hand-off question, mostly), not a failure.
    pub(crate) fn error(error: &ProxyError, fwd: Option<Fwd>, fwd_status: Option<u16>) -> Self {
        let result = match error {
            ProxyError::NotCached => CacheResult::Miss,
            _ => CacheResult::Error,
        };
        Self {
            result,
            status: CacheStatus {
                fwd,
                fwd_status,
                detail: Some(error.detail().to_owned()),
                ..CacheStatus::default()
            },
        }
    }

    /// The `cache` label of `outpost_requests_total`.
    pub(crate) fn result(&self) -> CacheResult {
        self.result
    }

    /// This node's `Cache-Status` member.
    pub(crate) fn cache_status(&self) -> &CacheStatus {
        &self.status
    }

    /// Where the response came from, for the access log: a peer (the key's owner), the origin
    /// (anything forwarded), or this node's cache.
    pub(crate) fn upstream(&self) -> &'static str {
        if self.result == CacheResult::Peer {
            "peer"
        } else if self.status.fwd.is_some() {
            "origin"
        } else {
            "cache"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_follows_the_outcome() {
        let cases = [
            (Outcome::hit(10), "cache", "n; hit; ttl=10"),
            (
                Outcome::stale_while_revalidate(-3),
                "cache",
                "n; hit; ttl=-3; detail=stale-while-revalidate",
            ),
            (
                Outcome::stale_if_error(Fwd::Stale, Some(503), false, -1),
                "origin",
                "n; fwd=stale; fwd-status=503; ttl=-1; detail=stale-if-error",
            ),
            (
                Outcome::stale_disconnected(Fwd::Stale, false, -30),
                "origin",
                "n; fwd=stale; ttl=-30; detail=stale-disconnected",
            ),
            (
                Outcome::revalidated(Fwd::Stale, true, 60),
                "origin",
                "n; fwd=stale; fwd-status=304; stored; ttl=60; collapsed",
            ),
            (
                Outcome::passed(201),
                "origin",
                "n; fwd=method; fwd-status=201",
            ),
            (
                Outcome::error(&ProxyError::NotCached, Some(Fwd::UriMiss), None),
                "origin",
                "n; fwd=uri-miss; detail=only-if-cached",
            ),
        ];
        for (outcome, upstream, rendered) in cases {
            assert_eq!(outcome.upstream(), upstream, "{outcome:?}");
            assert_eq!(outcome.cache_status().render("n"), rendered);
        }
    }
}
