//! A change event: one change to one entity of one realm.

use crate::{Operation, Timestamp};

/// One change to one entity, as accepted by ingestion or the QuickBooks-compatible API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeEvent {
    /// The entity's type name (`"Customer"`), checked against the matrix.
    pub entity: &'static str,
    /// The entity's `Id` within its realm and type.
    pub entity_id: String,
    /// What happened.
    pub operation: Operation,
    /// When it happened at the source: the truth for ordering.
    pub last_updated: Timestamp,
    /// For `Merge`: the id of the record merged away.
    pub deleted_id: Option<String>,
}
