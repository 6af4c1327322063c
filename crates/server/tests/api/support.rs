//! An in-process server on a real socket, on SQLite or PostgreSQL, and a small client.

#![allow(dead_code)]

use ledgerhook_delivery::outbound::guard::Lookup;
use ledgerhook_server::{AppState, Config, Server};
use ledgerhook_testkit::{Kind, TestDatabase};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// The operator token every test server uses.
pub const OPERATOR: &str = "operator-token-for-tests";

/// The resolver of test servers: `localhost` is 127.0.0.1 and no other name resolves,
/// so no test sends a DNS query (or anything else) off the machine.
pub struct LoopbackOnlyDns;

impl Lookup for LoopbackOnlyDns {
    fn lookup(&self, host: String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        Box::pin(async move {
            if host == "localhost" {
                Ok(vec![IpAddr::from([127, 0, 0, 1])])
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{host} does not resolve in tests"),
                ))
            }
        })
    }
}

/// A running server and a client for it; stopped on drop.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The server's state, to look at storage directly.
    pub state: AppState,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    _db: TestDatabase,
}

impl TestServer {
    /// A server with default settings (and private networks allowed), or `None` when
    /// PostgreSQL is skipped.
    pub async fn start(kind: Kind) -> Option<TestServer> {
        Self::start_with(kind, |_| {}).await
    }

    /// A server whose configuration `tweak` may change.
    pub async fn start_with(kind: Kind, tweak: impl FnOnce(&mut Config)) -> Option<TestServer> {
        let db = TestDatabase::new(kind).await?;
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: db.url.parse().expect("the test database URL"),
            admin_token: Some(OPERATOR.to_owned()),
            ..Config::default()
        };
        tweak(&mut config);
        let server = Server::start_with_lookup(config, Arc::new(LoopbackOnlyDns))
            .await
            .expect("start server");
        let base = format!("http://{}", server.local_addr);
        let state = server.state.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Some(TestServer {
            base,
            state,
            client,
            stop: Some(stop),
            _db: db,
        })
    }

    /// Sends a request with an optional bearer token and JSON body; answers the status
    /// and the body parsed as JSON (`Null` when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        read(response).await
    }

    /// Sends raw bytes as the body.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        read(request.send().await.expect("request")).await
    }

    /// `GET` as the operator.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(OPERATOR), None).await
    }

    /// `POST` as the operator.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(OPERATOR), Some(body)).await
    }

    /// `PUT` as the operator.
    pub async fn put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(OPERATOR), Some(body)).await
    }

    /// Creates a realm; answers its id.
    pub async fn realm(&self, environment: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/realms",
                &serde_json::json!({"name": "Test Co", "environment": environment}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Creates an app; answers the whole creation response (with secrets).
    pub async fn app(&self, name: &str) -> Value {
        let (status, body) = self
            .post("/api/v1/apps", &serde_json::json!({"name": name}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// Connects an app to a realm; answers the grant.
    pub async fn connect(&self, app_id: &str, realm_id: &str) -> Value {
        let (status, body) = self
            .post(
                &format!("/api/v1/apps/{app_id}/connections"),
                &serde_json::json!({"realm_id": realm_id}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }
}

async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.bytes().await.expect("body");
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, value)
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A realm with one connected app: what ingestion and CDC tests need.
pub struct Company {
    /// The realm id.
    pub realm_id: String,
    /// The connected app's id.
    pub app_id: String,
    /// An access token for the realm.
    pub access_token: String,
}

impl TestServer {
    /// A realm of `environment` with an app connected to it.
    pub async fn company(&self, environment: &str) -> Company {
        let realm_id = self.realm(environment).await;
        let app = self.app("Reader").await;
        let app_id = app["id"].as_str().unwrap().to_owned();
        let grant = self.connect(&app_id, &realm_id).await;
        Company {
            realm_id,
            app_id,
            access_token: grant["access_token"].as_str().unwrap().to_owned(),
        }
    }

    /// Ingests `events` into `realm_id` as the operator.
    pub async fn ingest(&self, realm_id: &str, events: &Value) -> (StatusCode, Value) {
        self.post(&format!("/api/v1/realms/{realm_id}/events"), events)
            .await
    }

    /// `GET /v3/company/{realm}/cdc?{query}` (the query sent as given) with `token`.
    pub async fn cdc(&self, realm_id: &str, token: Option<&str>, query: &str) -> (StatusCode, Value) {
        self.call(
            Method::GET,
            &format!("/v3/company/{realm_id}/cdc?{query}"),
            token,
            None,
        )
        .await
    }

    /// The objects CDC answers for `entity` since `since` (RFC 3339), via the company's
    /// token.
    pub async fn cdc_objects(&self, company: &Company, entity: &str, since: &str) -> Vec<Value> {
        let since = since.replace('+', "%2B");
        let (status, body) = self
            .cdc(
                &company.realm_id,
                Some(&company.access_token),
                &format!("entities={entity}&changedSince={since}"),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["CDCResponse"][0]["QueryResponse"][0][entity]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// RFC 3339 UTC with milliseconds for `minutes_ago` minutes before now.
pub fn minutes_ago(minutes: i64) -> String {
    ledgerhook_domain::Timestamp(ledgerhook_domain::Timestamp::now().millis() - minutes * 60_000).to_rfc3339()
}

impl TestServer {
    /// Configures `app_id`'s webhook for `environment` (operator), answering the saved
    /// configuration.
    /// A new sandbox realm and an app named `name` connected to it, whose sandbox
    /// configuration sends everything to `url`; answers the realm id and the app.
    pub async fn app_delivering_to(&self, name: &str, url: &str) -> (String, Value) {
        let realm = self.realm("sandbox").await;
        let app = self.app(name).await;
        let app_id = app["id"].as_str().unwrap().to_owned();
        self.connect(&app_id, &realm).await;
        self.configure(
            &app_id,
            "sandbox",
            serde_json::json!({"url": url, "entities": "*"}),
        )
        .await;
        (realm, app)
    }

    pub async fn configure(&self, app_id: &str, environment: &str, body: Value) -> Value {
        let (status, saved) = self
            .put(&format!("/api/v1/apps/{app_id}/webhooks/{environment}"), &body)
            .await;
        assert_eq!(status, 200, "{saved}");
        saved
    }

    /// The stored notifications of `app_id`, oldest first.
    pub async fn stored_notifications(
        &self,
        app_id: &str,
    ) -> Vec<ledgerhook_store::notifications::Notification> {
        let filter = ledgerhook_store::notifications::NotificationFilter {
            app_id: Some(app_id.to_owned()),
            ..Default::default()
        };
        let mut list = self.state.store.notifications(&filter, 1000).await.unwrap();
        list.reverse();
        list
    }

    /// Waits (up to `timeout`) until `app_id` has at least `count` notifications;
    /// answers them, oldest first.
    pub async fn wait_for_notifications(
        &self,
        app_id: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<ledgerhook_store::notifications::Notification> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let list = self.stored_notifications(app_id).await;
            if list.len() >= count || tokio::time::Instant::now() > deadline {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl TestServer {
    /// A server that may deliver over plain HTTP to loopback, with a zero sandbox window:
    /// what tests of the QuickBooks-compatible API and its clients use.
    pub async fn start_loopback(kind: Kind) -> Option<TestServer> {
        Self::start_with(kind, |c| {
            c.allow_http = true;
            c.allow_private_networks = true;
            c.sandbox_batch_window = Duration::ZERO;
        })
        .await
    }

    /// A `/v3/company/{realm}/{path}` request with the company's access token; answers
    /// the status and the JSON body.
    pub async fn v3(
        &self,
        company: &Company,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, answer) = self
            .call(
                method,
                &format!("/v3/company/{}/{path}", company.realm_id),
                Some(&company.access_token),
                body.as_ref(),
            )
            .await;
        (status.as_u16(), answer)
    }

    /// Renames `table` from a connection of the test's own, so that every statement of
    /// the server that uses it fails from now on (a database failure on demand).
    pub async fn break_table(&self, table: &str) {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut connection = sqlx::AnyConnection::connect(self.state.config.database_url.as_str())
            .await
            .expect("a connection of the test's own");
        sqlx::query(&format!("ALTER TABLE {table} RENAME TO {table}_gone"))
            .execute(&mut connection)
            .await
            .expect("rename the table");
        connection.close().await.expect("close");
    }
}

/// A notification's payload parsed as JSON.
pub fn payload_json(notification: &ledgerhook_store::notifications::Notification) -> Value {
    serde_json::from_slice(&notification.payload).expect("payload is JSON")
}

/// The `(name, id, operation)` of each event of a legacy payload.
pub fn legacy_events(
    notification: &ledgerhook_store::notifications::Notification,
) -> Vec<(String, String, String)> {
    let body = payload_json(notification);
    body["eventNotifications"][0]["dataChangeEvent"]["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["id"].as_str().unwrap().to_owned(),
                e["operation"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}
