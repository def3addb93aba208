//! The supervisor berthd runs its containers under: connect to a running one, or start our own
//! (in its own session, so it and the containers outlive a `kill -9` of berthd).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_proto::supervisor::v1::containers_client::ContainersClient;
use berth_proto::supervisor::v1::events_client::EventsClient;
use berth_proto::supervisor::v1::tasks_client::TasksClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

/// gRPC clients of one supervisor, in berthd's namespace.
#[derive(Debug, Clone)]
pub struct Supervisor {
    channel: Channel,
    /// The supervisor namespace berthd's containers live in.
    pub namespace: String,
    /// The pid of the supervisor berthd started (now or in an earlier run, found by its pid
    /// file under the exec root); `None` for one given with `--supervisor`.
    owned: Option<u32>,
}

impl Supervisor {
    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }
    pub fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }
    pub fn events(&self) -> EventsClient<Channel> {
        EventsClient::new(self.channel.clone())
    }

    /// Stops the supervisor berthd started (SIGTERM, SIGKILL after `grace`); its shims and
    /// containers keep running and are adopted by the next one. One given with
    /// `--supervisor` is left alone.
    pub async fn stop_owned(&self, grace: Duration) {
        let Some(pid) = self.owned.filter(|p| is_supervisor(*p)) else {
            return;
        };
        let target = nix::unistd::Pid::from_raw(pid as i32);
        tracing::info!(pid, "stopping berth-supervisor");
        let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + grace;
        while is_supervisor(pid) {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(pid, "berth-supervisor did not stop in time: killing it");
                let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Whether `pid` is a live (not zombie) berth-supervisor process.
fn is_supervisor(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    !zombie && String::from_utf8_lossy(&cmd).contains("berth-supervisor")
}

async fn connect(path: &Path) -> Result<Channel> {
    let path = path.to_path_buf();
    Endpoint::from_static("http://[::1]:0")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .with_context(|| "connect to the supervisor")
}

/// The `berth-supervisor` binary: next to this executable, else on PATH.
fn supervisor_binary() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            let p = dir.join("berth-supervisor");
            if p.is_file() {
                return p;
            }
        }
    }
    PathBuf::from("berth-supervisor")
}

/// Connects to `--supervisor SOCK`, or to our own supervisor under the exec root, starting it
/// when it is not running.
pub async fn start_or_connect(
    explicit: Option<&Path>,
    data_root: &Path,
    exec_root: &Path,
    namespace: &str,
    log_level: &str,
) -> Result<Supervisor> {
    let ns = namespace.to_string();
    if let Some(sock) = explicit {
        let channel = connect(sock)
            .await
            .with_context(|| format!("supervisor at {}", sock.display()))?;
        return Ok(Supervisor {
            channel,
            namespace: ns,
            owned: None,
        });
    }
    let sock = exec_root.join("supervisor.sock");
    let pidfile = exec_root.join("supervisor.pid");
    if let Ok(channel) = connect(&sock).await {
        // Ours, left by a berthd that was killed: it is stopped with this one.
        let owned = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|p| p.trim().parse().ok());
        tracing::info!(socket = %sock.display(), pid = ?owned, "using the running supervisor");
        return Ok(Supervisor {
            channel,
            namespace: ns,
            owned,
        });
    }
    let log = data_root.join("supervisor.log");
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("open {}", log.display()))?;
    let mut cmd = Command::new(supervisor_binary());
    cmd.arg("--address")
        .arg(&sock)
        .arg("--root")
        .arg(data_root.join("supervisor"))
        .arg("--state")
        .arg(exec_root.join("supervisor"))
        .arg("--log-level")
        .arg(log_level)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    // Its own session: a signal to berthd's process group (or berthd's death) leaves it be.
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("start {}", supervisor_binary().display()))?;
    let pid = child.id();
    tracing::info!(pid, socket = %sock.display(), "started berth-supervisor");
    if let Err(e) = std::fs::write(&pidfile, format!("{pid}\n")) {
        tracing::warn!(error = %e, path = %pidfile.display(), "write supervisor pid file");
    }
    // Reap it in the background if it ever exits while we run.
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    for _ in 0..100 {
        if let Ok(channel) = connect(&sock).await {
            return Ok(Supervisor {
                channel,
                namespace: ns,
                owned: Some(pid),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "berth-supervisor did not come up on {} (see {})",
        sock.display(),
        log.display()
    )
}
