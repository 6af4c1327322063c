//! How long the disk takes to make a small write durable: the floor under every
//! `synchronous=full` SQLite commit.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Median and 99th percentile of `write(4 KiB) + fdatasync`.
pub struct FsyncReport {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Samples.
    pub samples: usize,
}

impl fmt::Display for FsyncReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fsync (4 KiB write + fdatasync, {} samples): p50 {:.3} ms, p99 {:.3} ms",
            self.samples,
            self.p50.as_secs_f64() * 1000.0,
            self.p99.as_secs_f64() * 1000.0
        )
    }
}

/// Measures `samples` synced writes in a file under `dir`.
pub fn measure(dir: &Path, samples: usize) -> std::io::Result<FsyncReport> {
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    let mut file = tmp.as_file();
    let block = [0x5au8; 4096];
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(FsyncReport {
        p50: times[times.len() / 2],
        p99: times[(times.len() * 99 / 100).min(times.len() - 1)],
        samples,
    })
}
