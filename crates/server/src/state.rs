//! The state every request handler and background task shares.

use crate::ingest::Ingestor;
use crate::secrets::SecretBox;
use crate::Config;
use ledgerhook_store::Store;
use std::sync::Arc;
use tokio::sync::Notify;

/// Cheap to clone: the store handle, the configuration and the secret sealer.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Seals and opens stored signing secrets (`secret-key`).
    pub secrets: SecretBox,
    /// Group-commit ingestion.
    pub ingestor: Ingestor,
    /// Wakes the aggregator (windows opened or advanced).
    pub wake_aggregator: Arc<Notify>,
    /// Wakes the dispatcher (notifications made or released).
    pub wake_dispatcher: Arc<Notify>,
}

impl AppState {
    /// The state for `store` and `config`; starts the ingestion writers (so it must be
    /// called inside a Tokio runtime).
    pub fn new(store: Store, config: Config) -> AppState {
        let secrets = SecretBox::new(config.secret_key.as_deref());
        let wake_aggregator = Arc::new(Notify::new());
        let ingestor = Ingestor::start(store.clone(), config.window_policy(), wake_aggregator.clone());
        AppState {
            store,
            config: Arc::new(config),
            secrets,
            ingestor,
            wake_aggregator,
            wake_dispatcher: Arc::new(Notify::new()),
        }
    }
}
