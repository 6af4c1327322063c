//! Request rates of the rate-limit settings: `500/min`, `200/s`, `10/1.5s` — a count of
//! requests per period.

use crate::duration::parse_duration;
use std::fmt;
use std::time::Duration;

/// At most `count` requests per `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed in one period.
    pub count: u32,
    /// The period.
    pub period: Duration,
}

/// Why a rate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{0}\" is not a rate: use COUNT/PERIOD, e.g. 500/min, 200/s or 10/1.5s")]
pub struct RateError(pub String);

impl Rate {
    /// Parses `COUNT/PERIOD`; the period is `s`, `sec`, `second`, `m`, `min`, `minute`,
    /// `h`, `hour`, or any duration (`1.5s`, `10m`).
    pub fn parse(text: &str) -> Result<Rate, RateError> {
        let fail = || RateError(text.to_owned());
        let (count, period) = text.trim().split_once('/').ok_or_else(fail)?;
        let count: u32 = count.trim().parse().map_err(|_| fail())?;
        let period = match period.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => parse_duration(other).map_err(|_| fail())?,
        };
        if count == 0 || period.is_zero() {
            return Err(fail());
        }
        Ok(Rate { count, period })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}ms", self.count, self.period.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_named_and_numeric_periods() {
        assert_eq!(
            Rate::parse("500/min").unwrap(),
            Rate {
                count: 500,
                period: Duration::from_secs(60)
            }
        );
        assert_eq!(Rate::parse("200/s").unwrap().period, Duration::from_secs(1));
        assert_eq!(
            Rate::parse(" 10 / 1.5s ").unwrap().period,
            Duration::from_millis(1500)
        );
        assert_eq!(Rate::parse("3/hour").unwrap().period, Duration::from_secs(3600));
        let rate = Rate::parse("7/250ms").unwrap();
        assert_eq!(
            Rate::parse(&rate.to_string()).unwrap(),
            rate,
            "renders back to itself"
        );
    }

    #[test]
    fn bad_rates_are_refused_with_the_form_to_use() {
        for bad in ["", "500", "0/min", "5/0s", "x/min", "5/fortnight", "-1/s", "5/"] {
            let err = Rate::parse(bad).expect_err(bad);
            assert!(err.to_string().contains("COUNT/PERIOD"), "{bad}: {err}");
        }
    }
}
