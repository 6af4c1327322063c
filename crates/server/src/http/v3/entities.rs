//! The QuickBooks-compatible entity API: create, update (full or sparse, with the
//! `SyncToken` check), read, delete, void, send, and the query subset client libraries
//! use. Every write is an ingestion request, so it makes the same change event (and
//! notifications) as the management API would.

use super::cdc::entity_json;
use super::{Fault, RealmAccess};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::Json;
use ledgerhook_domain::{entity, EntitySpec, Operation, Timestamp};
use ledgerhook_store::cdc::EntityState;
use ledgerhook_store::ingest::{Expect, IngestOutcome, IngestRequest, NewEvent, Precondition};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

const SERVER_KEYS: [&str; 5] = ["Id", "SyncToken", "MetaData", "domain", "sparse"];

/// The entity of a path segment (`customer`, `Customer`, …).
fn entity_of(segment: &str) -> Result<&'static EntitySpec, Fault> {
    entity::ENTITIES
        .iter()
        .find(|e| e.name.eq_ignore_ascii_case(segment))
        .ok_or_else(|| Fault::validation(format!("unsupported entity {segment:?}")))
}

fn require(spec: &EntitySpec, op: Operation) -> Result<(), Fault> {
    if spec.allows(op) {
        Ok(())
    } else {
        Err(Fault::validation(format!(
            "operation {op} is not supported for entity {}",
            spec.name
        )))
    }
}

fn not_found(spec: &EntitySpec, id: &str) -> Fault {
    Fault::object_not_found(format!(
        "Object Not Found: {} with Id {id} does not exist or is deleted",
        spec.name
    ))
}

fn answer(spec: &EntitySpec, state: &EntityState) -> Json<Value> {
    Json(json!({ spec.name: entity_json(state), "time": Timestamp::now().to_rfc3339() }))
}

/// The body without server-owned keys, as stored.
fn stored_body(mut body: Map<String, Value>) -> String {
    body.retain(|k, _| !SERVER_KEYS.contains(&k.as_str()));
    Value::Object(body).to_string()
}

fn sync_token(body: &Map<String, Value>) -> Result<i64, Fault> {
    let token = match body.get("SyncToken") {
        Some(Value::String(s)) => s.parse().ok(),
        Some(Value::Number(n)) => n.as_i64(),
        _ => None,
    };
    token.ok_or_else(|| Fault::validation("SyncToken is required to change an existing object"))
}

fn id_of(body: &Map<String, Value>) -> Option<String> {
    match body.get("Id") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// Stores one change through ingestion; answers whether its precondition held.
async fn commit(state: &AppState, realm_id: &str, event: NewEvent, expect: Expect) -> Result<bool, Fault> {
    let precondition = Precondition {
        entity: event.entity,
        entity_id: event.entity_id.clone(),
        expect,
    };
    let request = IngestRequest {
        realm_id: realm_id.to_owned(),
        events: vec![event],
        idempotency: None,
        precondition: Some(precondition),
    };
    match state.ingestor.ingest(request).await? {
        IngestOutcome::PreconditionFailed => Ok(false),
        _ => Ok(true),
    }
}

fn event(spec: &'static EntitySpec, id: &str, operation: Operation, data: Option<String>) -> NewEvent {
    NewEvent {
        entity: spec.name,
        entity_id: id.to_owned(),
        operation,
        last_updated: Timestamp::now(),
        deleted_id: None,
        data,
    }
}

async fn current(
    state: &AppState,
    realm_id: &str,
    spec: &EntitySpec,
    id: &str,
) -> Result<EntityState, Fault> {
    state
        .store
        .entity_state(realm_id, spec.name, id)
        .await?
        .filter(|s| !s.deleted)
        .ok_or_else(|| not_found(spec, id))
}

fn stale(spec: &EntitySpec, id: &str) -> Fault {
    Fault::stale(format!(
        "Stale Object Error: {} {id} was changed by someone else; read it again for its current SyncToken",
        spec.name
    ))
}

/// `POST /v3/company/{realm}/{entity}[?operation=delete|void]`.
pub async fn write(
    State(state): State<AppState>,
    access: RealmAccess,
    Path((_, segment)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Fault> {
    let spec = entity_of(&segment)?;
    let body = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => map,
        _ => {
            return Err(Fault::validation(format!(
                "the request body must be a JSON {} object",
                spec.name
            )))
        }
    };
    let realm = access.realm_id.as_str();
    match query.get("operation").map(|o| o.to_ascii_lowercase()) {
        None => match id_of(&body) {
            None => create(&state, realm, spec, body).await,
            Some(id) => update(&state, realm, spec, &id, body).await,
        },
        Some(op) if op == "delete" || op == "void" => {
            let operation = if op == "delete" {
                Operation::Delete
            } else {
                Operation::Void
            };
            require(spec, operation)?;
            let id = id_of(&body).ok_or_else(|| Fault::validation("Id is required"))?;
            let expected = sync_token(&body)?;
            current(&state, realm, spec, &id).await?;
            if !commit(
                &state,
                realm,
                event(spec, &id, operation, None),
                Expect::SyncToken(expected),
            )
            .await?
            {
                return Err(stale(spec, &id));
            }
            if operation == Operation::Delete {
                return Ok(Json(json!({
                    spec.name: {"domain": "QBO", "status": "Deleted", "Id": id},
                    "time": Timestamp::now().to_rfc3339(),
                })));
            }
            Ok(answer(spec, &current(&state, realm, spec, &id).await?))
        }
        Some(other) => Err(Fault::validation(format!(
            "unsupported operation {other:?}; use delete or void"
        ))),
    }
}

async fn create(
    state: &AppState,
    realm: &str,
    spec: &'static EntitySpec,
    body: Map<String, Value>,
) -> Result<Json<Value>, Fault> {
    require(spec, Operation::Create)?;
    let data = stored_body(body);
    for _ in 0..5 {
        let id = state.store.next_entity_id(realm, spec.name).await?.to_string();
        let change = event(spec, &id, Operation::Create, Some(data.clone()));
        if commit(state, realm, change, Expect::Absent).await? {
            return Ok(answer(spec, &current(state, realm, spec, &id).await?));
        }
    }
    Err(Fault::system(&NoFreeId))
}

async fn update(
    state: &AppState,
    realm: &str,
    spec: &'static EntitySpec,
    id: &str,
    body: Map<String, Value>,
) -> Result<Json<Value>, Fault> {
    require(spec, Operation::Update)?;
    let expected = sync_token(&body)?;
    let existing = current(state, realm, spec, id).await?;
    let sparse = body.get("sparse") == Some(&Value::Bool(true));
    let merged = if sparse {
        let mut base = match existing.body.as_deref().map(serde_json::from_str::<Value>) {
            Some(Ok(Value::Object(map))) => map,
            _ => Map::new(),
        };
        base.extend(body.clone());
        base
    } else {
        body.clone()
    };
    // Making a list entity inactive is how QuickBooks deletes it.
    let deactivated = body.get("Active") == Some(&Value::Bool(false));
    let operation = if deactivated && spec.allows(Operation::Delete) {
        Operation::Delete
    } else {
        Operation::Update
    };
    let change = event(spec, id, operation, Some(stored_body(merged)));
    if !commit(state, realm, change, Expect::SyncToken(expected)).await? {
        return Err(stale(spec, id));
    }
    match state.store.entity_state(realm, spec.name, id).await? {
        Some(s) => Ok(answer(spec, &s)),
        None => Err(not_found(spec, id)),
    }
}

/// `GET /v3/company/{realm}/{entity}/{id}`.
pub async fn read(
    State(state): State<AppState>,
    access: RealmAccess,
    Path((_, segment, id)): Path<(String, String, String)>,
) -> Result<Json<Value>, Fault> {
    let spec = entity_of(&segment)?;
    Ok(answer(spec, &current(&state, &access.realm_id, spec, &id).await?))
}

/// `POST /v3/company/{realm}/{entity}/{id}/send`: event `Emailed`.
pub async fn send(
    State(state): State<AppState>,
    access: RealmAccess,
    Path((_, segment, id)): Path<(String, String, String)>,
) -> Result<Json<Value>, Fault> {
    let spec = entity_of(&segment)?;
    require(spec, Operation::Emailed)?;
    let existing = current(&state, &access.realm_id, spec, &id).await?;
    let change = event(spec, &id, Operation::Emailed, None);
    if !commit(
        &state,
        &access.realm_id,
        change,
        Expect::SyncToken(existing.sync_token),
    )
    .await?
    {
        return Err(stale(spec, &id));
    }
    Ok(answer(spec, &current(&state, &access.realm_id, spec, &id).await?))
}

/// A parsed `select … from … [where …] [startposition N] [maxresults M]`.
struct Select {
    count: bool,
    entity: &'static EntitySpec,
    conditions: Vec<(String, String)>,
    start: usize,
    max: usize,
}

/// Splits a query into words, quoted strings (quotes removed, `\'` and `''` unescaped)
/// and the `=` sign.
fn tokens(text: &str) -> Option<Vec<(String, bool)>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '=' => out.push(("=".to_owned(), false)),
            '\'' => {
                let mut value = String::new();
                loop {
                    match chars.next()? {
                        '\\' => value.push(chars.next()?),
                        '\'' if chars.peek() == Some(&'\'') => {
                            chars.next();
                            value.push('\'');
                        }
                        '\'' => break,
                        other => value.push(other),
                    }
                }
                out.push((value, true));
            }
            _ => {
                let mut word = c.to_string();
                while let Some(&next) = chars.peek() {
                    if next.is_whitespace() || next == '=' || next == '\'' {
                        break;
                    }
                    word.push(next);
                    chars.next();
                }
                out.push((word, false));
            }
        }
    }
    Some(out)
}

fn parse_query(text: &str) -> Result<Select, Fault> {
    let bad = || {
        Fault::validation(format!(
            "unsupported query {text:?}: use select * from Entity [where Field = 'value' [and …]] \
             [orderby Field] [startposition N] [maxresults M]"
        ))
    };
    let words = tokens(text).ok_or_else(bad)?;
    let mut it = words.iter().peekable();
    match it.next() {
        Some((w, false)) if w.eq_ignore_ascii_case("select") => {}
        _ => return Err(bad()),
    }
    let count = match it.next() {
        Some((w, false)) if w == "*" => false,
        Some((w, false)) if w.eq_ignore_ascii_case("count(*)") => true,
        _ => return Err(bad()),
    };
    match it.next() {
        Some((w, false)) if w.eq_ignore_ascii_case("from") => {}
        _ => return Err(bad()),
    }
    let entity = match it.next() {
        Some((w, false)) => entity_of(w)?,
        _ => return Err(bad()),
    };
    let (mut conditions, mut start, mut max) = (Vec::new(), 1usize, 100usize);
    while let Some((word, quoted)) = it.next() {
        if *quoted {
            return Err(bad());
        }
        match word.to_ascii_lowercase().as_str() {
            "where" | "and" => {
                let field = match it.next() {
                    Some((f, false)) => f.clone(),
                    _ => return Err(bad()),
                };
                if it.next().map(|(w, q)| (w.as_str(), *q)) != Some(("=", false)) {
                    return Err(bad());
                }
                let value = it.next().ok_or_else(bad)?.0.clone();
                conditions.push((field, value));
            }
            "orderby" => {
                // Results are in Id order; other orderings are accepted and ignored.
                it.next().ok_or_else(bad)?;
                it.next_if(|(w, _)| w.eq_ignore_ascii_case("asc") || w.eq_ignore_ascii_case("desc"));
            }
            "startposition" => start = it.next().and_then(|(n, _)| n.parse().ok()).ok_or_else(bad)?,
            "maxresults" => max = it.next().and_then(|(n, _)| n.parse().ok()).ok_or_else(bad)?,
            _ => return Err(bad()),
        }
    }
    Ok(Select {
        count,
        entity,
        conditions,
        start: start.max(1),
        max: max.clamp(1, 1000),
    })
}

fn matches(state: &EntityState, conditions: &[(String, String)]) -> bool {
    let body = state
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
        .unwrap_or(Value::Null);
    conditions.iter().all(|(field, value)| {
        if field.eq_ignore_ascii_case("Id") {
            return state.entity_id == *value;
        }
        match &body[field.as_str()] {
            Value::String(s) => s == value,
            Value::Bool(b) => b.to_string() == value.to_ascii_lowercase(),
            Value::Number(n) => n.to_string() == *value,
            _ => false,
        }
    })
}

/// `GET /v3/company/{realm}/query?query=…`.
pub async fn query(
    State(state): State<AppState>,
    access: RealmAccess,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Fault> {
    let text = params
        .get("query")
        .ok_or_else(|| Fault::validation("query is required"))?;
    let select = parse_query(text)?;
    let id = select
        .conditions
        .iter()
        .find(|(f, _)| f.eq_ignore_ascii_case("Id"))
        .map(|(_, v)| v.as_str());
    let all = state
        .store
        .live_entities(&access.realm_id, select.entity.name, id)
        .await?;
    let hits: Vec<&EntityState> = all.iter().filter(|s| matches(s, &select.conditions)).collect();
    let now = Timestamp::now().to_rfc3339();
    if select.count {
        return Ok(Json(
            json!({"QueryResponse": {"totalCount": hits.len()}, "time": now}),
        ));
    }
    let page: Vec<Value> = hits
        .iter()
        .skip(select.start - 1)
        .take(select.max)
        .map(|s| entity_json(s))
        .collect();
    if page.is_empty() {
        return Ok(Json(json!({"QueryResponse": {}, "time": now})));
    }
    let count = page.len();
    Ok(Json(json!({
        "QueryResponse": { select.entity.name: page, "startPosition": select.start, "maxResults": count },
        "time": now,
    })))
}

/// Every random entity id tried was taken (practically impossible: ids are random).
#[derive(Debug, thiserror::Error)]
#[error("could not find a free Id")]
struct NoFreeId;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_with_quotes_conditions_and_paging() {
        let q = parse_query("SELECT * FROM Customer WHERE DisplayName = 'Smith and Sons' AND Active = true ORDERBY Id DESC STARTPOSITION 11 MAXRESULTS 5").unwrap();
        assert!(!q.count);
        assert_eq!(q.entity.name, "Customer");
        assert_eq!(
            q.conditions,
            [
                ("DisplayName".to_owned(), "Smith and Sons".to_owned()),
                ("Active".to_owned(), "true".to_owned())
            ]
        );
        assert_eq!((q.start, q.max), (11, 5));
        let q = parse_query("select count(*) from invoice where Id='7'").unwrap();
        assert!(q.count);
        assert_eq!(q.conditions, [("Id".to_owned(), "7".to_owned())]);
        let q = parse_query(r"select * from Customer where DisplayName = 'O\'Brien'").unwrap();
        assert_eq!(q.conditions[0].1, "O'Brien");
        assert_eq!(
            parse_query("select * from Customer maxresults 5000").unwrap().max,
            1000
        );
    }

    #[test]
    fn bad_queries_are_refused() {
        for text in [
            "",
            "delete from Customer",
            "select Id from Customer",
            "select * from Gadget",
            "select * from Customer where",
            "select * from Customer where Id > '1'",
            "select * from Customer where Id = 'unterminated",
            "select * from Customer maxresults many",
            "select * from Customer limit 5",
        ] {
            assert!(parse_query(text).is_err(), "{text:?} was accepted");
        }
    }
}
