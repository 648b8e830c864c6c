//! Human-friendly sizes and durations.
//!
//! Operators write `"64MiB"` and `"30s"`, not `67108864` and `30000`. Both
//! types implement `Deserialize` directly (rather than being parsed after
//! deserialisation) so that a bad value fails inside toml's deserializer,
//! which then attaches the value's own span to the error: the operator is
//! pointed at the exact line and column without any bookkeeping here.
//!
//! Parsing is deliberately strict (exact unit spelling, no stray
//! whitespace around the value): a typo should be an error that lists the
//! accepted forms, not a silently different number.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// What a size may look like; appended to every size error.
const SIZE_FORMS: &str = "use an integer number of bytes or a string like \"512B\", \
     \"64KiB\", \"1.5GiB\" or \"100 MB\" (units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)";

/// What a duration may look like; appended to every duration error.
const DURATION_FORMS: &str = "use an integer number of seconds or a string like \"500ms\", \
     \"30s\", \"5m\", \"1h\" or \"1d\" (units: ms, s, m, h, d)";

/// Longest accepted duration (100 years). Far beyond any sane timeout, yet
/// small enough that `Instant::now() + d` can never overflow in the node.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

/// Size units and their multipliers, matched case-sensitively.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

/// Duration units and their length in milliseconds.
const DURATION_UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

/// Most fractional digits accepted in a size ("1.5GiB"); more is a typo.
const MAX_FRACTION_DIGITS: usize = 18;

/// A number of bytes, written in the file as an integer or `"64MiB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ByteSize(pub u64);

/// A duration, written in the file as integer seconds or `"30s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct HumanDuration(pub Duration);

impl fmt::Display for ByteSize {
    /// Largest binary unit that divides the value exactly, so messages echo
    /// what an operator would have written ("64MiB", "4095B").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const BINARY: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        let unit = BINARY
            .into_iter()
            .find(|&(_, m)| self.0 != 0 && self.0.is_multiple_of(m));
        match unit {
            Some((name, m)) => write!(f, "{}{name}", self.0 / m),
            None => write!(f, "{}B", self.0),
        }
    }
}

/// Parses `"<number>[ ]<unit>"`; decimals allowed except for `B`, rounded
/// down to whole bytes.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a size; {SIZE_FORMS}");
    let (number, unit) = split_number(s).ok_or_else(bad)?;
    let &(_, multiplier) = SIZE_UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .ok_or_else(bad)?;
    let (whole, fraction, digits) = parse_decimal(number).ok_or_else(bad)?;
    if digits > 0 && multiplier == 1 {
        return Err(format!("{s:?}: a number of bytes must be whole"));
    }
    let scale = 10u128.pow(u32::try_from(digits).map_err(|_| bad())?);
    let value = whole
        .checked_mul(u128::from(multiplier))
        .and_then(|w| w.checked_add(fraction * u128::from(multiplier) / scale));
    value
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses `"<integer>[ ]<unit>"` with units ms, s, m, h, d.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration; {DURATION_FORMS}");
    let (number, unit) = split_number(s).ok_or_else(bad)?;
    let &(_, millis) = DURATION_UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .ok_or_else(bad)?;
    if !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let too_long = || format!("{s:?} is too long (the maximum is 36500d)");
    let count: u64 = number.parse().map_err(|_| too_long())?;
    let total = count.checked_mul(millis).ok_or_else(too_long)?;
    checked_duration(Duration::from_millis(total)).ok_or_else(too_long)
}

fn checked_duration(d: Duration) -> Option<Duration> {
    (d <= MAX_DURATION).then_some(d)
}

/// Splits `"1.5 GiB"` into `("1.5", "GiB")`: digits and dots, then at most
/// one space, then a non-empty unit. `None` if either part is missing.
fn split_number(s: &str) -> Option<(&str, &str)> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, rest) = s.split_at(end);
    let unit = rest.strip_prefix(' ').unwrap_or(rest);
    let ok = !number.is_empty() && !unit.is_empty();
    ok.then_some((number, unit))
}

/// `"12.345"` → `(12, 345, 3)`. Rejects `".5"`, `"5."`, `"1.2.3"`.
fn parse_decimal(s: &str) -> Option<(u128, u128, usize)> {
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    let digits_only = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) {
        return None;
    }
    if s.contains('.') && (fraction.is_empty() || fraction.len() > MAX_FRACTION_DIGITS) {
        return None;
    }
    // Digits only, so parsing fails only on overflow: saturate and let the
    // caller's checked arithmetic report "too large".
    let whole = whole.parse().unwrap_or(u128::MAX);
    let frac = if fraction.is_empty() {
        0
    } else {
        fraction.parse().ok()?
    };
    Some((whole, frac, fraction.len()))
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SizeVisitor)
    }
}

struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a size: {SIZE_FORMS}")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
        Ok(ByteSize(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
        u64::try_from(v)
            .map(ByteSize)
            .map_err(|_| E::custom("a size cannot be negative"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
        parse_size(v).map(ByteSize).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = HumanDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a duration: {DURATION_FORMS}")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
        checked_duration(Duration::from_secs(v))
            .map(HumanDuration)
            .ok_or_else(|| E::custom(format!("{v} seconds is too long (the maximum is 36500d)")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
        let secs = u64::try_from(v).map_err(|_| E::custom("a duration cannot be negative"))?;
        self.visit_u64(secs)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
        parse_duration(v).map(HumanDuration).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KI: u64 = 1 << 10;
    const MI: u64 = 1 << 20;
    const GI: u64 = 1 << 30;

    #[test]
    fn sizes() {
        let ok: &[(&str, u64)] = &[
            ("0B", 0),
            ("512B", 512),
            ("1KB", 1_000),
            ("100 MB", 100_000_000),
            ("2GB", 2_000_000_000),
            ("3TB", 3_000_000_000_000),
            ("64KiB", 64 * KI),
            ("512MiB", 512 * MI),
            ("1.5GiB", 3 * GI / 2),
            ("0.5KiB", 512),
            ("1.0001KiB", 1024),
            ("4TiB", 4 << 40),
            ("16777215TiB", 16_777_215 << 40),
            ("18446744073709551615B", u64::MAX),
        ];
        for &(input, want) in ok {
            assert_eq!(parse_size(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn bad_sizes() {
        let bad: &[(&str, &str)] = &[
            ("", "is not a size"),
            ("lots", "is not a size"),
            ("64", "is not a size"),
            ("KiB", "is not a size"),
            ("64kib", "is not a size"),
            ("64 kb", "is not a size"),
            ("64k", "is not a size"),
            (" 64KiB", "is not a size"),
            ("64KiB ", "is not a size"),
            ("64  KiB", "is not a size"),
            ("-1KiB", "is not a size"),
            (".5KiB", "is not a size"),
            ("5.KiB", "is not a size"),
            ("1.2.3KiB", "is not a size"),
            ("1.5B", "must be whole"),
            ("16777216TiB", "too large"),
            ("18446744073709551616B", "too large"),
            ("99999999999999999999999999999999999999999TiB", "too large"),
            ("1.0000000000000000001KiB", "is not a size"),
        ];
        for &(input, want) in bad {
            let err = parse_size(input).expect_err(input);
            assert!(err.contains(want), "{input}: {err}");
        }
        assert!(parse_size("lots").unwrap_err().contains("64KiB"));
    }

    #[test]
    fn durations() {
        let ok: &[(&str, Duration)] = &[
            ("0s", Duration::ZERO),
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3_600)),
            ("1d", Duration::from_secs(86_400)),
            ("10 s", Duration::from_secs(10)),
            ("36500d", MAX_DURATION),
        ];
        for &(input, want) in ok {
            assert_eq!(parse_duration(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn bad_durations() {
        let bad: &[(&str, &str)] = &[
            ("", "is not a duration"),
            ("30", "is not a duration"),
            ("soon", "is not a duration"),
            ("1.5s", "is not a duration"),
            ("30S", "is not a duration"),
            ("30sec", "is not a duration"),
            ("1w", "is not a duration"),
            ("-1s", "is not a duration"),
            ("36501d", "too long"),
            ("18446744073709551615d", "too long"),
            ("99999999999999999999999s", "too long"),
        ];
        for &(input, want) in bad {
            let err = parse_duration(input).expect_err(input);
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn display_sizes() {
        let cases: &[(u64, &str)] = &[
            (0, "0B"),
            (4095, "4095B"),
            (4 * KI, "4KiB"),
            (64 * MI, "64MiB"),
            (3 * GI / 2, "1536MiB"),
            (2 << 40, "2TiB"),
        ];
        for &(bytes, want) in cases {
            assert_eq!(ByteSize(bytes).to_string(), want);
        }
    }

    #[derive(Debug, Deserialize)]
    struct Probe {
        size: Option<ByteSize>,
        time: Option<HumanDuration>,
    }

    #[test]
    fn deserialize_from_toml() {
        let cases: &[(&str, Option<u64>, Option<u64>)] = &[
            ("size = 1024", Some(1024), None),
            ("size = \"1KiB\"", Some(1024), None),
            ("time = 90", None, Some(90_000)),
            ("time = \"90s\"", None, Some(90_000)),
        ];
        for &(text, size, millis) in cases {
            let probe: Probe = toml::from_str(text).expect(text);
            assert_eq!(probe.size.map(|s| s.0), size, "{text}");
            let got = probe.time.map(|t| t.0);
            assert_eq!(got, millis.map(Duration::from_millis), "{text}");
        }
        let errors: &[(&str, &str)] = &[
            ("size = -1", "cannot be negative"),
            ("size = 1.5", "a size: use an integer"),
            ("time = -1", "cannot be negative"),
            ("time = true", "a duration: use an integer"),
        ];
        for &(text, want) in errors {
            let err = toml::from_str::<Probe>(text).expect_err(text);
            assert!(err.message().contains(want), "{text}: {}", err.message());
        }
    }
}
