//! Continuing a busy stream: when a claimed attempt is delivered, the transaction that
//! records it also looks for the stream's next due notification after it (under strict
//! ordering its next undelivered one, if that is due; under best-effort its next due one)
//! and, if there is one, keeps the stream's lease for it instead of releasing it. The
//! dispatcher sends it at once: no claim round, no second transaction per notification,
//! for a realm whose changes queue up behind each other. Under best-effort ordering the
//! stream's next few due notifications are handed over together
//! ([`Continuation::then`]): the dispatcher sends each as soon as the one before it is
//! delivered, and their results are committed in groups behind it.

use super::{AttemptResult, Candidate, Continuation, Decision, DeliveryState, Tx, SEND_AHEAD};
use crate::notifications::COLUMNS;
use crate::sql::{Params, ROWS_PER_STATEMENT};
use crate::Backend;
use ledgerhook_domain::Timestamp;
use sqlx::Row;
use std::collections::HashMap;

/// Each stream's next notification, by stream, as [`first_after`] found it.
pub(super) type NextInStream = HashMap<(i64, String), i64>;

/// For each result, its stream's next notification when it continues (see the module
/// docs), with the stream's lease extended to the result's `continue_until`. A strict
/// stream's next notification is taken from `strict_next` (the recording transaction
/// looked it up already, to make it due).
pub(super) async fn take_continuations(
    tx: &mut Tx,
    backend: Backend,
    results: &[AttemptResult],
    strict_next: &NextInStream,
    now: Timestamp,
) -> Result<Vec<Option<Continuation>>, sqlx::Error> {
    let mut out: Vec<Option<Continuation>> = results.iter().map(|_| None).collect();
    let continuing: Vec<(usize, &AttemptResult)> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.decision == Decision::Delivered
                && r.owner.is_some()
                && r.config_id.is_some()
                && r.parked_until.is_none()
                && r.continue_until.is_some()
                && !r.holds_stream
        })
        .collect();
    for strict in [true, false] {
        let ordered: Vec<(usize, &AttemptResult)> = continuing
            .iter()
            .copied()
            .filter(|(_, r)| r.strict == strict)
            .collect();
        for chunk in ordered.chunks(ROWS_PER_STATEMENT) {
            let known = strict.then_some(strict_next);
            continue_streams(tx, backend, chunk, known, now, &mut out).await?;
        }
    }
    Ok(out)
}

/// [`take_continuations`] for `results` of streams of one ordering: strict when their
/// next notifications are `known`.
async fn continue_streams(
    tx: &mut Tx,
    backend: Backend,
    chunk: &[(usize, &AttemptResult)],
    known: Option<&NextInStream>,
    now: Timestamp,
    out: &mut [Option<Continuation>],
) -> Result<(), sqlx::Error> {
    let strict = known.is_some();
    let mut found = next_in_streams(tx, backend, chunk, known, now).await?;
    let mut extended = Vec::new();
    for (index, result) in chunk {
        let config_id = result.config_id.unwrap_or_default();
        let Some((url, mut states)) = found.remove(&(config_id, result.realm_id.clone())) else {
            continue;
        };
        let state = states.remove(0);
        let until = result.continue_until.unwrap_or(now);
        let owner = result.owner.as_deref().unwrap_or_default();
        extended.push((owner, config_id, result.realm_id.as_str(), until));
        out[*index] = Some(Continuation {
            candidate: Candidate {
                seq: state.notification.seq,
                config_id,
                realm_id: result.realm_id.clone(),
                url,
                strict,
            },
            state,
            then: states,
            until,
        });
    }
    extend_leases(tx, backend, &extended).await
}

/// The next due notification of each stream after the result's own, with its
/// configuration's URL, where the configuration is active. Strict: the stream's first
/// undelivered one, if it is due (everything older was delivered when the result's own
/// was claimed; an older one held back by an injected delay is meant to be overtaken).
/// Best-effort: its first due one; an older one waiting for a retry that is due meanwhile
/// is taken by the next claim round (the dispatcher releases a stream after
/// `CONTINUE_AT_MOST` continuations), and its first [`SEND_AHEAD`] due ones after that
/// too, oldest first. Strict streams' first undelivered ones are `known`.
async fn next_in_streams(
    tx: &mut Tx,
    backend: Backend,
    results: &[(usize, &AttemptResult)],
    known: Option<&NextInStream>,
    now: Timestamp,
) -> Result<HashMap<(i64, String), (String, Vec<DeliveryState>)>, sqlx::Error> {
    let streams: Vec<(i64, &str, i64)> = results
        .iter()
        .map(|(_, r)| (r.config_id.unwrap_or_default(), r.realm_id.as_str(), r.seq))
        .collect();
    let seqs: Vec<i64> = match known {
        Some(known) => streams
            .iter()
            .filter_map(|&(config_id, realm_id, _)| known.get(&(config_id, realm_id.to_owned())).copied())
            .collect(),
        None => firsts_after(tx, backend, &streams, Some(now), 1 + SEND_AHEAD)
            .await?
            .into_iter()
            .map(|(_, seq)| seq)
            .collect(),
    };
    if seqs.is_empty() {
        return Ok(HashMap::new());
    }
    // Then those rows by key, if they may be sent now.
    let mut params = Params::new(backend);
    let keys: Vec<String> = seqs.iter().map(|_| params.next()).collect();
    let due = params.next();
    let columns: Vec<String> = COLUMNS.split(',').map(|c| format!("n.{}", c.trim())).collect();
    let sql = format!(
        "SELECT {}, n.first_attempt_at, wc.url FROM notifications n \
         JOIN webhook_configs wc ON wc.id = n.config_id AND wc.state = 'active' \
         WHERE n.seq IN ({}) AND n.status IN ('pending', 'retrying') AND n.test = 0 AND n.next_attempt_at <= {due}",
        columns.join(", "),
        keys.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for seq in &seqs {
        query = query.bind(*seq);
    }
    query = query.bind(now.millis());
    let rows = query.fetch_all(&mut **tx).await?;
    let mut found: HashMap<(i64, String), (String, Vec<DeliveryState>)> = HashMap::new();
    for row in rows {
        let state = DeliveryState::from_row(&row)?;
        if let Some(config_id) = state.notification.config_id {
            let key = (config_id, state.notification.realm_id.clone());
            let url: String = row.try_get("url")?;
            found
                .entry(key)
                .or_insert_with(|| (url, Vec::new()))
                .1
                .push(state);
        }
    }
    for (_, states) in found.values_mut() {
        states.sort_by_key(|s| s.notification.seq);
    }
    Ok(found)
}

/// Each stream's first notification after `seq`, in one statement, read from
/// `notifications_by_stream` from that point on (the stream's delivered history is never
/// walked): with `due_at`, its first one due then (best-effort); without, its first
/// undelivered one, due or not (strict: if that one is not due or held, the stream
/// waits). Answers them by stream.
pub(super) async fn first_after(
    tx: &mut Tx,
    backend: Backend,
    streams: &[(i64, &str, i64)],
    due_at: Option<Timestamp>,
) -> Result<NextInStream, sqlx::Error> {
    Ok(firsts_after(tx, backend, streams, due_at, 1)
        .await?
        .into_iter()
        .collect())
}

/// [`first_after`], up to `per_stream` of each stream (oldest first), as (stream, seq).
async fn firsts_after(
    tx: &mut Tx,
    backend: Backend,
    streams: &[(i64, &str, i64)],
    due_at: Option<Timestamp>,
    per_stream: usize,
) -> Result<Vec<((i64, String), i64)>, sqlx::Error> {
    if streams.is_empty() {
        return Ok(Vec::new());
    }
    // SQLite's placeholders are anonymous: its due time is bound with each stream's key.
    // PostgreSQL's statement names it once, after them all.
    let due_with_each_stream = backend == Backend::Sqlite;
    let sql = match backend {
        Backend::Sqlite => union_of_firsts(streams.len(), due_at.is_some(), per_stream),
        Backend::Postgres => lateral_firsts(streams.len(), due_at.is_some(), per_stream),
    };
    let mut query = sqlx::query(&sql);
    for (config_id, realm_id, seq) in streams {
        query = query.bind(*config_id).bind(*realm_id).bind(*seq);
        if let (Some(due_at), true) = (due_at, due_with_each_stream) {
            query = query.bind(due_at.millis());
        }
    }
    if let (Some(due_at), false) = (due_at, due_with_each_stream) {
        query = query.bind(due_at.millis());
    }
    query
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| {
            Ok((
                (row.try_get("config_id")?, row.try_get("realm_id")?),
                row.try_get("seq")?,
            ))
        })
        .collect()
}

/// What a stream's lookup asks besides its key, `bound` the placeholder of its `seq`:
/// without `due`, its undelivered rows; with it, its due ones. Only the stream's index may
/// serve this: the due-time and status tests are written so that no index on those
/// columns applies. Otherwise PostgreSQL, whose statistics see few rows due (as after a
/// large delivered history was analysed), took the due index and scanned every due
/// notification of every stream for each lookup.
fn stream_rest(bound: &str, due: Option<&str>) -> String {
    match due {
        None => format!("u.status IN ('pending', 'retrying', 'held') AND u.seq > {bound}"),
        Some(due) => format!(
            "u.status || '' IN ('pending', 'retrying') AND u.test + 0 = 0 AND u.seq > {bound} \
             AND u.next_attempt_at + 0 <= {due}"
        ),
    }
}

/// SQLite's [`firsts_after`]: one `UNION ALL` arm per stream, each with its key, its
/// bound and (`due`) its due time as parameters.
fn union_of_firsts(streams: usize, due: bool, per_stream: usize) -> String {
    let mut params = Params::new(Backend::Sqlite);
    let firsts: Vec<String> = (0..streams)
        .map(|i| {
            let (config, realm, bound) = (params.next(), params.next(), params.next());
            let due = due.then(|| params.next());
            format!(
                "SELECT seq, config_id, realm_id FROM (SELECT u.seq, u.config_id, u.realm_id \
                 FROM notifications u WHERE u.config_id = {config} \
                 AND u.realm_id = {realm} AND {} ORDER BY u.seq LIMIT {per_stream}) AS first{i}",
                stream_rest(&bound, due.as_deref())
            )
        })
        .collect();
    firsts.join(" UNION ALL ")
}

/// PostgreSQL's [`firsts_after`]: the streams as a `VALUES` list (key and bound per row,
/// then the due time once), each looked up by a lateral subquery. Planning a `UNION ALL`
/// of 200 arms took PostgreSQL 67–80 ms, against about 1 ms for this
/// (`docs/benchmarks.md`, "Planning a statement per stream").
fn lateral_firsts(streams: usize, due: bool, per_stream: usize) -> String {
    let mut params = Params::new(Backend::Postgres);
    let rows = params.rows(streams, 3);
    let due = due.then(|| params.next());
    format!(
        "SELECT f.seq, v.config_id, v.realm_id FROM (VALUES {rows}) AS v(config_id, realm_id, bound) \
         CROSS JOIN LATERAL (SELECT u.seq FROM notifications u WHERE u.config_id = v.config_id \
         AND u.realm_id = v.realm_id AND {} ORDER BY u.seq LIMIT {per_stream}) AS f",
        stream_rest("v.bound", due.as_deref())
    )
}

/// Moves the end of each `(owner, config, realm)` lease to `until`, in one statement.
async fn extend_leases(
    tx: &mut Tx,
    backend: Backend,
    leases: &[(&str, i64, &str, Timestamp)],
) -> Result<(), sqlx::Error> {
    if leases.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE stream_leases SET lease_until = v.column4 FROM (VALUES {}) AS v \
         WHERE stream_leases.owner = v.column1 AND stream_leases.config_id = v.column2 \
         AND stream_leases.realm_id = v.column3",
        Params::new(backend).rows(leases.len(), 4)
    );
    let mut query = sqlx::query(&sql);
    for (owner, config_id, realm_id, until) in leases {
        query = query
            .bind(*owner)
            .bind(*config_id)
            .bind(*realm_id)
            .bind(until.millis());
    }
    query.execute(&mut **tx).await?;
    Ok(())
}
