//! The two signature schemes of a Ledgerhook notification (SPEC §5), in one place so
//! that the sender (`ledgerhook-delivery`) and the receiver SDK (`ledgerhook-receiver`)
//! cannot drift apart:
//!
//! - `intuit-signature`: standard base64 of HMAC-SHA256 over the exact body, keyed with
//!   the app's verifier token as UTF-8 bytes (what every QuickBooks sample verifies).
//! - Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256 of
//!   "{id}.{timestamp}.{body}">` keyed with the base64-decoded `whsec_` secret.
//!
//! Every comparison of a presented signature is constant time (`hmac`'s `verify_slice`,
//! `subtle` for other secrets).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC takes any key length")
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The `intuit-signature` of `body` under `verifier_token`.
pub fn intuit_signature(verifier_token: &str, body: &[u8]) -> String {
    let mut mac = mac(verifier_token.as_bytes());
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `presented` (an `intuit-signature` header value) is `body`'s signature under
/// `verifier_token`. Hash the bytes received, not a re-serialisation.
pub fn intuit_signature_matches(verifier_token: &str, body: &[u8], presented: &str) -> bool {
    let Ok(presented) = STANDARD.decode(presented.trim()) else {
        return false;
    };
    let mut mac = mac(verifier_token.as_bytes());
    mac.update(body);
    mac.verify_slice(&presented).is_ok()
}

/// A Standard Webhooks secret that is not `whsec_` followed by base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signing secret is not whsec_ followed by base64")]
pub struct BadSecret;

/// The key of a Standard Webhooks secret (`whsec_` + base64, the prefix optional).
#[derive(Clone)]
pub struct StandardKey(Vec<u8>);

impl std::fmt::Debug for StandardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StandardKey(redacted)")
    }
}

impl StandardKey {
    /// Decodes `secret`.
    pub fn parse(secret: &str) -> Result<StandardKey, BadSecret> {
        let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
        STANDARD.decode(encoded).map(StandardKey).map_err(|_| BadSecret)
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
        let mut mac = mac(&self.0);
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// One `v1,<base64>` signature of (id, timestamp, body).
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mac = self.mac(id, &timestamp.to_string(), body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    /// Whether any `v1,` entry of `signatures` (a `webhook-signature` header value:
    /// space-separated) signs (id, timestamp, body) under this key. `timestamp` is the
    /// header's text, signed as received.
    pub fn verifies(&self, id: &str, timestamp: &str, body: &[u8], signatures: &str) -> bool {
        signatures
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|s| STANDARD.decode(s).ok())
            .any(|presented| self.mac(id, timestamp, body).verify_slice(&presented).is_ok())
    }
}

/// One `v1,<base64>` signature of (id, timestamp, body) under the `whsec_` `secret`.
pub fn standard_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, BadSecret> {
    Ok(StandardKey::parse(secret)?.sign(id, timestamp, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intuit_signature_matches_the_reference_vectors() {
        assert_eq!(
            intuit_signature("verify_me", b"{\"stuff\":\"5\"}"),
            "nfPLN16u3vMvv08ghDs+dOkLuirEVDy5wAeG/lmM2OA="
        );
        let body = br#"{"eventNotifications":[{"realmId":"1185883450","dataChangeEvent":{"entities":[{"name":"Customer","id":"1","operation":"Create","lastUpdated":"2015-10-05T14:42:19-0700"}]}}]}"#;
        let signature = "JC2GUwciPmRBwEO7WvrRmKqu9tGOKL8FFallocTFi8Q=";
        assert_eq!(
            intuit_signature("b5771f19b12ddb4bcdb9f08bdc50bc63878a", body),
            signature
        );
        assert!(intuit_signature_matches(
            "b5771f19b12ddb4bcdb9f08bdc50bc63878a",
            body,
            signature
        ));
        assert!(!intuit_signature_matches("another", body, signature));
        assert!(!intuit_signature_matches(
            "b5771f19b12ddb4bcdb9f08bdc50bc63878a",
            body,
            "not base64!"
        ));
    }

    #[test]
    fn standard_webhooks_matches_the_specification_vector() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let (id, body) = ("msg_p5jXN8AQM9LWM0D4loKWxJek", br#"{"test": 2432232314}"#);
        let signature = standard_signature(secret, id, 1614265330, body).unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let key = StandardKey::parse(secret).unwrap();
        assert!(key.verifies(id, "1614265330", body, &format!("v1,AAAA {signature}")));
        assert!(!key.verifies(id, "1614265331", body, &signature));
        assert!(!key.verifies(id, "1614265330", b"{}", &signature));
        assert!(!key.verifies(id, "1614265330", body, "v2,abc"));
    }

    #[test]
    fn bad_secrets_are_refused_and_keys_are_not_printed() {
        assert_eq!(StandardKey::parse("whsec_***").unwrap_err(), BadSecret);
        let key = StandardKey::parse("whsec_c2VjcmV0").unwrap();
        assert_eq!(format!("{key:?}"), "StandardKey(redacted)");
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
