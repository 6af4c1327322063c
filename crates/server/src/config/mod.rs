//! The validated server configuration.
//!
//! [`settings`] holds the table of settings and turns their merged text into a
//! [`Config`]; the `ledgerhook` binary reads the layers (flags, environment, TOML file).
//! What it hands over has every value already checked, so nothing later can fail on "not
//! validated".

pub mod settings;

use ledgerhook_domain::rate::Rate;
use ledgerhook_store::DatabaseUrl;
use ledgerhook_store::SqliteSynchronous;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The retry policy of SPEC §2 `retry-policy`.
#[derive(Clone, Debug, PartialEq)]
pub enum RetryPolicy {
    /// The seed's policy: waits of `retry-schedule`, then drop and blacklist.
    Classic,
    /// Intuit's newer policy: 10s, 20s, 30s, 5m, 20m, 2h, 4h, 6h, then every 6h until
    /// `max-retry-age`.
    Current,
}

/// Every setting of SPEC §2, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `listen`: the HTTP address.
    pub listen: SocketAddr,
    /// `database-url`: `sqlite://PATH` or `postgres://…`, parsed.
    pub database_url: DatabaseUrl,
    /// `batch-window`: production aggregation window.
    pub batch_window: Duration,
    /// `sandbox-batch-window`: sandbox aggregation window.
    pub sandbox_batch_window: Duration,
    /// `batch-max-events`: events that close a window early.
    pub batch_max_events: u32,
    /// `delivery-timeout`: the bound of one attempt.
    pub delivery_timeout: Duration,
    /// `retry-policy`.
    pub retry_policy: RetryPolicy,
    /// `retry-schedule` (classic policy): waits between attempts.
    pub retry_schedule: Vec<Duration>,
    /// `max-retry-age` (current policy).
    pub max_retry_age: Duration,
    /// `inactive-after`: blacklisted this long → inactive.
    pub inactive_after: Duration,
    /// `max-in-flight-per-endpoint`.
    pub max_in_flight_per_endpoint: u32,
    /// `retention`: age after which rows are removed.
    pub retention: Duration,
    /// `max-body-size` in bytes.
    pub max_body_size: u64,
    /// `allow-http`: accept `http://` endpoints.
    pub allow_http: bool,
    /// `allow-private-networks`: deliver to non-public addresses.
    pub allow_private_networks: bool,
    /// `ca-file`: extra trusted roots for endpoint TLS.
    pub ca_file: Option<PathBuf>,
    /// `secret-key`: encrypts signing secrets at rest when set.
    pub secret_key: Option<String>,
    /// `sqlite-synchronous`.
    pub sqlite_synchronous: SqliteSynchronous,
    /// `time-scale`: simulated-time factor (> 0).
    pub time_scale: f64,
    /// `token-lifetime`: how long an OAuth access token lives (real time, never scaled).
    pub token_lifetime: Duration,
    /// `v3-rate-limit`: requests per realm and app on `/v3`, if limited.
    pub v3_rate_limit: Option<Rate>,
    /// `api-rate-limit`: requests per token on `/api/v1`, if limited (per process).
    pub api_rate_limit: Option<Rate>,
    /// `header-read-timeout`: a connection without complete request headers by then is closed.
    pub header_read_timeout: Duration,
    /// `max-connections`: open HTTP connections at once.
    pub max_connections: u32,
    /// `log-format`: how log lines are written.
    pub log_format: LogFormat,
    /// The operator token from `LEDGERHOOK_ADMIN_TOKEN`, replacing any stored one.
    pub admin_token: Option<String>,
}

/// `log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Config {
    /// The shipped defaults of SPEC §2: the settings table's defaults, validated (a test
    /// holds them to the specification).
    fn default() -> Self {
        settings::to_config(&settings::Layered::defaults()).expect("the settings table's defaults are valid")
    }
}

impl Config {
    /// The retry policy with its settings.
    pub fn retry(&self) -> ledgerhook_delivery::retry::RetryPolicy {
        match self.retry_policy {
            RetryPolicy::Classic => ledgerhook_delivery::retry::RetryPolicy::Classic {
                schedule: self.retry_schedule.clone(),
            },
            RetryPolicy::Current => ledgerhook_delivery::retry::RetryPolicy::Current {
                max_age: self.max_retry_age,
            },
        }
    }

    /// The ordering of configurations that choose none: `best-effort` under `classic`,
    /// `strict` under `current`.
    pub fn default_ordering(&self) -> ledgerhook_domain::Ordering {
        match self.retry_policy {
            RetryPolicy::Classic => ledgerhook_domain::Ordering::BestEffort,
            RetryPolicy::Current => ledgerhook_domain::Ordering::Strict,
        }
    }

    /// Options of the outbound client.
    pub fn client_options(
        &self,
    ) -> Result<ledgerhook_delivery::outbound::ClientOptions, ledgerhook_delivery::outbound::ClientError>
    {
        let options = ledgerhook_delivery::outbound::ClientOptions::new(
            self.delivery_timeout,
            self.allow_http,
            self.allow_private_networks,
        );
        match &self.ca_file {
            Some(path) => options.with_ca_file(path),
            None => Ok(options),
        }
    }

    /// Window lengths and limits for the store's aggregation.
    pub fn window_policy(&self) -> ledgerhook_store::windows::WindowPolicy {
        ledgerhook_store::windows::WindowPolicy {
            sandbox_ms: self.sandbox_batch_window.as_millis() as i64,
            production_ms: self.batch_window.as_millis() as i64,
            max_events: i64::from(self.batch_max_events),
            time_scale: self.time_scale,
            default_ordering: self.default_ordering(),
        }
    }

    /// A simulated duration (batch window, retry wait, …) in real time: divided by
    /// `time-scale`.
    pub fn scaled(&self, simulated: Duration) -> Duration {
        simulated.div_f64(self.time_scale)
    }
}
