//! The two QuickBooks environments; every realm lives in one, and every app has one
//! webhook configuration per environment.

use std::fmt;
use std::str::FromStr;

/// `sandbox` or `production`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Environment {
    /// Development companies: notifications in near real time.
    Sandbox,
    /// Real companies: notifications aggregated over the batch window.
    Production,
}

impl Environment {
    /// Both environments.
    pub const ALL: [Environment; 2] = [Environment::Sandbox, Environment::Production];

    /// The lower-case name used in paths and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Sandbox => "sandbox",
            Environment::Production => "production",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An environment name other than `sandbox` or `production`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown environment \"{0}\": expected \"sandbox\" or \"production\"")]
pub struct UnknownEnvironment(pub String);

impl FromStr for Environment {
    type Err = UnknownEnvironment;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Environment::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| UnknownEnvironment(s.to_owned()))
    }
}
