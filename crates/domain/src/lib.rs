//! Ledgerhook's domain model.
//!
//! Everything here is pure: no I/O, no clock reads except where a caller passes "now".
//! The other crates depend on this one; it depends on none of them.
//!
//! - [`entity`]: the QuickBooks entity × operation matrix that every validation uses.
//! - [`environment`]: `sandbox` and `production`.
//! - [`time`]: millisecond timestamps, RFC 3339 rendering, QuickBooks' lenient date forms.
//! - [`duration`]: the `20m` / `1.5s` / `5MiB` forms of settings and API fields.
//! - [`event`]: a change event as ingested.
//! - [`net`]: which IP addresses are public (the SSRF policy).
//! - [`subscription`]: a webhook configuration's entity selection, format, ordering, state.
//! - [`rate`]: the `COUNT/PERIOD` form of the rate-limit settings.
//! - [`query`]: the QuickBooks query language (`select … from … where … orderby …`), parsed.

pub mod duration;
pub mod entity;
pub mod environment;
pub mod error;
pub mod event;
pub mod faults;
pub mod net;
pub mod query;
pub mod rate;
pub mod subscription;
pub mod time;

pub use entity::{EntitySpec, Operation, ENTITIES};
pub use environment::Environment;
pub use error::error_chain;
pub use event::ChangeEvent;
pub use subscription::{ConfigState, EntitySelection, Ordering, PayloadFormat};
pub use time::Timestamp;
