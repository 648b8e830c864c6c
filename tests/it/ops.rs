//! The operator's commands against real nodes: `outpost log` (and `GET /log` with its
//! filters and its slow follower), `outpost purge` and `outpost cluster` with their exit
//! statuses, `outpost top` as plain lines and on a terminal (tmux), and every response
//! counted and logged, refusals of unknown hosts included.

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;
use crate::util::{self, Outpost, run_to_end};

/// One in-process node with its admin token `secret`.
async fn node(origin: &Origin) -> Node {
    Node::start(&site_config(&origin.url(), "")).await
}

/// `outpost <args>` to its end: (exit code, stdout, stderr).
fn outpost(args: &[&str]) -> (Option<i32>, String, String) {
    run_to_end(args)
}

/// Wait until `child`'s stdout holds `what`.
async fn printed(child: &Outpost, what: &str) -> String {
    let mut text = String::new();
    wait_until(
        &format!("{what:?} printed"),
        Duration::from_secs(20),
        || {
            text = child.stdout.text();
            let found = text.contains(what);
            async move { found }
        },
    )
    .await;
    child.stdout.text()
}

/// `outpost log --cache miss` prints the misses as JSON lines, and nothing else; a refusal
/// of an unknown host is a line too (status 421), and is counted under site "unknown".
#[tokio::test]
async fn outpost_log_follows_the_access_log_filtered() {
    let origin = Origin::fixed("hello", "max-age=60").await;
    let node = node(&origin).await;
    let admin = node.admin.to_string();
    let mut misses = Outpost::spawn(&[
        "log", "--admin", &admin, "--token", "secret", "--cache", "miss",
    ]);
    let mut refused = Outpost::spawn(&[
        "log", "--admin", &admin, "--token", "secret", "--status", "4xx",
    ]);
    // The followers are connected once a request's line reaches each of them: a new path
    // each time, so each is a miss.
    let warmups = std::sync::atomic::AtomicUsize::new(0);
    wait_until("followers connected", Duration::from_secs(20), || async {
        let n = warmups.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        get(&node, &format!("/warmup/{n}")).await;
        send(
            node.http,
            Method::GET,
            "/warmup",
            "early.test",
            &[],
            Bytes::new(),
        )
        .await;
        misses.stdout.text().contains("/warmup") && refused.stdout.text().contains("early.test")
    })
    .await;
    let unknown = r#"outpost_responses_total{site="unknown",class="4xx"}"#;
    let refused_before = node.metric(unknown).await;
    get(&node, "/a").await;
    get(&node, "/a").await;
    let wrong = send(
        node.http,
        Method::GET,
        "/x",
        "nobody.test",
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(wrong.status, 421);
    let text = printed(&misses, "\"path\":\"/a\"").await;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(lines.iter().all(|l| l["cache"] == "miss"), "{text}");
    assert_eq!(
        lines.iter().filter(|l| l["path"] == "/a").count(),
        1,
        "the hit is not a miss: {text}"
    );
    let text = printed(&refused, "nobody.test").await;
    let line: serde_json::Value =
        serde_json::from_str(text.lines().last().expect("a line")).expect("json");
    assert_eq!(
        (line["status"].as_u64(), line["site"].as_str()),
        (Some(421), Some("unknown"))
    );
    assert_eq!(node.metric(unknown).await, refused_before + 1.0);
    misses.sigkill();
    refused.sigkill();
}

/// A follower that reads too slowly loses lines: it is told how many, they are counted, and
/// requests are never held up by it.
#[tokio::test]
async fn a_slow_log_follower_loses_lines_and_never_slows_the_node() {
    let origin = Origin::fixed("hello", "max-age=60").await;
    let node = node(&origin).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small buffer");
    let mut stream = socket.connect(node.admin).await.expect("connect");
    stream
        .write_all(b"GET /log HTTP/1.1\r\nhost: admin\r\nauthorization: Bearer secret\r\n\r\n")
        .await
        .expect("ask");
    get(&node, "/first").await;
    let started = std::time::Instant::now();
    let node_ref = &node;
    let requests = futures_util::stream::iter(0..20_000)
        .map(|i| async move { get(node_ref, &format!("/many/{}", i % 50)).await.status })
        .buffer_unordered(16);
    let statuses: Vec<_> = futures_util::StreamExt::collect(requests).await;
    assert!(statuses.iter().all(|s| *s == 200));
    let took = started.elapsed();
    let mut read = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            read.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let text = String::from_utf8_lossy(&read);
    assert!(
        text.contains("{\"lost\": "),
        "no loss marked in {} bytes",
        read.len()
    );
    assert!(node.metric("outpost_log_follower_lost_total").await > 0.0);
    assert!(took < Duration::from_secs(60), "20,000 hits took {took:?}");
}

use futures_util::StreamExt as _;

/// A three-node cluster of real processes, and `outpost purge` / `outpost cluster` against
/// one of them: readable answers, exit status 0 while every node confirms, 1 once a node is
/// down (named), 2 when the admin API cannot be reached.
#[tokio::test]
async fn outpost_purge_and_cluster_say_what_each_node_did() {
    let origin = Origin::fixed("hello", "max-age=600").await;
    let mut nodes = crate::replicas::start_three(&origin, 1, "").await;
    let admin = nodes[0].admin.to_string();
    for n in &nodes {
        crate::replicas::get_from(n.http, "/p").await;
    }
    let (code, out, err) = outpost(&["cluster", "--admin", &admin]);
    assert_eq!(code, Some(0), "{out}{err}");
    for i in 0..3 {
        assert!(out.contains(&format!("node-{i}")), "{out}");
    }
    assert!(
        out.contains(" self ") && out.matches(" up ").count() == 2,
        "{out}"
    );
    let (code, out, err) = outpost(&[
        "purge",
        "--admin",
        &admin,
        "--token",
        "secret",
        "http://example.test/p",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("url  http://example.test/p  purged"), "{out}");
    assert_eq!(out.matches("  node  ").count(), 3, "{out}");
    nodes[2].process.sigkill();
    let (code, out, _) = outpost(&[
        "purge", "--admin", &admin, "--token", "secret", "--tag", "t1",
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("NOT CONFIRMED by: "), "{out}");
    // Once its probes fail, the killed node is down in the table too.
    let mut last = String::new();
    wait_until("node-2 seen down", Duration::from_secs(10), || {
        let (code, out, _) = outpost(&["cluster", "--admin", &admin]);
        last = out;
        async move { code == Some(1) }
    })
    .await;
    assert!(last.contains("DOWN"), "{last}");
    let (code, _, err) = outpost(&["cluster", "--admin", "127.0.0.1:1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("cannot reach the admin API at 127.0.0.1:1"),
        "{err}"
    );
    let (code, _, err) = outpost(&[
        "purge",
        "--admin",
        &admin,
        "--token",
        "wrong",
        "http://example.test/p",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("401"), "{err}");
    for n in &mut nodes {
        n.process.sigkill();
    }
}

/// `outpost top` printed to a pipe: one block of plain lines per interval, with the rates,
/// the hit ratio, the busiest URL of the interval and the errors by detail.
#[tokio::test]
async fn outpost_top_prints_plain_blocks_to_a_pipe() {
    let origin = Origin::fixed("hello", "max-age=60").await;
    let node = node(&origin).await;
    let admin = node.admin.to_string();
    let top = Outpost::spawn(&[
        "top",
        "--admin",
        &admin,
        "--token",
        "secret",
        "--interval",
        "1",
        "--count",
        "3",
    ]);
    let load = async {
        for _ in 0..25 {
            get(&node, "/busy").await;
            send(
                node.http,
                Method::GET,
                "/x",
                "nobody.test",
                &[],
                Bytes::new(),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    load.await;
    let mut top = top;
    top.wait_exit(Duration::from_secs(10)).await;
    let text = top.stdout.text();
    assert!(
        !text.contains('\x1b'),
        "no terminal codes in a pipe: {text:?}"
    );
    let blocks = text.matches("outpost top  ").count();
    assert_eq!(blocks, 3, "{text}");
    assert!(text.contains("requests/s "), "{text}");
    assert!(text.contains("hit ratio  "), "{text}");
    assert!(text.contains("example.test/busy"), "{text}");
    assert!(text.contains("421 unknown-host"), "{text}");
    assert!(text.contains("members    not in a cluster"), "{text}");
}

/// `outpost top` on a terminal (tmux, 100 columns), as a person sees it: the screen is
/// redrawn in place with the current figures.
#[tokio::test]
async fn outpost_top_draws_a_screen_on_a_terminal() {
    let Some(tmux) = util::tool("tmux") else {
        return;
    };
    let origin = Origin::fixed("hello", "max-age=60").await;
    let node = node(&origin).await;
    let session = format!("outpost-top-{}", std::process::id());
    let command = format!(
        "{} top --admin {} --token secret --interval 1",
        util::BIN,
        node.admin
    );
    let status = std::process::Command::new(&tmux)
        .args([
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "100",
            "-y",
            "30",
            &command,
        ])
        .status()
        .expect("tmux");
    assert!(status.success());
    let capture = || {
        let out = std::process::Command::new(&tmux)
            .args(["capture-pane", "-p", "-t", &session])
            .output()
            .expect("capture");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut screen = String::new();
    for _ in 0..100 {
        get(&node, "/seen-on-screen").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        screen = capture();
        if screen.contains("example.test/seen-on-screen") {
            break;
        }
    }
    let _ = std::process::Command::new(&tmux)
        .args(["kill-session", "-t", &session])
        .status();
    assert!(screen.contains("example.test/seen-on-screen"), "{screen}");
    assert!(
        screen.starts_with("outpost top  "),
        "redrawn from the top: {screen}"
    );
    assert_eq!(screen.matches("outpost top  ").count(), 1, "{screen}");
    assert!(screen.contains("hit ratio  "), "{screen}");
}
