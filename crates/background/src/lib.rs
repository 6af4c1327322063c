//! The one runner under every background loop of Ledgerhook (the aggregator, the
//! dispatcher's claim loop, the janitor, SQLite's checkpointer).
//!
//! A [`Worker`] does one step of work at a time and says what should happen next:
//! [`Step::Busy`] (step again at once), [`Step::Idle`] (sleep until the deadline or a
//! wake-up, whichever comes first), [`Step::Done`] (stop), or an error. The runner owns
//! everything else: the sleep, the wake-up [`Notify`], shutdown (a `watch` flag, checked
//! between steps and during every sleep), back-off after errors (doubling from
//! [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`], reset by the next successful step), logging
//! each error with its chain of causes, and the [`Status`] that tells an operator the
//! last error.

use std::error::Error;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// The first wait after a failed step.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between failed steps.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// An error a step failed with; the runner logs it with its sources.
pub type WorkError = Box<dyn Error + Send + Sync>;

/// What a worker wants after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// More work may be waiting: step again at once (shutdown is still checked).
    Busy,
    /// Nothing to do before this long has passed, unless woken sooner.
    Idle(Duration),
    /// The worker has finished for good.
    Done,
}

/// A background loop's body.
pub trait Worker: Send + 'static {
    /// The name in logs and in [`Status`].
    fn name(&self) -> &'static str;

    /// One step of work.
    fn work(&mut self) -> impl Future<Output = Result<Step, WorkError>> + Send;

    /// Runs once after the last step, when shutdown was asked for or the worker is done.
    fn stop(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// What the runner knows of a worker, for operators.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusSnapshot {
    /// Failed steps since start.
    pub errors: u64,
    /// The most recent error with its causes, cleared by the next successful step.
    pub last_error: Option<String>,
}

/// A shared view of one worker's [`StatusSnapshot`].
#[derive(Clone, Debug, Default)]
pub struct Status(Arc<Mutex<StatusSnapshot>>);

impl Status {
    /// The worker's counters now.
    pub fn snapshot(&self) -> StatusSnapshot {
        self.0.lock().expect("worker status").clone()
    }

    fn failed(&self, error: String) {
        let mut status = self.0.lock().expect("worker status");
        status.errors += 1;
        status.last_error = Some(error);
    }

    fn succeeded(&self) {
        let mut status = self.0.lock().expect("worker status");
        if status.last_error.is_some() {
            status.last_error = None;
        }
    }
}

pub use ledgerhook_domain::error_chain;

/// Runs `worker` until `shutdown` turns true or the worker is done; `wake` (if any)
/// ends an idle sleep early. Answers once the worker's [`Worker::stop`] has run.
pub async fn run<W: Worker>(
    mut worker: W,
    wake: Option<Arc<Notify>>,
    mut shutdown: watch::Receiver<bool>,
    status: Status,
) {
    let never = Arc::new(Notify::new());
    let wake = wake.unwrap_or(never);
    let mut backoff = FIRST_BACKOFF;
    loop {
        if *shutdown.borrow() {
            break;
        }
        // How long to pause, and whether a wake-up ends the pause early.
        let (sleep, wakeable) = match worker.work().await {
            Ok(Step::Busy) => {
                status.succeeded();
                backoff = FIRST_BACKOFF;
                continue;
            }
            Ok(Step::Done) => break,
            Ok(Step::Idle(wait)) => {
                status.succeeded();
                backoff = FIRST_BACKOFF;
                (wait, true)
            }
            Err(err) => {
                let text = error_chain(err.as_ref());
                tracing::error!(worker = worker.name(), error = %text, retry_in_ms = backoff.as_millis() as u64, "background step failed");
                status.failed(text);
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                (wait, false)
            }
        };
        // After an error a wake-up does not cut the wait short: the cause is usually the
        // database, which a busy retry would only load further.
        let woken = async {
            if wakeable {
                wake.notified().await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep(sleep) => {}
            // A dropped sender means nobody can ask for shutdown any more: stop too.
            changed = shutdown.changed() => if changed.is_err() { break },
        }
    }
    worker.stop().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("claiming failed")
        }
    }
    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    /// Fails `failures` times, then is idle for a long time; counts its steps and stops.
    struct Flaky {
        steps: Arc<AtomicUsize>,
        stopped: Arc<AtomicUsize>,
        failures: usize,
    }

    impl Worker for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        async fn work(&mut self) -> Result<Step, WorkError> {
            let n = self.steps.fetch_add(1, Ordering::SeqCst);
            if n < self.failures {
                return Err(Box::new(Outer(std::io::Error::other("disk gone"))));
            }
            Ok(Step::Idle(Duration::from_secs(3600)))
        }
        async fn stop(&mut self) {
            self.stopped.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn backs_off_after_errors_reports_the_chain_wakes_and_stops() {
        let (steps, stopped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let worker = Flaky {
            steps: steps.clone(),
            stopped: stopped.clone(),
            failures: 2,
        };
        let (stop, shutdown) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let status = Status::default();
        let started = Instant::now();
        let task = tokio::spawn(run(worker, Some(wake.clone()), shutdown, status.clone()));

        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            steps.load(Ordering::SeqCst),
            1,
            "the first back-off is {FIRST_BACKOFF:?}"
        );
        let snapshot = status.snapshot();
        assert_eq!(snapshot.errors, 1);
        assert_eq!(snapshot.last_error.as_deref(), Some("claiming failed: disk gone"));

        // 200 ms, then 400 ms of back-off, then the successful step clears the error.
        while steps.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(started.elapsed() >= FIRST_BACKOFF * 3, "{:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(status.snapshot().last_error, None);
        assert_eq!(status.snapshot().errors, 2);

        // Idle for an hour, but a wake-up makes it step at once.
        wake.notify_one();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(steps.load(Ordering::SeqCst), 4);

        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stopped.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn error_chain_joins_every_source() {
        let err = Outer(std::io::Error::other("disk gone"));
        assert_eq!(error_chain(&err), "claiming failed: disk gone");
    }
}
