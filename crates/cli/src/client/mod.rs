//! `ledgerhook` as the command line of a running server (SPEC §9): `realms`, `apps`,
//! `webhooks`, `connections`, `events`, `notifications` with the verbs of their API,
//! human tables by default and `--json` for exactly the API's JSON, and `completions`.
//!
//! Exit codes: 0 success, 1 the server refused (its message printed), 2 bad arguments,
//! 3 the server unreachable.

mod api;
mod emit;
mod notifications;
mod output;
mod resources;
mod webhooks;

use api::{Api, ClientError};
use clap::{Arg, ArgAction, ArgMatches, Command};
use output::Output;
use std::process::ExitCode;

/// The default server.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// The options every client command takes.
fn with_connection_args(command: Command) -> Command {
    command
        .arg(
            Arg::new("server")
                .long("server")
                .value_name("URL")
                .env("LEDGERHOOK_SERVER")
                .default_value(DEFAULT_SERVER)
                .global(true)
                .help("The server's base URL"),
        )
        .arg(
            Arg::new("token")
                .long("token")
                .value_name("TOKEN")
                .env("LEDGERHOOK_TOKEN")
                .hide_env_values(true)
                .global(true)
                .help("The operator token or an app's api_key"),
        )
        .arg(
            Arg::new("json")
                .long("json")
                .action(ArgAction::SetTrue)
                .global(true)
                .help("Print exactly the API's JSON"),
        )
        .arg(
            Arg::new("utc")
                .long("utc")
                .action(ArgAction::SetTrue)
                .global(true)
                .help("Show times in UTC instead of local time"),
        )
}

/// The client subcommands.
pub fn commands() -> Vec<Command> {
    let mut commands: Vec<Command> = resources::commands()
        .into_iter()
        .chain([notifications::command(), emit::command()])
        .map(with_connection_args)
        .collect();
    commands.push(
        Command::new("completions")
            .about("Print the shell completion script for bash, zsh or fish")
            .arg(
                Arg::new("shell")
                    .required(true)
                    .value_parser(["bash", "zsh", "fish"])
                    .help("The shell"),
            ),
    );
    commands
}

/// Whether `name` is a client subcommand.
pub fn is_client(name: &str) -> bool {
    matches!(
        name,
        "realms" | "apps" | "webhooks" | "connections" | "events" | "notifications"
    )
}

/// Prints the completion script of `cli` for the chosen shell.
pub fn completions(cli: &mut Command, args: &ArgMatches) -> ExitCode {
    let shell = match args.get_one::<String>("shell").map(String::as_str) {
        Some("bash") => clap_complete::Shell::Bash,
        Some("zsh") => clap_complete::Shell::Zsh,
        _ => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, cli, "ledgerhook", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// Runs client subcommand `name`.
pub fn run(name: &str, args: &ArgMatches) -> ExitCode {
    let output = Output {
        json: args.get_flag("json"),
        utc: args.get_flag("utc"),
    };
    let server = args
        .get_one::<String>("server")
        .map_or(DEFAULT_SERVER, String::as_str);
    let token = args.get_one::<String>("token").cloned();
    let result = Api::new(server, token).and_then(|api| {
        let runtime = tokio::runtime::Runtime::new()
            .map_err(|e| ClientError::Usage(format!("cannot start the async runtime: {e}")))?;
        runtime.block_on(async {
            match name {
                "notifications" => notifications::run(&api, output, args).await,
                "events" => emit::run(&api, output, args).await,
                _ => resources::run(&api, output, name, args).await,
            }
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ledgerhook: error: {err}");
            err.exit_code()
        }
    }
}

/// The value of a required argument (clap checks presence).
fn arg<'a>(args: &'a ArgMatches, name: &str) -> &'a str {
    args.get_one::<String>(name)
        .map(String::as_str)
        .expect("required by clap")
}

/// Parses a JSON argument, or a usage error naming it.
fn json_arg(args: &ArgMatches, name: &str) -> Result<Option<serde_json::Value>, ClientError> {
    args.get_one::<String>(name)
        .map(|text| {
            serde_json::from_str(text).map_err(|e| ClientError::Usage(format!("--{name}: not JSON: {e}")))
        })
        .transpose()
}

/// `--limit` and `--all` of list commands.
fn list_args(command: Command) -> Command {
    command
        .arg(
            Arg::new("limit")
                .long("limit")
                .value_name("N")
                .default_value("100")
                .value_parser(clap::value_parser!(u32).range(1..=1000))
                .help("Items per page (1-1000)"),
        )
        .arg(
            Arg::new("all")
                .long("all")
                .action(ArgAction::SetTrue)
                .help("Follow the cursors through every page"),
        )
}

/// `--limit` and `--all` as given.
fn paging(args: &ArgMatches) -> (u32, bool) {
    (
        *args.get_one::<u32>("limit").expect("default"),
        args.get_flag("all"),
    )
}
