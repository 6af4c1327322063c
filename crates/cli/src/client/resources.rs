//! `realms`, `apps` and `connections`: each verb one call of the API.

use super::api::{Api, ClientError};
use super::output::{text_of, Output};
use super::{arg, list_args, paging};
use clap::{Arg, ArgAction, ArgMatches, Command};
use reqwest::Method;
use serde_json::{json, Value};

pub(super) fn id_arg(name: &'static str, help: &'static str) -> Arg {
    let value_name = match name {
        "app" => "APP",
        "realm" => "REALM",
        _ => "ID",
    };
    Arg::new(name).required(true).value_name(value_name).help(help)
}

pub(super) fn env_arg() -> Arg {
    Arg::new("environment")
        .required(true)
        .value_parser(["sandbox", "production"])
        .help("sandbox or production")
}

/// The `realms`, `apps`, `connections` and (from `webhooks.rs`) `webhooks` commands.
pub fn commands() -> Vec<Command> {
    let realms = Command::new("realms")
        .about("Companies (realms): create, list, get, delete")
        .subcommand_required(true)
        .subcommand(
            Command::new("create")
                .about("Create a company")
                .arg(Arg::new("name").long("name").required(true).help("Its name"))
                .arg(
                    Arg::new("environment")
                        .long("environment")
                        .default_value("sandbox")
                        .value_parser(["sandbox", "production"])
                        .help("sandbox or production"),
                ),
        )
        .subcommand(list_args(Command::new("list").about("List companies")))
        .subcommand(
            Command::new("get")
                .about("Show a company")
                .arg(id_arg("realm", "The realm id")),
        )
        .subcommand(
            Command::new("delete")
                .about("Delete a company")
                .arg(id_arg("realm", "The realm id")),
        );
    let apps = Command::new("apps")
        .about("Apps: create, list, get, delete, rotate a secret")
        .subcommand_required(true)
        .subcommand(
            Command::new("create")
                .about("Create an app; its secrets are printed once")
                .arg(Arg::new("name").long("name").required(true).help("Its name"))
                .arg(
                    Arg::new("redirect-uri")
                        .long("redirect-uri")
                        .action(ArgAction::Append)
                        .help("An OAuth redirect URI (repeatable)"),
                ),
        )
        .subcommand(list_args(Command::new("list").about("List apps")))
        .subcommand(
            Command::new("get")
                .about("Show an app (no secrets)")
                .arg(id_arg("app", "The app id")),
        )
        .subcommand(
            Command::new("delete")
                .about("Delete an app")
                .arg(id_arg("app", "The app id")),
        )
        .subcommand(
            Command::new("rotate")
                .about("Rotate a secret; the old one keeps working for the grace period")
                .arg(id_arg("app", "The app id"))
                .arg(
                    Arg::new("secret")
                        .required(true)
                        .value_parser(["signing_secret", "verifier_token"])
                        .help("signing_secret or verifier_token"),
                )
                .arg(
                    Arg::new("grace")
                        .long("grace")
                        .value_name("DURATION")
                        .help("How long the old value stays valid (default 24h)"),
                ),
        );
    let connections = Command::new("connections")
        .about("An app's connections to realms: create, list, delete")
        .subcommand_required(true)
        .subcommand(
            Command::new("create")
                .about("Connect an app to a realm; prints its tokens")
                .arg(id_arg("app", "The app id"))
                .arg(
                    Arg::new("realm")
                        .long("realm")
                        .required(true)
                        .help("The realm id"),
                ),
        )
        .subcommand(list_args(
            Command::new("list")
                .about("List an app's connections")
                .arg(id_arg("app", "The app id")),
        ))
        .subcommand(
            Command::new("delete")
                .about("Disconnect (revokes the realm's tokens for the app)")
                .arg(id_arg("app", "The app id"))
                .arg(id_arg("realm", "The realm id")),
        );
    vec![realms, apps, connections, super::webhooks::command()]
}

/// Runs `resource verb …`.
pub async fn run(api: &Api, out: Output, resource: &str, args: &ArgMatches) -> Result<(), ClientError> {
    let (verb, args) = args.subcommand().expect("clap requires a verb");
    match (resource, verb) {
        ("realms", "create") => {
            let body = json!({"name": arg(args, "name"), "environment": arg(args, "environment")});
            let realm = api.call(Method::POST, "/api/v1/realms", Some(&body), &[]).await?;
            realm_object(out, &realm);
        }
        ("realms", "list") => {
            let (limit, all) = paging(args);
            let realms = api.list("/api/v1/realms", &[], limit, all).await?;
            let rows = realms
                .iter()
                .map(|r| {
                    vec![
                        text_of(&r["id"]),
                        text_of(&r["name"]),
                        text_of(&r["environment"]),
                        out.time(&r["created_at"]),
                    ]
                })
                .collect();
            out.list(
                &Value::Array(realms),
                &["ID", "NAME", "ENVIRONMENT", "CREATED"],
                rows,
            );
        }
        ("realms", "get") => {
            let realm = api
                .call(
                    Method::GET,
                    &format!("/api/v1/realms/{}", arg(args, "realm")),
                    None,
                    &[],
                )
                .await?;
            realm_object(out, &realm);
        }
        ("realms", "delete") => {
            api.call(
                Method::DELETE,
                &format!("/api/v1/realms/{}", arg(args, "realm")),
                None,
                &[],
            )
            .await?;
            deleted(out, &format!("realm {}", arg(args, "realm")));
        }
        ("apps", "create") => {
            let uris: Vec<&String> = args
                .get_many::<String>("redirect-uri")
                .map(|v| v.collect())
                .unwrap_or_default();
            let body = json!({"name": arg(args, "name"), "redirect_uris": uris});
            let app = api.call(Method::POST, "/api/v1/apps", Some(&body), &[]).await?;
            if !out.json {
                eprintln!("ledgerhook: these secrets are shown only now; store them before you go on");
            }
            let pairs = [
                "id",
                "name",
                "client_id",
                "client_secret",
                "verifier_token",
                "signing_secret",
                "api_key",
            ]
            .into_iter()
            .map(|k| (k, text_of(&app[k])))
            .collect();
            out.object(&app, pairs);
        }
        ("apps", "list") => {
            let (limit, all) = paging(args);
            let apps = api.list("/api/v1/apps", &[], limit, all).await?;
            let rows = apps
                .iter()
                .map(|a| {
                    vec![
                        text_of(&a["id"]),
                        text_of(&a["name"]),
                        text_of(&a["client_id"]),
                        out.time(&a["created_at"]),
                    ]
                })
                .collect();
            out.list(&Value::Array(apps), &["ID", "NAME", "CLIENT ID", "CREATED"], rows);
        }
        ("apps", "get") => {
            let app = api
                .call(
                    Method::GET,
                    &format!("/api/v1/apps/{}", arg(args, "app")),
                    None,
                    &[],
                )
                .await?;
            let pairs = vec![
                ("id", text_of(&app["id"])),
                ("name", text_of(&app["name"])),
                ("client_id", text_of(&app["client_id"])),
                ("redirect_uris", text_of(&app["redirect_uris"])),
                ("created_at", out.time(&app["created_at"])),
            ];
            out.object(&app, pairs);
        }
        ("apps", "delete") => {
            api.call(
                Method::DELETE,
                &format!("/api/v1/apps/{}", arg(args, "app")),
                None,
                &[],
            )
            .await?;
            deleted(out, &format!("app {}", arg(args, "app")));
        }
        ("apps", "rotate") => {
            let mut body = json!({});
            if let Some(grace) = args.get_one::<String>("grace") {
                body["grace"] = json!(grace);
            }
            let path = format!(
                "/api/v1/apps/{}/secrets/{}/rotate",
                arg(args, "app"),
                arg(args, "secret")
            );
            let rotated = api.call(Method::POST, &path, Some(&body), &[]).await?;
            if !out.json {
                eprintln!("ledgerhook: the new secret is shown only now; store it before you go on");
            }
            let pairs = rotated
                .as_object()
                .map(|o| o.iter().map(|(k, v)| (k.as_str(), text_of(v))).collect())
                .unwrap_or_default();
            out.object(&rotated, pairs);
        }
        ("connections", "create") => {
            let body = json!({"realm_id": arg(args, "realm")});
            let path = format!("/api/v1/apps/{}/connections", arg(args, "app"));
            let grant = api.call(Method::POST, &path, Some(&body), &[]).await?;
            let pairs = ["realm_id", "access_token", "refresh_token", "expires_in"]
                .into_iter()
                .map(|k| (k, text_of(&grant[k])))
                .collect();
            out.object(&grant, pairs);
        }
        ("connections", "list") => {
            let (limit, all) = paging(args);
            let path = format!("/api/v1/apps/{}/connections", arg(args, "app"));
            let list = api.list(&path, &[], limit, all).await?;
            let rows = list
                .iter()
                .map(|c| {
                    vec![
                        text_of(&c["realm_id"]),
                        text_of(&c["environment"]),
                        out.time(&c["created_at"]),
                    ]
                })
                .collect();
            out.list(&Value::Array(list), &["REALM", "ENVIRONMENT", "CONNECTED"], rows);
        }
        ("connections", "delete") => {
            let path = format!(
                "/api/v1/apps/{}/connections/{}",
                arg(args, "app"),
                arg(args, "realm")
            );
            api.call(Method::DELETE, &path, None, &[]).await?;
            deleted(
                out,
                &format!(
                    "connection of app {} to realm {}",
                    arg(args, "app"),
                    arg(args, "realm")
                ),
            );
        }
        ("webhooks", verb) => super::webhooks::run(api, out, verb, args).await?,
        _ => unreachable!("clap knows every verb"),
    }
    Ok(())
}

fn realm_object(out: Output, realm: &Value) {
    let pairs = vec![
        ("id", text_of(&realm["id"])),
        ("name", text_of(&realm["name"])),
        ("environment", text_of(&realm["environment"])),
        ("created_at", out.time(&realm["created_at"])),
    ];
    out.object(realm, pairs);
}

/// A `204` as people or scripts read it.
pub(super) fn deleted(out: Output, what: &str) {
    if out.json {
        println!("{}", json!({"deleted": what}));
    } else {
        println!("deleted {what}");
    }
}
