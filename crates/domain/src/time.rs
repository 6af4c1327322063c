//! Timestamps: milliseconds since the Unix epoch, rendered as RFC 3339 UTC with
//! milliseconds, parsed leniently from every form QuickBooks and its clients use.

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use std::fmt;

/// A point in time with millisecond precision, in UTC.
///
/// Stored as `BIGINT` milliseconds so both database backends order and compare it the
/// same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        Timestamp(Utc::now().timestamp_millis())
    }

    /// Milliseconds since the Unix epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// RFC 3339 UTC with milliseconds: `2026-11-28T15:11:37.000Z`.
    pub fn to_rfc3339(self) -> String {
        match Utc.timestamp_millis_opt(self.0).single() {
            Some(dt) => dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            None => "invalid-timestamp".to_owned(),
        }
    }

    /// Parses a timestamp leniently; see [`parse_lenient`].
    pub fn parse(text: &str) -> Result<Timestamp, TimeParseError> {
        parse_lenient(text)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// A date-time string none of the accepted forms matches.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{0}\" is not a date or date-time (expected e.g. 2026-11-28, 2026-11-28T15:11:37Z or 2015-10-05T14:42:19-0700)")]
pub struct TimeParseError(pub String);

/// Parses every date form seen from QuickBooks and its clients:
///
/// - a date `2026-11-01` (midnight UTC);
/// - a date-time with or without seconds and fractions (`T` or one space between);
/// - an offset `Z`, `±HH:MM`, `±HHMM`, `±HH`, or none (then UTC);
/// - a `+` that arrived as a space because the client did not URL-encode it.
pub fn parse_lenient(text: &str) -> Result<Timestamp, TimeParseError> {
    let fail = || TimeParseError(text.to_owned());
    let s = text.trim();
    if s.len() < 10 || !s.is_char_boundary(10) {
        return Err(fail());
    }
    let (date_part, rest) = s.split_at(10);
    let date = NaiveDate::parse_from_str(date_part, "%Y-%m-%d").map_err(|_| fail())?;
    let (time, offset_secs) = if rest.is_empty() {
        (NaiveTime::MIN, 0)
    } else {
        let rest = rest.strip_prefix(['T', 't', ' ']).ok_or_else(fail)?;
        // After the separator a space can only be a `+` that lost its URL-encoding.
        let rest = rest.replace(' ', "+");
        let split = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
        let (clock, offset) = rest.split_at(split);
        (
            parse_clock(clock).ok_or_else(fail)?,
            parse_offset(offset).ok_or_else(fail)?,
        )
    };
    let naive = date.and_time(time);
    let utc = DateTime::<Utc>::from_naive_utc_and_offset(naive, Utc);
    Ok(Timestamp(utc.timestamp_millis() - i64::from(offset_secs) * 1000))
}

fn parse_clock(clock: &str) -> Option<NaiveTime> {
    ["%H:%M:%S%.f", "%H:%M"]
        .iter()
        .find_map(|format| NaiveTime::parse_from_str(clock, format).ok())
}

/// Seconds east of UTC for `""`, `Z`, `+HH:MM`, `+HHMM` or `+HH`.
fn parse_offset(offset: &str) -> Option<i32> {
    if offset.is_empty() || offset.eq_ignore_ascii_case("z") {
        return Some(0);
    }
    let (sign, digits) = match offset.as_bytes()[0] {
        b'+' => (1, &offset[1..]),
        b'-' => (-1, &offset[1..]),
        _ => return None,
    };
    let digits = digits.replace(':', "");
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        2 => (digits.parse::<i32>().ok()?, 0),
        4 => (digits[..2].parse::<i32>().ok()?, digits[2..].parse::<i32>().ok()?),
        _ => return None,
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 3600 + minutes * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> String {
        parse_lenient(text).unwrap().to_rfc3339()
    }

    #[test]
    fn accepts_every_documented_form() {
        assert_eq!(ts("2026-11-01"), "2026-11-01T00:00:00.000Z");
        assert_eq!(ts("2015-10-05T14:42:19-0700"), "2015-10-05T21:42:19.000Z");
        assert_eq!(ts("2015-12-23T09:00-07:00"), "2015-12-23T16:00:00.000Z");
        assert_eq!(ts("2026-11-28T15:11:37.657Z"), "2026-11-28T15:11:37.657Z");
        assert_eq!(ts("2026-11-28T15:11:37"), "2026-11-28T15:11:37.000Z");
        assert_eq!(ts("2026-11-28T15:11"), "2026-11-28T15:11:00.000Z");
        assert_eq!(ts("2026-11-28T15:11:37 05:30"), "2026-11-28T09:41:37.000Z");
        assert_eq!(ts("2026-11-28T15:11:37+05"), "2026-11-28T10:11:37.000Z");
        assert_eq!(ts("2026-11-28 15:11:37Z"), "2026-11-28T15:11:37.000Z");
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-11-28T25:00",
            "2026-11-28T10:00+99:00",
            "2026-11-28X10:00",
            "2026-11-28T10:00:00+0a:00",
        ] {
            assert!(parse_lenient(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
