//! The worker: applies what the inbox received to the app's own copy, realm by realm.
//!
//! - **Intake**: each inbox entry's events are moved to its realm's queue (events of
//!   entities outside [`WorkerOptions::entities`] are dropped; a CloudEvent already
//!   queued is not queued again) and the entry is marked done, in one transaction.
//! - **Per realm, in order**: a realm's events are applied one after another in
//!   `lastUpdated` order (ties in arrival order); realms run independently. A change is
//!   applied only when it is newer than what was applied to its entity — by
//!   `lastUpdated`, then `SyncToken` (see [`Version`]) — so redeliveries, duplicates and
//!   late arrivals never overwrite a newer state, and a second change within the same
//!   second is not lost. What was applied is kept in the inbox file, across restarts.
//! - **Repair**: with [`Repair`] set, each round of a realm first asks CDC for
//!   everything changed since the previous notification from it (less
//!   [`Repair::margin`]), so a missed notification is repaired by the next one and the
//!   app receives entity bodies. A full repair ([`Worker::repair_all`]) looks back
//!   [`Repair::look_back`] for every realm; [`Worker::run`] does one at start when the
//!   last is older than [`WorkerOptions::full_repair_every`], then on that schedule and
//!   whenever [`Worker::request_full_repair`] asks.
//! - **Failures stay in their realm**: a realm whose round fails (CDC refused, the app's
//!   [`Apply`] failed) is tried again after an exponential back-off with a cap, while
//!   other realms go on; after [`WorkerOptions::max_tries`] failures in a row the
//!   realm's pending events become dead letters with the reason
//!   ([`Worker::dead_letters`]), and [`Worker::retry_dead_letters`] queues them again.

mod round;
mod status;

use crate::bookkeeping::Bookkeeping;
pub use crate::bookkeeping::Version;
pub use crate::cdc::{cdc_changes, Repair};
use crate::inbox::{Inbox, InboxError, StoreResult};
use crate::payload::{self, Event};
pub use crate::queue::DeadLetter;
use crate::queue::Queues;
use crate::tokens::Tokens;
pub use crate::tokens::{OAuthClient, RealmCredentials, TokenError};
use ledgerhook_domain::Timestamp;
use serde_json::Value;
pub use status::{RealmStatus, WorkerStatus};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// One change to apply to the app's copy: an event, from a notification or found
/// through CDC, and the entity's body when CDC gave it.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// What changed, when.
    pub event: Event,
    /// The entity as of `event.last_updated` when the change came from CDC (a tombstone
    /// for a deleted entity: `{"status":"Deleted", "Id": …}`); `None` from a
    /// notification, which names the entity only.
    pub body: Option<Value>,
}

impl Change {
    /// The entity's `SyncToken`, when CDC gave its body.
    pub fn sync_token(&self) -> Option<i64> {
        self.body.as_ref()?["SyncToken"].as_str()?.parse().ok()
    }

    /// Which state of the entity this change carries.
    pub fn version(&self) -> Version {
        Version {
            last_updated: self.event.last_updated.millis(),
            sync_token: self.sync_token(),
            operation: self.event.operation,
        }
    }
}

impl From<Event> for Change {
    fn from(event: Event) -> Change {
        Change { event, body: None }
    }
}

/// The app's side: applies one change to its copy. Called at most once per version of
/// an entity, never with an older state of an entity after a newer one. An error fails
/// the realm's round; the change is offered again after the back-off.
pub trait Apply: Send + Sync + 'static {
    /// Applies `change`.
    fn apply(&self, change: &Change) -> impl Future<Output = Result<(), String>> + Send;
}

/// Why the worker failed.
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
        /// The HTTP client's or the token endpoint's error, when there was one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// What a round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Processed {
    /// Inbox entries taken into the realms' queues.
    pub entries: usize,
    /// Changes applied (from notifications and from CDC).
    pub applied: usize,
    /// Changes skipped as already applied.
    pub skipped: usize,
    /// Entries that were not a notification (marked done, nothing applied).
    pub malformed: usize,
    /// Realm rounds that failed (each is tried again after its back-off).
    pub failed: usize,
}

impl Processed {
    fn add(&mut self, other: &Processed) {
        self.entries += other.entries;
        self.applied += other.applied;
        self.skipped += other.skipped;
        self.malformed += other.malformed;
        self.failed += other.failed;
    }
}

/// How the worker behaves; [`Default`] gives the documented defaults.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Entity types applied (`None`: all); events of others are dropped at intake.
    pub entities: Option<Vec<String>>,
    /// Failed rounds in a row after which a realm's pending events become dead letters.
    /// Default 20.
    pub max_tries: u32,
    /// The wait after a realm's first failure, doubled after each further one. Default 200 ms.
    pub backoff: Duration,
    /// The longest wait between tries of a failing realm. Default 60 s.
    pub backoff_cap: Duration,
    /// How often [`Worker::run`] repairs every realm through CDC. Default 24 h.
    pub full_repair_every: Duration,
    /// How often [`Worker::run`] looks at the inbox when nothing wakes it. Default 1 s.
    pub poll: Duration,
}

impl Default for WorkerOptions {
    fn default() -> WorkerOptions {
        WorkerOptions {
            entities: None,
            max_tries: 20,
            backoff: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(60),
            full_repair_every: Duration::from_secs(24 * 3600),
            poll: Duration::from_secs(1),
        }
    }
}

/// Inbox entries, and events of a realm, taken per round.
const ROUND: u32 = 500;

struct Inner<A> {
    inbox: Inbox,
    books: Bookkeeping,
    queues: Queues,
    apply: A,
    repair: Option<(Repair, Tokens)>,
    options: WorkerOptions,
    /// One round or repair of a realm at a time.
    realm_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    full_repair_wanted: Notify,
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
    /// `repair` is given, with the default [`WorkerOptions`].
    pub async fn new(inbox: Inbox, apply: A, repair: Option<Repair>) -> Result<Worker<A>, WorkerError> {
        Worker::with_options(inbox, apply, repair, WorkerOptions::default()).await
    }

    /// A worker with `options`. Creates its bookkeeping tables in the inbox file.
    pub async fn with_options(
        inbox: Inbox,
        apply: A,
        repair: Option<Repair>,
        options: WorkerOptions,
    ) -> Result<Worker<A>, WorkerError> {
        let pool = inbox.worker_state().clone();
        let books = Bookkeeping::open(pool.clone()).await.store()?;
        let queues = Queues::open(pool.clone()).await.store()?;
        let repair = match repair {
            Some(repair) => {
                let tokens = Tokens::open(
                    inbox.worker_state_durable().clone(),
                    repair.client.clone(),
                    repair.oauth.clone(),
                    &repair.credentials,
                )
                .await
                .store()?;
                Some((repair, tokens))
            }
            None => None,
        };
        Ok(Worker {
            inner: Arc::new(Inner {
                inbox,
                books,
                queues,
                apply,
                repair,
                options,
                realm_locks: Mutex::new(HashMap::new()),
                full_repair_wanted: Notify::new(),
            }),
        })
    }

    /// The app's [`Apply`].
    pub fn app(&self) -> &A {
        &self.inner.apply
    }

    /// Moves every pending inbox entry into the realms' queues.
    pub async fn intake(&self) -> Result<Processed, WorkerError> {
        let mut done = Processed::default();
        let mut position = self.position().await?;
        loop {
            let entries = self.inner.inbox.entries_after(position, ROUND).await?;
            if entries.is_empty() {
                return Ok(done);
            }
            let mut taken = Vec::with_capacity(entries.len());
            for entry in &entries {
                let events = match payload::parse(&entry.content_type, &entry.body) {
                    Ok(events) => events.into_iter().filter(|e| self.wanted(e)).collect(),
                    Err(_) => {
                        done.malformed += 1;
                        Vec::new()
                    }
                };
                taken.push((entry.seq, events, entry.received_at));
            }
            self.inner.queues.take(&taken).await.store()?;
            position = entries.last().map_or(position, |e| e.seq);
            done.entries += entries.len();
        }
    }

    /// The last inbox position taken in (for a file of an older release, where the
    /// worker marked entries done instead, the last one it marked).
    async fn position(&self) -> Result<i64, WorkerError> {
        match self.inner.queues.taken_through().await.store()? {
            Some(position) => Ok(position),
            None => Ok(self.inner.inbox.marked_done_through().await?),
        }
    }

    fn wanted(&self, event: &Event) -> bool {
        self.inner
            .options
            .entities
            .as_ref()
            .is_none_or(|names| names.contains(&event.entity))
    }

    /// Takes the inbox in and runs every realm that is due until its queue is empty or
    /// its round fails; answers what was done. A failing realm does not stop the others.
    pub async fn run_once(&self) -> Result<Processed, WorkerError> {
        let mut total = self.intake().await?;
        let due = self
            .inner
            .queues
            .due_realms(Timestamp::now().millis())
            .await
            .store()?;
        let mut tasks = tokio::task::JoinSet::new();
        for realm_id in due {
            let worker = self.clone();
            tasks.spawn(async move { worker.drain_realm(&realm_id).await });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(done) => total.add(&done),
                Err(err) => return Err(WorkerError::Panicked(err.to_string())),
            }
        }
        Ok(total)
    }

    fn realm_lock(&self, realm_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.inner.realm_locks.lock().expect("realm locks");
        locks.entry(realm_id.to_owned()).or_default().clone()
    }

    /// Whether `realm_id` can be repaired (it has credentials).
    fn repairs(&self, realm_id: &str) -> Option<&(Repair, Tokens)> {
        self.inner.repair.as_ref().filter(|(_, t)| t.knows(realm_id))
    }

    /// Every change CDC reports for `realm_id` since `since`, oldest first, with the
    /// realm's token refreshed as needed. Fails for a realm without credentials.
    pub async fn changes_since(&self, realm_id: &str, since: Timestamp) -> Result<Vec<Change>, WorkerError> {
        let Some((repair, tokens)) = self.repairs(realm_id) else {
            return Err(WorkerError::Cdc {
                realm_id: realm_id.to_owned(),
                message: "no access token for this realm".to_owned(),
                source: None,
            });
        };
        crate::cdc::changes_since(repair, tokens, realm_id, since).await
    }

    /// Asks CDC for everything changed in `realm_id` since `since` (less the margin)
    /// and applies what is newer than the copy.
    pub async fn repair_realm(&self, realm_id: &str, since: Timestamp) -> Result<Processed, WorkerError> {
        let lock = self.realm_lock(realm_id);
        let _held = lock.lock().await;
        self.repair_realm_locked(realm_id, since, &[]).await
    }

    /// Repairs every realm with credentials, looking back [`Repair::look_back`], and
    /// records when this repair started. A realm that fails does not stop the others;
    /// the first failure is answered after all were tried.
    pub async fn repair_all(&self) -> Result<Processed, WorkerError> {
        let mut done = Processed::default();
        let Some((repair, tokens)) = &self.inner.repair else {
            return Ok(done);
        };
        let started = Timestamp::now();
        let since = Timestamp(started.millis() - repair.look_back.as_millis() as i64);
        let mut realms: Vec<&String> = tokens.realms().collect();
        realms.sort();
        let mut failure = None;
        for realm_id in realms {
            match self.repair_realm(realm_id, since).await {
                Ok(repaired) => done.add(&repaired),
                Err(err) => {
                    tracing::warn!(realm_id = %realm_id, error = %ledgerhook_domain::error_chain(&err), "a full repair of the realm failed");
                    done.failed += 1;
                    failure.get_or_insert(err);
                }
            }
        }
        if let Some(err) = failure {
            return Err(err);
        }
        self.inner.books.full_repair_done(started).await.store()?;
        Ok(done)
    }

    /// Asks [`Worker::run`] for a full repair now.
    pub fn request_full_repair(&self) {
        self.inner.full_repair_wanted.notify_one();
    }

    /// The dead letters, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, WorkerError> {
        Ok(self.inner.queues.dead_letters().await.store()?)
    }

    /// Queues the dead letters of `realm_id` (or of every realm) again, and lets the
    /// realm be tried at once; answers how many were queued.
    pub async fn retry_dead_letters(&self, realm_id: Option<&str>) -> Result<u64, WorkerError> {
        Ok(self.inner.queues.revive(realm_id).await.store()?)
    }

    /// Runs until `shutdown` resolves: takes in the inbox when something arrives (or
    /// every [`WorkerOptions::poll`]), runs each due realm in its own task, and repairs
    /// every realm on [`WorkerOptions::full_repair_every`] and on request.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
        tokio::pin!(shutdown);
        let every = self.inner.options.full_repair_every;
        let last = self.inner.books.last_full_repair().await.store()?;
        let since_last =
            last.map(|at| Duration::from_millis((Timestamp::now().millis() - at.millis()).max(0) as u64));
        let first = every.saturating_sub(since_last.unwrap_or(every));
        let mut full_repair = tokio::time::interval_at(tokio::time::Instant::now() + first, every);
        full_repair.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tick = tokio::time::interval(self.inner.options.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut running = round::Running::default();
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    running.stop().await;
                    return Ok(());
                }
                _ = full_repair.tick() => self.spawn_full_repair(&mut running),
                _ = self.inner.full_repair_wanted.notified() => self.spawn_full_repair(&mut running),
                _ = self.inner.inbox.arrived() => self.step(&mut running).await,
                _ = tick.tick() => self.step(&mut running).await,
                Some(()) = running.next_finished() => {}
            }
        }
    }

    fn spawn_full_repair(&self, running: &mut round::Running) {
        let worker = self.clone();
        running.spawn_repair(async move {
            match worker.repair_all().await {
                Ok(done) => tracing::info!(applied = done.applied, "full CDC repair done"),
                Err(err) => tracing::warn!(error = %ledgerhook_domain::error_chain(&err), "the full CDC repair failed; it runs again on schedule"),
            }
        });
    }

    /// Intake, then a task for each due realm that has none running.
    async fn step(&self, running: &mut round::Running) {
        if let Err(err) = self.intake().await {
            tracing::warn!(error = %ledgerhook_domain::error_chain(&err), "taking in the inbox failed; trying again");
            return;
        }
        let due = match self.inner.queues.due_realms(Timestamp::now().millis()).await {
            Ok(due) => due,
            Err(err) => {
                tracing::warn!(error = %err, "reading the realms' queues failed; trying again");
                return;
            }
        };
        for realm_id in due {
            let worker = self.clone();
            running.spawn_realm(realm_id.clone(), async move {
                worker.drain_realm(&realm_id).await;
            });
        }
    }
}
