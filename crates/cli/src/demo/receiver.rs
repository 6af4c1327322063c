//! The demo's receiver: verifies `intuit-signature`, prints each event with the time it
//! arrived (and says when it is an injected duplicate), and answers `503` while broken.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use ledgerhook_receiver::{payload, verify};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The demo's receiver: verifies, prints, and answers `503` while broken.
pub(super) struct Receiver {
    pub(super) verifier_token: Mutex<String>,
    pub(super) broken: AtomicBool,
    pub(super) seen: Mutex<HashMap<String, usize>>,
    /// (entity, id, lastUpdated) of every event that arrived.
    pub(super) arrived: Mutex<HashSet<(String, String, i64)>>,
}

pub(super) async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_owned();
    if receiver.broken.load(Ordering::SeqCst) {
        say(&format!(
            "  {} ← {id}: refused with 503 (the endpoint is broken on purpose)",
            clock()
        ));
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let token = receiver.verifier_token.lock().expect("token").clone();
    let signature = headers
        .get("intuit-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if verify::intuit(&[token.as_str()], &body, signature).is_err() {
        say(&format!("  ← {id}: bad intuit-signature, refused with 401"));
        return StatusCode::UNAUTHORIZED;
    }
    let copies = {
        let mut seen = receiver.seen.lock().expect("seen");
        let n = seen.entry(id.clone()).or_default();
        *n += 1;
        *n
    };
    let again = if copies > 1 {
        " — again: the same webhook-id and bytes (an injected duplicate)"
    } else {
        ""
    };
    for event in payload::parse("application/json", &body).unwrap_or_default() {
        receiver.arrived.lock().expect("arrived").insert((
            event.entity.clone(),
            event.entity_id.clone(),
            event.last_updated.millis(),
        ));
        say(&format!(
            "  {} ← {id}: {} {} {} at {}, intuit-signature verified{again}",
            clock(),
            event.entity,
            event.entity_id,
            event.operation.as_str(),
            event.last_updated
        ));
    }
    StatusCode::OK
}

pub(super) fn say(line: &str) {
    println!("{line}");
}

/// The time of day, for lines that show when something arrived.
fn clock() -> String {
    chrono::Local::now().format("%H:%M:%S%.3f").to_string()
}
