//! The server over real HTTP, on SQLite and PostgreSQL: one test binary, one module per
//! area.

mod aggregation;
mod cdc;
mod delivery;
mod ingestion;
mod management;
mod oauth;
mod support;
mod v3;
