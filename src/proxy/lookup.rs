//! Phase 2, lookup: pick the stored variant matching the request (RFC 9111 §4.1) and decide
//! whether it can be served as is, served stale while it is renewed, must be revalidated, or
//! is missing.

use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderMap;

use crate::cache::control::RequestDirectives;
use crate::cache::freshness::{
    Freshness, Reuse, freshness, may_serve_stale_while_revalidate, reuse,
};
use crate::cache::status::Fwd;
use crate::storage::{Entry, Variants};

pub enum Lookup {
    Hit {
        entry: Arc<Entry>,
        freshness: Freshness,
    },
    /// Stale, but `stale-while-revalidate` (RFC 5861 §3) lets it be served at once while one
    /// background fill renews it.
    StaleWhileRevalidate {
        entry: Arc<Entry>,
        freshness: Freshness,
    },
    /// A stored response exists but may not be used without asking the origin. The fill sends
    /// its validators if it has any (RFC 9111 §4.3); the entry stays at hand for
    /// `stale-if-error` (RFC 5861 §4).
    Revalidate {
        entry: Arc<Entry>,
        fwd: Fwd,
    },
    Miss {
        fwd: Fwd,
    },
}

pub fn decide(
    variants: Option<&Variants>,
    request_headers: &HeaderMap,
    directives: &RequestDirectives,
    now: SystemTime,
) -> Lookup {
    let Some(variants) = variants else {
        return Lookup::Miss { fwd: Fwd::UriMiss };
    };
    let Some(entry) = variants.select(request_headers) else {
        return Lookup::Miss { fwd: Fwd::VaryMiss };
    };
    let age = entry.current_age(now);
    let freshness = freshness(entry.lifetime(), age);
    match reuse(freshness, age, directives, &entry.directives) {
        Reuse::Fresh | Reuse::ServeStale => Lookup::Hit {
            entry: entry.clone(),
            freshness,
        },
        Reuse::Revalidate
            if may_serve_stale_while_revalidate(freshness, age, directives, &entry.directives) =>
        {
            Lookup::StaleWhileRevalidate {
                entry: entry.clone(),
                freshness,
            }
        }
        Reuse::Revalidate => {
            // Fresh but revalidated anyway: the request (or response no-cache) asked for it.
            let fwd = match freshness {
                Freshness::Fresh { .. } => Fwd::Request,
                Freshness::Stale { .. } => Fwd::Stale,
            };
            Lookup::Revalidate {
                entry: entry.clone(),
                fwd,
            }
        }
    }
}
