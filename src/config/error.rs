//! The one error type operators see, and how byte spans become positions.
//!
//! `outpost check` prints `ConfigError`'s `Display` and nothing else, so the
//! text has to stand on its own: `FILE:LINE:COL: key.path: what is wrong`,
//! the shape editors and CI logs already understand. Everything that fails
//! (toml syntax, serde type errors, semantic validation) is funnelled
//! through [`Source::invalid`] so every message has that shape.

use std::ops::Range;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all (missing, permissions, not UTF-8).
    #[error("{file}: cannot read: {message}")]
    Read { file: String, message: String },
    /// The file was read but something in it is wrong. `line` and `col` are
    /// 1-based (columns count characters); `key` is a dotted path such as
    /// `site[1].hosts[0]`.
    #[error("{file}:{line}:{col}: {key}: {message}")]
    Invalid {
        file: String,
        line: usize,
        col: usize,
        key: String,
        message: String,
    },
}

/// The text being loaded and the label used for it in messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub(crate) text: &'a str,
    pub(crate) file: &'a str,
}

impl Source<'_> {
    /// An [`ConfigError::Invalid`] pointing at the start of `span`.
    pub(crate) fn invalid(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, col) = line_col(self.text, span.start);
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line,
            col,
            key: shorten(key.into()),
            message: message.into(),
        }
    }
}

/// Longest key path shown; only pathological input gets near it.
const MAX_KEY_CHARS: usize = 120;

fn shorten(key: String) -> String {
    match key.char_indices().nth(MAX_KEY_CHARS) {
        Some((cut, _)) => format!("{}…", &key[..cut]),
        None => key,
    }
}

/// 1-based line and character column of byte `offset` (clamped to the end
/// of `text`; never panics on a bad offset).
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut col = 1;
    for (i, c) in text.char_indices() {
        if i >= offset {
            break;
        }
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}

/// Appends `key` to a dotted path, quoting keys that are not bare TOML keys.
pub(crate) fn join_key(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        let text = "a = 1\nbb = \"é\"x\n\nlast";
        let cases = [
            (0, (1, 1)),
            (4, (1, 5)),
            (5, (1, 6)),
            (6, (2, 1)),
            (11, (2, 6)),
            (14, (2, 8)),
            (17, (3, 1)),
            (18, (4, 1)),
            (999, (4, 5)),
        ];
        for (offset, want) in cases {
            assert_eq!(line_col(text, offset), want, "offset {offset}");
        }
        assert_eq!(line_col("", 3), (1, 1));
    }

    #[test]
    fn keys() {
        let cases = [
            ("", "site", "site"),
            ("site[0]", "hosts", "site[0].hosts"),
            ("a", "b.c", "a.\"b.c\""),
            ("a", "", "a.\"\""),
        ];
        for (prefix, key, want) in cases {
            assert_eq!(join_key(prefix, key), want);
        }
    }

    #[test]
    fn display() {
        let source = Source {
            text: "x\n  y = 1\n",
            file: "outpost.toml",
        };
        let err = source.invalid(6..7, "y", "bad");
        assert_eq!(err.to_string(), "outpost.toml:2:5: y: bad");
        let long = source.invalid(0..0, "é".repeat(200), "bad").to_string();
        assert_eq!(long, format!("outpost.toml:1:1: {}…: bad", "é".repeat(120)));
        let read = ConfigError::Read {
            file: "f.toml".into(),
            message: "gone".into(),
        };
        assert_eq!(read.to_string(), "f.toml: cannot read: gone");
    }
}
