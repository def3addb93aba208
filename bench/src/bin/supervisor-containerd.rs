//! `supervisor-containerd`: berth-supervisor + berth-shim against containerd 1.6 +
//! containerd-shim-runc-v2, side by side in one run.
//!
//! 1. Lifecycle: create + start + wait + delete of a busybox `true` container, each side driven
//!    by its own command-line client (`berth-supervisor ctl run --rm` and `ctr run --rm`),
//!    interleaved run by run. Both clients' bare start-up + connect cost (`version`) is measured
//!    too, so the server-side share can be read off.
//! 2. Memory: `-c` containers running `sleep`, started on each side; the daemon's and all its
//!    shims' RSS and PSS are summed, and the cost per container is (daemon growth + shims) / N.
//!
//! Both sides use the same read-only busybox rootfs directory (no snapshotter work on either
//! side). See bench/README.md.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_bench::{
    is_executable, memory_of, memory_of_all, mib, ms, percentile, pids_matching, run_timed, Memory,
};
use berth_tests::bins::workspace_binary;
use berth_tests::daemon::Daemon;
use berth_tests::SpecBuilder;
use clap::Parser;

/// Supervisor vs containerd: lifecycle latency and memory per container.
#[derive(Debug, Parser)]
#[command(name = "supervisor-containerd")]
struct Args {
    /// Timed lifecycles per subject.
    #[arg(short = 'n', long, default_value_t = 30)]
    runs: usize,
    /// Untimed lifecycles per subject first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Running containers for the memory measurement (0 skips it).
    #[arg(short = 'c', long, default_value_t = 50)]
    containers: usize,
    /// Seconds to let every process settle before reading memory.
    #[arg(long, default_value_t = 5)]
    settle: u64,
    /// containerd binary.
    #[arg(long, default_value = "/usr/bin/containerd")]
    containerd: PathBuf,
    /// ctr binary.
    #[arg(long, default_value = "/usr/bin/ctr")]
    ctr: PathBuf,
    /// runc, for containerd and for the berth+runc lifecycle row.
    #[arg(long, default_value = berth_tests::bins::RUNC)]
    runc: PathBuf,
}

/// Makes the lifecycle command of one subject for a container id.
type CommandFor<'a> = Box<dyn Fn(&str) -> Command + 'a>;

const TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> Result<()> {
    let args = Args::parse();
    if !berth_tests::is_root() {
        bail!("supervisor-containerd needs root (it creates containers): run it with sudo");
    }
    let supervisor = workspace_binary("berth-supervisor");
    for b in [
        &supervisor,
        &workspace_binary("berth-shim"),
        &workspace_binary("berth-runtime"),
        &args.containerd,
        &args.ctr,
        &args.runc,
    ] {
        if !is_executable(b) {
            bail!(
                "{} not found (cargo build --release -p berth-supervisor -p berth-shim -p \
                 berth-runtime -p berth-bench; apt-get install containerd runc)",
                b.display()
            );
        }
    }

    // Short paths: unix socket paths are limited to 107 bytes.
    let dir = tempfile::Builder::new().prefix("bsc-").tempdir_in("/tmp")?;
    let rootfs = dir.path().join("rootfs");
    berth_tests::rootfs::populate(&rootfs)?;

    let berth = Berth::start(dir.path(), &supervisor, &rootfs)?;
    let containerd = Containerd::start(dir.path(), &args, &rootfs)?;

    // --- lifecycle ------------------------------------------------------------------------
    let runc = args.runc.to_string_lossy().into_owned();
    let subjects: [(&str, CommandFor); 3] = [
        (
            "berth (berth-runtime)",
            Box::new(|id| berth.run_rm(id, None)),
        ),
        ("berth (runc)", Box::new(|id| berth.run_rm(id, Some(&runc)))),
        ("containerd (runc)", Box::new(|id| containerd.run_rm(id))),
    ];
    let mut times = vec![Vec::new(); subjects.len()];
    eprintln!(
        "lifecycle: {} warm-up + {} timed runs per subject, interleaved",
        args.warmup, args.runs
    );
    for i in 0..args.warmup + args.runs {
        for k in 0..subjects.len() {
            // Rotate who goes first.
            let s = (i + k) % subjects.len();
            let id = format!("lc-{s}-{i}");
            let t = run_timed(&mut (subjects[s].1)(&id), TIMEOUT)
                .with_context(|| format!("{} lifecycle {id}", subjects[s].0))?;
            if i >= args.warmup {
                times[s].push(t);
            }
        }
    }
    let mut client = [Vec::new(), Vec::new()];
    for _ in 0..args.runs {
        client[0].push(run_timed(&mut berth.ctl(["version"]), TIMEOUT)?);
        client[1].push(run_timed(&mut containerd.ctr(["version"]), TIMEOUT)?);
    }

    println!("lifecycle: create + start + wait + delete of `true` through each client");
    println!(
        "{:<24} {:>5} {:>10} {:>10} {:>10}",
        "subject", "runs", "median", "p90", "min"
    );
    for (s, t) in subjects.iter().zip(&times) {
        println!(
            "{:<24} {:>5} {:>10} {:>10} {:>10}",
            s.0,
            t.len(),
            ms(percentile(t, 50.0)),
            ms(percentile(t, 90.0)),
            ms(*t.iter().min().unwrap_or(&Duration::ZERO)),
        );
    }
    for (name, t) in [
        ("client only: ctl version", &client[0]),
        ("client only: ctr version", &client[1]),
    ] {
        println!(
            "{:<24} {:>5} {:>10} {:>10} {:>10}",
            name,
            t.len(),
            ms(percentile(t, 50.0)),
            ms(percentile(t, 90.0)),
            ms(*t.iter().min().unwrap_or(&Duration::ZERO)),
        );
    }
    let med = |t: &[Duration]| percentile(t, 50.0).as_secs_f64();
    println!(
        "ratio berth/containerd (median): {:.2}x with berth-runtime, {:.2}x both on runc \
         (target < 1.00x); minus client start-up: {:.2}x, {:.2}x",
        med(&times[0]) / med(&times[2]),
        med(&times[1]) / med(&times[2]),
        (med(&times[0]) - med(&client[0])) / (med(&times[2]) - med(&client[1])),
        (med(&times[1]) - med(&client[0])) / (med(&times[2]) - med(&client[1])),
    );

    // --- memory ---------------------------------------------------------------------------
    if args.containers > 0 {
        let n = args.containers;
        std::thread::sleep(Duration::from_secs(args.settle));
        let before = [berth.daemon_memory()?, containerd.daemon_memory()?];
        eprintln!("memory: starting {n} `sleep` containers on each side");
        for i in 0..n {
            berth.start_sleeper(&format!("mem-{i}"))?;
            containerd.start_sleeper(&format!("mem-{i}"))?;
        }
        std::thread::sleep(Duration::from_secs(args.settle));
        let after = [berth.daemon_memory()?, containerd.daemon_memory()?];
        let shim_pids = [berth.shim_pids(), containerd.shim_pids()];
        for (name, pids) in ["berth-shim", "containerd-shim-runc-v2"]
            .iter()
            .zip(&shim_pids)
        {
            if pids.len() != n {
                bail!("expected {n} {name} processes, found {}", pids.len());
            }
        }
        let shims = [memory_of_all(&shim_pids[0])?, memory_of_all(&shim_pids[1])?];
        println!();
        println!("memory with {n} running containers (RSS / PSS)");
        println!(
            "{:<12} {:>22} {:>22} {:>22} {:>22}",
            "subject", "daemon idle", "daemon with N", "all shims", "per container"
        );
        let mut per = [Memory::default(); 2];
        for (k, name) in ["berth", "containerd"].iter().enumerate() {
            let growth = |a: u64, b: u64| a.saturating_sub(b);
            per[k] = Memory {
                rss_kib: (growth(after[k].rss_kib, before[k].rss_kib) + shims[k].rss_kib)
                    / n as u64,
                pss_kib: (growth(after[k].pss_kib, before[k].pss_kib) + shims[k].pss_kib)
                    / n as u64,
            };
            let pair = |m: Memory| format!("{} / {}", mib(m.rss_kib), mib(m.pss_kib));
            println!(
                "{:<12} {:>22} {:>22} {:>22} {:>22}",
                name,
                pair(before[k]),
                pair(after[k]),
                pair(shims[k]),
                pair(per[k]),
            );
        }
        let total = |k: usize| after[k].rss_kib + shims[k].rss_kib;
        println!(
            "ratio berth/containerd per container: RSS {:.2}x, PSS {:.2}x (target <= 0.25x); \
             total RSS {} vs {}",
            per[0].rss_kib as f64 / per[1].rss_kib as f64,
            per[0].pss_kib as f64 / per[1].pss_kib as f64,
            mib(total(0)),
            mib(total(1)),
        );
    }
    drop(subjects);
    drop(berth);
    drop(containerd);
    remove_parent_cgroups(&["berth-bench", "bench"]);
    Ok(())
}

/// Removes the (empty by now) parent cgroups the two sides made: `/berth-bench` for berth's
/// bundles, `/bench` for containerd's namespace. Best effort: a non-empty one stays.
fn remove_parent_cgroups(names: &[&str]) {
    let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for c in controllers.flatten() {
        for name in names {
            let _ = std::fs::remove_dir(c.path().join(name));
        }
    }
    for name in names {
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(name));
    }
}

/// A berth-supervisor with its own socket and dirs, and the containers the benchmark made.
struct Berth {
    dir: PathBuf,
    supervisor: PathBuf,
    rootfs: PathBuf,
    daemon: Daemon,
    sleepers: std::cell::RefCell<Vec<String>>,
}

impl Berth {
    fn start(base: &Path, supervisor: &Path, rootfs: &Path) -> Result<Berth> {
        let dir = base.join("b");
        std::fs::create_dir_all(&dir)?;
        let mut cmd = Command::new(supervisor);
        cmd.arg("--address")
            .arg(dir.join("sup.sock"))
            .arg("--root")
            .arg(dir.join("root"))
            .arg("--state")
            .arg(dir.join("state"))
            .args(["--log-level", "warn"]);
        let mut daemon = Daemon::spawn("berth-supervisor", cmd, dir.join("supervisor.log"))?;
        daemon.wait_for_unix_socket(&dir.join("sup.sock"), TIMEOUT)?;
        let b = Berth {
            dir,
            supervisor: supervisor.to_path_buf(),
            rootfs: rootfs.to_path_buf(),
            daemon,
            sleepers: Default::default(),
        };
        b.bundle("true", &["true"])?;
        Ok(b)
    }

    /// A bundle dir `<dir>/bundles/<name>` whose config.json uses the shared rootfs read-only.
    fn bundle(&self, name: &str, args: &[&str]) -> Result<PathBuf> {
        let path = self.dir.join("bundles").join(name);
        std::fs::create_dir_all(&path)?;
        let rootfs = self.rootfs.to_string_lossy().into_owned();
        let spec = SpecBuilder::new(name)
            .args(args.iter().copied())
            .readonly_rootfs(true)
            .cgroups_path(&format!("/berth-bench/{name}"))
            .with(|s| {
                let mut root = s.root().clone().unwrap_or_default();
                root.set_path(PathBuf::from(&rootfs));
                s.set_root(Some(root));
            });
        std::fs::write(path.join("config.json"), spec.to_json()?)?;
        Ok(path)
    }

    fn ctl<const N: usize>(&self, args: [&str; N]) -> Command {
        let mut cmd = Command::new(&self.supervisor);
        cmd.arg("ctl")
            .arg("--address")
            .arg(self.dir.join("sup.sock"))
            .args(["-n", "bench"])
            .args(args);
        cmd
    }

    fn run_rm(&self, id: &str, runtime: Option<&str>) -> Command {
        let bundle = self.dir.join("bundles").join("true");
        let mut cmd = self.ctl(["run", "--rm"]);
        if let Some(rt) = runtime {
            cmd.args(["--runtime", rt]);
        }
        cmd.arg("--bundle").arg(bundle).arg(id);
        cmd
    }

    fn start_sleeper(&self, id: &str) -> Result<()> {
        let bundle = self.bundle(id, &["sleep", "3600"])?;
        let b = bundle.to_string_lossy().into_owned();
        run_timed(&mut self.ctl(["create", "--bundle", &b, id]), TIMEOUT)?;
        self.sleepers.borrow_mut().push(id.to_string());
        run_timed(&mut self.ctl(["start", id]), TIMEOUT)?;
        Ok(())
    }

    fn daemon_memory(&self) -> Result<Memory> {
        memory_of(self.daemon.pid().context("supervisor exited")?)
    }

    fn shim_pids(&self) -> Vec<u32> {
        let state = self.dir.join("state").to_string_lossy().into_owned();
        pids_matching(|c| c.contains("berth-shim") && c.contains(&state))
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        for id in self.sleepers.borrow().iter() {
            let _ = run_timed(&mut self.ctl(["delete", "--force", id]), TIMEOUT);
        }
    }
}

/// A private containerd (CRI plugin off) with its own root, state and sockets.
struct Containerd {
    dir: PathBuf,
    ctr: PathBuf,
    runc: PathBuf,
    rootfs: PathBuf,
    daemon: Daemon,
    sleepers: std::cell::RefCell<Vec<String>>,
}

impl Containerd {
    fn start(base: &Path, args: &Args, rootfs: &Path) -> Result<Containerd> {
        let dir = base.join("c");
        std::fs::create_dir_all(&dir)?;
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n\
             [debug]\n  level = \"warn\"\n",
            d = dir.display()
        );
        std::fs::write(dir.join("config.toml"), config)?;
        let mut cmd = Command::new(&args.containerd);
        cmd.arg("--config").arg(dir.join("config.toml"));
        let mut daemon = Daemon::spawn("containerd", cmd, dir.join("containerd.log"))?;
        daemon.wait_for_unix_socket(&dir.join("c.sock"), TIMEOUT)?;
        Ok(Containerd {
            dir,
            ctr: args.ctr.clone(),
            runc: args.runc.clone(),
            rootfs: rootfs.to_path_buf(),
            daemon,
            sleepers: Default::default(),
        })
    }

    fn ctr<const N: usize>(&self, args: [&str; N]) -> Command {
        let mut cmd = Command::new(&self.ctr);
        cmd.arg("-a")
            .arg(self.dir.join("c.sock"))
            .args(["-n", "bench"])
            .args(args);
        cmd
    }

    fn run_args(&self, cmd: &mut Command) {
        cmd.arg("--runc-binary")
            .arg(&self.runc)
            .args(["--rootfs", "--read-only", "--env", "PATH=/bin"])
            .arg(&self.rootfs);
    }

    fn run_rm(&self, id: &str) -> Command {
        let mut cmd = self.ctr(["run", "--rm"]);
        self.run_args(&mut cmd);
        cmd.args([id, "true"]);
        cmd
    }

    fn start_sleeper(&self, id: &str) -> Result<()> {
        let mut cmd = self.ctr(["run", "-d"]);
        self.run_args(&mut cmd);
        cmd.args([id, "sleep", "3600"]);
        self.sleepers.borrow_mut().push(id.to_string());
        run_timed(&mut cmd, TIMEOUT)?;
        Ok(())
    }

    fn daemon_memory(&self) -> Result<Memory> {
        memory_of(self.daemon.pid().context("containerd exited")?)
    }

    fn shim_pids(&self) -> Vec<u32> {
        let sock = self.dir.join("c.sock").to_string_lossy().into_owned();
        pids_matching(|c| c.contains("containerd-shim-runc-v2") && c.contains(&sock))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for id in self.sleepers.borrow().iter() {
            let _ = run_timed(&mut self.ctr(["task", "delete", "--force", id]), TIMEOUT);
            let _ = run_timed(&mut self.ctr(["container", "delete", id]), TIMEOUT);
        }
    }
}
