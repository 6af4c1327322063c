//! The pipeline runtime: a single-threaded Tokio runtime on a thread of its own for the
//! tasks that hold the database's write path — the ingestion writers, the aggregator,
//! the dispatcher's claiming loop and its attempt recorder.
//!
//! Each of those tasks keeps a transaction open across several statements and waits
//! for the database between them. On the shared request runtime every such wait puts
//! the task back in line behind the request handlers and outbound attempts that are
//! ready at that moment, and the transaction — on SQLite the only writer — stays open
//! that much longer. On their own thread they are scheduled by the operating system
//! beside the request runtime instead of behind its queue. Request handlers and the
//! HTTP attempts stay on the request runtime.

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// The running pipeline runtime; it stops (cancelling what still runs on it) when this
/// is dropped.
pub struct Pipeline {
    handle: Handle,
    _stop: oneshot::Sender<()>,
}

impl Pipeline {
    /// Starts the runtime's thread.
    pub fn start() -> std::io::Result<Pipeline> {
        let runtime = Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("ledgerhook-pipeline".to_owned())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Pipeline { handle, _stop: stop })
    }

    /// Where to spawn pipeline tasks.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Reports on a channel when it is dropped.
    struct Dropped(mpsc::Sender<&'static str>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            let _ = self.0.send("dropped");
        }
    }

    #[test]
    fn runs_tasks_on_its_own_thread_and_cancels_them_when_dropped() {
        let pipeline = Pipeline::start().unwrap();
        let (tx, rx) = mpsc::channel();
        pipeline.handle().spawn(async move {
            tx.send(std::thread::current().name().map(str::to_owned)).unwrap();
        });
        let name = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(name.as_deref(), Some("ledgerhook-pipeline"));

        let (tx, rx) = mpsc::channel();
        pipeline.handle().spawn(async move {
            let _guard = Dropped(tx);
            std::future::pending::<()>().await;
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "still running"
        );
        drop(pipeline);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok("dropped"));
    }
}
