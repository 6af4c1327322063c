//! The dispatcher: claims due notifications and makes their attempts.
//!
//! It wakes on a signal (a notification was made or released, an attempt finished) or at
//! the next due time, with a bounded safety sweep for work another node queued. Every
//! claim takes the (configuration, realm) stream's lease in the database, so at most one
//! attempt per stream is in flight across all nodes; attempts run in tasks of their own,
//! limited per endpoint URL, so a slow endpoint holds only its own permits.
//!
//! A round may claim up to [`CLAIM_DEPTH`] times `max-in-flight-per-endpoint` per
//! endpoint: the claimed attempts beyond the in-flight limit wait in their tasks for a
//! request to finish. Claiming ahead keeps rounds large when one endpoint takes all the
//! traffic; the lease covers the wait (one attempt's time at most) and the attempt.

use crate::outbound::{Attempt, OutboundClient, OutboundRequest, Outcome};
use crate::retry::RetryPolicy;
use crate::secrets::SecretBox;
use crate::signature::{attempt_headers, random_uuid, AttemptSigning, KeyPair};
use ledgerhook_domain::{Ordering, Timestamp};
use ledgerhook_store::model::SecretName;
use ledgerhook_store::model::StoredSecret;
use ledgerhook_store::notifications::Notification;
use ledgerhook_store::queue::{AttemptRecord, AttemptResult, Candidate, Decision, DeliveryState, Parking};
use ledgerhook_store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// The longest the dispatcher sleeps without looking at the queue.
const SAFETY_SWEEP: Duration = Duration::from_secs(10);
/// Candidates looked at per round.
const ROUND: u32 = 256;
/// Attempts claimed and not yet finished in this process, over all endpoints.
const MAX_IN_FLIGHT: usize = 2048;
/// How much longer than `delivery-timeout` a lease lasts.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// Attempts claimed per endpoint, as a multiple of `max-in-flight-per-endpoint`.
const CLAIM_DEPTH: usize = 2;
/// How long an attempt is in flight before its stream's due notifications are parked
/// until its lease ends; each later parking (for notifications made meanwhile) waits
/// twice as long as the one before.
const PARK_AFTER: Duration = Duration::from_millis(250);

/// Why a manual send could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A signing secret could not be read (wrong `secret-key`).
    #[error("{0}")]
    Secret(String),
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

/// The dispatcher; shared by the background loop and manual sends.
pub struct Dispatcher {
    options: DispatcherOptions,
    owner: String,
    endpoints: Mutex<HashMap<String, Endpoint>>,
    in_flight: Arc<Semaphore>,
    recorder: mpsc::Sender<RecordJob>,
    secrets_cache: Mutex<HashMap<String, (Instant, Vec<StoredSecret>)>>,
    attempts: Handle,
}

/// How long an app's stored secrets are reused between attempts (a rotation takes
/// effect within this time).
const SECRETS_TTL: Duration = Duration::from_secs(1);

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
struct Permits {
    _claimed: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
    sending: Arc<Semaphore>,
}

/// What the recorder writes: a result (its sender waits for the commit) or a parking.
enum RecordJob {
    Result(AttemptResult, oneshot::Sender<Result<(), String>>),
    Park(Parking),
}

/// What a queued attempt adds to its result.
struct Claim<'a> {
    /// The lease owner (this process).
    owner: &'a str,
    /// The stream is delivered strictly in order.
    strict: bool,
    /// The notification had failed attempts before.
    retried: bool,
    /// The lease end the stream's notifications were parked until, if they were.
    parked_until: Option<Timestamp>,
}

/// The stored result of `attempt`; `claim` is `None` for a manual send.
fn attempt_result(
    notification: &Notification,
    attempt: &Attempt,
    decision: &Decision,
    claim: Option<Claim<'_>>,
) -> AttemptResult {
    AttemptResult {
        seq: notification.seq,
        config_id: notification.config_id,
        realm_id: notification.realm_id.clone(),
        attempt: AttemptRecord {
            number: 0,
            started_at: attempt.started_at,
            duration_ms: attempt.duration_ms,
            outcome: attempt.outcome.as_str().to_owned(),
            status_code: attempt.status_code.map(i64::from),
            error: attempt.error.clone(),
            response_body: attempt.response_body.clone(),
        },
        decision: decision.clone(),
        owner: claim.as_ref().map(|c| c.owner.to_owned()),
        strict: claim.as_ref().is_some_and(|c| c.strict),
        retried: claim.as_ref().is_some_and(|c| c.retried),
        parked_until: claim.as_ref().and_then(|c| c.parked_until),
    }
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

/// Commits attempt results and parkings in groups: every job waiting at that moment goes
/// into one transaction (parkings first: a stream's result always follows its parking).
async fn record_loop(store: Store, mut jobs: mpsc::Receiver<RecordJob>) {
    while let Some(first) = jobs.recv().await {
        let mut group = vec![first];
        while group.len() < 256 {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let (mut parkings, mut results, mut replies) = (Vec::new(), Vec::new(), Vec::new());
        for job in group {
            match job {
                RecordJob::Result(result, reply) => {
                    results.push(result);
                    replies.push(reply);
                }
                RecordJob::Park(parking) => parkings.push(parking),
            }
        }
        let outcome = store
            .record_round(&parkings, &results, Timestamp::now())
            .await
            .map_err(|e| e.to_string());
        if let Err(err) = &outcome {
            tracing::error!(error = %err, "recording attempts failed");
        }
        for reply in replies {
            let _ = reply.send(outcome.clone());
        }
    }
}

impl Dispatcher {
    /// A dispatcher with a fresh lease owner id. Must be called inside the runtime where
    /// attempts are to run.
    pub fn new(options: DispatcherOptions) -> Arc<Dispatcher> {
        let (recorder, jobs) = mpsc::channel(4096);
        options.pipeline.spawn(record_loop(options.store.clone(), jobs));
        Arc::new(Dispatcher {
            options,
            owner: format!("node-{}", random_uuid()),
            endpoints: Mutex::new(HashMap::new()),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            recorder,
            secrets_cache: Mutex::new(HashMap::new()),
            attempts: Handle::current(),
        })
    }

    /// The app's stored verifier token and signing secret, cached for [`SECRETS_TTL`].
    async fn stored_secrets(&self, app_id: &str) -> Result<Vec<StoredSecret>, SendError> {
        if let Some((at, secrets)) = self.secrets_cache.lock().expect("cache").get(app_id) {
            if at.elapsed() < SECRETS_TTL {
                return Ok(secrets.clone());
            }
        }
        let mut secrets = Vec::with_capacity(2);
        for name in [SecretName::VerifierToken, SecretName::SigningSecret] {
            let stored = self
                .options
                .store
                .secret(app_id, name)
                .await?
                .ok_or_else(|| SendError::Secret(format!("app {app_id} has no {}", name.as_str())))?;
            secrets.push(stored);
        }
        self.secrets_cache
            .lock()
            .expect("cache")
            .insert(app_id.to_owned(), (Instant::now(), secrets.clone()));
        Ok(secrets)
    }

    /// This process's lease owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// A permit for one more attempt to `url`, if its endpoint and the process have room.
    fn permits(&self, url: &str) -> Option<Permits> {
        let endpoint = {
            let mut endpoints = self.endpoints.lock().expect("endpoint map");
            let limit = self.options.max_in_flight_per_endpoint;
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

    /// Signs and sends `notification` to `url` once.
    pub async fn send(&self, notification: &Notification, url: &str) -> Result<Attempt, SendError> {
        let now = Timestamp::now();
        let mut pairs = Vec::with_capacity(2);
        for stored in self.stored_secrets(&notification.app_id).await? {
            let open = |v: &str| {
                self.options
                    .secrets
                    .open(v)
                    .map_err(|e| SendError::Secret(e.to_string()))
            };
            let previous = stored.previous.as_deref().map(open).transpose()?;
            pairs.push(KeyPair::at(
                open(&stored.current)?,
                previous,
                stored.grace_until,
                now,
            ));
        }
        let transaction_id = random_uuid();
        let signing = AttemptSigning {
            notification_id: &notification.id,
            created_at: notification.created_at,
            format: notification.format,
            verifier_token: &pairs[0],
            signing_secret: &pairs[1],
            now,
            transaction_id: &transaction_id,
        };
        let headers =
            attempt_headers(&signing, &notification.payload).map_err(|e| SendError::Secret(e.to_string()))?;
        let request = OutboundRequest {
            url,
            headers: &headers,
            body: &notification.payload,
        };
        let attempt = self.options.client.send(&request).await;
        self.options.metrics.attempt(attempt.outcome, attempt.duration_ms);
        Ok(attempt)
    }

    /// Records a manual send's attempt (a redelivery or test) with `decision`.
    pub async fn record(
        &self,
        notification: &Notification,
        attempt: &Attempt,
        decision: &Decision,
    ) -> Result<(), StoreError> {
        self.submit(attempt_result(notification, attempt, decision, None))
            .await
    }

    /// Hands a result to the recorder and waits for its commit (records it alone if the
    /// recorder is gone).
    async fn submit(&self, result: AttemptResult) -> Result<(), StoreError> {
        let (reply, committed) = oneshot::channel();
        if self
            .recorder
            .send(RecordJob::Result(result.clone(), reply))
            .await
            .is_err()
        {
            return self
                .options
                .store
                .record_attempts(&[result], Timestamp::now())
                .await;
        }
        match committed.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StoreError::Recording(message)),
            Err(_) => {
                self.options
                    .store
                    .record_attempts(&[result], Timestamp::now())
                    .await
            }
        }
    }

    /// One queued attempt: send, decide by the retry policy, record, wake the loop.
    async fn attempt(
        self: Arc<Self>,
        candidate: Candidate,
        state: DeliveryState,
        permits: Permits,
        until: Timestamp,
    ) {
        let result = self.attempt_inner(&candidate, state, permits, until).await;
        if let Err(err) = result {
            tracing::error!(error = %err, notification = candidate.seq, "attempt failed to run; releasing its lease");
            let release =
                self.options
                    .store
                    .release_stream(&self.owner, candidate.config_id, &candidate.realm_id);
            if let Err(err) = release.await {
                tracing::error!(error = %err, "releasing the lease failed; it expires on its own");
            }
        }
        self.options.wake.notify_one();
    }

    async fn attempt_inner(
        &self,
        candidate: &Candidate,
        state: DeliveryState,
        permits: Permits,
        until: Timestamp,
    ) -> Result<(), SendError> {
        let exchange = async {
            let sending = permits.sending.clone().acquire_owned().await;
            let attempt = self.send(&state.notification, &candidate.url).await;
            // The request is over: the endpoint's permits are free while the result is
            // recorded (the stream's lease keeps the realm's next notification back until then).
            drop(sending);
            drop(permits);
            attempt
        };
        let (attempt, parked_until) = self.parking_while(candidate, until, exchange).await;
        let attempt = attempt?;
        let decision = if attempt.outcome == Outcome::Success {
            Decision::Delivered
        } else {
            let failures = usize::try_from(state.notification.attempt_count + 1).unwrap_or(usize::MAX);
            let first = state.first_attempt_at.unwrap_or(attempt.started_at);
            self.options
                .retry
                .after_failure(failures, first, Timestamp::now(), self.options.time_scale)
        };
        tracing::debug!(node = %self.owner, notification = %state.notification.id, outcome = attempt.outcome.as_str(), ?decision, "attempt");
        let claim = Claim {
            owner: &self.owner,
            strict: candidate.strict,
            retried: state.notification.attempt_count > 0,
            parked_until,
        };
        self.submit(attempt_result(
            &state.notification,
            &attempt,
            &decision,
            Some(claim),
        ))
        .await?;
        Ok(())
    }

    /// Runs `exchange`; while it lasts longer than [`PARK_AFTER`] (then twice as long each
    /// time), parks the stream's due notifications until `until`. Answers the exchange's
    /// outcome and the lease end if anything was parked.
    async fn parking_while<T>(
        &self,
        candidate: &Candidate,
        until: Timestamp,
        exchange: impl std::future::Future<Output = T>,
    ) -> (T, Option<Timestamp>) {
        tokio::pin!(exchange);
        let (mut wait, mut parked) = (PARK_AFTER, false);
        loop {
            tokio::select! {
                outcome = &mut exchange => return (outcome, parked.then_some(until)),
                _ = tokio::time::sleep(wait) => {
                    let parking = Parking {
                        config_id: candidate.config_id,
                        realm_id: candidate.realm_id.clone(),
                        from_seq: candidate.seq,
                        until,
                    };
                    parked |= self.recorder.send(RecordJob::Park(parking)).await.is_ok();
                    wait *= 2;
                }
            }
        }
    }

    /// Claims what is due and starts its attempts.
    async fn round(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> Result<Round, StoreError> {
        let now = Timestamp::now();
        // Waiting for the in-flight limit takes one attempt's time at most, then its own.
        let lease = self.options.delivery_timeout * 2 + LEASE_MARGIN;
        let until = Timestamp(now.millis() + lease.as_millis() as i64);
        let claimable = self
            .options
            .store
            .claimable(now, self.options.default_ordering, ROUND)
            .await?;
        let more = claimable.more;
        let (mut chosen, mut permits, mut blocked) = (Vec::new(), Vec::new(), 0);
        for candidate in claimable.candidates {
            match self.permits(&candidate.url) {
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
    async fn sleep_for(&self, blocked: bool, looked_at: Timestamp) -> Duration {
        if blocked {
            return Duration::from_millis(200);
        }
        match self.options.store.next_attempt_due(looked_at).await {
            Ok(Some(due)) => {
                let wait = due.millis() - Timestamp::now().millis();
                Duration::from_millis(wait.max(0) as u64).clamp(Duration::from_millis(5), SAFETY_SWEEP)
            }
            Ok(None) => SAFETY_SWEEP,
            Err(_) => Duration::from_secs(1),
        }
    }

    /// Runs until `shutdown` turns true, then lets attempts in flight finish (up to
    /// `delivery-timeout` and a second) and releases the leases of any that did not.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if let Err(err) = self.options.store.release_orphaned_leases().await {
            tracing::error!(error = %err, "releasing leases left by a previous process failed");
        }
        let mut tasks = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            while tasks.try_join_next().is_some() {}
            let looked_at = Timestamp::now();
            let round = match self.round(&mut tasks).await {
                Ok(round) => round,
                Err(err) => {
                    tracing::error!(error = %err, "claiming notifications failed");
                    Round::default()
                }
            };
            // Look again at once only when the round was cut short by its limit; what is
            // made or freed meanwhile wakes the loop.
            if round.started > 0 && round.more {
                continue;
            }
            let sleep = self.sleep_for(round.blocked > 0, looked_at).await;
            tokio::select! {
                _ = self.options.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.changed() => {}
            }
        }
        let grace = self.options.delivery_timeout + Duration::from_secs(1);
        let drained = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tasks.abort_all();
        }
        if let Err(err) = self.options.store.release_leases(&self.owner).await {
            tracing::error!(error = %err, "releasing leases at shutdown failed");
        }
    }
}
