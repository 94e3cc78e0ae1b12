//! What the host contributes to a run's figures: the sync cost of the data
//! dir's file system (every durable ACK waits for at least one) and the CPU
//! the server spent, read from /proc, so runs on different machines or
//! disks can be compared per message instead of per second.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Host measurements of a scenario.
#[derive(clap::Args, Debug, Clone)]
pub struct HostArgs {
    /// Process id(s) of the server(s) under load: the report adds their CPU
    /// seconds (user + system, from /proc/<pid>/stat) per 1,000 messages.
    #[arg(long = "server-pid")]
    pub server_pid: Vec<u32>,
    /// Where to measure the fdatasync cost printed in the header (default:
    /// the data dir given by --data-dir, if it exists).
    #[arg(long)]
    pub fsync_dir: Option<PathBuf>,
}

/// Clock ticks per second of /proc's time fields (USER_HZ, fixed at 100 in
/// Linux's user-space ABI).
const USER_HZ: f64 = 100.0;

/// Syncs measured for the header.
const FSYNC_ROUNDS: u32 = 100;

/// Mean cost of appending 4 KiB to a file in `dir` and `fdatasync`ing it.
pub fn fsync_cost(dir: &Path) -> std::io::Result<Duration> {
    let path = dir.join(format!(".ferry-bench-fsync-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        let block = [b'x'; 4096];
        let start = Instant::now();
        for _ in 0..FSYNC_ROUNDS {
            f.write_all(&block)?;
            f.sync_data()?;
        }
        Ok(start.elapsed() / FSYNC_ROUNDS)
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// The header line about the sync cost (or why it is missing).
pub fn fsync_line(a: &HostArgs, data_dir: &Path) -> String {
    let dir = a.fsync_dir.as_deref().unwrap_or(data_dir);
    if !dir.is_dir() {
        return format!(
            "fdatasync cost: not measured ({} is not a directory)",
            dir.display()
        );
    }
    match fsync_cost(dir) {
        Ok(d) => format!(
            "fdatasync cost in {}: {:.3} ms (4 KiB append, mean of {FSYNC_ROUNDS})",
            dir.display(),
            d.as_secs_f64() * 1e3
        ),
        Err(e) => format!("fdatasync cost: not measured in {}: {e}", dir.display()),
    }
}

/// CPU seconds (user + system) of the process `pid` so far.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| anyhow::anyhow!("reading /proc/{pid}/stat: {e}"))?;
    // The command name (field 2) may hold spaces; it ends at the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc/{pid}/stat format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14 and stime 15.
    let tick = |i: usize| -> anyhow::Result<f64> {
        let v: u64 = fields
            .get(i - 3)
            .ok_or_else(|| anyhow::anyhow!("short /proc/{pid}/stat"))?
            .parse()?;
        Ok(v as f64 / USER_HZ)
    };
    Ok(tick(14)? + tick(15)?)
}

/// CPU used by the server processes since [`ServerCpu::start`].
pub struct ServerCpu {
    pids: Vec<u32>,
    start: f64,
}

impl ServerCpu {
    /// `None` without `--server-pid`.
    pub fn start(a: &HostArgs) -> anyhow::Result<Option<ServerCpu>> {
        if a.server_pid.is_empty() {
            return Ok(None);
        }
        let start = total(&a.server_pid)?;
        Ok(Some(ServerCpu {
            pids: a.server_pid.clone(),
            start,
        }))
    }

    /// Seconds used since the start.
    pub fn used(&self) -> anyhow::Result<f64> {
        Ok(total(&self.pids)? - self.start)
    }

    /// Report row: total, per 1,000 messages and per delivery.
    pub fn row(&self, messages: u64, deliveries: u64) -> anyhow::Result<String> {
        let used = self.used()?;
        let per_k = used * 1000.0 / messages.max(1) as f64;
        let mut row = format!("{used:.2} s, {per_k:.3} s per 1,000 messages");
        if deliveries > 0 {
            row.push_str(&format!(
                ", {:.1} µs per delivery",
                used * 1e6 / deliveries as f64
            ));
        }
        Ok(row)
    }
}

fn total(pids: &[u32]) -> anyhow::Result<f64> {
    pids.iter().map(|&p| cpu_seconds(p)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_is_read_and_grows() {
        let a = HostArgs {
            server_pid: vec![std::process::id()],
            fsync_dir: None,
        };
        let cpu = ServerCpu::start(&a).expect("read").expect("some");
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        assert!(cpu.used().expect("read") >= 0.0);
        assert!(
            cpu.row(1000, 0)
                .expect("row")
                .contains("per 1,000 messages")
        );
    }

    #[test]
    fn fsync_cost_is_measured_in_the_given_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = fsync_cost(dir.path()).expect("measure");
        assert!(d > Duration::ZERO);
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("ls").count(),
            0,
            "probe removed"
        );
        let missing = HostArgs {
            server_pid: vec![],
            fsync_dir: Some(dir.path().join("nope")),
        };
        assert!(fsync_line(&missing, dir.path()).contains("not measured"));
    }
}
