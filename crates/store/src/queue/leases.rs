//! Releasing stream leases: at shutdown, for one stream whose attempt could not run, at
//! start on SQLite (no other node can hold one), and inside a claim for streams whose
//! notification was gone. What a released stream had parked is due at once.

use super::{move_parked, Direction, Parking, Tx};
use crate::signals::Signal;
use crate::sql::Params;
use crate::{Backend, Store, StoreError};
use ledgerhook_domain::Timestamp;
use sqlx::Row;

impl Store {
    /// Releases every lease `owner` holds (a stopping node's unfinished attempts); what
    /// their streams had parked is due at once.
    pub async fn release_leases(&self, owner: &str) -> Result<(), StoreError> {
        self.release_where("owner = $1", &[Bind::Text(owner)]).await
    }

    /// Releases `owner`'s lease of one stream (an attempt that could not run); what it
    /// had parked is due at once. Other streams' leases stay.
    pub async fn release_stream(
        &self,
        owner: &str,
        config_id: i64,
        realm_id: &str,
    ) -> Result<(), StoreError> {
        let condition = "owner = $1 AND config_id = $2 AND realm_id = $3";
        self.release_where(
            condition,
            &[Bind::Text(owner), Bind::Int(config_id), Bind::Text(realm_id)],
        )
        .await
    }

    /// Deletes the leases `condition` selects and makes their parked notifications due now.
    async fn release_where(&self, condition: &str, binds: &[Bind<'_>]) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await?;
        let sql =
            format!("DELETE FROM stream_leases WHERE {condition} RETURNING config_id, realm_id, lease_until");
        let mut query = sqlx::query(&sql);
        for bind in binds {
            query = match bind {
                Bind::Text(text) => query.bind(*text),
                Bind::Int(int) => query.bind(*int),
            };
        }
        let released = query
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| {
                Ok(Parking {
                    config_id: row.try_get("config_id")?,
                    realm_id: row.try_get("realm_id")?,
                    from_seq: 0,
                    until: Timestamp(row.try_get("lease_until")?),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        move_parked(
            &mut tx,
            self.backend(),
            &released,
            Timestamp::now(),
            Direction::Unpark,
        )
        .await?;
        tx.commit().await?;
        if !released.is_empty() {
            // Streams are free again: other nodes may have their next notifications.
            self.announce(Signal::Notifications);
        }
        Ok(())
    }

    /// On SQLite (one process, held by the file lock) no other node can own a lease:
    /// leases left by a crashed process are released at start instead of waiting for
    /// them to expire.
    pub async fn release_orphaned_leases(&self) -> Result<(), StoreError> {
        if self.backend() != Backend::Sqlite {
            return Ok(());
        }
        self.release_where("1 = 1", &[]).await
    }
}

/// A value bound into a lease release's condition.
enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}

/// Releases `owner`'s leases of `streams`.
pub(super) async fn release_streams<'a>(
    tx: &mut Tx,
    backend: Backend,
    owner: &str,
    streams: impl ExactSizeIterator<Item = (i64, &'a str)>,
) -> Result<(), sqlx::Error> {
    let mut params = Params::new(backend);
    let owner_param = params.next();
    let which = params.any_of(streams.len(), |p| {
        format!("config_id = {} AND realm_id = {}", p.next(), p.next())
    });
    let sql = format!("DELETE FROM stream_leases WHERE owner = {owner_param} AND {which}");
    let mut query = sqlx::query(&sql).bind(owner);
    for (config_id, realm_id) in streams {
        query = query.bind(config_id).bind(realm_id);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}
