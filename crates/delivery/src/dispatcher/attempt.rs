//! One queued attempt and the busy stream it may continue: send, decide by the retry
//! policy, record, and send the stream's next notification when the recording hands it
//! back.
//!
//! Under best-effort ordering the recording hands back the stream's next few due
//! notifications together (`Continuation::then`). Each of them goes out as soon as the
//! one before it is delivered; the earlier results are handed to the recorder without
//! waiting for their commit (`AttemptResult::holds_stream`: the stream stays leased),
//! and only the last one's commit is waited for. So a busy realm costs one request per
//! notification and one commit per group, not a commit per notification. This happens
//! only while the lease has room for another attempt, the endpoint has a free permit, and
//! the dispatcher is not stopping; a failure, a parking or a refusal ends it, and the
//! rest stay due for a claim round. Strict streams are not sent ahead: a crash between
//! two of them must not reorder the stream.

use super::recorder::{attempt_result, Claim};
use super::{Dispatcher, Permits, SendError, CONTINUE_AT_MOST, LEASE_MARGIN, PARK_AFTER};
use crate::outbound::Outcome;
use ledgerhook_domain::Timestamp;
use ledgerhook_store::queue::{Candidate, Continuation, Decision, DeliveryState, Parking};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

impl Dispatcher {
    /// One queued attempt: send, decide by the retry policy, record, wake the loop. When
    /// the recording hands back the stream's next notification (a busy stream, see
    /// `ledgerhook_store::queue::Continuation`), it is sent next, by this same task, as
    /// long as its endpoint has room; otherwise the stream is released for a claim round.
    pub(super) async fn attempt(
        self: Arc<Self>,
        mut candidate: Candidate,
        mut state: DeliveryState,
        mut permits: Permits,
        mut until: Timestamp,
    ) {
        let mut ahead = VecDeque::new();
        let mut sent = 0;
        loop {
            let budget = CONTINUE_AT_MOST.saturating_sub(sent).max(1);
            let outcome = self
                .attempt_inner(&mut candidate, state, permits, until, ahead, budget)
                .await;
            let next = match outcome {
                Ok((Some(next), made)) => {
                    sent += made;
                    next
                }
                Ok((None, _)) => break,
                Err(err) => {
                    tracing::error!(error = %err, notification = candidate.seq, "attempt failed to run; releasing its lease");
                    self.release(&candidate).await;
                    break;
                }
            };
            candidate = next.candidate;
            tracing::debug!(
                notification = candidate.seq,
                ahead = next.then.len(),
                "the stream continues"
            );
            // At most so many in a row, then a claim round looks at the stream again (an
            // older notification whose retry came due meanwhile goes first there).
            let stopping = self.stopping() || sent >= CONTINUE_AT_MOST;
            let room = if stopping {
                None
            } else {
                self.limits.permits(&candidate.url)
            };
            let Some(room) = room else {
                self.release(&candidate).await;
                break;
            };
            (state, permits, until) = (next.state, room, next.until);
            ahead = next.then.into();
        }
        self.options.wake.notify_one();
    }

    /// Whether the claim loop has stopped: attempts finish, streams are not continued.
    fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Gives up this process's lease of `candidate`'s stream.
    pub(super) async fn release(&self, candidate: &Candidate) {
        let release =
            self.options
                .store
                .release_stream(&self.owner, candidate.config_id, &candidate.realm_id);
        if let Err(err) = release.await {
            tracing::error!(error = %err, "releasing the lease failed; it expires on its own");
        }
    }

    /// Sends `state`, then each of `ahead` while the one before is delivered and the
    /// stream may go on (see the module docs), at most `budget` in all; waits for the last
    /// result's commit and every earlier one's. Answers the stream's continuation, if
    /// any, and how many were sent. `candidate` follows the notification being sent.
    async fn attempt_inner(
        &self,
        candidate: &mut Candidate,
        mut state: DeliveryState,
        mut permits: Permits,
        until: Timestamp,
        mut ahead: VecDeque<DeliveryState>,
        budget: usize,
    ) -> Result<(Option<Continuation>, usize), SendError> {
        let mut committing = Vec::new();
        let mut sent = 0;
        loop {
            sent += 1;
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
            let attempt = match attempt {
                Ok(attempt) => attempt,
                Err(err) => {
                    self.committed(committing).await?;
                    return Err(err);
                }
            };
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
            let goes_on = decision == Decision::Delivered
                && parked_until.is_none()
                && sent < budget
                && !ahead.is_empty()
                && !self.stopping()
                && self.lease_has_room(until);
            let room = if goes_on {
                self.limits.permits(&candidate.url)
            } else {
                None
            };
            let claim = Claim {
                owner: &self.owner,
                strict: candidate.strict,
                retried: state.notification.attempt_count > 0,
                parked_until,
                continue_until: room
                    .is_none()
                    .then(|| Timestamp(Timestamp::now().millis() + self.lease().as_millis() as i64)),
                holds_stream: room.is_some(),
            };
            let result = attempt_result(&state.notification, &attempt, &decision, Some(claim));
            let (Some(room), Some(next)) = (room, ahead.pop_front()) else {
                let next = self.recorder.submit(result).await;
                self.committed(committing).await?;
                return Ok((next?, sent));
            };
            committing.push(self.recorder.submit_ahead(result).await);
            candidate.seq = next.notification.seq;
            (state, permits) = (next, room);
        }
    }

    /// Waits for the commits of results handed over ahead; the first error, if any.
    async fn committed(&self, committing: Vec<super::recorder::Committing>) -> Result<(), SendError> {
        let mut first_error = None;
        for commit in committing {
            if let Err(err) = commit.await {
                first_error.get_or_insert(err);
            }
        }
        match first_error {
            Some(err) => Err(err.into()),
            None => Ok(()),
        }
    }

    /// Whether the stream's lease, ending at `until`, still covers one more attempt:
    /// waiting for the endpoint's in-flight limit (one attempt's time at most) and the
    /// attempt itself.
    fn lease_has_room(&self, until: Timestamp) -> bool {
        let needed = self.options.delivery_timeout * 2 + LEASE_MARGIN / 2;
        Timestamp::now().millis() + needed.as_millis() as i64 <= until.millis()
    }

    /// How long a claimed stream is leased: waiting for the in-flight limit takes one
    /// attempt's time at most, then its own.
    pub(super) fn lease(&self) -> Duration {
        self.options.delivery_timeout * 2 + LEASE_MARGIN
    }

    /// Runs `exchange`; while it lasts longer than [`PARK_AFTER`] (then twice as long each
    /// time), parks the stream's due notifications until `until`. Answers the exchange's
    /// outcome and the lease end if anything was parked.
    pub(super) async fn parking_while<T>(
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
                    parked |= self.recorder.park(parking).await;
                    wait *= 2;
                }
            }
        }
    }
}
