//! Signature verification.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a notification was not accepted as authentic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A required header is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// No signature matches any key.
    #[error("no signature matches")]
    Mismatch,
    /// `webhook-timestamp` is not a number, or too far from now.
    #[error("webhook-timestamp is missing, malformed or outside the tolerance")]
    Timestamp,
    /// A `whsec_` secret is not base64.
    #[error("signing secret is not whsec_ followed by base64")]
    BadSecret,
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `intuit-signature` of `body` under `verifier_token` (base64 HMAC-SHA256).
pub fn intuit_signature(verifier_token: &str, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(verifier_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks `intuit-signature` over the raw body against any of `verifier_tokens` (more
/// than one during a rotation). Hash the bytes received, not a re-serialisation.
pub fn intuit(verifier_tokens: &[&str], body: &[u8], signature: &str) -> Result<(), VerifyError> {
    let presented = signature.trim().as_bytes();
    if verifier_tokens
        .iter()
        .any(|key| constant_time_eq(intuit_signature(key, body).as_bytes(), presented))
    {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Standard Webhooks verification with one or more `whsec_…` secrets.
pub struct StandardWebhooks {
    keys: Vec<Vec<u8>>,
    tolerance_secs: i64,
}

impl StandardWebhooks {
    /// A verifier for `secrets`, with the customary five-minute timestamp tolerance.
    pub fn new<S: AsRef<str>>(secrets: &[S]) -> Result<StandardWebhooks, VerifyError> {
        let keys = secrets
            .iter()
            .map(|s| {
                let s = s.as_ref();
                STANDARD
                    .decode(s.strip_prefix("whsec_").unwrap_or(s))
                    .map_err(|_| VerifyError::BadSecret)
            })
            .collect::<Result<_, _>>()?;
        Ok(StandardWebhooks {
            keys,
            tolerance_secs: 300,
        })
    }

    /// Changes the timestamp tolerance.
    pub fn tolerance(mut self, seconds: i64) -> StandardWebhooks {
        self.tolerance_secs = seconds;
        self
    }

    /// Checks the `webhook-id`, `webhook-timestamp` and `webhook-signature` header values
    /// against the raw body, at `now` (Unix seconds).
    pub fn verify(
        &self,
        id: Option<&str>,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        let id = id.ok_or(VerifyError::MissingHeader("webhook-id"))?;
        let timestamp_text = timestamp.ok_or(VerifyError::MissingHeader("webhook-timestamp"))?;
        let signature = signature.ok_or(VerifyError::MissingHeader("webhook-signature"))?;
        let timestamp: i64 = timestamp_text
            .trim()
            .parse()
            .map_err(|_| VerifyError::Timestamp)?;
        if (now - timestamp).abs() > self.tolerance_secs {
            return Err(VerifyError::Timestamp);
        }
        let presented: Vec<&str> = signature
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .collect();
        for key in &self.keys {
            let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp_text.trim().as_bytes());
            mac.update(b".");
            mac.update(body);
            let expected = STANDARD.encode(mac.finalize().into_bytes());
            if presented
                .iter()
                .any(|p| constant_time_eq(expected.as_bytes(), p.as_bytes()))
            {
                return Ok(());
            }
        }
        Err(VerifyError::Mismatch)
    }
}
