//! DNS steering on a real PowerDNS: the zone `outpost dns-zone` writes, served by
//! `pdns_server` with `deploy/powerdns/pdns.conf`, in front of real nodes whose admin
//! `/readyz` is each node's ready URL. Questions go through `dig` with and without an EDNS
//! client subnet.
//!
//! PowerDNS checks a URL for the first time only after a query asked for it, and counts it
//! down until then, so every expectation is polled for, with a bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};

use crate::harness::{self, Node, Origin, Reply, eventually, wait_until};
use crate::util::{BIN, TempFile, run_to_end, tool};

const ZONE: &str = "cdn.example.com";
const NAME: &str = "www.cdn.example.com";
/// `[steering] check_interval` of the test, in seconds.
const INTERVAL: u64 = 1;

const EU_1: &str = "192.0.2.11";
const EU_2: &str = "192.0.2.12";
const US_1: &str = "198.51.100.21";
const US_V6: &str = "2001:db8:2::21";

/// A subnet of each region, and one of no region.
const EU_CLIENT: &str = "10.1.2.0/24";
const EU_V6_CLIENT: &str = "2001:db8:1:5::/64";
const US_CLIENT: &str = "10.2.3.0/24";
const NOWHERE_CLIENT: &str = "203.0.113.0/24";

#[tokio::test]
async fn powerdns_answers_with_the_ready_nodes_of_the_nearest_region() {
    let (Some(pdns), Some(dig), Some(pdnsutil)) =
        (tool("pdns_server"), tool("dig"), tool("pdnsutil"))
    else {
        return;
    };
    let started = Instant::now();
    let origin = Origin::start(|_, _| Reply::ok("slow").delay(Duration::from_secs(60))).await;
    let node_config = harness::site_config(&origin.url(), "[listen]\nshutdown_timeout = \"50s\"\n");
    let eu_1 = Node::start(&node_config).await;
    let eu_2 = Node::start(&node_config).await;
    let us_1 = Node::start(&node_config).await;
    let us_v6 = Node::start(&node_config).await;
    let ready = |node: &Node| format!("http://{}/readyz", node.admin);

    let dir = TempDir::new();
    // The DNS host's file: steering alone, no [[site]] (it runs no node).
    let config = format!(
        r#"[steering]
zone = "{ZONE}"
names = ["www"]
ttl = "30s"
check_interval = "{INTERVAL}s"
default_region = "us-east"
nameservers = ["ns1.example.net"]

[[region]]
name = "eu-west"
subnets = ["10.1.0.0/16", "2001:db8:1::/48"]
next = ["us-east"]
nodes = [
  {{ name = "edge-eu-1", address = "{EU_1}", ready = "{}" }},
  {{ name = "edge-eu-2", address = "{EU_2}", ready = "{}" }},
]

[[region]]
name = "us-east"
subnets = ["10.2.0.0/16"]
next = ["eu-west"]
nodes = [
  {{ name = "edge-us-1", address = "{US_1}", ready = "{}" }},
  {{ name = "edge-us-v6", address = "{US_V6}", ready = "{}" }},
]
"#,
        ready(&eu_1),
        ready(&eu_2),
        ready(&us_1),
        ready(&us_v6),
    );
    let server = PowerDns::start(&pdns, &pdnsutil, &dir, &config, dig).await;

    // Each region's subnet gets its region's nodes; no subnet, or one of no region, gets the
    // default region; a region without IPv6 nodes answers AAAA from the next region.
    let both_eu = [EU_1, EU_2];
    server.answers(Some(EU_CLIENT), "A", &both_eu).await;
    server.answers(Some(EU_V6_CLIENT), "A", &both_eu).await;
    server.answers(Some(US_CLIENT), "A", &[US_1]).await;
    server.answers(None, "A", &[US_1]).await;
    server.answers(Some(NOWHERE_CLIENT), "A", &[US_1]).await;
    server.answers(Some(EU_CLIENT), "AAAA", &[US_V6]).await;

    // A draining node (its /readyz says 503 while a slow request holds the drain open)
    // leaves the answers within the check interval.
    let holder = {
        let http = eu_1.http;
        tokio::spawn(async move {
            harness::try_send(
                http,
                Method::GET,
                "/slow",
                "example.test",
                &[],
                Bytes::new(),
            )
            .await
        })
    };
    eventually("the slow request reaches the origin", || async {
        origin.count("/slow") == 1
    })
    .await;
    let eu_1_admin = eu_1.admin;
    let draining = tokio::spawn(eu_1.stop());
    eventually("edge-eu-1 drains", || async {
        readyz(eu_1_admin).await == Some(StatusCode::SERVICE_UNAVAILABLE)
    })
    .await;
    let took = server.changes_to(EU_CLIENT, &[EU_2]).await;
    eprintln!("a draining node left the answers in {took:?}");

    // The region's last node stops: its clients get the next region.
    eu_2.stop().await;
    let took = server.changes_to(EU_CLIENT, &[US_1]).await;
    eprintln!("a region without a ready node fell over in {took:?}");
    server.answers(Some(US_CLIENT), "A", &[US_1]).await;

    // No ready node anywhere: every node of the chain rather than no answer.
    us_1.stop().await;
    server.changes_to(EU_CLIENT, &[EU_1, EU_2, US_1]).await;

    holder.abort();
    draining.abort();
    us_v6.stop().await;
    eprintln!("steering test took {:?}", started.elapsed());
}

/// The two-region example of docs/clustering.md is a valid file, and its zone steers as it
/// says.
#[test]
fn the_documented_example_writes_a_zone() {
    let page = include_str!("../../docs/clustering.md");
    let section = page
        .split("## Running several regions")
        .nth(1)
        .expect("the section of docs/clustering.md");
    let example = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a toml block in the section");
    let site = "[[site]]\nhosts = [\"example.com\"]\norigin = [\"http://127.0.0.1:8000\"]\n";
    let file = TempFile::new("documented-regions", &format!("{site}{example}"));
    let zone = outpost_dns_zone(file.path(), &[]);
    for line in [
        ";   eu-west (10.1.0.0/16, 2001:db8:1::/48) -> eu-west, us-east: edge-1 10.1.0.5, edge-2 10.1.0.6",
        ";   us-east (10.2.0.0/16) -> us-east, eu-west: edge-3 10.2.0.5",
        ";   any other client -> us-east",
        "@ 3600 IN NS ns1.example.net.",
        "www 30 IN LUA A \";include('_outpost') return steer(v4)\"",
    ] {
        assert!(zone.lines().any(|l| l == line), "{line:?} in:\n{zone}");
    }
}

/// `dns-zone` refuses a file without `[steering]`, and reports a bad one like `check` does.
#[test]
fn dns_zone_errors_name_the_file_and_key() {
    let site = "[[site]]\nhosts = [\"example.com\"]\norigin = [\"http://127.0.0.1:8000\"]\n";
    let plain = TempFile::new("no-steering", site);
    let (code, stdout, stderr) = run_to_end(&["dns-zone", "--config", &plain.shown()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("no [steering] table"), "{stderr}");

    let bad = TempFile::new(
        "bad-next",
        &format!(
            "{site}[steering]\nzone = \"cdn.example.com\"\n[[region]]\nname = \"eu\"\nnext = [\"us\"]\n\
             nodes = [{{ name = \"e1\", address = \"10.1.0.5\", ready = \"http://10.1.0.5:9090/readyz\" }}]\n"
        ),
    );
    let (code, _, stderr) = run_to_end(&["dns-zone", "--config", &bad.shown()]);
    assert_eq!(code, Some(1), "{stderr}");
    let want = format!(
        "{}:8:9: region[0].next[0]: \"us\" is not a region",
        bad.shown()
    );
    assert!(stderr.contains(&want), "{stderr}");
}

async fn readyz(admin: SocketAddr) -> Option<StatusCode> {
    harness::try_send(admin, Method::GET, "/readyz", "admin", &[], Bytes::new())
        .await
        .ok()
        .map(|r| r.status)
}

/// `pdns_server` on loopback, on a port free for UDP and TCP, killed on drop.
struct PowerDns {
    child: tokio::process::Child,
    port: u16,
    dig: PathBuf,
    log: PathBuf,
}

impl PowerDns {
    /// Writes the zone and the settings with the real `outpost dns-zone`, checks the zone
    /// with `pdnsutil check-zone`, and starts the server on the shipped `pdns.conf`.
    async fn start(
        pdns: &Path,
        pdnsutil: &Path,
        dir: &TempDir,
        config: &str,
        dig: PathBuf,
    ) -> Self {
        let toml = dir.write("outpost.toml", config);
        let zone = dir.write("zone", &outpost_dns_zone(&toml, &[]));
        let includes = dir.0.join("steering.d");
        std::fs::create_dir_all(&includes).expect("include dir");
        let settings = outpost_dns_zone(&toml, &["--pdns-settings"]);
        assert!(settings.contains(&format!("lua-health-checks-interval={INTERVAL}\n")));
        std::fs::write(includes.join("steering.conf"), settings).expect("settings");
        let named = dir.write(
            "named.conf",
            &format!(
                "zone \"{ZONE}\" {{ type master; file \"{}\"; }};\n",
                zone.display()
            ),
        );
        dir.write("pdns.conf", &shipped_pdns_conf(&named, &includes));

        let check = std::process::Command::new(pdnsutil)
            .arg(format!("--config-dir={}", dir.0.display()))
            .args(["check-zone", ZONE])
            .output()
            .expect("run pdnsutil");
        let said = String::from_utf8_lossy(&check.stdout).into_owned()
            + &String::from_utf8_lossy(&check.stderr);
        assert!(
            check.status.success() && said.contains("0 errors, 0 warnings"),
            "pdnsutil check-zone:\n{said}"
        );

        let port = crate::util::free_udp_and_tcp_port();
        let log = dir.0.join("pdns.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = tokio::process::Command::new(pdns)
            .arg(format!("--config-dir={}", dir.0.display()))
            .arg(format!("--socket-dir={}", dir.0.display()))
            .args(["--daemon=no", "--guardian=no", "--write-pid=no"])
            .args(["--disable-syslog", "--loglevel=6"])
            // Root here; stay root, so the temp files stay readable.
            .args(["--setuid=", "--setgid="])
            .args(["--local-address=127.0.0.1", &format!("--local-port={port}")])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .expect("start pdns_server");
        let server = Self {
            child,
            port,
            dig,
            log,
        };
        wait_until("pdns_server answers", Duration::from_secs(10), || async {
            !server.query(None, "SOA", ZONE).await.is_empty()
        })
        .await;
        server
    }

    /// The addresses `dig` gets for NAME, sorted.
    async fn query(&self, subnet: Option<&str>, rtype: &str, name: &str) -> Vec<String> {
        let mut command = tokio::process::Command::new(&self.dig);
        command
            .arg("@127.0.0.1")
            .args(["-p", &self.port.to_string()])
            .args(["+short", "+tries=1", "+time=1", "+norecurse"]);
        if let Some(subnet) = subnet {
            command.arg(format!("+subnet={subnet}"));
        }
        let output = command
            .args([name, rtype])
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run dig");
        let mut lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty() && !l.starts_with(';'))
            .collect();
        lines.sort();
        lines
    }

    /// Polls until NAME's `rtype` answer for `subnet` is exactly `want`; the first answers
    /// may hold every node, before PowerDNS has checked them.
    async fn answers(&self, subnet: Option<&str>, rtype: &str, want: &[&str]) {
        let mut want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
        want.sort();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.query(subnet, rtype, NAME).await;
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{rtype} for subnet {subnet:?}: still {got:?}, want {want:?}\npdns log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// [`Self::answers`] for an A query from `subnet` after a node changed state: it must
    /// take no more than the check interval plus the check timeout, and a little slack.
    async fn changes_to(&self, subnet: &str, want: &[&str]) -> Duration {
        let start = Instant::now();
        self.answers(Some(subnet), "A", want).await;
        let took = start.elapsed();
        let bound = Duration::from_secs(2 * INTERVAL + 2);
        assert!(took < bound, "{want:?} took {took:?}, more than {bound:?}");
        took
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PowerDns {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// `outpost dns-zone --config FILE [args]`'s standard output; panics when it fails.
fn outpost_dns_zone(config: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new(BIN)
        .arg("dns-zone")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run outpost dns-zone");
    assert!(
        output.status.success(),
        "outpost dns-zone: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 zone")
}

/// `deploy/powerdns/pdns.conf` with its two paths pointing into the test's directory (the
/// include directory is read while the file is parsed, so a command-line flag cannot move it).
fn shipped_pdns_conf(named: &Path, includes: &Path) -> String {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/powerdns/pdns.conf");
    let text = std::fs::read_to_string(shipped).expect("read deploy/powerdns/pdns.conf");
    let mut replaced = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| match line.split_once('=') {
            Some(("bind-config", _)) => {
                replaced += 1;
                format!("bind-config={}", named.display())
            }
            Some(("include-dir", _)) => {
                replaced += 1;
                format!("include-dir={}", includes.display())
            }
            _ => line.to_owned(),
        })
        .collect();
    assert_eq!(replaced, 2, "bind-config and include-dir in {shipped}");
    lines.join("\n") + "\n"
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("outpost-pdns-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
