//! The hop header: how a node asks the owner of a key for it, and how the owner knows the
//! request came from a member of its cluster.
//!
//! `Outpost-Hop: from="10.0.0.5:8080"; proto=https; ts=1700000000; hops=ps; mac=<hex>` where
//! the MAC is HMAC-SHA256 with the cluster secret over the sender, the client's scheme, the
//! time, the hops taken and the request's method, authority and path. Binding the MAC to the
//! request means a captured header cannot be replayed on another URL, and the time bounds
//! replay of the same one (±5 min).
//!
//! `hops` says which hops the request has taken so far, this one included: `p`, a peer hop
//! to the key's owner in the same cluster; `s`, a shield hop to the parent tier. A request
//! takes at most one of each ([`Hops`]), whatever the members think of the ring or of their
//! shields, so no loop is possible. A header without `hops` (a node from before shields) is a
//! peer hop, and an empty `hops=` a request a node makes itself for a client (the owner's
//! write-through to the key's other holders, [`Hops::default`]). A request whose hop does not verify is an ordinary client request: the header is
//! dropped and the node routes it as usual.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

pub(crate) const HOP_HEADER: HeaderName = HeaderName::from_static("outpost-hop");

/// On a node's answer to a hop: when the object it answers with was fetched from the origin
/// (milliseconds since the Unix epoch), so a copy kept from the answer carries that time (see
/// `cluster::purge_log`). Never sent to clients, and dropped from origins' responses.
pub(crate) const FETCHED_HEADER: HeaderName = HeaderName::from_static("outpost-fetched");

/// [`FETCHED_HEADER`]'s value for `fetched`.
pub(crate) fn fetched_value(fetched: SystemTime) -> HeaderValue {
    HeaderValue::from(super::message::unix_ms(fetched))
}

/// What [`FETCHED_HEADER`] says in `headers`, if it says a time.
pub(crate) fn fetched_of(headers: &HeaderMap) -> Option<SystemTime> {
    let ms = headers
        .get(FETCHED_HEADER)?
        .to_str()
        .ok()?
        .parse::<u64>()
        .ok()?;
    UNIX_EPOCH.checked_add(Duration::from_millis(ms))
}

/// Take [`FETCHED_HEADER`] out of `headers`: the time it says (never after `at_most`, when
/// the answer came), or `otherwise` without one.
pub(crate) fn take_fetched(
    headers: &mut HeaderMap,
    at_most: SystemTime,
    otherwise: SystemTime,
) -> SystemTime {
    let said = fetched_of(headers);
    headers.remove(FETCHED_HEADER);
    said.map_or(otherwise, |t| t.min(at_most))
}

/// How far a hop's timestamp may be from this node's clock.
const MAX_SKEW: Duration = Duration::from_secs(300);

/// The hops a request has taken: at most one peer hop and one shield hop (the hop limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hops {
    /// To the key's owner in the same cluster.
    pub peer: bool,
    /// To the parent tier (a shield node).
    pub shield: bool,
}

impl Hops {
    /// One peer hop: what a node from before shields sends.
    pub const PEER: Hops = Hops {
        peer: true,
        shield: false,
    };

    /// Whether the request came from another node.
    pub fn any(self) -> bool {
        self.peer || self.shield
    }

    fn encode(self) -> &'static str {
        match (self.peer, self.shield) {
            (true, true) => "ps",
            (true, false) => "p",
            (false, true) => "s",
            (false, false) => "",
        }
    }

    fn decode(text: &str) -> Option<Hops> {
        match text {
            // No hop taken: a node's own request on behalf of a client, e.g. an owner writing
            // an object through to its replicas (it carries the client's scheme).
            "" => Some(Hops::default()),
            "p" => Some(Self::PEER),
            "s" => Some(Hops {
                peer: false,
                shield: true,
            }),
            "ps" => Some(Hops {
                peer: true,
                shield: true,
            }),
            _ => None,
        }
    }
}

/// A verified hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hop {
    /// The sender's advertised address.
    pub(crate) from: String,
    /// The scheme the client used at the sender (the owner keys the object with it).
    pub(crate) https: bool,
    /// The hops taken so far, this one included.
    pub(crate) hops: Hops,
}

/// The cluster secret as an HMAC key.
pub struct Secret(hmac::Key);

impl Secret {
    pub fn new(secret: &str) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()))
    }

    /// The hop header for a request this node forwards to the key's owner (a peer hop).
    pub fn sign(
        &self,
        from: &str,
        https: bool,
        method: &Method,
        target: &str,
        now: SystemTime,
    ) -> HeaderValue {
        self.sign_hops(from, https, Hops::PEER, method, target, now)
    }

    /// The hop header for a request this node forwards, which has taken `hops` with this one.
    pub fn sign_hops(
        &self,
        from: &str,
        https: bool,
        hops: Hops,
        method: &Method,
        target: &str,
        now: SystemTime,
    ) -> HeaderValue {
        let ts = unix(now);
        let proto = if https { "https" } else { "http" };
        let hops = hops.encode();
        let mac = self.mac(&message(from, proto, ts, Some(hops), method, target));
        let value = format!("from=\"{from}\"; proto={proto}; ts={ts}; hops={hops}; mac={mac}");
        // Addresses, digits and hex: always a valid header value.
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The hop of a request, if it carries one that verifies for this request now.
    pub(crate) fn verify(
        &self,
        headers: &HeaderMap,
        method: &Method,
        target: &str,
        now: SystemTime,
    ) -> Option<Hop> {
        let value = headers.get(&HOP_HEADER)?.to_str().ok()?;
        let (mut from, mut proto, mut ts, mut hops, mut mac) = (None, None, None, None, None);
        for part in value.split(';') {
            let (name, v) = part.trim().split_once('=')?;
            match name {
                // Quoted exactly once, as `sign` writes it (an address holds no quote).
                "from" => from = Some(v.strip_prefix('"')?.strip_suffix('"')?),
                "proto" => proto = Some(v),
                "ts" => ts = v.parse::<u64>().ok(),
                "hops" if hops.is_none() => hops = Some(v),
                "mac" => mac = Some(v),
                _ => return None,
            }
        }
        let (from, proto, ts, mac) = (from?, proto?, ts?, mac?);
        if !matches!(proto, "http" | "https") || unix(now).abs_diff(ts) > MAX_SKEW.as_secs() {
            return None;
        }
        let tag = hex_decode(mac)?;
        // Without `hops`: a peer hop from a node that predates them, MAC'd without it.
        let taken = match hops {
            Some(text) => Hops::decode(text)?,
            None => Hops::PEER,
        };
        let message = message(from, proto, ts, hops, method, target);
        // Constant-time comparison.
        hmac::verify(&self.0, message.as_bytes(), &tag).ok()?;
        Some(Hop {
            from: from.to_owned(),
            https: proto == "https",
            hops: taken,
        })
    }

    /// A MAC over an arbitrary body (purge fan-out), hex.
    pub(crate) fn mac(&self, message: &str) -> String {
        self.mac_bytes(message.as_bytes())
    }

    pub fn mac_bytes(&self, message: &[u8]) -> String {
        crate::hex::encode(hmac::sign(&self.0, message).as_ref())
    }

    /// Verify [`mac`](Self::mac) in constant time.
    pub(crate) fn verify_mac(&self, message: &[u8], mac: &str) -> bool {
        hex_decode(mac).is_some_and(|tag| hmac::verify(&self.0, message, &tag).is_ok())
    }
}

fn message(
    from: &str,
    proto: &str,
    ts: u64,
    hops: Option<&str>,
    method: &Method,
    target: &str,
) -> String {
    match hops {
        Some(hops) => format!("outpost-hop\n{from}\n{proto}\n{ts}\n{hops}\n{method}\n{target}"),
        None => format!("outpost-hop\n{from}\n{proto}\n{ts}\n{method}\n{target}"),
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    // Digit by digit: `u8::from_str_radix` would also take a sign (`+a` for `0a`).
    let digit = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    s.as_bytes()
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: HeaderValue) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HOP_HEADER, value);
        h
    }

    #[test]
    fn a_signed_hop_verifies_for_the_same_request_only() {
        let secret = Secret::new("0123456789abcdef");
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let value = secret.sign("10.0.0.5:8080", true, &Method::GET, "example.com/a", now);
        let h = headers(value);
        let hop = secret.verify(&h, &Method::GET, "example.com/a", now);
        assert_eq!(
            hop,
            Some(Hop {
                from: "10.0.0.5:8080".into(),
                https: true,
                hops: Hops::PEER,
            })
        );
        let cases: [(&Secret, &Method, &str, SystemTime); 5] = [
            (
                &Secret::new("another-secret!!"),
                &Method::GET,
                "example.com/a",
                now,
            ),
            (&secret, &Method::HEAD, "example.com/a", now),
            (&secret, &Method::GET, "example.com/b", now),
            (
                &secret,
                &Method::GET,
                "example.com/a",
                now + Duration::from_secs(301),
            ),
            (
                &secret,
                &Method::GET,
                "example.com/a",
                now - Duration::from_secs(301),
            ),
        ];
        for (i, (s, method, target, when)) in cases.into_iter().enumerate() {
            assert_eq!(s.verify(&h, method, target, when), None, "case {i}");
        }
        assert!(
            secret
                .verify(
                    &h,
                    &Method::GET,
                    "example.com/a",
                    now + Duration::from_secs(299)
                )
                .is_some()
        );
    }

    #[test]
    fn forged_or_malformed_hops_are_refused() {
        let secret = Secret::new("0123456789abcdef");
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let good = secret.sign("a:1", false, &Method::GET, "h/p", now);
        let good = good.to_str().unwrap();
        let tampered = [
            good.replace("from=\"a:1\"", "from=\"b:1\""),
            good.replace("proto=http", "proto=https"),
            good.replace("ts=1700000000", "ts=1700000001"),
            good.replace("hops=p", "hops=ps"),
            good.replace("hops=p", "hops=s"),
            good.replace("hops=p; ", ""),
            good.replace("hops=p", "hops=pp"),
            good.replace("hops=p", "hops=p; hops=p"),
            good.replace("mac=", "mac=00"),
            good.replace("; mac=", "; x=1; mac="),
            "from=\"a:1\"; proto=http; ts=1700000000".to_owned(),
            "garbage".to_owned(),
            String::new(),
        ];
        for value in tampered {
            let h = headers(HeaderValue::from_str(&value).unwrap());
            assert_eq!(secret.verify(&h, &Method::GET, "h/p", now), None, "{value}");
        }
    }

    /// Found by the `hop` fuzz target (`fuzz/regressions/hop/`): with the closing quote of
    /// `from` replaced by a tab, the hop still verified, since quotes were trimmed, not
    /// required.
    #[test]
    fn regression_from_must_be_quoted() {
        let secret = Secret::new("0123456789abcdef");
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let good = secret.sign("edge-2:8080", false, &Method::GET, "h/p", now);
        let good = good.to_str().unwrap();
        let variants = [
            good.replace("8080\";", "8080\t;"),
            good.replace("8080\";", "8080;"),
            good.replace("\"edge", "edge"),
            good.replace("\"edge", "\"\"edge"),
        ];
        for value in variants {
            let h = headers(HeaderValue::from_str(&value).unwrap());
            assert_eq!(secret.verify(&h, &Method::GET, "h/p", now), None, "{value}");
        }
    }

    /// Found by the `hop` fuzz target (`fuzz/regressions/hop/`): a MAC digit `0` changed to
    /// `+` still verified, since each pair was parsed as a signed number.
    #[test]
    fn regression_signed_hex_pairs_are_not_hex() {
        let secret = Secret::new("\x08");
        // The first second whose MAC has a pair starting with `0`.
        let (now, good, mac_at, pair) = (0..100u64)
            .find_map(|t| {
                let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + t);
                let good = secret.sign("", false, &Method::GET, "", now);
                let good = good.to_str().unwrap().to_owned();
                let mac_at = good.find("mac=").unwrap() + 4;
                let mac = &good[mac_at..];
                let pair = (0..mac.len()).step_by(2).find(|&i| &mac[i..=i] == "0")?;
                Some((now, good, mac_at, pair))
            })
            .unwrap();
        let mut signed = good.as_bytes().to_vec();
        signed[mac_at + pair] = b'+';
        let h = headers(HeaderValue::from_bytes(&signed).unwrap());
        assert_eq!(secret.verify(&h, &Method::GET, "", now), None);
        assert_eq!(hex_decode("+a"), None);
        assert_eq!(hex_decode("-0"), None);
        assert_eq!(hex_decode("0aFf"), Some(vec![0x0a, 0xff]));
    }

    #[test]
    fn hops_are_signed_and_a_header_without_them_is_one_peer_hop() {
        let secret = Secret::new("0123456789abcdef");
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for hops in [
            Hops::PEER,
            Hops {
                peer: false,
                shield: true,
            },
            Hops {
                peer: true,
                shield: true,
            },
        ] {
            let h = headers(secret.sign_hops("a:1", false, hops, &Method::GET, "h/p", now));
            let hop = secret
                .verify(&h, &Method::GET, "h/p", now)
                .expect("verifies");
            assert_eq!(hop.hops, hops);
        }
        // As a node from before shields signs: no hops, and none in the MAC.
        let ts = unix(now);
        let mac = secret.mac(&message("a:1", "http", ts, None, &Method::GET, "h/p"));
        let old = format!("from=\"a:1\"; proto=http; ts={ts}; mac={mac}");
        let h = headers(HeaderValue::from_str(&old).unwrap());
        let hop = secret
            .verify(&h, &Method::GET, "h/p", now)
            .expect("verifies");
        assert_eq!(hop.hops, Hops::PEER);
        // Adding hops to it breaks the MAC.
        let upgraded = old.replace("; mac=", "; hops=p; mac=");
        let h = headers(HeaderValue::from_str(&upgraded).unwrap());
        assert_eq!(secret.verify(&h, &Method::GET, "h/p", now), None);
    }

    #[test]
    fn body_macs() {
        let secret = Secret::new("0123456789abcdef");
        let mac = secret.mac("{\"urls\":[]}");
        assert!(secret.verify_mac(b"{\"urls\":[]}", &mac));
        assert!(!secret.verify_mac(b"{\"urls\":[1]}", &mac));
        assert!(!secret.verify_mac(b"{\"urls\":[]}", "zz"));
        assert!(!Secret::new("another-secret!!").verify_mac(b"{\"urls\":[]}", &mac));
    }
}
