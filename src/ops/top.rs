//! `outpost top`: a live view of one node, refreshed every interval, as `varnishtop` and
//! `traffic_top` give: requests per second by cache result, hit ratios (of requests and of
//! bytes), origin requests and their latency, members and shields with their health, the
//! busiest URLs of the last interval (by requests, with their misses and bytes), and errors by
//! their `Cache-Status` detail.
//!
//! Totals come from `/metrics` (differences between two scrapes), health from `/cluster`, and
//! the per-URL figures from following `/log`. On a terminal the screen is redrawn in place;
//! otherwise each interval is printed as a block of plain lines, for a pipe or a log.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;

use super::OpsError;
use super::client::AdminClient;

/// The cache results, in the order shown.
const RESULTS: [&str; 7] = [
    "hit",
    "miss",
    "stale",
    "revalidated",
    "peer",
    "pass",
    "error",
];
/// URLs shown.
const BUSIEST: usize = 8;

/// What `/metrics` says, summed over sites.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    by_result: BTreeMap<String, f64>,
    response_bytes: f64,
    origin_bytes: f64,
    origin_requests: f64,
    origin_failed: f64,
    origin_seconds: f64,
    origin_timed: f64,
}

impl Totals {
    /// Sum the samples this view reads out of a Prometheus text page.
    pub fn parse(text: &str) -> Self {
        let mut t = Self::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let label = |key: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix("=\""))
                    .and_then(|v| v.split('"').next())
            };
            match name {
                "outpost_requests_total" => {
                    if let Some(result) = label("cache") {
                        *t.by_result.entry(result.to_owned()).or_default() += value;
                    }
                }
                "outpost_response_bytes_total" => t.response_bytes += value,
                "outpost_origin_bytes_total" => t.origin_bytes += value,
                "outpost_origin_requests_total" => {
                    t.origin_requests += value;
                    if label("outcome") != Some("response") {
                        t.origin_failed += value;
                    }
                }
                "outpost_origin_response_duration_seconds_sum" => t.origin_seconds += value,
                "outpost_origin_response_duration_seconds_count" => t.origin_timed += value,
                _ => {}
            }
        }
        t
    }
}

/// One URL's figures over an interval.
#[derive(Debug, Default, Clone, PartialEq)]
struct UrlFigures {
    requests: u64,
    misses: u64,
    bytes: u64,
}

/// What the log said over one interval.
#[derive(Debug, Default, Clone)]
pub struct Interval {
    urls: HashMap<String, UrlFigures>,
    errors: BTreeMap<String, u64>,
    lost: u64,
}

impl Interval {
    /// Count one line of `/log`.
    pub fn add_line(&mut self, line: &str) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            return;
        };
        if let Some(lost) = v["lost"].as_u64() {
            self.lost += lost;
            return;
        }
        let url = format!(
            "{}{}",
            v["host"].as_str().unwrap_or_default(),
            v["path"].as_str().unwrap_or_default()
        );
        let figures = self.urls.entry(url).or_default();
        figures.requests += 1;
        if v["cache"] == "miss" {
            figures.misses += 1;
        }
        figures.bytes += v["bytes"].as_u64().unwrap_or(0);
        let status = v["status"].as_u64().unwrap_or(0);
        if status >= 500 || v["cache"] == "error" || status == 421 {
            // This node's member of Cache-Status is the last one.
            let ours = v["cache_status"]
                .as_str()
                .unwrap_or_default()
                .rsplit(',')
                .next()
                .unwrap_or_default();
            let detail = ours
                .split(';')
                .find_map(|p| p.trim().strip_prefix("detail="))
                .unwrap_or("none");
            *self.errors.entry(format!("{status} {detail}")).or_default() += 1;
        }
    }
}

/// Everything one screen shows.
#[derive(Debug, Clone)]
pub struct Screen {
    pub node: String,
    pub admin: String,
    pub seconds: f64,
    pub before: Totals,
    pub now: Totals,
    pub cluster: serde_json::Value,
    pub interval: Interval,
}

fn rate(now: f64, before: f64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        0.0
    } else {
        ((now - before) / seconds).max(0.0)
    }
}

fn bytes(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.1} GB", n / 1e9),
        n if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        n if n >= 1e3 => format!("{:.1} KB", n / 1e3),
        n => format!("{n:.0} B"),
    }
}

impl Screen {
    /// The screen as lines (the same on a terminal and in a pipe).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let s = self.seconds;
        let _ = writeln!(
            out,
            "outpost top  {} ({})  over the last {:.1} s",
            self.node, self.admin, s
        );
        let delta = |r: &str| {
            let now = self.now.by_result.get(r).copied().unwrap_or(0.0);
            let before = self.before.by_result.get(r).copied().unwrap_or(0.0);
            (now - before).max(0.0)
        };
        let total: f64 = RESULTS.iter().map(|r| delta(r)).sum();
        let mut by = String::new();
        for r in RESULTS {
            let _ = write!(by, "  {r} {:.1}", delta(r) / s.max(f64::EPSILON));
        }
        let _ = writeln!(out, "requests/s {:.1}  |{by}", total / s.max(f64::EPSILON));
        let cached = delta("hit") + delta("stale");
        let asked = total - delta("pass") - delta("error");
        let req_ratio = if asked > 0.0 {
            cached / asked * 100.0
        } else {
            0.0
        };
        let sent = (self.now.response_bytes - self.before.response_bytes).max(0.0);
        let fetched = (self.now.origin_bytes - self.before.origin_bytes).max(0.0);
        let byte_ratio = if sent > 0.0 {
            ((1.0 - fetched / sent) * 100.0).clamp(0.0, 100.0)
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "hit ratio  {req_ratio:.1}% of requests  {byte_ratio:.1}% of bytes  ({} sent, {} from upstreams)",
            bytes(sent),
            bytes(fetched)
        );
        let origin = rate(self.now.origin_requests, self.before.origin_requests, s);
        let failed = rate(self.now.origin_failed, self.before.origin_failed, s);
        let timed = self.now.origin_timed - self.before.origin_timed;
        let latency = if timed > 0.0 {
            format!(
                "{:.1} ms",
                (self.now.origin_seconds - self.before.origin_seconds) / timed * 1000.0
            )
        } else {
            "-".to_owned()
        };
        let _ = writeln!(
            out,
            "origin     {origin:.1} req/s  mean {latency}  failed {failed:.1}/s"
        );
        let _ = writeln!(out, "members    {}", members(&self.cluster));
        if let Some(shields) = shields(&self.cluster) {
            let _ = writeln!(out, "shields    {shields}");
        }
        let _ = writeln!(out, "busiest URLs (requests, misses, bytes)");
        let mut urls: Vec<(&String, &UrlFigures)> = self.interval.urls.iter().collect();
        urls.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(b.0)));
        if urls.is_empty() {
            let _ = writeln!(out, "  (no requests)");
        }
        for (url, f) in urls.into_iter().take(BUSIEST) {
            let _ = writeln!(
                out,
                "  {:>7} {:>7} {:>10}  {url}",
                f.requests,
                f.misses,
                bytes(f.bytes as f64)
            );
        }
        let _ = writeln!(out, "errors by detail");
        if self.interval.errors.is_empty() {
            let _ = writeln!(out, "  (none)");
        }
        for (detail, n) in &self.interval.errors {
            let _ = writeln!(out, "  {n:>7}  {detail}");
        }
        if self.interval.lost > 0 {
            let _ = writeln!(
                out,
                "({} log lines lost: the view read too slowly)",
                self.interval.lost
            );
        }
        out
    }
}

fn members(page: &serde_json::Value) -> String {
    if page["enabled"] == false {
        return "not in a cluster".to_owned();
    }
    page["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let state = super::cluster::member_state(m);
            format!(
                "{} {state}",
                m["name"].as_str().or(m["address"].as_str()).unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join("  ")
}

fn shields(page: &serde_json::Value) -> Option<String> {
    let shields = page["shields"].as_object()?;
    let list: Vec<String> = shields
        .values()
        .flat_map(|nodes| nodes.as_array().cloned().unwrap_or_default())
        .map(|n| {
            let state = if n["alive"] == true { "up" } else { "DOWN" };
            format!("{} {state}", n["address"].as_str().unwrap_or("?"))
        })
        .collect();
    (!list.is_empty()).then(|| list.join("  "))
}

/// Follow `/log` into `interval` until the stream ends (the view keeps one running).
async fn follow(client: Arc<AdminClient>, interval: Arc<Mutex<Interval>>) {
    let Ok(response) = client.send(Method::GET, "/log", Bytes::new()).await else {
        return;
    };
    if response.status() != StatusCode::OK {
        return;
    }
    let mut body = response.into_body();
    let mut pending = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line);
            interval
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .add_line(&text);
        }
    }
}

/// How the view is shown.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub every: Duration,
    /// Stop after this many screens (`None`: until interrupted).
    pub count: Option<u64>,
    /// Redraw in place (a terminal) rather than print blocks.
    pub redraw: bool,
}

/// Run the view, writing each screen to stdout.
pub async fn run(client: AdminClient, options: Options) -> Result<(), OpsError> {
    let client = Arc::new(client);
    let metrics = |c: Arc<AdminClient>| async move {
        let (status, body) = c.exchange(Method::GET, "/metrics", Bytes::new()).await?;
        if status != StatusCode::OK {
            return Err(super::client::refused(status, &body));
        }
        Ok::<_, OpsError>(Totals::parse(&String::from_utf8_lossy(&body)))
    };
    let interval = Arc::new(Mutex::new(Interval::default()));
    let follower = tokio::spawn(follow(client.clone(), interval.clone()));
    let mut before = metrics(client.clone()).await?;
    let mut since = std::time::Instant::now();
    let mut shown = 0u64;
    let result = loop {
        tokio::time::sleep(options.every).await;
        let now = match metrics(client.clone()).await {
            Ok(now) => now,
            Err(e) => break Err(e),
        };
        let cluster = client
            .get_json("/cluster")
            .await
            .unwrap_or(serde_json::Value::Null);
        let seconds = since.elapsed().as_secs_f64();
        since = std::time::Instant::now();
        let taken = std::mem::take(
            &mut *interval
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let screen = Screen {
            node: cluster["node"].as_str().unwrap_or("?").to_owned(),
            admin: client.target().admin.to_string(),
            seconds,
            before: before.clone(),
            now: now.clone(),
            cluster,
            interval: taken,
        };
        let text = screen.render();
        if options.redraw {
            // Home, clear the screen, draw.
            print!("\x1b[H\x1b[2J{text}");
        } else {
            println!("{text}");
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        before = now;
        shown += 1;
        if options.count.is_some_and(|n| shown >= n) {
            break Ok(());
        }
    };
    follower.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_screen_says_rates_ratios_urls_and_errors() {
        let before = Totals::parse(
            "outpost_requests_total{site=\"a\",cache=\"hit\"} 10\n\
             outpost_requests_total{site=\"a\",cache=\"miss\"} 10\n\
             outpost_response_bytes_total{site=\"a\"} 1000\n\
             outpost_origin_bytes_total{site=\"a\"} 500\n",
        );
        let now = Totals::parse(
            "# HELP x y\n\
             outpost_requests_total{site=\"a\",cache=\"hit\"} 28\n\
             outpost_requests_total{site=\"b\",cache=\"hit\"} 0\n\
             outpost_requests_total{site=\"a\",cache=\"miss\"} 12\n\
             outpost_response_bytes_total{site=\"a\"} 3000\n\
             outpost_origin_bytes_total{site=\"a\"} 700\n\
             outpost_origin_requests_total{site=\"a\",outcome=\"response\"} 2\n\
             outpost_origin_requests_total{site=\"a\",outcome=\"timeout\"} 1\n\
             outpost_origin_response_duration_seconds_sum{site=\"a\"} 0.03\n\
             outpost_origin_response_duration_seconds_count{site=\"a\"} 3\n",
        );
        let mut interval = Interval::default();
        for _ in 0..3 {
            interval.add_line(r#"{"host":"a.test","path":"/x","cache":"hit","status":200,"bytes":100,"cache_status":"n; hit"}"#);
        }
        interval.add_line(r#"{"host":"a.test","path":"/y","cache":"error","status":504,"bytes":0,"cache_status":"o; hit, n; fwd=uri-miss; detail=origin-timeout"}"#);
        interval.add_line(r#"{"lost": 4}"#);
        let cluster = serde_json::json!({"enabled": true, "node": "n", "members": [
            {"name": "n", "self": true}, {"name": "m", "alive": false}
        ]});
        let screen = Screen {
            node: "n".into(),
            admin: "127.0.0.1:9090".into(),
            seconds: 2.0,
            before,
            now,
            cluster,
            interval,
        };
        let text = screen.render();
        assert!(
            text.contains("requests/s 10.0  |  hit 9.0  miss 1.0"),
            "{text}"
        );
        assert!(
            text.contains("hit ratio  90.0% of requests  90.0% of bytes"),
            "{text}"
        );
        assert!(
            text.contains("origin     1.5 req/s  mean 10.0 ms  failed 0.5/s"),
            "{text}"
        );
        assert!(text.contains("members    n self  m DOWN"), "{text}");
        assert!(
            text.contains("        3       0      300 B  a.test/x"),
            "{text}"
        );
        assert!(text.contains("        1  504 origin-timeout"), "{text}");
        assert!(text.contains("4 log lines lost"), "{text}");
    }
}
