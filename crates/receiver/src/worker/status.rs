//! What the worker can say about itself: per realm the newest `lastUpdated` applied,
//! the queue's depth, the lag of its oldest pending event, its failures and why, and
//! its dead letters.

use super::{Apply, Worker, WorkerError};
use crate::inbox::StoreResult;
use ledgerhook_domain::Timestamp;

/// One realm's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealmStatus {
    /// The realm.
    pub realm_id: String,
    /// The newest `lastUpdated` applied to any of its entities.
    pub last_applied: Option<Timestamp>,
    /// When a notification from it was last processed.
    pub heard_at: Option<Timestamp>,
    /// Events queued, not yet applied.
    pub depth: i64,
    /// How long its oldest queued event has waited, in milliseconds (0 when none waits).
    pub lag_ms: i64,
    /// Failed rounds in a row.
    pub failures: i64,
    /// The last failure's reason, while it is failing.
    pub last_error: Option<String>,
    /// When it is tried next, while it is failing.
    pub retry_at: Option<Timestamp>,
    /// Its dead letters.
    pub dead_letters: i64,
}

/// The worker's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerStatus {
    /// Inbox entries not yet taken into the realms' queues.
    pub inbox_depth: i64,
    /// Every realm heard from, failing or holding dead letters, by id.
    pub realms: Vec<RealmStatus>,
}

impl<A: Apply> Worker<A> {
    /// The worker's state now.
    pub async fn status(&self) -> Result<WorkerStatus, WorkerError> {
        let now = Timestamp::now().millis();
        let mut realms = Vec::new();
        for row in self.inner.queues.realms().await.store()? {
            let last_applied = self.inner.books.newest_applied(&row.realm_id).await.store()?;
            let failing = row.failures > 0;
            realms.push(RealmStatus {
                last_applied: last_applied.map(Timestamp),
                heard_at: row.heard_at.map(Timestamp),
                depth: row.depth,
                lag_ms: row.oldest_received.map_or(0, |at| (now - at).max(0)),
                failures: row.failures,
                last_error: row.last_error.filter(|_| failing),
                retry_at: failing.then_some(Timestamp(row.retry_at)),
                dead_letters: row.dead,
                realm_id: row.realm_id,
            });
        }
        Ok(WorkerStatus {
            inbox_depth: self.inner.inbox.count_after(self.position().await?).await?,
            realms,
        })
    }
}
