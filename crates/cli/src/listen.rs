//! `ledgerhook listen`: a local endpoint for development, like `stripe listen`. It
//! receives notifications (from Ledgerhook or from QuickBooks itself), verifies
//! `intuit-signature` and Standard Webhooks signatures, and prints one line per event
//! (colour on a terminal, none when piped; `--json` for one JSON object per line). A bad
//! signature is printed as refused and answered `401`. With `--forward-to` each verified
//! notification is passed on byte for byte with its headers, the app's answer printed
//! and given back to the sender (so the sender's retries follow the app).

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // forwards to the app under development by design (clippy.toml)

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use clap::{Arg, ArgAction, ArgMatches, Command};
use ledgerhook_domain::Timestamp;
use ledgerhook_receiver::{payload, verify};
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Headers passed on with a forwarded notification.
const FORWARDED: [&str; 5] = [
    "content-type",
    "intuit-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// The `listen` subcommand and its options.
pub fn command() -> Command {
    crate::receiving::endpoint_args(Command::new("listen").about(
        "A local webhook endpoint for development: verify, print each event, optionally forward to your app",
    ))
    .arg(
        Arg::new("json")
            .long("json")
            .action(ArgAction::SetTrue)
            .help("One JSON object per line instead of text"),
    )
    .arg(
        Arg::new("forward-to")
            .long("forward-to")
            .value_name("URL")
            .help("Also pass each verified notification on, byte for byte with its headers, to this URL"),
    )
}

struct Listener {
    verifier_tokens: Vec<String>,
    standard: Option<verify::StandardWebhooks>,
    json: bool,
    colour: bool,
    forward_to: Option<String>,
    client: reqwest::Client,
}

/// Runs `ledgerhook listen` until Ctrl-C.
pub fn run(args: &ArgMatches) -> anyhow::Result<()> {
    let strings = |name: &str| crate::receiving::strings(args, name);
    let (listen, path) = crate::receiving::endpoint(args)?;
    let secrets = strings("signing-secret");
    let standard = if secrets.is_empty() {
        None
    } else {
        Some(verify::StandardWebhooks::new(&secrets).map_err(|e| anyhow::anyhow!("--signing-secret: {e}"))?)
    };
    let forward_to = args.get_one::<String>("forward-to").cloned();
    if let Some(url) = &forward_to {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!("--forward-to: expected an http:// or https:// URL, got \"{url}\"");
        }
    }
    let listener = Arc::new(Listener {
        verifier_tokens: strings("verifier-token"),
        standard,
        json: args.get_flag("json"),
        colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        forward_to,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
    });
    let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
    runtime.block_on(async {
        let app = Router::new()
            .route(&path, post(receive))
            .layer(DefaultBodyLimit::max(10 << 20))
            .with_state(listener.clone());
        let socket = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listen on {listen}"))?;
        let shutdown = crate::shutdown_signal()?;
        eprintln!("ledgerhook: listening on http://{}{path}", socket.local_addr()?);
        if listener.verifier_tokens.is_empty() && listener.standard.is_none() {
            eprintln!("ledgerhook: no --verifier-token or --signing-secret: signatures are not checked");
        }
        if let Some(url) = &listener.forward_to {
            eprintln!("ledgerhook: forwarding verified notifications to {url}");
        }
        axum::serve(socket, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serve HTTP")?;
        Ok(())
    })
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl Listener {
    /// Why the signatures do not verify, if they do not.
    fn refusal(&self, headers: &HeaderMap, body: &[u8]) -> Option<String> {
        if !self.verifier_tokens.is_empty() {
            let tokens: Vec<&str> = self.verifier_tokens.iter().map(String::as_str).collect();
            match header(headers, "intuit-signature") {
                None => return Some("missing intuit-signature".into()),
                Some(signature) if verify::intuit(&tokens, body, signature).is_err() => {
                    return Some("intuit-signature does not match".into())
                }
                Some(_) => {}
            }
        }
        if let Some(standard) = &self.standard {
            let now = Timestamp::now().millis() / 1000;
            let checked = standard.verify(
                header(headers, "webhook-id"),
                header(headers, "webhook-timestamp"),
                header(headers, "webhook-signature"),
                body,
                now,
            );
            if let Err(err) = checked {
                return Some(format!("Standard Webhooks signature: {err}"));
            }
        }
        None
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Prints one line (text or JSON) to stdout.
    fn print(&self, text: String, json: Value) {
        let line = if self.json { json.to_string() } else { text };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    fn print_event(&self, event: &payload::Event, webhook_id: Option<&str>) {
        let now = Timestamp::now().to_rfc3339();
        let operation = self.paint(
            match event.operation.as_str() {
                "Create" => "32",
                "Delete" | "Void" => "31",
                _ => "33",
            },
            event.operation.as_str(),
        );
        let merged = event
            .deleted_id
            .as_deref()
            .map_or(String::new(), |d| format!(" (merged away {d})"));
        let text = format!(
            "{now}  realm {}  {} {}  {operation}{merged}  lastUpdated {}",
            event.realm_id,
            event.entity,
            event.entity_id,
            event.last_updated.to_rfc3339()
        );
        let mut json = json!({
            "time": now,
            "realm_id": event.realm_id,
            "entity": event.entity,
            "id": event.entity_id,
            "operation": event.operation.as_str(),
            "lastUpdated": event.last_updated.to_rfc3339(),
            "webhook_id": webhook_id,
        });
        if let Some(deleted) = &event.deleted_id {
            json["deletedId"] = json!(deleted);
        }
        self.print(text, json);
    }

    fn print_refused(&self, status: StatusCode, reason: &str, webhook_id: Option<&str>) {
        let now = Timestamp::now().to_rfc3339();
        let id = webhook_id.map_or(String::new(), |id| format!(" ({id})"));
        let text = format!(
            "{now}  {}{id}: {reason}, answered {}",
            self.paint("31;1", "refused"),
            status.as_u16()
        );
        let json =
            json!({"time": now, "refused": reason, "status": status.as_u16(), "webhook_id": webhook_id});
        self.print(text, json);
    }

    /// Passes the notification on; answers the app's status (`502` when it could not be
    /// reached) and prints it.
    async fn forward(&self, url: &str, headers: &HeaderMap, body: Bytes) -> StatusCode {
        let mut request = self.client.post(url).body(body);
        for name in FORWARDED {
            if let Some(value) = headers.get(name) {
                request = request.header(name, value.as_bytes());
            }
        }
        let started = Instant::now();
        let now = Timestamp::now().to_rfc3339();
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let millis = started.elapsed().as_millis() as u64;
                let text = format!("{now}  forwarded to {url}: {status} in {millis} ms");
                self.print(
                    text,
                    json!({"time": now, "forwarded_to": url, "status": status, "duration_ms": millis}),
                );
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            Err(err) => {
                let error = ledgerhook_domain::error_chain(&err);
                let text = format!("{now}  forwarding to {url} failed: {error}");
                self.print(text, json!({"time": now, "forwarded_to": url, "error": error}));
                StatusCode::BAD_GATEWAY
            }
        }
    }
}

async fn receive(
    State(listener): State<Arc<Listener>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let webhook_id = header(&headers, "webhook-id");
    if let Some(reason) = listener.refusal(&headers, &body) {
        listener.print_refused(StatusCode::UNAUTHORIZED, &reason, webhook_id);
        return (StatusCode::UNAUTHORIZED, reason);
    }
    let content_type = header(&headers, "content-type").unwrap_or("application/json");
    let events = match payload::parse(content_type, &body) {
        Ok(events) => events,
        Err(err) => {
            listener.print_refused(StatusCode::BAD_REQUEST, &err.to_string(), webhook_id);
            return (StatusCode::BAD_REQUEST, err.to_string());
        }
    };
    for event in &events {
        listener.print_event(event, webhook_id);
    }
    match &listener.forward_to {
        Some(url) => (listener.forward(url, &headers, body).await, String::new()),
        None => (StatusCode::OK, String::new()),
    }
}
