//! Group commit for ingestion: requests hand their validated events to writer tasks,
//! which take every request waiting at that moment into one transaction, so that many
//! concurrent small requests share one commit (one fsync on SQLite).
//!
//! A request is answered only after the transaction holding it has committed.

use ledgerhook_delivery::aggregator::render_window;
use ledgerhook_delivery::metrics::Metrics;
use ledgerhook_domain::Timestamp;
use ledgerhook_store::fanout::FanOut;
use ledgerhook_store::ingest::{IngestOutcome, IngestRequest};
use ledgerhook_store::windows::WindowPolicy;
use ledgerhook_store::{Backend, Store, StoreError};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, Mutex, Notify};

/// At most this many requests share one transaction.
const MAX_REQUESTS_PER_COMMIT: usize = 512;
/// At most about this many events share one transaction.
const MAX_EVENTS_PER_COMMIT: usize = 20_000;

/// A writer's answer to one request; the error is shared by every request of the group.
type Reply = oneshot::Sender<Result<IngestOutcome, Arc<StoreError>>>;

/// The background tasks a commit may have given work.
#[derive(Clone)]
pub struct Wake {
    /// Windows were opened or advanced.
    pub aggregator: Arc<Notify>,
    /// Notifications were made at once (0s windows).
    pub dispatcher: Arc<Notify>,
}

/// The handle request handlers use to ingest.
#[derive(Clone)]
pub struct Ingestor {
    jobs: mpsc::Sender<(IngestRequest, Reply)>,
}

/// Why an ingestion failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The database refused the transaction; nothing was stored.
    #[error("storing the events failed")]
    Store(#[source] Arc<StoreError>),
    /// The server is stopping.
    #[error("the server is shutting down")]
    Stopping,
}

impl Ingestor {
    /// Starts the writer tasks on `runtime`: one on SQLite (one writer at a time
    /// anyway), two on PostgreSQL (commits overlap there).
    pub fn start(
        store: Store,
        policy: WindowPolicy,
        wake: Wake,
        metrics: Arc<Metrics>,
        runtime: &Handle,
    ) -> Ingestor {
        let (jobs, receiver) = mpsc::channel(4096);
        let receiver = Arc::new(Mutex::new(receiver));
        let writers = match store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => 2,
        };
        for _ in 0..writers {
            runtime.spawn(write_loop(
                store.clone(),
                receiver.clone(),
                policy,
                wake.clone(),
                metrics.clone(),
            ));
        }
        Ingestor { jobs }
    }

    /// Stores one request; answers once it is committed (or was a replay / conflict).
    pub async fn ingest(&self, request: IngestRequest) -> Result<IngestOutcome, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((request, reply))
            .await
            .map_err(|_| IngestError::Stopping)?;
        answer
            .await
            .map_err(|_| IngestError::Stopping)?
            .map_err(IngestError::Store)
    }
}

async fn next_group(
    receiver: &Mutex<mpsc::Receiver<(IngestRequest, Reply)>>,
) -> Option<Vec<(IngestRequest, Reply)>> {
    let mut receiver = receiver.lock().await;
    let first = receiver.recv().await?;
    let mut events = first.0.events.len();
    let mut group = vec![first];
    while group.len() < MAX_REQUESTS_PER_COMMIT && events < MAX_EVENTS_PER_COMMIT {
        match receiver.try_recv() {
            Ok(job) => {
                events += job.0.events.len();
                group.push(job);
            }
            Err(_) => break,
        }
    }
    Some(group)
}

async fn write_loop(
    store: Store,
    receiver: Arc<Mutex<mpsc::Receiver<(IngestRequest, Reply)>>>,
    policy: WindowPolicy,
    wake: Wake,
    metrics: Arc<Metrics>,
) {
    let woken = |fanned: &FanOut| {
        if fanned.windows_touched {
            wake.aggregator.notify_one();
        }
        if fanned.notifications_made > 0 {
            metrics
                .notifications_made
                .fetch_add(fanned.notifications_made as u64, Ordering::Relaxed);
            wake.dispatcher.notify_one();
        }
    };
    while let Some(group) = next_group(&receiver).await {
        let (requests, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        match store
            .ingest(&requests, &policy, render_window, Timestamp::now())
            .await
        {
            Ok((outcomes, fanned)) => {
                woken(&fanned);
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    if let IngestOutcome::Accepted(n) = outcome {
                        metrics.events_ingested.fetch_add(n as u64, Ordering::Relaxed);
                        metrics.ingest_requests.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = reply.send(Ok(outcome));
                }
            }
            // The database is not there: retrying one by one would only multiply the
            // wait. This group and every request that queued behind it meanwhile are
            // answered at once; the next arrival tries again.
            Err(err) if err.is_unavailable() => {
                tracing::error!(error = %err, "ingestion failed: the database is unavailable");
                let err = Arc::new(err);
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
                let mut queued = receiver.lock().await;
                while let Ok((_, reply)) = queued.try_recv() {
                    let _ = reply.send(Err(err.clone()));
                }
            }
            // One request's failure must not fail the others: retry each on its own.
            Err(err) if requests.len() > 1 => {
                tracing::warn!(error = %err, requests = requests.len(), "group commit failed; retrying requests one by one");
                for (request, reply) in requests.into_iter().zip(replies) {
                    let result = store
                        .ingest(
                            std::slice::from_ref(&request),
                            &policy,
                            render_window,
                            Timestamp::now(),
                        )
                        .await;
                    if let Ok((_, fanned)) = &result {
                        woken(fanned);
                    }
                    let _ = reply.send(result.map(|(mut o, _)| o.remove(0)).map_err(Arc::new));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "ingestion failed");
                let err = Arc::new(err);
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}
