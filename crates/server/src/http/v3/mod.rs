//! The QuickBooks-compatible API under `/v3/company/{realm}/`: OAuth access tokens only,
//! QuickBooks' JSON shapes and `Fault` errors.

mod access;
pub mod cdc;
pub mod entities;
mod fault;

pub use access::RealmAccess;
pub use fault::Fault;
