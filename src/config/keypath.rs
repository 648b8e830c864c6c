//! Turning toml's errors into `FILE:LINE:COL: key: message`.
//!
//! toml's deserializer reports a byte span and a message but does not
//! expose the key path (and never includes array indices). We recover the
//! path from the span instead: re-parse the text into toml's spanned
//! document tree and pick the innermost key or value whose span contains
//! the error's span. Table headers like `[[site]]` are the spans of their
//! tables, so "missing key" errors land on the right `site[i]`. When the
//! text is too broken for the tree to hold the spot (syntax errors), a
//! line-based scan finds the table header in force and the key on the line.

use std::collections::HashMap;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::config::error::{ConfigError, Source, join_key};

/// Used when not even a table header can be found.
const TOP_LEVEL: &str = "(top level)";

/// toml's recursion limit is lower than this for nested values, but not
/// for dotted keys (`a.a.a…`): stop walking rather than overflow the stack.
const MAX_DEPTH: usize = 64;

/// Converts a toml parse or deserialisation error.
pub(crate) fn from_toml(source: &Source<'_>, err: &toml::de::Error) -> ConfigError {
    let span = err.span().unwrap_or(0..0);
    // The message is one line today; keep only the first in case a future
    // version adds toml's multi-line snippet rendering to it.
    let raw = err.message().lines().next().unwrap_or_default().trim();
    let mut key = key_at(source.text, &span);
    let message = match raw.strip_prefix("missing field `") {
        Some(rest) => {
            let field = rest.split('`').next().unwrap_or_default();
            key = if key == TOP_LEVEL {
                field.to_owned()
            } else {
                join_key(&key, field)
            };
            "missing required key".to_owned()
        }
        None => raw.replacen("unknown field", "unknown key", 1),
    };
    source.invalid(span, key, message)
}

/// The dotted key path at `span`, e.g. `site[1].origin.servers[0]`.
pub(crate) fn key_at(text: &str, span: &Range<usize>) -> String {
    let (root, _errors) = DeTable::parse_recoverable(text);
    let mut best = None;
    walk_table(root.get_ref(), "", 0, span, &mut best);
    best.map(|b| b.path)
        .or_else(|| scan_lines(text, span.start))
        .unwrap_or_else(|| TOP_LEVEL.to_owned())
}

/// The tightest node found so far; deeper wins ties (`site` and `site[0]`
/// share the `[[site]]` header's span).
struct Best {
    len: usize,
    depth: usize,
    path: String,
}

fn consider(node: Range<usize>, path: &str, depth: usize, target: &Range<usize>) -> Option<Best> {
    let contains = node.start <= target.start && target.end <= node.end;
    contains.then(|| Best {
        len: node.end - node.start,
        depth,
        path: path.to_owned(),
    })
}

fn keep_better(best: &mut Option<Best>, candidate: Option<Best>) {
    let Some(c) = candidate else { return };
    let better = match best {
        None => true,
        Some(b) => c.len < b.len || (c.len == b.len && c.depth > b.depth),
    };
    if better {
        *best = Some(c);
    }
}

fn walk_table(
    table: &DeTable<'_>,
    prefix: &str,
    depth: usize,
    target: &Range<usize>,
    best: &mut Option<Best>,
) {
    for (key, value) in table.iter() {
        let path = join_key(prefix, key.get_ref());
        keep_better(best, consider(key.span(), &path, depth + 1, target));
        walk_value(value, &path, depth + 1, target, best);
    }
}

fn walk_value(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    depth: usize,
    target: &Range<usize>,
    best: &mut Option<Best>,
) {
    if depth > MAX_DEPTH {
        return;
    }
    keep_better(best, consider(value.span(), path, depth, target));
    match value.get_ref() {
        DeValue::Table(table) => walk_table(table, path, depth, target, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_value(item, &format!("{path}[{i}]"), depth + 1, target, best);
            }
        }
        _ => {}
    }
}

/// Fallback for text the tree cannot describe: the `[table]` or
/// `[[array]]` header in force at `offset` (with `[[x]]` occurrences
/// counted for the index) plus the `key =` on the offending line.
fn scan_lines(text: &str, offset: usize) -> Option<String> {
    let mut arrays: HashMap<String, usize> = HashMap::new();
    let mut header = String::new();
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let end = start + line.len();
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("[[") {
            let name = header_name(name.split("]]").next().unwrap_or_default());
            *arrays.entry(name.clone()).or_default() += 1;
            header = indexed(&name, &arrays);
        } else if let Some(name) = trimmed.strip_prefix('[') {
            header = indexed(
                &header_name(name.split(']').next().unwrap_or_default()),
                &arrays,
            );
        }
        if offset < end || end == text.len() {
            let key = match trimmed.split_once('=') {
                Some((key, _)) if !trimmed.starts_with('[') => key.trim(),
                _ => "",
            };
            let path = if key.is_empty() {
                header
            } else {
                join_key(&header, key)
            };
            return (!path.is_empty()).then_some(path);
        }
        start = end;
    }
    None
}

/// `" a . b "` → `"a.b"`.
fn header_name(raw: &str) -> String {
    raw.split('.').map(str::trim).collect::<Vec<_>>().join(".")
}

/// `"site.origin"` → `"site[1].origin"` when `[[site]]` was seen twice.
fn indexed(name: &str, arrays: &HashMap<String, usize>) -> String {
    if name.split('.').count() > MAX_DEPTH {
        return name.to_owned();
    }
    let mut path = String::new();
    let mut plain = String::new();
    for part in name.split('.') {
        if !plain.is_empty() {
            plain.push('.');
            path.push('.');
        }
        plain.push_str(part);
        path.push_str(part);
        if let Some(n) = arrays.get(&plain).filter(|n| **n > 0) {
            path.push_str(&format!("[{}]", n - 1));
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
[cache]
memory = \"1MiB\"

[[site]]
hosts = [\"a\", \"b\"]
origin = { servers = [\"x\"], tls = { sni = \"s\" } }

[[site]]
hosts = [\"c\"]
[site.origin]
servers = [\"y\"]
";

    fn offset_of(needle: &str, nth: usize) -> usize {
        DOC.match_indices(needle)
            .nth(nth)
            .map_or(usize::MAX, |(i, _)| i)
    }

    #[test]
    fn tree_paths() {
        let cases = [
            ("\"1MiB\"", 0, "cache.memory"),
            ("memory", 0, "cache.memory"),
            ("[cache]", 0, "cache"),
            ("[[site]]", 0, "site[0]"),
            ("[[site]]", 1, "site[1]"),
            ("\"b\"", 0, "site[0].hosts[1]"),
            ("\"s\"", 0, "site[0].origin.tls.sni"),
            ("\"c\"", 0, "site[1].hosts[0]"),
            ("[site.origin]", 0, "site[1].origin"),
            ("\"y\"", 0, "site[1].origin.servers[0]"),
        ];
        for (needle, nth, want) in cases {
            let at = offset_of(needle, nth);
            let span = at..at + needle.len();
            assert_eq!(key_at(DOC, &span), want, "{needle}");
        }
    }

    #[test]
    fn line_scan_paths() {
        let cases = [
            ("[cache]\nmemory = \"1MiB\"\n", 9, Some("cache.memory")),
            ("[[site]]\n[[site]]\nhosts = 1\n", 19, Some("site[1].hosts")),
            ("[[site]]\n[site.origin]\nx\n", 23, Some("site[0].origin")),
            ("[[tls.certificates]]\n", 3, Some("tls.certificates[0]")),
            ("garbage\n", 0, None),
            ("", 0, None),
        ];
        for (text, offset, want) in cases {
            assert_eq!(scan_lines(text, offset).as_deref(), want, "{text:?}");
        }
    }
}
