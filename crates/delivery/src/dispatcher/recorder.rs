//! The attempt recorder: a task on the pipeline runtime that commits finished attempts
//! and parkings in groups — every job waiting at that moment in one transaction
//! (parkings first: a stream's result always follows its parking). A result's sender
//! waits for the commit; the group's error is shared with every sender.
//!
//! A group made only of results handed over ahead (a busy stream's, whose sender goes on
//! sending and waits for their commits later) lingers up to [`LINGER`] for more jobs, so
//! that a stream sent ahead costs a commit per few deliveries rather than one each: the
//! next result arrives about one request later, sooner than a commit takes. Any other job
//! ends the linger at once.

use crate::outbound::Attempt;
use ledgerhook_domain::Timestamp;
use ledgerhook_store::notifications::Notification;
use ledgerhook_store::queue::{AttemptRecord, AttemptResult, Continuation, Decision, Parking};
use ledgerhook_store::{Store, StoreError};
use std::sync::Arc;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

/// What a result's sender gets back: the commit's outcome, and the stream's next
/// notification if the stream continues.
type Recorded = Result<Option<Continuation>, Arc<StoreError>>;

/// Jobs taken into one transaction at most.
const GROUP: usize = 256;

/// How long a group of results handed over ahead waits for more jobs before it is
/// committed. Nobody waits for such a group at once, and a crash in the meantime only
/// means its deliveries are made again (as for any attempt not yet recorded).
const LINGER: std::time::Duration = std::time::Duration::from_millis(10);

/// What the recorder writes: a result (its sender waits for the commit) or a parking.
enum RecordJob {
    Result(Box<AttemptResult>, oneshot::Sender<Recorded>),
    Park(Parking),
}

/// What a queued attempt adds to its result.
pub(super) struct Claim<'a> {
    /// The lease owner (this process).
    pub(super) owner: &'a str,
    /// The stream is delivered strictly in order.
    pub(super) strict: bool,
    /// The notification had failed attempts before.
    pub(super) retried: bool,
    /// The lease end the stream's notifications were parked until, if they were.
    pub(super) parked_until: Option<Timestamp>,
    /// Continue the stream if delivered, with its lease until then.
    pub(super) continue_until: Option<Timestamp>,
    /// The stream's next notification is already being sent: keep the lease, do not
    /// continue (see `AttemptResult::holds_stream`).
    pub(super) holds_stream: bool,
}

/// A result handed over ahead ([`Recorder::submit_ahead`]): its commit, to wait for.
pub(super) type Committing =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send>>;

/// The stored result of `attempt`; `claim` is `None` for a manual send.
pub(super) fn attempt_result(
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
            request_headers: attempt.request_headers.clone(),
        },
        decision: decision.clone(),
        owner: claim.as_ref().map(|c| c.owner.to_owned()),
        strict: claim.as_ref().is_some_and(|c| c.strict),
        retried: claim.as_ref().is_some_and(|c| c.retried),
        parked_until: claim.as_ref().and_then(|c| c.parked_until),
        continue_until: claim.as_ref().and_then(|c| c.continue_until),
        holds_stream: claim.as_ref().is_some_and(|c| c.holds_stream),
    }
}

/// The handle attempts hand their results and parkings to.
pub(super) struct Recorder {
    store: Store,
    jobs: mpsc::Sender<RecordJob>,
}

impl Recorder {
    /// Starts the recording task on `pipeline`.
    pub(super) fn start(store: Store, pipeline: &Handle) -> Recorder {
        let (jobs, receiver) = mpsc::channel(4096);
        pipeline.spawn(record_loop(store.clone(), receiver));
        Recorder { store, jobs }
    }

    /// Hands a result to the recorder and waits for its commit (records it alone if the
    /// recorder is gone, releasing its stream); answers the stream's next notification if
    /// the stream continues.
    pub(super) async fn submit(&self, result: AttemptResult) -> Result<Option<Continuation>, StoreError> {
        let (reply, committed) = oneshot::channel();
        if self
            .jobs
            .send(RecordJob::Result(Box::new(result.clone()), reply))
            .await
            .is_err()
        {
            self.store.record_attempts(&[result], Timestamp::now()).await?;
            return Ok(None);
        }
        match committed.await {
            Ok(Ok(next)) => Ok(next),
            Ok(Err(err)) => Err(StoreError::Recording(err)),
            Err(_) => {
                self.store.record_attempts(&[result], Timestamp::now()).await?;
                Ok(None)
            }
        }
    }

    /// Hands a result to the recorder without waiting for its commit; answers the commit
    /// to wait for later (recorded alone at once if the recorder is gone).
    pub(super) async fn submit_ahead(&self, result: AttemptResult) -> Committing {
        let (reply, committed) = oneshot::channel();
        let job = RecordJob::Result(Box::new(result.clone()), reply);
        if self.jobs.send(job).await.is_err() {
            let outcome = self.store.record_attempts(&[result], Timestamp::now()).await;
            return Box::pin(std::future::ready(outcome));
        }
        let store = self.store.clone();
        Box::pin(async move {
            match committed.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(err)) => Err(StoreError::Recording(err)),
                Err(_) => store.record_attempts(&[result], Timestamp::now()).await,
            }
        })
    }

    /// Hands a parking to the recorder; answers whether it was taken (it commits with
    /// the next group, before any result of the same stream).
    pub(super) async fn park(&self, parking: Parking) -> bool {
        self.jobs.send(RecordJob::Park(parking)).await.is_ok()
    }
}

impl RecordJob {
    /// A result handed over ahead: its sender does not wait for its commit now.
    fn ahead(&self) -> bool {
        matches!(self, RecordJob::Result(result, _) if result.holds_stream)
    }
}

/// The next group: every job waiting now (at most [`GROUP`]), and while they are all
/// results handed over ahead, what arrives within [`LINGER`]. `None` once every sender
/// is gone.
async fn next_group(jobs: &mut mpsc::Receiver<RecordJob>) -> Option<Vec<RecordJob>> {
    let first = jobs.recv().await?;
    let mut all_ahead = first.ahead();
    let mut group = vec![first];
    let lingering_until = tokio::time::Instant::now() + LINGER;
    while group.len() < GROUP {
        let job = match jobs.try_recv() {
            Ok(job) => job,
            Err(_) if all_ahead => match tokio::time::timeout_at(lingering_until, jobs.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) | Err(_) => break,
            },
            Err(_) => break,
        };
        all_ahead &= job.ahead();
        group.push(job);
    }
    Some(group)
}

async fn record_loop(store: Store, mut jobs: mpsc::Receiver<RecordJob>) {
    while let Some(group) = next_group(&mut jobs).await {
        let (mut parkings, mut results, mut replies) = (Vec::new(), Vec::new(), Vec::new());
        for job in group {
            match job {
                RecordJob::Result(result, reply) => {
                    results.push(*result);
                    replies.push(reply);
                }
                RecordJob::Park(parking) => parkings.push(parking),
            }
        }
        let outcome = store
            .record_round(&parkings, &results, Timestamp::now())
            .await
            .map_err(Arc::new);
        match outcome {
            Ok(continuations) => {
                for (reply, next) in replies.into_iter().zip(continuations) {
                    let _ = reply.send(Ok(next));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "recording attempts failed");
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledgerhook_store::queue::AttemptRecord;
    use std::time::Duration;

    fn result(seq: i64, ahead: bool) -> RecordJob {
        let result = AttemptResult {
            seq,
            attempt: AttemptRecord {
                number: 0,
                started_at: Timestamp(0),
                duration_ms: 1,
                outcome: "success".to_owned(),
                status_code: Some(200),
                error: None,
                response_body: None,
                request_headers: Vec::new(),
            },
            decision: Decision::Delivered,
            owner: Some("node".to_owned()),
            config_id: Some(1),
            realm_id: "realm".to_owned(),
            strict: false,
            retried: false,
            parked_until: None,
            continue_until: None,
            holds_stream: ahead,
        };
        RecordJob::Result(Box::new(result), oneshot::channel().0)
    }

    fn seqs(group: &[RecordJob]) -> Vec<i64> {
        group
            .iter()
            .map(|job| match job {
                RecordJob::Result(result, _) => result.seq,
                RecordJob::Park(_) => -1,
            })
            .collect()
    }

    #[tokio::test]
    async fn results_sent_ahead_linger_for_the_ones_after_them() {
        let (jobs, mut receiver) = mpsc::channel(16);
        tokio::spawn(async move {
            // 1 ms apart: well inside the linger, even on a loaded machine.
            for seq in 1..=3 {
                jobs.send(result(seq, true)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            // The stream's last result, which its sender waits for, ends the group.
            jobs.send(result(4, false)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
            jobs.send(result(5, true)).await.unwrap();
            // Still open while the last one lingers.
            tokio::time::sleep(LINGER * 3).await;
        });
        let group = next_group(&mut receiver).await.unwrap();
        assert_eq!(
            seqs(&group),
            [1, 2, 3, 4],
            "one commit for the stream's four results"
        );
        let started = tokio::time::Instant::now();
        let group = next_group(&mut receiver).await.unwrap();
        assert_eq!(seqs(&group), [5]);
        assert!(
            started.elapsed() >= LINGER - Duration::from_millis(3),
            "alone, it waited the linger out: {:?}",
            started.elapsed()
        );
        assert!(next_group(&mut receiver).await.is_none(), "every sender is gone");
    }

    #[tokio::test]
    async fn a_result_waited_for_is_committed_without_lingering() {
        let (jobs, mut receiver) = mpsc::channel(16);
        jobs.send(result(1, false)).await.unwrap();
        // Within the linger: a lingering group would take it.
        let sender = tokio::spawn(async move {
            tokio::time::sleep(LINGER / 2).await;
            jobs.send(result(2, true)).await.unwrap();
        });
        let started = tokio::time::Instant::now();
        let group = next_group(&mut receiver).await.unwrap();
        assert_eq!(seqs(&group), [1]);
        assert!(started.elapsed() < LINGER / 2, "{:?}", started.elapsed());
        sender.await.unwrap();
    }
}
