//! A webhook receiver for tests: a real HTTP or HTTPS server on 127.0.0.1 that records
//! every request (headers, body, start and end) and answers as told — the answer can be
//! changed mid-test. Fixed paths answer specially: `/slow` (1.5 s), `/redirect` (302),
//! `/big` (5,000 bytes), `/status/N`, `/after/MS/…` (`200` after MS milliseconds). Also
//! certificates made for it, and a black hole that accepts connections and never answers.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The path.
    pub path: String,
    /// Headers, names in lower case.
    pub headers: HashMap<String, String>,
    /// The exact body.
    pub body: Vec<u8>,
    /// When the request arrived.
    pub started: Instant,
    /// When the answer was sent.
    pub finished: Instant,
    /// The status answered.
    pub status: u16,
}

impl Recorded {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// How the receiver answers paths without a special meaning.
#[derive(Clone, Copy, Debug)]
pub struct Behaviour {
    /// The status to answer.
    pub status: u16,
    /// How long to wait before answering.
    pub delay: Duration,
}

struct Shared {
    recorded: Mutex<Vec<Recorded>>,
    behaviour: Mutex<Behaviour>,
    connections: AtomicUsize,
}

/// A running receiver.
#[derive(Clone)]
pub struct Receiver {
    /// Its port on 127.0.0.1.
    pub port: u16,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.shared.recorded.lock().unwrap().len()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Requests answered with a `2xx` status, from the `skip`-th request answered on:
    /// cheap enough to poll while hundreds of thousands are recorded.
    pub fn successes_since(&self, skip: usize) -> usize {
        let recorded = self.shared.recorded.lock().unwrap();
        recorded
            .get(skip..)
            .unwrap_or_default()
            .iter()
            .filter(|r| (200..300).contains(&r.status))
            .count()
    }

    /// Every request answered so far, in answer order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.recorded.lock().unwrap().clone()
    }

    /// Changes the answer from now on.
    pub fn set(&self, status: u16, delay: Duration) {
        *self.shared.behaviour.lock().unwrap() = Behaviour { status, delay };
    }

    /// Waits until `count` requests were answered (or `timeout` passed); answers them.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.requests();
            if seen.len() >= count || Instant::now() > deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `https://127.0.0.1:PORT{path}` (or `http://` for a plain receiver).
    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }
}

async fn answer(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let started = Instant::now();
    let path = request.uri().path().to_owned();
    let headers = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let behaviour = *shared.behaviour.lock().unwrap();
    let (status, delay, text, location) = match path.as_str() {
        "/slow" => (200, Duration::from_millis(1500), "late".to_owned(), None),
        "/redirect" => (
            302,
            Duration::ZERO,
            "moved".to_owned(),
            Some("https://127.0.0.1:1/elsewhere"),
        ),
        "/big" => (200, Duration::ZERO, "y".repeat(5000), None),
        p if p.starts_with("/after/") => {
            let millis = p["/after/".len()..].split('/').next().unwrap_or("");
            let delay = Duration::from_millis(millis.parse().unwrap_or(0));
            (200, delay, "late".to_owned(), None)
        }
        p if p.starts_with("/status/") => {
            let code: u16 = p["/status/".len()..].parse().unwrap_or(500);
            (code, Duration::ZERO, format!("status {code}"), None)
        }
        _ => (
            behaviour.status,
            behaviour.delay,
            format!("status {}", behaviour.status),
            None,
        ),
    };
    // Not even a zero sleep: tokio's timer rounds it up to its next millisecond tick,
    // which added about a millisecond to every answer and capped one connection's
    // requests in a row at ~800/s.
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    shared.recorded.lock().unwrap().push(Recorded {
        path,
        headers,
        body,
        started,
        finished: Instant::now(),
        status,
    });
    let mut response = Response::builder().status(status);
    if let Some(location) = location {
        response = response.header("location", location);
    }
    Ok(response.body(Full::new(Bytes::from(text))).unwrap())
}

/// Starts a receiver answering `200` at once; HTTPS when `tls` is given.
pub async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let shared = Arc::new(Shared {
        recorded: Mutex::new(Vec::new()),
        behaviour: Mutex::new(Behaviour {
            status: 200,
            delay: Duration::ZERO,
        }),
        connections: AtomicUsize::new(0),
    });
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let serving = shared.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            serving.connections.fetch_add(1, Ordering::SeqCst);
            let (shared, acceptor) = (serving.clone(), acceptor.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |r| answer(shared.clone(), r));
                let builder = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            });
        }
    });
    Receiver { port, shared }
}

/// A listener that accepts connections and never answers; answers its port.
pub async fn black_hole() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    port
}

/// A test CA and server configurations for `localhost` and `127.0.0.1`.
pub struct Pki {
    /// The CA certificate in PEM (what `ca-file` holds).
    pub ca_pem: String,
    /// Presents a leaf the CA signed.
    pub signed: Arc<rustls::ServerConfig>,
    /// Presents a self-signed leaf.
    pub self_signed: Arc<rustls::ServerConfig>,
}

impl Pki {
    /// Writes the CA to `dir/ca.pem` and answers the path.
    pub fn write_ca(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.ca_pem).unwrap();
        path
    }
}

fn server_config(chain: Vec<CertificateDer<'static>>, key: &KeyPair) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    Arc::new(config)
}

/// Makes a CA, a leaf it signs and a self-signed leaf.
pub fn pki() -> Pki {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Ledgerhook Test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(names.clone())
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let lone_key = KeyPair::generate().unwrap();
    let lone = CertificateParams::new(names)
        .unwrap()
        .self_signed(&lone_key)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        signed: server_config(vec![leaf.der().clone(), ca.der().clone()], &leaf_key),
        self_signed: server_config(vec![lone.der().clone()], &lone_key),
    }
}
