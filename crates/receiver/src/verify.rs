//! Signature verification, with the signing code the server signs with
//! (`ledgerhook-signing`).

use ledgerhook_signing::{intuit_signature_matches, StandardKey};

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

/// The `intuit-signature` of `body` under `verifier_token` (base64 HMAC-SHA256).
pub use ledgerhook_signing::intuit_signature;

/// Checks `intuit-signature` over the raw body against any of `verifier_tokens` (more
/// than one during a rotation). Hash the bytes received, not a re-serialisation.
pub fn intuit(verifier_tokens: &[&str], body: &[u8], signature: &str) -> Result<(), VerifyError> {
    if verifier_tokens
        .iter()
        .any(|key| intuit_signature_matches(key, body, signature))
    {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Standard Webhooks verification with one or more `whsec_…` secrets.
pub struct StandardWebhooks {
    keys: Vec<StandardKey>,
    tolerance_secs: i64,
}

impl StandardWebhooks {
    /// A verifier for `secrets`, with the customary five-minute timestamp tolerance.
    pub fn new<S: AsRef<str>>(secrets: &[S]) -> Result<StandardWebhooks, VerifyError> {
        let keys = secrets
            .iter()
            .map(|s| StandardKey::parse(s.as_ref()).map_err(|_| VerifyError::BadSecret))
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
        let timestamp_text = timestamp_text.trim();
        if self
            .keys
            .iter()
            .any(|key| key.verifies(id, timestamp_text, body, signature))
        {
            return Ok(());
        }
        Err(VerifyError::Mismatch)
    }
}
