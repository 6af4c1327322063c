//! The resident memory of a process, read from `/proc` (Linux): sampled every 100 ms by a
//! task, keeping the peak of each phase; the kernel's own high-water mark (`VmHWM`)
//! confirms the sampled peak over the process's whole life.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A `/proc/PID/status` field in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    line.trim().trim_end_matches(" kB").trim().parse().ok()
}

/// Samples a process's RSS until dropped.
pub struct RssWatch {
    pid: u32,
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssWatch {
    /// Starts sampling `pid` every 100 ms.
    pub fn start(pid: u32) -> RssWatch {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (peak, stopped) = (peak_kib.clone(), stop.clone());
        tokio::spawn(async move {
            while !stopped.load(Ordering::Relaxed) {
                match status_kib(pid, "VmRSS") {
                    Some(kib) => {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                    None => return,
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        RssWatch { pid, peak_kib, stop }
    }

    /// The process watched.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The highest RSS sampled since the last call, in MiB; starts the next phase.
    pub fn take_peak_mib(&self) -> f64 {
        let now = status_kib(self.pid, "VmRSS").unwrap_or(0);
        let peak = self.peak_kib.swap(now, Ordering::Relaxed).max(now);
        peak as f64 / 1024.0
    }

    /// The kernel's high-water mark of the process's RSS over its life, in MiB.
    pub fn lifetime_peak_mib(&self) -> f64 {
        status_kib(self.pid, "VmHWM").unwrap_or(0) as f64 / 1024.0
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_rss_is_read_and_the_high_water_mark_is_not_below_it() {
        let pid = std::process::id();
        let rss = status_kib(pid, "VmRSS").expect("VmRSS of this process");
        let hwm = status_kib(pid, "VmHWM").expect("VmHWM of this process");
        assert!(rss > 0 && hwm >= rss, "rss {rss} KiB, high-water mark {hwm} KiB");
    }
}
