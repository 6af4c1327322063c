//! One realm's round: CDC since the realm was last heard from, then its queued events in
//! `lastUpdated` order, each applied only if newer than what its entity has; and what a
//! failed round costs the realm (a back-off, then dead letters).

use super::{Apply, Change, Processed, Worker, WorkerError, ROUND};
use crate::inbox::{InboxError, StoreResult};
use crate::queue::Queued;
use ledgerhook_domain::{Operation, Timestamp};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use tokio::task::JoinSet;

/// The tasks [`Worker::run`] has going: one per realm at most, and full repairs.
#[derive(Default)]
pub(super) struct Running {
    tasks: JoinSet<Option<String>>,
    realms: HashSet<String>,
}

impl Running {
    /// Starts `round` for `realm_id` unless one is running.
    pub(super) fn spawn_realm(&mut self, realm_id: String, round: impl Future<Output = ()> + Send + 'static) {
        if self.realms.insert(realm_id.clone()) {
            self.tasks.spawn(async move {
                round.await;
                Some(realm_id)
            });
        }
    }

    /// Starts a full repair.
    pub(super) fn spawn_repair(&mut self, repair: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(async move {
            repair.await;
            None
        });
    }

    /// Resolves when a task ends (never while none runs).
    pub(super) async fn next_finished(&mut self) -> Option<()> {
        if self.tasks.is_empty() {
            return std::future::pending().await;
        }
        if let Some(Ok(Some(realm_id))) = self.tasks.join_next().await {
            self.realms.remove(&realm_id);
        }
        Some(())
    }

    /// Waits for every running task: a round in progress is finished, not cut off.
    pub(super) async fn stop(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

impl<A: Apply> Worker<A> {
    /// Runs `realm_id`'s rounds until its queue is empty or a round fails (which sets
    /// the realm's back-off).
    pub(super) async fn drain_realm(&self, realm_id: &str) -> Processed {
        let lock = self.realm_lock(realm_id);
        let _held = lock.lock().await;
        let mut total = Processed::default();
        loop {
            let queued = match self.inner.queues.events(realm_id, ROUND).await {
                Ok(queued) if queued.is_empty() => return total,
                Ok(queued) => queued,
                Err(err) => {
                    self.round_failed(realm_id, None, &WorkerError::Inbox(InboxError::store(err)))
                        .await;
                    total.failed += 1;
                    return total;
                }
            };
            let through = queued.last().map_or(0, |q| q.seq);
            let heard_at = queued.iter().map(|q| q.received_at).max().unwrap_or(0);
            let outcome = match self.process(realm_id, queued).await {
                Ok(done) => self
                    .inner
                    .queues
                    .succeeded(realm_id, through, heard_at)
                    .await
                    .map(|()| done)
                    .store()
                    .map_err(WorkerError::Inbox),
                Err(err) => Err(err),
            };
            match outcome {
                Ok(done) => total.add(&done),
                Err(err) => {
                    self.round_failed(realm_id, Some(through), &err).await;
                    total.failed += 1;
                    return total;
                }
            }
        }
    }

    /// Counts a failed round: the realm waits its back-off, and after
    /// [`WorkerOptions::max_tries`](super::WorkerOptions::max_tries) failures its events
    /// through `through` become dead letters.
    async fn round_failed(&self, realm_id: &str, through: Option<i64>, err: &WorkerError) {
        let reason = ledgerhook_domain::error_chain(err);
        let options = &self.inner.options;
        let now = Timestamp::now().millis();
        let failures = match self
            .inner
            .queues
            .failed(realm_id, &reason, now + options.backoff_cap.as_millis() as i64)
            .await
        {
            Ok(failures) => failures,
            Err(store) => {
                tracing::warn!(realm_id, error = %store, "recording a realm's failure failed");
                return;
            }
        };
        let doublings = u32::try_from(failures - 1).unwrap_or(u32::MAX).min(20);
        let wait = options
            .backoff
            .saturating_mul(1 << doublings)
            .min(options.backoff_cap);
        let retry_at = now + wait.as_millis() as i64;
        let _ = self.inner.queues.failed_until(realm_id, retry_at).await;
        if failures >= i64::from(options.max_tries) {
            if let Some(through) = through {
                tracing::warn!(realm_id, failures, reason = %reason, "giving up on the realm's pending events: they are dead letters now");
                if let Err(store) = self.inner.queues.bury(realm_id, through, &reason, now).await {
                    tracing::warn!(realm_id, error = %store, "moving events to the dead letters failed");
                }
            }
        } else {
            tracing::warn!(realm_id, failures, retry_in_ms = wait.as_millis() as u64, reason = %reason, "a realm's round failed; other realms go on");
        }
    }

    /// One round over `queued`: CDC since the previous notification (and since the
    /// oldest change in hand), then the notified changes in `lastUpdated` order.
    async fn process(&self, realm_id: &str, queued: Vec<Queued>) -> Result<Processed, WorkerError> {
        let mut done = Processed::default();
        let mut events: Vec<_> = queued.into_iter().map(|q| q.event).collect();
        if self.repairs(realm_id).is_some() {
            let previous = self.inner.queues.heard_at(realm_id).await.store()?;
            let mut oldest = None;
            for event in &events {
                let at = event.last_updated.millis();
                oldest = Some(oldest.map_or(at, |o: i64| o.min(at)));
            }
            let since = match (previous, oldest) {
                (Some(p), Some(o)) => p.min(o),
                (p, o) => p.or(o).unwrap_or_else(|| Timestamp::now().millis()),
            };
            done.add(
                &self
                    .repair_realm_locked(realm_id, Timestamp(since), &events)
                    .await?,
            );
        }
        // Stable: ties keep arrival order.
        events.sort_by_key(|e| e.last_updated);
        let changes: Vec<Change> = events.into_iter().map(Change::from).collect();
        done.add(&self.apply_in_order(changes).await?);
        Ok(done)
    }

    /// CDC for `realm_id` since `since` less the margin, applied; a change CDC reports at
    /// the same time as a notified event takes the event's operation (CDC says only
    /// "changed" or "deleted").
    pub(super) async fn repair_realm_locked(
        &self,
        realm_id: &str,
        since: Timestamp,
        notified: &[crate::payload::Event],
    ) -> Result<Processed, WorkerError> {
        let Some((repair, _)) = self.repairs(realm_id) else {
            return Ok(Processed::default());
        };
        let since = Timestamp(since.millis() - repair.margin.as_millis() as i64);
        let mut named: HashMap<(String, String, i64), crate::payload::Event> = HashMap::new();
        for event in notified {
            let key = (
                event.entity.clone(),
                event.entity_id.clone(),
                event.last_updated.millis(),
            );
            named.insert(key, event.clone());
        }
        let mut changes = self.changes_since(realm_id, since).await?;
        changes.retain(|c| self.wanted(&c.event));
        for change in &mut changes {
            let key = (
                change.event.entity.clone(),
                change.event.entity_id.clone(),
                change.event.last_updated.millis(),
            );
            if let Some(event) = named.get(&key) {
                let tombstone = change.event.operation == Operation::Delete;
                if !tombstone || event.operation == Operation::Delete {
                    change.event.operation = event.operation;
                    change.event.deleted_id = event.deleted_id.clone();
                    change.event.event_id = event.event_id.clone();
                }
            }
        }
        self.apply_in_order(changes).await
    }

    /// Applies `changes` one after another (each only if newer), counting what was
    /// applied and skipped.
    async fn apply_in_order(&self, changes: Vec<Change>) -> Result<Processed, WorkerError> {
        let mut done = Processed::default();
        for change in changes {
            if self.apply_if_newer(change).await? {
                done.applied += 1;
            } else {
                done.skipped += 1;
            }
        }
        Ok(done)
    }

    /// Applies `change` unless its entity was applied at the same or a newer version;
    /// answers whether it was applied.
    async fn apply_if_newer(&self, change: Change) -> Result<bool, WorkerError> {
        let version = change.version();
        let known = self.inner.books.applied_version(&change.event).await.store()?;
        if known.is_some_and(|k| !version.is_newer_than(&k)) {
            return Ok(false);
        }
        self.inner
            .apply
            .apply(&change)
            .await
            .map_err(|message| WorkerError::Apply {
                realm_id: change.event.realm_id.clone(),
                entity: change.event.entity.clone(),
                entity_id: change.event.entity_id.clone(),
                message,
            })?;
        self.inner.books.applied(&change.event, &version).await.store()?;
        Ok(true)
    }
}
