//! The headers of an attempt (SPEC §5): both signatures (made by `ledgerhook-signing`,
//! which the receiver SDK verifies with), several space-separated during a rotation's
//! grace period, and QuickBooks' and Standard Webhooks' other headers.

use ledgerhook_domain::{PayloadFormat, Timestamp};
pub use ledgerhook_signing::{intuit_signature, standard_signature, BadSecret, StandardKey};

/// A secret pair during (or outside) a rotation's grace period, in clear text.
#[derive(Clone, Debug)]
pub struct KeyPair {
    /// The newest secret.
    pub current: String,
    /// The secret before the last rotation, while its grace period lasts.
    pub previous: Option<String>,
}

impl KeyPair {
    /// The pair in force at `now`: `previous` only before `grace_until`.
    pub fn at(
        current: String,
        previous: Option<String>,
        grace_until: Option<Timestamp>,
        now: Timestamp,
    ) -> KeyPair {
        let in_grace = grace_until.is_some_and(|until| now < until);
        KeyPair {
            current,
            previous: previous.filter(|_| in_grace),
        }
    }
}

/// What an attempt's headers are made of.
pub struct AttemptSigning<'a> {
    /// The notification id (`webhook-id`, stable across retries).
    pub notification_id: &'a str,
    /// When the notification was created (`intuit-created-time`).
    pub created_at: Timestamp,
    /// The body format.
    pub format: PayloadFormat,
    /// The verifier tokens in force.
    pub verifier_token: &'a KeyPair,
    /// The signing secrets in force.
    pub signing_secret: &'a KeyPair,
    /// The attempt's time (`webhook-timestamp`).
    pub now: Timestamp,
    /// `intuit-t-id` of this attempt.
    pub transaction_id: &'a str,
}

/// Every header of an attempt, names in lower case.
pub fn attempt_headers(
    signing: &AttemptSigning<'_>,
    body: &[u8],
) -> Result<Vec<(&'static str, String)>, BadSecret> {
    let (content_type, schema) = match signing.format {
        PayloadFormat::Legacy => ("application/json; charset=utf-8", "0.1"),
        PayloadFormat::CloudEvents => ("application/cloudevents-batch+json; charset=utf-8", "2.0"),
    };
    // QuickBooks verifiers accept one value: the old token until the grace ends.
    let intuit_key = signing
        .verifier_token
        .previous
        .as_deref()
        .unwrap_or(&signing.verifier_token.current);
    let timestamp = signing.now.millis().div_euclid(1000);
    let mut signatures = vec![standard_signature(
        &signing.signing_secret.current,
        signing.notification_id,
        timestamp,
        body,
    )?];
    if let Some(previous) = &signing.signing_secret.previous {
        signatures.push(standard_signature(
            previous,
            signing.notification_id,
            timestamp,
            body,
        )?);
    }
    let mut headers = vec![
        ("content-type", content_type.to_owned()),
        ("user-agent", format!("ledgerhook/{}", env!("CARGO_PKG_VERSION"))),
        ("intuit-signature", intuit_signature(intuit_key, body)),
        ("intuit-t-id", signing.transaction_id.to_owned()),
        ("intuit-created-time", signing.created_at.to_rfc3339()),
        ("intuit-notification-schema-version", schema.to_owned()),
        ("webhook-id", signing.notification_id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signatures.join(" ")),
    ];
    if signing.format == PayloadFormat::CloudEvents {
        headers.push(("intuit-signature-algorithm", "HMAC-SHA256".to_owned()));
    }
    Ok(headers)
}

/// 16 bytes in the UUID text form `8-4-4-4-12` (lower-case hex).
pub fn uuid_text(bytes: [u8; 16]) -> String {
    let h = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A random UUID (version 4 layout) for `intuit-t-id`.
pub fn random_uuid() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    uuid_text(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signing<'a>(format: PayloadFormat, verifier: &'a KeyPair, secret: &'a KeyPair) -> AttemptSigning<'a> {
        AttemptSigning {
            notification_id: "ntf_1",
            created_at: Timestamp(1_700_000_000_000),
            format,
            verifier_token: verifier,
            signing_secret: secret,
            now: Timestamp(1_700_000_123_456),
            transaction_id: "t",
        }
    }

    fn header<'a>(headers: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn rotation_grace_signs_with_both_secrets_and_the_old_token() {
        let now = Timestamp(1_700_000_123_456);
        let verifier = KeyPair::at(
            "new-token".into(),
            Some("old-token".into()),
            Some(Timestamp(now.0 + 1)),
            now,
        );
        let secret = KeyPair::at(
            "whsec_bmV3".into(),
            Some("whsec_b2xk".into()),
            Some(Timestamp(now.0 + 1)),
            now,
        );
        let headers = attempt_headers(&signing(PayloadFormat::Legacy, &verifier, &secret), b"{}").unwrap();
        assert_eq!(
            header(&headers, "intuit-signature").unwrap(),
            intuit_signature("old-token", b"{}")
        );
        let both = header(&headers, "webhook-signature").unwrap();
        assert_eq!(both.split(' ').count(), 2);
        assert!(both.contains(&standard_signature("whsec_bmV3", "ntf_1", 1_700_000_123, b"{}").unwrap()));
        assert!(both.contains(&standard_signature("whsec_b2xk", "ntf_1", 1_700_000_123, b"{}").unwrap()));

        // After the grace only the new ones.
        let verifier = KeyPair::at("new-token".into(), Some("old-token".into()), Some(now), now);
        let secret = KeyPair::at("whsec_bmV3".into(), Some("whsec_b2xk".into()), Some(now), now);
        let headers = attempt_headers(&signing(PayloadFormat::Legacy, &verifier, &secret), b"{}").unwrap();
        assert_eq!(
            header(&headers, "intuit-signature").unwrap(),
            intuit_signature("new-token", b"{}")
        );
        assert_eq!(
            header(&headers, "webhook-signature").unwrap().split(' ').count(),
            1
        );
    }

    #[test]
    fn headers_follow_the_format() {
        let pair = KeyPair::at("t".into(), None, None, Timestamp(0));
        let secret = KeyPair::at("whsec_c2VjcmV0".into(), None, None, Timestamp(0));
        let legacy = attempt_headers(&signing(PayloadFormat::Legacy, &pair, &secret), b"{}").unwrap();
        assert_eq!(
            header(&legacy, "content-type"),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(header(&legacy, "intuit-notification-schema-version"), Some("0.1"));
        assert_eq!(header(&legacy, "intuit-signature-algorithm"), None);
        assert_eq!(header(&legacy, "webhook-timestamp"), Some("1700000123"));
        let cloud = attempt_headers(&signing(PayloadFormat::CloudEvents, &pair, &secret), b"[]").unwrap();
        assert_eq!(
            header(&cloud, "content-type"),
            Some("application/cloudevents-batch+json; charset=utf-8")
        );
        assert_eq!(header(&cloud, "intuit-notification-schema-version"), Some("2.0"));
        assert_eq!(header(&cloud, "intuit-signature-algorithm"), Some("HMAC-SHA256"));
        assert!(header(&cloud, "user-agent").unwrap().starts_with("ledgerhook/"));
    }

    #[test]
    fn uuids_are_well_formed() {
        let id = random_uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }
}
