//! Driving an OCI runtime binary (berth-runtime or runc) through runc's command line.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use tempfile::TempDir;

use crate::bins::{require_workspace_binary, RUNC};
use crate::bundle::Bundle;
use crate::process::{wait_until, Cmd, Output, Running};
use crate::DEFAULT_TIMEOUT;

/// Env var naming the runtime [`Runtime::under_test`] uses: a path, or `runc` for [`RUNC`].
pub const RUNTIME_ENV: &str = "BERTH_TEST_RUNTIME";

/// One runtime binary with a private `--root` state dir.
///
/// Every container made through [`Runtime::create`], [`Runtime::run`] and friends is tracked;
/// on drop each is force-deleted (`delete --force`), and if the runtime failed to clean up,
/// the processes in its cgroup are killed and the cgroup dirs removed. So a failing test leaves
/// no containers, processes or cgroups behind. Methods panic with the full command output on a
/// timeout or a spawn failure: in a test there is nothing better to do.
#[derive(Debug)]
pub struct Runtime {
    binary: PathBuf,
    root: TempDir,
    io: TempDir,
    global_args: Vec<String>,
    timeout: Duration,
    tracked: Mutex<Vec<Tracked>>,
}

#[derive(Debug, Clone)]
struct Tracked {
    id: String,
    cgroups_path: Option<String>,
}

/// `state` output of a container, in the OCI / runc shape.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ContainerState {
    /// OCI spec version the runtime reports.
    #[serde(rename = "ociVersion", default)]
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Host pid of the init process (0 once stopped, for runc).
    #[serde(default)]
    pub pid: i64,
    /// `creating`, `created`, `running`, `paused` or `stopped`.
    pub status: String,
    /// Absolute bundle path.
    #[serde(default)]
    pub bundle: PathBuf,
    /// Absolute rootfs path (runc extension).
    #[serde(default)]
    pub rootfs: Option<PathBuf>,
    /// Creation time, RFC 3339 (runc extension).
    #[serde(default)]
    pub created: Option<String>,
    /// Owner user name (runc extension).
    #[serde(default)]
    pub owner: Option<String>,
}

impl Runtime {
    /// A runtime driving `binary` with a fresh temp `--root`.
    pub fn new(binary: impl Into<PathBuf>) -> Runtime {
        let binary = binary.into();
        let root = tempfile::Builder::new()
            .prefix("berth-test-root-")
            .tempdir()
            .expect("create runtime state root");
        let io = tempfile::Builder::new()
            .prefix("berth-test-io-")
            .tempdir()
            .expect("create container io dir");
        Runtime {
            binary,
            root,
            io,
            global_args: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            tracked: Mutex::new(Vec::new()),
        }
    }

    /// The runtime the suite tests: `$BERTH_TEST_RUNTIME` (a path, or `runc`), else the
    /// workspace's `berth-runtime` (panics with the build command if it is not built).
    pub fn under_test() -> Runtime {
        match std::env::var(RUNTIME_ENV) {
            Ok(v) if v == "runc" => Runtime::runc(),
            Ok(v) if !v.is_empty() => Runtime::new(v),
            _ => Runtime::berth(),
        }
    }

    /// The workspace's `berth-runtime`, built in the same profile as the caller.
    pub fn berth() -> Runtime {
        Runtime::new(require_workspace_binary("berth-runtime"))
    }

    /// Debian's runc.
    pub fn runc() -> Runtime {
        Runtime::new(RUNC)
    }

    /// Adds global flags put before every verb (e.g. `--log`, `--systemd-cgroup`).
    pub fn with_global_args<I, S>(mut self, args: I) -> Runtime
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.global_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The binary's path.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// A short name for messages: the binary's file name.
    pub fn name(&self) -> String {
        self.binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The `--root` state dir.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A [`Cmd`] for this runtime with `--root` and the global args already set.
    pub fn cmd(&self) -> Cmd {
        Cmd::new(&self.binary)
            .arg("--root")
            .arg(self.root.path())
            .args(&self.global_args)
            .timeout(self.timeout)
    }

    /// Runs `args` (a verb and its flags) and returns the output; panics on timeout.
    #[track_caller]
    pub fn exec_args(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e:#}", self.name()))
    }

    /// Records a container for cleanup on drop (done by the verbs that create containers).
    pub fn track(&self, id: &str, cgroups_path: Option<String>) {
        let mut t = self.tracked.lock().expect("tracked list lock poisoned");
        if !t.iter().any(|c| c.id == id) {
            t.push(Tracked {
                id: id.to_string(),
                cgroups_path,
            });
        }
    }

    /// File receiving the stdout (and stderr) of a container started detached by
    /// [`Runtime::create`]; read it with [`Runtime::container_output`].
    pub fn container_output_path(&self, id: &str) -> PathBuf {
        self.io.path().join(format!("{id}.out"))
    }

    /// What a container made by [`Runtime::create`] has printed so far.
    pub fn container_output(&self, id: &str) -> String {
        String::from_utf8_lossy(&fs::read(self.container_output_path(id)).unwrap_or_default())
            .into_owned()
    }

    /// `create --bundle B ID`; the container's output goes to [`Runtime::container_output_path`].
    #[track_caller]
    pub fn create(&self, id: &str, bundle: &Bundle) -> Output {
        self.create_with(id, bundle, &[])
    }

    /// `create --bundle B <extra...> ID` (e.g. `--console-socket S`, `--pid-file P`).
    #[track_caller]
    pub fn create_with(&self, id: &str, bundle: &Bundle, extra: &[&str]) -> Output {
        self.track(id, bundle.cgroups_path());
        self.cmd()
            .arg("create")
            .arg("--bundle")
            .arg(bundle.path())
            .args(extra)
            .arg(id)
            .stdout_to(self.container_output_path(id))
            .output()
            .unwrap_or_else(|e| panic!("{}: {e:#}", self.name()))
    }

    /// `start ID`.
    #[track_caller]
    pub fn start(&self, id: &str) -> Output {
        self.exec_args(&["start", id])
    }

    /// `run --bundle B ID` in the foreground: returns when the container exits, with its output
    /// and the runtime's exit code (the container's, or 128+N if it was killed by signal N).
    #[track_caller]
    pub fn run(&self, id: &str, bundle: &Bundle) -> Output {
        self.run_with(id, bundle, &[])
    }

    /// `run --bundle B <extra...> ID` in the foreground.
    #[track_caller]
    pub fn run_with(&self, id: &str, bundle: &Bundle, extra: &[&str]) -> Output {
        self.spawn_run(id, bundle, extra)
            .wait(self.timeout)
            .unwrap_or_else(|e| panic!("{}: {e:#}", self.name()))
    }

    /// Starts a foreground `run` without waiting for it (to act on the container meanwhile).
    #[track_caller]
    pub fn spawn_run(&self, id: &str, bundle: &Bundle, extra: &[&str]) -> Running {
        self.track(id, bundle.cgroups_path());
        self.cmd()
            .arg("run")
            .arg("--bundle")
            .arg(bundle.path())
            .args(extra)
            .arg(id)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e:#}", self.name()))
    }

    /// `state ID`, parsed. Fails with the command output if it exits non-zero or prints
    /// something that is not a state object.
    pub fn state(&self, id: &str) -> Result<ContainerState> {
        let out = self.cmd().args(["state", id]).output()?;
        if !out.success() {
            bail!("state {id} failed: {out}");
        }
        serde_json::from_str(&out.stdout).with_context(|| format!("parse state of {id}: {out}"))
    }

    /// Waits (bounded) until `state ID` reports `status`.
    pub fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> Result<ContainerState> {
        let mut last = None;
        wait_until(&format!("{id} to be {status}"), timeout, || {
            let s = self.state(id).ok()?;
            let done = s.status == status;
            last = Some(s.clone());
            done.then_some(s)
        })
        .with_context(|| format!("last state: {last:?}"))
    }

    /// `kill ID SIGNAL` (signal as a name like `KILL` or a number).
    #[track_caller]
    pub fn kill(&self, id: &str, signal: &str) -> Output {
        self.exec_args(&["kill", id, signal])
    }

    /// `delete ID`.
    #[track_caller]
    pub fn delete(&self, id: &str) -> Output {
        self.exec_args(&["delete", id])
    }

    /// `delete --force ID`.
    #[track_caller]
    pub fn delete_force(&self, id: &str) -> Output {
        self.exec_args(&["delete", "--force", id])
    }

    /// `exec ID ARGS...` in the foreground (no tty).
    #[track_caller]
    pub fn exec(&self, id: &str, args: &[&str]) -> Output {
        let mut v = vec!["exec", id];
        v.extend_from_slice(args);
        self.exec_args(&v)
    }

    /// `pause ID`.
    #[track_caller]
    pub fn pause(&self, id: &str) -> Output {
        self.exec_args(&["pause", id])
    }

    /// `resume ID`.
    #[track_caller]
    pub fn resume(&self, id: &str) -> Output {
        self.exec_args(&["resume", id])
    }

    /// `list` (the table form).
    #[track_caller]
    pub fn list(&self) -> Output {
        self.exec_args(&["list"])
    }

    /// Container ids in `list --format json` (an empty list prints `null` in runc).
    pub fn list_ids(&self) -> Result<Vec<String>> {
        let out = self.cmd().args(["list", "--format", "json"]).output()?;
        if !out.success() {
            bail!("list failed: {out}");
        }
        let v: serde_json::Value = serde_json::from_str(out.stdout.trim())
            .with_context(|| format!("parse list output: {out}"))?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["id"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Force-deletes every tracked container now (what drop does), reporting what failed.
    pub fn cleanup(&self) -> Vec<String> {
        let tracked = std::mem::take(&mut *self.tracked.lock().unwrap_or_else(|p| p.into_inner()));
        let mut problems = Vec::new();
        for c in tracked {
            match self
                .cmd()
                .args(["delete", "--force", &c.id])
                .timeout(Duration::from_secs(15))
                .output()
            {
                Ok(out) if out.success() => {}
                Ok(out) if out.stderr.contains("not exist") || out.stderr.contains("not found") => {
                }
                Ok(out) => problems.push(format!("delete --force {}: {out}", c.id)),
                Err(e) => problems.push(format!("delete --force {}: {e:#}", c.id)),
            }
            if let Some(cg) = &c.cgroups_path {
                let leftover = crate::cgroup::CgroupMode::detect().dirs(cg);
                if !leftover.is_empty() {
                    problems.push(format!("{}: cgroup dirs left behind: {leftover:?}", c.id));
                    crate::cgroup::kill_and_remove(cg);
                }
            }
        }
        problems
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for p in self.cleanup() {
            eprintln!("cleanup ({}): {p}", self.name());
        }
    }
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} pid={} status={}", self.id, self.pid, self.status)
    }
}
