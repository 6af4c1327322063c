//! Ledgerhook's server: the HTTP API (management, ingestion, CDC, QuickBooks-compatible
//! API, dashboard) and the background work behind it, in one process.
//!
//! Entry point: [`Server::start`] takes a validated [`Config`], opens the store, makes
//! sure an operator token exists, binds the listener and runs until the shutdown future
//! resolves. Tests drive the same [`http::router`] over a real socket.

pub mod auth;
pub mod config;
pub mod edge;
pub mod endpoint;
pub mod http;
pub mod ingest;
pub mod oauth;
pub mod oidc;
pub mod pipeline;
mod server;
pub mod state;
pub mod throttle;

pub use config::{Config, LogFormat, RetryPolicy};
pub use server::{RunningServer, Server, StartError};
pub use state::AppState;
