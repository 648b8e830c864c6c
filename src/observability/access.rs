//! The access log: one line per client request on stdout, JSON or the "combined" format.
//!
//! Lines are formatted on the request's task and handed to one writer thread through a
//! bounded channel, so a slow stdout (a pipe to a full log shipper) never blocks the runtime:
//! when the channel is full the line is dropped and counted
//! (`outpost_access_log_dropped_total`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, StatusCode};
use prometheus_client::metrics::counter::Counter;

use crate::config::AccessLog as Format;

/// Lines waiting for the writer before new ones are dropped.
const BACKLOG: usize = 65_536;

pub(crate) struct AccessLog {
    format: Format,
    lines: Option<SyncSender<String>>,
    dropped: Counter,
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
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.lines.is_some()
    }

    pub(crate) fn record(&self, entry: &Entry<'_>) {
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
        "upstream": e.upstream,
        "duration_ms": e.duration.as_secs_f64() * 1000.0,
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
