//! `ledgerhook demo`, the real binary: the whole narrated scenario at accelerated time,
//! its temporary directory removed at the end and on Ctrl-C.

use crate::support::binary;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn data_dir(output: &str) -> std::path::PathBuf {
    let line = output
        .lines()
        .find(|l| l.trim_start().starts_with("data: "))
        .expect("the data line");
    let path = line.trim_start().trim_start_matches("data: ");
    std::path::PathBuf::from(path.split(';').next().unwrap())
}

#[test]
fn the_demo_narrates_webhooks_faults_retries_the_blacklist_and_cdc() {
    let out = binary()
        .args(["demo", "--time-scale", "3000", "--no-wait"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "dashboard: http://127.0.0.1:",
        "operator token: lho_",
        "consent given, code exchanged for an access token",
        "Customer 1 Create at",
        "intuit-signature verified",
        "dropped: reported delivered, never sent",
        "again: the same webhook-id and bytes (an injected duplicate)",
        "configuration blacklisted",
        "its notification is held",
        "never reached the receiver",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing from:\n{stdout}");
    }
    // CDC marks what the receiver missed, and only that: the update dropped after its
    // retries, not the change delivered after the reactivation.
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.contains(name) && l.contains("SyncToken"))
            .unwrap_or_default()
    };
    assert!(
        line("Ada King").contains("never reached the receiver"),
        "{stdout}"
    );
    assert!(!line("Katherine Johnson").contains("never reached"), "{stdout}");
    // One attempt and the three retries of the schedule, refused.
    assert_eq!(stdout.matches("refused with 503").count(), 4, "{stdout}");
    let dir = data_dir(&stdout);
    assert!(stdout.contains(&format!("removed {}", dir.display())));
    assert!(!dir.exists(), "{} was left behind", dir.display());
}

#[test]
fn ctrl_c_stops_the_demo_and_leaves_nothing_behind() {
    let mut child = binary()
        .args(["demo", "--time-scale", "3000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("Ctrl-C stops everything") {
            break;
        }
        assert!(Instant::now() < deadline, "{seen}");
    }
    let dir = data_dir(&seen);
    assert!(dir.exists());
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(rest.iter().any(|l| l.starts_with("removed ")), "{rest:?}");
    assert!(!dir.exists(), "{} was left behind", dir.display());
}
