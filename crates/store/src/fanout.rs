//! Fan-out: inside the ingestion transaction, each accepted event goes to every
//! (configuration, realm) that wants it — configurations `active` or `blacklisted`,
//! subscribed to the entity and operation, of an app connected to the realm (after the
//! connection was made) in the realm's environment.
//!
//! Where the configuration's window is 0s and the pair has no window open, the
//! request's events become its notification right here, in the same transaction: one
//! notification per ingestion request, with no window to write, close and remove.
//! Every other event joins its pair's window, which opens or advances.

use crate::configs::config_of;
use crate::model::WebhookConfig;
use crate::notifications::{insert_notifications, Made};
use crate::sql::{Params, ROWS_PER_STATEMENT};
use crate::windows::{order_and_dedupe, ClosingWindow, Render, WindowPolicy};
use crate::Backend;
use ledgerhook_domain::{ChangeEvent, ConfigState, Timestamp};
use sqlx::{Any, Row, Transaction};
use std::collections::{HashMap, HashSet};

type Tx = Transaction<'static, Any>;

/// What fanning out a commit's events did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FanOut {
    /// Some window was opened or advanced (the aggregator has work).
    pub windows_touched: bool,
    /// Notifications made at once that are deliverable (the dispatcher has work).
    pub notifications_made: usize,
}

/// A change event as stored by this transaction.
pub struct StoredEvent {
    /// Its sequence number.
    pub seq: i64,
    /// Its realm.
    pub realm_id: String,
    /// The ingestion request it came with.
    pub batch_id: i64,
    /// The event.
    pub event: ChangeEvent,
}

/// One event for one (configuration, realm).
struct Delivery<'a> {
    config_id: i64,
    stored: &'a StoredEvent,
    window_open: bool,
}

/// Fans `events` out, makes the immediate notifications, and opens or advances the
/// windows of the rest; answers what it did, for the caller to announce once committed.
pub(crate) async fn fan_out(
    tx: &mut Tx,
    backend: Backend,
    events: &[StoredEvent],
    policy: &WindowPolicy,
    render: Render,
    now: Timestamp,
) -> Result<FanOut, sqlx::Error> {
    if events.is_empty() {
        return Ok(FanOut::default());
    }
    let (subscribers, configs) = subscribers(tx, backend, events).await?;
    let mut deliveries: Vec<Delivery<'_>> = Vec::new();
    for stored in events {
        for (config_id, after_seq) in subscribers.get(stored.realm_id.as_str()).into_iter().flatten() {
            let Some(config) = configs.get(config_id) else {
                continue;
            };
            if *after_seq < stored.seq && config.entities.wants(stored.event.entity, stored.event.operation) {
                deliveries.push(Delivery {
                    config_id: *config_id,
                    stored,
                    window_open: false,
                });
            }
        }
    }
    if deliveries.is_empty() {
        return Ok(FanOut::default());
    }
    // Pairs (configuration, realm) together, each in acceptance order.
    deliveries.sort_by(|a, b| {
        (a.config_id, &a.stored.realm_id, a.stored.seq).cmp(&(b.config_id, &b.stored.realm_id, b.stored.seq))
    });
    let zero = |config_id: &i64| {
        let config = &configs[config_id];
        policy.real_length_ms(config.environment, config.batch_window_ms) == 0
    };
    let open = open_windows(tx, backend, deliveries.iter().filter(|d| zero(&d.config_id))).await?;
    for d in &mut deliveries {
        d.window_open = open.contains(&(d.config_id, d.stored.realm_id.clone()));
    }
    let (immediate, queued): (Vec<Delivery<'_>>, Vec<Delivery<'_>>) = deliveries
        .into_iter()
        .partition(|d| !d.window_open && zero(&d.config_id));
    let mut done = FanOut::default();
    if !queued.is_empty() {
        queue_in_windows(tx, backend, &queued, policy, now).await?;
        done.windows_touched = true;
    }
    if !immediate.is_empty() {
        let groups = group_immediate(&immediate, policy.max_events);
        let made = render_groups(&groups, &configs, policy, render);
        insert_notifications(tx, backend, &made, now).await?;
        done.notifications_made = made.iter().filter(|m| !m.held).count();
    }
    Ok(done)
}

/// The configurations (`active` or `blacklisted`, of the realm's environment) of the
/// apps connected to each realm of `events`, with the connection's first sequence
/// number: realm → [(configuration, after_seq)], and the configurations by id.
///
/// Two steps, each through a unique or realm index: the realms' connections, then each
/// connected app's configuration by (app, environment). One join of the three tables
/// was planned, as a generic plan, as a scan of every configuration per ingestion.
async fn subscribers(
    tx: &mut Tx,
    backend: Backend,
    events: &[StoredEvent],
) -> Result<(Subscribers, HashMap<i64, WebhookConfig>), sqlx::Error> {
    let mut realms: Vec<&str> = events.iter().map(|e| e.realm_id.as_str()).collect();
    realms.sort_unstable();
    realms.dedup();
    // (realm, app, environment, after_seq)
    let mut connections: Vec<(String, String, String, i64)> = Vec::new();
    for chunk in realms.chunks(ROWS_PER_STATEMENT) {
        let mut params = Params::new(backend);
        let list: Vec<String> = chunk.iter().map(|_| params.next()).collect();
        let sql = format!(
            "SELECT c.realm_id, c.app_id, c.after_seq, r.environment FROM connections c \
             JOIN realms r ON r.id = c.realm_id WHERE c.realm_id IN ({})",
            list.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for realm in chunk {
            query = query.bind(*realm);
        }
        for row in query.fetch_all(&mut **tx).await? {
            connections.push((
                row.try_get("realm_id")?,
                row.try_get("app_id")?,
                row.try_get("environment")?,
                row.try_get("after_seq")?,
            ));
        }
    }
    let mut wanted: Vec<(&str, &str)> = connections
        .iter()
        .map(|(_, app, env, _)| (app.as_str(), env.as_str()))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut by_pair: HashMap<(&str, &str), i64> = HashMap::new();
    let mut configs = HashMap::new();
    for (app, env) in wanted {
        let Some(config) = config_of(tx, app, env).await? else {
            continue;
        };
        if matches!(config.state, ConfigState::Active | ConfigState::Blacklisted) {
            by_pair.insert((app, env), config.id);
            configs.insert(config.id, config);
        }
    }
    let mut found: Subscribers = HashMap::new();
    for (realm, app, env, after_seq) in &connections {
        if let Some(config_id) = by_pair.get(&(app.as_str(), env.as_str())) {
            found
                .entry(realm.clone())
                .or_default()
                .push((*config_id, *after_seq));
        }
    }
    Ok((found, configs))
}

/// Realm → [(configuration, the connection's first sequence number)].
type Subscribers = HashMap<String, Vec<(i64, i64)>>;

/// Which of the deliveries' (configuration, realm) pairs have a window open.
async fn open_windows<'a>(
    tx: &mut Tx,
    backend: Backend,
    deliveries: impl Iterator<Item = &'a Delivery<'a>>,
) -> Result<HashSet<(i64, String)>, sqlx::Error> {
    let mut pairs: Vec<(i64, &str)> = deliveries
        .map(|d| (d.config_id, d.stored.realm_id.as_str()))
        .collect();
    pairs.dedup();
    let mut open = HashSet::new();
    for chunk in pairs.chunks(ROWS_PER_STATEMENT) {
        let mut params = Params::new(backend);
        let which = params.any_of(chunk.len(), |p| {
            format!("config_id = {} AND realm_id = {}", p.next(), p.next())
        });
        let sql = format!("SELECT config_id, realm_id FROM windows WHERE {which}");
        let mut query = sqlx::query(&sql);
        for (config_id, realm_id) in chunk {
            query = query.bind(*config_id).bind(*realm_id);
        }
        for row in query.fetch_all(&mut **tx).await? {
            open.insert((row.try_get("config_id")?, row.try_get("realm_id")?));
        }
    }
    Ok(open)
}

/// Adds the events to their pairs' windows and opens or advances those windows: due a
/// window's length after opening, or at once when `batch-max-events` are pending.
async fn queue_in_windows(
    tx: &mut Tx,
    backend: Backend,
    queued: &[Delivery<'_>],
    policy: &WindowPolicy,
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    for chunk in queued.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO window_events (config_id, realm_id, event_seq, batch_id) VALUES {} ON CONFLICT DO NOTHING",
            Params::new(backend).rows(chunk.len(), 4)
        );
        let mut query = sqlx::query(&sql);
        for d in chunk {
            query = query
                .bind(d.config_id)
                .bind(d.stored.realm_id.as_str())
                .bind(d.stored.seq)
                .bind(d.stored.batch_id);
        }
        query.execute(&mut **tx).await?;
    }
    let mut pairs: Vec<(i64, &str)> = queued
        .iter()
        .map(|d| (d.config_id, d.stored.realm_id.as_str()))
        .collect();
    pairs.dedup();
    for chunk in pairs.chunks(ROWS_PER_STATEMENT) {
        // Every parameter appears once, in the order bound (SQLite's are anonymous).
        let mut p = Params::new(backend);
        let opened = p.next();
        let (full, due_now, due_from) = (p.next(), p.next(), p.next());
        let (sandbox, production, scale) = (p.next(), p.next(), p.next());
        let which = p.any_of(chunk.len(), |p| {
            format!("we.config_id = {} AND we.realm_id = {}", p.next(), p.next())
        });
        let (refull, redue) = (p.next(), p.next());
        let sql = format!(
            "INSERT INTO windows (config_id, realm_id, opened_at, due_at, event_count) \
             SELECT we.config_id, we.realm_id, {opened}, \
                    CASE WHEN COUNT(*) >= {full} THEN {due_now} ELSE {due_from} + CAST(ROUND(COALESCE(wc.batch_window_ms, \
                         CASE WHEN wc.environment = 'sandbox' THEN {sandbox} ELSE {production} END) / {scale}) AS BIGINT) END, \
                    COUNT(*) \
             FROM window_events we JOIN webhook_configs wc ON wc.id = we.config_id \
             WHERE {which} \
             GROUP BY we.config_id, we.realm_id, wc.environment, wc.batch_window_ms \
             ON CONFLICT (config_id, realm_id) DO UPDATE SET event_count = excluded.event_count, \
             due_at = CASE WHEN excluded.event_count >= {refull} THEN {redue} ELSE windows.due_at END"
        );
        let mut query = sqlx::query(&sql)
            .bind(now.millis())
            .bind(policy.max_events)
            .bind(now.millis())
            .bind(now.millis())
            .bind(policy.sandbox_ms)
            .bind(policy.production_ms)
            .bind(policy.time_scale);
        for (config_id, realm_id) in chunk {
            query = query.bind(*config_id).bind(*realm_id);
        }
        query
            .bind(policy.max_events)
            .bind(now.millis())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The events of one immediate notification: one (configuration, realm, request).
struct Group {
    config_id: i64,
    realm_id: String,
    batch_id: i64,
    /// With sequence numbers while grouping; ordered and deduplicated by
    /// [`group_immediate`].
    events: Vec<(i64, ChangeEvent)>,
    ordered: Vec<ChangeEvent>,
}

/// Groups 0s-window deliveries (ordered by pair and acceptance) into one group per
/// (configuration, realm, request), split after `batch-max-events`.
fn group_immediate(immediate: &[Delivery<'_>], max_events: i64) -> Vec<Group> {
    let limit = usize::try_from(max_events).unwrap_or(1).max(1);
    let mut groups: Vec<Group> = Vec::new();
    for d in immediate {
        let stored = d.stored;
        match groups.last_mut() {
            Some(g)
                if g.config_id == d.config_id
                    && g.realm_id == stored.realm_id
                    && g.batch_id == stored.batch_id
                    && g.events.len() < limit =>
            {
                g.events.push((stored.seq, stored.event.clone()));
            }
            _ => groups.push(Group {
                config_id: d.config_id,
                realm_id: stored.realm_id.clone(),
                batch_id: stored.batch_id,
                events: vec![(stored.seq, stored.event.clone())],
                ordered: Vec::new(),
            }),
        }
    }
    for group in &mut groups {
        group.ordered = order_and_dedupe(std::mem::take(&mut group.events));
    }
    groups
}

/// Renders each group into its notifications (`held` when the configuration is
/// blacklisted).
fn render_groups<'a>(
    groups: &'a [Group],
    configs: &'a HashMap<i64, WebhookConfig>,
    policy: &WindowPolicy,
    render: Render,
) -> Vec<Made<'a>> {
    let mut made = Vec::new();
    for group in groups {
        let config = &configs[&group.config_id];
        let window = ClosingWindow {
            config,
            realm_id: &group.realm_id,
            events: &group.ordered,
        };
        let held = config.state == ConfigState::Blacklisted;
        made.extend(render(&window).into_iter().map(|new| Made {
            config,
            realm_id: &group.realm_id,
            new,
            held,
            strict: policy.strict(config),
        }));
    }
    made
}
