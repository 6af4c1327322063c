//! The dispatcher: claims due notifications and makes their attempts.
//!
//! It wakes on a signal (a notification was made or released, an attempt finished) or at
//! the next due time, with a bounded safety sweep for work another node queued. Every
//! claim takes the (configuration, realm) stream's lease in the database, so at most one
//! attempt per stream is in flight across all nodes; attempts run in tasks of their own,
//! limited per endpoint URL, so a slow endpoint holds only its own permits.
//!
//! A round may claim up to twice `max-in-flight-per-endpoint` per
//! endpoint: the claimed attempts beyond the in-flight limit wait in their tasks for a
//! request to finish. Claiming ahead keeps rounds large when one endpoint takes all the
//! traffic; the lease covers the wait (one attempt's time at most) and the attempt.
//!
//! This module holds the claim loop (a [`ledgerhook_background::Worker`]) and the
//! attempt; `limits.rs` the per-endpoint limiter, `recorder.rs` the grouped recording of
//! results and parkings, `signer.rs` the signing with its secrets cache.

mod attempt;
mod limits;
mod recorder;
mod signer;

use crate::outbound::{Attempt, OutboundClient, OutboundRequest};
use crate::retry::RetryPolicy;
use crate::secrets::{SecretBox, SecretError};
use crate::signature::{random_uuid, BadSecret};
use ledgerhook_background::{Status, Step, WorkError, Worker};
use ledgerhook_domain::{Ordering, Timestamp};
use ledgerhook_store::notifications::Notification;
use ledgerhook_store::queue::Decision;
use ledgerhook_store::{Store, StoreError};
use limits::{EndpointLimits, Permits};
use recorder::{attempt_result, Recorder};
use signer::Signer;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

/// The longest the dispatcher sleeps without looking at the queue.
const SAFETY_SWEEP: Duration = Duration::from_secs(10);
/// Candidates looked at per round.
const ROUND: u32 = 256;
/// How much longer than `delivery-timeout` a lease lasts.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// How long an attempt is in flight before its stream's due notifications are parked
/// until its lease ends; each later parking (for notifications made meanwhile) waits
/// twice as long as the one before.
const PARK_AFTER: Duration = Duration::from_millis(250);

/// Why an attempt could not be made (nothing was sent).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The app has no such secret (its rows are incomplete).
    #[error("app {app_id} has no {name}")]
    MissingSecret {
        /// The app.
        app_id: String,
        /// Which secret.
        name: &'static str,
    },
    /// A stored secret could not be opened (a wrong or missing `secret-key`).
    #[error("cannot open a stored signing secret")]
    Sealed(#[source] SecretError),
    /// A stored signing secret is not a Standard Webhooks secret.
    #[error("cannot sign")]
    Signing(#[from] BadSecret),
}

/// Everything the dispatcher needs.
pub struct DispatcherOptions {
    /// The database.
    pub store: Store,
    /// The guarded client.
    pub client: OutboundClient,
    /// Opens stored signing secrets.
    pub secrets: SecretBox,
    /// What failures lead to.
    pub retry: RetryPolicy,
    /// `time-scale`.
    pub time_scale: f64,
    /// The retry policy's default ordering.
    pub default_ordering: Ordering,
    /// `max-in-flight-per-endpoint`.
    pub max_in_flight_per_endpoint: usize,
    /// `delivery-timeout`.
    pub delivery_timeout: Duration,
    /// Woken when there may be work.
    pub wake: Arc<Notify>,
    /// Counters for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The runtime the attempt recorder runs on (attempts themselves run on the runtime
    /// that creates the dispatcher).
    pub pipeline: Handle,
}

/// Notifications of one stream a task sends in a row before it releases the stream.
const CONTINUE_AT_MOST: usize = 100;
/// A round that started nothing and took at least this long makes the next one wait as
/// long again (see [`quiet_after`]); cheaper rounds are not paced.
const PACE_FROM: Duration = Duration::from_millis(10);
/// The longest such a wait lasts.
const PACE_AT_MOST: Duration = Duration::from_millis(250);

/// The dispatcher; shared by the background loop and manual sends.
pub struct Dispatcher {
    options: DispatcherOptions,
    owner: String,
    limits: EndpointLimits,
    recorder: Recorder,
    signer: Signer,
    attempts: Handle,
    /// Set when the claim loop stops: attempts finish, streams are not continued.
    stopping: std::sync::atomic::AtomicBool,
}

/// What one claim round did.
#[derive(Default)]
struct Round {
    /// Attempts started.
    started: usize,
    /// Due candidates whose endpoint had no room.
    blocked: usize,
    /// The claim query's limit was reached: more may be due.
    more: bool,
}

impl Dispatcher {
    /// A dispatcher with a fresh lease owner id. Must be called inside the runtime where
    /// attempts are to run.
    pub fn new(options: DispatcherOptions) -> Arc<Dispatcher> {
        Arc::new(Dispatcher {
            owner: format!("node-{}", random_uuid()),
            limits: EndpointLimits::new(options.max_in_flight_per_endpoint),
            recorder: Recorder::start(options.store.clone(), &options.pipeline),
            signer: Signer::new(options.store.clone(), options.secrets.clone()),
            attempts: Handle::current(),
            stopping: std::sync::atomic::AtomicBool::new(false),
            options,
        })
    }

    /// This process's lease owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Signs and sends `notification` to `url` once.
    pub async fn send(&self, notification: &Notification, url: &str) -> Result<Attempt, SendError> {
        let headers = self.signer.headers(notification).await?;
        let request = OutboundRequest {
            url,
            headers: &headers,
            body: &notification.payload,
        };
        let attempt = self.options.client.send(&request).await;
        self.options.metrics.attempt(
            attempt.outcome,
            attempt.duration_ms,
            &notification.app_id,
            notification.environment.as_str(),
        );
        Ok(attempt)
    }

    /// Records a manual send's attempt (a redelivery or test) with `decision`.
    pub async fn record(
        &self,
        notification: &Notification,
        attempt: &Attempt,
        decision: &Decision,
    ) -> Result<(), StoreError> {
        self.recorder
            .submit(attempt_result(notification, attempt, decision, None))
            .await?;
        Ok(())
    }

    /// Claims what is due and starts its attempts.
    async fn round(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> Result<Round, StoreError> {
        let now = Timestamp::now();
        let until = Timestamp(now.millis() + self.lease().as_millis() as i64);
        let claimable = self
            .options
            .store
            .claimable(now, self.options.default_ordering, ROUND)
            .await?;
        let more = claimable.more;
        let (mut chosen, mut permits, mut blocked) = (Vec::new(), Vec::new(), 0);
        for candidate in claimable.candidates {
            match self.limits.permits(&candidate.url) {
                Some(p) => {
                    chosen.push(candidate);
                    permits.push(p);
                }
                None => blocked += 1,
            }
        }
        if chosen.is_empty() {
            return Ok(Round {
                started: 0,
                blocked,
                more,
            });
        }
        let claimed = self.options.store.claim(&chosen, &self.owner, now, until).await?;
        let mut started = 0;
        for ((candidate, permit), won) in chosen.into_iter().zip(permits).zip(claimed) {
            let Some(state) = won else { continue };
            started += 1;
            let me = self.clone();
            tasks.spawn_on(me.attempt(candidate, state, permit, until), &self.attempts);
        }
        Ok(Round {
            started,
            blocked,
            more,
        })
    }

    /// How long to sleep after a round that found nothing more to start; `looked_at` is no
    /// later than the time the round looked at the queue, so nothing due after what it
    /// saw is missed. With `blocked` candidates (an endpoint at its in-flight limit), a
    /// short sleep: a finished attempt frees room and wakes the loop sooner.
    async fn sleep_for(&self, blocked: bool, looked_at: Timestamp) -> Result<Duration, StoreError> {
        if blocked {
            return Ok(Duration::from_millis(200));
        }
        Ok(match self.options.store.next_attempt_due(looked_at).await? {
            Some(due) => {
                let wait = due.millis() - Timestamp::now().millis();
                Duration::from_millis(wait.max(0) as u64).clamp(Duration::from_millis(5), SAFETY_SWEEP)
            }
            None => SAFETY_SWEEP,
        })
    }

    /// Runs the claim loop until `shutdown` turns true, then lets attempts in flight
    /// finish (up to `delivery-timeout` and a second) and releases the leases of any
    /// that did not.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>, status: Status) {
        if let Err(err) = self.options.store.release_orphaned_leases().await {
            tracing::error!(error = %err, "releasing leases left by a previous process failed");
        }
        let wake = self.options.wake.clone();
        let worker = ClaimLoop {
            dispatcher: self,
            tasks: JoinSet::new(),
            quiet_until: None,
        };
        ledgerhook_background::run(worker, Some(wake), shutdown, status).await;
    }
}

/// How long the claim loop stays quiet after a round that took `took` and started
/// `started` attempts, however often it is woken meanwhile. A round that started nothing
/// found every due stream leased (sent by a task already), only endpoints at their
/// in-flight limit, or nothing due; when such a round was expensive — a claim query
/// walking a large backlog of leased streams' rows — the next one waits as long again,
/// so that empty rounds take at most about half the loop's time and of the database's. Ingestion and every finished task wake the loop; without
/// this, a backlog made it claim back to back, finding nothing most times.
fn quiet_after(took: Duration, started: usize) -> Option<Duration> {
    (started == 0 && took >= PACE_FROM).then(|| took.min(PACE_AT_MOST))
}

/// The claim loop: one round of claims per step; its attempts run as tasks of their own.
struct ClaimLoop {
    dispatcher: Arc<Dispatcher>,
    tasks: JoinSet<()>,
    /// No round before this instant (see [`quiet_after`]).
    quiet_until: Option<tokio::time::Instant>,
}

impl Worker for ClaimLoop {
    fn name(&self) -> &'static str {
        "dispatcher"
    }

    async fn work(&mut self) -> Result<Step, WorkError> {
        if let Some(until) = self.quiet_until.take() {
            tokio::time::sleep_until(until).await;
        }
        while self.tasks.try_join_next().is_some() {}
        let looked_at = Timestamp::now();
        let began = tokio::time::Instant::now();
        let round = self.dispatcher.round(&mut self.tasks).await?;
        self.quiet_until =
            quiet_after(began.elapsed(), round.started).map(|quiet| tokio::time::Instant::now() + quiet);
        // Look again at once only when the round was cut short by its limit; what is
        // made or freed meanwhile wakes the loop.
        if round.started > 0 && round.more {
            return Ok(Step::Busy);
        }
        let sleep = self.dispatcher.sleep_for(round.blocked > 0, looked_at).await?;
        Ok(Step::Idle(sleep))
    }

    async fn stop(&mut self) {
        self.dispatcher
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let grace = self.dispatcher.options.delivery_timeout + Duration::from_secs(1);
        let tasks = &mut self.tasks;
        let drained = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            self.tasks.abort_all();
        }
        let dispatcher = &self.dispatcher;
        if let Err(err) = dispatcher.options.store.release_leases(&dispatcher.owner).await {
            tracing::error!(error = %err, "releasing leases at shutdown failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_expensive_empty_rounds_quiet_the_loop() {
        let ms = Duration::from_millis;
        // A round that started attempts never delays the next one.
        assert_eq!(quiet_after(ms(120), 3), None);
        // Nor does a cheap empty one (light load: a new event must not wait).
        assert_eq!(quiet_after(ms(1), 0), None);
        assert_eq!(quiet_after(ms(9), 0), None);
        // An expensive empty round: as long again, up to the cap.
        assert_eq!(quiet_after(ms(40), 0), Some(ms(40)));
        assert_eq!(quiet_after(ms(900), 0), Some(PACE_AT_MOST));
    }
}
