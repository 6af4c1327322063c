//! `ledgerhook mirror`: the receiver SDK's reference app. It receives notifications
//! (verify, append to the inbox, answer `200`), applies them realm by realm with CDC
//! repair, and keeps a copy of every connected realm's entities; `--verify` compares the
//! copy with the server's CDC.

use anyhow::{bail, Context};
use clap::{Arg, ArgAction, ArgMatches, Command};
use ledgerhook_receiver::handler::{router, HandlerOptions};
use ledgerhook_receiver::inbox::Inbox;
use ledgerhook_receiver::mirror::{compare, Mirror};
use ledgerhook_receiver::worker::{Repair, Worker};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How often the worker looks at the inbox.
const POLL: Duration = Duration::from_millis(100);

/// The `mirror` subcommand and its options.
pub fn command() -> Command {
    Command::new("mirror")
        .about("Keep a local copy of connected realms' entities from notifications and CDC (the receiver SDK's reference app)")
        .arg(
            Arg::new("server")
                .long("server")
                .value_name("URL")
                .env("LEDGERHOOK_MIRROR_SERVER")
                .required(true)
                .help("Base URL of the server whose CDC repairs the copy (e.g. http://127.0.0.1:8080)"),
        )
        .arg(
            Arg::new("realm")
                .long("realm")
                .value_name("REALM=ACCESS_TOKEN")
                .action(ArgAction::Append)
                .required(true)
                .help("A connected realm and the app's access token for it (repeatable)"),
        )
        .arg(
            Arg::new("entities")
                .long("entities")
                .value_name("LIST")
                .default_value("all")
                .help("Entity types to copy, comma-separated, or all (every type CDC supports)"),
        )
        .arg(
            Arg::new("data")
                .long("data")
                .value_name("DIR")
                .default_value("./mirror")
                .help("Directory of the inbox (inbox.db) and the copy (mirror.db)"),
        )
        .arg(
            Arg::new("listen")
                .long("listen")
                .value_name("ADDR")
                .default_value("127.0.0.1:8090")
                .help("Address of the webhook endpoint"),
        )
        .arg(
            Arg::new("path")
                .long("path")
                .value_name("PATH")
                .default_value("/webhooks")
                .help("Path of the webhook endpoint"),
        )
        .arg(
            Arg::new("verifier-token")
                .long("verifier-token")
                .value_name("TOKEN")
                .env("LEDGERHOOK_MIRROR_VERIFIER_TOKEN")
                .hide_env_values(true)
                .action(ArgAction::Append)
                .help("Verifier token(s) accepted for intuit-signature"),
        )
        .arg(
            Arg::new("signing-secret")
                .long("signing-secret")
                .value_name("SECRET")
                .env("LEDGERHOOK_MIRROR_SIGNING_SECRET")
                .hide_env_values(true)
                .action(ArgAction::Append)
                .help("whsec_ secret(s) accepted for Standard Webhooks signatures"),
        )
        .arg(
            Arg::new("verify")
                .long("verify")
                .action(ArgAction::SetTrue)
                .help("Apply what the inbox holds, compare the copy with the server's CDC, and exit: 0 if equal, 1 if not"),
        )
}

/// Runs `ledgerhook mirror`.
pub fn run(args: &ArgMatches) -> anyhow::Result<()> {
    let options = Options::from_matches(args)?;
    let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
    runtime.block_on(async {
        std::fs::create_dir_all(&options.data)
            .with_context(|| format!("create the data directory {}", options.data.display()))?;
        let inbox = Inbox::open(&options.data.join("inbox.db")).await?;
        let mirror = Mirror::open(&options.data.join("mirror.db"))
            .await
            .context("open mirror.db")?;
        let worker = Worker::new(inbox.clone(), mirror.clone(), Some(options.repair.clone())).await?;
        if args.get_flag("verify") {
            return verify(&worker, &mirror, &options.repair).await;
        }
        let handler = HandlerOptions {
            verifier_tokens: strings(args, "verifier-token"),
            signing_secrets: strings(args, "signing-secret"),
            max_body_bytes: 10 << 20,
        };
        let app = router(&options.path, inbox, handler)?;
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .with_context(|| format!("listen on {}", options.listen))?;
        let shutdown = crate::shutdown_signal()?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let working = tokio::spawn(worker.run(POLL, async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|s| *s).await;
        }));
        eprintln!(
            "ledgerhook: listening on http://{}{}",
            listener.local_addr()?,
            options.path
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serve HTTP")?;
        let _ = stop.send(true);
        let _ = working.await;
        eprintln!("ledgerhook: mirror stopped");
        Ok(())
    })
}

async fn verify(worker: &Worker<Mirror>, mirror: &Mirror, repair: &Repair) -> anyhow::Result<()> {
    worker.run_once().await?;
    let mut realms: Vec<&String> = repair.tokens.keys().collect();
    realms.sort();
    let mut differences = 0;
    for realm in realms {
        let comparison = compare(mirror, repair, realm).await?;
        if comparison.differences.is_empty() {
            println!("realm {realm}: {} entities compared, equal", comparison.compared);
        } else {
            println!(
                "realm {realm}: {} entities compared, {} differences",
                comparison.compared,
                comparison.differences.len()
            );
            for difference in &comparison.differences {
                println!("  {difference}");
            }
        }
        differences += comparison.differences.len();
    }
    if differences > 0 {
        bail!("the copy differs from the server in {differences} entities");
    }
    Ok(())
}

struct Options {
    data: PathBuf,
    listen: SocketAddr,
    path: String,
    repair: Repair,
}

impl Options {
    fn from_matches(args: &ArgMatches) -> anyhow::Result<Options> {
        let mut tokens = HashMap::new();
        for pair in strings(args, "realm") {
            let Some((realm, token)) = pair
                .split_once('=')
                .filter(|(r, t)| !r.is_empty() && !t.is_empty())
            else {
                bail!(
                    "--realm: expected REALM=ACCESS_TOKEN, got \"{}\"",
                    pair.split('=').next().unwrap_or("")
                );
            };
            tokens.insert(realm.to_owned(), token.to_owned());
        }
        let entities = args.get_one::<String>("entities").expect("default");
        let entities: Vec<String> = if entities == "all" {
            ledgerhook_domain::entity::ENTITIES
                .iter()
                .filter(|e| e.cdc)
                .map(|e| e.name.to_owned())
                .collect()
        } else {
            let mut names = Vec::new();
            for name in entities.split(',').map(str::trim) {
                match ledgerhook_domain::entity::find(name) {
                    Some(spec) if spec.cdc => names.push(name.to_owned()),
                    Some(_) => bail!("--entities: CDC does not support {name}"),
                    None => bail!(
                        "--entities: unknown entity \"{name}\" (names are case-sensitive, e.g. Customer)"
                    ),
                }
            }
            names
        };
        let server = args.get_one::<String>("server").expect("required");
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            bail!("--server: expected an http:// or https:// URL, got \"{server}\"");
        }
        let listen = args.get_one::<String>("listen").expect("default");
        let listen = listen.parse().map_err(|_| {
            anyhow::anyhow!("--listen: \"{listen}\" is not an address such as 127.0.0.1:8090")
        })?;
        let path = args.get_one::<String>("path").expect("default").clone();
        if !path.starts_with('/') {
            bail!("--path: must start with /, got \"{path}\"");
        }
        Ok(Options {
            data: PathBuf::from(args.get_one::<String>("data").expect("default")),
            listen,
            path,
            repair: Repair::new(server, entities, tokens),
        })
    }
}

fn strings(args: &ArgMatches, name: &str) -> Vec<String> {
    args.get_many::<String>(name)
        .map(|values| values.cloned().collect())
        .unwrap_or_default()
}
