//! Signing an attempt: the app's stored verifier token and signing secret (cached for
//! [`SECRETS_TTL`], so a rotation takes effect within that time), opened with the
//! `secret-key`, and the attempt's headers made from them.

use super::SendError;
use crate::secrets::SecretBox;
use crate::signature::{attempt_headers, random_uuid, AttemptSigning, KeyPair};
use ledgerhook_domain::Timestamp;
use ledgerhook_store::model::{SecretName, StoredSecret};
use ledgerhook_store::notifications::Notification;
use ledgerhook_store::Store;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an app's stored secrets are reused between attempts.
const SECRETS_TTL: Duration = Duration::from_secs(1);

/// Makes the signed headers of attempts.
pub(super) struct Signer {
    store: Store,
    secrets: SecretBox,
    cache: Mutex<HashMap<String, (Instant, Vec<StoredSecret>)>>,
}

impl Signer {
    /// A signer reading secrets from `store`, opening them with `secrets`.
    pub(super) fn new(store: Store, secrets: SecretBox) -> Signer {
        Signer {
            store,
            secrets,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The app's stored verifier token and signing secret, cached for [`SECRETS_TTL`].
    async fn stored_secrets(&self, app_id: &str) -> Result<Vec<StoredSecret>, SendError> {
        if let Some((at, secrets)) = self.cache.lock().expect("cache").get(app_id) {
            if at.elapsed() < SECRETS_TTL {
                return Ok(secrets.clone());
            }
        }
        let mut secrets = Vec::with_capacity(2);
        for name in [SecretName::VerifierToken, SecretName::SigningSecret] {
            let stored = self
                .store
                .secret(app_id, name)
                .await?
                .ok_or_else(|| SendError::MissingSecret {
                    app_id: app_id.to_owned(),
                    name: name.as_str(),
                })?;
            secrets.push(stored);
        }
        self.cache
            .lock()
            .expect("cache")
            .insert(app_id.to_owned(), (Instant::now(), secrets.clone()));
        Ok(secrets)
    }

    /// Every header of one attempt to send `notification` now.
    pub(super) async fn headers(
        &self,
        notification: &Notification,
    ) -> Result<Vec<(&'static str, String)>, SendError> {
        let now = Timestamp::now();
        let mut pairs = Vec::with_capacity(2);
        for stored in self.stored_secrets(&notification.app_id).await? {
            let open = |v: &str| self.secrets.open(v).map_err(SendError::Sealed);
            let previous = stored.previous.as_deref().map(open).transpose()?;
            pairs.push(KeyPair::at(
                open(&stored.current)?,
                previous,
                stored.grace_until,
                now,
            ));
        }
        let transaction_id = random_uuid();
        let signing = AttemptSigning {
            notification_id: &notification.id,
            created_at: notification.created_at,
            format: notification.format,
            verifier_token: &pairs[0],
            signing_secret: &pairs[1],
            now,
            transaction_id: &transaction_id,
        };
        Ok(attempt_headers(&signing, &notification.payload)?)
    }
}
