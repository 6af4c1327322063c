//! The entity routes of the QuickBooks-compatible API: `POST {entity}` (create, update,
//! `?operation=delete|void|update`, `?operation=update&include=void`), `GET
//! {entity}/{id}`, `GET preferences`, `POST {entity}/{id}/send`. The operations
//! themselves are in `ops.rs`.

use super::company::{self, is_singleton, SINGLETON_ID};
use super::ops::{id_of, object, Realm};
use super::{Fault, RealmAccess};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use ledgerhook_domain::{entity, EntitySpec, Timestamp};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// The entity of a path segment or query (`customer`, `Customer`, `companyinfo`, …).
pub fn entity_of(segment: &str) -> Result<&'static EntitySpec, Fault> {
    entity::ENTITIES
        .iter()
        .chain(std::iter::once(&entity::COMPANY_INFO))
        .find(|e| e.name.eq_ignore_ascii_case(segment))
        .ok_or_else(|| Fault::validation(format!("unsupported entity {segment:?}")))
}

/// `{"Entity": {…}, "time": …}`.
pub fn answer(spec: &EntitySpec, object: Value) -> Json<Value> {
    Json(json!({ spec.name: object, "time": Timestamp::now().to_rfc3339() }))
}

/// What a `POST {entity}` asks for, from `operation` and `include`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Create without `Id`, update with one.
    Save,
    /// `operation=update`.
    Update,
    /// `operation=delete`.
    Delete,
    /// `operation=void`, or `operation=update&include=void`.
    Void,
}

impl Write {
    /// The write the query parameters ask for.
    pub fn from_query(query: &HashMap<String, String>) -> Result<Write, Fault> {
        let operation = query.get("operation").map(|o| o.to_ascii_lowercase());
        let include = query.get("include").map(|o| o.to_ascii_lowercase());
        match (operation.as_deref(), include.as_deref()) {
            (None, _) => Ok(Write::Save),
            (Some("update"), Some("void")) | (Some("void"), _) => Ok(Write::Void),
            (Some("update"), _) => Ok(Write::Update),
            (Some("delete"), _) => Ok(Write::Delete),
            (Some(other), _) => Err(Fault::validation(format!(
                "unsupported operation {other:?}; use update, delete or void"
            ))),
        }
    }
}

/// Runs one write of `spec` with `body`; answers the entity as QuickBooks shows it.
pub async fn apply(
    realm: Realm<'_>,
    spec: &'static EntitySpec,
    write: Write,
    mut body: Map<String, Value>,
) -> Result<Value, Fault> {
    if is_singleton(spec) {
        company::ensure(realm).await?;
        body.entry("Id").or_insert_with(|| SINGLETON_ID.into());
    }
    match write {
        Write::Save if id_of(&body).is_none() => realm.create(spec, body).await,
        Write::Save | Write::Update => realm.update(spec, body).await,
        Write::Delete => realm.delete(spec, body).await,
        Write::Void => realm.void(spec, body).await,
    }
}

/// `POST /v3/company/{realm}/{entity}[?operation=…]`.
pub async fn write(
    State(state): State<AppState>,
    access: RealmAccess,
    Path((_, segment)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Fault> {
    let spec = entity_of(&segment)?;
    let write = Write::from_query(&query)?;
    let value = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let realm = Realm {
        state: &state,
        id: &access.realm_id,
    };
    Ok(answer(
        spec,
        apply(realm, spec, write, object(spec, value)?).await?,
    ))
}

/// `GET /v3/company/{realm}/{entity}/{id}`; `companyinfo/{realm}` is the company's
/// `CompanyInfo`.
pub async fn read(
    State(state): State<AppState>,
    access: RealmAccess,
    Path((_, segment, id)): Path<(String, String, String)>,
) -> Result<Json<Value>, Fault> {
    let spec = entity_of(&segment)?;
    let realm = Realm {
        state: &state,
        id: &access.realm_id,
    };
    let id = if is_singleton(spec) {
        company::ensure(realm).await?;
        SINGLETON_ID.to_owned()
    } else {
        id
    };
    Ok(answer(spec, realm.read(spec, &id).await?))
}

/// `GET /v3/company/{realm}/{entity}`: only the singletons (`preferences`) are read
/// without an id.
pub async fn read_singleton(
    State(state): State<AppState>,
    access: RealmAccess,
    Path((_, segment)): Path<(String, String)>,
) -> Result<Json<Value>, Fault> {
    let spec = entity_of(&segment)?;
    if !is_singleton(spec) {
        return Err(Fault::unsupported(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("GET {segment} needs an id: GET {segment}/{{id}}, or a query"),
        ));
    }
    let realm = Realm {
        state: &state,
        id: &access.realm_id,
    };
    company::ensure(realm).await?;
    Ok(answer(spec, realm.read(spec, SINGLETON_ID).await?))
}

/// `POST /v3/company/{realm}/{entity}/{id}/send`: event `Emailed`.
pub async fn send(
    State(state): State<AppState>,
    access: RealmAccess,
    Path((_, segment, id)): Path<(String, String, String)>,
) -> Result<Json<Value>, Fault> {
    let spec = entity_of(&segment)?;
    let realm = Realm {
        state: &state,
        id: &access.realm_id,
    };
    Ok(answer(spec, realm.send(spec, &id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn operations_of_the_client_libraries() {
        assert_eq!(Write::from_query(&query(&[])).unwrap(), Write::Save);
        assert_eq!(
            Write::from_query(&query(&[("operation", "update")])).unwrap(),
            Write::Update
        );
        assert_eq!(
            Write::from_query(&query(&[("operation", "update"), ("include", "void")])).unwrap(),
            Write::Void
        );
        assert_eq!(
            Write::from_query(&query(&[("operation", "VOID")])).unwrap(),
            Write::Void
        );
        assert_eq!(
            Write::from_query(&query(&[("operation", "delete")])).unwrap(),
            Write::Delete
        );
        assert!(Write::from_query(&query(&[("operation", "merge")])).is_err());
    }

    #[test]
    fn entities_resolve_case_insensitively_with_company_info() {
        assert_eq!(entity_of("customer").unwrap().name, "Customer");
        assert_eq!(entity_of("companyinfo").unwrap().name, "CompanyInfo");
        assert_eq!(entity_of("preferences").unwrap().name, "Preferences");
        assert!(entity_of("gadget").is_err());
    }
}
