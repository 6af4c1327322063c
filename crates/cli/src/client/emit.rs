//! `events emit`: change events from flags, or a file of them (a JSON array or JSON
//! lines), sent in batches of up to 1,000 with a progress bar on a terminal. Each batch
//! carries an `Idempotency-Key` derived from the realm and the batch's bytes, so running
//! the same file again after an interruption stores nothing twice.

use super::api::{Api, ClientError};
use super::json_arg;
use super::output::Output;
use clap::{Arg, ArgMatches, Command};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::IsTerminal;

/// The most events one ingestion request may carry.
const MAX_BATCH: usize = 1000;

/// The `events` command.
pub fn command() -> Command {
    Command::new("events")
        .about("Change events of a realm: emit")
        .subcommand_required(true)
        .subcommand(
            Command::new("emit")
                .about("Ingest change events, from flags or from --file (a JSON array or JSON lines)")
                .arg(
                    Arg::new("realm")
                        .required(true)
                        .value_name("REALM")
                        .help("The realm id"),
                )
                .arg(
                    Arg::new("file")
                        .long("file")
                        .value_name("FILE")
                        .help("Events to send: a JSON array or one JSON object per line"),
                )
                .arg(Arg::new("name").long("name").help("Entity type, e.g. Customer"))
                .arg(Arg::new("id").long("id").help("Entity id"))
                .arg(
                    Arg::new("operation")
                        .long("operation")
                        .help("Create, Update, Delete, Merge, Void or Emailed"),
                )
                .arg(
                    Arg::new("last-updated")
                        .long("last-updated")
                        .value_name("TIME")
                        .help("When it changed (default: now)"),
                )
                .arg(
                    Arg::new("deleted-id")
                        .long("deleted-id")
                        .help("For a Merge: the id merged away"),
                )
                .arg(
                    Arg::new("data")
                        .long("data")
                        .value_name("JSON")
                        .help("The entity's new body, kept for CDC"),
                )
                .arg(
                    Arg::new("batch-size")
                        .long("batch-size")
                        .default_value("1000")
                        .value_parser(clap::value_parser!(u32).range(1..=MAX_BATCH as i64))
                        .help("Events per request (at most 1000)"),
                ),
        )
}

/// The events of `text`: a JSON array, or one JSON object per line.
fn read_events(text: &str) -> Result<Vec<Value>, ClientError> {
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(text)
            .map_err(|e| ClientError::Usage(format!("--file: not a JSON array of events: {e}")));
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| ClientError::Usage(format!("--file: line {}: not JSON: {e}", i + 1)))
        })
        .collect()
}

fn from_flags(args: &ArgMatches) -> Result<Vec<Value>, ClientError> {
    let mut event = json!({});
    for (flag, field) in [("name", "name"), ("id", "id"), ("operation", "operation")] {
        match args.get_one::<String>(flag) {
            Some(value) => event[field] = json!(value),
            None => return Err(ClientError::Usage(format!("--{flag}: required without --file"))),
        }
    }
    for (flag, field) in [("last-updated", "lastUpdated"), ("deleted-id", "deletedId")] {
        if let Some(value) = args.get_one::<String>(flag) {
            event[field] = json!(value);
        }
    }
    if let Some(data) = json_arg(args, "data")? {
        event["data"] = data;
    }
    Ok(vec![event])
}

/// Runs `events emit`.
pub async fn run(api: &Api, out: Output, args: &ArgMatches) -> Result<(), ClientError> {
    let (_, args) = args.subcommand().expect("clap requires a verb");
    let realm = args
        .get_one::<String>("realm")
        .or_else(|| args.get_one::<String>("realm-flag"))
        .map(String::as_str)
        .expect("clap requires one of them");
    let events = match args.get_one::<String>("file") {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ClientError::Usage(format!("--file {path}: {e}")))?;
            read_events(&text)?
        }
        None => from_flags(args)?,
    };
    let batch_size = *args.get_one::<u32>("batch-size").expect("default") as usize;
    let progress = if std::io::stderr().is_terminal() && !out.json {
        let bar = ProgressBar::new(events.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} eta {eta}")
                .expect("a valid template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let path = format!("/api/v1/realms/{realm}/events");
    let mut accepted = 0u64;
    let mut batches = 0u64;
    for batch in events.chunks(batch_size) {
        let body = Value::Array(batch.to_vec());
        let bytes = serde_json::to_vec(&body).expect("JSON");
        let mut digest = Sha256::new();
        digest.update(realm.as_bytes());
        digest.update(b"\n");
        digest.update(&bytes);
        let key = format!("emit-{}", hex::encode(&digest.finalize()[..16]));
        let answer = api
            .call(Method::POST, &path, Some(&body), &[("idempotency-key", key)])
            .await?;
        accepted += answer["accepted"].as_u64().unwrap_or(batch.len() as u64);
        batches += 1;
        progress.inc(batch.len() as u64);
    }
    progress.finish_and_clear();
    let summary = json!({"accepted": accepted, "batches": batches});
    if out.json {
        println!("{summary}");
    } else {
        println!("accepted {accepted} events in {batches} batches");
    }
    Ok(())
}
