//! # Outpost: an edge CDN node
//!
//! One binary per machine serves clients from an in-memory cache and falls back to the origin
//! on a miss, following HTTP caching as RFC 9111 defines it.
//!
//! ## The request path
//!
//! ```text
//! client ──TLS/h1/h2──▶ listener ──▶ request ──▶ lookup ──hit──────────────────────────▶ respond
//!                                      │           │ miss / stale
//!                                      │           ▼
//!                                      │        route: owner = ring(key)
//!                                      │           ├─ self ──▶ fill (coalesced) ──▶ origin
//!                                      │           └─ peer ──▶ peer hop (1 hop max) ──▶ owner node
//!                                      │                           │
//!                                      │        store (on the owner; replicas if hot) ──▶ respond
//!                                      ▼
//!                               (site by Host; unknown Host refused)
//! ```
//!
//! Every response carries one [`proxy::outcome::Outcome`]: the `cache` metric label, this
//! node's `Cache-Status` member and the access log's `upstream` are all read from it.
//!
//! ## Modules, from the bottom up
//!
//! No module imports one above it in this table, except `demo`, which runs a whole node.
//!
//! | module | owns |
//! |---|---|
//! | [`cache`] | RFC 9111/5861/9211/9213 policy, pure (no I/O, no clock: `now` is a parameter) |
//! | [`hash`] | stable 64-bit hashes shared by the cluster ring and origin balancing |
//! | [`steering`] | `[steering]` and `[[region]]` as a PowerDNS zone of LUA records (`outpost dns-zone`), pure |
//! | [`dns`] | hickory-resolver lookups re-resolved on the records' TTL (cluster members, origins) |
//! | [`error`] | every way a request fails, whose fault it is, and the one error → HTTP status mapping |
//! | [`config`] | TOML → file structs → validated [`config::Config`]; errors with file:line:col |
//! | [`storage`] | the moka store weighed in bytes, variants, tag index, coalescing of fills |
//! | [`observability`] | metrics by area (front door, cache, origin, cluster), access log, logging |
//! | [`service`] | what listeners call and answer: `Handler`, `ClientInfo`, `ProxyBody`, text/json |
//! | [`origin`] | origin pools per site: DNS, balancing, health, retries, limits, TLS, HTTP/2 |
//! | [`cluster`] | the rendezvous ring, membership and peer health, the signed peer hop, purge fan-out |
//! | [`listener`] | TCP and TLS accept loops, SNI, ALPN, connection limit, timeouts, drain, HTTP/1.1 framing watch |
//! | [`proxy`] | the phases of the request path, one file each, in call order |
//! | [`admin`] | the admin listener: metrics, health, readiness, purge, reload, cluster pages |
//! | [`runtime`] | a running node: listeners, admin, reloads, drain; [`run`] |
//! | [`demo`] | `outpost demo`: a built-in origin and a 3-node cluster on loopback |
//! | `fuzz_api` | entry points of the fuzz targets in `fuzz/` (feature `fuzzing` and tests only) |
//! | `main.rs` | CLI (`outpost [run] --config`, `check`, `demo`, `dns-zone`), signals; wiring only |
//!
//! Rules of the house: `cache/` and `cluster/ring` import nothing async; a cache hit clones an
//! `Arc` and `Bytes`, never copies a body; no global lock on the request path.
//!
//! Tests start a node in-process with [`run`] on listeners bound to port 0.

// The module docs are the maintainers' map and link to crate-private items on purpose.
#![allow(rustdoc::private_intra_doc_links)]

pub mod admin;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod dns;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz_api;
pub mod hash;
mod hex;
pub mod listener;
mod locks;
pub mod observability;
pub mod ops;
pub mod origin;
pub mod proxy;
pub mod runtime;
pub mod service;
pub(crate) mod sketch;
pub mod steering;
pub mod storage;

pub use runtime::{Listeners, RunError, run, run_with_reloads};
