//! Entry points for the coverage-guided fuzz targets in `fuzz/`: one function per target, each
//! taking the fuzzer's bytes, feeding them to the parser it is named after and asserting the
//! properties that are cheap to check. A failed assertion or a panic is a finding.
//!
//! Not part of the API: compiled with the `fuzzing` feature (for `fuzz/`) and in tests, where
//! [`tests`] replays the committed seeds and every input kept under `fuzz/regressions/`, so a
//! fixed crash stays fixed without a fuzzer.
//!
//! | target | input | reaches |
//! |---|---|---|
//! | `cache_control` | header block | `Cache-Control`, `CDN-Cache-Control`, `Surrogate-Control`, `Pragma`; the site policy |
//! | `range` | 10 bytes of lengths, `Range` value, spans | `parse_range`, `multipart_byteranges` |
//! | `vary_key` | rules byte, response head, request head, authority and target | `Vary`, secondary keys, key rules, `split_authority`, `cache_key` |
//! | `http_date` | a date value, then a header block | `http_date`, freshness lifetime, ages, `If-Modified-Since` |
//! | `hop` | flags, secret, sender, target, a hop value, a flip | signing and verifying `Outpost-Hop`, body MACs |
//! | `purge` | a purge request body | `PurgeRequest`, purge URL keys, `Location` invalidation |
//! | `config` | a TOML file | `Config::parse` (syntax, types, validation, error positions) |
//!
//! A header block is `name: value` lines; a line whose text before the first `:` is not a
//! field name is a whole value of the target's main field. Sections are split by a blank line.

mod cache_control;
mod config;
mod hop;
mod http_date;
mod purge;
mod range;
mod vary_key;

use http::{HeaderMap, HeaderName, HeaderValue};

pub use cache_control::cache_control;
pub use config::config;
pub use hop::hop;
pub use http_date::http_date;
pub use purge::purge;
pub use range::range;
pub use vary_key::vary_key;

/// What a fuzz target calls with the fuzzer's bytes.
pub type Target = fn(&[u8]);

/// Every target by the name of its `fuzz/fuzz_targets/` file.
pub const TARGETS: &[(&str, Target)] = &[
    ("cache_control", cache_control),
    ("config", config),
    ("hop", hop),
    ("http_date", http_date),
    ("purge", purge),
    ("range", range),
    ("vary_key", vary_key),
];

/// The lines of a header block (see the module doc), appended in order.
fn header_block(data: &[u8], main: &HeaderName) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let named = line.iter().position(|&b| b == b':').and_then(|colon| {
            let name = HeaderName::from_bytes(&line[..colon]).ok()?;
            Some((name, trim(&line[colon + 1..])))
        });
        let (name, value) = named.unwrap_or_else(|| (main.clone(), line));
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    headers
}

/// Up to `N` sections split by a blank line (`\n\n`); the last one takes the rest.
fn sections<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut out = [&data[..0]; N];
    let mut rest = data;
    for (i, slot) in out.iter_mut().enumerate() {
        if i + 1 == N {
            *slot = rest;
            break;
        }
        match rest.windows(2).position(|w| w == b"\n\n") {
            Some(at) => {
                *slot = &rest[..at];
                rest = &rest[at + 2..];
            }
            None => {
                *slot = rest;
                rest = &rest[rest.len()..];
            }
        }
    }
    out
}

fn trim(s: &[u8]) -> &[u8] {
    crate::cache::control::trim_ows(s)
}

#[cfg(test)]
mod tests {
    //! Replays what the fuzzer is started from and what it found, on every `cargo test`.

    use std::path::{Path, PathBuf};

    use super::*;

    fn fuzz_dir(sub: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(sub)
    }

    /// The files of `dir/<target>/`, sorted; none when the directory is absent.
    fn inputs(dir: &Path, target: &str) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(dir.join(target)) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        files
    }

    fn replay(sub: &str) -> usize {
        let dir = fuzz_dir(sub);
        let mut replayed = 0;
        for (target, run) in TARGETS {
            for path in inputs(&dir, target) {
                let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
                eprintln!("{sub}: {}", path.display());
                run(&data);
                replayed += 1;
            }
        }
        replayed
    }

    /// A directory for a target that does not exist would be skipped without a word.
    fn only_target_dirs(sub: &str) {
        let Ok(entries) = std::fs::read_dir(fuzz_dir(sub)) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                TARGETS.iter().any(|(t, _)| *t == name),
                "fuzz/{sub}/{name} names no target"
            );
        }
    }

    #[test]
    fn fuzz_regressions_replay() {
        only_target_dirs("regressions");
        replay("regressions");
    }

    #[test]
    fn fuzz_seeds_replay() {
        only_target_dirs("seeds");
        assert!(replay("seeds") >= TARGETS.len(), "every target has seeds");
    }

    #[test]
    fn header_blocks_and_sections() {
        let h = header_block(
            b"max-age=1\r\nPragma: no-cache\nSun, 06 Nov 1994 08:49:37 GMT\n\x01:x",
            &http::header::CACHE_CONTROL,
        );
        let cc: Vec<_> = h.get_all("cache-control").iter().collect();
        assert_eq!(cc, ["max-age=1", "Sun, 06 Nov 1994 08:49:37 GMT"]);
        assert_eq!(
            h.get("pragma").map(|v| v.as_bytes()),
            Some(&b"no-cache"[..])
        );
        assert_eq!(
            sections::<3>(b"a\n\nb\n\nc\n\nd"),
            [&b"a"[..], b"b", b"c\n\nd"]
        );
        assert_eq!(sections::<3>(b"a"), [&b"a"[..], b"", b""]);
    }
}
