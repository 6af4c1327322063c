//! Starting the real `ledgerhook` binary and talking to it over HTTP.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ledgerhook"));
    // Settings from the developer's shell must not leak into tests.
    for (key, _) in std::env::vars() {
        if key.starts_with("LEDGERHOOK_") && !key.starts_with("LEDGERHOOK_TEST_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `ledgerhook serve`, killed on drop.
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    stderr: Arc<Mutex<String>>,
}

impl ServerProcess {
    /// Starts `ledgerhook serve` with `args` on `database_url`, in `dir`, and waits until
    /// it listens. `listen` defaults to port 0 unless given in `args` or `envs`.
    pub fn start(dir: &Path, database_url: &str, args: &[&str], envs: &[(&str, &str)]) -> ServerProcess {
        let mut cmd = binary();
        cmd.current_dir(dir)
            .arg("serve")
            .arg("--database-url")
            .arg(database_url);
        let sets_listen = args.contains(&"--listen")
            || envs.iter().any(|(k, _)| *k == "LEDGERHOOK_LISTEN")
            || args.contains(&"--config");
        if !sets_listen {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(args).envs(envs.iter().copied());
        Self::spawn(cmd).unwrap_or_else(|(status, err)| panic!("server did not start ({status:?}):\n{err}"))
    }

    /// `ledgerhook serve` for tests of receivers on this machine: `http://` and loopback
    /// endpoints allowed, a zero sandbox window, `operator` as the operator token.
    pub fn start_loopback(dir: &Path, database_url: &str, operator: &str) -> ServerProcess {
        ServerProcess::start(
            dir,
            database_url,
            &[
                "--allow-http",
                "--allow-private-networks",
                "--sandbox-batch-window",
                "0s",
            ],
            &[("LEDGERHOOK_ADMIN_TOKEN", operator)],
        )
    }

    /// Spawns a prepared command; `Err` carries the exit status and stderr when it exited
    /// before listening.
    pub fn spawn(mut cmd: Command) -> Result<ServerProcess, (Option<ExitStatus>, String)> {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ledgerhook");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("ledgerhook: listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(base) = rx.recv_timeout(Duration::from_millis(50)) {
                return Ok(ServerProcess { child, base, stderr });
            }
            if let Some(status) = child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return Err((Some(status), stderr.lock().unwrap().clone()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err((None, stderr.lock().unwrap().clone()));
            }
        }
    }

    /// Everything the server wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The operator token printed on first start, if any.
    pub fn printed_token(&self) -> Option<String> {
        self.stderr()
            .lines()
            .find_map(|l| l.split("store it now): ").nth(1).map(str::to_owned))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        wait_with_timeout(&mut self.child, Duration::from_secs(15)).expect("server exits after SIGTERM")
    }

    /// Sends SIGKILL and waits.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTP client for tests.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A JSON call to `base` as `token`; asserts a success and answers the body (`Null` when
/// empty).
pub fn call(
    base: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let response = http()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().unwrap_or(serde_json::Value::Null);
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}
