//! The text formats of `/metrics`: OpenMetrics as encoded, and the classic Prometheus format
//! rewritten from it.

/// Rewrite OpenMetrics text into the classic format: a counter family `x` is exposed as
/// samples `x_total`, so its HELP/TYPE must name `x_total`; `info` becomes a gauge named
/// `x_info`; `# UNIT` and `# EOF` do not exist there.
pub(crate) fn openmetrics_to_prometheus(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_help: Option<(&str, &str)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            pending_help = Some((name, help));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                other => (name.to_owned(), other),
            };
            if let Some((_, help)) = pending_help.take() {
                out.push_str(&format!("# HELP {name} {help}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{CacheResult, Metrics, OriginOutcome, PeerOutcome, PurgeSource};
    use crate::error::OriginFailure;

    #[test]
    fn classic_format_names_counter_families_by_their_samples() {
        let m = Metrics::new();
        m.site("a").request(CacheResult::Hit);
        let text = m.encode_prometheus();
        assert!(
            text.contains("# TYPE outpost_requests_total counter"),
            "{text}"
        );
        assert!(text.contains("# HELP outpost_requests_total "), "{text}");
        assert!(text.contains("outpost_requests_total{site=\"a\",cache=\"hit\"} 1"));
        assert!(text.contains("# TYPE outpost_build_info gauge"));
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
    }

    #[test]
    fn openmetrics_ends_with_eof() {
        assert!(Metrics::new().encode_openmetrics().ends_with("# EOF\n"));
    }

    /// Dashboards and alerts (deploy/) read these names, labels and help texts: every family's
    /// HELP and TYPE and every sample must match `golden.openmetrics`. Lines are compared
    /// sorted: the order of families and of a family's label sets carries no meaning.
    #[test]
    fn exposition_matches_golden() {
        let m = Metrics::new();
        let site = m.site("a");
        site.request(CacheResult::Hit);
        site.origin(OriginOutcome::Response);
        site.origin_duration.observe(0.003);
        site.response(http::StatusCode::OK, 0.004, Some(10));
        site.origin_bytes.inc_by(10);
        let server = m.origin_server("a", "origin.example:80");
        server.error(OriginFailure::Timeout);
        server.requests.inc();
        server.duration.observe(0.002);
        let peer = m.peer("10.0.0.2:8080");
        peer.request(PeerOutcome::Timeout);
        peer.duration.observe(0.001);
        m.eviction("size").inc();
        m.store.purged.inc();
        m.front.connections_open.inc();
        let shield = m.shield("a", "10.1.0.5:8080");
        shield.request(PeerOutcome::Response);
        shield.duration.observe(0.001);
        m.shield_fallbacks("a").inc();
        m.membership.set_node("edge-1", Some("eu-west"));
        m.membership.handoff(true);
        m.store.snapshot("load", "loaded", 3);
        m.store.snapshot_skipped("corrupt");
        m.store.set_role_bytes(100, 20);
        m.purges.taken(PurgeSource::Here);
        m.purges.set_log(1, 300);
        m.purges.lease.set(1);
        m.purges.exchange("same");
        m.purges.refused("bad_mac");
        m.purges.push("stored");
        m.purges.push_bytes.inc_by(1000);
        m.purges.received("stored");
        m.store.chunked_objects.inc();
        m.store.chunk_fetch("ok");
        m.store.compression("br", "stored");
        m.store.compressed_response("br");
        let text = m.encode_openmetrics();
        let golden =
            include_str!("golden.openmetrics").replace("{version}", env!("CARGO_PKG_VERSION"));
        let sorted = |t: &str| -> Vec<String> {
            let mut lines: Vec<String> = t.lines().map(str::to_owned).collect();
            lines.sort();
            lines
        };
        assert_eq!(sorted(&text), sorted(&golden));
    }
}
