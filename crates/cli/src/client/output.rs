//! How client commands print: aligned tables for people (ids in full, times in local time
//! unless `--utc`), or exactly the API's JSON with `--json`.

use comfy_table::presets::NOTHING;
use comfy_table::{Cell, Table};
use serde_json::Value;

/// How to print.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    /// Exactly the API's JSON.
    pub json: bool,
    /// Times in UTC instead of local time.
    pub utc: bool,
}

impl Output {
    /// A time from the API (RFC 3339), as people read it; other values as they are.
    pub fn time(&self, value: &Value) -> String {
        let Some(text) = value.as_str() else {
            return text_of(value);
        };
        match chrono::DateTime::parse_from_rfc3339(text) {
            Ok(at) if self.utc => at
                .with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string(),
            Ok(at) => at
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S %:z")
                .to_string(),
            Err(_) => text.to_owned(),
        }
    }

    /// Prints `value` as JSON, or `rows` under `headers` as a table.
    pub fn list(&self, value: &Value, headers: &[&str], rows: Vec<Vec<String>>) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value).expect("JSON"));
            return;
        }
        if rows.is_empty() {
            println!("(none)");
            return;
        }
        let mut table = Table::new();
        table.load_preset(NOTHING);
        table.set_header(headers.iter().map(Cell::new));
        for row in rows {
            table.add_row(row);
        }
        println!("{}", trim_lines(&table.to_string()));
    }

    /// Prints `value` as JSON, or `pairs` as an aligned two-column table.
    pub fn object(&self, value: &Value, pairs: Vec<(&str, String)>) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value).expect("JSON"));
            return;
        }
        let mut table = Table::new();
        table.load_preset(NOTHING);
        for (name, text) in pairs {
            table.add_row(vec![name.to_owned(), text]);
        }
        println!("{}", trim_lines(&table.to_string()));
    }
}

/// The table's lines without the padding the preset leaves at either end.
fn trim_lines(text: &str) -> String {
    text.lines()
        .map(|l| l.trim_end().strip_prefix(' ').unwrap_or(l.trim_end()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A JSON value as table text: strings bare, `null` as `-`, others as JSON.
pub fn text_of(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            if items.is_empty() {
                "-".to_owned()
            } else {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            }
        }
        other => other.to_string(),
    }
}
