//! The server's API boundary (ARCHITECTURE.md): only `http/` knows request and response
//! shapes. No module outside `src/http/` imports from it, names `ApiError`, or builds
//! JSON; service modules answer their own types and error enums, and `http/` maps them.

use std::path::{Path, PathBuf};

/// What a module outside `http/` must not write.
const EDGE_ONLY: &[&str] = &["crate::http", "ApiError", "serde_json", "json!", "IntoResponse"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of `text` without its comments (a doc comment may name the edge).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn only_http_knows_responses_and_json() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let edge = src.join("http");
    let mut offenders = Vec::new();
    for file in files.iter().filter(|f| !f.starts_with(&edge)) {
        let text = code(&std::fs::read_to_string(file).expect("read"));
        for needle in EDGE_ONLY.iter().filter(|n| text.contains(*n)) {
            offenders.push(format!("{} uses {needle}", file.display()));
        }
    }
    assert!(
        files.len() > 10,
        "the sources were not found under {}",
        src.display()
    );
    assert!(
        offenders.is_empty(),
        "the edge leaks out of http/:\n{}",
        offenders.join("\n")
    );
}
