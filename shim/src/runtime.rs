//! Runs the OCI runtime (any runc-compatible binary) the way containerd's runc shim does.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;

use crate::error::{Result, ShimError};
use crate::reaper::Reaper;

/// Time limit of one runtime command (`create` of a big rootfs included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long captured output may lag behind the command's exit.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// One runtime binary with its state root and the shim's fixed global flags.
#[derive(Debug, Clone)]
pub struct Runtime {
    binary: PathBuf,
    root: PathBuf,
    log: PathBuf,
    systemd_cgroup: bool,
    reaper: Arc<Reaper>,
}

/// Stdio for a runtime command that hands its stdio to a container process
/// (`create`, `exec --detach`): the given fds instead of captured pipes.
#[derive(Debug)]
pub struct PassStdio {
    /// Becomes the process's stdin.
    pub stdin: OwnedFd,
    /// Becomes the process's stdout.
    pub stdout: OwnedFd,
    /// Becomes the process's stderr.
    pub stderr: OwnedFd,
}

impl Runtime {
    /// `binary --root root --log <bundle>/log.json --log-format json [--systemd-cgroup]`.
    pub fn new(
        binary: PathBuf,
        root: PathBuf,
        bundle: &Path,
        systemd_cgroup: bool,
        reaper: Arc<Reaper>,
    ) -> Runtime {
        Runtime {
            binary,
            root,
            log: bundle.join("log.json"),
            systemd_cgroup,
            reaper,
        }
    }

    fn command(&self, args: &[OsString]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .arg("--log-format")
            .arg("json");
        if self.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        cmd.args(args);
        cmd
    }

    /// Runs a verb whose stdout and stderr the shim captures; returns stdout.
    pub async fn run(
        &self,
        verb: &'static str,
        args: &[OsString],
        input: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        self.execute(verb, args, None, input).await
    }

    /// Runs a verb that passes `stdio` on to a container process.
    pub async fn run_with_stdio(
        &self,
        verb: &'static str,
        args: &[OsString],
        stdio: PassStdio,
    ) -> Result<()> {
        self.execute(verb, args, Some(stdio), None).await.map(drop)
    }

    async fn execute(
        &self,
        verb: &'static str,
        args: &[OsString],
        stdio: Option<PassStdio>,
        input: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        let log_offset = fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        tracing::debug!(runtime = %self.binary.display(), ?args, "runtime command");
        let (mut child, exit_rx) = {
            // The command (and the parent's copies of passed fds) is dropped right after the
            // spawn, so only the child holds the container's pipe ends.
            let mut cmd = self.command(args);
            match stdio {
                Some(s) => {
                    cmd.stdin(Stdio::from(s.stdin))
                        .stdout(Stdio::from(s.stdout))
                        .stderr(Stdio::from(s.stderr));
                }
                None => {
                    cmd.stdin(if input.is_some() {
                        Stdio::piped()
                    } else {
                        Stdio::null()
                    })
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                }
            }
            self.reaper
                .spawn(&mut cmd)
                .map_err(|e| ShimError::io("run runtime", &self.binary, e))?
        };
        let pid = child.id();
        let stdout = child
            .stdout
            .take()
            .map(|s| tokio::spawn(read_all(s.into())));
        let stderr = child
            .stderr
            .take()
            .map(|s| tokio::spawn(read_all(s.into())));
        if let (Some(stdin), Some(data)) = (child.stdin.take(), input) {
            let data = data.to_vec();
            let fd: OwnedFd = stdin.into();
            tokio::spawn(async move {
                if let Ok(mut w) = pipe::Sender::from_owned_fd(fd) {
                    let _ = w.write_all(&data).await;
                }
            });
        }
        let exit = match tokio::time::timeout(COMMAND_TIMEOUT, exit_rx).await {
            Ok(Ok(exit)) => exit,
            Ok(Err(_)) => {
                return Err(ShimError::Runtime {
                    verb,
                    message: format!("runtime {verb}: exit status lost"),
                })
            }
            Err(_) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                return Err(ShimError::Timeout {
                    verb,
                    secs: COMMAND_TIMEOUT.as_secs(),
                });
            }
        };
        let out = collect(stdout).await;
        let err = collect(stderr).await;
        if exit.status == 0 {
            return Ok(out);
        }
        let log = read_from(&self.log, log_offset);
        let message = error_message(&log, &err)
            .unwrap_or_else(|| format!("runtime {verb} failed with exit status {}", exit.status));
        Err(ShimError::Runtime { verb, message })
    }
}

async fn read_all(fd: OwnedFd) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Ok(mut r) = pipe::Receiver::from_owned_fd(fd) {
        let _ = r.read_to_end(&mut buf).await;
    }
    buf
}

async fn collect(task: Option<tokio::task::JoinHandle<Vec<u8>>>) -> Vec<u8> {
    match task {
        Some(t) => match tokio::time::timeout(OUTPUT_GRACE, t).await {
            Ok(Ok(v)) => v,
            _ => Vec::new(),
        },
        None => Vec::new(),
    }
}

fn read_from(path: &Path, offset: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Ok(mut f) = fs::File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        // The log was replaced or truncated: read it all.
        let offset = if len < offset { 0 } else { offset };
        if f.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = f.take(1 << 20).read_to_end(&mut buf);
        }
    }
    buf
}

/// The runtime's error: the `msg` of the last `"level":"error"` line of its JSON log, else
/// the last non-empty line of its stderr.
pub fn error_message(log: &[u8], stderr: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Line {
        #[serde(default)]
        level: String,
        #[serde(default)]
        msg: String,
    }
    let from_log = log
        .rsplit(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice::<Line>(l).ok())
        .find(|l| l.level == "error" && !l.msg.is_empty())
        .map(|l| l.msg);
    from_log.or_else(|| {
        String::from_utf8_lossy(stderr)
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .map(str::to_string)
    })
}

/// Builds an argument list from strings and paths.
pub fn args<I, S>(items: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    items.into_iter().map(|s| s.as_ref().to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_error_line_of_the_json_log_wins() {
        let log = br#"{"level":"info","msg":"starting","time":"t"}
{"level":"error","msg":"first failure","time":"t"}
{"level":"warning","msg":"meh","time":"t"}
{"level":"error","msg":"container \"x\" does not exist","time":"t"}
not json
"#;
        assert_eq!(
            error_message(log, b"stderr text\n").as_deref(),
            Some("container \"x\" does not exist")
        );
    }

    #[test]
    fn stderr_is_the_fallback() {
        assert_eq!(
            error_message(b"", b"line one\nERRO[0000] it broke\n\n").as_deref(),
            Some("ERRO[0000] it broke")
        );
        assert_eq!(error_message(b"", b""), None);
    }

    #[test]
    fn read_from_skips_old_log_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log.json");
        fs::write(&p, "old\nnew\n").unwrap();
        assert_eq!(read_from(&p, 4), b"new\n");
        assert_eq!(read_from(&p, 100), b"old\nnew\n");
        assert!(read_from(&dir.path().join("none"), 0).is_empty());
    }
}
