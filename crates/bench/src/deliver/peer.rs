//! The peer of the side-by-side runs: the Svix open-source server, started from its
//! `run.sh` (`--svix PATH`), loaded by the same generator and delivering to the same
//! receiver process as Ledgerhook in the same run. Each event becomes one Svix message
//! whose payload is the legacy notification Ledgerhook would send for it, so the
//! receiver counts and times both alike.
//!
//! On Svix a realm has no meaning: one app with one endpoint per receiver path
//! (`/hook`, or `/hook/1` … for fan-out) receives every message.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the load generator sends one event.
#[derive(Clone)]
pub(crate) enum Target {
    /// `POST {base}/api/v1/realms/{realm}/events` with the operator token.
    Ledgerhook { base: String, realms: Vec<String> },
    /// `POST {base}/api/v1/app/{app}/msg/` with Svix's token.
    Svix {
        base: String,
        token: String,
        app: String,
    },
}

impl Target {
    /// The request for `events` (a JSON array of one change), the `n`-th of client `c`.
    pub(crate) fn request(
        &self,
        client: &reqwest::Client,
        c: usize,
        n: usize,
        clients: usize,
        events: &Value,
    ) -> reqwest::RequestBuilder {
        match self {
            Target::Ledgerhook { base, realms } => {
                let realm = &realms[(c + n * clients) % realms.len()];
                client
                    .post(format!("{base}/api/v1/realms/{realm}/events"))
                    .bearer_auth(crate::server::OPERATOR)
                    .json(events)
            }
            Target::Svix { base, token, app } => {
                let payload = json!({"eventNotifications": [{"realmId": "1", "dataChangeEvent": {"entities": events}}]});
                client
                    .post(format!("{base}/api/v1/app/{app}/msg/"))
                    .bearer_auth(token)
                    .json(&json!({"eventType": "customer.update", "payload": payload}))
            }
        }
    }
}

/// A running Svix server (stopped, its database dropped, on drop).
pub(crate) struct SvixServer {
    child: Child,
    database: String,
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    /// The API token `run.sh` printed.
    pub(crate) token: String,
    _dir: tempfile::TempDir,
}

impl SvixServer {
    /// Runs `run_sh PORT DB redis`, trusting `ca` for `https://` endpoints; waits until
    /// it answers its health check.
    pub(crate) async fn start(run_sh: &Path, ca: &Path) -> anyhow::Result<SvixServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let database = format!("svix_bench_{port}");
        let dir = tempfile::tempdir()?;
        let mut child = Command::new("bash")
            .arg(run_sh)
            .args([port.to_string(), database.clone(), "redis".to_owned()])
            .env("SVIX_RUN_DIR", dir.path())
            .env("SSL_CERT_FILE", ca)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", run_sh.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let token = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix("SVIX_TOKEN=").map(str::to_owned))
            .context("run.sh printed no SVIX_TOKEN")?;
        let server = SvixServer {
            child,
            database,
            base: format!("http://127.0.0.1:{port}"),
            token,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let health = client.get(format!("{}/api/v1/health/", server.base)).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("svix-server did not answer its health check");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// One call of Svix's API with its token; answers the JSON body of a success.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("svix {status}: {value}");
        }
        Ok(value)
    }

    /// A new app with an endpoint for each of `urls`; answers the app's id.
    pub(crate) async fn app_with_endpoints(&self, urls: &[String]) -> anyhow::Result<String> {
        let app = self
            .call(
                reqwest::Method::POST,
                "/api/v1/app/",
                Some(json!({"name": "bench"})),
            )
            .await?;
        let app_id = app["id"].as_str().context("svix app id")?.to_owned();
        for url in urls {
            self.add_endpoint(&app_id, url).await?;
        }
        Ok(app_id)
    }

    /// A new endpoint of `app` sending to `url`; answers its id.
    pub(crate) async fn add_endpoint(&self, app: &str, url: &str) -> anyhow::Result<String> {
        let body = json!({"url": url, "version": 1});
        let endpoint = self
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/app/{app}/endpoint/"),
                Some(body),
            )
            .await?;
        Ok(endpoint["id"].as_str().context("svix endpoint id")?.to_owned())
    }

    /// Deletes an endpoint of `app`.
    pub(crate) async fn delete_endpoint(&self, app: &str, endpoint: &str) -> anyhow::Result<()> {
        let path = format!("/api/v1/app/{app}/endpoint/{endpoint}/");
        self.call(reqwest::Method::DELETE, &path, None).await?;
        Ok(())
    }
}

impl Drop for SvixServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("psql")
            .arg("postgres://postgres@127.0.0.1:5432/postgres")
            .args([
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `--svix`: the path given, checked.
pub(crate) fn run_sh(path: &Option<PathBuf>) -> anyhow::Result<Option<PathBuf>> {
    match path {
        Some(p) if !p.exists() => bail!("--svix {}: no such file", p.display()),
        other => Ok(other.clone()),
    }
}
