//! Encryption at rest of the secrets the server must read back to sign with
//! (`verifier_token`, `signing_secret`).
//!
//! With `secret-key` set, values are sealed with AES-256-GCM under SHA-256 of the key and
//! stored as `enc1:<base64(nonce ‖ ciphertext)>`; without it they are stored as
//! `plain:<value>`. The prefix lets a server that gains a key later still read the values
//! written before it.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

const PLAIN: &str = "plain:";
const SEALED: &str = "enc1:";

/// Why a stored secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The value is encrypted but no `secret-key` is configured.
    #[error("a stored signing secret is encrypted but no secret-key is set")]
    NoKey,
    /// The configured key does not decrypt the value (wrong key or corrupted value).
    #[error("the secret-key does not decrypt a stored signing secret (wrong key?)")]
    WrongKey,
    /// The stored value has no known prefix.
    #[error("a stored signing secret has an unknown format")]
    Format,
}

/// Seals and opens stored secrets with the optional `secret-key`.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Option<Aes256Gcm>,
}

impl SecretBox {
    /// A box for `secret_key` (`None`: values are stored in the clear).
    pub fn new(secret_key: Option<&str>) -> SecretBox {
        let cipher = secret_key.map(|key| {
            let digest = Sha256::digest(key.as_bytes());
            Aes256Gcm::new_from_slice(&digest).expect("SHA-256 output is a valid AES-256 key")
        });
        SecretBox { cipher }
    }

    /// The stored form of `value`.
    pub fn seal(&self, value: &str) -> String {
        let Some(cipher) = &self.cipher else {
            return format!("{PLAIN}{value}");
        };
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ciphertext = cipher
            .encrypt(Nonce::from_slice(&nonce), value.as_bytes())
            .expect("AES-GCM encryption of a short value cannot fail");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        format!("{SEALED}{}", STANDARD.encode(sealed))
    }

    /// The value of a stored form.
    pub fn open(&self, stored: &str) -> Result<String, SecretError> {
        if let Some(value) = stored.strip_prefix(PLAIN) {
            return Ok(value.to_owned());
        }
        let encoded = stored.strip_prefix(SEALED).ok_or(SecretError::Format)?;
        let cipher = self.cipher.as_ref().ok_or(SecretError::NoKey)?;
        let sealed = STANDARD.decode(encoded).map_err(|_| SecretError::Format)?;
        if sealed.len() < 12 {
            return Err(SecretError::Format);
        }
        let (nonce, ciphertext) = sealed.split_at(12);
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| SecretError::WrongKey)?;
        String::from_utf8(plain).map_err(|_| SecretError::Format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_key() {
        let with_key = SecretBox::new(Some("correct horse battery staple"));
        let stored = with_key.seal("whsec_abc");
        assert!(stored.starts_with(SEALED) && !stored.contains("whsec_abc"));
        assert_eq!(with_key.open(&stored).unwrap(), "whsec_abc");
        assert!(matches!(
            SecretBox::new(None).open(&stored),
            Err(SecretError::NoKey)
        ));
        assert!(matches!(
            SecretBox::new(Some("other")).open(&stored),
            Err(SecretError::WrongKey)
        ));
    }

    #[test]
    fn plain_values_stay_readable_after_a_key_is_added() {
        let stored = SecretBox::new(None).seal("token");
        assert_eq!(stored, "plain:token");
        assert_eq!(SecretBox::new(Some("k")).open(&stored).unwrap(), "token");
    }
}
