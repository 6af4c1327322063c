//! The state every request handler and background task shares.

use crate::Config;
use ledgerhook_store::Store;
use std::sync::Arc;

/// Cheap to clone: the store handle and the configuration.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The validated configuration.
    pub config: Arc<Config>,
}
