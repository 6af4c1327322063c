//! `ledgerhook demo`: the integrator's loop in one command. A server on a temporary
//! SQLite database at accelerated time, a sandbox company, an app connected through the
//! real OAuth flow, a local receiver that verifies what arrives, and a narrated scenario:
//! changes through the QuickBooks-compatible API arrive signed; injected faults drop and
//! duplicate notifications; the endpoint breaks, is retried on the 20/30/50-minute
//! schedule, blacklisted, repaired and reactivated, and the held notifications arrive in
//! order; CDC shows what the receiver missed. Ctrl-C (or the end, with `--no-wait`)
//! stops everything and removes the temporary directory.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // a client of its own server and the receiver of its webhooks (clippy.toml)

mod receiver;

use anyhow::{bail, Context};
use axum::routing::post;
use clap::{Arg, ArgAction, ArgMatches, Command};
use ledgerhook_domain::Timestamp;
use ledgerhook_server::{Config, Server};
use receiver::{receive, say, Receiver};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `demo` subcommand.
pub fn command() -> Command {
    Command::new("demo")
        .about("A narrated tour: a server, a sandbox company, an app, a receiver; webhooks, faults, retries, blacklisting, CDC")
        .arg(
            Arg::new("time-scale")
                .long("time-scale")
                .value_name("FACTOR")
                .default_value("100")
                .help("Simulated-time factor: at 100 the 20/30/50-minute retry schedule takes a minute"),
        )
        .arg(
            Arg::new("no-wait")
                .long("no-wait")
                .action(ArgAction::SetTrue)
                .help("Stop at the end of the scenario instead of waiting for Ctrl-C"),
        )
}

fn step(title: &str) {
    println!("\n== {title}");
}

/// A client of the demo's own server.
struct Demo {
    base: String,
    operator: String,
    http: reqwest::Client,
}

impl Demo {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token.unwrap_or(&self.operator))
            .header("accept", "application/json");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| format!("call {path}"))?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status}: {value}");
        }
        Ok(value)
    }

    /// The app's notifications, oldest first.
    async fn notifications(&self, app_id: &str) -> anyhow::Result<Vec<Value>> {
        let list = self
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/apps/{app_id}/notifications?limit=1000"),
                None,
                None,
            )
            .await?;
        let mut data = list["data"].as_array().cloned().unwrap_or_default();
        data.reverse();
        Ok(data)
    }

    /// Connects the app to the realm the way an app does at QuickBooks: the consent form,
    /// the redirect with a code, the code exchanged for tokens.
    async fn connect(&self, app: &Value, realm_id: &str, redirect_uri: &str) -> anyhow::Result<Value> {
        let no_redirects = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let consent = no_redirects
            .post(format!("{}/connect/oauth2", self.base))
            .form(&[
                ("client_id", app["client_id"].as_str().unwrap_or_default()),
                ("redirect_uri", redirect_uri),
                ("response_type", "code"),
                ("scope", "com.intuit.quickbooks.accounting"),
                ("state", "demo"),
                ("realm_id", realm_id),
            ])
            .send()
            .await?;
        let location = consent
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .context("the consent form did not redirect")?;
        let location = url_query(location);
        let code = location.get("code").context("the redirect has no code")?;
        let tokens: Value = no_redirects
            .post(format!("{}/oauth2/v1/tokens/bearer", self.base))
            .basic_auth(
                app["client_id"].as_str().unwrap_or_default(),
                app["client_secret"].as_str(),
            )
            .header("accept", "application/json")
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", redirect_uri),
            ])
            .send()
            .await?
            .json()
            .await?;
        if tokens["access_token"].is_null() {
            bail!("the code exchange failed: {tokens}");
        }
        Ok(tokens)
    }
}

fn url_query(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `ledgerhook demo`.
pub fn run(args: &ArgMatches) -> anyhow::Result<()> {
    let scale: f64 = args
        .get_one::<String>("time-scale")
        .expect("default")
        .parse()
        .ok()
        .filter(|s: &f64| *s > 0.0 && s.is_finite())
        .context("--time-scale: expected a number greater than 0")?;
    let dir = tempfile::Builder::new()
        .prefix("ledgerhook-demo-")
        .tempdir()
        .context("make a temporary directory")?;
    let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
    let no_wait = args.get_flag("no-wait");
    let result = runtime.block_on(async {
        let shutdown = crate::shutdown_signal()?;
        tokio::select! {
            result = scenario(dir.path(), scale, no_wait) => result,
            _ = shutdown => {
                say("\nstopping (Ctrl-C)");
                Ok(())
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    let path = dir.path().display().to_string();
    dir.close().context("remove the temporary directory")?;
    say(&format!("removed {path}"));
    result
}

async fn scenario(dir: &std::path::Path, scale: f64, no_wait: bool) -> anyhow::Result<()> {
    step("Starting a server on a temporary SQLite database");
    let receiver = Arc::new(Receiver {
        verifier_token: Mutex::new(String::new()),
        broken: AtomicBool::new(false),
        seen: Mutex::new(HashMap::new()),
        arrived: Mutex::new(HashSet::new()),
    });
    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/webhooks", hook_listener.local_addr()?);
    let callback = format!("http://{}/callback", hook_listener.local_addr()?);
    let app_router = axum::Router::new()
        .route("/webhooks", post(receive))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(hook_listener, app_router).await });
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("an address"),
        database_url: format!("sqlite://{}", dir.join("ledgerhook.db").display())
            .parse()
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        allow_http: true,
        allow_private_networks: true,
        time_scale: scale,
        ..Config::default()
    };
    let server = Server::start(config).await?;
    let operator = server
        .new_operator_token
        .clone()
        .context("a new database has a new operator token")?;
    let base = format!("http://{}", server.local_addr);
    tokio::spawn(server.run(std::future::pending()));
    say(&format!("  dashboard: {base}/   operator token: {operator}"));
    say(&format!(
        "  data: {}; time runs {scale}× faster for windows and retries",
        dir.display()
    ));
    let demo = Demo {
        base,
        operator,
        http: reqwest::Client::new(),
    };
    use reqwest::Method;

    step("A sandbox company, an app, and the app connected through OAuth");
    let realm = demo
        .call(
            Method::POST,
            "/api/v1/realms",
            None,
            Some(json!({"name": "Demo Company", "environment": "sandbox"})),
        )
        .await?;
    let realm_id = realm["id"].as_str().unwrap_or_default().to_owned();
    let app = demo
        .call(
            Method::POST,
            "/api/v1/apps",
            None,
            Some(json!({"name": "Demo integration", "redirect_uris": [callback]})),
        )
        .await?;
    let app_id = app["id"].as_str().unwrap_or_default().to_owned();
    *receiver.verifier_token.lock().expect("token") =
        app["verifier_token"].as_str().unwrap_or_default().to_owned();
    let tokens = demo.connect(&app, &realm_id, &callback).await?;
    let access = tokens["access_token"].as_str().unwrap_or_default().to_owned();
    say(&format!(
        "  realm {realm_id}, app {app_id}: consent given, code exchanged for an access token"
    ));
    let webhooks = format!("/api/v1/apps/{app_id}/webhooks/sandbox");
    demo.call(
        Method::PUT,
        &webhooks,
        None,
        Some(json!({"url": hook, "entities": "*"})),
    )
    .await?;
    say(&format!("  webhooks of the sandbox go to {hook}"));

    step("A change through the QuickBooks-compatible API arrives as a signed webhook");
    let v3 = format!("/v3/company/{realm_id}");
    let created = demo
        .call(
            Method::POST,
            &format!("{v3}/customer"),
            Some(&access),
            Some(json!({"DisplayName": "Ada Lovelace"})),
        )
        .await?;
    let customer = created["Customer"].clone();
    say(&format!(
        "  → POST {v3}/customer: Customer {} created",
        customer["Id"].as_str().unwrap_or("?")
    ));
    wait_for(&demo, &app_id, 1).await?;

    step("Faults: drop and duplicate on purpose (sandbox only)");
    demo.call(
        Method::PUT,
        &webhooks,
        None,
        Some(json!({"url": hook, "entities": "*", "faults": {"drop": 0.34, "duplicate": 0.34, "seed": 3}})),
    )
    .await?;
    let before = demo.notifications(&app_id).await?.len();
    for name in ["Grace Hopper", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov"] {
        demo.call(
            Method::POST,
            &format!("{v3}/customer"),
            Some(&access),
            Some(json!({"DisplayName": name})),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for n in demo.notifications(&app_id).await?.iter().skip(before) {
        let faults = n["faults"].as_array().cloned().unwrap_or_default();
        let named: Vec<&str> = faults.iter().filter_map(Value::as_str).collect();
        let meaning = match named.as_slice() {
            [] => "sent once".to_owned(),
            ["drop"] => "dropped: reported delivered, never sent".to_owned(),
            other => other.join(", "),
        };
        say(&format!("  {}: {meaning}", n["id"].as_str().unwrap_or("?")));
    }
    demo.call(
        Method::PUT,
        &webhooks,
        None,
        Some(json!({"url": hook, "entities": "*"})),
    )
    .await?;

    step("The endpoint breaks: retries on the 20/30/50-minute schedule, then the blacklist");
    receiver.broken.store(true, Ordering::SeqCst);
    let sparse = json!({"Id": customer["Id"], "SyncToken": customer["SyncToken"], "sparse": true, "DisplayName": "Ada King"});
    demo.call(
        Method::POST,
        &format!("{v3}/customer"),
        Some(&access),
        Some(sparse),
    )
    .await?;
    say(&format!(
        "  (at {scale}× the waits are {:.1} s, {:.1} s and {:.1} s)",
        1200.0 / scale,
        1800.0 / scale,
        3000.0 / scale
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(6000.0 / scale + 30.0);
    loop {
        let config = demo.call(Method::GET, &webhooks, None, None).await?;
        if config["state"] == "blacklisted" {
            say(&format!(
                "  configuration blacklisted: {}",
                config["last_error"].as_str().unwrap_or("")
            ));
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the configuration was not blacklisted in time");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    demo.call(
        Method::POST,
        &format!("{v3}/customer"),
        Some(&access),
        Some(json!({"DisplayName": "Katherine Johnson"})),
    )
    .await?;
    say("  → a change while blacklisted: its notification is held");

    step("Repaired and reactivated: the held notification is delivered");
    receiver.broken.store(false, Ordering::SeqCst);
    demo.call(
        Method::POST,
        &format!("{webhooks}/reactivate"),
        None,
        Some(json!({})),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    step("CDC shows what the receiver missed");
    let since = Timestamp(Timestamp::now().millis() - 3_600_000).to_rfc3339();
    let cdc = demo
        .call(
            Method::GET,
            &format!("{v3}/cdc?entities=Customer&changedSince={since}"),
            Some(&access),
            None,
        )
        .await?;
    let mut missed = 0;
    let customers = cdc["CDCResponse"][0]["QueryResponse"][0]["Customer"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for c in customers {
        let id = c["Id"].as_str().unwrap_or("?").to_owned();
        let at = c["MetaData"]["LastUpdatedTime"].as_str().unwrap_or("").to_owned();
        let millis = Timestamp::parse(&at).map(|t| t.millis()).unwrap_or_default();
        let key = ("Customer".to_owned(), id.clone(), millis);
        let reached = receiver.arrived.lock().expect("arrived").contains(&key);
        if !reached {
            missed += 1;
        }
        let mark = if reached {
            ""
        } else {
            "  ← never reached the receiver"
        };
        say(&format!(
            "  Customer {id} \"{}\" SyncToken {} at {at}{mark}",
            c["DisplayName"].as_str().unwrap_or(""),
            c["SyncToken"].as_str().unwrap_or("?"),
        ));
    }
    say(&format!(
        "  {missed} changes never reached the receiver; a receiver that calls CDC since its last notification repairs them"
    ));
    if no_wait {
        return Ok(());
    }
    say("\nThe server keeps running: open the dashboard above. Ctrl-C stops everything.");
    std::future::pending::<()>().await;
    Ok(())
}

/// Waits until the app has `count` notifications delivered.
async fn wait_for(demo: &Demo, app_id: &str, count: usize) -> anyhow::Result<()> {
    for _ in 0..100 {
        let delivered = demo
            .notifications(app_id)
            .await?
            .iter()
            .filter(|n| n["status"] == "delivered")
            .count();
        if delivered >= count {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no notification was delivered within 10 s")
}
