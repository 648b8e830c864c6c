//! `cache.persist`: the real binary writes its cache on SIGTERM and a new process on the same
//! configuration serves it at once, with the right `Age` and no origin fetch; a damaged or
//! foreign snapshot costs entries (each verified alone), never a wrong or partial body.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::Method;

use crate::cli::node_file;
use crate::harness::*;
use crate::util::{self, Outpost, TempFile, wait_answering};

/// A directory under the system temp dir, removed on drop.
struct Dir(util::TempDir);

impl Dir {
    fn new(name: &str) -> Self {
        Self(util::TempDir::new(&format!("persist-{name}")))
    }

    fn snapshot(&self) -> PathBuf {
        self.0.0.join("cache.snapshot")
    }
}

impl std::ops::Deref for Dir {
    type Target = PathBuf;

    fn deref(&self) -> &PathBuf {
        &self.0.0
    }
}

/// An origin whose objects say they are already 100 s old (`Age: 100`), fresh for 600 s.
async fn aged_origin() -> Origin {
    Origin::start(|seen, _| {
        Reply::ok(format!("body of {}", seen.path))
            .cache("max-age=600")
            .header("age", "100")
    })
    .await
}

fn persisting(origin: &Origin, dir: &Path) -> (TempFile, SocketAddr, SocketAddr) {
    node_file(
        &origin.url(),
        &format!("[cache]\npersist = \"{}\"", dir.display()),
    )
}

async fn get(http: SocketAddr, path: &str) -> Resp {
    send(http, Method::GET, path, "example.test", &[], Bytes::new()).await
}

async fn start(file: &TempFile, admin: SocketAddr) -> Outpost {
    let mut node = Outpost::spawn(&["run", "--config", &file.shown()]);
    wait_answering(&mut node, admin, "/readyz", "admin").await;
    node
}

async fn stop(mut node: Outpost) -> String {
    node.sigterm();
    let status = node.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "stderr: {}", node.stderr.text());
    node.stderr.text() + &node.stdout.text()
}

async fn metric(admin: SocketAddr, sample: &str) -> f64 {
    let text = util::admin_get(admin, "/metrics", &[]).await.text();
    util::sample(&text, sample).unwrap_or(0.0)
}

const LOADED: &str = r#"outpost_cache_snapshot_entries_total{op="load",result="loaded"}"#;

/// Three objects cached, two of them hit: SIGTERM writes them, and the next process serves
/// all three as hits (`Age` counting from the origin's 100 s), the origin asked nothing more.
#[tokio::test]
async fn a_restarted_node_serves_its_cache_from_the_snapshot_with_the_right_age() {
    let origin = aged_origin().await;
    let dir = Dir::new("restart");
    let (file, http, admin) = persisting(&origin, &dir);
    let node = start(&file, admin).await;
    for path in ["/a", "/b", "/c", "/a", "/b"] {
        assert_eq!(get(http, path).await.text(), format!("body of {path}"));
    }
    assert_eq!(origin.total(), 3);
    let said = stop(node).await;
    assert!(said.contains("cache snapshot written"), "{said}");
    assert!(dir.snapshot().is_file());

    let node = start(&file, admin).await;
    assert_eq!(metric(admin, LOADED).await, 3.0);
    for path in ["/a", "/b", "/c"] {
        let r = get(http, path).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("body of {path}"));
        assert!(
            r.cache_status().starts_with("edge-bin; hit"),
            "{path}: {}",
            r.cache_status()
        );
        let age: u64 = r.header("age").parse().expect("Age");
        assert!((100..200).contains(&age), "{path}: Age {age}");
    }
    assert_eq!(origin.total(), 3, "no origin fetch after the restart");
    stop(node).await;
}

/// A snapshot that is not one starts the node empty, says so in the log and the metric, and
/// every request goes to the origin as on a first start.
#[tokio::test]
async fn a_corrupt_snapshot_starts_an_empty_cache_and_says_so() {
    let origin = aged_origin().await;
    let dir = Dir::new("corrupt");
    std::fs::create_dir_all(dir.as_path()).expect("dir");
    std::fs::write(dir.snapshot(), b"not a snapshot at all").expect("junk");
    let (file, http, admin) = persisting(&origin, &dir);
    let node = start(&file, admin).await;
    let skipped = r#"outpost_cache_snapshots_skipped_total{reason="corrupt"}"#;
    assert_eq!(metric(admin, skipped).await, 1.0);
    assert_eq!(metric(admin, LOADED).await, 0.0);
    let r = get(http, "/a").await;
    assert_eq!(r.text(), "body of /a");
    assert!(
        r.cache_status().contains("fwd=uri-miss"),
        "{}",
        r.cache_status()
    );
    assert_eq!(origin.total(), 1);
    let said = stop(node).await;
    assert!(
        said.contains("cache snapshot not used") && said.contains("not an Outpost cache snapshot"),
        "{said}"
    );
}

/// One byte of one stored body changed on disk: that object alone is fetched again (its
/// record fails its digest), the others are hits, and no client sees the changed byte.
#[tokio::test]
async fn a_damaged_entry_is_fetched_again_and_the_others_are_hits() {
    let origin = aged_origin().await;
    let dir = Dir::new("damaged");
    let (file, http, admin) = persisting(&origin, &dir);
    let node = start(&file, admin).await;
    for path in ["/one", "/two", "/three"] {
        get(http, path).await;
    }
    stop(node).await;
    let mut bytes = std::fs::read(dir.snapshot()).expect("snapshot");
    let at = bytes
        .windows(11)
        .position(|w| w == b"body of /tw")
        .expect("the body of /two is in the snapshot");
    bytes[at + 9] = b'T';
    std::fs::write(dir.snapshot(), &bytes).expect("write");

    let node = start(&file, admin).await;
    assert_eq!(metric(admin, LOADED).await, 2.0);
    let corrupt = r#"outpost_cache_snapshot_entries_total{op="load",result="corrupt"}"#;
    assert_eq!(metric(admin, corrupt).await, 1.0);
    for path in ["/one", "/two", "/three"] {
        assert_eq!(get(http, path).await.text(), format!("body of {path}"));
    }
    assert_eq!(
        origin.count("/two"),
        2,
        "the damaged object is fetched again"
    );
    assert_eq!(origin.total(), 4, "the others are hits");
    stop(node).await;
}

/// A snapshot written for another configuration (here the site's hosts changed) is skipped
/// whole: its keys may name other objects now.
#[tokio::test]
async fn a_snapshot_of_another_configuration_is_skipped_whole() {
    let origin = aged_origin().await;
    let dir = Dir::new("config");
    let (file, http, admin) = persisting(&origin, &dir);
    let node = start(&file, admin).await;
    get(http, "/a").await;
    stop(node).await;

    let text = std::fs::read_to_string(file.path()).expect("config");
    let changed = TempFile::new(
        "node",
        &text.replace(
            r#"hosts = ["example.test"]"#,
            r#"hosts = ["example.test", "other.test"]"#,
        ),
    );
    let node = start(&changed, admin).await;
    let skipped = r#"outpost_cache_snapshots_skipped_total{reason="config"}"#;
    assert_eq!(metric(admin, skipped).await, 1.0);
    get(http, "/a").await;
    assert_eq!(origin.total(), 2);
    stop(node).await;
}

/// A persist directory that cannot be created stops the start with the key and the reason.
#[tokio::test]
async fn a_persist_directory_that_cannot_be_made_is_a_start_error() {
    let origin = aged_origin().await;
    let (file, _, _) = persisting(&origin, Path::new("/proc/outpost-cannot-be-here"));
    let mut node = Outpost::spawn(&["run", "--config", &file.shown()]);
    let status = node.wait_exit(Duration::from_secs(10)).await;
    assert_ne!(status.code(), Some(0));
    let said = node.stderr.text();
    assert!(
        said.contains("cache.persist: cannot keep a snapshot in /proc/outpost-cannot-be-here"),
        "{said}"
    );
}
