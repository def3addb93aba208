//! The Task gRPC service: translates each RPC into lifecycle operations on the processes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use berth_proto::shim::v1::task_server::Task;
use berth_proto::shim::v1::{
    CloseIoRequest, CreateTaskRequest, CreateTaskResponse, DeleteRequest, DeleteResponse,
    EventsRequest, ExecProcessRequest, InfoRequest, InfoResponse, KillRequest, PauseRequest,
    PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShimEvent, ShutdownRequest,
    StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse,
    UpdateTaskRequest, WaitRequest, WaitResponse,
};
use berth_proto::types::v1::attach_request::Msg;
use berth_proto::types::v1::{
    AttachRequest, AttachResponse, Io, LogFormat, ProcessInfo, StdStream,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::error::{Result, ShimError};
use crate::exit::{self, Exit};
use crate::io::{Chunk, Follow, Spool, Spooled, Subscription};
use crate::log::decode_line;
use crate::process::{file_stem, validate_exec_id, Phase, Process};
use crate::reaper::Reaper;
use crate::runtime::{args, Runtime};
use crate::{stats, Config};

/// How long an exit waits for the process's output to drain before it is reported anyway
/// (a daemonized child may hold an exec's pipes open forever).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the shim keeps serving after its container was deleted if nobody calls Shutdown.
const DELETED_GRACE: Duration = Duration::from_secs(10);
/// Events queued per subscriber before it is dropped.
const EVENTS_CAPACITY: usize = 64;

/// The shim's state: one container, its execs, and the channels RPCs use.
#[derive(Debug)]
pub struct Shim {
    cfg: Config,
    runtime: Runtime,
    reaper: Arc<Reaper>,
    events: broadcast::Sender<ShimEvent>,
    procs: Mutex<Procs>,
    /// Serializes lifecycle operations (create, start, delete, pause...).
    lifecycle: tokio::sync::Mutex<()>,
    shutdown: watch::Sender<bool>,
    console_seq: AtomicU32,
    activity: Arc<tokio::sync::Notify>,
    /// Attach streams and log followers still sending: a shutdown lets them finish first.
    readers: Arc<watch::Sender<usize>>,
}

#[derive(Debug, Default)]
struct Procs {
    init: Option<Arc<Process>>,
    execs: HashMap<String, Arc<Process>>,
}

impl Shim {
    /// A shim for `cfg`'s container, using `reaper` for every child process.
    pub fn new(cfg: Config, reaper: Arc<Reaper>) -> Arc<Shim> {
        let runtime = Runtime::new(
            cfg.runtime.clone(),
            cfg.runtime_root.clone(),
            &cfg.bundle,
            cfg.systemd_cgroup,
            Arc::clone(&reaper),
        );
        Arc::new(Shim {
            cfg,
            runtime,
            reaper,
            events: broadcast::channel(EVENTS_CAPACITY).0,
            procs: Mutex::new(Procs::default()),
            lifecycle: tokio::sync::Mutex::new(()),
            shutdown: watch::channel(false).0,
            console_seq: AtomicU32::new(0),
            activity: Arc::new(tokio::sync::Notify::new()),
            readers: Arc::new(watch::channel(0).0),
        })
    }

    /// Waits until every attach stream and log follower has sent all it had (at most
    /// `grace`): the output they carry lives only here once the container is deleted, and a
    /// client may read it after removing the container (docker-py's `run` does).
    pub async fn readers_done(&self, grace: Duration) {
        let mut rx = self.readers.subscribe();
        let _ = tokio::time::timeout(grace, rx.wait_for(|n| *n == 0)).await;
    }

    fn reader_started(&self) -> ReaderGuard {
        self.readers.send_modify(|n| *n += 1);
        ReaderGuard(Arc::clone(&self.readers))
    }

    /// Poked after every RPC (see [`crate::trim`]).
    pub fn activity(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.activity)
    }

    /// Resolves once Shutdown was accepted (or the deleted-container grace ran out).
    pub async fn shutdown_requested(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    fn procs(&self) -> MutexGuard<'_, Procs> {
        self.procs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn init(&self) -> Result<Arc<Process>> {
        self.procs()
            .init
            .clone()
            .ok_or_else(|| ShimError::NotFound(format!("task {} not created", self.cfg.id)))
    }

    fn get(&self, exec_id: &str) -> Result<Arc<Process>> {
        if exec_id.is_empty() {
            return self.init();
        }
        self.procs()
            .execs
            .get(exec_id)
            .cloned()
            .ok_or_else(|| ShimError::NotFound(format!("exec {exec_id} not found")))
    }

    fn emit(&self, topic: &str, exec_id: &str, pid: u32, exit: Option<&Exit>) {
        // No subscriber: the event is dropped (clients that reconnect read State).
        let _ = self.events.send(ShimEvent {
            timestamp: Some(SystemTime::now().into()),
            topic: topic.to_string(),
            container_id: self.cfg.id.clone(),
            exec_id: exec_id.to_string(),
            pid,
            exit_status: exit.map_or(0, |e| e.status),
            exited_at: exit.map(|e| e.at.into()),
        });
    }

    fn console_path(&self) -> PathBuf {
        let n = self.console_seq.fetch_add(1, Ordering::Relaxed);
        self.cfg.state_dir.join(format!("console-{n}.sock"))
    }

    fn spec_terminal(json: &[u8]) -> Option<bool> {
        let v: serde_json::Value = serde_json::from_slice(json).ok()?;
        let process = v.get("process").unwrap_or(&v);
        Some(
            process
                .get("terminal")
                .and_then(|t| t.as_bool())
                .unwrap_or(false),
        )
    }

    fn read_pid_file(path: &std::path::Path) -> Result<u32> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ShimError::io("read pid file", path, e))?;
        text.trim().parse().map_err(|_| {
            ShimError::io(
                "parse pid file",
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, text.clone()),
            )
        })
    }

    /// Creates the container with the runtime; returns the init's pid.
    pub async fn create(self: &Arc<Self>, bundle: &str, io: Io) -> Result<u32> {
        let _l = self.lifecycle.lock().await;
        if self.procs().init.is_some() {
            return Err(ShimError::AlreadyExists(format!(
                "task {} already created",
                self.cfg.id
            )));
        }
        if !bundle.is_empty() && self.cfg.bundle != Path::new(bundle) {
            return Err(ShimError::InvalidArgument(format!(
                "bundle {bundle} is not this shim's bundle {}",
                self.cfg.bundle.display()
            )));
        }
        let config = self.cfg.bundle.join("config.json");
        let spec = std::fs::read(&config).map_err(|e| ShimError::io("read", &config, e))?;
        if Self::spec_terminal(&spec).unwrap_or(false) != io.terminal {
            return Err(ShimError::InvalidArgument(format!(
                "io.terminal is {} but process.terminal in {} is not",
                io.terminal,
                config.display()
            )));
        }
        let proc = Process::new(&self.cfg.state_dir, "", &io, None)?;
        let pid_file = self.cfg.bundle.join("init.pid");
        let _ = std::fs::remove_file(&pid_file);
        let prepared = proc.prepare_io(&self.console_path())?;
        let mut a = args(["create", "--bundle"]);
        a.push(self.cfg.bundle.clone().into());
        a.push("--pid-file".into());
        a.push(pid_file.clone().into());
        if let Some(c) = &prepared.console {
            a.push("--console-socket".into());
            a.push(c.path().into());
        }
        a.push(self.cfg.id.clone().into());
        let result = async {
            self.runtime
                .run_with_stdio("create", &a, prepared.pass)
                .await?;
            if let Some(c) = &prepared.console {
                let master = c
                    .receive()
                    .await
                    .map_err(|e| ShimError::io("receive pty master", c.path(), e))?;
                proc.attach_pty(master)?;
            }
            Self::read_pid_file(&pid_file)
        }
        .await;
        let pid = match result {
            Ok(pid) => pid,
            Err(e) => {
                proc.close_stdin();
                proc.output.close();
                proc.remove_files();
                return Err(e);
            }
        };
        proc.set_pid(pid);
        self.procs().init = Some(Arc::clone(&proc));
        self.watch_exit(&proc, self.reaper.subscribe(pid));
        let shim = Arc::downgrade(self);
        let watched = crate::oom::watch(pid, move || {
            if let Some(shim) = shim.upgrade() {
                tracing::warn!(pid, "oom");
                shim.emit("/tasks/oom", "", pid, None);
            }
        });
        if let Err(e) = watched {
            tracing::warn!(pid, error = %e, "no oom events");
        }
        tracing::info!(pid, "created");
        self.emit("/tasks/create", "", pid, None);
        Ok(pid)
    }

    /// Records `proc`'s exit when the reaper delivers it: drain output, write the exit file,
    /// wake waiters, emit `/tasks/exit`.
    fn watch_exit(self: &Arc<Self>, proc: &Arc<Process>, rx: oneshot::Receiver<Exit>) {
        let shim = Arc::clone(self);
        let proc = Arc::clone(proc);
        tokio::spawn(async move {
            let Ok(exit) = rx.await else { return };
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, proc.output.closed()).await;
            if let Err(e) = exit::write_record(&shim.cfg.state_dir, &proc.exec_id, &exit) {
                tracing::warn!(error = %e, exec_id = %proc.exec_id, "write exit record");
            }
            proc.set_exited(exit);
            tracing::info!(exec_id = %proc.exec_id, pid = exit.pid, status = exit.status, "exited");
            shim.emit("/tasks/exit", &proc.exec_id, exit.pid, Some(&exit));
        });
    }

    /// Starts the init (`runtime start`) or a registered exec (`runtime exec --detach`).
    pub async fn start(self: &Arc<Self>, exec_id: &str) -> Result<u32> {
        let _l = self.lifecycle.lock().await;
        let proc = self.get(exec_id)?;
        if exec_id.is_empty() {
            if proc.phase() != Phase::Created {
                return Err(ShimError::FailedPrecondition(format!(
                    "task {} is {}, not created",
                    self.cfg.id,
                    proc.phase().name()
                )));
            }
            self.runtime
                .run("start", &args(["start", &self.cfg.id]), None)
                .await?;
            // It may have exited already (then the exit watcher set Stopped).
            let _ = proc.transition(Phase::Running);
            let pid = proc.pid();
            tracing::info!(pid, "started");
            self.emit("/tasks/start", "", pid, None);
            return Ok(pid);
        }
        self.start_exec(&proc).await
    }

    async fn start_exec(self: &Arc<Self>, proc: &Arc<Process>) -> Result<u32> {
        let id = &proc.exec_id;
        if proc.phase() != Phase::Created {
            return Err(ShimError::FailedPrecondition(format!(
                "exec {id} is {}, not created",
                proc.phase().name()
            )));
        }
        let init = self.init()?;
        if init.phase() != Phase::Running {
            return Err(ShimError::FailedPrecondition(format!(
                "task {} is {}, not running",
                self.cfg.id,
                init.phase().name()
            )));
        }
        let stem = file_stem(id);
        let spec_path = self.cfg.state_dir.join(format!("{stem}.json"));
        let pid_file = self.cfg.state_dir.join(format!("{stem}.pid"));
        std::fs::write(&spec_path, proc.spec.as_deref().unwrap_or_default())
            .map_err(|e| ShimError::io("write process spec", &spec_path, e))?;
        let _ = std::fs::remove_file(&pid_file);
        let prepared = proc.prepare_io(&self.console_path())?;
        let mut a = args(["exec", "--process"]);
        a.push(spec_path.clone().into());
        a.push("--detach".into());
        a.push("--pid-file".into());
        a.push(pid_file.clone().into());
        if let Some(c) = &prepared.console {
            a.push("--console-socket".into());
            a.push(c.path().into());
        }
        a.push(self.cfg.id.clone().into());
        let result = async {
            self.runtime
                .run_with_stdio("exec", &a, prepared.pass)
                .await?;
            if let Some(c) = &prepared.console {
                let master = c
                    .receive()
                    .await
                    .map_err(|e| ShimError::io("receive pty master", c.path(), e))?;
                proc.attach_pty(master)?;
            }
            Self::read_pid_file(&pid_file)
        }
        .await;
        let _ = std::fs::remove_file(&spec_path);
        let _ = std::fs::remove_file(&pid_file);
        let pid = match result {
            Ok(pid) => pid,
            Err(e) => {
                proc.close_stdin();
                proc.output.close();
                return Err(e);
            }
        };
        proc.set_pid(pid);
        proc.transition(Phase::Running)?;
        self.watch_exit(proc, self.reaper.subscribe(pid));
        tracing::info!(exec_id = %id, pid, "exec started");
        self.emit("/tasks/exec-started", id, pid, None);
        Ok(pid)
    }

    /// Registers an exec; it runs on Start.
    pub async fn exec(&self, exec_id: &str, spec: Vec<u8>, io: Io) -> Result<()> {
        let _l = self.lifecycle.lock().await;
        validate_exec_id(exec_id)?;
        let init = self.init()?;
        if !matches!(init.phase(), Phase::Running | Phase::Paused) {
            return Err(ShimError::FailedPrecondition(format!(
                "task {} is {}, not running",
                self.cfg.id,
                init.phase().name()
            )));
        }
        if self.procs().execs.contains_key(exec_id) {
            return Err(ShimError::AlreadyExists(format!(
                "exec {exec_id} already exists"
            )));
        }
        let terminal = Self::spec_terminal(&spec).ok_or_else(|| {
            ShimError::InvalidArgument(format!("exec {exec_id}: spec is not an OCI process JSON"))
        })?;
        if terminal != io.terminal {
            return Err(ShimError::InvalidArgument(format!(
                "exec {exec_id}: io.terminal is {} but the spec's terminal is {terminal}",
                io.terminal
            )));
        }
        let proc = Process::new(&self.cfg.state_dir, exec_id, &io, Some(spec))?;
        self.procs().execs.insert(exec_id.to_string(), proc);
        self.emit("/tasks/exec-added", exec_id, 0, None);
        Ok(())
    }

    /// Deletes an exited exec, or the container (`runtime delete`).
    pub async fn delete(self: &Arc<Self>, exec_id: &str) -> Result<(u32, Option<Exit>)> {
        let _l = self.lifecycle.lock().await;
        let proc = self.get(exec_id)?;
        if !exec_id.is_empty() {
            match proc.phase() {
                Phase::Stopped | Phase::Created => {}
                p => {
                    return Err(ShimError::FailedPrecondition(format!(
                        "exec {exec_id} is {}",
                        p.name()
                    )))
                }
            }
            proc.transition(Phase::Deleted)?;
            self.procs().execs.remove(exec_id);
            proc.remove_files();
            proc.output.close();
            let _ = std::fs::remove_file(self.cfg.state_dir.join(exit::record_name(exec_id)));
            return Ok((proc.pid(), proc.exit()));
        }
        let phase = proc.phase();
        match phase {
            Phase::Created | Phase::Stopped => {}
            p => {
                return Err(ShimError::FailedPrecondition(format!(
                    "task {} is {}; kill it first",
                    self.cfg.id,
                    p.name()
                )))
            }
        }
        let deleted = self
            .runtime
            .run("delete", &args(["delete", "--force", &self.cfg.id]), None)
            .await;
        match deleted {
            Ok(_) => {}
            // Already gone from the runtime (deleted by hand, or a runtime restart): fine.
            Err(ShimError::Runtime { message, .. }) if message.contains("not exist") => {}
            Err(e) => return Err(e),
        }
        if phase == Phase::Created {
            // The runtime killed the created init: report its real exit status.
            let _ = tokio::time::timeout(DRAIN_TIMEOUT * 2, proc.wait()).await;
        }
        proc.transition(Phase::Deleted)?;
        proc.close_stdin();
        proc.remove_files();
        let _ = std::fs::remove_file(self.cfg.bundle.join("init.pid"));
        let exit = proc.exit();
        tracing::info!(pid = proc.pid(), "deleted");
        self.emit("/tasks/delete", "", proc.pid(), exit.as_ref());
        let shim = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(DELETED_GRACE).await;
            tracing::info!("container deleted and no shutdown came: exiting");
            shim.shutdown.send_replace(true);
        });
        Ok((proc.pid(), exit))
    }

    /// Signals the init (through the runtime) or an exec (directly).
    pub async fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let proc = self.get(exec_id)?;
        let finished = || ShimError::NotFound(format!("process {} already finished", proc.pid()));
        if exec_id.is_empty() {
            if proc.exit().is_some() || proc.phase() == Phase::Deleted {
                return Err(finished());
            }
            let sig = signal.to_string();
            let a = if all {
                args(["kill", "--all", &self.cfg.id, &sig])
            } else {
                args(["kill", &self.cfg.id, &sig])
            };
            return self.runtime.run("kill", &a, None).await.map(drop);
        }
        match proc.phase() {
            Phase::Created => Err(ShimError::FailedPrecondition(format!(
                "exec {exec_id} not started"
            ))),
            Phase::Running | Phase::Paused if proc.exit().is_none() => {
                // SAFETY: kill(2) with plain integers has no memory-safety preconditions.
                let r = unsafe { libc::kill(proc.pid() as i32, signal as i32) };
                if r == 0 {
                    Ok(())
                } else {
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() == Some(libc::ESRCH) {
                        Err(finished())
                    } else {
                        Err(ShimError::io("signal exec", "", e))
                    }
                }
            }
            _ => Err(finished()),
        }
    }

    /// Pauses or resumes the container.
    pub async fn set_paused(&self, pause: bool) -> Result<()> {
        let _l = self.lifecycle.lock().await;
        let init = self.init()?;
        let (from, to, verb, topic) = if pause {
            (Phase::Running, Phase::Paused, "pause", "/tasks/paused")
        } else {
            (Phase::Paused, Phase::Running, "resume", "/tasks/resumed")
        };
        if init.phase() != from {
            return Err(ShimError::FailedPrecondition(format!(
                "task {} is {}, not {}",
                self.cfg.id,
                init.phase().name(),
                from.name()
            )));
        }
        self.runtime
            .run(verb, &args([verb, &self.cfg.id]), None)
            .await?;
        init.transition(to)?;
        self.emit(topic, "", init.pid(), None);
        Ok(())
    }

    /// The container's processes (`runtime ps`), with exec ids for execs' main processes.
    pub async fn pids(&self) -> Result<Vec<ProcessInfo>> {
        self.init()?;
        let out = self
            .runtime
            .run("ps", &args(["ps", "--format", "json", &self.cfg.id]), None)
            .await?;
        let pids: Vec<u32> = serde_json::from_slice(&out).map_err(|e| ShimError::Runtime {
            verb: "ps",
            message: format!("parse ps output: {e}"),
        })?;
        let by_pid: HashMap<u32, String> = self
            .procs()
            .execs
            .values()
            .map(|p| (p.pid(), p.exec_id.clone()))
            .collect();
        Ok(pids
            .into_iter()
            .map(|pid| ProcessInfo {
                pid,
                exec_id: by_pid.get(&pid).cloned().unwrap_or_default(),
            })
            .collect())
    }

    /// Changes resources (`runtime update -r -`).
    pub async fn update(&self, resources: &[u8]) -> Result<()> {
        self.init()?;
        self.runtime
            .run(
                "update",
                &args(["update", "-r", "-", &self.cfg.id]),
                Some(resources),
            )
            .await
            .map(drop)
    }

    /// Resource usage (`runtime events --stats`).
    pub async fn stats(&self) -> Result<berth_proto::types::v1::Stats> {
        self.init()?;
        let out = self
            .runtime
            .run("events", &args(["events", "--stats", &self.cfg.id]), None)
            .await?;
        stats::parse(&out).map_err(|message| ShimError::Runtime {
            verb: "events",
            message,
        })
    }

    /// Accepts Shutdown unless the container still exists (and `now` is false).
    pub fn shutdown(&self, now: bool) -> Result<()> {
        let exists = self
            .procs()
            .init
            .as_ref()
            .is_some_and(|p| p.phase() != Phase::Deleted);
        if exists && !now {
            return Err(ShimError::FailedPrecondition(format!(
                "task {} still exists; delete it first",
                self.cfg.id
            )));
        }
        tracing::info!(now, "shutdown");
        self.shutdown.send_replace(true);
        Ok(())
    }

    /// Wires an Attach stream: output (replay, then live) out, stdin in.
    async fn attach(&self, mut inbound: Streaming<AttachRequest>) -> Result<ReaderStream, Status> {
        let open = match inbound.message().await? {
            Some(AttachRequest {
                msg: Some(Msg::Open(o)),
            }) => o,
            _ => {
                return Err(ShimError::InvalidArgument(
                    "the first attach message must be open".to_string(),
                )
                .into())
            }
        };
        let proc = self.get(&open.exec_id)?;
        let (tx, rx) = mpsc::channel(16);
        let guard = self.reader_started();
        if open.log_records {
            let follow = proc.output.follow();
            tokio::spawn(forward_log(follow, tx));
            // The request stream stays open (and is drained) until the client ends it: a
            // request body dropped early resets the HTTP/2 stream, answer included.
            tokio::spawn(async move { while let Ok(Some(_)) = inbound.message().await {} });
            return Ok(ReaderStream {
                inner: ReceiverStream::new(rx),
                _guard: guard,
            });
        }
        let sub = proc.output.subscribe(open.replay);
        let want_out = open.stdout;
        let want_err = open.stderr && !proc.terminal;
        let format = proc.output.log_format();
        tokio::spawn(forward_output(sub, format, want_out, want_err, tx));
        let writer = if open.stdin {
            proc.stdin_writer()
        } else {
            None
        };
        tokio::spawn(async move {
            while let Ok(Some(m)) = inbound.message().await {
                match m.msg {
                    Some(Msg::Stdin(d)) => {
                        if let Some(w) = &writer {
                            if !d.is_empty() && !w.write(d).await {
                                break;
                            }
                        }
                    }
                    Some(Msg::CloseStdin(true)) if writer.is_some() => proc.close_stdin(),
                    _ => {}
                }
            }
            if writer.is_some() && proc.stdin_once {
                proc.close_stdin();
            }
        });
        Ok(ReaderStream {
            inner: ReceiverStream::new(rx),
            _guard: guard,
        })
    }
}

fn wanted(c: &Chunk, out: bool, err: bool) -> bool {
    match c.stream {
        StdStream::Stdout => out,
        StdStream::Stderr => err,
    }
}

async fn forward_output(
    sub: Subscription,
    format: LogFormat,
    out: bool,
    err: bool,
    tx: mpsc::Sender<Result<AttachResponse, Status>>,
) {
    let send = |stream: StdStream, data: Vec<u8>| {
        let tx = tx.clone();
        async move {
            tx.send(Ok(AttachResponse {
                stream: stream as i32,
                data,
            }))
            .await
            .is_ok()
        }
    };
    if let Some((file, len)) = sub.replay {
        let mut r = BufReader::with_capacity(8 * 1024, file.take(len));
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if let Some((stream, data)) = decode_line(format, &line) {
                let c = Chunk {
                    stream,
                    data: Default::default(),
                };
                if wanted(&c, out, err) && !send(stream, data).await {
                    return;
                }
            }
        }
    }
    for c in sub.pending {
        if wanted(&c, out, err) && !send(c.stream, c.data.to_vec()).await {
            return;
        }
    }
    let Some(mut live) = sub.live else { return };
    loop {
        tokio::select! {
            r = live.recv() => match r {
                Some(c) => {
                    if wanted(&c, out, err) && !send(c.stream, c.data.to_vec()).await {
                        return;
                    }
                }
                None => return,
            },
            _ = tx.closed() => return,
        }
    }
}

/// Sends a log follower the log files as they stood, an empty marker, then the records
/// spooled for it as they come.
async fn forward_log(follow: Follow, tx: mpsc::Sender<Result<AttachResponse, Status>>) {
    let send = |data: Vec<u8>| {
        let tx = tx.clone();
        async move {
            tx.send(Ok(AttachResponse {
                stream: StdStream::Stdout as i32,
                data,
            }))
            .await
            .is_ok()
        }
    };
    let spool = follow.live;
    let _leave = LeaveOnDrop(spool.clone());
    for (file, len) in follow.files {
        let mut r = file.take(len);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !send(buf[..n].to_vec()).await {
                return;
            }
        }
    }
    if !send(Vec::new()).await {
        return;
    }
    let Some(spool) = spool else { return };
    loop {
        tokio::select! {
            next = spool.next() => match next {
                Spooled::Data(b) => {
                    if !send(b.to_vec()).await {
                        return;
                    }
                }
                Spooled::End(None) => return,
                Spooled::End(Some(why)) => {
                    let _ = tx.send(Err(Status::resource_exhausted(why))).await;
                    return;
                }
            },
            _ = tx.closed() => return,
        }
    }
}

/// An Attach response stream, counted as a reader until tonic has sent it all (or the
/// client left) and drops it.
#[derive(Debug)]
pub struct ReaderStream {
    inner: ReceiverStream<Result<AttachResponse, Status>>,
    _guard: ReaderGuard,
}

impl tokio_stream::Stream for ReaderStream {
    type Item = Result<AttachResponse, Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.inner).poll_next(cx)
    }
}

/// Counts a live reader until dropped.
#[derive(Debug)]
struct ReaderGuard(Arc<watch::Sender<usize>>);

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Tells a follower's spool that its reader left, however the forwarding ends.
struct LeaveOnDrop(Option<Arc<Spool>>);

impl Drop for LeaveOnDrop {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.leave();
        }
    }
}

/// The tonic face of [`Shim`]: every method only translates.
#[derive(Debug, Clone)]
pub struct TaskService {
    shim: Arc<Shim>,
}

impl TaskService {
    /// Serves `shim`.
    pub fn new(shim: Arc<Shim>) -> TaskService {
        TaskService { shim }
    }
}

fn span(rpc: &'static str, shim: &Shim, exec_id: &str) -> tracing::Span {
    tracing::debug_span!("rpc", rpc, namespace = %shim.cfg.namespace, container_id = %shim.cfg.id, exec_id = %exec_id)
}

/// Runs an RPC body in its span and logs a failure once, here at the edge.
async fn rpc<T>(
    rpc: &'static str,
    shim: &Shim,
    exec_id: &str,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<Response<T>, Status> {
    let span = span(rpc, shim, exec_id);
    let result = fut.instrument(span).await;
    shim.activity.notify_one();
    match result {
        Ok(v) => Ok(Response::new(v)),
        Err(e) => {
            tracing::error!(rpc, exec_id, error = %e, "rpc failed");
            Err(e.into())
        }
    }
}

#[tonic::async_trait]
impl Task for TaskService {
    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let s = &self.shim;
        Ok(Response::new(InfoResponse {
            shim_pid: std::process::id(),
            task_pid: s.procs().init.as_ref().map_or(0, |p| p.pid()),
            version: env!("CARGO_PKG_VERSION").to_string(),
            container_id: s.cfg.id.clone(),
            namespace: s.cfg.namespace.clone(),
        }))
    }

    async fn create(
        &self,
        req: Request<CreateTaskRequest>,
    ) -> Result<Response<CreateTaskResponse>, Status> {
        let r = req.into_inner();
        rpc("create", &self.shim, "", async {
            let pid = self
                .shim
                .create(&r.bundle, r.io.unwrap_or_default())
                .await?;
            Ok(CreateTaskResponse { pid })
        })
        .await
    }

    async fn start(&self, req: Request<StartRequest>) -> Result<Response<StartResponse>, Status> {
        let id = req.into_inner().exec_id;
        rpc("start", &self.shim, &id, async {
            Ok(StartResponse {
                pid: self.shim.start(&id).await?,
            })
        })
        .await
    }

    async fn state(&self, req: Request<StateRequest>) -> Result<Response<StateResponse>, Status> {
        let id = req.into_inner().exec_id;
        rpc("state", &self.shim, &id, async {
            let p = self.shim.get(&id)?;
            Ok(StateResponse {
                process: Some(p.state(&self.shim.cfg.id, &self.shim.cfg.bundle)),
            })
        })
        .await
    }

    async fn delete(
        &self,
        req: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let id = req.into_inner().exec_id;
        rpc("delete", &self.shim, &id, async {
            let (pid, exit) = self.shim.delete(&id).await?;
            Ok(DeleteResponse {
                pid,
                exit_status: exit.map_or(exit::UNKNOWN_EXIT_STATUS, |e| e.status),
                exited_at: Some(exit.map_or_else(SystemTime::now, |e| e.at).into()),
            })
        })
        .await
    }

    async fn kill(&self, req: Request<KillRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        rpc("kill", &self.shim, &r.exec_id, async {
            self.shim.kill(&r.exec_id, r.signal, r.all).await
        })
        .await
    }

    async fn exec(&self, req: Request<ExecProcessRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        rpc("exec", &self.shim, &r.exec_id, async {
            self.shim
                .exec(&r.exec_id, r.spec, r.io.unwrap_or_default())
                .await
        })
        .await
    }

    async fn resize_pty(&self, req: Request<ResizePtyRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        rpc("resize_pty", &self.shim, &r.exec_id, async {
            self.shim.get(&r.exec_id)?.resize(r.width, r.height)
        })
        .await
    }

    async fn close_io(&self, req: Request<CloseIoRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        rpc("close_io", &self.shim, &r.exec_id, async {
            let p = self.shim.get(&r.exec_id)?;
            if r.stdin {
                p.close_stdin();
            }
            Ok(())
        })
        .await
    }

    async fn pause(&self, _: Request<PauseRequest>) -> Result<Response<()>, Status> {
        rpc("pause", &self.shim, "", self.shim.set_paused(true)).await
    }

    async fn resume(&self, _: Request<ResumeRequest>) -> Result<Response<()>, Status> {
        rpc("resume", &self.shim, "", self.shim.set_paused(false)).await
    }

    async fn pids(&self, _: Request<PidsRequest>) -> Result<Response<PidsResponse>, Status> {
        rpc("pids", &self.shim, "", async {
            Ok(PidsResponse {
                processes: self.shim.pids().await?,
            })
        })
        .await
    }

    async fn update(&self, req: Request<UpdateTaskRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        rpc("update", &self.shim, "", self.shim.update(&r.resources)).await
    }

    async fn wait(&self, req: Request<WaitRequest>) -> Result<Response<WaitResponse>, Status> {
        let id = req.into_inner().exec_id;
        rpc("wait", &self.shim, &id, async {
            let p = self.shim.get(&id)?;
            let e = p.wait().await;
            Ok(WaitResponse {
                exit_status: e.status,
                exited_at: Some(e.at.into()),
            })
        })
        .await
    }

    async fn stats(&self, _: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        rpc("stats", &self.shim, "", async {
            Ok(StatsResponse {
                stats: Some(self.shim.stats().await?),
            })
        })
        .await
    }

    type AttachStream = ReaderStream;

    async fn attach(
        &self,
        req: Request<Streaming<AttachRequest>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        self.shim.attach(req.into_inner()).await.map(Response::new)
    }

    type EventsStream = ReceiverStream<Result<ShimEvent, Status>>;

    async fn events(
        &self,
        _: Request<EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        let mut events = self.shim.events.subscribe();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = events.recv() => match r {
                        Ok(e) => if tx.send(Ok(e)).await.is_err() { return },
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(dropped = n, "events subscriber too slow: dropped");
                            let _ = tx.send(Err(Status::resource_exhausted("events subscriber too slow"))).await;
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn shutdown(&self, req: Request<ShutdownRequest>) -> Result<Response<()>, Status> {
        let now = req.into_inner().now;
        rpc("shutdown", &self.shim, "", async {
            self.shim.shutdown(now)
        })
        .await
    }
}
