//! Ledgerhook's delivery engine.
//!
//! - [`payload`]: the `legacy` and `cloudevents` bodies, rendered once per notification
//!   so that `JSON.stringify(JSON.parse(body))` reproduces them byte for byte.
//! - [`signature`]: `intuit-signature` and Standard Webhooks signatures, and the headers
//!   of an attempt.
//! - [`aggregator`]: closes due aggregation windows into notifications.
//! - [`outbound`]: the guarded HTTP client, the only way out.

pub mod aggregator;
pub mod outbound;
pub mod payload;
pub mod signature;
