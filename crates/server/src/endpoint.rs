//! Validation of webhook endpoint URLs (SPEC §6 and §8): scheme, credentials, and the
//! SSRF policy for the host — IP literals (including numeric forms such as `127.1` and
//! `2130706433`, which URL parsing normalises), `localhost`, and names that resolve to a
//! non-public address are refused unless `allow-private-networks`; a name that does not
//! resolve is accepted (it fails at delivery).

use ledgerhook_delivery::outbound::guard::Lookup;
use ledgerhook_domain::net::is_public;
use std::net::IpAddr;
use std::time::Duration;
use url::{Host, Url};

/// How long a name may take to resolve during validation before it counts as
/// unresolvable.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The rules that apply.
#[derive(Clone, Copy, Debug)]
pub struct EndpointPolicy {
    /// `allow-http`.
    pub allow_http: bool,
    /// `allow-private-networks`.
    pub allow_private_networks: bool,
}

/// Checks an endpoint URL; the error says what is wrong.
pub async fn validate(text: &str, policy: EndpointPolicy, lookup: &dyn Lookup) -> Result<Url, String> {
    if text.len() > 2048 {
        return Err("url is longer than 2048 characters".to_owned());
    }
    let url = Url::parse(text).map_err(|e| format!("url {text:?} is not a valid absolute URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        "http" => return Err("url must use https:// (http:// needs the allow-http setting)".to_owned()),
        other => return Err(format!("url scheme \"{other}\" is not supported; use https://")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("url must not contain a user name or password".to_owned());
    }
    if policy.allow_private_networks {
        return Ok(url);
    }
    match url.host() {
        None => Err("url has no host".to_owned()),
        Some(Host::Ipv4(ip)) => check_ip(&url, IpAddr::V4(ip)).map(|()| url.clone()),
        Some(Host::Ipv6(ip)) => check_ip(&url, IpAddr::V6(ip)).map(|()| url.clone()),
        Some(Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                return Err(private_message(&url, "is a loopback name"));
            }
            for ip in resolve(lookup, &name).await {
                if !is_public(ip) {
                    return Err(private_message(
                        &url,
                        &format!("resolves to the non-public address {ip}"),
                    ));
                }
            }
            Ok(url)
        }
    }
}

fn check_ip(url: &Url, ip: IpAddr) -> Result<(), String> {
    if is_public(ip) {
        Ok(())
    } else {
        Err(private_message(url, &format!("is the non-public address {ip}")))
    }
}

fn private_message(url: &Url, why: &str) -> String {
    format!(
        "url host {} {why}; deliveries to loopback, private and link-local networks need the allow-private-networks setting",
        url.host_str().unwrap_or_default()
    )
}

/// The addresses of `name`, or none if it does not resolve in time.
async fn resolve(lookup: &dyn Lookup, name: &str) -> Vec<IpAddr> {
    match tokio::time::timeout(RESOLVE_TIMEOUT, lookup.lookup(name.to_owned())).await {
        Ok(Ok(addrs)) => addrs,
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers no name: tests make no DNS queries.
    struct NoDns;

    impl Lookup for NoDns {
        fn lookup(
            &self,
            host: String,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>
        {
            Box::pin(async move { Err(std::io::Error::new(std::io::ErrorKind::NotFound, host)) })
        }
    }

    async fn validate(text: &str, policy: EndpointPolicy) -> Result<Url, String> {
        super::validate(text, policy, &NoDns).await
    }

    const STRICT: EndpointPolicy = EndpointPolicy {
        allow_http: false,
        allow_private_networks: false,
    };
    const OPEN: EndpointPolicy = EndpointPolicy {
        allow_http: true,
        allow_private_networks: true,
    };

    #[tokio::test]
    async fn refuses_every_private_form_unless_allowed() {
        for url in [
            "https://localhost/hook",
            "https://LOCALHOST./hook",
            "https://api.localhost/hook",
            "https://127.0.0.1/hook",
            "https://127.1/hook",
            "https://2130706433/hook",
            "https://0x7f000001/hook",
            "https://0.0.0.0/hook",
            "https://[::]/hook",
            "https://[::1]/hook",
            "https://[::ffff:127.0.0.1]/hook",
            "https://[fe80::1]/hook",
            "https://169.254.169.254/latest",
            "https://10.0.0.1/hook",
            "https://192.168.0.10/hook",
            "https://172.16.5.4/hook",
        ] {
            let err = validate(url, STRICT).await.expect_err(url);
            assert!(err.contains("allow-private-networks"), "{url}: {err}");
            assert!(
                validate(url, OPEN).await.is_ok(),
                "{url} refused with allow-private-networks"
            );
        }
    }

    #[tokio::test]
    async fn scheme_and_shape_rules() {
        assert!(validate("http://8.8.8.8/hook", STRICT)
            .await
            .unwrap_err()
            .contains("allow-http"));
        assert!(validate("http://8.8.8.8/hook", OPEN).await.is_ok());
        assert!(validate("ftp://8.8.8.8/x", OPEN)
            .await
            .unwrap_err()
            .contains("ftp"));
        assert!(validate("not a url", OPEN)
            .await
            .unwrap_err()
            .contains("not a valid absolute URL"));
        assert!(validate("https://user:pw@8.8.8.8/", OPEN)
            .await
            .unwrap_err()
            .contains("password"));
        assert!(validate("https://8.8.8.8/hook", STRICT).await.is_ok());
    }

    #[tokio::test]
    async fn names_that_do_not_resolve_are_accepted() {
        assert!(validate("https://no-such-host.invalid/hook", STRICT)
            .await
            .is_ok());
    }
}
