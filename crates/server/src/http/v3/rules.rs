//! How QuickBooks fills in an entity where client code depends on it (SPEC §6): `Active`
//! on name-list entities, `FullyQualifiedName`, a transaction's `TotalAmt`, `Balance`,
//! `TxnDate` and `DocNumber` when absent, `EmailStatus` after a send, amounts of a voided
//! transaction. Pure functions over the JSON body; the caller stores the result.

use ledgerhook_domain::Timestamp;
use serde_json::{Map, Value};

/// Entities QuickBooks never removes: `Active: false` makes them inactive, still
/// readable and found by `where Active = false`.
pub const NAME_LIST: [&str; 9] = [
    "Customer",
    "Vendor",
    "Employee",
    "Item",
    "Account",
    "Class",
    "Department",
    "PaymentMethod",
    "Term",
];

/// Entities whose `FullyQualifiedName` is their `DisplayName`.
const DISPLAY_NAMED: [&str; 3] = ["Customer", "Vendor", "Employee"];

/// Transactions with lines, a total and a date.
const TRANSACTIONS: [&str; 14] = [
    "Bill",
    "BillPayment",
    "CreditMemo",
    "Deposit",
    "Estimate",
    "Invoice",
    "JournalEntry",
    "Payment",
    "Purchase",
    "PurchaseOrder",
    "RefundReceipt",
    "SalesReceipt",
    "Transfer",
    "VendorCredit",
];

/// Transactions whose `TotalAmt` is an input (a payment's amount), not their lines' sum.
const TOTAL_GIVEN: [&str; 3] = ["Payment", "BillPayment", "Transfer"];

/// Transactions QuickBooks keeps an open `Balance` on.
const WITH_BALANCE: [&str; 2] = ["Invoice", "Bill"];

/// Transactions QuickBooks numbers itself when `DocNumber` is absent.
const NUMBERED: [&str; 5] = [
    "Invoice",
    "Estimate",
    "SalesReceipt",
    "CreditMemo",
    "RefundReceipt",
];

/// Sales forms that can be e-mailed (`EmailStatus`).
const EMAILED: [&str; 5] = [
    "Invoice",
    "Estimate",
    "SalesReceipt",
    "CreditMemo",
    "RefundReceipt",
];

/// Whether `entity` is a name-list entity.
pub fn is_name_list(entity: &str) -> bool {
    NAME_LIST.contains(&entity)
}

/// The sum of the lines' `Amount`s, rounded to cents, if there are lines.
fn line_total(body: &Map<String, Value>) -> Option<f64> {
    let lines = body.get("Line")?.as_array()?;
    let total: f64 = lines
        .iter()
        .filter(|l| l["DetailType"] != "SubTotalLineDetail")
        .filter_map(|l| l.get("Amount").and_then(amount))
        .sum();
    Some((total * 100.0).round() / 100.0)
}

fn amount(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn number(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
}

/// The date part (`YYYY-MM-DD`) of `now`, in UTC.
fn date_of(now: Timestamp) -> String {
    now.to_rfc3339()[..10].to_owned()
}

/// Whether `key` is absent, `null` or an empty string (client libraries send every
/// field of a new object, empty).
fn blank(body: &Map<String, Value>, key: &str) -> bool {
    match body.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    }
}

/// Fields every version of the entity gets: `FullyQualifiedName`, and — read-only in
/// QuickBooks, computed from the lines whatever the client sent — `TotalAmt`.
fn derived(entity: &str, body: &mut Map<String, Value>) {
    if DISPLAY_NAMED.contains(&entity) {
        if let Some(name) = body.get("DisplayName").cloned() {
            body.insert("FullyQualifiedName".into(), name);
        }
    }
    let computed = TRANSACTIONS.contains(&entity) && !TOTAL_GIVEN.contains(&entity);
    if computed || (TRANSACTIONS.contains(&entity) && blank(body, "TotalAmt")) {
        if let Some(total) = line_total(body) {
            body.insert("TotalAmt".into(), number(total));
        }
    }
}

/// Fills in a new entity's defaults; `id` is its new `Id`.
pub fn on_create(entity: &str, id: &str, body: &mut Map<String, Value>, now: Timestamp) {
    if is_name_list(entity) {
        body.entry("Active").or_insert(Value::Bool(true));
    }
    derived(entity, body);
    if TRANSACTIONS.contains(&entity) && blank(body, "TxnDate") {
        body.insert("TxnDate".into(), date_of(now).into());
    }
    // Read-only in QuickBooks: a new transaction owes its total.
    if WITH_BALANCE.contains(&entity) {
        if let Some(total) = body.get("TotalAmt").and_then(amount) {
            body.insert("Balance".into(), number(total));
        }
    }
    if NUMBERED.contains(&entity) && blank(body, "DocNumber") {
        let doc = id
            .parse::<u64>()
            .map_or_else(|_| id.to_owned(), |n| (1000 + n).to_string());
        body.insert("DocNumber".into(), doc.into());
    }
    if EMAILED.contains(&entity) && blank(body, "EmailStatus") {
        body.insert("EmailStatus".into(), "NotSet".into());
    }
}

/// Recomputes what follows from an updated body.
pub fn on_update(entity: &str, body: &mut Map<String, Value>) {
    derived(entity, body);
}

/// A sent sales form: `EmailStatus` `EmailSent`, with the time in `DeliveryInfo`.
pub fn on_send(entity: &str, body: &mut Map<String, Value>, now: Timestamp) {
    if EMAILED.contains(&entity) {
        body.insert("EmailStatus".into(), "EmailSent".into());
        body.insert(
            "DeliveryInfo".into(),
            serde_json::json!({"DeliveryType": "Email", "DeliveryTime": now.to_rfc3339()}),
        );
    }
}

/// A voided transaction keeps its lines but owes nothing: zero amounts, and QuickBooks'
/// note.
pub fn on_void(body: &mut Map<String, Value>) {
    for key in ["TotalAmt", "Balance"] {
        if body.contains_key(key) {
            body.insert(key.into(), number(0.0));
        }
    }
    body.insert("PrivateNote".into(), "Voided".into());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_new_customer_is_active_and_fully_named() {
        let mut body = map(json!({"DisplayName": "Amy's Bird Sanctuary"}));
        on_create("Customer", "58", &mut body, Timestamp(0));
        assert_eq!(body["Active"], true);
        assert_eq!(body["FullyQualifiedName"], "Amy's Bird Sanctuary");
        let mut inactive = map(json!({"DisplayName": "Gone", "Active": false}));
        on_create("Customer", "59", &mut inactive, Timestamp(0));
        assert_eq!(inactive["Active"], false, "a given Active is kept");
    }

    #[test]
    fn a_new_invoice_gets_its_total_balance_date_and_number() {
        let mut body = map(json!({"Line": [
            {"Amount": 100.0, "DetailType": "SalesItemLineDetail"},
            {"Amount": "50.25", "DetailType": "SalesItemLineDetail"},
            {"Amount": 150.25, "DetailType": "SubTotalLineDetail"},
        ]}));
        on_create(
            "Invoice",
            "7",
            &mut body,
            Timestamp::parse("2026-12-01T10:00:00Z").unwrap(),
        );
        assert_eq!(body["TotalAmt"], 150.25);
        assert_eq!(body["Balance"], 150.25);
        assert_eq!(body["TxnDate"], "2026-12-01");
        assert_eq!(body["DocNumber"], "1007");
        assert_eq!(body["EmailStatus"], "NotSet");

        // A client's DocNumber and TxnDate are kept; its totals are QuickBooks' to compute.
        let mut given = map(
            json!({"TotalAmt": 0, "Balance": 0, "DocNumber": "A-1", "TxnDate": "2026-01-02",
            "Line": [{"Amount": 10, "DetailType": "SalesItemLineDetail"}]}),
        );
        on_create("Invoice", "8", &mut given, Timestamp(0));
        assert_eq!(
            (given["TotalAmt"].clone(), given["Balance"].clone()),
            (json!(10.0), json!(10.0))
        );
        assert_eq!(
            (given["DocNumber"].clone(), given["TxnDate"].clone()),
            (json!("A-1"), json!("2026-01-02"))
        );
        // What python-quickbooks sends for a new Invoice: every field, empty.
        let mut empty = map(json!({"TotalAmt": "", "TxnDate": "", "DocNumber": null, "Line": []}));
        on_create("Invoice", "9", &mut empty, Timestamp(0));
        assert_eq!(
            (empty["TotalAmt"].clone(), empty["DocNumber"].clone()),
            (json!(0.0), json!("1009"))
        );
        assert_eq!(empty["TxnDate"], "1970-01-01");
        // A payment's amount is its own.
        let mut payment = map(json!({"TotalAmt": 25, "Line": []}));
        on_create("Payment", "1", &mut payment, Timestamp(0));
        assert_eq!(payment["TotalAmt"], 25);
    }

    #[test]
    fn send_and_void_change_what_clients_read() {
        let mut body = map(json!({"TotalAmt": 5, "Balance": 5}));
        on_send("Invoice", &mut body, Timestamp(0));
        assert_eq!(body["EmailStatus"], "EmailSent");
        on_void(&mut body);
        assert_eq!(
            (body["TotalAmt"].clone(), body["Balance"].clone()),
            (json!(0.0), json!(0.0))
        );
        let mut customer = map(json!({}));
        on_send("Customer", &mut customer, Timestamp(0));
        assert!(!customer.contains_key("EmailStatus"));
    }
}
