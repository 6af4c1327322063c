//! The options `mirror` and `relay` share: where notifications arrive and how they are
//! verified, which server repairs them through CDC with which credentials, and how the
//! worker treats a failing realm.

use anyhow::{bail, Context};
use clap::{Arg, ArgAction, ArgMatches, Command};
use ledgerhook_domain::duration::{parse_byte_size, parse_duration};
use ledgerhook_receiver::handler::HandlerOptions;
use ledgerhook_receiver::worker::{Apply, OAuthClient, RealmCredentials, Repair, Worker, WorkerOptions};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The largest notification body accepted by default.
pub const DEFAULT_MAX_BODY: &str = "10MiB";

/// Adds the webhook endpoint's options (`--listen`, `--path`, `--verifier-token`,
/// `--signing-secret`) to `command`: `mirror`, `relay` and `listen` share them.
pub fn endpoint_args(command: Command) -> Command {
    command
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
                .env("LEDGERHOOK_VERIFIER_TOKEN")
                .hide_env_values(true)
                .action(ArgAction::Append)
                .help("Verifier token(s) accepted for intuit-signature"),
        )
        .arg(
            Arg::new("signing-secret")
                .long("signing-secret")
                .value_name("SECRET")
                .env("LEDGERHOOK_SIGNING_SECRET")
                .hide_env_values(true)
                .action(ArgAction::Append)
                .help("whsec_ secret(s) accepted for Standard Webhooks signatures"),
        )
}

/// The endpoint's address and path from [`endpoint_args`], checked.
pub fn endpoint(args: &ArgMatches) -> anyhow::Result<(SocketAddr, String)> {
    let listen = args.get_one::<String>("listen").expect("default");
    let listen = listen
        .parse()
        .map_err(|_| anyhow::anyhow!("--listen: \"{listen}\" is not an address such as 127.0.0.1:8090"))?;
    let path = args.get_one::<String>("path").expect("default").clone();
    if !path.starts_with('/') {
        bail!("--path: must start with /, got \"{path}\"");
    }
    Ok((listen, path))
}

/// Adds the shared options to `command`; `data` is the default data directory.
pub fn add_args(command: Command, data: &'static str) -> Command {
    endpoint_args(command)
        .arg(
            Arg::new("server")
                .long("server")
                .value_name("URL")
                .env("LEDGERHOOK_SERVER")
                .help("Base URL of the server whose CDC repairs missed notifications (e.g. http://127.0.0.1:8080, or https://quickbooks.api.intuit.com)"),
        )
        .arg(
            Arg::new("realm")
                .long("realm")
                .value_name("REALM[=ACCESS_TOKEN]")
                .action(ArgAction::Append)
                .help("A connected realm, with an access token for it (repeatable); with --refresh-token the access token may be left out"),
        )
        .arg(
            Arg::new("refresh-token")
                .long("refresh-token")
                .value_name("REALM=REFRESH_TOKEN")
                .action(ArgAction::Append)
                .help("The realm's refresh token: access tokens are renewed with it before they expire (needs --client-id and --client-secret)"),
        )
        .arg(
            Arg::new("client-id")
                .long("client-id")
                .value_name("ID")
                .env("LEDGERHOOK_CLIENT_ID")
                .help("The app's OAuth client id, for refreshing access tokens"),
        )
        .arg(
            Arg::new("client-secret")
                .long("client-secret")
                .value_name("SECRET")
                .env("LEDGERHOOK_CLIENT_SECRET")
                .hide_env_values(true)
                .help("The app's OAuth client secret, for refreshing access tokens"),
        )
        .arg(
            Arg::new("token-url")
                .long("token-url")
                .value_name("URL")
                .help("The OAuth token endpoint (default: SERVER/oauth2/v1/tokens/bearer; QuickBooks: https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer)"),
        )
        .arg(
            Arg::new("entities")
                .long("entities")
                .value_name("LIST")
                .default_value("all")
                .help("Entity types applied and repaired, comma-separated, or all; notifications about others are ignored"),
        )
        .arg(
            Arg::new("data")
                .long("data")
                .value_name("DIR")
                .default_value(data)
                .help("Directory of the durable inbox and the worker's state"),
        )
        .arg(
            Arg::new("max-body-size")
                .long("max-body-size")
                .value_name("SIZE")
                .default_value(DEFAULT_MAX_BODY)
                .help("Larger notifications are answered 413"),
        )
        .arg(
            Arg::new("look-back-margin")
                .long("look-back-margin")
                .value_name("DURATION")
                .default_value("60s")
                .help("How far before a realm's previous notification its CDC repair looks again (clock skew)"),
        )
        .arg(
            Arg::new("full-repair-every")
                .long("full-repair-every")
                .value_name("DURATION")
                .default_value("24h")
                .help("How often every realm is repaired through CDC (also at start when the last full repair is older; SIGUSR1 asks for one now)"),
        )
        .arg(
            Arg::new("full-repair-look-back")
                .long("full-repair-look-back")
                .value_name("DURATION")
                .default_value("30d")
                .help("How far back a full repair looks (at most CDC's 30 days, less an hour)"),
        )
        .arg(
            Arg::new("max-tries")
                .long("max-tries")
                .value_name("N")
                .default_value("20")
                .value_parser(clap::value_parser!(u32).range(1..))
                .help("Failed tries of a realm after which its pending changes become dead letters"),
        )
        .arg(
            Arg::new("retry-cap")
                .long("retry-cap")
                .value_name("DURATION")
                .default_value("60s")
                .help("The longest wait between tries of a failing realm (the wait starts at 200ms and doubles)"),
        )
}

/// The shared options, checked.
pub struct Receiving {
    /// The data directory.
    pub data: PathBuf,
    /// The endpoint's address.
    pub listen: SocketAddr,
    /// The endpoint's path.
    pub path: String,
    /// What the endpoint verifies.
    pub handler: HandlerOptions,
    /// CDC repair, when `--server` was given.
    pub repair: Option<Repair>,
    /// The worker's options.
    pub worker: WorkerOptions,
    /// The entity types applied.
    pub entities: Vec<String>,
}

/// Every value of a repeatable option.
pub fn strings(args: &ArgMatches, name: &str) -> Vec<String> {
    args.get_many::<String>(name)
        .map(|values| values.cloned().collect())
        .unwrap_or_default()
}

fn duration(args: &ArgMatches, name: &str) -> anyhow::Result<Duration> {
    let text = args.get_one::<String>(name).expect("default");
    parse_duration(text).map_err(|e| anyhow::anyhow!("--{name}: {e}"))
}

fn size(args: &ArgMatches, name: &str) -> anyhow::Result<usize> {
    let text = args.get_one::<String>(name).expect("default");
    let bytes = parse_byte_size(text).map_err(|e| anyhow::anyhow!("--{name}: {e}"))?;
    usize::try_from(bytes).map_err(|_| anyhow::anyhow!("--{name}: {text} is too large"))
}

fn pairs(args: &ArgMatches, name: &str, shape: &str) -> anyhow::Result<Vec<(String, Option<String>)>> {
    let mut pairs = Vec::new();
    for given in strings(args, name) {
        let (realm, value) = match given.split_once('=') {
            Some((realm, value)) => (realm, Some(value)),
            None => (given.as_str(), None),
        };
        if realm.is_empty() || value.is_some_and(str::is_empty) {
            bail!("--{name}: expected {shape}, got \"{realm}=…\"");
        }
        pairs.push((realm.to_owned(), value.map(str::to_owned)));
    }
    Ok(pairs)
}

fn entities(args: &ArgMatches) -> anyhow::Result<Vec<String>> {
    let given = args.get_one::<String>("entities").expect("default");
    if given == "all" {
        return Ok(ledgerhook_domain::entity::ENTITIES
            .iter()
            .filter(|e| e.cdc)
            .map(|e| e.name.to_owned())
            .collect());
    }
    let mut names = Vec::new();
    for name in given.split(',').map(str::trim) {
        match ledgerhook_domain::entity::find(name) {
            Some(spec) if spec.cdc => names.push(name.to_owned()),
            Some(_) => bail!("--entities: CDC does not support {name}"),
            None => bail!("--entities: unknown entity \"{name}\" (names are case-sensitive, e.g. Customer)"),
        }
    }
    Ok(names)
}

fn url(name: &str, given: &str) -> anyhow::Result<String> {
    if !(given.starts_with("http://") || given.starts_with("https://")) {
        bail!("--{name}: expected an http:// or https:// URL, got \"{given}\"");
    }
    Ok(given.trim_end_matches('/').to_owned())
}

impl Receiving {
    /// Checks the shared options; `needs_server` makes `--server` and a realm required.
    pub fn from_matches(args: &ArgMatches, needs_server: bool) -> anyhow::Result<Receiving> {
        let entities = entities(args)?;
        let mut credentials: HashMap<String, RealmCredentials> = HashMap::new();
        for (realm, access) in pairs(args, "realm", "REALM or REALM=ACCESS_TOKEN")? {
            credentials.entry(realm).or_default().access_token = access;
        }
        for (realm, refresh) in pairs(args, "refresh-token", "REALM=REFRESH_TOKEN")? {
            let Some(refresh) = refresh else {
                bail!("--refresh-token: expected REALM=REFRESH_TOKEN, got \"{realm}\"");
            };
            credentials.entry(realm).or_default().refresh_token = Some(refresh);
        }
        let server = args
            .get_one::<String>("server")
            .map(|s| url("server", s))
            .transpose()?;
        if needs_server && server.is_none() {
            bail!("--server: required (the URL of the server whose CDC repairs the copy)");
        }
        if needs_server && credentials.is_empty() {
            bail!("--realm: give at least one connected realm (REALM=ACCESS_TOKEN)");
        }
        let client_id = args.get_one::<String>("client-id").cloned();
        let client_secret = args.get_one::<String>("client-secret").cloned();
        let wants_refresh = credentials.values().any(|c| c.refresh_token.is_some());
        for (realm, given) in &credentials {
            if given.access_token.is_none() && given.refresh_token.is_none() {
                bail!(
                    "--realm {realm}: give its access token (REALM=ACCESS_TOKEN) or a --refresh-token for it"
                );
            }
        }
        let oauth = match (client_id, client_secret) {
            (Some(client_id), Some(client_secret)) => {
                let token_url = match args.get_one::<String>("token-url") {
                    Some(given) => url("token-url", given)?,
                    None => match &server {
                        Some(server) => format!("{server}/oauth2/v1/tokens/bearer"),
                        None => bail!("--token-url: required without --server"),
                    },
                };
                Some(OAuthClient {
                    client_id,
                    client_secret,
                    token_url,
                })
            }
            (None, None) if wants_refresh => {
                bail!("--refresh-token needs the app's --client-id and --client-secret")
            }
            (None, None) => None,
            _ => bail!("--client-id and --client-secret go together"),
        };
        if server.is_none() && !credentials.is_empty() {
            bail!("--realm needs --server: the server whose CDC repairs the realm");
        }
        let full_look_back = duration(args, "full-repair-look-back")?;
        let repair = server.map(|server| {
            let mut repair = Repair::new(&server, entities.clone(), HashMap::new());
            repair.credentials = credentials;
            repair.oauth = oauth;
            repair
        });
        let mut repair = repair;
        if let Some(repair) = &mut repair {
            repair.margin = duration(args, "look-back-margin")?;
            repair.look_back = full_look_back.min(repair.look_back);
        }
        let (listen, path) = endpoint(args)?;
        let filtered = args.get_one::<String>("entities").expect("default") != "all";
        let worker = WorkerOptions {
            entities: filtered.then(|| entities.clone()),
            max_tries: *args.get_one::<u32>("max-tries").expect("default"),
            backoff_cap: duration(args, "retry-cap")?,
            full_repair_every: duration(args, "full-repair-every")?,
            poll: Duration::from_millis(500),
            ..WorkerOptions::default()
        };
        if worker.full_repair_every.is_zero() {
            bail!("--full-repair-every: must be more than 0");
        }
        let (verifier_tokens, signing_secrets) =
            (strings(args, "verifier-token"), strings(args, "signing-secret"));
        Ok(Receiving {
            data: PathBuf::from(args.get_one::<String>("data").expect("default")),
            listen,
            path,
            handler: HandlerOptions {
                verifier_tokens,
                signing_secrets,
                max_body_bytes: size(args, "max-body-size")?,
            },
            repair,
            worker,
            entities,
        })
    }

    /// Refuses to receive without a way to verify what arrives.
    pub fn require_keys(&self) -> anyhow::Result<()> {
        if self.handler.verifier_tokens.is_empty() && self.handler.signing_secrets.is_empty() {
            bail!("give --verifier-token (intuit-signature) or --signing-secret (Standard Webhooks): notifications must be verified");
        }
        Ok(())
    }

    /// Creates the data directory.
    pub fn create_data_dir(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.data)
            .with_context(|| format!("create the data directory {}", self.data.display()))
    }
}

/// Serves `app` (the webhook endpoint and any routes beside it) on the endpoint's address
/// while `worker` runs, a full repair on each SIGUSR1, until Ctrl-C or SIGTERM; then lets
/// the worker finish its rounds. `banner` is printed after the address.
pub async fn serve<A: Apply>(
    options: &Receiving,
    app: axum::Router,
    worker: Worker<A>,
    banner: &str,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("listen on {}", options.listen))?;
    let shutdown = crate::shutdown_signal()?;
    let mut repairs = full_repair_requests()?;
    let asker = worker.clone();
    tokio::spawn(async move {
        while repairs.recv().await.is_some() {
            asker.request_full_repair();
        }
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let working = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    eprintln!(
        "ledgerhook: listening on http://{}{}",
        listener.local_addr()?,
        options.path
    );
    if !banner.is_empty() {
        eprintln!("ledgerhook: {banner}");
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serve HTTP")?;
    let _ = stop.send(());
    let _ = working.await;
    Ok(())
}

/// Resolves each time SIGUSR1 arrives (never elsewhere): the on-demand full repair.
pub fn full_repair_requests() -> anyhow::Result<tokio::sync::mpsc::Receiver<()>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        let mut signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
            .context("install the SIGUSR1 handler")?;
        tokio::spawn(async move {
            while signal.recv().await.is_some() {
                let _ = tx.try_send(());
            }
        });
    }
    #[cfg(not(unix))]
    drop(tx);
    Ok(rx)
}
