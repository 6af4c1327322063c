//! Signing an attempt: the app's stored verifier token and signing secret (cached for
//! [`SECRETS_TTL`], so a rotation takes effect within that time), opened with the
//! `secret-key`, and the attempt's headers made from them. When an app's cached secrets
//! expire, one of its attempts reads them again while the others wait for that read:
//! with hundreds of attempts in flight, each reading them at once took every database
//! connection every second.

use super::SendError;
use crate::secrets::SecretBox;
use crate::signature::{attempt_headers, random_uuid, AttemptSigning, KeyPair};
use ledgerhook_domain::Timestamp;
use ledgerhook_store::model::{SecretName, StoredSecret};
use ledgerhook_store::notifications::Notification;
use ledgerhook_store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an app's stored secrets are reused between attempts.
const SECRETS_TTL: Duration = Duration::from_secs(1);

/// Makes the signed headers of attempts.
pub(super) struct Signer {
    store: Store,
    secrets: SecretBox,
    cache: Mutex<HashMap<String, (Instant, Vec<StoredSecret>)>>,
    /// Per app, held by the one attempt reading its secrets from the store.
    reading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Reads from the store, counted for the tests.
    #[cfg(test)]
    reads: std::sync::atomic::AtomicUsize,
}

impl Signer {
    /// A signer reading secrets from `store`, opening them with `secrets`.
    pub(super) fn new(store: Store, secrets: SecretBox) -> Signer {
        Signer {
            store,
            secrets,
            cache: Mutex::new(HashMap::new()),
            reading: Mutex::new(HashMap::new()),
            #[cfg(test)]
            reads: Default::default(),
        }
    }

    /// The app's cached secrets, unless older than [`SECRETS_TTL`].
    fn cached(&self, app_id: &str) -> Option<Vec<StoredSecret>> {
        let cache = self.cache.lock().expect("cache");
        let (at, secrets) = cache.get(app_id)?;
        (at.elapsed() < SECRETS_TTL).then(|| secrets.clone())
    }

    /// The app's stored verifier token and signing secret, cached for [`SECRETS_TTL`].
    async fn stored_secrets(&self, app_id: &str) -> Result<Vec<StoredSecret>, SendError> {
        if let Some(secrets) = self.cached(app_id) {
            return Ok(secrets);
        }
        let gate = self
            .reading
            .lock()
            .expect("reading")
            .entry(app_id.to_owned())
            .or_default()
            .clone();
        let _turn = gate.lock().await;
        // Read meanwhile by the attempt that held the turn before this one?
        if let Some(secrets) = self.cached(app_id) {
            return Ok(secrets);
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
        #[cfg(test)]
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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

#[cfg(test)]
mod tests {
    use super::*;
    use ledgerhook_store::model::App;
    use ledgerhook_store::StoreOptions;
    use ledgerhook_testkit::TestDatabase;
    use std::sync::atomic::Ordering;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_attempts_of_one_app_read_its_secrets_once() {
        let db = TestDatabase::sqlite();
        let store = Store::open(&StoreOptions::new(db.url.parse().expect("test database URL")))
            .await
            .expect("open store");
        let sealing = SecretBox::new(None);
        let app = App {
            id: "app_1".into(),
            name: "Signer test".into(),
            client_id: "client_1".into(),
            client_secret_hash: "hash_1".into(),
            api_key_hash: "key_1".into(),
            redirect_uris: Vec::new(),
            created_at: Timestamp::now(),
        };
        let (token, secret) = (sealing.seal("verifier"), sealing.seal("whsec_bmV3"));
        store.insert_app(&app, &token, &secret).await.expect("insert app");
        let signer = Arc::new(Signer::new(store, sealing));

        let attempts: Vec<_> = (0..64)
            .map(|_| {
                let signer = signer.clone();
                tokio::spawn(async move { signer.stored_secrets("app_1").await })
            })
            .collect();
        for attempt in attempts {
            let secrets = attempt.await.expect("task").expect("secrets");
            let values: Vec<&str> = secrets.iter().map(|s| s.current.as_str()).collect();
            assert_eq!(values, [token.as_str(), secret.as_str()]);
        }
        assert_eq!(signer.reads.load(Ordering::SeqCst), 1, "one read for 64 attempts");

        tokio::time::sleep(SECRETS_TTL + Duration::from_millis(50)).await;
        signer.stored_secrets("app_1").await.expect("secrets");
        assert_eq!(signer.reads.load(Ordering::SeqCst), 2, "read again once expired");
    }
}
