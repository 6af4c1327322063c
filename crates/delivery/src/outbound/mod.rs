//! The outbound client: the only way the server makes a request to the outside.
//!
//! rustls with full chain verification against the system roots plus `ca-file`
//! (self-signed leaves fail); redirects never followed; the `allow-http` gate; the SSRF
//! [`guard`]; `delivery-timeout` bounding the whole attempt (connect, TLS, headers,
//! body); keep-alive connections reused per endpoint. Every attempt ends in an
//! [`Attempt`] record, whatever happened.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // the one outbound client (clippy.toml)

pub mod guard;

use guard::{check_url, GuardedResolver, Lookup, Refusal, SystemLookup};
use ledgerhook_domain::Timestamp;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How much of a response body an attempt keeps.
pub const KEPT_BODY_BYTES: usize = 1024;
/// How much of a response body is read (so the connection can be reused) before the
/// rest is abandoned.
const DRAINED_BODY_BYTES: usize = 64 * 1024;

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A 2xx answer in time.
    Success,
    /// Another status.
    Http,
    /// No complete answer within `delivery-timeout`.
    Timeout,
    /// The connection could not be made (refused, unreachable, no such host, reset).
    Connect,
    /// The TLS handshake failed (untrusted or invalid certificate, …).
    Tls,
    /// A 3xx answer (redirects are never followed).
    Redirect,
    /// The SSRF guard or the `allow-http` gate refused the target.
    Refused,
}

impl Outcome {
    /// The name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Http => "http",
            Outcome::Timeout => "timeout",
            Outcome::Connect => "connect",
            Outcome::Tls => "tls",
            Outcome::Redirect => "redirect",
            Outcome::Refused => "refused",
        }
    }
}

/// The record of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// When it started.
    pub started_at: Timestamp,
    /// How long it took, in milliseconds.
    pub duration_ms: i64,
    /// How it ended.
    pub outcome: Outcome,
    /// The HTTP status, if an answer came.
    pub status_code: Option<u16>,
    /// What went wrong, for a person.
    pub error: Option<String>,
    /// The first 1 KiB of the response body (lossy UTF-8).
    pub response_body: Option<String>,
    /// The headers the request carried, in the order sent; empty when the target was
    /// refused before any request was made.
    pub request_headers: Vec<(String, String)>,
}

/// The settings the client is built from.
#[derive(Clone)]
pub struct ClientOptions {
    /// `delivery-timeout`.
    pub timeout: Duration,
    /// `allow-http`.
    pub allow_http: bool,
    /// `allow-private-networks`.
    pub allow_private_networks: bool,
    /// PEM roots added to the system's (`ca-file`).
    pub extra_roots_pem: Option<Vec<u8>>,
    /// The resolver (the system's unless a test gives its own).
    pub lookup: Arc<dyn Lookup>,
}

impl ClientOptions {
    /// Options with the system resolver and no extra roots.
    pub fn new(timeout: Duration, allow_http: bool, allow_private_networks: bool) -> ClientOptions {
        ClientOptions {
            timeout,
            allow_http,
            allow_private_networks,
            extra_roots_pem: None,
            lookup: Arc::new(SystemLookup),
        }
    }

    /// Adds the certificates of a PEM file as trusted roots.
    pub fn with_ca_file(mut self, path: &Path) -> Result<ClientOptions, ClientError> {
        let pem = std::fs::read(path)
            .map_err(|e| ClientError(format!("cannot read ca-file {}: {e}", path.display())))?;
        self.extra_roots_pem = Some(pem);
        Ok(self)
    }
}

/// The client could not be built (bad `ca-file`, TLS set-up).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(String);

/// One request to make.
pub struct OutboundRequest<'a> {
    /// The endpoint.
    pub url: &'a str,
    /// Headers, names in lower case.
    pub headers: &'a [(&'static str, String)],
    /// The exact body.
    pub body: &'a [u8],
}

/// Idle connections kept per host (scheme, name, port), whatever the number of
/// configurations pointing at it; idle ones are closed after 90 s.
pub const MAX_IDLE_PER_HOST: usize = 1024;

/// The guarded HTTP client. Cheap to clone; connections are pooled inside.
#[derive(Clone)]
pub struct OutboundClient {
    http: reqwest::Client,
    options: Arc<ClientOptions>,
}

impl OutboundClient {
    /// Builds the client.
    pub fn new(options: ClientOptions) -> Result<OutboundClient, ClientError> {
        let resolver = GuardedResolver::new(options.lookup.clone(), options.allow_private_networks);
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(resolver))
            .connect_timeout(options.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            // Many configurations often share one host (a receiving service): their
            // attempts in flight together can far exceed one endpoint's permits, and every
            // connection not kept is a new TLS handshake on the next attempt.
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .no_proxy();
        if let Some(pem) = &options.extra_roots_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError(format!("ca-file: {e}")))?;
            if certs.is_empty() {
                return Err(ClientError("ca-file contains no certificate".to_owned()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| ClientError(format!("building the HTTP client: {e}")))?;
        Ok(OutboundClient {
            http,
            options: Arc::new(options),
        })
    }

    /// Makes one attempt; never fails: every ending is an [`Attempt`].
    pub async fn send(&self, request: &OutboundRequest<'_>) -> Attempt {
        let started_at = Timestamp::now();
        let clock = Instant::now();
        let result = match self.preflight(request.url) {
            Err(refusal) => Err((Outcome::Refused, refusal.to_string())),
            Ok(url) => match tokio::time::timeout(self.options.timeout, self.exchange(url, request)).await {
                Ok(result) => result,
                Err(_) => Err((
                    Outcome::Timeout,
                    format!("no complete response within {:?}", self.options.timeout),
                )),
            },
        };
        let duration_ms = clock.elapsed().as_millis() as i64;
        let request_headers = match &result {
            Err((Outcome::Refused, _)) => Vec::new(),
            _ => request
                .headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone()))
                .collect(),
        };
        match result {
            Ok((status, body)) => {
                let outcome = match status {
                    200..=299 => Outcome::Success,
                    300..=399 => Outcome::Redirect,
                    _ => Outcome::Http,
                };
                let error = (outcome != Outcome::Success).then(|| format!("HTTP {status}"));
                Attempt {
                    started_at,
                    duration_ms,
                    outcome,
                    status_code: Some(status),
                    error,
                    response_body: Some(body),
                    request_headers,
                }
            }
            Err((outcome, error)) => Attempt {
                started_at,
                duration_ms,
                outcome,
                status_code: None,
                error: Some(error),
                response_body: None,
                request_headers,
            },
        }
    }

    fn preflight(&self, url: &str) -> Result<url::Url, Refusal> {
        let parsed = url::Url::parse(url).map_err(|_| Refusal::Scheme("(unparseable URL)".to_owned()))?;
        check_url(
            &parsed,
            self.options.allow_http,
            self.options.allow_private_networks,
        )?;
        Ok(parsed)
    }

    async fn exchange(
        &self,
        url: url::Url,
        request: &OutboundRequest<'_>,
    ) -> Result<(u16, String), (Outcome, String)> {
        let mut builder = self.http.post(url).body(request.body.to_vec());
        for (name, value) in request.headers {
            builder = builder.header(*name, value);
        }
        let mut response = builder.send().await.map_err(|e| classify(&e))?;
        let status = response.status().as_u16();
        let mut kept = Vec::new();
        let mut read = 0;
        while read < DRAINED_BODY_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    read += chunk.len();
                    let room = KEPT_BODY_BYTES.saturating_sub(kept.len());
                    kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) => break,
                Err(e) => return Err(classify(&e)),
            }
        }
        Ok((status, String::from_utf8_lossy(&kept).into_owned()))
    }
}

/// Sorts a transport error into an outcome, looking through its causes.
fn classify(error: &reqwest::Error) -> (Outcome, String) {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut chain = Vec::new();
    let mut outcome = if error.is_timeout() {
        Outcome::Timeout
    } else {
        Outcome::Connect
    };
    while let Some(e) = cause {
        chain.push(e.to_string());
        if e.downcast_ref::<Refusal>().is_some() {
            outcome = Outcome::Refused;
        } else if e.downcast_ref::<rustls::Error>().is_some() {
            outcome = Outcome::Tls;
        } else if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                outcome = Outcome::Tls;
            }
        }
        cause = e.source();
    }
    chain.dedup();
    // rustls errors can arrive flattened into text by an intermediate layer; their
    // wording is stable enough to recognise.
    let text = chain.join(": ");
    let lower = text.to_ascii_lowercase();
    if outcome == Outcome::Connect
        && (lower.contains("certificate")
            || lower.contains("tls handshake")
            || lower.contains("received fatal alert"))
    {
        outcome = Outcome::Tls;
    }
    (outcome, text)
}
