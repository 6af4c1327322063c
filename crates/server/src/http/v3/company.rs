//! The two entities every QuickBooks company has from the start: `CompanyInfo` (`GET
//! companyinfo/{realm}`, which most apps call right after connecting) and `Preferences`
//! (`GET preferences`). Each is made on first use from the realm (no change event), then
//! read and updated like any entity, with `SyncToken`.

use super::ops::Realm;
use super::Fault;
use ledgerhook_domain::entity::{self, EntitySpec};
use serde_json::json;

/// The `Id` QuickBooks gives both singletons.
pub const SINGLETON_ID: &str = "1";

/// `CompanyInfo` or `Preferences`, if `spec` is one of them.
pub fn is_singleton(spec: &EntitySpec) -> bool {
    spec.name == entity::COMPANY_INFO.name || spec.name == "Preferences"
}

/// Makes the realm's `CompanyInfo` and `Preferences` if they do not exist yet (both are
/// made together, so one read tells).
pub async fn ensure(realm: Realm<'_>) -> Result<(), Fault> {
    let store = &realm.state.store;
    if store
        .entity_state(realm.id, entity::COMPANY_INFO.name, SINGLETON_ID)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let Some(company) = store.realm(realm.id).await? else {
        return Err(Fault::object_not_found(format!(
            "company {} does not exist",
            realm.id
        )));
    };
    let info = json!({
        "CompanyName": company.name,
        "LegalName": company.name,
        "Country": "US",
        "SupportedLanguages": "en",
        "FiscalYearStartMonth": "January",
        "CompanyStartDate": company.created_at.to_rfc3339()[..10],
        "CompanyAddr": {"Id": "1", "Line1": "", "City": "", "Country": "US"},
        "Email": {"Address": ""},
        "NameValue": [
            {"Name": "OfferingSku", "Value": "QuickBooks Online Plus"},
            {"Name": "NeoEnabled", "Value": "true"},
        ],
    });
    let preferences = json!({
        "AccountingInfoPrefs": {"TrackDepartments": false, "ClassTrackingPerTxn": false},
        "SalesFormsPrefs": {"CustomTxnNumbers": false, "AllowDeposit": true, "AllowDiscount": true},
        "CurrencyPrefs": {"MultiCurrencyEnabled": false, "HomeCurrency": {"value": "USD"}},
        "TaxPrefs": {"UsingSalesTax": false},
    });
    for (name, body) in [(entity::COMPANY_INFO.name, info), ("Preferences", preferences)] {
        realm
            .state
            .store
            .seed_entity(
                realm.id,
                name,
                SINGLETON_ID,
                &body.to_string(),
                company.created_at,
            )
            .await?;
    }
    Ok(())
}
