//! Ledgerhook's receiver SDK: the consumer side of QuickBooks-style webhooks.
//!
//! - [`verify`]: `intuit-signature` (HMAC-SHA256 of the raw body under the verifier
//!   token) and Standard Webhooks signatures (with timestamp tolerance), in constant time,
//!   with several keys accepted during a rotation.
//! - [`payload`]: both body formats (`eventNotifications` and CloudEvents) under both
//!   content types, parsed into typed [`payload::Event`]s.
//! - [`inbox`]: the durable local queue (a SQLite file) notifications are appended to
//!   before they are answered, group-committed, each notification stored once.
//! - [`handler`]: the ready-made axum endpoint — verify, append, answer `200`.
//! - [`worker`]: applies the inbox to the app's copy realm by realm, in `lastUpdated`
//!   and `SyncToken` order, skipping what was already applied, repairing missed
//!   notifications through CDC with access tokens refreshed as they expire; a failing
//!   realm backs off alone and ends in dead letters.
//!
//! `ledgerhook mirror` (a local copy of every connected realm) and `ledgerhook relay`
//! (these guarantees for apps in any language) are built on it.
//!
//! `verify` and `payload` depend on no web framework, database or HTTP client; any stack
//! hands them the raw body and the headers. Cargo features add the rest (all on by
//! default): `inbox` (the SQLite inbox), `handler` (the axum endpoint), `worker` (the
//! per-realm worker with CDC repair). `default-features = false` leaves the core.
//!
//! ```
//! use ledgerhook_receiver::{payload, verify};
//! let body = br#"{"eventNotifications":[{"realmId":"1","dataChangeEvent":{"entities":[{"name":"Customer","id":"1","operation":"Create","lastUpdated":"2026-11-28T15:11:37.000Z"}]}}]}"#;
//! // The value of the `intuit-signature` header, as the sender computed it:
//! let signature = verify::intuit_signature("token", body);
//! verify::intuit(&["token"], body, &signature).expect("signed by the app's verifier token");
//! let events = payload::parse("application/json", body).unwrap();
//! assert_eq!(events[0].entity, "Customer");
//! ```

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // a client of a server by design (clippy.toml)

#[cfg(feature = "worker")]
mod bookkeeping;
#[cfg(feature = "worker")]
mod cdc;
#[cfg(feature = "handler")]
pub mod handler;
#[cfg(feature = "inbox")]
pub mod inbox;
pub mod payload;
#[cfg(feature = "worker")]
mod queue;
#[cfg(feature = "inbox")]
mod sqlite;
#[cfg(feature = "worker")]
mod tokens;
pub mod verify;
#[cfg(feature = "worker")]
pub mod worker;
