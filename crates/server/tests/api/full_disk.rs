//! SQLite on a full disk (SPEC §8): with the database on a small tmpfs filled up,
//! ingestion answers `503 unavailable` (never a `202` for what was not committed), the
//! server keeps running, the file stays consistent, and once space is freed ingestion
//! works again by itself. Needs permission to mount a tmpfs (root, as in CI); says it
//! skips otherwise.

use crate::support::{TestServer, OPERATOR};
use reqwest::StatusCode;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs of `megabytes` at a fresh directory, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .ok()?;
        status.success().then_some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: the server under test may still be closing its files.
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_and_ingestion_resumes_when_space_is_freed() {
    let Some(disk) = SmallDisk::mount(24) else {
        eprintln!("skipping: cannot mount a tmpfs here (needs root)");
        return;
    };
    let database = disk.path().join("ledgerhook.db");
    let url = format!("sqlite://{}", database.display());
    let server = TestServer::start_with(ledgerhook_testkit::Kind::Sqlite, |c| {
        c.database_url = url.parse().unwrap();
    })
    .await
    .unwrap();
    let realm = server.realm("sandbox").await;
    let app = server.app("Reader").await;
    let grant = server.connect(app["id"].as_str().unwrap(), &realm).await;
    let token = grant["access_token"].as_str().unwrap().to_owned();
    // Leave a few hundred kilobytes: a filler file takes the rest.
    let filler = disk.path().join("filler");
    let free = || {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(disk.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let keep = 512 * 1024;
    std::fs::write(&filler, vec![0u8; (free().saturating_sub(keep)) as usize]).unwrap();
    let client = reqwest::Client::new();
    let big = "x".repeat(20_000);
    let ingest = |i: usize| {
        let events = json!([{"name": "Customer", "id": format!("{i}"), "operation": "Create",
                             "data": {"DisplayName": format!("C{i}"), "Notes": big}}]);
        client
            .post(format!("{}/api/v1/realms/{realm}/events", server.base))
            .bearer_auth(OPERATOR)
            .json(&events)
            .send()
    };
    let mut accepted = Vec::new();
    let mut refused = None;
    for i in 0..500 {
        let answer = ingest(i).await.unwrap();
        let status = answer.status();
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        if status == StatusCode::ACCEPTED {
            accepted.push(i);
            continue;
        }
        refused = Some((status, body));
        break;
    }
    let (status, body) = refused.expect("the disk never filled up");
    eprintln!("{} requests accepted before the disk was full", accepted.len());
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    let health = client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK, "the server keeps running");
    // Space freed: ingestion works again, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let next = accepted.len() + 1000;
    loop {
        let answer = ingest(next).await.unwrap();
        if answer.status() == StatusCode::ACCEPTED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ingestion did not resume: {}",
            answer.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Everything acknowledged is there, and the file is consistent.
    let (_, found) = server.get(&format!("/api/v1/realms/{realm}")).await;
    assert_eq!(found["id"], realm.as_str());
    let integrity = Command::new("sqlite3")
        .arg(&database)
        .arg("PRAGMA integrity_check;")
        .output();
    if let Ok(out) = integrity {
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
        }
    }
    let hour_ago = ledgerhook_domain::Timestamp(ledgerhook_domain::Timestamp::now().millis() - 3_600_000);
    let query = format!(
        "entities=Customer&changedSince={}",
        hour_ago.to_rfc3339().replace('+', "%2B")
    );
    let (status, cdc) = server.cdc(&realm, Some(&token), &query).await;
    assert_eq!(status, StatusCode::OK, "{cdc}");
    let customers = cdc["CDCResponse"][0]["QueryResponse"][0]["Customer"]
        .as_array()
        .unwrap();
    assert_eq!(
        customers.len(),
        accepted.len() + 1,
        "acknowledged events lost or refused ones stored"
    );
}
