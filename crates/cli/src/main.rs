//! The `ledgerhook` command.
//!
//! - `ledgerhook serve`: the whole server in one process.
//! - `ledgerhook config`: prints the effective settings and where each came from.
//! - `ledgerhook demo`: a narrated tour on a temporary database.
//! - `ledgerhook listen`: a local endpoint for development that prints each event.
//! - `ledgerhook mirror`: the receiver SDK's reference app, a local copy of connected
//!   realms' entities.
//! - `ledgerhook relay`: the receiver SDK as a sidecar, forwarding each change to an app
//!   in any language.
//! - `ledgerhook realms|apps|webhooks|connections|events|notifications …`: a client of a
//!   running server; `ledgerhook completions SHELL`.

mod client;
mod demo;
mod listen;
mod mirror;
mod receiving;
mod relay;
mod settings;

use anyhow::Context;
use clap::{ArgMatches, Command};
use ledgerhook_server::{LogFormat, Server};
use std::process::ExitCode;

fn cli() -> Command {
    Command::new("ledgerhook")
        .version(env!("CARGO_PKG_VERSION"))
        .about("QuickBooks-style webhook notifications: aggregation, signed delivery, retries, CDC")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(settings::add_args(
            Command::new("serve").about("Run the HTTP API, aggregator, dispatcher and dashboard"),
        ))
        .subcommand(settings::add_args(
            Command::new("config").about("Print the effective settings and where each came from"),
        ))
        .subcommand(demo::command())
        .subcommand(listen::command())
        .subcommand(mirror::command())
        .subcommand(relay::command())
        .subcommands(client::commands())
}

/// The client commands' options may also come before the subcommand
/// (`ledgerhook --server URL realms list`): they are moved after it.
fn hoist_client_options(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut hoisted = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let arg = args[i].to_string_lossy();
        if arg == "--server" || arg == "--token" {
            hoisted.extend(args[i..(i + 2).min(args.len())].iter().cloned());
            i += 2;
        } else if arg.starts_with("--server=")
            || arg.starts_with("--token=")
            || arg == "--json"
            || arg == "--utc"
        {
            hoisted.push(args[i].clone());
            i += 1;
        } else {
            break;
        }
    }
    let is_client = args
        .get(i)
        .is_some_and(|name| client::is_client(&name.to_string_lossy()));
    if hoisted.is_empty() || !is_client {
        return args;
    }
    let mut reordered = vec![args[0].clone(), args[i].clone()];
    reordered.extend(hoisted);
    reordered.extend(args[i + 1..].iter().cloned());
    reordered
}

fn main() -> ExitCode {
    let matches = cli().get_matches_from(hoist_client_options(std::env::args_os().collect()));
    match matches.subcommand() {
        Some((name, args)) if client::is_client(name) => return client::run(name, args),
        Some(("completions", args)) => return client::completions(&mut cli(), args),
        _ => {}
    }
    let result = match matches.subcommand() {
        Some(("serve", args)) => serve(args),
        Some(("config", args)) => print_config(args),
        Some(("mirror", args)) => {
            init_logging();
            mirror::run(args)
        }
        Some(("listen", args)) => listen::run(args),
        Some(("demo", args)) => demo::run(args),
        Some(("relay", args)) => {
            init_logging();
            relay::run(args)
        }
        _ => unreachable!("clap requires a known subcommand"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ledgerhook: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_config(args: &ArgMatches) -> anyhow::Result<()> {
    let layered = settings::from_matches(args)?;
    settings::to_config(&layered)?;
    print!("{}", layered.describe());
    Ok(())
}

fn serve(args: &ArgMatches) -> anyhow::Result<()> {
    let layered = settings::from_matches(args)?;
    let config = settings::to_config(&layered)?;
    init_logging_as(config.log_format);
    let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
    runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        let server = Server::start(config).await?;
        if let Some(token) = &server.new_operator_token {
            eprintln!("ledgerhook: operator token (shown only this once; store it now): {token}");
        }
        eprintln!("ledgerhook: listening on http://{}", server.local_addr);
        server.run(shutdown).await.context("serve HTTP")?;
        eprintln!("ledgerhook: stopped");
        Ok(())
    })
}

/// Logs go to stderr as text; `LEDGERHOOK_LOG` takes a tracing filter (default `info`).
fn init_logging() {
    init_logging_as(LogFormat::Text);
}

/// Logs go to stderr in `format`: text, or one JSON object per line with the fields of
/// the spans it is in (an HTTP request's `request_id`).
fn init_logging_as(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEDGERHOOK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .init(),
    }
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is called (not
/// when the future is first polled), so that a signal arriving right after the server
/// says it is listening is not lost to the default action.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("install the SIGTERM handler")?;
    let ctrl_c = tokio::signal::ctrl_c();
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = ctrl_c => {},
            _ = terminate.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested; finishing requests in flight");
    })
}
