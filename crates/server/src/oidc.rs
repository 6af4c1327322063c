//! OpenID Connect for the `openid` scope, as Intuit runs it: the token answer carries an
//! `id_token` (a JWT signed RS256) and `userinfo` answers for the access token.
//!
//! The signing key is made once per database — 2,048-bit RSA, on first use — and kept
//! in `meta` (sealed with `secret-key` when one is set), so every node signs with the
//! same key and `jwks_uri` stays true across restarts.

use crate::AppState;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ledgerhook_domain::Timestamp;
use ledgerhook_store::StoreError;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The `meta` key the signing key is kept under.
const META_KEY: &str = "oidc_rsa_private_key";

/// Why an `id_token` could not be made.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored key could not be opened (a changed or missing `secret-key`).
    #[error("the stored OpenID signing key cannot be opened")]
    Sealed(#[source] ledgerhook_delivery::secrets::SecretError),
    /// The stored key is not an RSA private key.
    #[error("the stored OpenID signing key cannot be read")]
    Pem(#[source] rsa::pkcs1::Error),
    /// A new key could not be made.
    #[error("making the OpenID signing key failed")]
    Generate(#[source] rsa::Error),
    /// The task making the key did not finish.
    #[error("making the OpenID signing key stopped")]
    Stopped(#[source] tokio::task::JoinError),
    /// The key vanished from the database after it was stored.
    #[error("the OpenID signing key is missing from meta")]
    Missing,
    /// Making the key or the signature failed.
    #[error("signing the id_token failed")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// The key that signs `id_token`s, with its public half as JWK parts.
pub struct SigningKey {
    encoding: EncodingKey,
    /// `kid`: names the key in `jwks_uri` and in each token's header.
    pub kid: String,
    /// The modulus, base64url.
    pub n: String,
    /// The exponent, base64url.
    pub e: String,
}

fn base64url(bytes: &[u8]) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    fn from_pem(pem: &str) -> Result<SigningKey, OidcError> {
        let private = RsaPrivateKey::from_pkcs1_pem(pem).map_err(OidcError::Pem)?;
        let n = private.n().to_bytes_be();
        Ok(SigningKey {
            encoding: EncodingKey::from_rsa_pem(pem.as_bytes())?,
            kid: hex::encode(&Sha256::digest(&n)[..8]),
            n: base64url(&n),
            e: base64url(&private.e().to_bytes_be()),
        })
    }

    /// A new 2,048-bit key as PKCS#1 PEM (seconds of CPU: run off the async threads).
    async fn generate() -> Result<String, OidcError> {
        tokio::task::spawn_blocking(|| {
            let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(OidcError::Generate)?;
            Ok(key
                .to_pkcs1_pem(LineEnding::LF)
                .map_err(OidcError::Pem)?
                .to_string())
        })
        .await
        .map_err(OidcError::Stopped)?
    }

    /// This server's key: the one in the database, made and stored first if there is
    /// none (the first node to store one wins; the others read it back).
    pub async fn get(state: &AppState) -> Result<Arc<SigningKey>, OidcError> {
        let load = || async {
            if state.store.meta(META_KEY).await?.is_none() {
                let pem = SigningKey::generate().await?;
                state.store.init_meta(META_KEY, &state.secrets.seal(&pem)).await?;
            }
            let stored = state.store.meta(META_KEY).await?.ok_or(OidcError::Missing)?;
            let pem = state.secrets.open(&stored).map_err(OidcError::Sealed)?;
            Ok(Arc::new(SigningKey::from_pem(&pem)?))
        };
        state.oidc_key.get_or_try_init(load).await.cloned()
    }
}

/// The claims of an `id_token`, as Intuit's.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: [&'a str; 1],
    sub: String,
    realmid: &'a str,
    iat: i64,
    auth_time: i64,
    exp: i64,
}

/// The user behind a realm's connection: a stable id made from the realm (there is one
/// user per sandbox company).
pub fn subject(realm_id: &str) -> String {
    let digest = Sha256::digest(format!("ledgerhook-user:{realm_id}"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    ledgerhook_delivery::signature::uuid_text(bytes)
}

/// An `id_token` for `client_id` on `realm_id`, from `issuer`, valid one hour.
pub fn id_token(
    key: &SigningKey,
    issuer: &str,
    client_id: &str,
    realm_id: &str,
    now: Timestamp,
) -> Result<String, OidcError> {
    let iat = now.millis() / 1000;
    let claims = Claims {
        iss: issuer,
        aud: [client_id],
        sub: subject(realm_id),
        realmid: realm_id,
        iat,
        auth_time: iat,
        exp: iat + 3600,
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.kid.clone());
    Ok(jsonwebtoken::encode(&header, &claims, &key.encoding)?)
}
