//! Fixed-window rate limits: `v3-rate-limit` (QuickBooks' throttle per (app, realm) on
//! the `/v3` API, for tests of client back-off) and `api-rate-limit` (per token on
//! `/api/v1`). A fixed window per key: at most `count` requests in each `period`
//! from the key's first request of that window. In this process only (each node counts
//! its own requests).

use ledgerhook_domain::rate::Rate;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Windows kept before old ones are swept (bounds the map under many keys).
const SWEEP_AT: usize = 10_000;

/// Counts requests per key against one [`Rate`].
pub struct Throttle {
    rate: Option<Rate>,
    windows: Mutex<HashMap<(String, String), (Instant, u32)>>,
}

impl Throttle {
    /// A throttle at `rate`, or one that lets everything through.
    pub fn new(rate: Option<Rate>) -> Throttle {
        Throttle {
            rate,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request of (`app_id`, `realm_id`) at `now`; answers how long until the
    /// key's window ends when it is over the rate.
    pub fn check(&self, app_id: &str, realm_id: &str, now: Instant) -> Result<(), Duration> {
        let Some(rate) = self.rate else { return Ok(()) };
        let mut windows = self.windows.lock().expect("throttle windows");
        if windows.len() >= SWEEP_AT {
            windows.retain(|_, (start, _)| now.duration_since(*start) < rate.period);
        }
        let window = windows
            .entry((app_id.to_owned(), realm_id.to_owned()))
            .or_insert((now, 0));
        if now.duration_since(window.0) >= rate.period {
            *window = (now, 0);
        }
        if window.1 >= rate.count {
            return Err(rate.period - now.duration_since(window.0));
        }
        window.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_n_plus_first_request_in_a_window_waits_for_the_next() {
        let throttle = Throttle::new(Some(Rate::parse("3/s").unwrap()));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(throttle.check("app", "1", t0).is_ok());
        }
        let wait = throttle
            .check("app", "1", t0 + Duration::from_millis(400))
            .unwrap_err();
        assert_eq!(wait, Duration::from_millis(600));
        assert!(
            throttle.check("app", "2", t0).is_ok(),
            "another realm has its own window"
        );
        assert!(
            throttle.check("other", "1", t0).is_ok(),
            "another app has its own window"
        );
        assert!(
            throttle.check("app", "1", t0 + Duration::from_secs(1)).is_ok(),
            "a new window"
        );
        assert!(Throttle::new(None).check("app", "1", t0).is_ok());
    }
}
