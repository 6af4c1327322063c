//! One way every scenario reports its result: a Markdown table headed by the machine, the
//! commit and the command (as `docs/benchmarks.md` keeps them), and the same figures as
//! one JSON line on standard output — appended to the `--json FILE` given before the
//! subcommand too, so that several runs collect into one file.

use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

static JSON_FILE: OnceLock<PathBuf> = OnceLock::new();

/// Where results are appended as JSON lines (`--json`), set once at start.
pub fn append_json_to(path: Option<PathBuf>) {
    if let Some(path) = path {
        let _ = JSON_FILE.set(path);
    }
}

/// The middle of several runs' values (the upper one of an even count; 0 for none): the
/// figure every scenario reports over its runs.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The machine in one line: CPUs, their model, memory.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches(" kB").parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    format!("{cpus} CPUs ({model}), {memory_gib:.0} GiB")
}

/// The checked-out commit, `-dirty` when the tree has changes; `unknown` outside git.
pub fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head)
            if git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty()) =>
        {
            format!("{head}-dirty")
        }
        Some(head) => head,
        None => "unknown".to_owned(),
    }
}

/// The command line that produced the result.
pub fn command() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|p| {
            std::path::Path::new(&p)
                .file_name()
                .map_or(p.clone(), |f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    std::iter::once(program).chain(args).collect::<Vec<_>>().join(" ")
}

/// A result: the scenario, its rows (figure, value as shown) and the same figures as JSON.
pub struct Report {
    scenario: String,
    rows: Vec<(String, String)>,
    figures: Map<String, Value>,
}

impl Report {
    /// An empty report of `scenario`.
    pub fn new(scenario: impl Into<String>) -> Report {
        Report {
            scenario: scenario.into(),
            rows: Vec::new(),
            figures: Map::new(),
        }
    }

    /// A figure: `key` in the JSON, `label` and `shown` in the table.
    pub fn figure(&mut self, key: &str, label: &str, value: Value, shown: String) -> &mut Report {
        self.figures.insert(key.to_owned(), value);
        self.rows.push((label.to_owned(), shown));
        self
    }

    /// A number shown with `decimals` decimals and thousands separators.
    pub fn number(&mut self, key: &str, label: &str, value: f64, decimals: usize) -> &mut Report {
        self.figure(key, label, json!(value), grouped(value, decimals))
    }

    /// Prints the table and the JSON line, and appends the line to `--json`'s file.
    pub fn emit(&self) -> anyhow::Result<()> {
        let json = json!({
            "scenario": self.scenario,
            "machine": machine(),
            "commit": commit(),
            "command": command(),
            "figures": self.figures,
        });
        println!();
        println!("`{}` — commit `{}`, {}", command(), commit(), machine());
        println!();
        println!("| {} | |", self.scenario);
        println!("|---|---|");
        for (label, shown) in &self.rows {
            println!("| {label} | {shown} |");
        }
        println!("{json}");
        if let Some(path) = JSON_FILE.get() {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
            writeln!(file, "{json}")?;
        }
        Ok(())
    }
}

/// `value` with `decimals` decimals and a comma every three digits: `12,345.6`.
pub fn grouped(value: f64, decimals: usize) -> String {
    let text = format!("{:.*}", decimals, value.abs());
    let (whole, fraction) = text
        .split_once('.')
        .map_or((text.as_str(), None), |(w, f)| (w, Some(f)));
    let mut out = String::new();
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if let Some(fraction) = fraction {
        out.push('.');
        out.push_str(fraction);
    }
    if value < 0.0 {
        out.insert(0, '−');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::grouped;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(1234567.0, 0), "1,234,567");
        assert_eq!(grouped(999.0, 0), "999");
        assert_eq!(grouped(12345.678, 1), "12,345.7");
        assert_eq!(grouped(-1500.0, 0), "−1,500");
    }
}
