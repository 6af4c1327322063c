//! `ledgerhook mirror`: the receiver SDK's reference app. It receives notifications
//! (verify, append to the inbox, answer `200`), applies them realm by realm with CDC
//! repair, and keeps a copy of every connected realm's entities; `--verify` compares the
//! copy with the server's CDC.

mod copy;

use crate::receiving::{self, Receiving};
use anyhow::{bail, Context};
use clap::{Arg, ArgAction, ArgMatches, Command};
use copy::{compare, Mirror};
use ledgerhook_receiver::handler::router;
use ledgerhook_receiver::inbox::Inbox;
use ledgerhook_receiver::worker::Worker;

/// The `mirror` subcommand and its options.
pub fn command() -> Command {
    receiving::add_args(
        Command::new("mirror")
            .about("Keep a local copy of connected realms' entities from notifications and CDC (the receiver SDK's reference app)"),
        "./mirror",
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
    let options = Receiving::from_matches(args, true)?;
    if !args.get_flag("verify") {
        options.require_keys()?;
    }
    let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
    runtime.block_on(async {
        options.create_data_dir()?;
        let inbox = Inbox::open(&options.data.join("inbox.db")).await?;
        let mirror = Mirror::open(&options.data.join("mirror.db"))
            .await
            .context("open mirror.db")?;
        let worker = Worker::with_options(
            inbox.clone(),
            mirror.clone(),
            options.repair.clone(),
            options.worker.clone(),
        )
        .await?;
        if args.get_flag("verify") {
            return verify(&worker, &mirror, &options).await;
        }
        let app = router(&options.path, inbox, options.handler.clone())?;
        receiving::serve(&options, app, worker, "").await?;
        eprintln!("ledgerhook: mirror stopped");
        Ok(())
    })
}

async fn verify(worker: &Worker<Mirror>, mirror: &Mirror, options: &Receiving) -> anyhow::Result<()> {
    worker.run_once().await?;
    let mut realms: Vec<&String> = options
        .repair
        .as_ref()
        .map(|r| r.credentials.keys().collect())
        .unwrap_or_default();
    realms.sort();
    let mut differences = 0;
    for realm in realms {
        let comparison = compare(mirror, worker, &options.entities, realm).await?;
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
