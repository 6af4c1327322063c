//! `ledgerhook-bench`: benchmarks that start a real `ledgerhook serve` process and load it
//! from this separate process over loopback HTTP. Every load loop is bounded in count
//! and in time.
//!
//! `ledgerhook-bench ingest --backend sqlite --clients 16 --batch 100 --duration 10`
//! `ledgerhook-bench deliver --backend sqlite --realms 1000 --window 0 --duration 10`
//! `ledgerhook-bench ack --rate 500 --concurrency 8 --duration 10 --runs 3`
//! `ledgerhook-bench page --backend sqlite --notifications 1000000`
//! `ledgerhook-bench crash --backend sqlite --trials 20`
//! `ledgerhook-bench backlog --backend sqlite --events 1000000 --realms 1000`
//! `ledgerhook-bench scale --backend sqlite --sizes 10000,100000,1000000,10000000 --purge 1000000`

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // the load generator and its receiver talk to the server under test

mod ack;
mod backlog;
mod cpu;
mod crash;
mod deliver;
mod fsync;
mod ingest;
mod memory;
mod page;
mod receiver;
mod report;
mod scale;
mod server;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Ledgerhook benchmarks")]
struct Cli {
    /// Also append each result as a JSON line to this file.
    #[arg(long, global = true)]
    json: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// How fast the receiver SDK's endpoint (in `ledgerhook mirror`) acknowledges.
    Ack(ack::Args),
    /// Ingestion throughput and latency.
    Ingest(ingest::Args),
    /// Delivery throughput, latency and isolation.
    Deliver(deliver::Args),
    /// An endpoint down while a million events are accepted, then back: RSS and drain.
    Backlog(backlog::Args),
    /// Kill -9 trials: nothing acknowledged lost, no notification with two bodies.
    Crash(crash::Args),
    /// Notification-list pages over a large history.
    Page(page::Args),
    /// Throughput and p99 over databases holding 10⁴ … 10⁷ events; a purge while delivering.
    Scale(scale::Args),
    /// The benchmark receiver (started by `deliver` as its own process).
    Receiver(receiver::Args),
    /// The fsync latency of the disk holding a directory.
    Fsync {
        /// Directory to measure (default: a temporary directory).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    report::append_json_to(cli.json);
    match cli.command {
        Command::Scale(args) => tokio::runtime::Runtime::new()?.block_on(scale::run(args)),
        Command::Backlog(args) => tokio::runtime::Runtime::new()?.block_on(backlog::run(args)),
        Command::Ack(args) => tokio::runtime::Runtime::new()?.block_on(ack::run(args)),
        Command::Ingest(args) => tokio::runtime::Runtime::new()?.block_on(ingest::run(args)),
        Command::Deliver(args) => tokio::runtime::Runtime::new()?.block_on(deliver::run(args)),
        Command::Crash(args) => tokio::runtime::Runtime::new()?.block_on(crash::run(args)),
        Command::Page(args) => tokio::runtime::Runtime::new()?.block_on(page::run(args)),
        Command::Receiver(args) => tokio::runtime::Runtime::new()?.block_on(receiver::run(args)),
        Command::Fsync { dir } => {
            let dir = match dir {
                Some(d) => d,
                None => std::env::temp_dir(),
            };
            let report = fsync::measure(&dir, 200)?;
            println!("{report}");
            Ok(())
        }
    }
}
