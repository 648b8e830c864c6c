//! `outpost demo` keeps its promises: every command it prints is run, in order, through a
//! shell as a person would paste it, and must show what its comment says. A printed line
//! with no check here, or a check whose line is gone, fails the test, so the text and the
//! test move together. Comments that quote a `Cache-Status` (`(Cache-Status: a; hit; ...)`)
//! are checked literally: the fragments between `...` must appear in that order.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::harness::wait_until;
use crate::util::{self, Outpost};

/// What one printed command showed.
struct Shown {
    line: String,
    comment: String,
    out: String,
    code: Option<i32>,
}

impl Shown {
    /// The value of response header `name` in `curl -i` output.
    fn header(&self, name: &str) -> Option<String> {
        self.out.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    fn status(&self) -> Option<u16> {
        let first = self.out.lines().next()?;
        first.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    }

    fn body(&self) -> &str {
        self.out.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    fn fail(&self, why: &str) -> ! {
        panic!(
            "printed line did not do what it says: {why}\n  {}\noutput:\n{}",
            self.line, self.out
        )
    }
}

/// A check for the lines whose comment contains `claim`.
type Check = (&'static str, Box<dyn Fn(&Shown)>);

/// A free block of loopback ports for a demo (below the ephemeral range, so no test's
/// client socket takes one meanwhile).
fn free_base(offsets: &[u16]) -> u16 {
    let start = 20000 + (std::process::id() % 500) as u16 * 20;
    (0..200)
        .map(|i| 20000 + (start - 20000 + i * 47) % 11000)
        .find(|base| {
            offsets
                .iter()
                .all(|o| std::net::TcpListener::bind(("127.0.0.1", base + o)).is_ok())
        })
        .expect("a free block of ports for the demo")
}

/// Run `sh -c line` to its end, or for `within` when it runs until stopped (a live view),
/// then stop its whole process group.
async fn run_line(line: &str, within: Duration) -> (String, Option<i32>) {
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", line])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("run sh");
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().expect("stdout");
    let sink = out.clone();
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 8192];
        while let Ok(n) = stdout.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink.lock().expect("output").extend_from_slice(&buf[..n]);
        }
    });
    let code = match tokio::time::timeout(within, child.wait()).await {
        Ok(status) => status.expect("wait").code(),
        Err(_) => {
            let group = child.id().expect("pid");
            let _ = std::process::Command::new("kill")
                .args(["-s", "INT", "--", &format!("-{group}")])
                .status();
            let _ = child.wait().await;
            None
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
    let out = String::from_utf8_lossy(&out.lock().expect("output")).into_owned();
    (out, code)
}

/// The `Cache-Status` a comment quotes, `...` as a wildcard: each fragment in order.
fn check_quoted_cache_status(shown: &Shown) {
    let Some((_, rest)) = shown.comment.split_once("(Cache-Status: ") else {
        return;
    };
    let quoted = rest.split(')').next().unwrap_or_default();
    let actual = shown
        .header("cache-status")
        .unwrap_or_else(|| shown.fail("no Cache-Status"));
    let mut at = 0;
    for fragment in quoted.split("...").filter(|f| !f.is_empty()) {
        match actual[at..].find(fragment) {
            Some(i) => at += i + fragment.len(),
            None => shown.fail(&format!(
                "Cache-Status {actual:?} does not show {quoted:?} (at {fragment:?})"
            )),
        }
    }
}

/// `outpost demo <args> --base-port B` on a free block, once it has printed what to try.
/// Another program may take a port between the check and the bind: the demo then names it
/// and exits, and another block is tried.
async fn start_demo(args: &[&str], offsets: &[u16]) -> Outpost {
    for _ in 0..5 {
        let base = free_base(offsets).to_string();
        let mut all = args.to_vec();
        all.extend(["--base-port", &base]);
        let mut demo = Outpost::spawn(&all);
        let mut exited = false;
        wait_until("the printed instructions", Duration::from_secs(30), || {
            exited = demo.try_exit().is_some();
            let done = exited || demo.stdout.text().contains("Ctrl-C stops it.");
            async move { done }
        })
        .await;
        if !exited {
            return demo;
        }
        let stderr = demo.stderr.text();
        assert!(
            stderr.contains("another program holds"),
            "the demo failed: {stderr}"
        );
    }
    panic!("no free block of ports for the demo in 5 tries");
}

/// Start `outpost demo <args> --base-port B`, run every printed command with the check
/// whose claim its comment holds, then stop the demo with Ctrl-C (SIGINT): exit 0, and no
/// warnings on the way out.
async fn run_demo(args: &[&str], offsets: &[u16], checks: Vec<Check>) {
    if util::tool("curl").is_none() {
        return;
    }
    let mut demo = start_demo(args, offsets).await;
    demo.assert_running();
    let printed = demo.stdout.text();
    let lines: Vec<&str> = printed
        .lines()
        .skip_while(|l| *l != "Try:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert!(lines.len() >= 5, "{printed}");
    let mut used = vec![0; checks.len()];
    for line in lines {
        let comment = line
            .split_once("   # ")
            .map(|(_, c)| c.to_owned())
            .unwrap_or_else(|| panic!("a printed command without a comment: {line}"));
        let matching: Vec<usize> = (0..checks.len())
            .filter(|&i| comment.contains(checks[i].0))
            .collect();
        let [i] = matching[..] else {
            panic!("no single check for this printed line ({matching:?}): {line}");
        };
        used[i] += 1;
        let within = if comment.contains("Ctrl-C ends it") {
            Duration::from_secs(3)
        } else {
            Duration::from_secs(20)
        };
        let (out, code) = run_line(line.trim(), within).await;
        let shown = Shown {
            line: line.to_owned(),
            comment,
            out,
            code,
        };
        check_quoted_cache_status(&shown);
        (checks[i].1)(&shown);
    }
    for (i, n) in used.iter().enumerate() {
        assert!(
            *n > 0,
            "no printed line claims {:?}:\n{printed}",
            checks[i].0
        );
    }
    demo.signal("INT");
    let status = demo.wait_exit(Duration::from_secs(20)).await;
    let stderr = demo.stderr.text();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(
        !stderr.contains("WARN") && !stderr.contains("ERROR"),
        "Ctrl-C ended the demo with warnings:\n{stderr}"
    );
}

fn check(claim: &'static str, f: impl Fn(&Shown) + 'static) -> Check {
    (claim, Box::new(f))
}

fn ok_hello(s: &Shown) {
    if s.status() != Some(200) || s.body() != "hello from the demo origin\n" {
        s.fail("not the origin's 200");
    }
}

#[tokio::test]
async fn every_line_the_demo_prints_does_what_it_says() {
    let owner_name = Arc::new(Mutex::new(String::new()));
    let name = owner_name.clone();
    let checks = vec![
        check("a miss: ", ok_hello),
        check("one hop", ok_hello),
        check("a hit, with Age", move |s| {
            ok_hello(s);
            let cache_status = s.header("cache-status").unwrap_or_default();
            // One cache only: the owner's own hit.
            if !cache_status.contains("; hit") || cache_status.contains(',') {
                s.fail("not the owner's own hit");
            }
            if s.header("age")
                .and_then(|a| a.parse::<u64>().ok())
                .is_none()
            {
                s.fail("no Age");
            }
            *name.lock().expect("owner") = cache_status
                .split(';')
                .next()
                .unwrap_or_default()
                .to_owned();
        }),
        check("which node owns it", move |s| {
            let json: serde_json::Value =
                serde_json::from_str(&s.out).unwrap_or_else(|_| s.fail("not JSON"));
            if json["owner"] != *owner_name.lock().expect("owner") {
                s.fail("another owner than the one that hit");
            }
        }),
        check("members, health, ring shares", |s| {
            let rows = ["demo-1", "demo-2", "demo-3"]
                .iter()
                .filter(|n| {
                    s.out
                        .lines()
                        .any(|l| l.starts_with(*n) && l.contains("33.3%"))
                })
                .count();
            if s.code != Some(0) || rows != 3 || !s.out.contains(" self ") {
                s.fail("not three members with a third of the ring each");
            }
        }),
        check("206 Partial Content", |s| {
            if s.status() != Some(206)
                || s.body() != "hello"
                || s.header("content-range").as_deref() != Some("bytes 0-4/27")
            {
                s.fail("not the first 5 bytes");
            }
        }),
        check("not stored", |s| {
            if s.status() != Some(200) {
                s.fail("not a 200");
            }
        }),
        check("one origin fetch", |s| {
            let lines: Vec<&str> = s.out.lines().collect();
            let collapsed = lines.iter().filter(|l| l.contains("collapsed")).count();
            let stored = lines.iter().filter(|l| l.contains("; stored")).count();
            if lines.len() != 5 || !lines.iter().all(|l| l.starts_with("200 ")) {
                s.fail("not 5 answers of 200");
            }
            if collapsed != 4 || stored != 5 {
                s.fail("not one fetch, stored once, that 4 clients waited on");
            }
        }),
        check("purged on all 3 nodes", |s| {
            let confirmed = s.out.lines().filter(|l| l.contains("  ok, ")).count();
            if s.code != Some(0) || confirmed != 3 || !s.out.contains(": 1 entry") {
                s.fail("not one entry purged, confirmed by 3 nodes");
            }
        }),
        check("a miss again after the purge", |s| {
            ok_hello(s);
            let cache_status = s.header("cache-status").unwrap_or_default();
            if !cache_status.contains("fwd=uri-miss; fwd-status=200; stored") {
                s.fail("not fetched again");
            }
        }),
        check("requests by cache result", |s| {
            let lines: Vec<&str> = s.out.lines().collect();
            // The node asked holds nothing: its requests went to the owner, none failed.
            let peer = r#"outpost_requests_total{site="demo",cache="peer"}"#;
            let hops = r#"outpost_peer_requests_total{peer="#;
            if !lines.iter().any(|l| l.starts_with(peer))
                || !lines.iter().any(|l| l.starts_with(hops))
                || lines
                    .iter()
                    .any(|l| l.ends_with(" 0") || l.contains("error"))
            {
                s.fail("not the non-zero counters: requests through the owner, no errors");
            }
        }),
        check("a live view", |s| {
            if !s.out.contains("outpost top") || !s.out.contains("requests/s") {
                s.fail("no view drawn");
            }
        }),
    ];
    // demo-1, origin, demo-2, demo-3 and their admin listeners.
    run_demo(&["demo"], &[0, 1, 2, 3, 1010, 1011, 1012], checks).await;
}

#[tokio::test]
async fn every_line_the_regions_demo_prints_does_what_it_says() {
    let checks = vec![
        check("eu-west fills from the shield", ok_hello),
        check("us-east fills from the shield", ok_hello),
        check("a hit in us-east itself", |s| {
            ok_hello(s);
            let cache_status = s.header("cache-status").unwrap_or_default();
            if !cache_status.starts_with("east-")
                || !cache_status.contains("; hit")
                || cache_status.contains("shield")
            {
                s.fail("not a hit in us-east alone");
            }
        }),
        check("region, members, shields", |s| {
            let json: serde_json::Value =
                serde_json::from_str(&s.out).unwrap_or_else(|_| s.fail("not JSON"));
            if json["region"] != "us-east" || json["shields"]["demo"][0]["name"] != "shield-1" {
                s.fail("not us-east with shield-1");
            }
        }),
        check("requests to the shield", |s| {
            if !s.out.contains("outpost_shield_requests_total")
                || !s.out.contains(r#"region="us-east""#)
            {
                s.fail("no shield counter or region");
            }
        }),
    ];
    run_demo(
        &["demo", "--regions"],
        &[0, 1, 2, 3, 4, 5, 1000, 1002, 1003, 1004, 1005],
        checks,
    )
    .await;
}
