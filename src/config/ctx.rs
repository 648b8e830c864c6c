//! What every validator shares: the [`Ctx`] that turns a span into a [`ConfigError`], and the
//! value checks more than one section needs (names, addresses, timeouts).
//!
//! The section validators (`sites.rs`, `site_cache.rs`, `cluster.rs`) import this module and
//! never `validate.rs`, so calls go one way: `validate.rs` → sections → here.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::config::error::{ConfigError, Source};
use crate::config::units::HumanDuration;

/// What validation needs besides the file structs.
pub(crate) struct Ctx<'a> {
    pub(crate) source: Source<'a>,
    pub(crate) base_dir: &'a Path,
}

impl Ctx<'_> {
    pub(crate) fn invalid(
        &self,
        span: Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        self.source.invalid(span, key, message)
    }

    /// `path` resolved against the config file's directory; must exist and
    /// be a file. Contents are left to the node.
    pub(crate) fn existing_file(
        &self,
        path: &Spanned<PathBuf>,
        key: &str,
    ) -> Result<PathBuf, ConfigError> {
        let resolved = self.base_dir.join(path.get_ref());
        let shown = resolved.display();
        let problem = match std::fs::metadata(&resolved) {
            Ok(meta) if meta.is_file() => return Ok(resolved),
            Ok(_) => format!("{shown} is not a regular file"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                format!("file not found: {shown}")
            }
            Err(e) => format!("cannot access {shown}: {e}"),
        };
        Err(self.invalid(path.span(), key, problem))
    }
}

/// Printable ASCII without spaces: safe in logs, headers and metric labels.
pub(crate) fn check_name(
    value: &Spanned<String>,
    key: &str,
    cx: &Ctx<'_>,
) -> Result<String, ConfigError> {
    let name = value.get_ref();
    if name.is_empty() {
        return Err(cx.invalid(value.span(), key, "must not be empty"));
    }
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        let message = "must be printable ASCII without spaces";
        return Err(cx.invalid(value.span(), key, message));
    }
    Ok(name.clone())
}

/// Parses one `IP:PORT`. Host names are not resolved: a listener must not
/// depend on DNS at startup.
pub(crate) fn socket_addr(
    value: &Spanned<String>,
    key: &str,
    cx: &Ctx<'_>,
) -> Result<SocketAddr, ConfigError> {
    value.get_ref().parse().map_err(|_| {
        let message = format!(
            "{:?} is not an IP:PORT address (like \"0.0.0.0:8080\" or \"[::]:8443\"; host names are not resolved)",
            value.get_ref()
        );
        cx.invalid(value.span(), key, message)
    })
}

/// A timeout from the file or its default; zero would fail every request.
pub(crate) fn timeout(
    v: &Option<Spanned<HumanDuration>>,
    default: Duration,
    key: &str,
    cx: &Ctx<'_>,
) -> Result<Duration, ConfigError> {
    match v {
        Some(v) if v.get_ref().0.is_zero() => {
            Err(cx.invalid(v.span(), key, "must be greater than zero"))
        }
        Some(v) => Ok(v.get_ref().0),
        None => Ok(default),
    }
}
