//! A real `berth-supervisor` in temp dirs for root tests: start, kill -9, restart, gRPC
//! clients, `ctl`, event watching, and a `Drop` that removes every container it ran.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use berth_proto::supervisor::v1 as pb;
use berth_proto::supervisor::v1::containers_client::ContainersClient;
use berth_proto::supervisor::v1::events_client::EventsClient;
use berth_proto::supervisor::v1::namespaces_client::NamespacesClient;
use berth_proto::supervisor::v1::tasks_client::TasksClient;
use hyper_util::rt::TokioIo;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;
use tonic::transport::{Channel, Endpoint};

use crate::bins::{require_workspace_binary, RUNC};
use crate::daemon::Daemon;
use crate::process::{Cmd, Output};
use crate::runtime::RUNTIME_ENV;
use crate::{Bundle, DEFAULT_TIMEOUT};

/// The runtime supervisor tests use by default: `$BERTH_TEST_RUNTIME` (a path, or `runc`),
/// else Debian's runc.
pub fn default_runtime() -> PathBuf {
    match std::env::var(RUNTIME_ENV) {
        Ok(v) if v == "berth" || v == "berth-runtime" => require_workspace_binary("berth-runtime"),
        Ok(v) if !v.is_empty() && v != "runc" => PathBuf::from(v),
        _ => PathBuf::from(RUNC),
    }
}

/// A running supervisor with its own socket, `--root` and `--state` under one temp dir.
#[derive(Debug)]
pub struct Supervisor {
    dir: TempDir,
    runtime: PathBuf,
    daemon: Option<Daemon>,
    rt: tokio::runtime::Runtime,
}

impl Supervisor {
    /// Starts the supervisor with [`default_runtime`] and waits for its socket.
    pub fn start() -> Supervisor {
        Supervisor::start_with(default_runtime())
    }

    /// Starts the supervisor with `runtime` as its default runtime.
    pub fn start_with(runtime: impl Into<PathBuf>) -> Supervisor {
        let dir = tempfile::Builder::new()
            .prefix("bsup-")
            .tempdir()
            .expect("create supervisor temp dir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("build tokio runtime");
        let mut s = Supervisor {
            dir,
            runtime: runtime.into(),
            daemon: None,
            rt,
        };
        s.spawn().expect("start berth-supervisor");
        s
    }

    fn spawn(&mut self) -> Result<()> {
        let bin = require_workspace_binary("berth-supervisor");
        require_workspace_binary("berth-shim");
        let mut cmd = Command::new(bin);
        cmd.arg("--address")
            .arg(self.address())
            .arg("--root")
            .arg(self.root())
            .arg("--state")
            .arg(self.state())
            .arg("--runtime")
            .arg(&self.runtime)
            .arg("--log-level")
            .arg("debug");
        let mut d = Daemon::spawn(
            "berth-supervisor",
            cmd,
            self.dir.path().join("supervisor.log"),
        )?;
        d.wait_for_unix_socket(&self.address(), DEFAULT_TIMEOUT)?;
        self.daemon = Some(d);
        Ok(())
    }

    /// The socket.
    pub fn address(&self) -> PathBuf {
        self.dir.path().join("sup.sock")
    }

    /// `--root`.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `--state`.
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A scratch dir inside the supervisor's temp dir (removed with it).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join("scratch").join(name);
        std::fs::create_dir_all(&p).expect("create scratch dir");
        p
    }

    /// The default runtime binary.
    pub fn runtime(&self) -> &Path {
        &self.runtime
    }

    /// The supervisor's pid.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().and_then(Daemon::pid)
    }

    /// Everything it logged (across restarts).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("supervisor.log")).unwrap_or_default()
    }

    /// SIGKILLs the supervisor (shims keep running) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.signal(Signal::SIGKILL).expect("SIGKILL supervisor");
            let _ = d.stop(Duration::from_secs(5));
        }
    }

    /// Starts the supervisor again on the same dirs and waits for its socket.
    pub fn restart(&mut self) {
        assert!(self.daemon.is_none(), "kill9 the supervisor first");
        self.spawn().expect("restart berth-supervisor");
    }

    /// Runs a future on the harness's tokio runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// A fresh gRPC channel to the supervisor.
    pub fn channel(&self) -> Channel {
        let path = self.address();
        self.block_on(connect(&path))
            .expect("connect to supervisor")
    }

    /// Containers client.
    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel())
    }

    /// Tasks client.
    pub fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel())
    }

    /// Namespaces client.
    pub fn namespaces(&self) -> NamespacesClient<Channel> {
        NamespacesClient::new(self.channel())
    }

    /// Runs `berth-supervisor ctl --address <sock> -n <ns> <args>` (bounded).
    pub fn ctl<I, S>(&self, ns: &str, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Cmd::new(require_workspace_binary("berth-supervisor"))
            .arg("ctl")
            .arg("--address")
            .arg(self.address())
            .arg("-n")
            .arg(ns)
            .args(args)
            .output()
            .expect("run berth-supervisor ctl")
    }

    /// Subscribes to events now (the subscription is live when this returns).
    pub fn watch_events(&self, namespace: &str) -> EventWatcher {
        let mut client = EventsClient::new(self.channel());
        let req = pb::SubscribeRequest {
            namespace: namespace.to_string(),
            topics: vec![],
        };
        let mut stream = self
            .block_on(client.subscribe(req))
            .expect("subscribe to events")
            .into_inner();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        self.rt.spawn(async move {
            while let Ok(Some(e)) = stream.message().await {
                sink.lock().expect("events lock").push(e);
            }
        });
        EventWatcher { seen }
    }

    /// A container record for a bundle made with [`Bundle::busybox`]: its spec with an
    /// absolute `root.path`, no rootfs mounts, the harness's runtime.
    pub fn container_for(&self, id: &str, bundle: &Bundle) -> pb::Container {
        let mut spec = serde_json::to_value(bundle.spec()).expect("serialize spec");
        spec["root"]["path"] = serde_json::json!(bundle.rootfs().to_string_lossy());
        pb::Container {
            id: id.to_string(),
            spec: serde_json::to_vec(&spec).expect("encode spec"),
            runtime: Some(pb::Runtime {
                binary: self.runtime.to_string_lossy().into_owned(),
                root: String::new(),
                systemd_cgroup: false,
            }),
            ..Default::default()
        }
    }

    /// Pids of shims recorded under `--state` that are still alive.
    pub fn live_shim_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        let Ok(dirs) = std::fs::read_dir(self.state().join("s")) else {
            return pids;
        };
        for d in dirs.flatten() {
            let Ok(pid) = std::fs::read_to_string(d.path().join("shim.pid")) else {
                continue;
            };
            let Ok(pid) = pid.trim().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("berth-shim") {
                pids.push(pid);
            }
        }
        pids
    }

    /// Best-effort removal of everything the supervisor ran: tasks and containers through the
    /// API, then leftover shims, runtime containers and mounts directly.
    fn cleanup(&mut self) {
        if self.daemon.is_some() {
            let path = self.address();
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(60), delete_everything(&path)).await
            });
            if let Some(d) = self.daemon.take() {
                let _ = d.stop(Duration::from_secs(5));
            }
        }
        for pid in self.live_shim_pids() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        // Runtime containers left behind by a shim that was killed.
        if let Ok(nss) = std::fs::read_dir(self.state().join("runtime")) {
            for ns in nss.flatten() {
                let Ok(ids) = std::fs::read_dir(ns.path()) else {
                    continue;
                };
                for id in ids.flatten() {
                    for rt in [self.runtime.as_path(), Path::new(RUNC)] {
                        let _ = Cmd::new(rt)
                            .arg("--root")
                            .arg(ns.path())
                            .args(["delete", "--force"])
                            .arg(id.file_name())
                            .timeout(Duration::from_secs(10))
                            .output();
                    }
                }
            }
        }
        unmount_under(self.dir.path());
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self.logs();
            let lines: Vec<&str> = logs.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            eprintln!("---- supervisor log tail ----\n{}", tail.join("\n"));
        }
        self.cleanup();
    }
}

/// Connects a gRPC channel to a unix socket.
pub async fn connect(path: &Path) -> Result<Channel> {
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
        .context("connect to supervisor socket")
}

async fn delete_everything(path: &Path) -> Result<()> {
    let ch = connect(path).await?;
    let mut nsc = NamespacesClient::new(ch.clone());
    let mut cc = ContainersClient::new(ch.clone());
    let mut tc = TasksClient::new(ch);
    let nss = nsc.list(pb::ListNamespacesRequest {}).await?.into_inner();
    for ns in nss.namespaces {
        let tasks = tc
            .list(pb::ListTasksRequest {
                namespace: ns.name.clone(),
            })
            .await?
            .into_inner();
        for t in tasks.tasks {
            let _ = tc
                .delete(pb::DeleteTaskRequest {
                    namespace: ns.name.clone(),
                    container_id: t.container_id,
                    exec_id: String::new(),
                    force: true,
                })
                .await;
        }
        let cs = cc
            .list(pb::ListContainersRequest {
                namespace: ns.name.clone(),
                label_filter: Default::default(),
            })
            .await?
            .into_inner();
        for c in cs.containers {
            let _ = cc
                .delete(pb::DeleteContainerRequest {
                    namespace: ns.name.clone(),
                    id: c.id,
                })
                .await;
        }
    }
    Ok(())
}

/// Mount points at or below `dir` (from /proc/self/mountinfo), deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

fn unmount_under(dir: &Path) {
    for m in mounts_under(dir) {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Events received since [`Supervisor::watch_events`].
#[derive(Debug, Clone)]
pub struct EventWatcher {
    seen: Arc<Mutex<Vec<pb::Envelope>>>,
}

impl EventWatcher {
    /// Everything received so far.
    pub fn all(&self) -> Vec<pb::Envelope> {
        self.seen.lock().expect("events lock").clone()
    }

    /// Waits (bounded) for an event matching `pred`.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&pb::Envelope) -> bool,
    ) -> pb::Envelope {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.all().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no event {what} within {timeout:?}; got: {:#?}",
                self.all()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Topics seen for container `id`, in order.
    pub fn topics_of(&self, id: &str) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|e| e.container_id == id)
            .map(|e| e.topic)
            .collect()
    }
}
