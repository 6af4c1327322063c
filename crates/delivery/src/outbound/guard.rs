//! The SSRF guard: which targets an attempt may reach.
//!
//! Names are resolved by the guard itself and the connection is made only to the
//! addresses it checked (the client's resolver *is* the guard), so a name that resolves
//! differently a second time (DNS rebinding) cannot slip through. Without
//! `allow-private-networks` a name with *any* non-public address is refused outright —
//! not filtered — so an answer that lists a public address first and a private one
//! second is refused, and no connection is attempted at all.

use ledgerhook_domain::net::is_public;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

/// Why the guard refused a target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `http://` without `allow-http`.
    #[error("http:// endpoints need the allow-http setting")]
    PlainHttp,
    /// A scheme other than http(s).
    #[error("scheme {0:?} is not supported")]
    Scheme(String),
    /// An address outside public unicast space.
    #[error("{host} is (or resolves to) the non-public address {ip}; delivering there needs allow-private-networks")]
    Private {
        /// The host of the URL.
        host: String,
        /// The offending address.
        ip: IpAddr,
    },
}

/// Resolves a host name to addresses (the system resolver, or a test's).
pub trait Lookup: Send + Sync + 'static {
    /// The addresses of `host`.
    fn lookup(&self, host: String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;
}

/// The operating system's resolver.
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// Checks resolved addresses against the policy.
pub fn check_addresses(host: &str, addrs: &[IpAddr], allow_private: bool) -> Result<(), Refusal> {
    if allow_private {
        return Ok(());
    }
    match addrs.iter().find(|ip| !is_public(**ip)) {
        Some(ip) => Err(Refusal::Private {
            host: host.to_owned(),
            ip: *ip,
        }),
        None => Ok(()),
    }
}

/// Checks a URL before any connection: the scheme, and the host when it is an IP
/// literal (URL parsing has already turned `127.1` and `2130706433` into `127.0.0.1`).
/// `localhost` and other names are checked by [`GuardedResolver`] when resolved.
pub fn check_url(url: &url::Url, allow_http: bool, allow_private: bool) -> Result<(), Refusal> {
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => return Err(Refusal::PlainHttp),
        other => return Err(Refusal::Scheme(other.to_owned())),
    }
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    match literal {
        Some(ip) => check_addresses(url.host_str().unwrap_or_default(), &[ip], allow_private),
        None => Ok(()),
    }
}

/// The resolver the outbound client uses: looks names up and refuses non-public
/// answers.
pub struct GuardedResolver {
    lookup: Arc<dyn Lookup>,
    allow_private: bool,
}

impl GuardedResolver {
    /// A guard over `lookup`.
    pub fn new(lookup: Arc<dyn Lookup>, allow_private: bool) -> GuardedResolver {
        GuardedResolver {
            lookup,
            allow_private,
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let lookup = self.lookup.clone();
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs = lookup.lookup(host.clone()).await?;
            check_addresses(&host, &addrs, allow_private)?;
            let addrs: Addrs = Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_refused(text: &str, allow_private: bool) -> bool {
        check_url(&url::Url::parse(text).unwrap(), true, allow_private).is_err()
    }

    #[test]
    fn ip_literals_are_refused_unless_private_networks_are_allowed() {
        for text in [
            "https://127.1/",
            "https://2130706433/",
            "https://0.0.0.0/",
            "https://[::]/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[fe80::1]/",
            "https://169.254.169.254/",
            "https://10.0.0.1/",
        ] {
            assert!(url_refused(text, false), "{text} passed");
            assert!(
                !url_refused(text, true),
                "{text} refused with allow-private-networks"
            );
        }
        assert!(!url_refused("https://93.184.216.34/", false));
    }

    #[test]
    fn any_private_answer_refuses_the_name() {
        let public: IpAddr = "93.184.216.34".parse().unwrap();
        let private: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(check_addresses("evil.example", &[public, private], false).is_err());
        assert!(check_addresses("evil.example", &[public, private], true).is_ok());
        assert!(check_addresses("good.example", &[public], false).is_ok());
    }

    #[test]
    fn scheme_rules() {
        let http = url::Url::parse("http://93.184.216.34/").unwrap();
        assert_eq!(check_url(&http, false, false), Err(Refusal::PlainHttp));
        assert!(check_url(&http, true, false).is_ok());
        assert!(check_url(&url::Url::parse("ftp://93.184.216.34/").unwrap(), true, true).is_err());
    }
}
