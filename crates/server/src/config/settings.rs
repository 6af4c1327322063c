//! The table of settings (SPEC §2) and their validation: every setting is a flag
//! `--NAME`, a variable `LEDGERHOOK_<NAME>` and a key of the `--config` TOML file, merged
//! flag > env > file > default into a [`Layered`] set of strings (the command line does
//! the reading), and [`to_config`] turns them into one validated [`Config`].
//!
//! [`SETTINGS`] is the single list of names and defaults: `Config::default()` is
//! [`to_config`] of the defaults alone.

use super::{Config, LogFormat, RetryPolicy};
use ledgerhook_domain::duration::{parse_byte_size, parse_duration};
use ledgerhook_domain::rate::Rate;
use ledgerhook_store::{BadDatabaseUrl, DatabaseUrl};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// One setting of SPEC §2.
pub struct Setting {
    /// The name: flag `--NAME`, TOML key `NAME`.
    pub name: &'static str,
    /// The environment variable `LEDGERHOOK_<NAME>`.
    pub env: &'static str,
    /// The default, if any.
    pub default: Option<&'static str>,
    /// Whether it is a switch (`--allow-http` alone means `true`).
    pub switch: bool,
    /// One line of help.
    pub help: &'static str,
}

const fn setting(
    name: &'static str,
    env: &'static str,
    default: Option<&'static str>,
    help: &'static str,
) -> Setting {
    Setting {
        name,
        env,
        default,
        switch: false,
        help,
    }
}

const fn switch(name: &'static str, env: &'static str, help: &'static str) -> Setting {
    Setting {
        name,
        env,
        default: Some("false"),
        switch: true,
        help,
    }
}

/// Every setting, in the order of SPEC §2.
pub static SETTINGS: &[Setting] = &[
    setting(
        "listen",
        "LEDGERHOOK_LISTEN",
        Some("127.0.0.1:8080"),
        "HTTP address of API, dashboard, CDC and QuickBooks-compatible API",
    ),
    setting(
        "database-url",
        "LEDGERHOOK_DATABASE_URL",
        Some("sqlite://ledgerhook.db"),
        "sqlite://PATH or postgres://…",
    ),
    setting(
        "batch-window",
        "LEDGERHOOK_BATCH_WINDOW",
        Some("60s"),
        "production aggregation window",
    ),
    setting(
        "sandbox-batch-window",
        "LEDGERHOOK_SANDBOX_BATCH_WINDOW",
        Some("1s"),
        "sandbox aggregation window",
    ),
    setting(
        "batch-max-events",
        "LEDGERHOOK_BATCH_MAX_EVENTS",
        Some("1000"),
        "pending events that make a notification early",
    ),
    setting(
        "delivery-timeout",
        "LEDGERHOOK_DELIVERY_TIMEOUT",
        Some("3s"),
        "an attempt without a complete response by then has failed",
    ),
    setting(
        "retry-policy",
        "LEDGERHOOK_RETRY_POLICY",
        Some("classic"),
        "classic or current",
    ),
    setting(
        "retry-schedule",
        "LEDGERHOOK_RETRY_SCHEDULE",
        Some("20m,30m,50m"),
        "(classic) waits between attempts, comma-separated",
    ),
    setting(
        "max-retry-age",
        "LEDGERHOOK_MAX_RETRY_AGE",
        Some("3d"),
        "(current) age after which a failing notification is dropped",
    ),
    setting(
        "inactive-after",
        "LEDGERHOOK_INACTIVE_AFTER",
        Some("24h"),
        "a configuration blacklisted this long becomes inactive",
    ),
    setting(
        "max-in-flight-per-endpoint",
        "LEDGERHOOK_MAX_IN_FLIGHT_PER_ENDPOINT",
        Some("32"),
        "attempts in flight to one endpoint URL at once",
    ),
    setting(
        "retention",
        "LEDGERHOOK_RETENTION",
        Some("30d"),
        "notifications, attempts and change events older than this are removed",
    ),
    setting(
        "max-body-size",
        "LEDGERHOOK_MAX_BODY_SIZE",
        Some("5MiB"),
        "larger request bodies get 413",
    ),
    switch(
        "allow-http",
        "LEDGERHOOK_ALLOW_HTTP",
        "accept http:// endpoint URLs (development only)",
    ),
    switch(
        "allow-private-networks",
        "LEDGERHOOK_ALLOW_PRIVATE_NETWORKS",
        "deliver to loopback, private and other non-public addresses",
    ),
    setting(
        "ca-file",
        "LEDGERHOOK_CA_FILE",
        None,
        "extra PEM root certificates trusted for endpoint TLS",
    ),
    setting(
        "secret-key",
        "LEDGERHOOK_SECRET_KEY",
        None,
        "encrypt app signing secrets at rest with this key",
    ),
    setting(
        "sqlite-synchronous",
        "LEDGERHOOK_SQLITE_SYNCHRONOUS",
        Some("full"),
        "full or normal",
    ),
    setting(
        "time-scale",
        "LEDGERHOOK_TIME_SCALE",
        Some("1"),
        "simulated-time factor (> 0)",
    ),
    setting(
        "token-lifetime",
        "LEDGERHOOK_TOKEN_LIFETIME",
        Some("1h"),
        "lifetime of OAuth access tokens (QuickBooks: 1 h); shorter for tests of refresh logic",
    ),
    setting(
        "v3-rate-limit",
        "LEDGERHOOK_V3_RATE_LIMIT",
        None,
        "QuickBooks' throttle on /v3 per realm and app, e.g. 500/min (over it: 429, Fault 003001)",
    ),
    setting(
        "api-rate-limit",
        "LEDGERHOOK_API_RATE_LIMIT",
        None,
        "requests per token on /api/v1, e.g. 200/s (over it: 429 with Retry-After); per process",
    ),
    setting(
        "header-read-timeout",
        "LEDGERHOOK_HEADER_READ_TIMEOUT",
        Some("10s"),
        "a connection that has not sent its request headers by then is closed",
    ),
    setting(
        "max-connections",
        "LEDGERHOOK_MAX_CONNECTIONS",
        Some("10000"),
        "open HTTP connections at once; more wait in the listen backlog",
    ),
    setting(
        "log-format",
        "LEDGERHOOK_LOG_FORMAT",
        Some("text"),
        "text or json (one object per line, with the request id of each HTTP request)",
    ),
    setting(
        "admin-token",
        "LEDGERHOOK_ADMIN_TOKEN",
        None,
        "use this operator token (replacing any stored one) instead of a generated one",
    ),
];

/// Settings whose values are never printed (not by `ledgerhook config`, nor by `--help`
/// when they come from the environment).
pub const SECRET_SETTINGS: &[&str] = &["secret-key", "admin-token"];

/// Where a setting's value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A `--NAME` flag.
    Flag,
    /// A `LEDGERHOOK_<NAME>` variable.
    Env,
    /// The `--config` file.
    File,
    /// The built-in default.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Flag => "flag",
            Source::Env => "environment",
            Source::File => "config file",
            Source::Default => "default",
        })
    }
}

/// A setting that could not be used; the message names it.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A value that does not parse or is out of range.
    #[error("invalid value {value:?} for setting {name} (from {origin}): {reason}")]
    Invalid {
        /// The setting's name.
        name: &'static str,
        /// The value given.
        value: String,
        /// Where it came from.
        origin: Source,
        /// What is wrong with it.
        reason: String,
    },
    /// The config file could not be read or parsed.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The merged value of every setting, with its source (absent: no value and no default).
pub struct Layered {
    values: BTreeMap<&'static str, (String, Source)>,
}

impl Layered {
    /// For each setting, `given` (a flag, variable or file value) or else its default.
    pub fn new(mut given: impl FnMut(&Setting) -> Option<(String, Source)>) -> Layered {
        let mut values = BTreeMap::new();
        for s in SETTINGS {
            let value = given(s).or_else(|| s.default.map(|d| (d.to_owned(), Source::Default)));
            if let Some(value) = value {
                values.insert(s.name, value);
            }
        }
        Layered { values }
    }

    /// The defaults alone.
    pub fn defaults() -> Layered {
        Layered::new(|_| None)
    }

    fn get(&self, name: &'static str) -> Option<&(String, Source)> {
        self.values.get(name)
    }

    /// The settings as TOML lines with their sources; secrets are not shown.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for s in SETTINGS {
            match self.get(s.name) {
                Some((_, source)) if SECRET_SETTINGS.contains(&s.name) => {
                    out.push_str(&format!("{} = \"(set)\"  # {source}\n", s.name));
                }
                Some((value, source)) => out.push_str(&format!("{} = {value:?}  # {source}\n", s.name)),
                None => out.push_str(&format!("# {} is not set\n", s.name)),
            }
        }
        out
    }
}

/// Parses one setting with `parse`, turning its error into one that names the setting.
fn parse_with<T>(
    layered: &Layered,
    name: &'static str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, SettingsError> {
    let Some((value, source)) = layered.get(name) else {
        return Ok(None);
    };
    parse(value).map(Some).map_err(|reason| SettingsError::Invalid {
        name,
        value: value.clone(),
        origin: *source,
        reason,
    })
}

/// Like [`parse_with`] for a setting that always has a default.
fn required<T>(
    layered: &Layered,
    name: &'static str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, SettingsError> {
    parse_with(layered, name, parse).map(|v| v.expect("setting with a default always has a value"))
}

fn duration(value: &str) -> Result<Duration, String> {
    parse_duration(value).map_err(|e| e.to_string())
}

fn positive_duration(value: &str) -> Result<Duration, String> {
    match duration(value)? {
        d if d.is_zero() => Err("must be greater than zero".to_owned()),
        d => Ok(d),
    }
}

fn positive_integer(value: &str) -> Result<u32, String> {
    match value.trim().parse::<u32>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err("not a whole number".to_owned()),
    }
}

fn boolean(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

fn database_url(value: &str) -> Result<DatabaseUrl, String> {
    value.trim().parse().map_err(|e: BadDatabaseUrl| e.to_string())
}

fn retry_schedule(value: &str) -> Result<Vec<Duration>, String> {
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    if parts.iter().all(|p| p.is_empty()) {
        return Err("needs at least one duration, e.g. 20m,30m,50m".to_owned());
    }
    parts
        .iter()
        .map(|p| duration(p).map_err(|e| format!("entry {p:?}: {e}")))
        .collect()
}

fn time_scale(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 => Ok(f),
        Ok(_) => Err("must be a number greater than 0".to_owned()),
        Err(_) => Err("not a number".to_owned()),
    }
}

fn ca_file(value: &str) -> Result<PathBuf, String> {
    let text = std::fs::read_to_string(value).map_err(|e| format!("cannot read it: {e}"))?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err("contains no PEM certificate".to_owned());
    }
    Ok(PathBuf::from(value))
}

/// Validates every setting into a [`Config`]; the first bad one is the error.
pub fn to_config(layered: &Layered) -> Result<Config, SettingsError> {
    Ok(Config {
        listen: required(layered, "listen", |v| {
            v.trim()
                .parse::<SocketAddr>()
                .map_err(|_| "expected IP:PORT, e.g. 127.0.0.1:8080".to_owned())
        })?,
        database_url: required(layered, "database-url", database_url)?,
        batch_window: required(layered, "batch-window", duration)?,
        sandbox_batch_window: required(layered, "sandbox-batch-window", duration)?,
        batch_max_events: required(layered, "batch-max-events", positive_integer)?,
        delivery_timeout: required(layered, "delivery-timeout", positive_duration)?,
        retry_policy: required(layered, "retry-policy", |v| match v {
            "classic" => Ok(RetryPolicy::Classic),
            "current" => Ok(RetryPolicy::Current),
            _ => Err("expected classic or current".to_owned()),
        })?,
        retry_schedule: required(layered, "retry-schedule", retry_schedule)?,
        max_retry_age: required(layered, "max-retry-age", positive_duration)?,
        inactive_after: required(layered, "inactive-after", duration)?,
        max_in_flight_per_endpoint: required(layered, "max-in-flight-per-endpoint", positive_integer)?,
        retention: required(layered, "retention", positive_duration)?,
        max_body_size: required(layered, "max-body-size", |v| match parse_byte_size(v) {
            Ok(0) => Err("must be greater than zero".to_owned()),
            other => other.map_err(|e| e.to_string()),
        })?,
        allow_http: required(layered, "allow-http", boolean)?,
        allow_private_networks: required(layered, "allow-private-networks", boolean)?,
        ca_file: parse_with(layered, "ca-file", ca_file)?,
        secret_key: parse_with(layered, "secret-key", |v| match v {
            "" => Err("must not be empty".to_owned()),
            v => Ok(v.to_owned()),
        })?,
        sqlite_synchronous: required(layered, "sqlite-synchronous", |v| v.parse())?,
        time_scale: required(layered, "time-scale", time_scale)?,
        token_lifetime: required(layered, "token-lifetime", positive_duration)?,
        v3_rate_limit: parse_with(layered, "v3-rate-limit", |v| {
            Rate::parse(v).map_err(|e| e.to_string())
        })?,
        api_rate_limit: parse_with(layered, "api-rate-limit", |v| {
            Rate::parse(v).map_err(|e| e.to_string())
        })?,
        header_read_timeout: required(layered, "header-read-timeout", positive_duration)?,
        max_connections: required(layered, "max-connections", positive_integer)?,
        log_format: required(layered, "log-format", |v| match v {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected text or json".to_owned()),
        })?,
        // An empty token is no token (an unset variable in many deployment tools).
        admin_token: parse_with(layered, "admin-token", |v| Ok(v.to_owned()))?.filter(|t| !t.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_follow_the_rule() {
        for s in SETTINGS {
            assert_eq!(
                s.env,
                format!("LEDGERHOOK_{}", s.name.to_uppercase().replace('-', "_"))
            );
        }
    }

    #[test]
    fn the_defaults_are_the_spec_defaults() {
        let config = Config::default();
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(config.database_url.as_str(), "sqlite://ledgerhook.db");
        assert_eq!(config.batch_window, Duration::from_secs(60));
        assert_eq!(config.sandbox_batch_window, Duration::from_secs(1));
        assert_eq!(config.batch_max_events, 1000);
        assert_eq!(config.delivery_timeout, Duration::from_secs(3));
        assert_eq!(config.retry_policy, RetryPolicy::Classic);
        assert_eq!(
            config.retry_schedule,
            [20 * 60, 30 * 60, 50 * 60].map(Duration::from_secs).to_vec()
        );
        assert_eq!(config.max_retry_age, Duration::from_secs(3 * 86_400));
        assert_eq!(config.inactive_after, Duration::from_secs(86_400));
        assert_eq!(config.max_in_flight_per_endpoint, 32);
        assert_eq!(config.retention, Duration::from_secs(30 * 86_400));
        assert_eq!(config.max_body_size, 5 * 1024 * 1024);
        assert!(!config.allow_http && !config.allow_private_networks);
        assert_eq!((config.ca_file, config.secret_key), (None, None));
        assert_eq!(config.time_scale, 1.0);
        assert_eq!(config.token_lifetime, Duration::from_secs(3600));
        assert_eq!((config.v3_rate_limit, config.admin_token), (None, None));
    }
}
