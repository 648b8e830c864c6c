//! Outpost's integration tests: one binary, real sockets on loopback.
//!
//! | module | what it proves |
//! |---|---|
//! | `harness` | origin, node and client helpers (not tests) |
//! | `smoke` | a miss, then a hit |

mod harness;
mod smoke;
