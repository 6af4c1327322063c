//! Claiming: the due notifications whose stream is free, and the leases and rows taken
//! for them in one transaction.

use super::leases::release_streams;
use super::{due_index, Candidate, Claimable, DeliveryState, Tx};
use crate::notifications::{COLUMNS, WAITING_BEHIND};
use crate::sql::{Params, ROWS_PER_STATEMENT};
use crate::{Backend, Store, StoreError};
use ledgerhook_domain::{Ordering, Timestamp};
use sqlx::Row;
use std::collections::{HashMap, HashSet};

impl Store {
    /// Notifications due at `now` whose stream has no attempt in flight and — under
    /// strict ordering — no older undelivered notification (one held back by an injected
    /// delay does not count while it is held); soonest first, one per
    /// stream, at most `limit` rows read.
    pub async fn claimable(
        &self,
        now: Timestamp,
        default_ordering: Ordering,
        limit: u32,
    ) -> Result<Claimable, StoreError> {
        let hint = due_index(self.backend());
        let config = config_join(self.backend());
        let rows = sqlx::query(&format!(
            "SELECT n.seq, n.config_id, n.realm_id, wc.url, \
                    CASE WHEN COALESCE(wc.ordering, $2) = 'best-effort' THEN 0 ELSE 1 END AS strict \
             FROM notifications n{hint} {config} \
             WHERE n.status IN ('pending', 'retrying') AND n.test = 0 AND n.next_attempt_at <= $1 \
             AND NOT EXISTS (SELECT 1 FROM stream_leases l WHERE l.config_id = n.config_id AND l.realm_id = n.realm_id \
                             AND l.lease_until > $1) \
             AND (COALESCE(wc.ordering, $2) = 'best-effort' OR NOT EXISTS ( \
                  SELECT 1 FROM notifications o WHERE o.config_id = n.config_id AND o.realm_id = n.realm_id \
                  AND o.seq < n.seq AND o.status IN ('pending', 'retrying', 'held') \
                  AND (o.delayed_until IS NULL OR o.delayed_until <= $1))) \
             ORDER BY n.next_attempt_at, n.seq LIMIT $3"
        ))
        .bind(now.millis())
        .bind(default_ordering.as_str())
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        let more = rows.len() >= limit as usize;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for row in rows {
            let candidate = Candidate {
                seq: row.try_get("seq")?,
                config_id: row.try_get("config_id")?,
                realm_id: row.try_get("realm_id")?,
                url: row.try_get("url")?,
                strict: row.try_get::<i64, _>("strict")? != 0,
            };
            if seen.insert((candidate.config_id, candidate.realm_id.clone())) {
                out.push(candidate);
            }
        }
        Ok(Claimable {
            candidates: out,
            more,
        })
    }

    /// Takes the stream's lease and the notification of each candidate for `owner` until
    /// `until`, in one transaction of two or three statements; answers, per candidate,
    /// the notification when both were free (`None`: another node was faster, or the
    /// notification is no longer due).
    pub async fn claim(
        &self,
        candidates: &[Candidate],
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<Option<DeliveryState>>, StoreError> {
        let backend = self.backend();
        let mut tx = self.writer().begin().await?;
        let mut streams = HashSet::new();
        let unique: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| streams.insert((c.config_id, c.realm_id.as_str())))
            .collect();
        let mut leased = HashSet::new();
        for chunk in unique.chunks(ROWS_PER_STATEMENT) {
            leased.extend(take_leases(&mut tx, backend, chunk, owner, now, until).await?);
        }
        let leased: Vec<&Candidate> = unique
            .into_iter()
            .filter(|c| leased.contains(&(c.config_id, c.realm_id.clone())))
            .collect();
        let wanted: Vec<i64> = leased.iter().map(|c| c.seq).collect();
        let mut states = HashMap::new();
        for chunk in wanted.chunks(ROWS_PER_STATEMENT) {
            for state in take_notifications(&mut tx, backend, chunk, now).await? {
                states.insert(state.notification.seq, state);
            }
        }
        let idle: Vec<&Candidate> = leased
            .into_iter()
            .filter(|c| !states.contains_key(&c.seq))
            .collect();
        for chunk in idle.chunks(ROWS_PER_STATEMENT) {
            release_streams(
                &mut tx,
                backend,
                owner,
                chunk.iter().map(|c| (c.config_id, c.realm_id.as_str())),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(candidates.iter().map(|c| states.remove(&c.seq)).collect())
    }

    /// The notification with its first attempt time, for an attempt.
    pub async fn delivery_state(&self, seq: i64) -> Result<Option<DeliveryState>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, first_attempt_at FROM notifications WHERE seq = $1"
        ))
        .bind(seq)
        .fetch_optional(self.reader())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(DeliveryState::from_row(&row)?))
    }

    /// When the dispatcher must look again at the latest, if nothing wakes it sooner:
    /// the next time a queued notification becomes due (after `now`), or a stream lease
    /// ends (another node's attempt, or one of a node that died). Notifications already
    /// due but not claimed are behind a lease (or an older notification under strict
    /// ordering): their stream's release wakes the dispatcher, or the lease's end.
    pub async fn next_attempt_due(&self, now: Timestamp) -> Result<Option<Timestamp>, StoreError> {
        // One round trip; each side reads the first entry of its index after `now` (an
        // aggregate's MIN was planned, on a young PostgreSQL database, as a scan of every
        // future row).
        let hint = due_index(self.backend());
        let (due, lease_end): (Option<i64>, Option<i64>) = sqlx::query_as(&format!(
            "SELECT (SELECT next_attempt_at FROM notifications{hint} \
                     WHERE status IN ('pending', 'retrying') AND test = 0 AND next_attempt_at > $1 \
                     AND next_attempt_at < {WAITING_BEHIND} ORDER BY next_attempt_at LIMIT 1), \
                    (SELECT lease_until FROM stream_leases WHERE lease_until > $1 \
                     ORDER BY lease_until LIMIT 1)"
        ))
        .bind(now.millis())
        .fetch_one(self.reader())
        .await?;
        Ok([due, lease_end].into_iter().flatten().min().map(Timestamp))
    }
}

/// How the claim query joins each due notification's active configuration. On
/// PostgreSQL a lateral lookup by id: as a plain join, the generic plan hashed every
/// configuration on each claim round. SQLite looks each up by id anyway.
fn config_join(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "JOIN webhook_configs wc ON wc.id = n.config_id AND wc.state = 'active'",
        Backend::Postgres => {
            "JOIN LATERAL (SELECT url, ordering FROM webhook_configs \
                           WHERE id = n.config_id AND state = 'active' LIMIT 1) wc ON TRUE"
        }
    }
}

/// Takes the leases of `candidates`' streams that are free or expired; answers the
/// streams taken.
async fn take_leases(
    tx: &mut Tx,
    backend: Backend,
    candidates: &[&Candidate],
    owner: &str,
    now: Timestamp,
    until: Timestamp,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let mut params = Params::new(backend);
    let sql = format!(
        "INSERT INTO stream_leases (config_id, realm_id, owner, lease_until) VALUES {} \
         ON CONFLICT (config_id, realm_id) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until \
         WHERE stream_leases.lease_until <= {} RETURNING config_id, realm_id",
        params.rows(candidates.len(), 4),
        params.next()
    );
    let mut query = sqlx::query(&sql);
    for c in candidates {
        query = query
            .bind(c.config_id)
            .bind(c.realm_id.as_str())
            .bind(owner)
            .bind(until.millis());
    }
    let rows = query.bind(now.millis()).fetch_all(&mut **tx).await?;
    rows.iter()
        .map(|row| Ok((row.try_get("config_id")?, row.try_get("realm_id")?)))
        .collect()
}

/// The notifications `seqs` that are still due (their streams' leases are held).
async fn take_notifications(
    tx: &mut Tx,
    backend: Backend,
    seqs: &[i64],
    now: Timestamp,
) -> Result<Vec<DeliveryState>, sqlx::Error> {
    let mut params = Params::new(backend);
    let list: Vec<String> = seqs.iter().map(|_| params.next()).collect();
    let sql = format!(
        "SELECT {COLUMNS}, first_attempt_at FROM notifications \
         WHERE seq IN ({}) AND status IN ('pending', 'retrying') AND next_attempt_at <= {}",
        list.join(", "),
        params.next()
    );
    let mut query = sqlx::query(&sql);
    for seq in seqs {
        query = query.bind(*seq);
    }
    let rows = query.bind(now.millis()).fetch_all(&mut **tx).await?;
    rows.iter().map(DeliveryState::from_row).collect()
}
