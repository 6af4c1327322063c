//! Where a phase's CPU time went: the server, PostgreSQL, the receiver and the load
//! generator, read from `/proc` (Linux) before and after, plus the machine's iowait and
//! steal. Two phases at the same load differ in what they cost; this says whose cost.

use std::fmt;

/// `/proc`'s clock ticks per second (`USER_HZ`, 100 on every Linux ABI in use).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU ticks used so far by each party, and the machine's iowait and steal ticks.
#[derive(Clone, Copy, Default)]
pub struct CpuSample {
    server: u64,
    postgres: u64,
    receiver: u64,
    load: u64,
    iowait: u64,
    steal: u64,
}

/// The processes a sample reads: the server's and the receiver's pids (the load
/// generator is this process; PostgreSQL is every process named `postgres`).
#[derive(Clone, Copy)]
pub struct Parties {
    /// The `ledgerhook serve` child.
    pub server: u32,
    /// The receiver child.
    pub receiver: u32,
}

impl Parties {
    /// Reads the counters now; a counter that cannot be read counts 0.
    pub fn sample(&self) -> CpuSample {
        let (iowait, steal) = machine_ticks().unwrap_or_default();
        CpuSample {
            server: process_ticks(self.server).unwrap_or(0),
            postgres: postgres_ticks(),
            receiver: process_ticks(self.receiver).unwrap_or(0),
            load: process_ticks(std::process::id()).unwrap_or(0),
            iowait,
            steal,
        }
    }
}

/// CPU seconds spent between two samples.
#[derive(Clone, Copy)]
pub struct CpuSpent {
    server: f64,
    postgres: f64,
    receiver: f64,
    load: f64,
    iowait: f64,
    steal: f64,
}

impl CpuSample {
    /// What was spent from `self` to `later`.
    pub fn until(&self, later: &CpuSample) -> CpuSpent {
        // A postgres process that ended between the samples can make its sum go down.
        let seconds = |a: u64, b: u64| b.saturating_sub(a) as f64 / TICKS_PER_SECOND;
        CpuSpent {
            server: seconds(self.server, later.server),
            postgres: seconds(self.postgres, later.postgres),
            receiver: seconds(self.receiver, later.receiver),
            load: seconds(self.load, later.load),
            iowait: seconds(self.iowait, later.iowait),
            steal: seconds(self.steal, later.steal),
        }
    }
}

impl CpuSpent {
    /// Seconds of the server and PostgreSQL together: what a delivery costs the service
    /// (on SQLite the database runs inside the server).
    pub fn server_and_database(&self) -> f64 {
        self.server + self.postgres
    }
}

impl fmt::Display for CpuSpent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu s: server {:.2}, postgres {:.2}, receiver {:.2}, load {:.2}; iowait {:.1} s, steal {:.1} s",
            self.server, self.postgres, self.receiver, self.load, self.iowait, self.steal
        )
    }
}

/// utime + stime of `pid` (fields 14 and 15 of `/proc/PID/stat`), all its threads
/// included.
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces; fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // `rest` starts at field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The summed ticks of every live process whose command is `postgres`.
fn postgres_ticks() -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres")
        })
        .filter_map(process_ticks)
        .sum()
}

/// The machine's iowait and steal ticks, summed over CPUs (the `cpu` line of /proc/stat).
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    Some((*fields.get(4)?, *fields.get(7)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_counted_and_time_only_goes_forward() {
        let before = process_ticks(std::process::id()).expect("own /proc entry");
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let after = process_ticks(std::process::id()).unwrap();
        assert!(
            after >= before + 10,
            "300 ms of spinning counted {} ticks",
            after - before
        );
    }
}
