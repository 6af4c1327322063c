//! Ledgerhook's delivery engine.
//!
//! - [`payload`]: the `legacy` and `cloudevents` bodies, rendered once per notification
//!   so that `JSON.stringify(JSON.parse(body))` reproduces them byte for byte.
//! - [`signature`]: `intuit-signature` and Standard Webhooks signatures, and the headers
//!   of an attempt.
//! - [`aggregator`]: closes due aggregation windows into notifications.
//! - [`outbound`]: the guarded HTTP client, the only way out.
//! - [`dispatcher`]: claims due notifications and makes attempts; [`retry`] decides
//!   what a failure leads to; [`janitor`] turns old blacklists inactive and applies
//!   retention.
//! - [`secrets`]: signing secrets sealed at rest with the `secret-key`.

pub mod aggregator;
pub mod dispatcher;
pub mod duplicator;
pub mod janitor;
pub mod metrics;
pub mod outbound;
pub mod payload;
pub mod retry;
pub mod secrets;
pub mod signature;
