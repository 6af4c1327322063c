//! The state every request handler and background task shares.

use crate::auth::OperatorToken;
use crate::ingest::{Ingestor, Wake};
use crate::pipeline::Pipeline;
use crate::throttle::Throttle;
use crate::Config;
use ledgerhook_background::Status;
use ledgerhook_delivery::dispatcher::{Dispatcher, DispatcherOptions};
use ledgerhook_delivery::metrics::Metrics;
use ledgerhook_delivery::outbound::guard::Lookup;
use ledgerhook_delivery::outbound::OutboundClient;
use ledgerhook_delivery::secrets::SecretBox;
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
    /// Makes attempts (the background loop and manual sends share it).
    pub dispatcher: Arc<Dispatcher>,
    /// Resolves endpoint host names (validation and delivery use the same resolver).
    pub lookup: Arc<dyn Lookup>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The operator token's hash, cached.
    pub operator_token: Arc<OperatorToken>,
    /// The runtime of the tasks that hold the write path.
    pub pipeline: Arc<Pipeline>,
    /// Failed steps and last errors of the background workers, for `/metrics`.
    pub background: BackgroundStatus,
    /// `v3-rate-limit`, per (app, realm).
    pub v3_throttle: Arc<Throttle>,
    /// `api-rate-limit`, per token.
    pub api_throttle: Arc<Throttle>,
    /// The OpenID Connect signing key, read (or made) on first use.
    pub oidc_key: Arc<tokio::sync::OnceCell<Arc<crate::oidc::SigningKey>>>,
}

/// The status of each background worker of the server.
#[derive(Clone, Default)]
pub struct BackgroundStatus {
    /// Closes due windows.
    pub aggregator: Status,
    /// Claims and attempts notifications.
    pub dispatcher: Status,
    /// Inactive-after and retention.
    pub janitor: Status,
    /// Sends injected duplicates.
    pub duplicator: Status,
}

impl BackgroundStatus {
    /// Each worker's name and status.
    pub fn all(&self) -> [(&'static str, &Status); 4] {
        [
            ("aggregator", &self.aggregator),
            ("dispatcher", &self.dispatcher),
            ("janitor", &self.janitor),
            ("duplicator", &self.duplicator),
        ]
    }
}

impl AppState {
    /// The state for `store`, `config` and the outbound `client`; starts the ingestion
    /// writers on `pipeline` (it must be called inside the request runtime, where
    /// attempts will run).
    pub fn new(
        store: Store,
        config: Config,
        client: OutboundClient,
        lookup: Arc<dyn Lookup>,
        pipeline: Arc<Pipeline>,
    ) -> AppState {
        let secrets = SecretBox::new(config.secret_key.as_deref());
        let wake_dispatcher = Arc::new(Notify::new());
        let metrics = Arc::new(Metrics::default());
        let dispatcher = Dispatcher::new(DispatcherOptions {
            store: store.clone(),
            client,
            secrets: secrets.clone(),
            retry: config.retry(),
            time_scale: config.time_scale,
            default_ordering: config.default_ordering(),
            max_in_flight_per_endpoint: config.max_in_flight_per_endpoint as usize,
            delivery_timeout: config.delivery_timeout,
            wake: wake_dispatcher.clone(),
            metrics: metrics.clone(),
            pipeline: pipeline.handle().clone(),
        });
        let wake_aggregator = Arc::new(Notify::new());
        let ingestor = Ingestor::start(
            store.clone(),
            config.window_policy(),
            Wake {
                aggregator: wake_aggregator.clone(),
                dispatcher: wake_dispatcher.clone(),
            },
            metrics.clone(),
            pipeline.handle(),
        );
        let v3_throttle = Arc::new(Throttle::new(config.v3_rate_limit));
        let api_throttle = Arc::new(Throttle::new(config.api_rate_limit));
        AppState {
            store,
            config: Arc::new(config),
            secrets,
            ingestor,
            wake_aggregator,
            wake_dispatcher,
            dispatcher,
            lookup,
            metrics,
            operator_token: Arc::new(OperatorToken::default()),
            pipeline,
            background: BackgroundStatus::default(),
            v3_throttle,
            api_throttle,
            oidc_key: Arc::new(tokio::sync::OnceCell::new()),
        }
    }
}
