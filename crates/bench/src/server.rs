//! Starting `ledgerhook serve` as a child process on a fresh database.

use anyhow::{bail, Context};
use ledgerhook_testkit::{Kind, TestDatabase};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The database backend of the server under test (a command-line value).
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Backend {
    /// A fresh SQLite file.
    Sqlite,
    /// A fresh PostgreSQL database.
    Postgres,
}

impl Backend {
    /// The test-database kind.
    pub fn kind(self) -> Kind {
        match self {
            Backend::Sqlite => Kind::Sqlite,
            Backend::Postgres => Kind::Postgres,
        }
    }

    /// The name printed with the figures.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Settings for a server delivering to the benchmark's loopback receiver with
/// `sandbox-batch-window` = `window`.
pub fn loopback_args(window: &str) -> Vec<String> {
    [
        "--allow-private-networks",
        "--allow-http",
        "--sandbox-batch-window",
        window,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The operator token the benchmark server uses.
pub const OPERATOR: &str = "bench-operator-token";

/// A running server, killed on drop.
pub struct BenchServer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The database, kept alive (and dropped) with the server.
    pub database: TestDatabase,
    binary: std::path::PathBuf,
    args: Vec<String>,
}

impl BenchServer {
    /// The server process's id (for CPU accounting).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `binary serve` on a fresh database of `kind` with extra `args`.
    pub async fn start(binary: &Path, kind: Kind, args: &[String]) -> anyhow::Result<BenchServer> {
        if kind == Kind::Postgres && std::env::var(ledgerhook_testkit::DATABASE_URL_VAR).is_err() {
            std::env::set_var(
                ledgerhook_testkit::DATABASE_URL_VAR,
                "postgres://postgres@127.0.0.1:5432/test",
            );
        }
        let database = TestDatabase::new(kind)
            .await
            .context("no PostgreSQL configured")?;
        let (child, base) = spawn(binary, &database.url, args)?;
        Ok(BenchServer {
            child,
            base,
            database,
            binary: binary.to_owned(),
            args: args.to_vec(),
        })
    }

    /// SIGKILL: the process ends at once, whatever it was doing.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Starts the server again on the same database and settings (on a new port: see
    /// [`BenchServer::base`]).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let (child, base) = spawn(&self.binary, &self.database.url, &self.args)?;
        self.child = child;
        self.base = base;
        Ok(())
    }
}

/// `binary serve` on `url`; answers the child and its base URL once it listens.
fn spawn(binary: &Path, url: &str, args: &[String]) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", url])
        .args(args)
        .env("LEDGERHOOK_ADMIN_TOKEN", OPERATOR)
        .env(
            "LEDGERHOOK_LOG",
            std::env::var("LEDGERHOOK_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".to_owned()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("ledgerhook: listening on ") {
                let _ = tx.send(addr.to_owned());
            } else {
                eprintln!("server: {line}");
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(base) = rx.recv_timeout(Duration::from_millis(50)) {
            return Ok((child, base));
        }
        if child.try_wait()?.is_some() || Instant::now() > deadline {
            bail!("the server did not start");
        }
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
