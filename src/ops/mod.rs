//! The operator's commands, each a client of a node's admin API (`crate::admin`):
//!
//! | command | what |
//! |---|---|
//! | `outpost top` | a live view, refreshed every second: requests by cache result, hit ratios, origin requests and latency, members and shields, the busiest URLs, errors by `detail` ([`top`]) |
//! | `outpost log` | the access log as NDJSON while it runs, filtered (`GET /log`, [`log`]) |
//! | `outpost purge` | `POST /purge` with a readable answer; exit 1 unless every node confirmed ([`purge`]) |
//! | `outpost cluster` | `GET /cluster` as a table; exit 1 if a member is down ([`cluster`]) |
//!
//! Each finds the node from `--admin ADDR` or from `--config FILE` (its `[admin] listen`),
//! and the token from `--token`, the `OUTPOST_ADMIN_TOKEN` environment variable, or the
//! file's `[admin] token`. Exit status: 0 done, 1 a node did not confirm (or is down), 2 the
//! node could not be asked.

pub mod client;
pub mod cluster;
pub mod log;
pub mod purge;
pub mod top;

use std::net::SocketAddr;
use std::path::Path;

use crate::config::Config;

/// Which admin API a command talks to, and with which token.
#[derive(Debug, Clone)]
pub struct Target {
    pub admin: SocketAddr,
    pub token: Option<String>,
}

/// Why a command could not run.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("give the admin address with --admin IP:PORT, or --config FILE with an [admin] listen")]
    NoAdmin,
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the admin API at {0}: {1}")]
    Unreachable(SocketAddr, String),
    #[error("the admin API answered {0}: {1}")]
    Refused(u16, String),
    #[error("the admin API's answer is not what this command expects: {0}")]
    Answer(String),
}

impl OpsError {
    /// The exit status it means: 2 (the node could not be asked as this command needs).
    pub fn exit_code(&self) -> u8 {
        2
    }
}

impl Target {
    /// From the flags: `--admin` wins over the file's `[admin] listen`; `--token` over
    /// `OUTPOST_ADMIN_TOKEN` over the file's `[admin] token`.
    pub fn resolve(
        admin: Option<&str>,
        token: Option<&str>,
        config: Option<&Path>,
    ) -> Result<Self, OpsError> {
        let file = config.map(Config::load).transpose()?;
        let admin = match admin {
            Some(text) => text
                .parse()
                .map_err(|_| OpsError::Usage(format!("--admin {text:?} is not IP:PORT")))?,
            None => file
                .as_ref()
                .and_then(|c| c.admin.listen)
                .ok_or(OpsError::NoAdmin)?,
        };
        let token = token
            .map(str::to_owned)
            .or_else(|| std::env::var("OUTPOST_ADMIN_TOKEN").ok())
            .or_else(|| file.and_then(|c| c.admin.token));
        Ok(Self { admin, token })
    }
}
