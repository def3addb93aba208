//! Running external programs with bounded waits and file-backed output capture.
//!
//! Output goes to temp files, not pipes: a runtime's `create` hands its stdio to the container,
//! which may keep a pipe open for as long as it lives and would make a pipe reader hang.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::DEFAULT_TIMEOUT;

/// A command to run once, with a deadline. Build it like [`std::process::Command`].
#[derive(Debug)]
pub struct Cmd {
    cmd: Command,
    timeout: Duration,
    stdin: Option<Vec<u8>>,
    stdout_to: Option<PathBuf>,
}

impl Cmd {
    /// A command running `program` with stdin from `/dev/null` and a [`DEFAULT_TIMEOUT`].
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Cmd {
            cmd: Command::new(program),
            timeout: DEFAULT_TIMEOUT,
            stdin: None,
            stdout_to: None,
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(arg);
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// Sets the child's working directory.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// How long [`Cmd::output`] waits before killing the child and failing.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Feeds these bytes on stdin (from a temp file, so the child sees EOF after them).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Sends stdout to this file (appending) instead of capturing it; for detached containers
    /// whose output arrives after the runtime has exited. [`Output::stdout`] is then empty.
    pub fn stdout_to(mut self, path: impl Into<PathBuf>) -> Self {
        self.stdout_to = Some(path.into());
        self
    }

    /// Starts the child without waiting; see [`Running`].
    pub fn spawn(mut self) -> Result<Running> {
        let dir = tempfile::Builder::new()
            .prefix("berth-cmd-")
            .tempdir()
            .context("create temp dir for command output")?;
        let stdout_path = match &self.stdout_to {
            Some(p) => p.clone(),
            None => dir.path().join("stdout"),
        };
        let stderr_path = dir.path().join("stderr");
        let stdout = File::options()
            .create(true)
            .append(true)
            .open(&stdout_path)
            .with_context(|| format!("open {}", stdout_path.display()))?;
        let stderr = File::create(&stderr_path).context("create stderr file")?;
        let stdin = match &self.stdin {
            Some(bytes) => {
                let p = dir.path().join("stdin");
                File::create(&p)
                    .and_then(|mut f| f.write_all(bytes))
                    .context("write stdin file")?;
                Stdio::from(File::open(&p).context("open stdin file")?)
            }
            None => Stdio::null(),
        };
        let argv = describe(&self.cmd);
        let child = self
            .cmd
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawn {argv}"))?;
        Ok(Running {
            child,
            argv,
            timeout: self.timeout,
            stdout_path: if self.stdout_to.is_some() {
                None
            } else {
                Some(stdout_path)
            },
            stderr_path,
            _dir: dir,
        })
    }

    /// Runs the command to completion (at most its timeout) and returns what it printed.
    pub fn output(self) -> Result<Output> {
        let timeout = self.timeout;
        self.spawn()?.wait(timeout)
    }
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A child started by [`Cmd::spawn`]. Dropping it kills the child if it is still running.
#[derive(Debug)]
pub struct Running {
    child: Child,
    argv: String,
    timeout: Duration,
    stdout_path: Option<PathBuf>,
    stderr_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the child has exited (without reaping anything else).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits at most `timeout` for the child; on timeout kills it and fails with its output so far.
    pub fn wait(mut self, timeout: Duration) -> Result<Output> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().context("wait for child")? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let partial = self.collect(ExitStatus::from_raw(libc::SIGKILL));
                bail!(
                    "timed out after {timeout:?}: {}\nstdout: {}\nstderr: {}",
                    self.argv,
                    partial.stdout,
                    partial.stderr
                );
            }
            sleep(Duration::from_millis(5));
        };
        Ok(self.collect(status))
    }

    /// Waits with the timeout given to the [`Cmd`].
    pub fn wait_default(self) -> Result<Output> {
        let t = self.timeout;
        self.wait(t)
    }

    fn collect(&self, status: ExitStatus) -> Output {
        let read =
            |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
        Output {
            argv: self.argv.clone(),
            status,
            stdout: self.stdout_path.as_deref().map(read).unwrap_or_default(),
            stderr: read(&self.stderr_path),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a finished command printed and how it ended. `Display` shows all of it, for assertions.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for messages.
    pub argv: String,
    /// How the process ended.
    pub status: ExitStatus,
    /// Everything written to stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything written to stderr (lossy UTF-8).
    pub stderr: String,
}

impl Output {
    /// The exit code in shell convention: the code, or 128+N when killed by signal N.
    pub fn code(&self) -> i32 {
        match (self.status.code(), self.status.signal()) {
            (Some(c), _) => c,
            (None, Some(sig)) => 128 + sig,
            (None, None) => -1,
        }
    }

    /// Whether the exit code is 0.
    pub fn success(&self) -> bool {
        self.code() == 0
    }

    /// Panics with the whole output unless the command succeeded; returns `self` for chaining.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "command failed: {self}");
        self
    }

    /// Panics unless the command failed cleanly: non-zero exit, something on stderr, no panic
    /// message and no more than `max_lines` non-empty stderr lines.
    #[track_caller]
    pub fn assert_clean_failure(&self, max_lines: usize) -> &Self {
        assert_ne!(self.code(), 0, "expected failure: {self}");
        assert!(self.status.signal().is_none(), "died from a signal: {self}");
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert!(!lines.is_empty(), "no error message on stderr: {self}");
        assert!(
            lines.len() <= max_lines,
            "expected at most {max_lines} stderr lines: {self}"
        );
        assert!(
            !self.stderr.contains("panicked"),
            "runtime panicked: {self}"
        );
        assert!(
            !self.stderr.contains("RUST_BACKTRACE"),
            "runtime panicked: {self}"
        );
        self
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.argv,
            self.code(),
            self.stdout,
            self.stderr
        )
    }
}

/// Polls `check` every 10 ms until it returns `Some`, for at most `timeout`.
///
/// Returns the value, or an error naming `what` on timeout.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_stdout_stderr_and_code() {
        let out = Cmd::new("/bin/sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .output()
            .unwrap();
        assert_eq!(out.code(), 3);
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
    }

    #[test]
    fn signal_death_maps_to_128_plus_n() {
        let out = Cmd::new("/bin/sh")
            .args(["-c", "kill -9 $$"])
            .output()
            .unwrap();
        assert_eq!(out.code(), 137);
    }

    #[test]
    fn stdin_is_fed() {
        let out = Cmd::new("/bin/cat").stdin("hello").output().unwrap();
        assert_eq!(out.stdout, "hello");
    }

    #[test]
    fn timeout_kills_and_fails() {
        let started = Instant::now();
        let err = Cmd::new("/bin/sleep")
            .arg("10")
            .timeout(Duration::from_millis(200))
            .output()
            .unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn wait_until_times_out() {
        let r: Result<()> = wait_until("never", Duration::from_millis(50), || None);
        assert!(r.unwrap_err().to_string().contains("never"));
        assert_eq!(
            wait_until("now", Duration::from_millis(50), || Some(1)).unwrap(),
            1
        );
    }
}
