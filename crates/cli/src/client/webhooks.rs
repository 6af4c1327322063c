//! `webhooks set|get|delete|test|reactivate|recover`: an app's configuration per
//! environment.

use super::api::{Api, ClientError};
use super::output::{text_of, Output};
use super::resources::{deleted, env_arg, id_arg};
use super::{arg, json_arg};
use clap::{Arg, ArgMatches, Command};
use reqwest::Method;
use serde_json::{json, Value};

/// The `webhooks` command.
pub fn command() -> Command {
    Command::new("webhooks")
        .about("An app's webhook configuration per environment: set, get, delete, test, reactivate, recover")
        .subcommand_required(true)
        .subcommand(
            Command::new("set")
                .about("Set the configuration (it becomes active)")
                .arg(id_arg("app", "The app id"))
                .arg(env_arg())
                .arg(
                    Arg::new("url")
                        .long("url")
                        .required(true)
                        .help("The endpoint URL"),
                )
                .arg(
                    Arg::new("entities")
                        .long("entities")
                        .default_value("*")
                        .help("* or JSON such as {\"Customer\":[\"Create\"],\"Invoice\":\"*\"}"),
                )
                .arg(
                    Arg::new("format")
                        .long("format")
                        .value_parser(["legacy", "cloudevents"])
                        .help("Body format"),
                )
                .arg(
                    Arg::new("batch-window")
                        .long("batch-window")
                        .value_name("DURATION")
                        .help("Its own batch window"),
                )
                .arg(
                    Arg::new("ordering")
                        .long("ordering")
                        .value_parser(["strict", "best-effort"])
                        .help("Delivery ordering"),
                )
                .arg(
                    Arg::new("faults")
                        .long("faults")
                        .value_name("JSON")
                        .help("Fault injection (sandbox), e.g. {\"drop\":0.1,\"seed\":42}"),
                ),
        )
        .subcommand(
            Command::new("get")
                .about("Show the configuration")
                .arg(id_arg("app", "The app id"))
                .arg(env_arg()),
        )
        .subcommand(
            Command::new("delete")
                .about("Remove the configuration")
                .arg(id_arg("app", "The app id"))
                .arg(env_arg()),
        )
        .subcommand(
            Command::new("test")
                .about("Send a signed sample notification now")
                .arg(id_arg("app", "The app id"))
                .arg(env_arg())
                .arg(
                    Arg::new("realm")
                        .long("realm")
                        .help("The realm of the sample (default 0)"),
                ),
        )
        .subcommand(
            Command::new("reactivate")
                .about("Make a blacklisted or inactive configuration active")
                .arg(id_arg("app", "The app id"))
                .arg(env_arg()),
        )
        .subcommand(
            Command::new("recover")
                .about("Queue again every notification not delivered since a time")
                .arg(id_arg("app", "The app id"))
                .arg(env_arg())
                .arg(
                    Arg::new("since")
                        .long("since")
                        .required(true)
                        .value_name("TIME")
                        .help("RFC 3339 time"),
                ),
        )
}

/// Runs `webhooks verb …`.
pub async fn run(api: &Api, out: Output, verb: &str, args: &ArgMatches) -> Result<(), ClientError> {
    let path = format!(
        "/api/v1/apps/{}/webhooks/{}",
        arg(args, "app"),
        arg(args, "environment")
    );
    match verb {
        "set" => {
            let entities = arg(args, "entities");
            let entities = if entities == "*" {
                json!("*")
            } else {
                json_arg(args, "entities")?.expect("has a default")
            };
            let mut body = json!({"url": arg(args, "url"), "entities": entities});
            for (flag, field) in [
                ("format", "format"),
                ("batch-window", "batch_window"),
                ("ordering", "ordering"),
            ] {
                if let Some(value) = args.get_one::<String>(flag) {
                    body[field] = json!(value);
                }
            }
            if let Some(faults) = json_arg(args, "faults")? {
                body["faults"] = faults;
            }
            let config = api.call(Method::PUT, &path, Some(&body), &[]).await?;
            config_object(out, &config);
        }
        "get" => config_object(out, &api.call(Method::GET, &path, None, &[]).await?),
        "delete" => {
            api.call(Method::DELETE, &path, None, &[]).await?;
            deleted(
                out,
                &format!(
                    "{} configuration of app {}",
                    arg(args, "environment"),
                    arg(args, "app")
                ),
            );
        }
        "reactivate" => config_object(
            out,
            &api.call(Method::POST, &format!("{path}/reactivate"), Some(&json!({})), &[])
                .await?,
        ),
        "test" => {
            let mut body = json!({});
            if let Some(realm) = args.get_one::<String>("realm") {
                body["realm_id"] = json!(realm);
            }
            let sent = api
                .call(Method::POST, &format!("{path}/test"), Some(&body), &[])
                .await?;
            let attempt = &sent["attempt"];
            let pairs = vec![
                ("notification_id", text_of(&sent["notification_id"])),
                ("outcome", text_of(&attempt["outcome"])),
                ("status_code", text_of(&attempt["status_code"])),
                ("duration_ms", text_of(&attempt["duration_ms"])),
                ("error", text_of(&attempt["error"])),
            ];
            out.object(&sent, pairs);
        }
        "recover" => {
            let body = json!({"since": arg(args, "since")});
            let queued = api
                .call(Method::POST, &format!("{path}/recover"), Some(&body), &[])
                .await?;
            out.object(&queued, vec![("queued", text_of(&queued["queued"]))]);
        }
        _ => unreachable!("clap knows every verb"),
    }
    Ok(())
}

fn config_object(out: Output, config: &Value) {
    let mut pairs = Vec::new();
    for key in [
        "app_id",
        "environment",
        "url",
        "entities",
        "format",
        "batch_window",
        "ordering",
        "state",
    ] {
        pairs.push((key, text_of(&config[key])));
    }
    pairs.push(("state_since", out.time(&config["state_since"])));
    pairs.push(("last_error", text_of(&config["last_error"])));
    pairs.push(("faults", text_of(&config["faults"])));
    pairs.push(("updated_at", out.time(&config["updated_at"])));
    out.object(config, pairs);
}
