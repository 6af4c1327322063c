//! The state every request handler and background task shares.

use crate::ingest::Ingestor;
use crate::secrets::SecretBox;
use crate::Config;
use ledgerhook_store::Store;
use std::sync::Arc;

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
}

impl AppState {
    /// The state for `store` and `config`; starts the ingestion writers (so it must be
    /// called inside a Tokio runtime).
    pub fn new(store: Store, config: Config) -> AppState {
        let secrets = SecretBox::new(config.secret_key.as_deref());
        let ingestor = Ingestor::start(store.clone());
        AppState {
            store,
            config: Arc::new(config),
            secrets,
            ingestor,
        }
    }
}
