//! Starting and stopping the whole server.

use crate::pipeline::Pipeline;
use crate::{auth, edge, http, AppState, Config};
use ledgerhook_delivery::aggregator::Aggregator;
use ledgerhook_delivery::duplicator::Duplicator;
use ledgerhook_delivery::janitor::Janitor;
use ledgerhook_delivery::outbound::guard::{Lookup, SystemLookup};
use ledgerhook_delivery::outbound::OutboundClient;
use ledgerhook_store::{Store, StoreError, StoreOptions};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The outbound client could not be built (`ca-file`).
    #[error("setting ca-file: {0}")]
    Client(#[from] ledgerhook_delivery::outbound::ClientError),
    /// The pipeline runtime's thread could not be started.
    #[error("cannot start the pipeline thread: {0}")]
    Pipeline(std::io::Error),
    /// The `listen` address could not be bound.
    #[error("cannot listen on {addr} (setting listen): {source}")]
    Bind {
        /// The address of the `listen` setting.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// Entry point of the server.
pub struct Server;

/// A server whose store is open and whose listener is bound, ready to run.
pub struct RunningServer {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    /// The operator token made on this first start, to be shown once; `None` otherwise.
    pub new_operator_token: Option<String>,
    /// The shared state, for callers that want to look inside (tests, tools).
    pub state: AppState,
    listener: TcpListener,
}

impl Server {
    /// Opens the store (running migrations), makes sure an operator token exists and
    /// binds the listener. Nothing is served until [`RunningServer::run`].
    pub async fn start(config: Config) -> Result<RunningServer, StartError> {
        Server::start_with_lookup(config, Arc::new(SystemLookup)).await
    }

    /// Like [`Server::start`], resolving endpoint host names with `lookup` (for
    /// validation and delivery alike) instead of the system resolver.
    pub async fn start_with_lookup(
        config: Config,
        lookup: Arc<dyn Lookup>,
    ) -> Result<RunningServer, StartError> {
        let mut options = StoreOptions::new(config.database_url.clone());
        options.sqlite_synchronous = config.sqlite_synchronous;
        let store = Store::open(&options).await?;
        let new_operator_token = auth::ensure_operator_token(&store, config.admin_token.as_deref()).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let mut options = config.client_options()?;
        options.lookup = lookup.clone();
        let client = OutboundClient::new(options)?;
        let pipeline = Pipeline::start().map_err(StartError::Pipeline)?;
        let state = AppState::new(store, config, client, lookup, Arc::new(pipeline));
        Ok(RunningServer {
            local_addr,
            new_operator_token,
            state,
            listener,
        })
    }
}

impl RunningServer {
    /// Serves until `shutdown` resolves, then stops taking connections, lets requests in
    /// flight finish and closes the store.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let (stop_background, stopping) = watch::channel(false);
        let aggregator = Aggregator {
            store: self.state.store.clone(),
            policy: self.state.config.window_policy(),
            wake: self.state.wake_aggregator.clone(),
            made: self.state.wake_dispatcher.clone(),
            metrics: self.state.metrics.clone(),
        };
        self.state.store.spawn_listener(
            self.state.wake_aggregator.clone(),
            self.state.wake_dispatcher.clone(),
            stopping.clone(),
        );
        let pipeline = self.state.pipeline.handle();
        let background = &self.state.background;
        let aggregator = pipeline.spawn(aggregator.run(stopping.clone(), background.aggregator.clone()));
        let dispatcher = pipeline.spawn(
            self.state
                .dispatcher
                .clone()
                .run(stopping.clone(), background.dispatcher.clone()),
        );
        let config = &self.state.config;
        let janitor = Janitor {
            store: self.state.store.clone(),
            inactive_after: config.scaled(config.inactive_after),
            retention: config.scaled(config.retention),
        };
        let janitor = tokio::spawn(janitor.run(stopping.clone(), background.janitor.clone()));
        let duplicator = Duplicator {
            store: self.state.store.clone(),
            dispatcher: self.state.dispatcher.clone(),
        };
        let duplicator = tokio::spawn(duplicator.run(stopping.clone(), background.duplicator.clone()));
        let app = http::router(self.state.clone());
        let limits = edge::Limits {
            max_connections: self.state.config.max_connections,
            header_read_timeout: self.state.config.header_read_timeout,
        };
        let result = edge::serve(self.listener, app, limits, shutdown).await;
        let _ = stop_background.send(true);
        let _ = aggregator.await;
        let _ = janitor.await;
        let _ = duplicator.await;
        let _ = dispatcher.await;
        self.state.store.close().await;
        result
    }
}
