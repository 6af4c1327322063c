//! `notifications list|show|redeliver`.

use super::api::{Api, ClientError};
use super::output::{text_of, Output};
use super::{arg, list_args, paging};
use clap::{Arg, ArgMatches, Command};
use reqwest::Method;
use serde_json::Value;

/// The `notifications` command.
pub fn command() -> Command {
    let app = || {
        Arg::new("app")
            .required(true)
            .value_name("APP")
            .help("The app id")
    };
    let id = || {
        Arg::new("id")
            .required(true)
            .value_name("ID")
            .help("The notification id")
    };
    Command::new("notifications")
        .about("An app's notifications: list, show (payload and every attempt), redeliver")
        .subcommand_required(true)
        .subcommand(list_args(
            Command::new("list")
                .about("List notifications, newest first")
                .arg(app())
                .arg(
                    Arg::new("environment")
                        .long("environment")
                        .value_parser(["sandbox", "production"])
                        .help("Only this environment's"),
                )
                .arg(Arg::new("realm").long("realm").help("Only this realm's"))
                .arg(
                    Arg::new("status")
                        .long("status")
                        .value_parser(["pending", "retrying", "delivered", "dropped", "held"])
                        .help("Only in this status"),
                )
                .arg(
                    Arg::new("since")
                        .long("since")
                        .value_name("TIME")
                        .help("Only made at or after this RFC 3339 time"),
                ),
        ))
        .subcommand(
            Command::new("show")
                .about("Show one: its payload, pretty, and every attempt")
                .arg(app())
                .arg(id()),
        )
        .subcommand(
            Command::new("redeliver")
                .about("Send it again now")
                .arg(app())
                .arg(id()),
        )
}

/// Runs `notifications verb …`.
pub async fn run(api: &Api, out: Output, args: &ArgMatches) -> Result<(), ClientError> {
    let (verb, args) = args.subcommand().expect("clap requires a verb");
    let base = format!("/api/v1/apps/{}/notifications", arg(args, "app"));
    match verb {
        "list" => {
            let mut query = Vec::new();
            for name in ["environment", "realm", "status", "since"] {
                if let Some(value) = args.get_one::<String>(name) {
                    query.push((name.to_owned(), value.clone()));
                }
            }
            let (limit, all) = paging(args);
            let list = api.list(&base, &query, limit, all).await?;
            let rows = list
                .iter()
                .map(|n| {
                    vec![
                        text_of(&n["id"]),
                        text_of(&n["realm_id"]),
                        text_of(&n["environment"]),
                        text_of(&n["status"]),
                        text_of(&n["attempts"]),
                        text_of(&n["faults"]),
                        out.time(&n["created_at"]),
                        out.time(&n["next_attempt_at"]),
                    ]
                })
                .collect();
            let headers = [
                "ID",
                "REALM",
                "ENV",
                "STATUS",
                "ATTEMPTS",
                "FAULTS",
                "CREATED",
                "NEXT ATTEMPT",
            ];
            out.list(&Value::Array(list), &headers, rows);
        }
        "show" => {
            let n = api
                .call(Method::GET, &format!("{base}/{}", arg(args, "id")), None, &[])
                .await?;
            if out.json {
                out.object(&n, Vec::new());
                return Ok(());
            }
            let pairs = vec![
                ("id", text_of(&n["id"])),
                ("realm_id", text_of(&n["realm_id"])),
                ("environment", text_of(&n["environment"])),
                ("status", text_of(&n["status"])),
                ("format", text_of(&n["format"])),
                ("faults", text_of(&n["faults"])),
                ("created_at", out.time(&n["created_at"])),
                ("next_attempt_at", out.time(&n["next_attempt_at"])),
            ];
            out.object(&n, pairs);
            let payload = n["payload"].as_str().unwrap_or_default();
            let pretty = serde_json::from_str::<Value>(payload)
                .map(|v| serde_json::to_string_pretty(&v).expect("JSON"))
                .unwrap_or_else(|_| payload.to_owned());
            println!("\npayload:\n{pretty}\n");
            let attempts = n["attempts"].as_array().cloned().unwrap_or_default();
            let rows = attempts
                .iter()
                .map(|a| {
                    vec![
                        text_of(&a["number"]),
                        out.time(&a["started_at"]),
                        format!("{} ms", text_of(&a["duration_ms"])),
                        text_of(&a["outcome"]),
                        text_of(&a["status_code"]),
                        text_of(&a["error"]),
                    ]
                })
                .collect();
            out.list(
                &Value::Array(attempts),
                &["#", "STARTED", "DURATION", "OUTCOME", "STATUS", "ERROR"],
                rows,
            );
        }
        "redeliver" => {
            let sent = api
                .call(
                    Method::POST,
                    &format!("{base}/{}/redeliver", arg(args, "id")),
                    Some(&serde_json::json!({})),
                    &[],
                )
                .await?;
            let attempt = &sent["attempt"];
            let pairs = vec![
                ("notification_id", text_of(&sent["notification_id"])),
                ("status", text_of(&sent["status"])),
                ("outcome", text_of(&attempt["outcome"])),
                ("status_code", text_of(&attempt["status_code"])),
                ("error", text_of(&attempt["error"])),
            ];
            out.object(&sent, pairs);
        }
        _ => unreachable!("clap knows every verb"),
    }
    Ok(())
}
