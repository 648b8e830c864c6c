//! Phase 2, lookup: pick the stored variant matching the request (RFC 9111 §4.1) and decide
//! whether it can be served as is, must be revalidated, or is missing.

use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderMap;

use crate::cache::control::RequestDirectives;
use crate::cache::freshness::{Freshness, Reuse, freshness, reuse};
use crate::cache::status::Fwd;
use crate::storage::{Entry, Variants};

pub enum Lookup {
    Hit {
        entry: Arc<Entry>,
        freshness: Freshness,
    },
    /// A stored response exists but may not be used without asking the origin; it has
    /// validators, so a conditional request can renew it (RFC 9111 §4.3).
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
    let freshness = freshness(entry.lifetime, age);
    match reuse(freshness, age, directives, &entry.directives) {
        Reuse::Fresh | Reuse::ServeStale => Lookup::Hit {
            entry: entry.clone(),
            freshness,
        },
        Reuse::Revalidate => {
            // Fresh but revalidated anyway: the request (or response no-cache) asked for it.
            let fwd = match freshness {
                Freshness::Fresh { .. } => Fwd::Request,
                Freshness::Stale { .. } => Fwd::Stale,
            };
            if entry.has_validators {
                Lookup::Revalidate {
                    entry: entry.clone(),
                    fwd,
                }
            } else {
                Lookup::Miss { fwd }
            }
        }
    }
}
