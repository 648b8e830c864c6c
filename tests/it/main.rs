//! Outpost's integration tests: one binary, real servers and clients on loopback (ephemeral
//! ports), the node in-process through `outpost::run` or as the real binary.
//!
//! | module | what it proves |
//! |---|---|
//! | `harness` | programmable origin, in-process node, h1 / h2c / TLS clients (not tests) |
//! | `util` | raw-socket clients, misbehaving and TLS origins, the real binary as a child (not tests) |
//! | `topology` | `both_ways!`: a table of cases, each run on one node and through a node that holds no copy, with `replicas` 1, 2 and 3 and `replicate = "all"`, asserting the origin's exact counts (not tests) |
//! | `listeners` | h1, h2c, TLS with SNI and ALPN, sites by host, unknown hosts refused, loops refused |
//! | `caching` | RFC 9111 core, on one node and through a non-owner: storability, freshness, Age, Vary, validation, invalidation, purge, HEAD, Range, If-Range, conditionals |
//! | `coalesce` | one origin fetch per key, fills that outlive clients, failures and uncacheable releases, max_object streaming |
//! | `origin_failures` | origin errors map to 502/504, nothing partial is stored, retries, forwarding headers, HTTPS origins |
//! | `ops` | the operator's commands against real nodes: `outpost log` and `GET /log` (filters, a slow follower), `outpost purge` and `outpost cluster` (exit statuses), `outpost top` in a pipe and on a terminal (tmux); refusals counted and logged |
//! | `origins` | origin names follow DNS and drain, max_connections and the queue, idle timeout, HTTP/2 by ALPN or h2c, resets retried but never a POST, per-server metrics |
//! | `bad_input` | malformed or oversized requests are refused and the node keeps serving |
//! | `admin` | health, readiness, metrics (promtool, OpenMetrics), purge and its auth |
//! | `policy` | per-site policy: RFC 9213 targeted fields, status TTLs, grace, cookies, variant bounds, key rules, tags and soft purge, must-revalidate |
//! | `stale` | RFC 5861, on one node and through a non-owner: stale-while-revalidate, stale-if-error |
//! | `purges` | purges never lost, with real processes: another region, a node restarted from its snapshot, a node frozen while the purge went out, a fill in flight |
//! | `regression` | one test per bug found, named after it |
//! | `cluster` | 3-node clusters: ring ownership, one origin fetch per object, hop MAC, failover, replicas, cluster purge, admin pages |
//! | `replicas` | `[cluster] replicas = 2` with real processes: fills written through to the second holder, a SIGKILLed node's objects served from the copies (origin asked ≤ 3 times for 300) |
//! | `replication` | replication that is exact, with real processes: 10 nodes hold a 256 MiB chunked object twice, a SIGKILLed node costs the origin nothing, a restart serves chunks from the snapshot; a rolling start routes every key alike |
//! | `shield` | regions and the shield tier: two regions fill from one shield (origin once per object, Cache-Status names the shield), coalescing across tiers, shields down, mutual shields stop after one shield hop |
//! | `discovery` | cluster members from DNS (A/AAAA, SRV) on a real in-process DNS server: TTLs, outages |
//! | `dns_server` | a tiny authoritative UDP DNS server whose records tests change (not tests) |
//! | `http3` | `listen.quic` with the h3 client: miss, hit, range, purge, a POST body, SNI, Alt-Svc on TLS, a drain that finishes the request in flight |
//! | `front_door` | smuggling vectors refused, body limits, request buffering and the minimum body rate (408), the connection limit, drains that close idle connections |
//! | `steering` | `outpost dns-zone` on a real PowerDNS: answers by client subnet, drained and stopped nodes leave, regions fall over, the default region |
//! | `chunks` | `cache.chunk_size` with real processes: a 64 MiB object cached across three 48 MiB nodes (exact bytes whole and by range, no second origin fetch, purge of every chunk), a version change mid-object never stitched, origins that ignore Range or have no validator |
//! | `persist` | `cache.persist` with the real binary: SIGTERM writes the cache, a restart serves it with the right Age; damaged, foreign or junk snapshots |
//! | `cli` | `outpost check`, `outpost [run] --config`, SIGTERM drain, the memory budget, `demo` on its default ports |
//! | `demo` | every command `outpost demo` (and `--regions`) prints, run through a shell in order, shows what its comment says; Ctrl-C ends it quietly |
//! | `docs` | the documentation holds together: relative links and anchors of the README, `docs/`, the bench and deploy READMEs lead somewhere; the README stays under 300 lines; nothing points outside the repository |

mod harness;
mod topology;
mod util;

mod admin;
mod bad_input;
mod caching;
mod chunks;
mod cli;
mod cluster;
mod coalesce;
mod compression;
mod demo;
mod discovery;
mod dns_server;
mod docs;
mod front_door;
mod http3;
mod listeners;
mod ops;
mod origin_failures;
mod origins;
mod persist;
mod policy;
mod purges;
mod regression;
mod replicas;
mod replication;
mod shield;
mod stale;
mod steering;
