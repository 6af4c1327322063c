//! Credentials: making tokens, storing only their hashes, and deciding who a bearer
//! token belongs to.
//!
//! Every token is 256 random bits, so a plain SHA-256 is a sufficient hash to store (no
//! password stretching needed) and lets a lookup be one indexed equality.

use ledgerhook_store::{Store, StoreError};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The meta key under which the operator token's hash is kept.
const OPERATOR_TOKEN_KEY: &str = "operator_token_sha256";

/// A new random secret: `prefix` followed by 64 hex digits.
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// The stored form of a token: lower-case hex SHA-256.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compares two byte strings in time independent of where they differ.
pub use ledgerhook_signing::constant_time_eq;

/// Makes sure an operator token exists.
///
/// With `configured` (from `LEDGERHOOK_ADMIN_TOKEN`) its hash replaces any stored one and
/// nothing is returned. Otherwise, on the very first start, a token is made, its hash
/// stored, and the token returned so that the caller prints it once; later starts (and
/// other nodes that lose the race to store one) return `None`.
pub async fn ensure_operator_token(
    store: &Store,
    configured: Option<&str>,
) -> Result<Option<String>, StoreError> {
    if let Some(token) = configured {
        store.set_meta(OPERATOR_TOKEN_KEY, &hash_token(token)).await?;
        return Ok(None);
    }
    if store.meta(OPERATOR_TOKEN_KEY).await?.is_some() {
        return Ok(None);
    }
    let token = new_secret("lho_");
    let created = store.init_meta(OPERATOR_TOKEN_KEY, &hash_token(&token)).await?;
    Ok(created.then_some(token))
}

/// How long the stored operator token hash is reused before it is read again (another
/// node started with a new `LEDGERHOOK_ADMIN_TOKEN` is seen within this time).
const OPERATOR_HASH_TTL: Duration = Duration::from_secs(1);

/// The operator token's hash, read from the store at most once per
/// [`OPERATOR_HASH_TTL`]: every authenticated request checks it first, so it must not
/// cost a database read each time.
#[derive(Default)]
pub struct OperatorToken {
    cached: Mutex<Option<(Instant, Option<String>)>>,
}

impl OperatorToken {
    /// Whether `token` is the operator token.
    pub async fn matches(&self, store: &Store, token: &str) -> Result<bool, StoreError> {
        let fresh = self
            .cached
            .lock()
            .expect("operator token cache")
            .as_ref()
            .filter(|(at, _)| at.elapsed() < OPERATOR_HASH_TTL)
            .map(|(_, hash)| hash.clone());
        let stored = match fresh {
            Some(hash) => hash,
            None => {
                let hash = store.meta(OPERATOR_TOKEN_KEY).await?;
                *self.cached.lock().expect("operator token cache") = Some((Instant::now(), hash.clone()));
                hash
            }
        };
        Ok(stored.is_some_and(|s| constant_time_eq(s.as_bytes(), hash_token(token).as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_hash_stably() {
        let a = new_secret("lho_");
        let b = new_secret("lho_");
        assert!(a.starts_with("lho_") && a.len() == 68);
        assert_ne!(a, b);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}
