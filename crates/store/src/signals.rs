//! Wake-ups across nodes. In one process the aggregator and dispatcher are woken through
//! in-process `Notify`s; on PostgreSQL, transactions that create work also `NOTIFY`
//! (delivered at commit) so that every node's tasks wake, and each node listens. A lost
//! notification (a listener reconnecting) costs at most one safety sweep.

use crate::{Backend, Store};
use sqlx::{Any, Transaction};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{watch, Notify};

const CHANNEL: &str = "ledgerhook_work";

/// What kind of work a transaction created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Aggregation windows opened or advanced.
    Windows,
    /// Notifications became deliverable.
    Notifications,
}

impl Signal {
    fn payload(self) -> &'static str {
        match self {
            Signal::Windows => "windows",
            Signal::Notifications => "notifications",
        }
    }
}

/// Announces signals for one store. On PostgreSQL each carries the store's origin tag:
/// its own listener skips them, because the process that made the work wakes its own
/// tasks directly (an echo would only cost each of them one more round).
#[derive(Clone, Copy)]
pub(crate) struct Announcer<'a> {
    backend: Backend,
    origin: &'a str,
}

impl Announcer<'_> {
    /// The backend the announcements go to.
    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }

    /// Announces `signal` to every other store when `tx` commits (PostgreSQL only).
    pub(crate) async fn announce(
        &self,
        tx: &mut Transaction<'static, Any>,
        signal: Signal,
    ) -> Result<(), sqlx::Error> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(format!("{} {}", signal.payload(), self.origin))
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

/// A tag no other store shares: the process id, the time and a counter (a process may
/// open several stores, as the tests do).
pub(crate) fn new_origin() -> String {
    static OPENED: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{nanos:x}-{}",
        std::process::id(),
        OPENED.fetch_add(1, AtomicOrdering::Relaxed)
    )
}

impl Store {
    /// This store's announcer.
    pub(crate) fn announcer(&self) -> Announcer<'_> {
        Announcer {
            backend: self.backend(),
            origin: &self.inner.origin,
        }
    }

    /// On PostgreSQL, listens for other stores' signals (its own are skipped) and wakes
    /// `windows` or `notifications` accordingly, until `shutdown` turns true. Does
    /// nothing on SQLite.
    pub fn spawn_listener(
        &self,
        windows: Arc<Notify>,
        notifications: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if self.backend() != Backend::Postgres {
            return;
        }
        let url = self.inner.url.clone();
        let own = self.inner.origin.clone();
        tokio::spawn(async move {
            let mut backoff = ledgerhook_background::FIRST_BACKOFF;
            let mut first = true;
            loop {
                let connected = match sqlx::postgres::PgListener::connect(&url).await {
                    Ok(mut listener) => listener.listen(CHANNEL).await.map(|()| listener),
                    Err(err) => Err(err),
                };
                let mut listener = match connected {
                    Ok(listener) => listener,
                    Err(err) => {
                        tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "cannot listen for other nodes; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = shutdown.changed() => return,
                        }
                        backoff = (backoff * 2).min(ledgerhook_background::MAX_BACKOFF);
                        first = false;
                        continue;
                    }
                };
                backoff = ledgerhook_background::FIRST_BACKOFF;
                if !std::mem::take(&mut first) {
                    // Work announced while nobody listened is found by the next round.
                    windows.notify_one();
                    notifications.notify_one();
                }
                loop {
                    tokio::select! {
                        message = listener.recv() => match message {
                            Ok(message) => {
                                let (kind, origin) =
                                    message.payload().split_once(' ').unwrap_or((message.payload(), ""));
                                if origin == own {
                                    continue;
                                }
                                match kind {
                                    "windows" => windows.notify_one(),
                                    _ => notifications.notify_one(),
                                }
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, "listener connection lost; reconnecting");
                                // Work announced meanwhile is found by the next round.
                                windows.notify_one();
                                notifications.notify_one();
                                break;
                            }
                        },
                        _ = shutdown.changed() => return,
                    }
                }
            }
        });
    }
}
