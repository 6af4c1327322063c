//! A local HTTP(S) server whose answers depend on the path, counting requests and
//! connections; and certificates made for it.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// A running receiver.
pub struct Receiver {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Requests answered.
    pub requests: Arc<AtomicUsize>,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
}

impl Receiver {
    /// Requests so far.
    pub fn hits(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = request.uri().path().to_owned();
    let reply = |status: u16, body: String| {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    Ok(match path.as_str() {
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            reply(200, "late".into())
        }
        "/redirect" => Response::builder()
            .status(302)
            .header("location", "https://127.0.0.1:1/elsewhere")
            .body(Full::new(Bytes::from_static(b"moved")))
            .unwrap(),
        "/big" => reply(200, "y".repeat(5000)),
        p if p.starts_with("/status/") => {
            let code: u16 = p["/status/".len()..].parse().unwrap();
            reply(code, format!("status {code}"))
        }
        _ => reply(200, "accepted".into()),
    })
}

/// Starts a receiver; HTTPS when `tls` is given.
pub async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    let (req_count, conn_count) = (requests.clone(), connections.clone());
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            conn_count.fetch_add(1, Ordering::SeqCst);
            let (req_count, acceptor) = (req_count.clone(), acceptor.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |r| {
                    req_count.fetch_add(1, Ordering::SeqCst);
                    answer(r)
                });
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
    Receiver {
        port,
        requests,
        connections,
    }
}

/// A test CA and a server configuration whose leaf it signed, for `localhost` and
/// `127.0.0.1`.
pub struct Pki {
    /// The CA certificate in PEM (what `ca-file` would hold).
    pub ca_pem: String,
    /// Server config presenting the CA-signed leaf.
    pub signed: Arc<rustls::ServerConfig>,
    /// Server config presenting a self-signed leaf.
    pub self_signed: Arc<rustls::ServerConfig>,
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

/// Makes the certificates.
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
