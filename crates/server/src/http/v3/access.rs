//! The `/v3` credential: an OAuth access token for exactly the realm in the path.

use super::Fault;
use crate::http::principal::{bearer_token, resolve};
use crate::http::Principal;
use crate::AppState;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use std::collections::HashMap;

/// A caller holding an access token for the path's realm.
#[derive(Clone, Debug)]
pub struct RealmAccess {
    /// The app the token was issued to.
    pub app_id: String,
    /// The realm of the path (and of the token).
    pub realm_id: String,
}

impl FromRequestParts<AppState> for RealmAccess {
    type Rejection = Fault;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).map_err(|e| Fault::authentication(e.message))?;
        let principal = resolve(state, token).await?;
        let Some(Principal::Access { app_id, realm_id }) = principal else {
            return Err(Fault::authentication(
                "a valid OAuth 2.0 access token is required",
            ));
        };
        if let Err(wait) = state
            .v3_throttle
            .check(&app_id, &realm_id, std::time::Instant::now())
        {
            return Err(Fault::throttled(format!(
                "Request rate limit exceeded (v3-rate-limit); try again in {} ms",
                wait.as_millis()
            )));
        }
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| Fault::validation(e.to_string()))?;
        let path_realm = params.get("realm").cloned().unwrap_or_default();
        if path_realm != realm_id {
            return Err(Fault::authorization(format!(
                "the access token is not valid for company {path_realm}"
            )));
        }
        Ok(RealmAccess { app_id, realm_id })
    }
}
