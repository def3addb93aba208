//! Long-running processes under test (berthd, the supervisor, a registry): start with logs to
//! a file, wait for readiness, stop on drop, and show the logs when a test fails.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How much of a daemon's log a failing test prints.
const LOG_TAIL_LINES: usize = 60;

/// A spawned daemon. Dropping it sends SIGTERM, waits up to 5 s, then SIGKILLs; if the thread
/// is panicking (a test failed), the tail of the daemon's log is printed first.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Option<Child>,
    log_path: PathBuf,
}

impl Daemon {
    /// Spawns `cmd` with stdin from `/dev/null` and stdout and stderr appended to `log_path`.
    pub fn spawn(name: &str, mut cmd: Command, log_path: impl Into<PathBuf>) -> Result<Daemon> {
        let log_path = log_path.into();
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("open log {}", log_path.display()))?;
        let err = log.try_clone().context("clone log fd")?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .with_context(|| format!("spawn {name} ({:?})", cmd.get_program()))?;
        Ok(Daemon {
            name: name.to_string(),
            child: Some(child),
            log_path,
        })
    }

    /// The daemon's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the daemon has logged so far.
    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Fails with the logs if the daemon has already exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait().context("poll daemon")? {
                bail!(
                    "{} exited early ({status}); log:\n{}",
                    self.name,
                    self.logs()
                );
            }
        }
        Ok(())
    }

    /// Polls `ready` every 20 ms until it is true, the daemon dies, or `timeout` passes.
    pub fn wait_ready(
        &mut self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} not ready ({what}) after {timeout:?}; log:\n{}",
                    self.name,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until a unix socket at `path` accepts connections.
    pub fn wait_for_unix_socket(&mut self, path: &Path, timeout: Duration) -> Result<()> {
        self.wait_ready(&format!("socket {}", path.display()), timeout, || {
            UnixStream::connect(path).is_ok()
        })
    }

    /// Waits until `addr` accepts TCP connections.
    pub fn wait_for_tcp(&mut self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        self.wait_ready(&format!("tcp {addr}"), timeout, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        })
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        if let Some(child) = &self.child {
            kill(Pid::from_raw(child.id() as i32), signal)
                .with_context(|| format!("send {signal} to {}", self.name))?;
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `grace`; returns how the daemon ended.
    pub fn stop(mut self, grace: Duration) -> Result<ExitStatus> {
        self.stop_inner(grace)
    }

    fn stop_inner(&mut self, grace: Duration) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{} already stopped", self.name);
        };
        if let Some(status) = child.try_wait().context("poll daemon")? {
            return Ok(status);
        }
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().context("poll daemon")? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        child.wait().context("reap daemon")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self.logs();
            let lines: Vec<&str> = logs.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            eprintln!(
                "---- last {} log lines of {} ({}) ----\n{}",
                tail.len(),
                self.name,
                self.log_path.display(),
                tail.join("\n")
            );
        }
        if self.child.is_some() {
            let _ = self.stop_inner(Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_until_ready_and_stops_with_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Daemon::spawn(
            "sleeper",
            {
                let mut c = Command::new("/bin/sh");
                c.args([
                    "-c",
                    "echo started; trap 'echo bye; exit 0' TERM; while :; do sleep 0.05; done",
                ]);
                c
            },
            dir.path().join("log"),
        )
        .unwrap();
        d.wait_ready("log line", Duration::from_secs(5), || {
            std::fs::read_to_string(dir.path().join("log"))
                .unwrap_or_default()
                .contains("started")
        })
        .unwrap();
        let status = d.stop(Duration::from_secs(5)).unwrap();
        assert!(status.success(), "{status}");
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert!(log.contains("bye"), "{log}");
    }

    #[test]
    fn waits_for_a_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("d.sock");
        let path = sock.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
            let _ = l.accept();
        });
        let mut c = Command::new("/bin/sleep");
        c.arg("30");
        let mut d = Daemon::spawn("sleep", c, dir.path().join("log")).unwrap();
        d.wait_for_unix_socket(&sock, Duration::from_secs(5))
            .unwrap();
        t.join().unwrap();
    }

    #[test]
    fn early_exit_fails_readiness_with_logs() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Command::new("/bin/sh");
        c.args(["-c", "echo boom >&2; exit 2"]);
        let mut d = Daemon::spawn("crasher", c, dir.path().join("log")).unwrap();
        let err = d
            .wait_for_unix_socket(&dir.path().join("never.sock"), Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exited early") && err.contains("boom"),
            "{err}"
        );
    }

    #[test]
    fn waits_for_tcp() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut c = Command::new("/bin/sleep");
        c.arg("30");
        let mut d = Daemon::spawn("sleep", c, dir.path().join("log")).unwrap();
        d.wait_for_tcp(addr, Duration::from_secs(5)).unwrap();
    }
}
