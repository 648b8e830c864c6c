//! Outpost's integration tests: one binary, real sockets on loopback.
//!
//! | module | what it proves |
//! |---|---|
//! | `harness` | origin, node and client helpers (not tests) |
//! | `smoke` | a miss, then a hit |
//! | `coalesce` | one origin fetch per key, fills that outlive clients, failures and uncacheable releases, max_object streaming |
//! | `listeners` | h1, h2c, TLS with SNI and ALPN, sites by host, unknown hosts refused |
//! | `caching` | RFC 9111 core: storability, freshness, Age, Vary, validation, invalidation, HEAD, Range, conditionals |

mod caching;
mod coalesce;
mod harness;
mod listeners;
mod smoke;
