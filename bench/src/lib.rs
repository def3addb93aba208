//! Shared pieces of berth's benchmarks: timing statistics, process memory, and running a
//! command with a bounded wait. Each benchmark is a binary in `src/bin/`; see bench/README.md.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Nearest-rank percentile (`p` in 0..=100) of `xs`; zero for an empty slice.
pub fn percentile(xs: &[Duration], p: f64) -> Duration {
    if xs.is_empty() {
        return Duration::ZERO;
    }
    let mut v = xs.to_vec();
    v.sort();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Arithmetic mean; zero for an empty slice.
pub fn mean(xs: &[Duration]) -> Duration {
    if xs.is_empty() {
        return Duration::ZERO;
    }
    xs.iter().sum::<Duration>() / xs.len() as u32
}

/// Median of integers (upper median); zero for an empty slice.
pub fn median_i64(xs: &[i64]) -> i64 {
    let mut v = xs.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// `12.3 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// `12.3 MiB` from KiB.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Memory of one process, in KiB: resident set size and proportional set size (shared pages
/// divided among the processes mapping them, from `smaps_rollup`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`.
    pub rss_kib: u64,
    /// `Pss`.
    pub pss_kib: u64,
}

impl std::ops::Add for Memory {
    type Output = Memory;
    fn add(self, o: Memory) -> Memory {
        Memory {
            rss_kib: self.rss_kib + o.rss_kib,
            pss_kib: self.pss_kib + o.pss_kib,
        }
    }
}

/// Reads a process's [`Memory`]. A process that is gone reads as an error.
pub fn memory_of(pid: u32) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .with_context(|| format!("read /proc/{pid}/smaps_rollup"))?;
    Ok(Memory {
        rss_kib: kib_field(&status, "VmRSS:").unwrap_or(0),
        pss_kib: kib_field(&rollup, "Pss:").unwrap_or(0),
    })
}

/// Sum of [`memory_of`] over `pids`.
pub fn memory_of_all(pids: &[u32]) -> Result<Memory> {
    pids.iter()
        .try_fold(Memory::default(), |acc, &p| Ok(acc + memory_of(p)?))
}

fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Pids of every process whose command line (arguments joined by spaces) satisfies `pred`.
pub fn pids_matching(pred: impl Fn(&str) -> bool) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = raw
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        if !cmdline.is_empty() && pred(&cmdline) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

/// Runs `cmd` with stdin and stdout closed, stderr captured, and fails (with its stderr) unless
/// it exits 0 within `timeout`. Returns the wall time from spawn to exit.
pub fn run_timed(cmd: &mut Command, timeout: Duration) -> Result<Duration> {
    run_timed_to(cmd, timeout, Stdio::null())
}

/// [`run_timed`] with stdout sent to `stdout` (a file the caller checks afterwards).
pub fn run_timed_to(
    cmd: &mut Command,
    timeout: Duration,
    stdout: impl Into<Stdio>,
) -> Result<Duration> {
    timed(cmd, timeout, Stdio::null(), stdout.into())
}

/// [`run_timed`] with stdin read from `stdin` (a file).
pub fn run_timed_from(
    cmd: &mut Command,
    timeout: Duration,
    stdin: impl Into<Stdio>,
) -> Result<Duration> {
    timed(cmd, timeout, stdin.into(), Stdio::null())
}

fn timed(cmd: &mut Command, timeout: Duration, stdin: Stdio, stdout: Stdio) -> Result<Duration> {
    let err = tempfile::tempfile().context("stderr temp file")?;
    let start = Instant::now();
    let mut child = cmd
        .stdin(stdin)
        .stdout(stdout)
        .stderr(err.try_clone().context("dup stderr file")?)
        .spawn()
        .with_context(|| format!("spawn {cmd:?}"))?;
    loop {
        if let Some(status) = child.try_wait().context("wait")? {
            let elapsed = start.elapsed();
            if !status.success() {
                bail!("{cmd:?} failed ({status}): {}", read_all(err));
            }
            return Ok(elapsed);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{cmd:?} did not finish within {timeout:?}: {}",
                read_all(err)
            );
        }
        // Short sleeps: the quantity measured is tens of milliseconds.
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn read_all(mut f: std::fs::File) -> String {
    use std::io::{Read, Seek};
    let mut s = String::new();
    let _ = f.rewind();
    let _ = f.read_to_string(&mut s);
    s
}

/// Whether `path` is an executable file.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let xs: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
        assert_eq!(percentile(&xs, 50.0), Duration::from_millis(5));
        assert_eq!(percentile(&xs, 90.0), Duration::from_millis(9));
        assert_eq!(percentile(&xs, 100.0), Duration::from_millis(10));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn memory_of_self_is_nonzero() {
        let m = memory_of(std::process::id()).expect("own memory");
        assert!(m.rss_kib > 0 && m.pss_kib > 0, "{m:?}");
    }

    #[test]
    fn kib_field_parses_proc_lines() {
        let text = "Name:\tx\nVmRSS:\t    2344 kB\n";
        assert_eq!(kib_field(text, "VmRSS:"), Some(2344));
        assert_eq!(kib_field(text, "Pss:"), None);
    }
}
