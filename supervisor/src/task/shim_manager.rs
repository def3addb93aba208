//! Shims: starting `berth-shim`, connecting to (and reconnecting after a restart) its socket,
//! cleaning up after a dead one, and a typed client with a timeout on every unary call.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use berth_proto::shim::v1 as shim;
use berth_proto::shim::v1::task_client::TaskClient;
use berth_proto::types::v1 as types;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tonic::transport::Channel;

use crate::error::{Error, Result};
use crate::grpc::status::kind_of;
use crate::model::{ExitInfo, TaskRecord};
use crate::uds;

/// Limit for lifecycle calls (create, start, delete, kill): they run the runtime.
pub const LIFECYCLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Limit for queries (state, pids, stats, info).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Limit for connecting to a shim socket.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Limit for `berth-shim start` and `berth-shim delete`.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The status recorded for a task whose shim died without recording the init's exit
/// (SIGKILL, as containerd reports).
pub const UNKNOWN_EXIT_STATUS: u32 = 137;

/// What `berth-shim start` needs.
#[derive(Debug, Clone)]
pub struct StartArgs<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Container id.
    pub id: &'a str,
    /// Bundle dir.
    pub bundle: &'a Path,
    /// Runtime binary.
    pub runtime: &'a Path,
    /// Runtime root.
    pub runtime_root: &'a Path,
    /// Pass --systemd-cgroup.
    pub systemd_cgroup: bool,
    /// The shim's state dir.
    pub state_dir: &'a Path,
}

/// Starts shims and cleans up after dead ones.
#[derive(Debug, Clone)]
pub struct ShimManager {
    binary: PathBuf,
    log_level: String,
}

/// `<state-dir>/init.exit`, written by the shim when the init exits.
#[derive(Debug, Deserialize)]
struct InitExit {
    #[serde(default)]
    pid: u32,
    exit_status: u32,
    exited_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Reads `<state-dir>/init.exit` if the shim wrote it.
pub fn read_init_exit(state_dir: &Path) -> Option<ExitInfo> {
    let data = std::fs::read(state_dir.join("init.exit")).ok()?;
    match serde_json::from_slice::<InitExit>(&data) {
        Ok(e) => Some(ExitInfo {
            pid: e.pid,
            exit_status: e.exit_status,
            exited_at: e.exited_at.unwrap_or_else(chrono::Utc::now),
        }),
        Err(err) => {
            tracing::warn!(path = %state_dir.join("init.exit").display(), error = %err, "unreadable init.exit");
            None
        }
    }
}

/// Whether a process is gone (or a zombie nobody reaped yet).
pub fn pid_is_dead(pid: u32) -> bool {
    if pid == 0 {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // Field 3, after the parenthesised command name, is the state.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

impl ShimManager {
    /// A manager running `binary` with `--log-level log_level`.
    pub fn new(binary: PathBuf, log_level: String) -> ShimManager {
        ShimManager { binary, log_level }
    }

    /// Runs `berth-shim start` and returns the socket it serves on.
    #[tracing::instrument(skip_all, fields(container_id = %args.id, namespace = %args.namespace))]
    pub async fn start(&self, args: &StartArgs<'_>) -> Result<PathBuf> {
        let err_path = args.state_dir.join("start.err");
        let err_file =
            std::fs::File::create(&err_path).map_err(|e| Error::io("create", &err_path, e))?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("start")
            .arg("--id")
            .arg(args.id)
            .arg("--namespace")
            .arg(args.namespace)
            .arg("--bundle")
            .arg(args.bundle)
            .arg("--runtime")
            .arg(args.runtime)
            .arg("--runtime-root")
            .arg(args.runtime_root)
            .arg("--state-dir")
            .arg(args.state_dir)
            .arg("--log-level")
            .arg(&self.log_level);
        if args.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        // stderr goes to a file, not a pipe: the detached shim could hold a pipe open forever.
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err_file)
            .kill_on_drop(true);
        tracing::debug!(argv = ?cmd.as_std(), "start shim");
        let mut child = cmd.spawn().map_err(|e| Error::ShimStart {
            id: args.id.to_string(),
            reason: format!("run {}: {e}", self.binary.display()),
        })?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::Internal("shim stdout not captured".into()))?;
        let id = args.id.to_string();
        let run = async {
            let mut line = String::new();
            BufReader::new(stdout)
                .read_line(&mut line)
                .await
                .map_err(|e| Error::io("read shim address from", &self.binary, e))?;
            let status = child
                .wait()
                .await
                .map_err(|e| Error::io("wait for", &self.binary, e))?;
            Ok::<_, Error>((line, status))
        };
        let (line, status) = tokio::time::timeout(COMMAND_TIMEOUT, run)
            .await
            .map_err(|_| Error::Timeout {
                what: format!("start shim for {id}"),
                secs: COMMAND_TIMEOUT.as_secs(),
            })??;
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        let _ = std::fs::remove_file(&err_path);
        if !status.success() {
            let msg = stderr.trim();
            return Err(Error::ShimStart {
                id,
                reason: if msg.is_empty() {
                    format!("berth-shim start exited with {status}")
                } else {
                    msg.to_string()
                },
            });
        }
        let address = line.trim();
        if address.is_empty() {
            return Err(Error::ShimStart {
                id,
                reason: "berth-shim start printed no address".into(),
            });
        }
        Ok(uds::socket_path(address))
    }

    /// Runs `berth-shim delete` for a task whose shim is dead (force-deletes the container
    /// with the runtime). Failures are logged and returned.
    #[tracing::instrument(skip_all, fields(container_id = %record.container_id, namespace = %record.namespace))]
    pub async fn delete(&self, record: &TaskRecord) -> Result<()> {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("delete")
            .arg("--id")
            .arg(&record.container_id)
            .arg("--bundle")
            .arg(&record.bundle)
            .arg("--runtime")
            .arg(&record.runtime.binary)
            .arg("--runtime-root")
            .arg(&record.runtime.root)
            .arg("--state-dir")
            .arg(&record.state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        tracing::debug!(argv = ?cmd.as_std(), "delete after dead shim");
        let out = tokio::time::timeout(COMMAND_TIMEOUT, cmd.output())
            .await
            .map_err(|_| Error::Timeout {
                what: format!("berth-shim delete for {}", record.container_id),
                secs: COMMAND_TIMEOUT.as_secs(),
            })?
            .map_err(|e| Error::io("run", &self.binary, e))?;
        if !out.status.success() {
            return Err(Error::ShimStart {
                id: record.container_id.clone(),
                reason: format!(
                    "berth-shim delete exited with {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(())
    }
}

/// A connected shim.
#[derive(Debug, Clone)]
pub struct ShimClient {
    id: String,
    socket: PathBuf,
    client: TaskClient<Channel>,
}

fn shim_err(id: &str, status: tonic::Status) -> Error {
    let kind = kind_of(status.code());
    if kind == crate::error::ErrorKind::Unavailable {
        Error::ShimUnavailable {
            id: id.to_string(),
            reason: status.message().to_string(),
        }
    } else {
        Error::Shim {
            id: id.to_string(),
            kind,
            message: status.message().to_string(),
        }
    }
}

macro_rules! unary {
    ($self:ident, $method:ident, $req:expr, $timeout:expr) => {{
        let mut client = $self.client.clone();
        match tokio::time::timeout($timeout, client.$method($req)).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(shim_err(&$self.id, status)),
            Err(_) => Err(Error::Timeout {
                what: format!("shim {} of {}", stringify!($method), $self.id),
                secs: $timeout.as_secs(),
            }),
        }
    }};
}

impl ShimClient {
    /// Connects to the shim at `socket` and checks it answers Info.
    pub async fn connect(id: &str, socket: &Path) -> Result<(ShimClient, shim::InfoResponse)> {
        let channel =
            uds::connect(socket, CONNECT_TIMEOUT)
                .await
                .map_err(|e| Error::ShimUnavailable {
                    id: id.to_string(),
                    reason: format!("connect {}: {e}", socket.display()),
                })?;
        let c = ShimClient {
            id: id.to_string(),
            socket: socket.to_path_buf(),
            client: TaskClient::new(channel),
        };
        let info = c.info().await?;
        Ok((c, info))
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Info.
    pub async fn info(&self) -> Result<shim::InfoResponse> {
        unary!(self, info, shim::InfoRequest {}, CONNECT_TIMEOUT)
    }

    /// Create.
    pub async fn create(&self, bundle: &Path, io: Option<types::Io>) -> Result<u32> {
        let req = shim::CreateTaskRequest {
            bundle: bundle.to_string_lossy().into_owned(),
            io,
        };
        unary!(self, create, req, LIFECYCLE_TIMEOUT).map(|r| r.pid)
    }

    /// Start.
    pub async fn start(&self, exec_id: &str) -> Result<u32> {
        let req = shim::StartRequest {
            exec_id: exec_id.to_string(),
        };
        unary!(self, start, req, LIFECYCLE_TIMEOUT).map(|r| r.pid)
    }

    /// State.
    pub async fn state(&self, exec_id: &str) -> Result<types::ProcessState> {
        let req = shim::StateRequest {
            exec_id: exec_id.to_string(),
        };
        unary!(self, state, req, QUERY_TIMEOUT).and_then(|r| {
            r.process.ok_or_else(|| {
                Error::Internal(format!("shim of {} sent no process state", self.id))
            })
        })
    }

    /// Delete.
    pub async fn delete(&self, exec_id: &str) -> Result<shim::DeleteResponse> {
        let req = shim::DeleteRequest {
            exec_id: exec_id.to_string(),
        };
        unary!(self, delete, req, LIFECYCLE_TIMEOUT)
    }

    /// Kill.
    pub async fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let req = shim::KillRequest {
            exec_id: exec_id.to_string(),
            signal,
            all,
        };
        unary!(self, kill, req, LIFECYCLE_TIMEOUT).map(|_| ())
    }

    /// Exec.
    pub async fn exec(&self, exec_id: &str, spec: Vec<u8>, io: Option<types::Io>) -> Result<()> {
        let req = shim::ExecProcessRequest {
            exec_id: exec_id.to_string(),
            spec,
            io,
        };
        unary!(self, exec, req, LIFECYCLE_TIMEOUT).map(|_| ())
    }

    /// ResizePty.
    pub async fn resize_pty(&self, exec_id: &str, width: u32, height: u32) -> Result<()> {
        let req = shim::ResizePtyRequest {
            exec_id: exec_id.to_string(),
            width,
            height,
        };
        unary!(self, resize_pty, req, QUERY_TIMEOUT).map(|_| ())
    }

    /// CloseIO.
    pub async fn close_io(&self, exec_id: &str, stdin: bool) -> Result<()> {
        let req = shim::CloseIoRequest {
            exec_id: exec_id.to_string(),
            stdin,
        };
        unary!(self, close_io, req, QUERY_TIMEOUT).map(|_| ())
    }

    /// Pause.
    pub async fn pause(&self) -> Result<()> {
        unary!(self, pause, shim::PauseRequest {}, LIFECYCLE_TIMEOUT).map(|_| ())
    }

    /// Resume.
    pub async fn resume(&self) -> Result<()> {
        unary!(self, resume, shim::ResumeRequest {}, LIFECYCLE_TIMEOUT).map(|_| ())
    }

    /// Pids.
    pub async fn pids(&self) -> Result<Vec<types::ProcessInfo>> {
        unary!(self, pids, shim::PidsRequest {}, QUERY_TIMEOUT).map(|r| r.processes)
    }

    /// Update.
    pub async fn update(&self, resources: Vec<u8>) -> Result<()> {
        let req = shim::UpdateTaskRequest { resources };
        unary!(self, update, req, LIFECYCLE_TIMEOUT).map(|_| ())
    }

    /// Stats.
    pub async fn stats(&self) -> Result<Option<types::Stats>> {
        unary!(self, stats, shim::StatsRequest {}, QUERY_TIMEOUT).map(|r| r.stats)
    }

    /// Shutdown.
    pub async fn shutdown(&self, now: bool) -> Result<()> {
        unary!(self, shutdown, shim::ShutdownRequest { now }, QUERY_TIMEOUT).map(|_| ())
    }

    /// Wait: no timeout, it lasts as long as the process.
    pub async fn wait(&self, exec_id: &str) -> Result<shim::WaitResponse> {
        let mut client = self.client.clone();
        client
            .wait(shim::WaitRequest {
                exec_id: exec_id.to_string(),
            })
            .await
            .map(|r| r.into_inner())
            .map_err(|s| shim_err(&self.id, s))
    }

    /// The shim's event stream (open once the call returns, so nothing after it is missed).
    pub async fn events(&self) -> Result<tonic::Streaming<shim::ShimEvent>> {
        unary!(self, events, shim::EventsRequest {}, QUERY_TIMEOUT)
    }

    /// Attach: the stream of client messages goes to the shim, its output comes back.
    pub async fn attach<S>(&self, outbound: S) -> Result<AttachStream>
    where
        S: tokio_stream::Stream<Item = types::AttachRequest> + Send + 'static,
    {
        let mut client = self.client.clone();
        // Only the opening of the stream is bounded; the stream itself lasts.
        match tokio::time::timeout(QUERY_TIMEOUT, client.attach(outbound)).await {
            Ok(Ok(resp)) => Ok(AttachStream {
                inner: resp.into_inner(),
                _client: client,
            }),
            Ok(Err(status)) => Err(shim_err(&self.id, status)),
            Err(_) => Err(Error::Timeout {
                what: format!("shim attach of {}", self.id),
                secs: QUERY_TIMEOUT.as_secs(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_exit_is_read_when_present() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_init_exit(dir.path()).is_none());
        std::fs::write(
            dir.path().join("init.exit"),
            r#"{"pid":42,"exit_status":3,"exited_at":"2024-01-02T03:04:05Z"}"#,
        )
        .unwrap();
        let e = read_init_exit(dir.path()).unwrap();
        assert_eq!((e.pid, e.exit_status), (42, 3));
        assert_eq!(e.exited_at.to_rfc3339(), "2024-01-02T03:04:05+00:00");
    }

    #[test]
    fn our_own_pid_is_alive_and_pid_zero_is_not() {
        assert!(!pid_is_dead(std::process::id()));
        assert!(pid_is_dead(0));
    }
}

/// A shim's Attach stream, holding its own handle on the connection: a task deleted while a
/// client still reads its output (a log follower of a removed container) must not cut the
/// stream when the task drops its client.
#[derive(Debug)]
pub struct AttachStream {
    inner: tonic::Streaming<types::AttachResponse>,
    _client: TaskClient<Channel>,
}

impl tokio_stream::Stream for AttachStream {
    type Item = std::result::Result<types::AttachResponse, tonic::Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.inner).poll_next(cx)
    }
}
