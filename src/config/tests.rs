//! Whole-file tests: the shipped example, defaults, both origin forms.
//! Error positions are covered in `error_tests.rs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, ConfigError, HostPattern};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/outpost.toml");

/// Directory of the example, used as `base_dir` so that `outpost.toml`
/// itself can stand in for an existing certificate or CA file.
pub(super) fn config_dir() -> PathBuf {
    Path::new(EXAMPLE)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "test.toml", &config_dir())
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn example_loads() {
    let config = Config::load(Path::new(EXAMPLE)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.node.name, "edge-1");
    assert_eq!(
        config.listen.http,
        vec![SocketAddr::from(([127, 0, 0, 1], 8080))]
    );
    assert!(config.listen.https.is_empty());
    assert!(config.tls.certificates.is_empty());
    assert_eq!(config.admin.listen, "127.0.0.1:9090".parse().ok());
    assert_eq!(config.admin.token, None);
    assert_eq!(config.sites.len(), 1);
    let site = &config.sites[0];
    assert_eq!(site.name, "example");
    assert!(
        site.hosts
            .contains(&HostPattern::Suffix(".example.com".into()))
    );
    assert_eq!(site.origin.servers.len(), 1);
    assert_eq!(site.origin.servers[0].scheme, http::uri::Scheme::HTTP);
    assert_eq!(site.origin.servers[0].authority, "127.0.0.1:8000");
}

#[test]
fn minimal_file_gets_defaults() {
    let text = "[[site]]\nhosts = [\"a.test\"]\norigin = [\"http://127.0.0.1:1\"]\n";
    let c = parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.node.name, "outpost");
    let l = &c.listen;
    assert_eq!(l.http, vec![SocketAddr::from(([127, 0, 0, 1], 8080))]);
    assert!(l.https.is_empty());
    let limits = (l.max_header_bytes, l.max_headers, l.max_connections);
    assert_eq!(limits, (64 << 10, 100, 10_000));
    assert_eq!(
        (l.header_read_timeout, l.idle_timeout),
        (secs(10), secs(60))
    );
    assert!(c.tls.certificates.is_empty());
    assert_eq!((c.admin.listen, c.admin.token.as_deref()), (None, None));
    let k = &c.cache;
    assert_eq!((k.memory, k.max_object), (512 << 20, 64 << 20));
    assert_eq!(
        (k.uncacheable_ttl, k.heuristic_max),
        (secs(30), secs(86_400))
    );
    assert_eq!(k.heuristic_fraction, 10);
    let site = &c.sites[0];
    assert_eq!(site.name, "a.test");
    assert_eq!(site.hosts, vec![HostPattern::Exact("a.test".into())]);
    let o = &site.origin;
    assert_eq!(o.servers[0].authority, "127.0.0.1:1");
    let timeouts = (o.connect_timeout, o.first_byte_timeout, o.idle_timeout);
    assert_eq!(timeouts, (secs(5), secs(30), secs(60)));
    assert_eq!(o.max_idle_per_server, 64);
    assert_eq!(
        (o.tls.ca.as_ref(), o.tls.sni.as_ref(), o.tls.verify),
        (None, None, true)
    );
}

#[test]
fn every_node_key_set() {
    let text = r#"
        [node]
        name = "edge-9"
        [listen]
        https = ["[::1]:8443"]
        header_read_timeout = 3
        max_header_bytes = 8192
        [[tls.certificates]]
        cert = "outpost.toml"
        key = "./outpost.toml"
        [admin]
        listen = "127.0.0.1:9999"
        token = "s3cret"
        [cache]
        memory = "1.5GiB"
        max_object = "1GiB"
        uncacheable_ttl = "500ms"
        heuristic_fraction = 0
        heuristic_max = "2h"
        [[site]]
        hosts = ["a.test"]
        origin = ["http://127.0.0.1:1"]
    "#;
    let c = parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.node.name, "edge-9");
    assert!(c.listen.http.is_empty());
    assert_eq!(
        c.listen.https,
        vec![SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 8443))]
    );
    assert_eq!(
        (c.listen.header_read_timeout, c.listen.max_header_bytes),
        (secs(3), 8192)
    );
    assert_eq!(
        c.tls.certificates[0].cert,
        config_dir().join("outpost.toml")
    );
    assert_eq!(c.admin.token.as_deref(), Some("s3cret"));
    assert_eq!((c.cache.memory, c.cache.max_object), (3 << 29, 1 << 30));
    let ttls = (c.cache.uncacheable_ttl, c.cache.heuristic_max);
    assert_eq!(ttls, (Duration::from_millis(500), secs(7_200)));
    assert_eq!(c.cache.heuristic_fraction, 0);
}

#[test]
fn long_form_origin() {
    let text = r#"
        [[site]]
        hosts = ["*.Example.com"]
        [site.origin]
        servers = ["https://origin.example.com", "http://10.0.0.1:81/"]
        connect_timeout = "1s"
        first_byte_timeout = "2m"
        idle_timeout = 7
        max_idle_per_server = 0
        tls = { ca = "outpost.toml", sni = "Origin.Example.com", verify = false }
    "#;
    let c = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let site = &c.sites[0];
    assert_eq!(site.name, "*.example.com");
    let o = &site.origin;
    assert_eq!(o.servers[0].scheme, http::uri::Scheme::HTTPS);
    assert_eq!(o.servers[1].authority, "10.0.0.1:81");
    let timeouts = (o.connect_timeout, o.first_byte_timeout, o.idle_timeout);
    assert_eq!(timeouts, (secs(1), secs(120), secs(7)));
    assert_eq!(o.max_idle_per_server, 0);
    assert_eq!(o.tls.ca, Some(config_dir().join("outpost.toml")));
    assert_eq!(
        (o.tls.sni.as_deref(), o.tls.verify),
        (Some("origin.example.com"), false)
    );
}

/// The commented `[site.origin]` example documents every key, with its default value.
#[test]
fn example_origin_table_documents_every_key_with_its_default() {
    let text = std::fs::read_to_string(EXAMPLE).expect("example");
    let start = text
        .find("# [site.origin]\n")
        .expect("the [site.origin] example");
    let block: Vec<&str> = text[start..]
        .lines()
        .take_while(|line| line.starts_with('#'))
        .filter(|line| !line.starts_with("# #") && *line != "#")
        .map(|line| line.trim_start_matches("# "))
        .collect();
    let keys: Vec<&str> = block
        .iter()
        .skip(1)
        .filter_map(|line| line.split_once(" = ").map(|(key, _)| key))
        .collect();
    assert_eq!(
        keys,
        [
            "servers",
            "connect_timeout",
            "first_byte_timeout",
            "idle_timeout",
            "max_idle_per_server",
            "max_connections",
            "queue",
            "queue_timeout",
            "http2",
            "balance",
            "retries",
            "health",
            "tls",
        ]
    );
    let table = format!("[[site]]\nhosts = [\"a.test\"]\n{}\n", block.join("\n"))
        .replace("\"ca.pem\"", "\"outpost.toml\"");
    let c = parse(&table).unwrap_or_else(|e| panic!("{e}\n{table}"));
    let o = &c.sites[0].origin;
    let defaults =
        parse("[[site]]\nhosts = [\"a.test\"]\norigin = [\"http://a.test\"]\n").expect("defaults");
    let d = &defaults.sites[0].origin;
    assert_eq!(
        (o.connect_timeout, o.first_byte_timeout, o.idle_timeout),
        (d.connect_timeout, d.first_byte_timeout, d.idle_timeout)
    );
    assert_eq!(
        (o.max_idle_per_server, o.max_connections, o.queue),
        (d.max_idle_per_server, d.max_connections, d.queue)
    );
    assert_eq!((o.queue_timeout, o.http2), (d.queue_timeout, d.http2));
    assert_eq!((o.balance, o.retries), (d.balance, d.retries));
}

#[test]
fn load_reports_unreadable_files() {
    let missing = config_dir().join("does-not-exist.toml");
    let err = Config::load(&missing)
        .map(|_| ())
        .expect_err("missing file");
    let shown = err.to_string();
    assert!(matches!(err, ConfigError::Read { .. }), "{shown}");
    assert!(
        shown.starts_with(&format!("{}: cannot read: ", missing.display())),
        "{shown}"
    );
}

#[test]
fn relative_paths_use_base_dir() {
    let text = "[[tls.certificates]]\ncert = \"nope.pem\"\nkey = \"nope.key\"\n";
    let err = Config::parse(text, "x.toml", Path::new("/etc/outpost"))
        .map(|_| ())
        .expect_err("missing");
    let shown = err.to_string();
    assert!(
        shown.starts_with("x.toml:2:8: tls.certificates[0].cert: "),
        "{shown}"
    );
    assert!(shown.contains("/etc/outpost/nope.pem"), "{shown}");
}

#[test]
fn origin_tls_default_is_safe() {
    assert!(crate::config::OriginTls::default().verify);
}

#[test]
fn request_bodies_are_buffered_up_to_the_site_limit() {
    let site = |keys: &str| {
        let text =
            format!("[[site]]\nhosts = [\"a.test\"]\norigin = [\"http://127.0.0.1:1\"]\n{keys}");
        let c = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let s = &c.sites[0];
        (
            s.request_buffering,
            s.request_body_timeout,
            s.request_body_min_rate,
        )
    };
    assert_eq!(site(""), (1 << 20, secs(10), 1024));
    assert_eq!(
        site("request_buffering = 0\nrequest_body_timeout = \"2s\"\nrequest_body_min_rate = 0"),
        (0, secs(2), 0)
    );
    // Never more than the largest body accepted.
    assert_eq!(site("max_request_body = \"4KiB\"").0, 4096);
}

#[test]
fn leave_notice_defaults_to_two_probe_intervals() {
    let notice = |keys: &str| {
        let text = format!(
            "[cluster]\nadvertise = \"127.0.0.1:8080\"\npeers = [\"127.0.0.1:8081\"]\n\
             secret = \"a-long-enough-secret\"\n{keys}\n\
             [[site]]\nhosts = [\"a.test\"]\norigin = [\"http://127.0.0.1:1\"]\n"
        );
        let c = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        c.cluster.map(|c| c.leave_notice)
    };
    assert_eq!(notice(""), Some(secs(2)));
    assert_eq!(
        notice("probe_interval = \"250ms\""),
        Some(Duration::from_millis(500))
    );
    assert_eq!(notice("leave_notice = \"0s\""), Some(secs(0)));
}

#[test]
fn compression_is_off_unless_codings_are_named() {
    use crate::cache::encoding::{Coding, Levels};
    let base = "[[site]]\nhosts = [\"a.test\"]\norigin = [\"http://127.0.0.1:1\"]\n";
    let c = parse(base).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.sites[0].compress.is_none());
    let off = parse(&format!("{base}compress = []\n")).unwrap_or_else(|e| panic!("{e}"));
    assert!(off.sites[0].compress.is_none());
    let text = format!(
        "{base}compress = [\"zstd\", \"BR\"]\ncompress_types = [\"text/html\", \"application/*+json\"]\n\
         compress_min_size = \"4KiB\"\ncompress_levels = {{ br = 11 }}\n"
    );
    let c = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let rules = c.sites[0].compress.as_ref().expect("on");
    assert_eq!(rules.codings, [Coding::Zstd, Coding::Br]);
    assert_eq!(rules.types.len(), 2);
    assert_eq!(rules.min_size, 4096);
    let want = Levels {
        br: 11,
        ..Levels::default()
    };
    assert_eq!(rules.levels, want);
    let defaults =
        parse(&format!("{base}compress = [\"gzip\"]\n")).unwrap_or_else(|e| panic!("{e}"));
    let rules = defaults.sites[0].compress.as_ref().expect("on");
    assert_eq!(rules.types, crate::cache::encoding::default_types());
    assert_eq!(rules.min_size, 1024);
}
