//! Wake-ups across nodes. In one process the aggregator and dispatcher are woken through
//! in-process `Notify`s; on PostgreSQL, a transaction that creates work posts a signal
//! once it has committed, a task of the store sends it with `NOTIFY` so that every node's
//! tasks wake, and each node listens. A lost notification (a listener reconnecting, a
//! crash between a commit and its signal) costs at most one safety sweep.
//!
//! The signal is not sent inside the transaction that creates the work: PostgreSQL holds
//! a database-wide lock from the start of such a transaction's commit to its end (the WAL
//! flush included), so transactions that announced committed one at a time. At
//! saturation most of the pipeline's commits waited on that lock. Sent after the commit,
//! in a statement of its own, signals posted meanwhile are sent once.

use crate::{Backend, Inner, Store};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering as AtomicOrdering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
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

impl Signal {
    fn bit(self) -> u8 {
        match self {
            Signal::Windows => 1,
            Signal::Notifications => 2,
        }
    }
}

/// Signals posted after their transactions committed, waiting for the sending task.
#[derive(Default)]
pub(crate) struct Outbox {
    pending: AtomicU8,
    posted: Notify,
}

/// Sends what is posted to `outbox` as `NOTIFY`s tagged with the store's origin (its
/// own listener skips them: the process that made the work wakes its own tasks
/// directly), until the store is gone.
pub(crate) async fn send_signals(store: Weak<Inner>, outbox: Arc<Outbox>) {
    loop {
        // Woken by a post; each second, also to see whether the store is still there.
        let _ = tokio::time::timeout(Duration::from_secs(1), outbox.posted.notified()).await;
        let Some(inner) = store.upgrade() else { return };
        let pending = outbox.pending.swap(0, AtomicOrdering::SeqCst);
        for signal in [Signal::Windows, Signal::Notifications] {
            if pending & signal.bit() == 0 {
                continue;
            }
            let sent = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(format!("{} {}", signal.payload(), inner.origin))
                .execute(&inner.write)
                .await;
            if let Err(err) = sent {
                tracing::warn!(error = %err, "announcing work to other nodes failed; their next sweep finds it");
            }
        }
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
    /// Announces `signal` to every other node (PostgreSQL only). Call it after the
    /// transaction that made the work has committed: the node woken must see it.
    pub(crate) fn announce(&self, signal: Signal) {
        if self.backend() == Backend::Postgres {
            let outbox = &self.inner.outbox;
            outbox.pending.fetch_or(signal.bit(), AtomicOrdering::SeqCst);
            outbox.posted.notify_one();
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
