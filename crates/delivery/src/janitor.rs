//! Housekeeping on a timer: configurations blacklisted for `inactive-after` become
//! inactive, and rows older than `retention` are removed.

use ledgerhook_domain::Timestamp;
use ledgerhook_store::Store;
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
    pub async fn sweep(&self) {
        let now = Timestamp::now();
        let inactive_cutoff = Timestamp(now.millis() - self.inactive_after.as_millis() as i64);
        match self.store.deactivate_blacklisted(inactive_cutoff, now).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(configurations = n, "blacklisted configurations became inactive"),
            Err(err) => tracing::error!(error = %err, "deactivating blacklisted configurations failed"),
        }
        let retention_cutoff = Timestamp(now.millis() - self.retention.as_millis() as i64);
        if let Err(err) = self.store.purge(retention_cutoff, now).await {
            tracing::error!(error = %err, "retention purge failed");
        }
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let interval = self.interval();
        loop {
            self.sweep().await;
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
