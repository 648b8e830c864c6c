//! HTTP-date (RFC 9110 §5.6.7) in all three formats a recipient must accept:
//! IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the obsolete RFC 850 form
//! (`Sunday, 06-Nov-94 08:49:37 GMT`) and ANSI C asctime (`Sun Nov  6 08:49:37 1994`).
//!
//! `httpdate` parses IMF-fixdate and asctime to the letter, but reads RFC 850's two-digit
//! years on a fixed 1970–2069 window, where RFC 9110 asks for one that moves with the clock
//! (a year more than 50 years ahead of `now` is the previous century's). So an RFC 850 date
//! is rewritten here as the IMF-fixdate with the year that rule gives, then parsed like any
//! other. The format is case-sensitive and the day name must be the date's (as `httpdate`
//! checks): an inconsistent date is invalid, and every caller reads an invalid date in the
//! cautious way (an `Expires` already past, a validator that matches nothing).

use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;

const SECS_PER_DAY: u64 = 86_400;

/// The HTTP-date in `value`, or `None` for anything else (RFC 9110 §5.6.7). `now` decides
/// the century of an RFC 850 date's two-digit year.
pub(crate) fn http_date(value: &HeaderValue, now: SystemTime) -> Option<SystemTime> {
    let text = value.to_str().ok()?.trim_matches([' ', '\t']);
    if let Some(imf) = rfc850_as_imf_fixdate(text, now) {
        return httpdate::parse_http_date(&imf?).ok();
    }
    httpdate::parse_http_date(text).ok()
}

/// `None` when `text` is not in the RFC 850 format (it starts with no full day name);
/// `Some(None)` when it is but is malformed.
fn rfc850_as_imf_fixdate(text: &str, now: SystemTime) -> Option<Option<String>> {
    // rfc850-date = day-name-l "," SP date2 SP time-of-day SP GMT
    const DAY_NAMES: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let (day_name, rest) = DAY_NAMES
        .iter()
        .find_map(|name| Some((*name, text.strip_prefix(name)?.strip_prefix(", ")?)))?;
    Some(rfc850_rest(day_name, rest, now))
}

/// `date2 SP time-of-day SP GMT`, with date2 = `day "-" month "-" 2DIGIT`.
fn rfc850_rest(day_name: &str, rest: &str, now: SystemTime) -> Option<String> {
    let b = rest.as_bytes();
    if b.len() != 22 || b[2] != b'-' || b[6] != b'-' || b[9] != b' ' || &b[18..] != b" GMT" {
        return None;
    }
    let (day, month, yy, time) = (
        rest.get(0..2)?,
        rest.get(3..6)?,
        rest.get(7..9)?,
        rest.get(10..18)?,
    );
    let yy = two_digits(yy)?;
    let moment = Moment {
        month: month_number(month)?,
        day: two_digits(day)?,
        secs: time_of_day(time)?,
    };
    let year = rfc850_year(yy, moment, now);
    // httpdate checks the rest: the digits of the time, the day in its month, the day name.
    Some(format!(
        "{}, {day} {month} {year:04} {time} GMT",
        day_name.get(..3)?
    ))
}

/// A point in a year, ordered like the calendar.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Moment {
    month: u32,
    day: u32,
    secs: u32,
}

/// RFC 9110 §5.6.7: "a timestamp that appears to be more than 50 years in the future" is
/// "the most recent year in the past that had the same last two digits": the latest year
/// ending in `yy` whose date is at most 50 years after `now`.
fn rfc850_year(yy: u32, date: Moment, now: SystemTime) -> u64 {
    let (now_year, now_moment) = civil(now);
    let limit = now_year + 50;
    let year = limit - limit % 100 + u64::from(yy);
    if (year, date) > (limit, now_moment) {
        year - 100
    } else {
        year
    }
}

/// Year and moment of `t` (UTC, proleptic Gregorian); instants before 1970 count as 1970.
fn civil(t: SystemTime) -> (u64, Moment) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (year, month, day) = civil_from_days(secs / SECS_PER_DAY);
    // Below 86 400, so it fits.
    let secs = u32::try_from(secs % SECS_PER_DAY).unwrap_or(0);
    (year, Moment { month, day, secs })
}

/// Howard Hinnant's `civil_from_days`, for days since 1970-01-01 (never negative here).
fn civil_from_days(days: u64) -> (u64, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // Both below 32 and 13, so they fit.
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn month_number(name: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let index = MONTHS.iter().position(|m| *m == name)?;
    u32::try_from(index + 1).ok()
}

fn two_digits(s: &str) -> Option<u32> {
    match s.as_bytes() {
        [a @ b'0'..=b'9', b @ b'0'..=b'9'] => Some(u32::from(a - b'0') * 10 + u32::from(b - b'0')),
        _ => None,
    }
}

/// `hour ":" minute ":" second` as seconds into the day.
fn time_of_day(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let field = |i: usize| two_digits(s.get(i..i + 2)?);
    Some(field(0)? * 3600 + field(3)? * 60 + field(6)?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// 1994-11-06T08:49:37Z, RFC 9110's example instant.
    const EXAMPLE: u64 = 784_111_777;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// An instant from its IMF-fixdate.
    fn imf(s: &str) -> SystemTime {
        httpdate::parse_http_date(s).unwrap()
    }

    fn parse(raw: &[u8], now: SystemTime) -> Option<SystemTime> {
        http_date(&HeaderValue::from_bytes(raw).unwrap(), now)
    }

    #[test]
    fn the_three_formats_name_the_same_instant() {
        let now = imf("Wed, 01 Jan 2025 00:00:00 GMT");
        let cases: &[(&[u8], Option<u64>)] = &[
            (b"Sun, 06 Nov 1994 08:49:37 GMT", Some(EXAMPLE)),
            (b"Sunday, 06-Nov-94 08:49:37 GMT", Some(EXAMPLE)),
            (b"Sun Nov  6 08:49:37 1994", Some(EXAMPLE)),
            (b"Sun Nov 06 08:49:37 1994", Some(EXAMPLE)),
            (b"  Sun, 06 Nov 1994 08:49:37 GMT\t", Some(EXAMPLE)),
            (b" Sunday, 06-Nov-94 08:49:37 GMT ", Some(EXAMPLE)),
            (b"Thu, 01 Jan 1970 00:00:00 GMT", Some(0)),
            (b"Thu Jan  1 00:00:00 1970", Some(0)),
            // Not HTTP-dates.
            (b"0", None),
            (b"-1", None),
            (b"", None),
            (b"garbage", None),
            (b"1994-11-06T08:49:37Z", None),
            (b"784111777", None),
            (b"Sun, 06 Nov 1994 08:49:37 UTC", None),
            (b"Sun, 06 Nov 1994 08:49:37", None),
            (b"Sun, 6 Nov 1994 08:49:37 GMT", None),
            (b"Sun, 06 Nov 94 08:49:37 GMT", None),
            (b"Sun, 06 Nov 1994 08:49:37 GMT x", None),
            (b"Sun,  06 Nov 1994 08:49:37 GMT", None),
            // Case-sensitive (RFC 9110 §5.6.7).
            (b"sun, 06 nov 1994 08:49:37 gmt", None),
            (b"SUNDAY, 06-NOV-94 08:49:37 GMT", None),
            (b"sunday, 06-Nov-94 08:49:37 GMT", None),
            // The day name must be the date's.
            (b"Mon, 06 Nov 1994 08:49:37 GMT", None),
            (b"Monday, 06-Nov-94 08:49:37 GMT", None),
            (b"Mon Nov  6 08:49:37 1994", None),
            (b"Sun, 31 Nov 1994 08:49:37 GMT", None),
            (b"Sun, 06 Nov 1994 24:00:00 GMT", None),
            (b"Sun, 06 Nov 1994 08:60:37 GMT", None),
            // Malformed RFC 850 dates.
            (b"Sunday, 06-Nov-1994 08:49:37 GMT", None),
            (b"Sunday, 6-Nov-94 08:49:37 GMT", None),
            (b"Sunday, 06 Nov 94 08:49:37 GMT", None),
            (b"Sunday, 06-nov-94 08:49:37 GMT", None),
            (b"Sunday, 06-Nov-9x 08:49:37 GMT", None),
            (b"Sunday, 06-Nov-94 08:49:3x GMT", None),
            (b"Sunday, 06-Nov-94 08.49.37 GMT", None),
            (b"Sunday,06-Nov-94 08:49:37 GMT", None),
            (b"Sunday, 06-Nov-94 08:49:37 UTC", None),
            (b"Sunday, ", None),
            (b"Sun, 06-Nov-94 08:49:37 GMT", None),
            (b"\xff", None),
        ];
        for (raw, want) in cases {
            assert_eq!(
                parse(raw, now),
                want.map(at),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn rfc850_years_slide_with_the_clock() {
        // (date, now, the year it means)
        let cases: &[(&[u8], &str, &str)] = &[
            // 2069 is 44 years ahead of 2025: this century.
            (
                b"Friday, 01-Mar-69 00:00:00 GMT",
                "Wed, 01 Jan 2025 00:00:00 GMT",
                "Fri, 01 Mar 2069 00:00:00 GMT",
            ),
            // March 2075 is within 50 years of June 2025 too, where a fixed 1970 pivot says
            // 1975...
            (
                b"Friday, 01-Mar-75 00:00:00 GMT",
                "Sun, 01 Jun 2025 00:00:00 GMT",
                "Fri, 01 Mar 2075 00:00:00 GMT",
            ),
            // ...but not of January 2025, nor is 2076 of June 2025: the past century.
            (
                b"Saturday, 01-Mar-75 00:00:00 GMT",
                "Wed, 01 Jan 2025 00:00:00 GMT",
                "Sat, 01 Mar 1975 00:00:00 GMT",
            ),
            (
                b"Monday, 01-Mar-76 00:00:00 GMT",
                "Sun, 01 Jun 2025 00:00:00 GMT",
                "Mon, 01 Mar 1976 00:00:00 GMT",
            ),
            (
                b"Sunday, 06-Nov-94 08:49:37 GMT",
                "Wed, 01 Jan 2025 00:00:00 GMT",
                "Sun, 06 Nov 1994 08:49:37 GMT",
            ),
            // Exactly 50 years ahead is not more than 50: this century, to the second.
            (
                b"Tuesday, 01-Jan-75 00:00:00 GMT",
                "Wed, 01 Jan 2025 00:00:00 GMT",
                "Tue, 01 Jan 2075 00:00:00 GMT",
            ),
            (
                b"Wednesday, 01-Jan-75 00:00:01 GMT",
                "Wed, 01 Jan 2025 00:00:00 GMT",
                "Wed, 01 Jan 1975 00:00:01 GMT",
            ),
            // The window moves: in 2080, "31" is 2031, not 2131.
            (
                b"Wednesday, 01-Jan-31 00:00:00 GMT",
                "Mon, 01 Jan 2080 00:00:00 GMT",
                "Wed, 01 Jan 2031 00:00:00 GMT",
            ),
            // ...and in 2090, "39" is 2139.
            (
                b"Thursday, 01-Jan-39 00:00:00 GMT",
                "Sun, 01 Jan 2090 00:00:00 GMT",
                "Thu, 01 Jan 2139 00:00:00 GMT",
            ),
            (
                b"Thursday, 01-Jan-70 00:00:00 GMT",
                "Fri, 01 Jan 1971 00:00:00 GMT",
                "Thu, 01 Jan 1970 00:00:00 GMT",
            ),
        ];
        for (raw, now, want) in cases {
            assert_eq!(
                parse(raw, imf(now)),
                Some(imf(want)),
                "{} at {now}",
                String::from_utf8_lossy(raw)
            );
        }
        // The epoch idiom names a Thursday, which 1 Jan 2070 is not: invalid in 2025, so an
        // `Expires` carrying it is already expired rather than fresh for 45 years.
        let now = imf("Wed, 01 Jan 2025 00:00:00 GMT");
        assert_eq!(parse(b"Thursday, 01-Jan-70 00:00:00 GMT", now), None);
        assert_eq!(
            parse(b"Wednesday, 01-Jan-70 00:00:00 GMT", now),
            Some(imf("Wed, 01 Jan 2070 00:00:00 GMT"))
        );
    }

    #[test]
    fn civil_dates() {
        // (seconds since the epoch, (year, month, day, seconds into the day))
        type Civil = (u64, u32, u32, u32);
        let cases: &[(u64, Civil)] = &[
            (0, (1970, 1, 1, 0)),
            (EXAMPLE, (1994, 11, 6, 8 * 3600 + 49 * 60 + 37)),
            (951_782_400, (2000, 2, 29, 0)),
            (4_107_542_399, (2100, 2, 28, 86_399)),
            (4_107_542_400, (2100, 3, 1, 0)),
            (253_402_300_799, (9999, 12, 31, 86_399)),
        ];
        for (secs, (year, month, day, in_day)) in cases {
            let (y, m) = civil(at(*secs));
            assert_eq!(
                (y, m.month, m.day, m.secs),
                (*year, *month, *day, *in_day),
                "{secs}"
            );
        }
        assert_eq!(civil(UNIX_EPOCH - Duration::from_secs(1)).0, 1970);
    }

    #[test]
    fn far_clocks_never_panic() {
        for now in [
            UNIX_EPOCH,
            at(u64::MAX / 4),
            at(1 << 40),
            UNIX_EPOCH - Duration::from_secs(9),
        ] {
            let _ = parse(b"Sunday, 06-Nov-94 08:49:37 GMT", now);
        }
    }
}
