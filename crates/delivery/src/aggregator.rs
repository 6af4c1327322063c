//! The aggregator: a background task that closes due windows into notifications.
//!
//! It sleeps until the soonest window is due or until ingestion wakes it, with a bounded
//! safety sweep (another node may have opened a window this process was not told about).

use crate::payload;
use ledgerhook_background::{Status, Step, WorkError, Worker};
use ledgerhook_domain::Timestamp;
use ledgerhook_store::notifications::NewNotification;
use ledgerhook_store::windows::{ClosingWindow, WindowPolicy};
use ledgerhook_store::{Store, StoreError};
use rand::RngCore;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// The longest the aggregator sleeps without looking at the database.
const SAFETY_SWEEP: Duration = Duration::from_secs(5);
/// Windows closed per round before looking again.
const ROUND: u32 = 256;

/// A new notification id: `ntf_` and 24 hex digits — 12 of the creation time in
/// milliseconds, then 12 random. Ids made later sort later, so the unique index on them
/// grows at its end instead of touching a random page per insert.
pub fn new_notification_id() -> String {
    let mut random = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut random);
    let millis = Timestamp::now().millis().clamp(0, 0xffff_ffff_ffff);
    format!("ntf_{millis:012x}{}", hex::encode(random))
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
    /// Closes a round of due windows; answers how many were taken.
    pub async fn close_due(&self) -> Result<usize, StoreError> {
        let closed = self
            .store
            .close_due_windows(&self.policy, Timestamp::now(), ROUND, render_window)
            .await?;
        if closed.notifications > 0 {
            tracing::debug!(
                windows = closed.windows,
                made = closed.notifications,
                "windows closed"
            );
            self.metrics
                .notifications_made
                .fetch_add(closed.notifications as u64, std::sync::atomic::Ordering::Relaxed);
            self.made.notify_one();
        }
        Ok(closed.windows)
    }

    /// How long to sleep before the next window is due (at most the safety sweep).
    async fn sleep_for(&self) -> Result<Duration, StoreError> {
        Ok(match self.store.next_window_due().await? {
            Some(due) => {
                let wait = due.millis() - Timestamp::now().millis();
                Duration::from_millis(wait.max(0) as u64).min(SAFETY_SWEEP)
            }
            None => SAFETY_SWEEP,
        })
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>, status: Status) {
        let wake = self.wake.clone();
        ledgerhook_background::run(self, Some(wake), shutdown, status).await;
    }
}

impl Worker for Aggregator {
    fn name(&self) -> &'static str {
        "aggregator"
    }

    /// One round of closing; busy again at once when the round was full.
    async fn work(&mut self) -> Result<Step, WorkError> {
        if self.close_due().await? as u32 == ROUND {
            return Ok(Step::Busy);
        }
        Ok(Step::Idle(self.sleep_for().await?))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn notification_ids_sort_by_creation_time() {
        let first = super::new_notification_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = super::new_notification_id();
        assert_eq!((first.len(), second.len()), (28, 28));
        assert!(first.starts_with("ntf_") && first[4..].chars().all(|c| c.is_ascii_hexdigit()));
        assert!(first < second, "{first} then {second}");
    }
}
