//! The documentation holds together: every relative link of the README, `docs/`, the bench
//! and deploy READMEs leads to a file that exists, and every `#anchor` to a heading of the
//! page it names (as GitHub makes anchors from headings). Pages move and headings get
//! renamed; a broken link is found here rather than by a reader. The README stays short
//! (under 300 lines: the details live in `docs/`), and nothing points outside the
//! repository (the side-by-side harness is `bench/compare/`, not a sibling checkout).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The README's length, at most.
const README_MAX_LINES: usize = 300;
/// What a file inside the repository must not point at.
const OUTSIDE: [&str; 2] = ["../shared", "shared/bench"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir`, sorted; caches and run results (git-ignored) left out.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "__pycache__" && name != "results" {
                found.extend(files_under(&path));
            }
        } else {
            found.push(path);
        }
    }
    found
}

/// The pages whose links are checked.
fn pages() -> Vec<PathBuf> {
    let root = root();
    let mut pages = vec![
        root.join("README.md"),
        root.join("bench/README.md"),
        root.join("bench/compare/README.md"),
    ];
    pages.extend(
        files_under(&root.join("docs"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    pages.extend(
        files_under(&root.join("deploy"))
            .into_iter()
            .filter(|p| p.file_name().is_some_and(|n| n == "README.md")),
    );
    pages
}

/// `path` relative to the repository, for messages.
fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The lines of a markdown page outside fenced code blocks, numbered from 1.
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
        } else if !fenced {
            lines.push((i + 1, line));
        }
    }
    lines
}

/// `line` without its code spans (`` `...` ``), which hold no links.
fn without_code(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].len() - rest[start..].trim_start_matches('`').len();
        let after = &rest[start + ticks..];
        match after.find(&rest[start..start + ticks]) {
            Some(end) => rest = &after[end + ticks..],
            None => {
                out.push_str(&rest[start..]);
                return out;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The targets of the `[text](target)` links on a page, with their line numbers.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in prose(text) {
        let line = without_code(line);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            let target = after[..end].split_whitespace().next().unwrap_or("");
            found.push((number, target.trim_matches(['<', '>']).to_owned()));
            rest = &after[end..];
        }
    }
    found
}

/// GitHub's anchor for a heading: lower case, punctuation dropped (but `-` and `_`), each
/// space a `-`.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a page's headings; a repeated heading gets `-1`, `-2`, ... as on GitHub.
fn anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = Vec::new();
    for (_, line) in prose(text) {
        let hashes = line.len() - line.trim_start_matches('#').len();
        let Some(heading) = line[hashes..].strip_prefix(' ') else {
            continue;
        };
        if !(1..=6).contains(&hashes) {
            continue;
        }
        let base = slug(heading.trim().trim_end_matches('#').trim());
        let count = seen.entry(base.clone()).or_insert(0);
        anchors.push(match *count {
            0 => base.clone(),
            n => format!("{base}-{n}"),
        });
        *count += 1;
    }
    anchors
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_relative_link_and_anchor_leads_somewhere() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = read(&page);
        let dir = page.parent().expect("a page's directory");
        for (line, target) in links(&text) {
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                page.clone()
            } else {
                dir.join(path)
            };
            let at = format!("{}:{line}: ({target})", shown(&page));
            if !file.exists() {
                broken.push(format!("{at}: {} does not exist", shown(&file)));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if file.extension().is_none_or(|e| e != "md") {
                continue;
            }
            if !anchors(&read(&file)).iter().any(|a| a == anchor) {
                broken.push(format!(
                    "{at}: no heading of {} has the anchor #{anchor}",
                    shown(&file)
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "broken links:\n  {}",
        broken.join("\n  ")
    );
}

#[test]
fn the_readme_stays_short() {
    let lines = read(&root().join("README.md")).lines().count();
    assert!(
        lines < README_MAX_LINES,
        "README.md has {lines} lines, {README_MAX_LINES} at most: move the details to docs/"
    );
}

#[test]
fn nothing_points_outside_the_repository() {
    let root = root();
    let mut files = vec![root.join("README.md")];
    for dir in ["docs", "bench", "deploy", "config"] {
        files.extend(files_under(&root.join(dir)));
    }
    let mut found = Vec::new();
    for file in files {
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let text = String::from_utf8_lossy(&bytes);
        for (i, line) in text.lines().enumerate() {
            for outside in OUTSIDE.iter().filter(|o| line.contains(*o)) {
                found.push(format!(
                    "{}:{}: {outside}: {}",
                    shown(&file),
                    i + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "references outside the repository (the harness is bench/compare/):\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    assert_eq!(
        slug("h2 + TLS hits, misses and HTTP/3"),
        "h2--tls-hits-misses-and-http3"
    );
    assert_eq!(slug("`outpost top`"), "outpost-top");
    assert_eq!(
        anchors("# A\n```sh\n# not a heading\n```\n## A\n### Try it on loopback\n"),
        ["a", "a-1", "try-it-on-loopback"]
    );
    assert_eq!(
        links("[a](b.md#c) `[x](y)` [`d`](e/)\n```\n[f](g)\n```\n"),
        [(1, "b.md#c".to_owned()), (1, "e/".to_owned())]
    );
}
