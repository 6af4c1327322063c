//! The outbound client against real local servers.

use ledgerhook_delivery::outbound::guard::Lookup;
use ledgerhook_delivery::outbound::{
    Attempt, ClientOptions, OutboundClient, OutboundRequest, Outcome, KEPT_BODY_BYTES,
};
use ledgerhook_testkit::receiver::{self, Receiver};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_millis(700);

fn client(options: ClientOptions) -> OutboundClient {
    OutboundClient::new(options).expect("client")
}

fn options(allow_http: bool, allow_private: bool) -> ClientOptions {
    ClientOptions::new(TIMEOUT, allow_http, allow_private)
}

/// Options trusting the test CA (the `ca-file` setting).
fn trusting(pki: &receiver::Pki, allow_private: bool) -> ClientOptions {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, &pki.ca_pem).unwrap();
    options(false, allow_private).with_ca_file(&path).unwrap()
}

async fn post(client: &OutboundClient, url: &str) -> Attempt {
    let headers = [("content-type", "application/json".to_owned())];
    client
        .send(&OutboundRequest {
            url,
            headers: &headers,
            body: b"{}",
        })
        .await
}

fn https(receiver: &Receiver, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", receiver.port)
}

#[tokio::test]
async fn https_statuses_map_to_outcomes() {
    let pki = receiver::pki();
    let server = receiver::start(Some(pki.signed.clone())).await;
    let client = client(trusting(&pki, true));

    let ok = post(&client, &https(&server, "/ok")).await;
    assert_eq!(
        (ok.outcome, ok.status_code, ok.response_body.as_deref()),
        (Outcome::Success, Some(200), Some("status 200"))
    );
    assert_eq!(ok.error, None);
    let accepted = post(&client, &https(&server, "/status/202")).await;
    assert_eq!(
        (accepted.outcome, accepted.status_code),
        (Outcome::Success, Some(202))
    );
    let failed = post(&client, &https(&server, "/status/500")).await;
    assert_eq!((failed.outcome, failed.status_code), (Outcome::Http, Some(500)));
    assert_eq!(failed.response_body.as_deref(), Some("status 500"));
    assert_eq!(failed.error.as_deref(), Some("HTTP 500"));
    let redirect = post(&client, &https(&server, "/redirect")).await;
    assert_eq!(
        (redirect.outcome, redirect.status_code),
        (Outcome::Redirect, Some(302))
    );
    let big = post(&client, &https(&server, "/big")).await;
    assert_eq!(big.response_body.unwrap().len(), KEPT_BODY_BYTES);
    assert_eq!(
        server.hits(),
        5,
        "the redirect was followed or a request repeated"
    );
    // Keep-alive: every request went over one connection.
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn a_slow_server_times_out_within_the_delivery_timeout() {
    let pki = receiver::pki();
    let server = receiver::start(Some(pki.signed.clone())).await;
    let attempt = post(&client(trusting(&pki, true)), &https(&server, "/slow")).await;
    assert_eq!(attempt.outcome, Outcome::Timeout);
    assert_eq!(attempt.status_code, None);
    assert!(
        attempt.duration_ms >= 650 && attempt.duration_ms < 1200,
        "took {} ms",
        attempt.duration_ms
    );
}

#[tokio::test]
async fn refused_connections_are_connect_failures() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let attempt = post(
        &client(options(false, true)),
        &format!("https://127.0.0.1:{port}/"),
    )
    .await;
    assert_eq!(attempt.outcome, Outcome::Connect, "{attempt:?}");
    assert!(attempt.error.is_some());
}

#[tokio::test]
async fn self_signed_and_untrusted_certificates_fail_tls() {
    let pki = receiver::pki();
    let lone = receiver::start(Some(pki.self_signed.clone())).await;
    let attempt = post(&client(trusting(&pki, true)), &https(&lone, "/ok")).await;
    assert_eq!(attempt.outcome, Outcome::Tls, "{attempt:?}");
    let signed = receiver::start(Some(pki.signed.clone())).await;
    let attempt = post(&client(options(false, true)), &https(&signed, "/ok")).await;
    assert_eq!(
        attempt.outcome,
        Outcome::Tls,
        "a private CA was trusted without ca-file: {attempt:?}"
    );
    assert_eq!(signed.hits() + lone.hits(), 0);
    // With the CA given, the same server is trusted, also by name.
    let attempt = post(
        &client(trusting(&pki, true)),
        &format!("https://localhost:{}/ok", signed.port),
    )
    .await;
    assert_eq!(attempt.outcome, Outcome::Success, "{attempt:?}");
}

#[tokio::test]
async fn plain_http_needs_allow_http() {
    let server = receiver::start(None).await;
    let url = format!("http://127.0.0.1:{}/ok", server.port);
    let refused = post(&client(options(false, true)), &url).await;
    assert_eq!(refused.outcome, Outcome::Refused);
    assert!(refused.error.unwrap().contains("allow-http"));
    assert_eq!(server.hits(), 0);
    let allowed = post(&client(options(true, true)), &url).await;
    assert_eq!(allowed.outcome, Outcome::Success);
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn private_targets_are_refused_without_allow_private_networks() {
    let server = receiver::start(None).await;
    let port = server.port;
    let loopback_forms = [
        format!("http://localhost:{port}/"),
        format!("http://127.0.0.1:{port}/"),
        format!("http://127.1:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://0.0.0.0:{port}/"),
        format!("http://[::]:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
    ];
    // Never connected to (no traffic leaves loopback in tests): refused before connecting.
    let elsewhere = [
        "http://[fe80::1]/",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
    ];
    let guarded = client(options(true, false));
    for url in loopback_forms.iter().map(String::as_str).chain(elsewhere) {
        let attempt = post(&guarded, url).await;
        assert_eq!(attempt.outcome, Outcome::Refused, "{url}: {attempt:?}");
        assert!(attempt.error.unwrap().contains("allow-private-networks"));
    }
    assert_eq!(server.hits(), 0, "a refused target was contacted");
    // Allowed with the setting (loopback forms only: the others would leave the machine).
    let open = client(options(true, true));
    for url in &loopback_forms {
        let attempt = post(&open, url).await;
        if url.contains("[::]") || url.contains("[::1]") {
            // The receiver listens on IPv4 only: reaching the socket layer is the point.
            assert_ne!(attempt.outcome, Outcome::Refused, "{url}: {attempt:?}");
        } else {
            assert_eq!(attempt.outcome, Outcome::Success, "{url}: {attempt:?}");
        }
    }
}

/// A resolver that answers fixed addresses for every name and counts its calls.
struct FixedLookup {
    answer: Vec<IpAddr>,
    calls: Arc<std::sync::atomic::AtomicUsize>,
}

impl Lookup for FixedLookup {
    fn lookup(&self, _host: String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let answer = self.answer.clone();
        Box::pin(async move { Ok(answer) })
    }
}

fn with_lookup(
    allow_private: bool,
    answer: &[&str],
) -> (OutboundClient, Arc<std::sync::atomic::AtomicUsize>) {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut opts = options(true, allow_private);
    opts.lookup = Arc::new(FixedLookup {
        answer: answer.iter().map(|a| a.parse().unwrap()).collect(),
        calls: calls.clone(),
    });
    (client(opts), calls)
}

#[tokio::test]
async fn a_public_answer_followed_by_a_private_one_is_refused() {
    let server = receiver::start(None).await;
    let url = format!("http://rebind.example:{}/", server.port);
    let (guarded, calls) = with_lookup(false, &["93.184.216.34", "127.0.0.1"]);
    let attempt = post(&guarded, &url).await;
    assert_eq!(attempt.outcome, Outcome::Refused, "{attempt:?}");
    assert!(attempt.error.unwrap().contains("127.0.0.1"));
    assert_eq!(server.hits(), 0);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_connection_goes_to_the_address_that_was_checked() {
    let server = receiver::start(None).await;
    let (open, calls) = with_lookup(true, &["127.0.0.1"]);
    let attempt = post(&open, &format!("http://receiver.example:{}/ok", server.port)).await;
    assert_eq!(attempt.outcome, Outcome::Success, "{attempt:?}");
    assert_eq!(server.hits(), 1);
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the name was resolved twice"
    );
}
