//! The dispatcher's limits in this process: attempts claimed per endpoint URL (at most
//! [`CLAIM_DEPTH`] × `max-in-flight-per-endpoint`), requests in flight per endpoint
//! (`max-in-flight-per-endpoint`), and attempts over all endpoints ([`MAX_IN_FLIGHT`]).
//! A slow endpoint holds only its own permits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Attempts claimed and not yet finished in this process, over all endpoints.
const MAX_IN_FLIGHT: usize = 2048;
/// Attempts claimed per endpoint, as a multiple of `max-in-flight-per-endpoint`.
const CLAIM_DEPTH: usize = 2;

/// The limits of one endpoint URL in this process.
#[derive(Clone)]
struct Endpoint {
    /// Attempts claimed and not yet sent or finished.
    claimed: Arc<Semaphore>,
    /// Requests in flight (`max-in-flight-per-endpoint`).
    sending: Arc<Semaphore>,
}

/// What a claimed attempt holds until its request is over: its place among the
/// endpoint's claimed attempts and the process's, and the endpoint's in-flight limit to
/// wait on.
pub(super) struct Permits {
    _claimed: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
    /// The endpoint's in-flight limit; the attempt takes one of its permits to send.
    pub(super) sending: Arc<Semaphore>,
}

/// Every endpoint's limits, made on first use.
pub(super) struct EndpointLimits {
    per_endpoint: usize,
    endpoints: Mutex<HashMap<String, Endpoint>>,
    in_flight: Arc<Semaphore>,
}

impl EndpointLimits {
    /// Limits with `max-in-flight-per-endpoint` = `per_endpoint`.
    pub(super) fn new(per_endpoint: usize) -> EndpointLimits {
        EndpointLimits {
            per_endpoint,
            endpoints: Mutex::new(HashMap::new()),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    /// A permit for one more attempt to `url`, if its endpoint and the process have room.
    pub(super) fn permits(&self, url: &str) -> Option<Permits> {
        let endpoint = {
            let mut endpoints = self.endpoints.lock().expect("endpoint map");
            let limit = self.per_endpoint;
            endpoints
                .entry(url.to_owned())
                .or_insert_with(|| Endpoint {
                    claimed: Arc::new(Semaphore::new(limit * CLAIM_DEPTH)),
                    sending: Arc::new(Semaphore::new(limit)),
                })
                .clone()
        };
        let claimed = endpoint.claimed.try_acquire_owned().ok()?;
        let global = self.in_flight.clone().try_acquire_owned().ok()?;
        Some(Permits {
            _claimed: claimed,
            _global: global,
            sending: endpoint.sending,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_gets_twice_its_in_flight_limit_and_no_more() {
        let limits = EndpointLimits::new(3);
        let held: Vec<_> = (0..6)
            .map(|_| limits.permits("https://a.test/").unwrap())
            .collect();
        assert!(limits.permits("https://a.test/").is_none());
        assert!(
            limits.permits("https://b.test/").is_some(),
            "another endpoint is not held up"
        );
        assert_eq!(held[0].sending.available_permits(), 3);
        drop(held);
        assert!(limits.permits("https://a.test/").is_some());
    }
}
