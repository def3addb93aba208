//! berth-shim: the per-container shim (like containerd-shim-runc-v2).
//!
//! One shim serves the `berth.shim.v1.Task` gRPC service on a unix socket for exactly one
//! container and its execs. It runs the OCI runtime (`create`, `start`, `exec --detach`,
//! `kill`, `delete`...), owns the container's stdio (pipes or a pty; output goes to rotated
//! log files and live Attach streams, stdin comes from a FIFO and Attach), is a child
//! subreaper so it reaps the container's exit status, and writes every exit to its state dir
//! crash-safely so a restarted supervisor finds it.
//!
//! Modules: [`service`] (the RPCs), [`process`] (init/exec lifecycle), [`io`] and [`log`]
//! (stdio, log files), [`console`] (pty), [`oom`] (OOM events), [`reaper`] (waitpid), [`runtime`] (the runtime's
//! command line), [`exit`] (exit records), [`stats`] (`events --stats` conversion), [`trim`]
//! (keeps the resident set small).
#![warn(missing_docs)]

pub mod conns;
pub mod console;
pub mod error;
pub mod exit;
pub mod io;
pub mod log;
pub mod oom;
pub mod process;
pub mod reaper;
pub mod runtime;
pub mod service;
pub mod stats;
pub mod trim;

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use berth_proto::shim::v1::task_server::TaskServer;

pub use error::ShimError;

/// Socket file name in the state dir.
pub const SOCKET_NAME: &str = "shim.sock";
/// Pid file name in the state dir.
pub const PID_NAME: &str = "shim.pid";
/// Log file name in the state dir.
pub const LOG_NAME: &str = "shim.log";
/// How long `start` waits for the shim to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest unix socket path (sun_path is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Everything the command line tells a shim.
#[derive(Debug, Clone)]
pub struct Config {
    /// Container id (the runtime's id too).
    pub id: String,
    /// Namespace of the container in the supervisor (reported by Info).
    pub namespace: String,
    /// The OCI bundle.
    pub bundle: PathBuf,
    /// The runc-compatible runtime binary.
    pub runtime: PathBuf,
    /// The runtime's `--root`.
    pub runtime_root: PathBuf,
    /// The shim's own directory: socket, pid, logs, exit records, FIFOs.
    pub state_dir: PathBuf,
    /// Pass `--systemd-cgroup` to the runtime.
    pub systemd_cgroup: bool,
    /// Log level of the shim's own log (`error`..`trace`).
    pub log_level: String,
}

impl Config {
    /// The socket path.
    pub fn socket(&self) -> PathBuf {
        self.state_dir.join(SOCKET_NAME)
    }

    /// The flags that reproduce this config (for re-executing as `serve`).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "--id".into(),
            self.id.clone().into(),
            "--namespace".into(),
            self.namespace.clone().into(),
            "--bundle".into(),
            self.bundle.clone().into(),
            "--runtime".into(),
            self.runtime.clone().into(),
            "--runtime-root".into(),
            self.runtime_root.clone().into(),
            "--state-dir".into(),
            self.state_dir.clone().into(),
            "--log-level".into(),
            self.log_level.clone().into(),
        ];
        if self.systemd_cgroup {
            a.push("--systemd-cgroup".into());
        }
        a
    }
}

/// `berth-shim start`: re-executes this binary as a detached `serve` in its own session and
/// returns the socket address once the shim accepts connections.
pub fn start(cfg: &Config) -> anyhow::Result<String> {
    fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("create state dir {}", cfg.state_dir.display()))?;
    let sock = cfg.socket();
    if sock.as_os_str().len() > MAX_SOCKET_PATH {
        bail!(
            "socket path {} is longer than {MAX_SOCKET_PATH} bytes: use a shorter --state-dir",
            sock.display()
        );
    }
    if sock.exists() {
        if StdUnixStream::connect(&sock).is_ok() {
            bail!("a shim already serves {}", sock.display());
        }
        fs::remove_file(&sock).with_context(|| format!("remove stale {}", sock.display()))?;
    }
    let log_path = cfg.state_dir.join(LOG_NAME);
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("open {}", log_path.display()))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().context("find own executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("serve")
        .args(cfg.to_args())
        .current_dir(&cfg.state_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("spawn shim")?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().context("wait for shim")? {
            bail!(
                "shim exited ({status}) before serving {}: {}",
                sock.display(),
                log_tail(&log_path, log_start)
            );
        }
        if StdUnixStream::connect(&sock).is_ok() {
            return Ok(format!("unix://{}", sock.display()));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "shim did not serve {} within {} s: {}",
                sock.display(),
                START_TIMEOUT.as_secs(),
                log_tail(&log_path, log_start)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn log_tail(path: &Path, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.seek(SeekFrom::Start(from));
        let _ = f.take(64 * 1024).read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(5)..].join("; ");
    if tail.is_empty() {
        format!("no output in {}", path.display())
    } else {
        tail
    }
}

/// `berth-shim serve`: the shim itself (normally started by `start`). Call before any thread
/// or tokio runtime exists.
pub fn serve(cfg: Config) -> anyhow::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).context("become child subreaper")?;
    // One malloc arena: the shim is single-threaded, and per-thread arenas cost RSS.
    // SAFETY: mallopt only tunes glibc's allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("create state dir {}", cfg.state_dir.display()))?;
    exit::write_atomic(
        &cfg.state_dir.join(PID_NAME),
        std::process::id().to_string().as_bytes(),
    )
    .context("write shim.pid")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
        .build()
        .context("build tokio runtime")?;
    rt.block_on(serve_async(cfg))
}

async fn serve_async(cfg: Config) -> anyhow::Result<()> {
    let reaper = reaper::Reaper::new();
    reaper.start().context("install SIGCHLD handler")?;
    let sock = cfg.socket();
    let _ = fs::remove_file(&sock);
    let listener =
        UnixListener::bind(&sock).with_context(|| format!("listen on {}", sock.display()))?;
    tracing::info!(
        container_id = %cfg.id,
        namespace = %cfg.namespace,
        shim_pid = std::process::id(),
        socket = %sock.display(),
        "shim serving"
    );
    let shim = service::Shim::new(cfg, reaper);
    trim::spawn_trimmer(shim.activity());
    let conns = conns::Conns::new();
    let server = tonic::transport::Server::builder()
        .initial_stream_window_size(Some(256 * 1024))
        .initial_connection_window_size(Some(512 * 1024))
        .add_service(TaskServer::new(service::TaskService::new(shim.clone())))
        .serve_with_incoming(conns.count(UnixListenerStream::new(listener)));
    let result = tokio::select! {
        r = server => r.context("serve"),
        _ = async {
            shim.shutdown_requested().await;
            // Readers of the output (attach, logs -f) finish first, still served, and their
            // clients take what is queued for them (they close the connection then).
            shim.readers_done(READERS_GRACE).await;
            conns.closed(CONNS_GRACE).await;
            // Let the Shutdown response reach the client before the process goes.
            tokio::time::sleep(Duration::from_millis(50)).await;
        } => Ok(()),
    };
    let _ = fs::remove_file(&sock);
    tracing::info!("shim exiting");
    result
}

/// How long a shim asked to shut down keeps serving readers that are still receiving output.
const READERS_GRACE: Duration = Duration::from_secs(30);

/// How long a shim whose readers are done waits for its clients to hang up.
const CONNS_GRACE: Duration = Duration::from_secs(2);

/// What `berth-shim delete` prints.
#[derive(Debug, serde::Serialize)]
pub struct DeleteOutput {
    /// The init's exit status from `init.exit`, else 137.
    pub exit_status: u32,
    /// RFC 3339 time of the exit (now when unknown).
    pub exited_at: String,
}

/// `berth-shim delete`: cleanup after a dead shim: force-deletes the container with the
/// runtime and returns the recorded exit status.
pub fn delete(cfg: &Config) -> anyhow::Result<DeleteOutput> {
    let mut cmd = Command::new(&cfg.runtime);
    cmd.arg("--root")
        .arg(&cfg.runtime_root)
        .arg("--log")
        .arg(cfg.bundle.join("log.json"))
        .arg("--log-format")
        .arg("json");
    if cfg.systemd_cgroup {
        cmd.arg("--systemd-cgroup");
    }
    let out = cmd
        .args(["delete", "--force", &cfg.id])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {}", cfg.runtime.display()))?;
    if !out.status.success() {
        // Already gone is the usual case after a clean exit; report, do not fail.
        tracing::warn!(
            container_id = %cfg.id,
            error = %String::from_utf8_lossy(&out.stderr).trim(),
            "runtime delete"
        );
    }
    let _ = fs::remove_file(cfg.socket());
    Ok(match exit::read_record(&cfg.state_dir, "") {
        Some(r) => DeleteOutput {
            exit_status: r.exit_status,
            exited_at: r.exited_at,
        },
        None => DeleteOutput {
            exit_status: exit::UNKNOWN_EXIT_STATUS,
            exited_at: exit::rfc3339(SystemTime::now()),
        },
    })
}
