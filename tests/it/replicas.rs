//! `[cluster] replicas`: each object is held by the first `replicas` nodes of its preference
//! order, the owner writing every fill through to the others, so a node that dies (SIGKILL,
//! real processes) takes none of the cache with it; and a planned leave (SIGTERM), whose keys
//! their next holders ask the draining node for while it still serves.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use http::Method;

use crate::harness::*;
use crate::util::{self, Outpost, TempFile, free_port, wait_answering};

const SECRET: &str = "replicas-test-cluster-secret";

pub(crate) struct Member {
    pub(crate) http: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) process: Outpost,
    file: TempFile,
}

impl Member {
    /// Start the node again on the same configuration (after it was killed or stopped).
    pub(crate) async fn restart(&mut self) {
        self.process = Outpost::spawn(&["run", "--config", &self.file.shown()]);
        wait_answering(&mut self.process, self.admin, "/healthz", "admin").await;
    }

    /// Whether it says it is ready.
    pub(crate) async fn ready(&self) -> bool {
        util::admin_get(self.admin, "/readyz", &[]).await.status == 200
    }
}

/// How a cluster of real processes is started.
pub(crate) struct Launch<'a> {
    pub(crate) nodes: usize,
    /// More `[cluster]` keys (`replicas = 2`, ...).
    pub(crate) cluster: &'a str,
    /// More top-level tables for node `i` (before the site).
    pub(crate) extra: &'a dyn Fn(usize) -> String,
    pub(crate) probe_interval: &'a str,
    /// Start each node once the one before says it is ready (a rolling start) and return
    /// when the last is ready, rather than start all at once and wait until every node sees
    /// every other alive.
    pub(crate) one_by_one: bool,
}

/// Three real `outpost` processes in one cluster in front of `origin`; `extra` are more
/// top-level tables (before the site).
pub(crate) async fn start_three(origin: &Origin, replicas: usize, extra: &str) -> Vec<Member> {
    let cluster = format!("replicas = {replicas}");
    let extra = |_| extra.to_owned();
    start_members(
        origin,
        &Launch {
            nodes: 3,
            cluster: &cluster,
            extra: &extra,
            probe_interval: "100ms",
            one_by_one: false,
        },
    )
    .await
}

/// Real `outpost` processes in one cluster in front of `origin`, every one alive in every
/// other's view when this returns.
pub(crate) async fn start_members(origin: &Origin, launch: &Launch<'_>) -> Vec<Member> {
    let n = launch.nodes;
    let addr = || -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().expect("addr") };
    let https: Vec<SocketAddr> = (0..n).map(|_| addr()).collect();
    let admins: Vec<SocketAddr> = (0..n).map(|_| addr()).collect();
    let peers: Vec<String> = https.iter().map(|a| format!("\"{a}\"")).collect();
    let mut members: Vec<Member> = Vec::new();
    for i in 0..n {
        let text = format!(
            r#"
[node]
name = "node-{i}"
[listen]
http = ["{http}"]
[admin]
listen = "{admin}"
token = "secret"
[cluster]
advertise = "{http}"
peers = [{peers}]
secret = "{SECRET}"
probe_interval = "{probe}"
replicate = "none"
{cluster}
{extra}
[[site]]
hosts = ["example.test"]
origin = ["{origin}"]
"#,
            http = https[i],
            admin = admins[i],
            peers = peers.join(", "),
            probe = launch.probe_interval,
            cluster = launch.cluster,
            extra = (launch.extra)(i),
            origin = origin.url(),
        );
        let file = TempFile::new("replicas", &text);
        let mut process = Outpost::spawn(&["run", "--config", &file.shown()]);
        if launch.one_by_one {
            wait_answering(&mut process, admins[i], "/healthz", "admin").await;
            let admin = admins[i];
            wait_until("ready", Duration::from_secs(20), || async move {
                util::admin_get(admin, "/readyz", &[]).await.status == 200
            })
            .await;
        }
        members.push(Member {
            http: https[i],
            admin: admins[i],
            process,
            file,
        });
    }
    if launch.one_by_one {
        // Each said it was ready, which is all a load balancer waits for.
        return members;
    }
    for m in &mut members {
        wait_answering(&mut m.process, m.admin, "/healthz", "admin").await;
        let admin = m.admin;
        wait_until("every peer alive", Duration::from_secs(20), || async move {
            let r = util::admin_get(admin, "/cluster", &[]).await;
            let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let members = json["members"].as_array().cloned().unwrap_or_default();
            members.len() == n && members.iter().all(|m| m["alive"] == true)
        })
        .await;
    }
    members
}

pub(crate) async fn get_from(http: SocketAddr, path: &str) -> Resp {
    send(http, Method::GET, path, "example.test", &[], Bytes::new()).await
}

pub(crate) async fn metric(admin: SocketAddr, sample: &str) -> f64 {
    let text = util::admin_get(admin, "/metrics", &[]).await.text();
    util::sample(&text, sample).unwrap_or(0.0)
}

const OBJECTS: usize = 300;

/// 300 objects cached through three nodes, then one node SIGKILLed and every object asked
/// again, all at once, through the two left: with `replicas = 2` each object's other holder
/// serves it from its copy (0 origin fetches, 0 failures); with one replica the dead
/// node's third goes back to the origin, which shows the test can fail.
#[tokio::test]
async fn with_two_replicas_a_killed_node_costs_the_origin_nothing() {
    for (replicas, refetched_at_most) in [(2, 0), (1, usize::MAX)] {
        let origin = Origin::start(|seen, _| {
            Reply::ok(format!("body of {}", seen.path)).cache("max-age=600")
        })
        .await;
        let mut nodes = start_three(&origin, replicas, "").await;
        for i in 0..OBJECTS {
            let r = get_from(nodes[i % 3].http, &format!("/r/{i}")).await;
            assert_eq!(r.status, 200);
        }
        assert_eq!(origin.total(), OBJECTS);
        if replicas == 2 {
            // Every stored object was pushed to its other holder.
            let writes = r#"outpost_replica_pushes_total{result="stored"}"#;
            wait_until("pushes done", Duration::from_secs(20), || {
                let admins: Vec<SocketAddr> = nodes.iter().map(|n| n.admin).collect();
                async move {
                    let mut sum = 0.0;
                    for admin in admins {
                        sum += metric(admin, writes).await;
                    }
                    sum >= OBJECTS as f64
                }
            })
            .await;
            for n in &nodes {
                let replica = metric(n.admin, r#"outpost_cache_role_bytes{role="replica"}"#).await;
                let owner = metric(n.admin, r#"outpost_cache_role_bytes{role="owner"}"#).await;
                assert!(
                    replica > 0.0 && owner > 0.0,
                    "owner {owner} replica {replica}"
                );
            }
        }
        nodes[2].process.sigkill();
        let answers = join_all((0..OBJECTS).map(|i| {
            let http = nodes[i % 2].http;
            async move { (i, get_from(http, &format!("/r/{i}")).await) }
        }))
        .await;
        for (i, r) in &answers {
            assert_eq!(r.status, 200, "/r/{i}: {}", r.cache_status());
            assert_eq!(r.text(), format!("body of /r/{i}"));
        }
        let refetched = origin.total() - OBJECTS;
        if refetched_at_most == usize::MAX {
            assert!(
                refetched > 50,
                "replicas = 1: only {refetched} fetched again"
            );
        } else {
            assert!(
                refetched <= refetched_at_most,
                "replicas = {replicas}: {refetched} of {OBJECTS} fetched again"
            );
        }
        for n in &mut nodes {
            n.process.sigkill();
        }
    }
}

/// Whether every node in `admins` sees the member at `http` as leaving (draining).
async fn all_see_leaving(admins: Vec<SocketAddr>, http: SocketAddr) -> bool {
    for admin in admins {
        let r = util::admin_get(admin, "/cluster", &[]).await;
        let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        let members = json["members"].as_array().cloned().unwrap_or_default();
        let leaving = members
            .iter()
            .any(|m| m["address"] == http.to_string() && m["leaving"] == true);
        if !leaving {
            return false;
        }
    }
    true
}

/// A planned leave (SIGTERM), with one replica: for `leave_notice` the draining node keeps
/// serving while its probes say it is leaving, so its keys go to their next holders, which
/// ask it for them (a hand-off) before the origin. Its third of 300 cached objects reaches
/// the origin at most 3 times; with `leave_notice = "0s"` it is fetched again, which shows
/// the test can fail.
#[tokio::test]
async fn a_draining_node_hands_its_keys_to_their_next_holders() {
    for notice in ["10s", "0s"] {
        let origin = Origin::start(|seen, _| {
            Reply::ok(format!("body of {}", seen.path)).cache("max-age=600")
        })
        .await;
        let extra = format!("leave_notice = \"{notice}\"");
        let mut nodes = start_three(&origin, 1, &extra).await;
        for i in 0..OBJECTS {
            let r = get_from(nodes[i % 3].http, &format!("/l/{i}")).await;
            assert_eq!(r.status, 200);
        }
        assert_eq!(origin.total(), OBJECTS);
        nodes[2].process.sigterm();
        if notice == "0s" {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while nodes[2].process.try_exit().is_none() {
                assert!(std::time::Instant::now() < deadline, "node-2 never exited");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        } else {
            let admins = vec![nodes[0].admin, nodes[1].admin];
            let leaving = nodes[2].http;
            wait_until("node-2 seen leaving", Duration::from_secs(5), || {
                all_see_leaving(admins.clone(), leaving)
            })
            .await;
        }
        let answers = join_all((0..OBJECTS).map(|i| {
            let http = nodes[i % 2].http;
            async move { (i, get_from(http, &format!("/l/{i}")).await) }
        }))
        .await;
        for (i, r) in &answers {
            assert_eq!(r.status, 200, "/l/{i}: {}", r.cache_status());
            assert_eq!(r.text(), format!("body of /l/{i}"));
        }
        let refetched = origin.total() - OBJECTS;
        if notice == "0s" {
            assert!(refetched > 50, "no notice: only {refetched} fetched again");
        } else {
            assert!(
                refetched <= 3,
                "leave_notice {notice}: {refetched} of {OBJECTS} fetched again"
            );
            let hits = metric(
                nodes[0].admin,
                r#"outpost_handoff_requests_total{result="hit"}"#,
            )
            .await
                + metric(
                    nodes[1].admin,
                    r#"outpost_handoff_requests_total{result="hit"}"#,
                )
                .await;
            assert!(hits > 50.0, "only {hits} hand-off hits");
        }
        for n in &mut nodes {
            n.process.sigkill();
        }
    }
}
