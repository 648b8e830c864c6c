//! `hop`: the signed `Outpost-Hop` header between cluster members, and the purge body MAC.
//!
//! Input: a flags byte (bit 0: https, bits 1-3: method, bits 5-7: the hops), two bytes of
//! flip position and one of flip mask, then lines: the secret, the sender, the request
//! target, a hop value.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method};

use crate::cluster::hop::{HOP_HEADER, Hop, Hops, Secret};

const METHODS: [Method; 8] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::OPTIONS,
    Method::PATCH,
    Method::TRACE,
];

pub fn hop(data: &[u8]) {
    let Some((&[flags, at_hi, at_lo, mask], rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let mut lines = rest.splitn(4, |&b| b == b'\n');
    let mut line = || String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let (secret, from, target, value) = (line(), line(), line(), line());
    let secret = Secret::new(&secret);
    let https = flags & 1 != 0;
    let method = &METHODS[usize::from(flags >> 1) % METHODS.len()];
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + u64::from(flags) * 7919);

    // Whatever arrives is checked without a panic.
    if let Ok(value) = HeaderValue::from_str(&value) {
        let _ = secret.verify(&with_hop(value), method, &target, now);
    }
    let _ = secret.verify_mac(target.as_bytes(), &value);

    // A sender's address is one of its listen addresses: keep the characters those have.
    let from: String = from
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']' | '-'))
        .collect();
    let hops = match flags >> 5 {
        0 => Hops::PEER,
        1 => Hops {
            peer: false,
            shield: true,
        },
        _ => Hops {
            peer: true,
            shield: true,
        },
    };
    let signed = secret.sign_hops(&from, https, hops, method, &target, now);
    let hop = Hop {
        from: from.clone(),
        https,
        hops,
    };
    let verify = |value: &HeaderValue, when: SystemTime| {
        secret.verify(&with_hop(value.clone()), method, &target, when)
    };
    assert_eq!(verify(&signed, now), Some(hop.clone()), "{signed:?}");
    // Replay bound: ±5 minutes.
    assert!(verify(&signed, now + Duration::from_secs(300)).is_some());
    assert!(verify(&signed, now - Duration::from_secs(300)).is_some());
    assert_eq!(verify(&signed, now + Duration::from_secs(301)), None);
    let other = if *method == Method::GET {
        Method::HEAD
    } else {
        Method::GET
    };
    assert_eq!(
        secret.verify(&with_hop(signed.clone()), &other, &target, now),
        None
    );
    assert_eq!(
        secret.verify(
            &with_hop(signed.clone()),
            method,
            &format!("{target}x"),
            now
        ),
        None
    );

    check_flip(
        &signed,
        usize::from(u16::from_be_bytes([at_hi, at_lo])),
        mask,
        |v| verify(v, now),
        &hop,
    );

    let mac = secret.mac(&target);
    assert!(secret.verify_mac(target.as_bytes(), &mac));
    let mut other_body = target.into_bytes();
    other_body.push(b'x');
    assert!(!secret.verify_mac(&other_body, &mac));
}

fn with_hop(value: HeaderValue) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(HOP_HEADER, value);
    headers
}

/// One byte of a signed value changed: it no longer verifies, unless the change is one the
/// format treats as the same value (the case of a MAC hex digit, space for tab), and then it
/// verifies as the same hop.
fn check_flip(
    signed: &HeaderValue,
    at: usize,
    mask: u8,
    verify: impl Fn(&HeaderValue) -> Option<Hop>,
    hop: &Hop,
) {
    let mut bytes = signed.as_bytes().to_vec();
    if bytes.is_empty() || mask == 0 {
        return;
    }
    let at = at % bytes.len();
    let was = bytes[at];
    bytes[at] ^= mask;
    let now = bytes[at];
    let Ok(flipped) = HeaderValue::from_bytes(&bytes) else {
        return;
    };
    let Some(got) = verify(&flipped) else {
        return;
    };
    let mac_from = signed
        .to_str()
        .ok()
        .and_then(|s| s.find("mac="))
        .map(|m| m + 4);
    let in_mac = mac_from.is_some_and(|m| at >= m);
    let same_hex = in_mac && was.is_ascii_hexdigit() && was.eq_ignore_ascii_case(&now);
    let same_space = (was, now) == (b' ', b'\t');
    assert!(
        same_hex || same_space,
        "{flipped:?} verifies after changing {was:?} to {now:?}"
    );
    assert_eq!(&got, hop);
}
