//! The aggregator: a background task that closes due windows into notifications.
//!
//! It sleeps until the soonest window is due or until ingestion wakes it, with a bounded
//! safety sweep (another node may have opened a window this process was not told about).

use crate::payload;
use ledgerhook_domain::Timestamp;
use ledgerhook_store::notifications::NewNotification;
use ledgerhook_store::windows::{ClosingWindow, WindowPolicy};
use ledgerhook_store::Store;
use rand::RngCore;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// The longest the aggregator sleeps without looking at the database.
const SAFETY_SWEEP: Duration = Duration::from_secs(5);
/// Windows closed per round before looking again.
const ROUND: u32 = 64;

/// A new notification id: `ntf_` and 24 hex digits.
pub fn new_notification_id() -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("ntf_{}", hex::encode(bytes))
}

/// Renders a closing window into notifications (one legacy body, or CloudEvents
/// batches).
pub fn render_window(window: &ClosingWindow<'_>) -> Vec<NewNotification> {
    payload::render(
        window.config.format,
        &window.config.app_id,
        window.realm_id,
        window.events,
    )
    .into_iter()
    .map(|(body, event_count)| NewNotification {
        id: new_notification_id(),
        payload: body.into_bytes(),
        event_count,
    })
    .collect()
}

/// Handles the aggregator task uses.
pub struct Aggregator {
    /// The database.
    pub store: Store,
    /// Window lengths and limits.
    pub policy: WindowPolicy,
    /// Notified by ingestion when windows were opened or advanced.
    pub wake: Arc<Notify>,
    /// Notified when notifications were made (wakes the dispatcher).
    pub made: Arc<Notify>,
    /// Counters for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Aggregator {
    /// Closes every due window; answers how many were looked at.
    pub async fn close_due(&self) -> usize {
        let now = Timestamp::now();
        let keys = match self.store.due_windows(now, ROUND).await {
            Ok(keys) => keys,
            Err(err) => {
                tracing::error!(error = %err, "reading due windows failed");
                return 0;
            }
        };
        if keys.is_empty() {
            return 0;
        }
        match self
            .store
            .close_windows(&keys, &self.policy, now, render_window)
            .await
        {
            Ok(0) => {}
            Ok(made) => {
                tracing::debug!(windows = keys.len(), made, "windows closed");
                self.metrics
                    .notifications_made
                    .fetch_add(made as u64, std::sync::atomic::Ordering::Relaxed);
                self.made.notify_one();
            }
            Err(err) => tracing::error!(error = %err, windows = keys.len(), "closing windows failed"),
        }
        keys.len()
    }

    /// How long to sleep before the next window is due (at most the safety sweep).
    async fn sleep_for(&self) -> Duration {
        match self.store.next_window_due().await {
            Ok(Some(due)) => {
                let wait = due.millis() - Timestamp::now().millis();
                Duration::from_millis(wait.max(0) as u64).min(SAFETY_SWEEP)
            }
            Ok(None) => SAFETY_SWEEP,
            Err(err) => {
                tracing::error!(error = %err, "reading the next window failed");
                Duration::from_secs(1)
            }
        }
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            if self.close_due().await as u32 == ROUND {
                continue;
            }
            let sleep = self.sleep_for().await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}
