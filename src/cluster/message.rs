//! The one signed format of what a node asks of another for itself: probes, purges and
//! invalidations, the purge-log exchange, replica pushes.
//!
//! `Outpost-Signature: from="10.0.0.5:8080"; ts=1700000000123; mac=<hex>` where the MAC is
//! HMAC-SHA256 with the cluster secret over the sender, the time (milliseconds since the Unix
//! epoch), the method, the path, the query and the SHA-256 of the body. Nothing of a message
//! that changes what it does is outside the MAC: another path, an added `?cascade`, another
//! body or another time breaks it. A message more than [`MAX_SKEW`] away from the receiver's
//! clock is refused, so a captured one stops working after five minutes; within that window a
//! repeat is harmless by design (a purge carries an identity the receiver remembers, a replica
//! push carries the time its object was fetched, probes and log requests change nothing).
//!
//! Hops (a client's request forwarded to the key's owner, [`super::hop`]) carry their own
//! header, because what they sign is the client's request (scheme, authority, the hops taken)
//! rather than a body.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::hop::Secret;

pub(crate) const SIGNATURE: HeaderName = HeaderName::from_static("outpost-signature");

/// How far a message's time may be from the receiver's clock.
pub(crate) const MAX_SKEW: Duration = Duration::from_secs(300);

/// Who signed a message that verified, and when (milliseconds since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Signed {
    pub(crate) from: String,
    pub(crate) at_ms: u64,
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    #[error("unsigned: no Outpost-Signature")]
    Missing,
    #[error("malformed Outpost-Signature")]
    Malformed,
    #[error("signed {0} s away from this node's clock (at most 300 s)")]
    OutOfWindow(u64),
    #[error("the signature does not verify (another secret, or the message was changed)")]
    BadMac,
}

/// What a message is: method, path, query and body, each under the MAC.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Message<'a> {
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) body: &'a [u8],
}

impl Message<'_> {
    fn text(&self, from: &str, ts: u64) -> String {
        // `?` before the query tells "no query" from an empty one.
        let query = self.query.map(|q| format!("?{q}")).unwrap_or_default();
        let body = crate::hex::encode(digest(&SHA256, self.body).as_ref());
        format!(
            "outpost-message\n{from}\n{ts}\n{}\n{}\n{query}\n{body}",
            self.method, self.path
        )
    }
}

impl Secret {
    /// The signature of `message` sent by `from` at `at_ms`.
    pub(crate) fn sign_message(&self, from: &str, message: Message<'_>, at_ms: u64) -> HeaderValue {
        let mac = self.mac(&message.text(from, at_ms));
        let value = format!("from=\"{from}\"; ts={at_ms}; mac={mac}");
        // Addresses, digits and hex: always a valid header value.
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Whether `headers` carry a signature of `message` that verifies now.
    pub(crate) fn verify_message(
        &self,
        headers: &HeaderMap,
        message: Message<'_>,
        now: SystemTime,
    ) -> Result<Signed, Refused> {
        let value = headers.get(&SIGNATURE).ok_or(Refused::Missing)?;
        let value = value.to_str().map_err(|_| Refused::Malformed)?;
        let (mut from, mut ts, mut mac) = (None, None, None);
        for part in value.split(';') {
            let (name, v) = part.trim().split_once('=').ok_or(Refused::Malformed)?;
            match name {
                // Quoted exactly once (an address holds no quote).
                "from" if from.is_none() => {
                    let unquoted = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                    from = Some(unquoted.ok_or(Refused::Malformed)?);
                }
                "ts" if ts.is_none() => ts = Some(digits(v).ok_or(Refused::Malformed)?),
                "mac" if mac.is_none() => mac = Some(v),
                _ => return Err(Refused::Malformed),
            }
        }
        let (Some(from), Some(ts), Some(mac)) = (from, ts, mac) else {
            return Err(Refused::Malformed);
        };
        if from.contains('"') {
            return Err(Refused::Malformed);
        }
        let skew = unix_ms(now).abs_diff(ts);
        if skew > MAX_SKEW.as_millis() as u64 {
            return Err(Refused::OutOfWindow(skew / 1000));
        }
        if !self.verify_mac(message.text(from, ts).as_bytes(), mac) {
            return Err(Refused::BadMac);
        }
        Ok(Signed {
            from: from.to_owned(),
            at_ms: ts,
        })
    }
}

/// The `Outpost-Signature` a node at `from` sends with a message at `at_ms`: what a tool (or
/// a test) outside the node needs to speak to one.
pub fn signature(
    secret: &Secret,
    from: &str,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
    at_ms: u64,
) -> HeaderValue {
    let message = Message {
        method,
        path,
        query,
        body,
    };
    secret.sign_message(from, message, at_ms)
}

/// Plain decimal digits only (no sign, no spaces), at most 20 of them.
fn digits(v: &str) -> Option<u64> {
    let plain = !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit());
    plain.then(|| v.parse().ok()).flatten()
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_764_000_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(NOW_MS)
    }

    fn message(body: &[u8]) -> Message<'_> {
        Message {
            method: &Method::POST,
            path: "/_outpost/purge",
            query: None,
            body,
        }
    }

    fn signed(value: HeaderValue) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE, value);
        headers
    }

    #[test]
    fn a_signed_message_verifies_with_its_sender_and_time() {
        let secret = Secret::new("a-long-enough-secret");
        let value = secret.sign_message("10.0.0.5:8080", message(b"{}"), NOW_MS);
        assert_eq!(
            secret.verify_message(&signed(value), message(b"{}"), now()),
            Ok(Signed {
                from: "10.0.0.5:8080".into(),
                at_ms: NOW_MS
            })
        );
    }

    #[test]
    fn anything_changed_is_refused() {
        let secret = Secret::new("a-long-enough-secret");
        let headers = signed(secret.sign_message("n", message(b"{}"), NOW_MS));
        let bad = |m: Message<'_>| secret.verify_message(&headers, m, now());
        assert_eq!(bad(message(b"{} ")), Err(Refused::BadMac));
        let cascade = Message {
            query: Some("cascade"),
            ..message(b"{}")
        };
        assert_eq!(bad(cascade), Err(Refused::BadMac));
        let empty_query = Message {
            query: Some(""),
            ..message(b"{}")
        };
        assert_eq!(bad(empty_query), Err(Refused::BadMac));
        let other_path = Message {
            path: "/_outpost/invalidate",
            ..message(b"{}")
        };
        assert_eq!(bad(other_path), Err(Refused::BadMac));
        let other_method = Message {
            method: &Method::PUT,
            ..message(b"{}")
        };
        assert_eq!(bad(other_method), Err(Refused::BadMac));
        let other_secret = Secret::new("another-long-secret");
        assert_eq!(
            other_secret.verify_message(&headers, message(b"{}"), now()),
            Err(Refused::BadMac)
        );
    }

    #[test]
    fn a_message_outside_the_window_is_refused() {
        let secret = Secret::new("a-long-enough-secret");
        let headers = signed(secret.sign_message("n", message(b""), NOW_MS));
        let at = |offset_s: i64| {
            let t = if offset_s >= 0 {
                now() + Duration::from_secs(offset_s as u64)
            } else {
                now() - Duration::from_secs(offset_s.unsigned_abs())
            };
            secret.verify_message(&headers, message(b""), t)
        };
        assert!(at(300).is_ok());
        assert!(at(-300).is_ok());
        assert_eq!(at(301), Err(Refused::OutOfWindow(301)));
        assert_eq!(at(-400), Err(Refused::OutOfWindow(400)));
    }

    #[test]
    fn malformed_signatures_are_refused_without_a_panic() {
        let secret = Secret::new("a-long-enough-secret");
        assert_eq!(
            secret.verify_message(&HeaderMap::new(), message(b""), now()),
            Err(Refused::Missing)
        );
        for value in [
            "",
            "from=\"n\"; ts=1",
            "from=n; ts=1; mac=00",
            "from=\"n\"; ts=+1; mac=00",
            "from=\"n\"; ts=1; ts=2; mac=00",
            "from=\"n\"; ts=1; mac=00; extra=1",
            "from=\"n\"\"; ts=1; mac=00",
        ] {
            let headers = signed(HeaderValue::from_str(value).expect("value"));
            assert_eq!(
                secret.verify_message(&headers, message(b""), now()),
                Err(Refused::Malformed),
                "{value}"
            );
        }
    }
}
