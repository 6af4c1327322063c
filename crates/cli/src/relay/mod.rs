//! `ledgerhook relay`: the receiver SDK for apps in any language. A sidecar that
//! receives notifications (verify, durable inbox, `200`), repairs gaps through CDC, and
//! POSTs each change to `--forward-to` as one signed JSON request, per realm in
//! `lastUpdated` order, each at most once after a `2xx`, retried with back-off
//! otherwise (realms independent).
//!
//! On its listen address beside the webhook endpoint:
//! - `GET /status`: per realm the last applied `lastUpdated`, queue depth, lag, failures
//!   and why, dead letters; and the inbox's depth;
//! - `GET /dead-letters`, `POST /dead-letters/retry` (`?realm=` for one realm);
//! - `POST /repair`: a full CDC repair now (as SIGUSR1).

mod forward;
mod status;

use crate::receiving::{self, Receiving};
use anyhow::Context;
use clap::{Arg, ArgMatches, Command};
use forward::Forward;
use ledgerhook_domain::duration::parse_duration;
use ledgerhook_receiver::handler::router;
use ledgerhook_receiver::inbox::Inbox;
use ledgerhook_receiver::worker::Worker;

/// The `relay` subcommand and its options.
pub fn command() -> Command {
    receiving::add_args(
        Command::new("relay").about(
            "Receive notifications, keep them durably, repair gaps through CDC, and POST each change to your app in order (the receiver SDK for any language)",
        ),
        "./relay",
    )
    .arg(
        Arg::new("forward-to")
            .long("forward-to")
            .value_name("URL")
            .required(true)
            .help("Your app's URL: each change is POSTed there as one JSON object"),
    )
    .arg(
        Arg::new("forward-secret")
            .long("forward-secret")
            .value_name("SECRET")
            .env("LEDGERHOOK_FORWARD_SECRET")
            .hide_env_values(true)
            .help("whsec_ secret the forwarded requests are signed with (Standard Webhooks headers)"),
    )
    .arg(
        Arg::new("forward-timeout")
            .long("forward-timeout")
            .value_name("DURATION")
            .default_value("10s")
            .help("How long the app may take to answer a forwarded change"),
    )
}

/// Runs `ledgerhook relay`.
pub fn run(args: &ArgMatches) -> anyhow::Result<()> {
    let options = Receiving::from_matches(args, false)?;
    options.require_keys()?;
    let forward_to = args.get_one::<String>("forward-to").expect("required");
    if !(forward_to.starts_with("http://") || forward_to.starts_with("https://")) {
        anyhow::bail!("--forward-to: expected an http:// or https:// URL, got \"{forward_to}\"");
    }
    let timeout = args.get_one::<String>("forward-timeout").expect("default");
    let timeout = parse_duration(timeout).map_err(|e| anyhow::anyhow!("--forward-timeout: {e}"))?;
    let forward = Forward::new(
        forward_to,
        args.get_one::<String>("forward-secret").map(String::as_str),
        timeout,
    )?;
    let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
    runtime.block_on(async {
        options.create_data_dir()?;
        let inbox = Inbox::open(&options.data.join("inbox.db")).await?;
        let worker = Worker::with_options(
            inbox.clone(),
            forward,
            options.repair.clone(),
            options.worker.clone(),
        )
        .await?;
        let app =
            router(&options.path, inbox, options.handler.clone())?.merge(status::router(worker.clone()));
        let banner = format!("forwarding each change to {forward_to}");
        receiving::serve(&options, app, worker, &banner).await?;
        eprintln!("ledgerhook: relay stopped");
        Ok(())
    })
}
