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

use crate::inbox::{Inbox, InboxError};
use crate::payload::{self, Event};
use ledgerhook_domain::{Operation, Timestamp};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
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

/// Where and how to call CDC.
#[derive(Clone, Debug)]
pub struct Repair {
    /// The server's base URL (`https://quickbooks.api.intuit.com` or a Ledgerhook
    /// server); CDC is `{base_url}/v3/company/{realm}/cdc`.
    pub base_url: String,
    /// Entity types asked for.
    pub entities: Vec<String>,
    /// An access token per realm; realms without one are not repaired.
    pub tokens: HashMap<String, String>,
    /// How far before the previous notification to look again (clock skew between the
    /// server's `lastUpdated` and the arrival time here).
    pub margin: Duration,
    /// The HTTP client.
    pub client: reqwest::Client,
}

impl Repair {
    /// Repair through `base_url` for `entities`, with a token per realm, looking back one
    /// minute before each previous notification, with a fresh HTTP client (rustls, the
    /// system's roots).
    pub fn new(base_url: &str, entities: Vec<String>, tokens: HashMap<String, String>) -> Repair {
        Repair {
            base_url: base_url.to_owned(),
            entities,
            tokens,
            margin: Duration::from_secs(60),
            client: reqwest::Client::new(),
        }
    }
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
/// CDC answers at most this many objects; a full answer is followed by another call.
const CDC_PAGE: usize = 1000;
/// CDC looks back at most 30 days; full repairs stay an hour inside that.
const CDC_LOOK_BACK_MS: i64 = (30 * 24 - 1) * 3_600_000;
/// How often [`Worker::run`] repairs every realm.
const FULL_REPAIR_EVERY: Duration = Duration::from_secs(24 * 3600);

struct Inner<A> {
    inbox: Inbox,
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
        for sql in [
            "CREATE TABLE IF NOT EXISTS worker_applied (realm_id TEXT NOT NULL, entity TEXT NOT NULL, \
             entity_id TEXT NOT NULL, last_updated INTEGER NOT NULL, PRIMARY KEY (realm_id, entity, entity_id))",
            "CREATE TABLE IF NOT EXISTS worker_realms (realm_id TEXT PRIMARY KEY, heard_at INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS worker_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        ] {
            sqlx::query(sql).execute(inbox.pool()).await?;
        }
        Ok(Worker {
            inner: Arc::new(Inner { inbox, apply, repair }),
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
            let previous: Option<i64> =
                sqlx::query_scalar("SELECT heard_at FROM worker_realms WHERE realm_id = ?")
                    .bind(realm_id)
                    .fetch_optional(self.inner.inbox.pool())
                    .await?;
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
        sqlx::query(
            "INSERT INTO worker_realms (realm_id, heard_at) VALUES (?, ?) \
             ON CONFLICT (realm_id) DO UPDATE SET heard_at = MAX(worker_realms.heard_at, excluded.heard_at)",
        )
        .bind(realm_id)
        .bind(heard_at)
        .execute(self.inner.inbox.pool())
        .await?;
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
        let pool = self.inner.inbox.pool();
        let known: Option<i64> = sqlx::query_scalar(
            "SELECT last_updated FROM worker_applied WHERE realm_id = ? AND entity = ? AND entity_id = ?",
        )
        .bind(&change.event.realm_id)
        .bind(&change.event.entity)
        .bind(&change.event.entity_id)
        .fetch_optional(pool)
        .await?;
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
        sqlx::query(
            "INSERT INTO worker_applied (realm_id, entity, entity_id, last_updated) VALUES (?, ?, ?, ?) \
             ON CONFLICT (realm_id, entity, entity_id) DO UPDATE SET last_updated = excluded.last_updated",
        )
        .bind(&change.event.realm_id)
        .bind(&change.event.entity)
        .bind(&change.event.entity_id)
        .bind(change.event.last_updated.millis())
        .execute(pool)
        .await?;
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
        let last: Option<i64> = sqlx::query_scalar("SELECT value FROM worker_meta WHERE key = 'full_repair'")
            .fetch_optional(self.inner.inbox.pool())
            .await?;
        let since = Timestamp(last.unwrap_or(0));
        let mut realms: Vec<&String> = repair.tokens.keys().collect();
        realms.sort();
        for realm_id in realms {
            done.add(&self.repair_realm(realm_id, since).await?);
        }
        sqlx::query(
            "INSERT INTO worker_meta (key, value) VALUES ('full_repair', ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(started.millis())
        .execute(self.inner.inbox.pool())
        .await?;
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

/// Every change CDC reports for `realm_id` since `since` (no further back than CDC
/// allows), oldest first: CDC answers the 1,000 oldest, so a full answer is followed by
/// a call from the newest of them. Fails for a realm without a token.
pub async fn changes_since(
    repair: &Repair,
    realm_id: &str,
    since: Timestamp,
) -> Result<Vec<Change>, WorkerError> {
    let token = repair.tokens.get(realm_id).ok_or_else(|| WorkerError::Cdc {
        realm_id: realm_id.to_owned(),
        message: "no access token for this realm".to_owned(),
    })?;
    let floor = Timestamp::now().millis() - CDC_LOOK_BACK_MS;
    let mut since = since.millis().max(floor);
    let mut all = Vec::new();
    loop {
        let mut changes = cdc(repair, realm_id, token, Timestamp(since)).await?;
        let full = changes.len() >= CDC_PAGE;
        changes.sort_by_key(|c| c.event.last_updated);
        let newest = changes.last().map(|c| c.event.last_updated.millis());
        all.extend(changes);
        match newest {
            Some(newest) if full && newest > since => since = newest,
            _ => break,
        }
    }
    all.sort_by_key(|c| c.event.last_updated);
    Ok(all)
}

/// One CDC call: the changes of `repair.entities` in `realm_id` since `since`.
async fn cdc(
    repair: &Repair,
    realm_id: &str,
    token: &str,
    since: Timestamp,
) -> Result<Vec<Change>, WorkerError> {
    let failed = |message: String| WorkerError::Cdc {
        realm_id: realm_id.to_owned(),
        message,
    };
    let url = format!(
        "{}/v3/company/{realm_id}/cdc",
        repair.base_url.trim_end_matches('/')
    );
    let response = repair
        .client
        .get(url)
        .bearer_auth(token)
        .query(&[
            ("entities", repair.entities.join(",")),
            ("changedSince", since.to_rfc3339()),
        ])
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| failed(e.to_string()))?;
    if !status.is_success() {
        return Err(failed(format!("{status}: {body}")));
    }
    cdc_changes(realm_id, &body).map_err(failed)
}

/// The changes in a CDC answer: full entities become `Update`s, tombstones `Delete`s.
pub fn cdc_changes(realm_id: &str, answer: &Value) -> Result<Vec<Change>, String> {
    let responses = answer["CDCResponse"][0]["QueryResponse"]
        .as_array()
        .ok_or("the answer has no CDCResponse[0].QueryResponse")?;
    let mut changes = Vec::new();
    for response in responses {
        let Some(fields) = response.as_object() else {
            continue;
        };
        for (entity, objects) in fields {
            let Some(objects) = objects.as_array() else {
                continue; // startPosition, maxResults
            };
            for object in objects {
                let id = object["Id"].as_str().ok_or(format!("a {entity} without Id"))?;
                let at = object["MetaData"]["LastUpdatedTime"]
                    .as_str()
                    .ok_or(format!("{entity} {id} has no MetaData.LastUpdatedTime"))?;
                let last_updated = Timestamp::parse(at).map_err(|e| format!("{entity} {id}: {e}"))?;
                let operation = if object["status"] == "Deleted" {
                    Operation::Delete
                } else {
                    Operation::Update
                };
                changes.push(Change {
                    event: Event {
                        realm_id: realm_id.to_owned(),
                        entity: entity.clone(),
                        entity_id: id.to_owned(),
                        operation,
                        last_updated,
                        deleted_id: None,
                        event_id: None,
                    },
                    body: Some(object.clone()),
                });
            }
        }
    }
    Ok(changes)
}
