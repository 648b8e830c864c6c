//! # Outpost: an edge CDN node
//!
//! One binary per machine serves clients from an in-memory cache and falls back to the origin
//! on a miss, following HTTP caching as RFC 9111 defines it.
//!
//! ## The request path
//!
//! ```text
//! client ──TLS/h1/h2──▶ listener ──▶ request ──▶ lookup ──hit──────────────────▶ respond
//!                                      │           │ miss / stale
//!                                      │           ▼
//!                                      │        fill (coalesced) ──▶ origin
//!                                      │           │
//!                                      │        store ──────────────────────────▶ respond
//!                                      ▼
//!                               (site by Host; unknown Host refused)
//! ```
//!
//! ## Modules
//!
//! | module | owns |
//! |---|---|
//! | `main.rs` | CLI (`outpost [run] --config`, `check`, `demo`), runtime, signals; wiring only |
//! | [`config`] | TOML → file structs → validated [`config::Config`]; errors with file:line:col |
//! | [`listener`] | TCP and TLS accept loops, SNI, ALPN, connection limit, drain |
//! | [`proxy`] | the phases of the request path, one file each, in call order |
//! | [`cache`] | RFC 9111 policy, pure (no I/O, no clock: `now` is a parameter) |
//! | [`storage`] | the moka store weighed in bytes, variants, request coalescing |
//! | [`origin`] | origin connection pools, timeouts, retries, TLS to origins |
//! | [`admin`] | the admin listener: metrics, health, readiness, purge |
//! | [`observability`] | metric names and handles, logging setup |
//! | [`demo`] | `outpost demo`: a built-in origin and node on loopback |
//!
//! Rules of the house: `cache/` imports nothing async; a cache hit clones an `Arc` and
//! `Bytes`, never copies a body; no global lock on the request path.
//!
//! Tests start a node in-process with [`run`] on listeners bound to port 0.

pub mod admin;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod dns;
pub mod error;
pub mod hash;
pub mod listener;
pub mod observability;
pub mod origin;
pub mod proxy;
pub mod runtime;
pub mod service;
pub mod storage;

pub use runtime::{Listeners, RunError, run, run_with_reloads};
