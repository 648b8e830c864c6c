//! Host patterns that route a request to a site.
//!
//! Only two shapes exist, an exact name and a leading `*.` wildcard, because
//! anything richer (mid-label wildcards, regexes) makes it hard for an
//! operator to tell which site answers a given host. Patterns are validated
//! and lowercased once here so that matching on the hot path is a plain
//! string comparison.

use std::net::Ipv6Addr;

/// Longest DNS name (RFC 1035) and label.
const MAX_NAME: usize = 253;
const MAX_LABEL: usize = 63;

/// A validated, lowercase host pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum HostPattern {
    /// Matches this host only, e.g. `example.com`.
    Exact(String),
    /// From `*.example.com`: holds `.example.com` and matches any host that
    /// ends with it and has at least one more label in front.
    Suffix(String),
}

impl HostPattern {
    /// Parses `example.com`, `*.example.com`, an IPv4 address or a
    /// bracketed IPv6 address (`[::1]`). Rejects empty names, a bare `*`,
    /// wildcards anywhere but the first label, ports, spaces and non-ASCII
    /// names (write IDNs in their `xn--` form).
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(inner) = lower.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            return match inner.parse::<Ipv6Addr>() {
                Ok(_) => Ok(Self::Exact(lower)),
                Err(_) => Err(format!("{s:?} is not a valid bracketed IPv6 address")),
            };
        }
        match lower.strip_prefix("*.") {
            Some(rest) => check_name(s, rest).map(|()| Self::Suffix(format!(".{rest}"))),
            None => check_name(s, &lower).map(|()| Self::Exact(lower)),
        }
    }

    /// `host` must already be lowercase and without a port.
    pub(crate) fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => host == name,
            Self::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }

    /// The pattern as an operator would write it (`*.example.com`).
    pub(crate) fn as_written(&self) -> String {
        match self {
            Self::Exact(name) => name.clone(),
            Self::Suffix(suffix) => format!("*{suffix}"),
        }
    }
}

/// Checks a lowercase DNS-style name; `original` is only used in messages.
fn check_name(original: &str, name: &str) -> Result<(), String> {
    let fail = |why: &str| Err(format!("{original:?} is not a valid host: {why}"));
    if name.is_empty() || name == "*" {
        return fail("a name is required");
    }
    if name.contains('*') {
        return fail("only a leading \"*.\" wildcard is allowed");
    }
    if name.contains(':') {
        return fail("hosts match without a port; remove \":port\"");
    }
    if name.chars().any(char::is_whitespace) {
        return fail("spaces are not allowed");
    }
    if !name.is_ascii() {
        return fail("non-ASCII names must be written in their \"xn--\" form");
    }
    if name.len() > MAX_NAME {
        return fail("longer than 253 characters");
    }
    name.split('.')
        .try_for_each(|label| check_label(label).or_else(&fail))
}

fn check_label(label: &str) -> Result<(), &'static str> {
    if label.is_empty() {
        return Err("empty label (leading, trailing or doubled \".\")");
    }
    if label.len() > MAX_LABEL {
        return Err("a label is longer than 63 characters");
    }
    let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if !label.bytes().all(valid) {
        return Err("only letters, digits, \"-\" and \"_\" are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(s: &str) -> HostPattern {
        HostPattern::Exact(s.to_owned())
    }

    fn suffix(s: &str) -> HostPattern {
        HostPattern::Suffix(s.to_owned())
    }

    #[test]
    fn parses() {
        let cases = [
            ("example.com", exact("example.com")),
            ("Example.COM", exact("example.com")),
            ("*.example.com", suffix(".example.com")),
            ("*.Example.Com", suffix(".example.com")),
            ("*.com", suffix(".com")),
            ("localhost", exact("localhost")),
            ("127.0.0.1", exact("127.0.0.1")),
            ("[::1]", exact("[::1]")),
            ("[2001:DB8::1]", exact("[2001:db8::1]")),
            ("xn--bcher-kva.example", exact("xn--bcher-kva.example")),
            ("my_host.internal", exact("my_host.internal")),
        ];
        for (input, want) in cases {
            assert_eq!(HostPattern::parse(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects() {
        let cases = [
            ("", "a name is required"),
            ("*", "a name is required"),
            ("*.", "a name is required"),
            ("a.*.com", "leading"),
            ("*example.com", "leading"),
            ("*.*.example.com", "leading"),
            ("example.*", "leading"),
            ("example.com:8080", "port"),
            ("*.example.com:443", "port"),
            ("exa mple.com", "spaces"),
            (" example.com", "spaces"),
            ("bücher.example", "xn--"),
            (".example.com", "empty label"),
            ("example.com.", "empty label"),
            ("a..b", "empty label"),
            ("a/b", "only letters"),
            ("[::1", "port"),
            ("[not-v6]", "IPv6"),
            (&"a".repeat(64), "63"),
            (&["a"; 128].join("."), "253"),
        ];
        for (input, want) in cases {
            let err = HostPattern::parse(input).expect_err(input);
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn matching() {
        let cases = [
            ("example.com", "example.com", true),
            ("example.com", "www.example.com", false),
            ("example.com", "example.org", false),
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", ".example.com", false),
            ("*.example.com", "badexample.com", false),
            ("*.example.com", "a.example.com.evil", false),
            ("[::1]", "[::1]", true),
        ];
        for (pattern, host, want) in cases {
            let p = HostPattern::parse(pattern).expect(pattern);
            assert_eq!(p.matches(host), want, "{pattern} vs {host}");
        }
    }

    #[test]
    fn as_written_round_trips() {
        for input in ["example.com", "*.example.com", "[::1]"] {
            let p = HostPattern::parse(input).expect(input);
            assert_eq!(p.as_written(), input);
        }
    }
}
