//! The access log: one line per client request on stdout, JSON or the "combined" format, and
//! the same requests as JSON for whoever follows `GET /log` on the admin listener.
//!
//! Lines are formatted on the request's task and handed to one writer thread through a
//! bounded channel, so a slow stdout (a pipe to a full log shipper) never blocks the runtime:
//! when the channel is full the line is dropped and counted
//! (`outpost_access_log_dropped_total`). Followers read from a bounded broadcast: one that
//! reads too slowly loses the oldest lines (told in its stream, and counted), never slows a
//! request. With no follower and `access = "off"`, nothing is formatted at all.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast;

use http::{HeaderValue, Method, StatusCode};
use prometheus_client::metrics::counter::Counter;

use crate::config::AccessLog as Format;

/// Lines waiting for the writer before new ones are dropped.
const BACKLOG: usize = 65_536;
/// Lines a `GET /log` follower may fall behind by before it loses the oldest.
const FOLLOW_BACKLOG: usize = 4096;

pub(crate) struct AccessLog {
    format: Format,
    lines: Option<SyncSender<String>>,
    dropped: Counter,
    followers: broadcast::Sender<Arc<Followed>>,
}

/// One request as `GET /log` followers get it: its JSON line, and what filters look at.
#[derive(Debug)]
pub(crate) struct Followed {
    /// The JSON object and a newline.
    pub(crate) line: String,
    pub(crate) status: u16,
    pub(crate) cache: &'static str,
    pub(crate) host: String,
    pub(crate) path: String,
    pub(crate) site: String,
}

/// What a line says about one request.
pub(crate) struct Entry<'a> {
    pub(crate) client: SocketAddr,
    pub(crate) method: &'a Method,
    pub(crate) host: &'a str,
    pub(crate) path: &'a str,
    pub(crate) status: StatusCode,
    /// The body length when the response announced one.
    pub(crate) bytes: Option<u64>,
    pub(crate) cache_status: &'a str,
    /// The cache result (`hit`, `miss`, ...), as `outpost_requests_total` counts it.
    pub(crate) cache: &'static str,
    /// Where the response came from: `cache`, `peer` or `origin`.
    pub(crate) upstream: &'a str,
    pub(crate) site: &'a str,
    pub(crate) started: SystemTime,
    pub(crate) duration: Duration,
    pub(crate) user_agent: Option<&'a HeaderValue>,
    pub(crate) referer: Option<&'a HeaderValue>,
}

impl AccessLog {
    pub(crate) fn new(format: Format, dropped: Counter) -> Self {
        let lines = (format != Format::Off).then(|| {
            let (tx, rx) = sync_channel::<String>(BACKLOG);
            std::thread::Builder::new()
                .name("access-log".into())
                .spawn(move || {
                    let stdout = std::io::stdout();
                    let mut out = std::io::BufWriter::new(stdout.lock());
                    while let Ok(line) = rx.recv() {
                        let _ = out.write_all(line.as_bytes());
                        // Flush when the burst is over, not per line.
                        while let Ok(line) = rx.try_recv() {
                            let _ = out.write_all(line.as_bytes());
                        }
                        let _ = out.flush();
                    }
                })
                .ok()
                .map(|_| tx)
        });
        Self {
            format,
            lines: lines.flatten(),
            dropped,
            followers: broadcast::channel(FOLLOW_BACKLOG).0,
        }
    }

    /// Whether a request's line is wanted: logged to stdout, or someone follows `GET /log`.
    pub(crate) fn wanted(&self) -> bool {
        self.lines.is_some() || self.followers.receiver_count() > 0
    }

    /// A new follower of every request from now on.
    pub(crate) fn follow(&self) -> broadcast::Receiver<Arc<Followed>> {
        self.followers.subscribe()
    }

    pub(crate) fn record(&self, entry: &Entry<'_>) {
        if self.followers.receiver_count() > 0 {
            let followed = Followed {
                line: json_line(entry),
                status: entry.status.as_u16(),
                cache: entry.cache,
                host: entry.host.to_ascii_lowercase(),
                path: entry.path.to_owned(),
                site: entry.site.to_owned(),
            };
            // No follower left since the count: nothing to do.
            let _ = self.followers.send(Arc::new(followed));
        }
        let Some(lines) = &self.lines else { return };
        let line = match self.format {
            Format::Off => return,
            Format::Json => json_line(entry),
            Format::Combined => combined_line(entry),
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = lines.try_send(line) {
            self.dropped.inc();
        }
    }
}

/// What `GET /log` keeps of the requests (query `status=5xx`, `cache=miss`, `host=`,
/// `path_prefix=`, `site=`; all given must hold).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    /// A status (`404`) or a class (`5xx`).
    status: Option<StatusFilter>,
    cache: Option<String>,
    host: Option<String>,
    path_prefix: Option<String>,
    site: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusFilter {
    Exact(u16),
    Class(u16),
}

impl Filter {
    /// The filter a query names; the error says which parameter is wrong.
    pub(crate) fn parse(query: Option<&str>) -> Result<Self, String> {
        let mut filter = Self::default();
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = crate::admin::percent_decode(value);
            match name {
                "status" => filter.status = Some(status_filter(&value)?),
                "cache" => filter.cache = Some(value.to_ascii_lowercase()),
                "host" => filter.host = Some(value.to_ascii_lowercase()),
                "path_prefix" => filter.path_prefix = Some(value),
                "site" => filter.site = Some(value),
                other => {
                    return Err(format!(
                        "unknown filter {other:?} (status, cache, host, path_prefix, site)"
                    ));
                }
            }
        }
        Ok(filter)
    }

    pub(crate) fn keeps(&self, r: &Followed) -> bool {
        let status = match self.status {
            None => true,
            Some(StatusFilter::Exact(s)) => r.status == s,
            Some(StatusFilter::Class(c)) => r.status / 100 == c,
        };
        status
            && self.cache.as_deref().is_none_or(|c| c == r.cache)
            && self.host.as_deref().is_none_or(|h| h == r.host)
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| r.path.starts_with(p))
            && self.site.as_deref().is_none_or(|s| s == r.site)
    }
}

fn status_filter(value: &str) -> Result<StatusFilter, String> {
    let bad = || format!("status={value:?} is not a status (404) or a class (5xx)");
    match value.as_bytes() {
        [d @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => Ok(StatusFilter::Class(u16::from(d - b'0'))),
        _ => value
            .parse::<u16>()
            .ok()
            .filter(|s| (100..600).contains(s))
            .map(StatusFilter::Exact)
            .ok_or_else(bad),
    }
}

fn json_line(e: &Entry<'_>) -> String {
    let value = serde_json::json!({
        "time": httpdate::fmt_http_date(e.started),
        "client": e.client.ip().to_string(),
        "site": e.site,
        "method": e.method.as_str(),
        "host": e.host,
        "path": e.path,
        "status": e.status.as_u16(),
        "bytes": e.bytes,
        "cache_status": e.cache_status,
        "cache": e.cache,
        "upstream": e.upstream,
        // Microsecond precision, written as such (0.572, not 0.5724140000000001).
        "duration_ms": (e.duration.as_secs_f64() * 1_000_000.0).round() / 1000.0,
        "user_agent": e.user_agent.and_then(|v| v.to_str().ok()),
        "referer": e.referer.and_then(|v| v.to_str().ok()),
    });
    let mut line = value.to_string();
    line.push('\n');
    line
}

/// `client - - [time] "METHOD path HTTP/1.1" status bytes "referer" "user-agent"` plus the
/// cache status, upstream and duration in seconds, quoted where they may hold spaces.
fn combined_line(e: &Entry<'_>) -> String {
    let text = |v: Option<&HeaderValue>| {
        v.and_then(|v| v.to_str().ok())
            .map_or_else(|| "-".to_owned(), |s| s.replace('"', "\\\""))
    };
    let mut line = String::with_capacity(256);
    let _ = writeln!(
        line,
        "{} - - [{}] \"{} {} HTTP/1.1\" {} {} \"{}\" \"{}\" \"{}\" {} {:.6}",
        e.client.ip(),
        httpdate::fmt_http_date(e.started),
        e.method,
        e.path.replace('"', "%22"),
        e.status.as_u16(),
        e.bytes.map_or_else(|| "-".to_owned(), |b| b.to_string()),
        text(e.referer),
        text(e.user_agent),
        e.cache_status.replace('"', "'"),
        e.upstream,
        e.duration.as_secs_f64(),
    );
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(cache_status: &'a str, upstream: &'a str, ua: &'a HeaderValue) -> Entry<'a> {
        Entry {
            client: "192.0.2.7:5555".parse().unwrap(),
            method: &Method::GET,
            host: "example.com",
            path: "/a?b=\"c\"",
            status: StatusCode::OK,
            bytes: Some(1234),
            cache_status,
            cache: "hit",
            upstream,
            site: "example",
            started: SystemTime::UNIX_EPOCH,
            duration: Duration::from_micros(1500),
            user_agent: Some(ua),
            referer: None,
        }
    }

    #[test]
    fn json_lines_are_one_object_per_line() {
        let ua = HeaderValue::from_static("curl/8 \"quoted\"");
        let line = json_line(&entry("edge; hit; ttl=5", "cache", &ua));
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["upstream"], "cache");
        assert_eq!(v["path"], "/a?b=\"c\"");
        assert_eq!(v["user_agent"], "curl/8 \"quoted\"");
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["cache"], "hit");
        let mut odd = entry("edge; hit", "cache", &ua);
        odd.duration = Duration::from_nanos(572_414);
        let v: serde_json::Value = serde_json::from_str(&json_line(&odd)).unwrap();
        assert_eq!(v["duration_ms"].to_string(), "0.572");
    }

    #[test]
    fn filters_keep_what_the_query_names() {
        let r = Followed {
            line: String::new(),
            status: 503,
            cache: "miss",
            host: "a.test".into(),
            path: "/api/x".into(),
            site: "a".into(),
        };
        let keeps = |q: &str| Filter::parse(Some(q)).expect(q).keeps(&r);
        assert!(keeps(""));
        assert!(keeps(
            "status=5xx&cache=miss&host=A.test&path_prefix=/api&site=a"
        ));
        assert!(keeps("status=503"));
        assert!(!keeps("status=4xx"));
        assert!(!keeps("cache=hit"));
        assert!(!keeps("path_prefix=/img"));
        assert!(keeps("path_prefix=%2Fapi"));
        assert!(Filter::parse(Some("status=6xx")).is_err());
        assert!(Filter::parse(Some("colour=red")).is_err());
    }

    #[test]
    fn combined_lines_quote_what_may_hold_spaces() {
        let ua = HeaderValue::from_static("Mozilla/5.0 (X11)");
        let line = combined_line(&entry(
            "a; hit, edge; fwd=uri-miss; detail=not-owner",
            "peer",
            &ua,
        ));
        assert!(line.starts_with("192.0.2.7 - - [Thu, 01 Jan 1970 00:00:00 GMT] \"GET /a?b=%22c%22 HTTP/1.1\" 200 1234 \"-\" \"Mozilla/5.0 (X11)\""), "{line}");
        assert!(line.trim_end().ends_with("peer 0.001500"), "{line}");
    }
}
