//! What the cache modules' unit tests share: header maps written as (name, raw value) pairs.

use http::{HeaderMap, HeaderValue};

/// Header (name, raw value) lines of one test case. Values are bytes so a case can hold
/// what no `&str` can (obs-text, invalid UTF-8).
pub(crate) type Pairs<'a> = &'a [(&'static str, &'a [u8])];

/// The lines of `pairs` in order; a name given twice is two field lines.
pub(crate) fn hm(pairs: Pairs<'_>) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_bytes(v).unwrap());
    }
    h
}
