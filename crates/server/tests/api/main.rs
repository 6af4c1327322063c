//! The server over real HTTP, on SQLite and PostgreSQL: one test binary, one module per
//! area.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // tests are clients and peers of the server

mod aggregation;
mod browser;
mod cdc;
mod clients;
mod delivery;
mod edge;
mod failures;
mod faults;
mod full_disk;
mod ingestion;
mod management;
mod metrics;
mod oauth;
mod openapi;
mod outage;
mod properties;
mod quickbooks;
mod schemathesis;
mod support;
mod v3;
