//! Housekeeping on a timer: configurations blacklisted for `inactive-after` become
//! inactive, and rows older than `retention` are removed.

use ledgerhook_background::{Status, Step, WorkError, Worker};
use ledgerhook_domain::Timestamp;
use ledgerhook_store::{Store, StoreError};
use std::time::Duration;
use tokio::sync::watch;

/// The janitor's settings (real time: already divided by `time-scale`).
pub struct Janitor {
    /// The database.
    pub store: Store,
    /// `inactive-after`, scaled.
    pub inactive_after: Duration,
    /// `retention`, scaled.
    pub retention: Duration,
}

impl Janitor {
    /// How often to look: a tenth of the shorter period, between 50 ms and 30 s.
    fn interval(&self) -> Duration {
        (self.inactive_after.min(self.retention) / 10)
            .clamp(Duration::from_millis(50), Duration::from_secs(30))
    }

    /// One round of housekeeping.
    pub async fn sweep(&self) -> Result<(), StoreError> {
        let now = Timestamp::now();
        let inactive_cutoff = Timestamp(now.millis() - self.inactive_after.as_millis() as i64);
        let deactivated = self.store.deactivate_blacklisted(inactive_cutoff, now).await?;
        if deactivated > 0 {
            tracing::info!(
                configurations = deactivated,
                "blacklisted configurations became inactive"
            );
        }
        let retention_cutoff = Timestamp(now.millis() - self.retention.as_millis() as i64);
        self.store.purge(retention_cutoff, now).await?;
        Ok(())
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>, status: Status) {
        ledgerhook_background::run(self, None, shutdown, status).await;
    }
}

impl Worker for Janitor {
    fn name(&self) -> &'static str {
        "janitor"
    }

    async fn work(&mut self) -> Result<Step, WorkError> {
        self.sweep().await?;
        Ok(Step::Idle(self.interval()))
    }
}
