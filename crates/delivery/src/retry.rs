//! Retry policies: what a failed attempt leads to (SPEC §2, §3.6–3.7).
//!
//! Waits are simulated time, divided by `time-scale`.

use ledgerhook_domain::Timestamp;
use ledgerhook_store::queue::Decision;
use std::time::Duration;

/// Intuit's current schedule; after the last wait, every 6 hours.
pub const CURRENT_WAITS: [Duration; 8] = [
    Duration::from_secs(10),
    Duration::from_secs(20),
    Duration::from_secs(30),
    Duration::from_secs(5 * 60),
    Duration::from_secs(20 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(4 * 3600),
    Duration::from_secs(6 * 3600),
];

/// A retry policy with its settings.
#[derive(Clone, Debug, PartialEq)]
pub enum RetryPolicy {
    /// `classic`: each wait runs from the end of the previous failed attempt; after the
    /// last, drop and blacklist.
    Classic {
        /// `retry-schedule`.
        schedule: Vec<Duration>,
    },
    /// `current`: [`CURRENT_WAITS`], then every 6 h, until `max-retry-age` after the
    /// first attempt.
    Current {
        /// `max-retry-age`.
        max_age: Duration,
    },
}

impl RetryPolicy {
    /// What the `failures`-th failure (1 for the first) of a notification leads to, at
    /// `now` (the end of the failed attempt), with its first attempt at `first_attempt`.
    pub fn after_failure(
        &self,
        failures: usize,
        first_attempt: Timestamp,
        now: Timestamp,
        time_scale: f64,
    ) -> Decision {
        let real = |d: Duration| d.div_f64(time_scale).as_millis() as i64;
        match self {
            RetryPolicy::Classic { schedule } => match schedule.get(failures.saturating_sub(1)) {
                Some(wait) => Decision::Retry(Timestamp(now.millis() + real(*wait))),
                None => Decision::DropAndBlacklist,
            },
            RetryPolicy::Current { max_age } => {
                if now.millis() - first_attempt.millis() >= real(*max_age) {
                    return Decision::DropAndBlacklist;
                }
                let wait = CURRENT_WAITS
                    .get(failures.saturating_sub(1))
                    .copied()
                    .unwrap_or(CURRENT_WAITS[7]);
                Decision::Retry(Timestamp(now.millis() + real(wait)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classic() -> RetryPolicy {
        RetryPolicy::Classic {
            schedule: vec![
                Duration::from_secs(1200),
                Duration::from_secs(1800),
                Duration::from_secs(3000),
            ],
        }
    }

    #[test]
    fn classic_waits_then_drops() {
        let now = Timestamp(1_000_000);
        assert_eq!(
            classic().after_failure(1, now, now, 1.0),
            Decision::Retry(Timestamp(1_000_000 + 1_200_000))
        );
        assert_eq!(
            classic().after_failure(3, now, now, 1.0),
            Decision::Retry(Timestamp(1_000_000 + 3_000_000))
        );
        assert_eq!(
            classic().after_failure(4, now, now, 1.0),
            Decision::DropAndBlacklist
        );
        // time-scale 60: the 20-minute wait takes 20 s.
        assert_eq!(
            classic().after_failure(1, now, now, 60.0),
            Decision::Retry(Timestamp(1_000_000 + 20_000))
        );
    }

    #[test]
    fn current_follows_intuits_schedule_until_the_age_limit() {
        let policy = RetryPolicy::Current {
            max_age: Duration::from_secs(3 * 86_400),
        };
        let first = Timestamp(0);
        assert_eq!(
            policy.after_failure(1, first, Timestamp(5), 1.0),
            Decision::Retry(Timestamp(10_005))
        );
        assert_eq!(
            policy.after_failure(4, first, Timestamp(0), 1.0),
            Decision::Retry(Timestamp(300_000))
        );
        assert_eq!(
            policy.after_failure(20, first, Timestamp(1), 1.0),
            Decision::Retry(Timestamp(1 + 6 * 3_600_000))
        );
        assert_eq!(
            policy.after_failure(20, first, Timestamp(3 * 86_400_000), 1.0),
            Decision::DropAndBlacklist
        );
    }
}
