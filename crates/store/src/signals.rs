//! Wake-ups across nodes. In one process the aggregator and dispatcher are woken through
//! in-process `Notify`s; on PostgreSQL, transactions that create work also `NOTIFY`
//! (delivered at commit) so that every node's tasks wake, and each node listens. A lost
//! notification (a listener reconnecting) costs at most one safety sweep.

use crate::{Backend, Store};
use sqlx::{Any, Transaction};
use std::sync::Arc;
use std::time::Duration;
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

/// Announces `signal` to every node when `tx` commits (PostgreSQL only).
pub(crate) async fn announce(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    signal: Signal,
) -> Result<(), sqlx::Error> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(signal.payload())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl Store {
    /// On PostgreSQL, listens for other nodes' signals and wakes `windows` or
    /// `notifications` accordingly, until `shutdown` turns true. Does nothing on SQLite.
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
        tokio::spawn(async move {
            loop {
                let mut listener = match sqlx::postgres::PgListener::connect(&url).await {
                    Ok(listener) => listener,
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot listen for other nodes; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                            _ = shutdown.changed() => return,
                        }
                    }
                };
                if let Err(err) = listener.listen(CHANNEL).await {
                    tracing::warn!(error = %err, "LISTEN failed; retrying");
                    continue;
                }
                loop {
                    tokio::select! {
                        message = listener.recv() => match message {
                            Ok(message) => match message.payload() {
                                "windows" => windows.notify_one(),
                                _ => notifications.notify_one(),
                            },
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
