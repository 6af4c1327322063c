//! The worker: applies what the inbox received to the app's own copy, realm by realm.
//!
//! - Each realm's changes are applied one after another, in `lastUpdated` order (ties in
//!   arrival order); different realms are applied concurrently.
//! - A change is skipped when the same entity has already been applied at the same or a
//!   newer `lastUpdated`: redeliveries, duplicates and late arrivals of older changes
//!   never overwrite a newer state. What was applied is kept in the inbox file, so this
//!   holds across restarts.
//! - With [`Repair`] set, each realm that sends a notification is first asked, through
//!   CDC, for everything changed since the previous notification from it (less
//!   [`Repair::margin`]), so that a missed notification is repaired by the next one and
//!   the app receives entity bodies (notifications carry ids only). [`Worker::repair_all`]
//!   does the same for every realm since the last full repair; [`Worker::run`] calls it
//!   once a day.
//!
//! An inbox entry is marked done only after all its changes are applied; a crash in
//! between applies nothing twice, because applied changes are skipped.

use crate::bookkeeping::Bookkeeping;
pub use crate::cdc::{cdc_changes, changes_since, Repair};
use crate::inbox::{Inbox, InboxError};
use crate::payload::{self, Event};
use ledgerhook_domain::Timestamp;
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// One change to apply to the app's copy: an event, from a notification or found
/// through CDC, and the entity's body when CDC gave it.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// What changed, when (`Update` or `Delete` for a change found through CDC).
    pub event: Event,
    /// The entity as of `event.last_updated` when the change came from CDC (a tombstone
    /// for a deleted entity: `{"status":"Deleted", "Id": …}`); `None` from a
    /// notification, which names the entity only.
    pub body: Option<Value>,
}

impl From<Event> for Change {
    fn from(event: Event) -> Change {
        Change { event, body: None }
    }
}

/// The app's side: applies one change to its copy. Called at most once per (entity,
/// `lastUpdated`), never with an older state of an entity after a newer one. An error
/// stops the realm's round; the change is offered again on the next round.
pub trait Apply: Send + Sync + 'static {
    /// Applies `change`.
    fn apply(&self, change: &Change) -> impl Future<Output = Result<(), String>> + Send;
}

/// Why the worker stopped a round.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The inbox file failed.
    #[error(transparent)]
    Inbox(#[from] InboxError),
    /// The app's [`Apply`] refused a change.
    #[error("applying {entity} {entity_id} of realm {realm_id} failed: {message}")]
    Apply {
        /// The realm.
        realm_id: String,
        /// The entity type.
        entity: String,
        /// The entity id.
        entity_id: String,
        /// What the app said.
        message: String,
    },
    /// A realm's task panicked (in the app's [`Apply`]).
    #[error("a realm's round panicked: {0}")]
    Panicked(String),
    /// CDC could not be read.
    #[error("CDC for realm {realm_id} failed: {message}")]
    Cdc {
        /// The realm.
        realm_id: String,
        /// What went wrong.
        message: String,
        /// The HTTP client's error, when there was one (its type stays private).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl From<sqlx::Error> for WorkerError {
    fn from(err: sqlx::Error) -> WorkerError {
        WorkerError::Inbox(InboxError::from(err))
    }
}

/// What a round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Processed {
    /// Inbox entries marked done.
    pub entries: usize,
    /// Changes applied (from notifications and from CDC).
    pub applied: usize,
    /// Changes skipped as already applied.
    pub skipped: usize,
    /// Entries that were not a notification (marked done, nothing applied).
    pub malformed: usize,
}

impl Processed {
    fn add(&mut self, other: &Processed) {
        self.entries += other.entries;
        self.applied += other.applied;
        self.skipped += other.skipped;
        self.malformed += other.malformed;
    }
}

/// Inbox entries taken per round.
const ROUND: u32 = 500;
/// How often [`Worker::run`] repairs every realm.
const FULL_REPAIR_EVERY: Duration = Duration::from_secs(24 * 3600);

struct Inner<A> {
    inbox: Inbox,
    books: Bookkeeping,
    apply: A,
    repair: Option<Repair>,
}

/// The worker. Cheap to clone.
pub struct Worker<A> {
    inner: Arc<Inner<A>>,
}

impl<A> Clone for Worker<A> {
    fn clone(&self) -> Self {
        Worker {
            inner: self.inner.clone(),
        }
    }
}

impl<A: Apply> Worker<A> {
    /// A worker over `inbox` applying through `apply`, repairing through CDC when
    /// `repair` is given. Creates its bookkeeping tables in the inbox file.
    pub async fn new(inbox: Inbox, apply: A, repair: Option<Repair>) -> Result<Worker<A>, WorkerError> {
        let books = Bookkeeping::open(inbox.pool().clone()).await?;
        Ok(Worker {
            inner: Arc::new(Inner {
                inbox,
                books,
                apply,
                repair,
            }),
        })
    }

    /// The app's [`Apply`].
    pub fn app(&self) -> &A {
        &self.inner.apply
    }

    /// Applies every pending inbox entry (in rounds of 500) and marks them done.
    pub async fn run_once(&self) -> Result<Processed, WorkerError> {
        let mut total = Processed::default();
        loop {
            let entries = self.inner.inbox.pending(ROUND).await?;
            if entries.is_empty() {
                return Ok(total);
            }
            let mut round = Processed::default();
            // Per realm: its events in arrival order, and the newest arrival.
            let mut realms: BTreeMap<String, (Vec<Event>, i64)> = BTreeMap::new();
            for entry in &entries {
                match payload::parse(&entry.content_type, &entry.body) {
                    Ok(events) => {
                        for event in events {
                            let realm = realms.entry(event.realm_id.clone()).or_default();
                            realm.1 = realm.1.max(entry.received_at);
                            realm.0.push(event);
                        }
                    }
                    Err(_) => round.malformed += 1,
                }
            }
            let mut tasks = tokio::task::JoinSet::new();
            for (realm_id, (events, heard_at)) in realms {
                let worker = self.clone();
                tasks.spawn(async move { worker.process_realm(&realm_id, events, heard_at).await });
            }
            let mut failure = None;
            while let Some(joined) = tasks.join_next().await {
                match joined {
                    Ok(Ok(done)) => round.add(&done),
                    Ok(Err(err)) => failure = Some(err),
                    Err(err) => failure = Some(WorkerError::Panicked(err.to_string())),
                }
            }
            if let Some(err) = failure {
                return Err(err);
            }
            let last = entries.last().map_or(0, |e| e.seq);
            self.inner.inbox.done_through(last).await?;
            round.entries = entries.len();
            total.add(&round);
        }
    }

    /// One realm's round: CDC since the previous notification (and since the oldest
    /// change in hand), then the notified changes in `lastUpdated` order.
    async fn process_realm(
        &self,
        realm_id: &str,
        mut events: Vec<Event>,
        heard_at: i64,
    ) -> Result<Processed, WorkerError> {
        let mut done = Processed::default();
        if self.repair_for(realm_id).is_some() {
            let previous = self.inner.books.heard_at(realm_id).await?;
            let oldest = events
                .iter()
                .map(|e| e.last_updated.millis())
                .min()
                .unwrap_or(heard_at);
            let since = previous.map_or(oldest, |p| p.min(oldest));
            done.add(&self.repair_realm(realm_id, Timestamp(since)).await?);
        }
        // Stable: ties keep arrival order.
        events.sort_by_key(|e| e.last_updated);
        done.add(&self.apply_in_order(events.into_iter().map(Change::from)).await?);
        self.inner.books.heard(realm_id, heard_at).await?;
        Ok(done)
    }

    /// The CDC settings, if `realm_id` can be repaired (it has a token).
    fn repair_for(&self, realm_id: &str) -> Option<&Repair> {
        self.inner
            .repair
            .as_ref()
            .filter(|r| r.tokens.contains_key(realm_id))
    }

    /// Applies `changes` one after another (each only if newer), counting what was
    /// applied and skipped.
    async fn apply_in_order(
        &self,
        changes: impl IntoIterator<Item = Change>,
    ) -> Result<Processed, WorkerError> {
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

    /// Applies `change` unless its entity was applied at the same or a newer time;
    /// answers whether it was applied.
    async fn apply_if_newer(&self, change: Change) -> Result<bool, WorkerError> {
        let known = self.inner.books.applied_at(&change.event).await?;
        if known.is_some_and(|k| k >= change.event.last_updated.millis()) {
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
        self.inner.books.applied(&change.event).await?;
        Ok(true)
    }

    /// Asks CDC for everything changed in `realm_id` since `since` (less the margin,
    /// and no further back than CDC allows) and applies what is newer than the copy.
    pub async fn repair_realm(&self, realm_id: &str, since: Timestamp) -> Result<Processed, WorkerError> {
        let Some(repair) = self.repair_for(realm_id) else {
            return Ok(Processed::default());
        };
        let since = Timestamp(since.millis() - repair.margin.as_millis() as i64);
        self.apply_in_order(changes_since(repair, realm_id, since).await?)
            .await
    }

    /// Repairs every realm that has a token, since the last full repair (or as far back
    /// as CDC allows), and records this one.
    pub async fn repair_all(&self) -> Result<Processed, WorkerError> {
        let mut done = Processed::default();
        let Some(repair) = &self.inner.repair else {
            return Ok(done);
        };
        let started = Timestamp::now();
        let since = self.inner.books.last_full_repair().await?.unwrap_or(Timestamp(0));
        let mut realms: Vec<&String> = repair.tokens.keys().collect();
        realms.sort();
        for realm_id in realms {
            done.add(&self.repair_realm(realm_id, since).await?);
        }
        self.inner.books.full_repair_done(started).await?;
        Ok(done)
    }

    /// Runs until `shutdown` resolves: a round whenever the inbox may have entries
    /// (every `poll`), and a full repair at start and once a day. A failed round is
    /// tried again at the next poll.
    pub async fn run(self, poll: Duration, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
        tokio::pin!(shutdown);
        let mut full_repair = tokio::time::interval(FULL_REPAIR_EVERY);
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = full_repair.tick() => {
                    if let Err(err) = self.repair_all().await {
                        tracing::warn!(error = %err, "the daily CDC repair failed; trying again tomorrow");
                    }
                }
                _ = tick.tick() => {
                    if let Err(err) = self.run_once().await {
                        tracing::warn!(error = %err, "a worker round failed; trying again at the next poll");
                    }
                }
            }
        }
    }
}
