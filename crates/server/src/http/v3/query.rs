//! `GET query?query=…` and `POST query` (the query as the body, any content type, as
//! python-quickbooks sends it): QuickBooks' query language, parsed by
//! `ledgerhook_domain::query` and evaluated here over the realm's live entities of the
//! type — conditions on top-level and dotted fields (`MetaData.*` compared as times),
//! `orderby` on several keys, paging, `count(*)`, column lists.

use super::cdc::entity_json;
use super::company;
use super::entities::entity_of;
use super::ops::Realm;
use super::{rules, Fault, RealmAccess};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Query as QueryParams, State};
use axum::Json;
use ledgerhook_domain::query::{self, Comparison, Condition, Projection, Query, Value as Literal};
use ledgerhook_domain::Timestamp;
use serde_json::{json, Map, Value};
use std::cmp::Ordering;
use std::collections::HashMap;

/// The value at `path` (dotted, case-insensitive) of `object`; a reference
/// (`{"value": …}`) stands for its value.
fn lookup<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = object;
    for part in path.split('.') {
        let map = current.as_object()?;
        current = map.get(part).or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(part))
                .map(|(_, v)| v)
        })?;
    }
    match current {
        Value::Object(map) if map.contains_key("value") => map.get("value"),
        other => Some(other),
    }
}

fn number_of(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn time_of(value: &Value) -> Option<Timestamp> {
    value.as_str().and_then(|s| Timestamp::parse(s).ok())
}

/// How `actual` compares with `literal`: as times for `MetaData.*` and date-valued
/// fields, as numbers where both are numbers, as booleans, else as text. `None` when
/// they cannot be compared.
fn compare(field: &str, actual: &Value, literal: &Literal) -> Option<Ordering> {
    let literal_json = match literal {
        Literal::Text(t) => Value::String(t.clone()),
        Literal::Number(n) => Value::String(n.clone()),
        Literal::Bool(b) => Value::Bool(*b),
    };
    if let (Some(a), Some(b)) = (time_of(actual), time_of(&literal_json)) {
        if field.to_ascii_lowercase().starts_with("metadata.")
            || actual.as_str().is_some_and(|s| s.len() >= 10)
        {
            return Some(a.cmp(&b));
        }
    }
    if let (Some(a), Some(b)) = (number_of(actual), number_of(&literal_json)) {
        return a.partial_cmp(&b);
    }
    match (actual, &literal_json) {
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::String(b)) => b.parse::<bool>().ok().map(|b| a.cmp(&b)),
        (Value::String(a), Value::String(b)) => Some(a.as_str().cmp(b.as_str())),
        (Value::String(a), Value::Bool(b)) => Some(a.as_str().cmp(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// `Active` of a name-list entity is true unless it says false.
fn field_value<'a>(entity: &str, object: &'a Value, field: &str) -> Option<&'a Value> {
    static TRUE: Value = Value::Bool(true);
    lookup(object, field)
        .or_else(|| (rules::is_name_list(entity) && field.eq_ignore_ascii_case("Active")).then_some(&TRUE))
}

fn holds(entity: &str, object: &Value, condition: &Condition) -> bool {
    let Some(actual) = field_value(entity, object, &condition.field) else {
        return false;
    };
    let field = condition.field.as_str();
    let is = |literal: &Literal, wanted: &[Ordering]| {
        compare(field, actual, literal).is_some_and(|o| wanted.contains(&o))
    };
    match &condition.op {
        Comparison::Eq(v) => is(v, &[Ordering::Equal]),
        Comparison::Lt(v) => is(v, &[Ordering::Less]),
        Comparison::Gt(v) => is(v, &[Ordering::Greater]),
        Comparison::Le(v) => is(v, &[Ordering::Less, Ordering::Equal]),
        Comparison::Ge(v) => is(v, &[Ordering::Greater, Ordering::Equal]),
        Comparison::In(values) => values.iter().any(|v| is(v, &[Ordering::Equal])),
        Comparison::Like(pattern) => actual.as_str().is_some_and(|text| query::like(pattern, text)),
    }
}

/// Orders two values of the same field: numbers, then times, then text; absent last.
fn order_values(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => {
            if let (Some(x), Some(y)) = (number_of(a), number_of(b)) {
                return x.partial_cmp(&y).unwrap_or(Ordering::Equal);
            }
            if let (Some(x), Some(y)) = (time_of(a), time_of(b)) {
                return x.cmp(&y);
            }
            match (a, b) {
                (Value::String(x), Value::String(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
                (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
                _ => Ordering::Equal,
            }
        }
    }
}

/// Only the named fields (and `Id`, `domain`, `sparse`) of `object`.
fn project(object: Value, fields: &[String]) -> Value {
    let Value::Object(map) = object else { return object };
    let keep = |key: &str| {
        ["Id", "domain", "sparse"].contains(&key)
            || fields.iter().any(|f| {
                f.split('.')
                    .next()
                    .is_some_and(|top| top.eq_ignore_ascii_case(key))
            })
    };
    Value::Object(map.into_iter().filter(|(k, _)| keep(k)).collect::<Map<_, _>>())
}

/// Runs `text` in `realm`; answers the `QueryResponse` object.
pub async fn run(realm: Realm<'_>, text: &str) -> Result<Value, Fault> {
    let parsed: Query = query::parse(text).map_err(|e| Fault::query(format!("{e} (in {text:?})")))?;
    let spec = entity_of(&parsed.entity)
        .map_err(|_| Fault::query(format!("unsupported entity {} in {text:?}", parsed.entity)))?;
    if company::is_singleton(spec) {
        company::ensure(realm).await?;
    }
    let states = realm.state.store.live_entities(realm.id, spec.name, None).await?;
    // As QuickBooks: a query that says nothing of `Active` sees only active entities.
    let default_active = rules::is_name_list(spec.name)
        && !parsed
            .conditions
            .iter()
            .any(|c| c.field.eq_ignore_ascii_case("Active"));
    let mut hits: Vec<Value> = states
        .iter()
        .map(entity_json)
        .filter(|object| {
            (!default_active || field_value(spec.name, object, "Active") != Some(&Value::Bool(false)))
                && parsed.conditions.iter().all(|c| holds(spec.name, object, c))
        })
        .collect();
    if parsed.projection == Projection::Count {
        return Ok(json!({ "totalCount": hits.len() }));
    }
    for key in parsed.order.iter().rev() {
        // Stable sorts from the last key to the first: the first key decides first.
        hits.sort_by(|a, b| {
            let ordering = order_values(
                field_value(spec.name, a, &key.field),
                field_value(spec.name, b, &key.field),
            );
            if key.descending {
                ordering.reverse()
            } else {
                ordering
            }
        });
    }
    let page: Vec<Value> = hits
        .into_iter()
        .skip(parsed.start as usize - 1)
        .take(parsed.max as usize)
        .map(|object| match &parsed.projection {
            Projection::Fields(fields) => project(object, fields),
            _ => object,
        })
        .collect();
    if page.is_empty() {
        return Ok(json!({}));
    }
    let count = page.len();
    Ok(json!({ spec.name: page, "startPosition": parsed.start, "maxResults": count }))
}

/// `GET /v3/company/{realm}/query?query=…`.
pub async fn get(
    State(state): State<AppState>,
    access: RealmAccess,
    QueryParams(params): QueryParams<HashMap<String, String>>,
) -> Result<Json<Value>, Fault> {
    let text = params
        .get("query")
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| Fault::required("query is required: GET query?query=select * from Customer"))?;
    respond(&state, &access, text).await
}

/// `POST /v3/company/{realm}/query` with the query as the body (python-quickbooks sends
/// `application/text`); a `query` parameter is used when the body is empty.
pub async fn post(
    State(state): State<AppState>,
    access: RealmAccess,
    QueryParams(params): QueryParams<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Value>, Fault> {
    let text = String::from_utf8_lossy(&body).trim().to_owned();
    let text = if text.is_empty() {
        params.get("query").cloned().unwrap_or_default()
    } else {
        text
    };
    if text.trim().is_empty() {
        return Err(Fault::required("the query is required as the request body"));
    }
    respond(&state, &access, &text).await
}

async fn respond(state: &AppState, access: &RealmAccess, text: &str) -> Result<Json<Value>, Fault> {
    let realm = Realm {
        state,
        id: &access.realm_id,
    };
    let response = run(realm, text).await?;
    Ok(Json(
        json!({"QueryResponse": response, "time": Timestamp::now().to_rfc3339()}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holds_text(object: Value, condition: &str) -> bool {
        let q = query::parse(&format!("select * from Customer where {condition}")).unwrap();
        q.conditions.iter().all(|c| holds("Customer", &object, c))
    }

    #[test]
    fn conditions_compare_by_kind() {
        let customer = json!({
            "Id": "12", "DisplayName": "Amy's Bird Sanctuary", "Balance": 239.5, "Active": true,
            "CurrencyRef": {"value": "USD"},
            "MetaData": {"CreateTime": "2026-11-28T10:00:00Z", "LastUpdatedTime": "2026-11-30T09:30:00-08:00"},
        });
        assert!(holds_text(
            customer.clone(),
            "displayname = 'Amy''s Bird Sanctuary'"
        ));
        assert!(!holds_text(
            customer.clone(),
            "DisplayName = 'amy''s bird sanctuary'"
        ));
        assert!(
            holds_text(customer.clone(), "Id = '12' and Id > '9'"),
            "ids compare as numbers"
        );
        assert!(holds_text(customer.clone(), "Balance >= 239.5 and Balance < 240"));
        assert!(holds_text(customer.clone(), "Active = true"));
        assert!(holds_text(customer.clone(), "CurrencyRef = 'USD'"));
        assert!(holds_text(
            customer.clone(),
            "MetaData.LastUpdatedTime > '2026-11-30T17:00:00Z'"
        ));
        assert!(!holds_text(
            customer.clone(),
            "MetaData.LastUpdatedTime > '2026-11-30T17:30:00Z'"
        ));
        assert!(holds_text(
            customer.clone(),
            "MetaData.CreateTime <= '2026-11-28T02:00:00-08:00'"
        ));
        assert!(holds_text(customer.clone(), "Id in ('3', '12')"));
        assert!(holds_text(customer.clone(), "DisplayName like '%bird%'"));
        assert!(
            !holds_text(customer.clone(), "CompanyName = 'x'"),
            "an absent field matches nothing"
        );
        assert!(
            holds_text(json!({"Id": "1"}), "Active = true"),
            "a name-list entity is active by default"
        );
    }

    #[test]
    fn values_order_by_kind_with_absent_last() {
        let (a, b) = (json!("10"), json!("9"));
        assert_eq!(order_values(Some(&a), Some(&b)), Ordering::Greater);
        let (a, b) = (json!("2026-11-30T10:00:00Z"), json!("2026-11-30T09:00:00-08:00"));
        assert_eq!(order_values(Some(&a), Some(&b)), Ordering::Less);
        assert_eq!(
            order_values(Some(&json!("b")), Some(&json!("A"))),
            Ordering::Greater
        );
        assert_eq!(order_values(None, Some(&json!("x"))), Ordering::Greater);
    }

    #[test]
    fn column_lists_keep_the_named_fields_and_the_id() {
        let object = json!({"Id": "1", "DisplayName": "A", "Balance": 3, "MetaData": {"CreateTime": "x"}, "domain": "QBO"});
        let kept = project(object, &["displayname".into(), "MetaData.CreateTime".into()]);
        assert_eq!(
            kept,
            json!({"Id": "1", "DisplayName": "A", "MetaData": {"CreateTime": "x"}, "domain": "QBO"})
        );
    }
}
