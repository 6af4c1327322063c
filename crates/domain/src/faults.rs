//! Fault injection on sandbox configurations: each notification is, with the configured
//! probabilities, dropped (never sent, reported delivered — a packet QuickBooks believes
//! delivered), duplicated (sent again later with the same bytes and `webhook-id`) or
//! delayed (held back `delay_by` before its first attempt, so newer ones overtake it).
//!
//! The choice for a configuration's `n`-th notification is a pure function of the seed
//! and `n` ([`Faults::decide`]), so a seed reproduces which notifications are faulted.

use std::fmt;
use std::time::Duration;

/// One injected fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// Never sent; reported `delivered`.
    Drop,
    /// Sent, then sent again later.
    Duplicate,
    /// Held back before its first attempt.
    Delay,
}

impl Fault {
    /// Every fault, in the order decisions are made.
    pub const ALL: [Fault; 3] = [Fault::Drop, Fault::Duplicate, Fault::Delay];

    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Drop => "drop",
            Fault::Duplicate => "duplicate",
            Fault::Delay => "delay",
        }
    }

    /// The fault of an API name.
    pub fn parse(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

/// A configuration's fault settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Probability of [`Fault::Drop`], 0 to 1.
    pub drop: f64,
    /// Probability of [`Fault::Duplicate`], 0 to 1.
    pub duplicate: f64,
    /// Probability of [`Fault::Delay`], 0 to 1.
    pub delay: f64,
    /// How long a delayed notification is held back.
    pub delay_by: Duration,
    /// Makes the choice reproducible; chosen at random when the configuration gave none.
    pub seed: u64,
}

/// The hold-back of a delayed notification when `delay_by` is not given.
pub const DEFAULT_DELAY_BY: Duration = Duration::from_secs(5);

/// Why stored fault settings could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultsError(pub String);

impl fmt::Display for FaultsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "faults: {}", self.0)
    }
}

impl std::error::Error for FaultsError {}

/// A well-mixed 64-bit value of `x` (SplitMix64's finaliser).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Faults {
    /// Checks the probabilities.
    pub fn validate(&self) -> Result<(), FaultsError> {
        for (name, p) in [
            ("drop", self.drop),
            ("duplicate", self.duplicate),
            ("delay", self.delay),
        ] {
            if !(0.0..=1.0).contains(&p) || p.is_nan() {
                return Err(FaultsError(format!(
                    "{name} must be a probability from 0 to 1, got {p}"
                )));
            }
        }
        Ok(())
    }

    /// The faults of the configuration's `n`-th notification. A dropped notification is
    /// never sent, so nothing else applies to it.
    pub fn decide(&self, n: u64) -> Vec<Fault> {
        let roll = |fault: u64| {
            let bits = mix(self.seed ^ mix(n.wrapping_mul(4).wrapping_add(fault)));
            (bits >> 11) as f64 / (1u64 << 53) as f64
        };
        if roll(0) < self.drop {
            return vec![Fault::Drop];
        }
        let mut faults = Vec::new();
        if roll(1) < self.duplicate {
            faults.push(Fault::Duplicate);
        }
        if roll(2) < self.delay {
            faults.push(Fault::Delay);
        }
        faults
    }

    /// The storage form: `drop=0.1;duplicate=0;delay=0.5;delay_by_ms=5000;seed=42`.
    pub fn to_storage(&self) -> String {
        format!(
            "drop={};duplicate={};delay={};delay_by_ms={};seed={}",
            self.drop,
            self.duplicate,
            self.delay,
            self.delay_by.as_millis(),
            self.seed
        )
    }

    /// Reads [`Faults::to_storage`]'s form.
    pub fn from_storage(text: &str) -> Result<Faults, FaultsError> {
        let mut faults = Faults {
            drop: 0.0,
            duplicate: 0.0,
            delay: 0.0,
            delay_by: DEFAULT_DELAY_BY,
            seed: 0,
        };
        for part in text.split(';').filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| FaultsError(format!("stored part {part:?} has no value")))?;
            let number = |v: &str| {
                v.parse::<f64>()
                    .map_err(|_| FaultsError(format!("stored {key} {v:?}")))
            };
            let integer = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| FaultsError(format!("stored {key} {v:?}")))
            };
            match key {
                "drop" => faults.drop = number(value)?,
                "duplicate" => faults.duplicate = number(value)?,
                "delay" => faults.delay = number(value)?,
                "delay_by_ms" => faults.delay_by = Duration::from_millis(integer(value)?),
                "seed" => faults.seed = integer(value)?,
                _ => return Err(FaultsError(format!("stored key {key:?} is unknown"))),
            }
        }
        Ok(faults)
    }
}

/// Faults as stored on a notification: `drop`, `duplicate,delay`, …
pub fn list_to_storage(faults: &[Fault]) -> Option<String> {
    if faults.is_empty() {
        return None;
    }
    Some(faults.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(","))
}

/// Reads [`list_to_storage`]'s form (unknown names are skipped).
pub fn list_from_storage(text: Option<&str>) -> Vec<Fault> {
    text.unwrap_or_default()
        .split(',')
        .filter_map(Fault::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(drop: f64, duplicate: f64, delay: f64, seed: u64) -> Faults {
        Faults {
            drop,
            duplicate,
            delay,
            delay_by: Duration::from_secs(5),
            seed,
        }
    }

    #[test]
    fn decisions_follow_the_probabilities_and_the_seed() {
        let f = faults(0.1, 0.2, 0.3, 42);
        let n = 20_000;
        let mut counts = [0usize; 3];
        for i in 0..n {
            for fault in f.decide(i) {
                counts[fault as usize] += 1;
            }
        }
        let share = |c: usize| c as f64 / n as f64;
        assert!((share(counts[0]) - 0.1).abs() < 0.01, "{counts:?}");
        // Duplicates and delays are chosen among the 90 % not dropped.
        assert!((share(counts[1]) - 0.18).abs() < 0.01, "{counts:?}");
        assert!((share(counts[2]) - 0.27).abs() < 0.01, "{counts:?}");
        let again: Vec<_> = (0..100).map(|i| f.decide(i)).collect();
        assert_eq!(again, (0..100).map(|i| f.decide(i)).collect::<Vec<_>>());
        let other: Vec<_> = (0..100).map(|i| faults(0.1, 0.2, 0.3, 43).decide(i)).collect();
        assert_ne!(again, other, "another seed chooses other notifications");
        assert!((0..100).all(|i| faults(0.0, 0.0, 0.0, 1).decide(i).is_empty()));
        assert!((0..100).all(|i| faults(1.0, 1.0, 1.0, 1).decide(i) == [Fault::Drop]));
    }

    #[test]
    fn storage_round_trips_and_bad_probabilities_are_refused() {
        let f = faults(0.25, 0.0, 1.0, u64::MAX);
        assert_eq!(Faults::from_storage(&f.to_storage()).unwrap(), f);
        assert!(faults(1.5, 0.0, 0.0, 1)
            .validate()
            .unwrap_err()
            .0
            .contains("drop must be a probability"));
        assert!(faults(0.0, -0.1, 0.0, 1).validate().is_err());
        assert_eq!(
            list_from_storage(list_to_storage(&[Fault::Duplicate, Fault::Delay]).as_deref()),
            [Fault::Duplicate, Fault::Delay]
        );
        assert_eq!(list_to_storage(&[]), None);
    }
}
