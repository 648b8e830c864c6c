//! `vary_key`: what selects a stored response. `Vary` and the secondary key (RFC 9111 §4.1),
//! the site's key rules (query, headers, cookies), the request authority and the primary key.
//!
//! Input: one byte choosing the key rules, then three sections split by a blank line: the
//! response head (main field `Vary`), the request head (main field `Accept-Encoding`), and
//! the authority on the first line with the `path?query` on the second.

use http::uri::Scheme;
use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::cache::key::{KeyRules, QueryRule};
use crate::cache::policy::{KEY_FIELD, Policy};
use crate::cache::vary::{self, Vary};
use crate::proxy::request::{cache_key, split_authority};

/// Bits 0-1: query rule; bit 2: sort; bit 3: key on headers; bit 4: key on cookies.
fn rules(byte: u8) -> KeyRules {
    let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
    KeyRules {
        query: match byte & 3 {
            0 => QueryRule::Keep,
            1 => QueryRule::Ignore,
            2 => QueryRule::Drop(names(&["utm_source", "utm_medium", "fbclid"])),
            _ => QueryRule::Only(names(&["id", "page", "q"])),
        },
        sort_query: byte & 4 != 0,
        headers: if byte & 8 != 0 {
            vec![HeaderName::from_static("x-device"), header::ACCEPT_LANGUAGE]
        } else {
            Vec::new()
        },
        cookies: if byte & 16 != 0 {
            names(&["session", "ab"])
        } else {
            Vec::new()
        },
    }
}

pub fn vary_key(data: &[u8]) {
    let Some((&rules_byte, rest)) = data.split_first() else {
        return;
    };
    let [response, request, target] = super::sections::<3>(rest);
    let response = super::header_block(response, &header::VARY);
    let request = super::header_block(request, &header::ACCEPT_ENCODING);
    let rules = rules(rules_byte);

    check_vary(&response, &request);
    check_extra(&rules, &request);
    let target = String::from_utf8_lossy(target);
    let mut lines = target.lines();
    let authority = lines.next().unwrap_or_default();
    let path_and_query = lines.next().unwrap_or_default();
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    check_query(&rules, query);
    check_authority(
        authority,
        path,
        query.and_then(|q| rules.query(Some(q))).as_deref(),
    );
}

fn check_vary(response: &HeaderMap, request: &HeaderMap) {
    let parsed = vary::parse_vary(response);
    let fields = match &parsed {
        Vary::Fields(fields) => fields.clone(),
        Vary::Any => {
            let star = response
                .get_all(header::VARY)
                .iter()
                .any(|v| v.as_bytes().contains(&b'*'));
            assert!(star, "Vary: * without a star");
            Vec::new()
        }
        Vary::None => Vec::new(),
    };
    assert!(
        fields.windows(2).all(|w| w[0].as_str() < w[1].as_str()),
        "fields sorted and unique: {fields:?}"
    );
    let key = vary::secondary_key(&fields, request);
    assert_eq!(key.0.len(), fields.len());
    assert_eq!(key, vary::secondary_key(&fields, request), "deterministic");
    for (name, value) in fields.iter().zip(&key.0) {
        // RFC 9111 §4.1: an absent field only matches an absent field.
        assert_eq!(value.is_some(), request.contains_key(name), "{name}");
    }
    let policy = Policy {
        key_fields: vec![KEY_FIELD],
        ..Policy::default()
    };
    let with_key = policy.vary_fields(response);
    assert!(with_key.windows(2).all(|w| w[0].as_str() < w[1].as_str()));
    assert!(with_key.contains(&KEY_FIELD));
    let _ = vary::known_content_encoding(response);
}

/// Header and cookie key material: visible ASCII only (it travels in a request field), and a
/// change to a listed header changes it.
fn check_extra(rules: &KeyRules, request: &HeaderMap) {
    let extra = rules.extra(request);
    assert_eq!(
        extra.is_some(),
        !(rules.headers.is_empty() && rules.cookies.is_empty())
    );
    let Some(extra) = extra else { return };
    assert!(extra.bytes().all(|b| b.is_ascii_graphic()), "{extra:?}");
    if let Some(name) = rules.headers.first() {
        let mut changed = request.clone();
        let mut value = request
            .get(name)
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default();
        value.push(b'x');
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            changed.insert(name, value);
            assert_ne!(
                rules.extra(&changed).as_deref(),
                Some(&*extra),
                "{name} ignored"
            );
        }
    }
}

/// The keyed query: the raw query for the plain rule; otherwise some of its members (never an
/// empty one), sorted by name when asked, without dropped names.
fn check_query(rules: &KeyRules, query: Option<&str>) {
    let keyed = rules.query(query);
    let Some(query) = query else {
        assert!(keyed.is_none());
        return;
    };
    if rules.query == QueryRule::Keep && !rules.sort_query {
        assert_eq!(keyed.as_deref(), Some(query));
        return;
    }
    if rules.query == QueryRule::Ignore {
        assert!(keyed.is_none());
        return;
    }
    let Some(keyed) = keyed else { return };
    let mut left: Vec<&str> = query.split('&').collect();
    let name = |p: &str| p.split_once('=').map_or(p, |(n, _)| n).to_owned();
    for member in keyed.split('&') {
        assert!(!member.is_empty(), "empty member in {keyed:?}");
        let at = left.iter().position(|m| *m == member);
        let at = at.unwrap_or_else(|| panic!("{member:?} is not in {query:?}"));
        left.remove(at);
        if let QueryRule::Drop(names) = &rules.query {
            assert!(!names.contains(&name(member)), "{member:?} kept");
        }
    }
    if rules.sort_query {
        let names: Vec<String> = keyed.split('&').map(name).collect();
        assert!(names.is_sorted(), "{keyed:?} not sorted");
    }
}

/// An accepted authority is the host (lowercase, no trailing dot) and port and nothing else;
/// the primary key names them.
fn check_authority(authority: &str, path: &str, query: Option<&str>) {
    let Some((host, port)) = split_authority(authority) else {
        return;
    };
    assert!(!host.is_empty() && !host.ends_with('.'));
    assert_eq!(host, host.to_ascii_lowercase());
    let sent = authority.trim().to_ascii_lowercase();
    let rest = sent
        .strip_prefix(host.as_str())
        .unwrap_or_else(|| panic!("{authority:?} accepted as host {host:?}"));
    let rest = rest.trim_start_matches('.');
    match port {
        Some(port) => {
            let digits = rest
                .strip_prefix(':')
                .unwrap_or_else(|| panic!("{authority:?}"));
            assert_eq!(digits.parse::<u16>().ok(), Some(port), "{authority:?}");
        }
        None => assert!(
            rest.is_empty(),
            "{authority:?} accepted as {host:?}, rest {rest:?}"
        ),
    }
    for scheme in [Scheme::HTTP, Scheme::HTTPS] {
        let key = cache_key(&scheme, &host, port, path, query);
        let origin = format!("{scheme}://{host}");
        assert!(key.starts_with(&origin), "{key:?}");
        let default = if scheme == Scheme::HTTPS { 443 } else { 80 };
        let after = &key[origin.len()..];
        match port.filter(|p| *p != default) {
            Some(p) => assert!(after.starts_with(&format!(":{p}")), "{key:?}"),
            None => assert!(after.starts_with(path), "{key:?}"),
        }
    }
}
