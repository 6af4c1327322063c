//! The textual forms of durations (`20m`, `1.5s`, `0`) and byte sizes (`5MiB`) used by
//! settings and API fields.

use std::time::Duration;

/// Why a duration or size string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The string is empty.
    #[error("empty value")]
    Empty,
    /// The number part is not an integer or a decimal.
    #[error("\"{0}\" is not a number followed by a unit")]
    NotANumber(String),
    /// The unit is missing or not one of the allowed units.
    #[error("\"{value}\" has no valid unit; use one of {units}")]
    BadUnit {
        /// The whole value.
        value: String,
        /// The units accepted.
        units: &'static str,
    },
    /// The value does not fit.
    #[error("\"{0}\" is too large")]
    TooLarge(String),
}

const DURATION_UNITS: &str = "ms, s, m, h, d (for example 1.5s or 20m)";
const SIZE_UNITS: &str = "B, KB, KiB, MB, MiB, GB, GiB (for example 5MiB)";

/// Splits `"1.5s"` into `("1.5", "s")` and checks the number's shape: digits with at most
/// one interior decimal point, no sign, no exponent.
fn split_number(value: &str) -> Result<(&str, &str), ParseError> {
    let value_trimmed = value.trim();
    if value_trimmed.is_empty() {
        return Err(ParseError::Empty);
    }
    let end = value_trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value_trimmed.len());
    let (number, unit) = value_trimmed.split_at(end);
    let well_formed = !number.is_empty()
        && number.matches('.').count() <= 1
        && !number.starts_with('.')
        && !number.ends_with('.');
    if !well_formed {
        return Err(ParseError::NotANumber(value.to_owned()));
    }
    Ok((number, unit))
}

/// Multiplies a decimal string by a whole factor without going through floating point
/// for the integer part, so `1.5s` is exactly 1,500 ms.
fn scale(number: &str, factor: u128, value: &str) -> Result<u128, ParseError> {
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let int: u128 = int_part
        .parse()
        .map_err(|_| ParseError::TooLarge(value.to_owned()))?;
    let mut total = int
        .checked_mul(factor)
        .ok_or_else(|| ParseError::TooLarge(value.to_owned()))?;
    let frac_digits: String = frac_part.chars().take(18).collect();
    if !frac_digits.is_empty() {
        let frac: u128 = frac_digits.parse().unwrap_or(0);
        total += frac * factor / 10u128.pow(frac_digits.len() as u32);
    }
    Ok(total)
}

/// Parses a duration: an integer or decimal with one suffix `ms`, `s`, `m`, `h`, `d`;
/// a bare `0` is also accepted.
pub fn parse_duration(value: &str) -> Result<Duration, ParseError> {
    let (number, unit) = split_number(value)?;
    let nanos_per_unit: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        "" if number.bytes().all(|b| b == b'0' || b == b'.') => 0,
        _ => {
            return Err(ParseError::BadUnit {
                value: value.to_owned(),
                units: DURATION_UNITS,
            })
        }
    };
    let nanos = scale(number, nanos_per_unit, value)?;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| ParseError::TooLarge(value.to_owned()))?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// Renders a duration in the shortest exact form `parse_duration` reads back.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Parses a byte size: an integer or decimal with an optional unit `B`, `KB`, `KiB`,
/// `MB`, `MiB`, `GB`, `GiB` (no unit means bytes).
pub fn parse_byte_size(value: &str) -> Result<u64, ParseError> {
    let (number, unit) = split_number(value)?;
    let factor: u128 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        _ => {
            return Err(ParseError::BadUnit {
                value: value.to_owned(),
                units: SIZE_UNITS,
            })
        }
    };
    let bytes = scale(number, factor, value)?;
    u64::try_from(bytes).map_err(|_| ParseError::TooLarge(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("20m").unwrap(), Duration::from_secs(1200));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("3d").unwrap(), Duration::from_secs(259_200));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn refuses_malformed_durations() {
        for bad in [
            "",
            "s",
            "10",
            "1.5",
            "-1s",
            "1e3s",
            "1.s",
            ".5s",
            "1..5s",
            "5 min",
            "5sec",
            "10ss",
            "1,5s",
            "99999999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn formats_round_trip() {
        for text in ["0s", "250ms", "1500ms", "20m", "2h", "3d", "61s"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }

    #[test]
    fn parses_byte_sizes() {
        assert_eq!(parse_byte_size("5MiB").unwrap(), 5 * 1024 * 1024);
        assert_eq!(parse_byte_size("1KB").unwrap(), 1000);
        assert_eq!(parse_byte_size("1.5KiB").unwrap(), 1536);
        assert_eq!(parse_byte_size("123").unwrap(), 123);
        assert!(parse_byte_size("5 parsecs").is_err());
        assert!(parse_byte_size("MiB").is_err());
    }
}
