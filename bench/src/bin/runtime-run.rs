//! `runtime-run`: times `<runtime> run` of a busybox bundle running `true`, berth-runtime
//! against runc, interleaved so both see the same machine load.
//!
//! Each sample is one foreground `run` from spawn to reap (`wait4`, which also gives the peak
//! RSS of the runtime process and the children it reaped). Container deletion and state
//! cleanup between samples are not timed. See bench/README.md.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use berth_bench::{mean, median_i64, ms, percentile};
use berth_tests::bins::{workspace_binary, RUNC};
use berth_tests::{Bundle, SpecBuilder};

/// Time `run` of a `true` container: berth-runtime vs runc.
#[derive(Debug, Parser)]
#[command(name = "runtime-run")]
struct Args {
    /// Timed runs per runtime.
    #[arg(short = 'n', long, default_value_t = 30)]
    runs: usize,
    /// Untimed runs per runtime first (page cache, cgroup hierarchy).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// berth-runtime binary (default: next to this binary, i.e. the same cargo profile).
    #[arg(long)]
    berth: Option<PathBuf>,
    /// runc binary.
    #[arg(long, default_value = RUNC)]
    runc: PathBuf,
    /// Ratio berth/runc of medians to aim for; exit 1 when missed and `--check` is given.
    #[arg(long, default_value_t = 0.8)]
    target: f64,
    /// Exit non-zero when the median ratio misses `--target`.
    #[arg(long)]
    check: bool,
}

/// One runtime under measurement.
#[derive(Debug)]
struct Subject {
    name: &'static str,
    binary: PathBuf,
    root: tempfile::TempDir,
    times: Vec<Duration>,
    rss_kib: Vec<i64>,
}

/// What one `run` cost.
#[derive(Debug)]
struct Sample {
    elapsed: Duration,
    max_rss_kib: i64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !berth_tests::is_root() {
        bail!("runtime-run needs root (it creates containers): run it with sudo");
    }
    let berth = args
        .berth
        .clone()
        .unwrap_or_else(|| workspace_binary("berth-runtime"));
    for b in [&berth, &args.runc] {
        if !b.is_file() {
            bail!(
                "{} not found (build with `cargo build --release -p berth-runtime -p berth-bench`)",
                b.display()
            );
        }
    }
    let bundle = Bundle::busybox(SpecBuilder::new("bench-run").args(["true"]))
        .context("make busybox bundle")?;
    let mut subjects = [
        Subject::new("berth-runtime", berth)?,
        Subject::new("runc", args.runc.clone())?,
    ];

    eprintln!(
        "{} warm-up + {} timed runs each, interleaved; bundle {}",
        args.warmup,
        args.runs,
        bundle.path().display()
    );
    let mut seq = 0usize;
    for i in 0..args.warmup + args.runs {
        // Alternate who goes first so neither always runs right after the other's teardown.
        let order: [usize; 2] = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for &s in &order {
            seq += 1;
            let subject = &mut subjects[s];
            let sample = subject.run_once(&bundle, seq)?;
            if i >= args.warmup {
                subject.times.push(sample.elapsed);
                subject.rss_kib.push(sample.max_rss_kib);
            }
        }
    }

    println!(
        "{:<14} {:>5} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "runtime", "runs", "median", "p90", "min", "mean", "peak RSS"
    );
    for s in &subjects {
        println!(
            "{:<14} {:>5} {:>10} {:>10} {:>10} {:>10} {:>9.1} MB",
            s.name,
            s.times.len(),
            ms(percentile(&s.times, 50.0)),
            ms(percentile(&s.times, 90.0)),
            ms(*s.times.iter().min().unwrap_or(&Duration::ZERO)),
            ms(mean(&s.times)),
            median_i64(&s.rss_kib) as f64 / 1024.0,
        );
    }
    let ratio = percentile(&subjects[0].times, 50.0).as_secs_f64()
        / percentile(&subjects[1].times, 50.0).as_secs_f64();
    let p90_ratio = percentile(&subjects[0].times, 90.0).as_secs_f64()
        / percentile(&subjects[1].times, 90.0).as_secs_f64();
    let verdict = if ratio <= args.target {
        "met"
    } else {
        "MISSED"
    };
    println!(
        "ratio berth/runc: median {ratio:.2}x, p90 {p90_ratio:.2}x (target <= {:.2}x: {verdict})",
        args.target
    );
    if args.check && ratio > args.target {
        std::process::exit(1);
    }
    Ok(())
}

impl Subject {
    fn new(name: &'static str, binary: PathBuf) -> Result<Subject> {
        let root = tempfile::Builder::new()
            .prefix(&format!("berth-bench-{name}-"))
            .tempdir()
            .context("create state root")?;
        Ok(Subject {
            name,
            binary,
            root,
            times: Vec::new(),
            rss_kib: Vec::new(),
        })
    }

    /// One timed `run`, then an untimed `delete --force` in case the runtime left state.
    fn run_once(&self, bundle: &Bundle, seq: usize) -> Result<Sample> {
        let id = format!("bench-{}-{}-{seq}", std::process::id(), self.name);
        let err_path = self.root.path().join("last-stderr");
        let stderr = File::create(&err_path).context("create stderr file")?;
        let start = Instant::now();
        let child = Command::new(&self.binary)
            .arg("--root")
            .arg(self.root.path())
            .args(["run", "--bundle"])
            .arg(bundle.path())
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawn {}", self.binary.display()))?;
        let (status, rusage) = wait4(child.id() as libc::pid_t)?;
        let elapsed = start.elapsed();
        // The child was reaped by wait4 above; std's handle must not wait on it again.
        drop(child);
        let _ = Command::new(&self.binary)
            .arg("--root")
            .arg(self.root.path())
            .args(["delete", "--force", &id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            let msg = std::fs::read_to_string(&err_path).unwrap_or_default();
            bail!(
                "{} run {id} failed (wait status {status:#x}): {msg}",
                self.name
            );
        }
        Ok(Sample {
            elapsed,
            max_rss_kib: rusage.ru_maxrss,
        })
    }
}

/// Blocks until `pid` exits; returns its wait status and resource usage.
fn wait4(pid: libc::pid_t) -> Result<(libc::c_int, libc::rusage)> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value for wait4 to overwrite.
    let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own unreaped child; status and rusage point to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut rusage) };
        if r == pid {
            return Ok((status, rusage));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).context("wait4");
        }
    }
}
