//! House rule: the outbound client is the only way the server reaches the outside. No
//! production source outside `crates/delivery/src/outbound/` may name an HTTP client or
//! open a socket to a remote peer.

use std::path::{Path, PathBuf};

const FORBIDDEN: &[&str] = &[
    "reqwest",
    "hyper::client",
    "hyper_util::client",
    "TcpStream::connect",
    "UdpSocket",
];
const SERVER_CRATES: &[&str] = &["domain", "store", "delivery", "server", "cli"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn only_the_outbound_module_makes_requests() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let allowed = crates.join("delivery/src/outbound");
    let mut offenders = Vec::new();
    for name in SERVER_CRATES {
        let mut files = Vec::new();
        rust_files(&crates.join(name).join("src"), &mut files);
        for file in files.into_iter().filter(|f| !f.starts_with(&allowed)) {
            let text = std::fs::read_to_string(&file).unwrap();
            for needle in FORBIDDEN.iter().filter(|n| text.contains(*n)) {
                offenders.push(format!("{} uses {needle}", file.display()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "outbound requests outside the guarded client:\n{}",
        offenders.join("\n")
    );
}
