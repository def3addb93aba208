//! Tasks: the running side of containers, each held by a `berth-shim`. The [`TaskManager`]
//! creates bundles and shims, proxies calls to them, republishes their events, and finds them
//! again (or cleans up after them) when the supervisor restarts or a shim dies.

pub mod bundle;
pub mod shim_manager;

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use berth_proto::shim::v1::ShimEvent;
use berth_proto::types::v1 as types;
use chrono::Utc;
use tokio::sync::{watch, Mutex, RwLock};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::containers::{blocking as store_blocking, ContainerService};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, EventBus};
use crate::ids;
use crate::model::{ExitInfo, RuntimeConfig, TaskRecord};
use crate::store::MetadataStore;
use crate::uds::{from_timestamp, to_timestamp};
use shim_manager::{
    pid_is_dead, read_init_exit, ShimClient, ShimManager, StartArgs, UNKNOWN_EXIT_STATUS,
};

type Key = (String, String);

/// Where the task manager keeps things and what it runs.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    /// `--state`: bundles, shim state dirs, default runtime roots.
    pub state_dir: PathBuf,
    /// The default runtime binary (path or name).
    pub default_runtime: PathBuf,
}

/// What Tasks.Create answers.
#[derive(Debug, Clone, Default)]
pub struct Created {
    /// Init pid.
    pub pid: u32,
    /// The stdin FIFO, if any.
    pub stdin_path: String,
    /// The log file.
    pub log_path: String,
}

/// One task and its shim.
#[derive(Debug)]
struct Task {
    namespace: String,
    id: String,
    record: StdMutex<TaskRecord>,
    /// `None` once the shim is gone.
    shim: StdMutex<Option<ShimClient>>,
    /// The init's exit, once known.
    exit: watch::Sender<Option<ExitInfo>>,
    /// Whether /tasks/exit of the init was published by this process.
    exit_published: AtomicBool,
    /// Stops the event forwarder (on delete and on supervisor shutdown).
    cancel: CancellationToken,
    /// Serializes dead-shim cleanup.
    cleanup: Mutex<()>,
    /// Start of the init was requested / its /tasks/start event was forwarded. A container
    /// that exits at once can make the shim send /tasks/exit before /tasks/start; the exit
    /// event is then held back until the start event has gone out.
    start_requested: AtomicBool,
    start_seen: AtomicBool,
    held_exit: StdMutex<Option<ExitInfo>>,
}

impl Task {
    fn new(record: TaskRecord, cancel: CancellationToken) -> Task {
        let exit = record.shim_gone;
        Task {
            namespace: record.namespace.clone(),
            id: record.container_id.clone(),
            record: StdMutex::new(record),
            shim: StdMutex::new(None),
            exit: watch::Sender::new(exit),
            exit_published: AtomicBool::new(exit.is_some()),
            cancel,
            cleanup: Mutex::new(()),
            start_requested: AtomicBool::new(false),
            start_seen: AtomicBool::new(false),
            held_exit: StdMutex::new(None),
        }
    }

    fn take_held_exit(&self) -> Option<ExitInfo> {
        self.held_exit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    fn record(&self) -> TaskRecord {
        self.record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn update_record(&self, f: impl FnOnce(&mut TaskRecord)) -> TaskRecord {
        let mut r = self.record.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut r);
        r.clone()
    }

    fn shim(&self) -> Option<ShimClient> {
        self.shim.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_shim(&self, shim: Option<ShimClient>) {
        *self.shim.lock().unwrap_or_else(|p| p.into_inner()) = shim;
    }

    fn known_exit(&self) -> Option<ExitInfo> {
        *self.exit.borrow()
    }

    fn note_exit(&self, exit: ExitInfo) {
        self.exit.send_if_modified(|e| {
            if e.is_none() {
                *e = Some(exit);
                true
            } else {
                false
            }
        });
    }

    fn stopped_state(&self, exit: ExitInfo) -> types::ProcessState {
        let r = self.record();
        types::ProcessState {
            container_id: self.id.clone(),
            exec_id: String::new(),
            pid: if exit.pid != 0 { exit.pid } else { r.pid },
            status: types::Status::Stopped as i32,
            exit_status: exit.exit_status,
            exited_at: Some(to_timestamp(exit.exited_at)),
            bundle: r.bundle.to_string_lossy().into_owned(),
            stdin_path: String::new(),
            log_path: r.state_dir.join("init.log").to_string_lossy().into_owned(),
            terminal: false,
        }
    }
}

/// Creates, tracks, proxies and recovers tasks.
#[derive(Debug)]
pub struct TaskManager {
    cfg: TaskConfig,
    store: Arc<dyn MetadataStore>,
    containers: Arc<ContainerService>,
    events: EventBus,
    shims: ShimManager,
    tasks: RwLock<BTreeMap<Key, Arc<Task>>>,
    locks: StdMutex<HashMap<Key, Arc<Mutex<()>>>>,
    shutdown: CancellationToken,
}

fn key(ns: &str, id: &str) -> Key {
    (ns.to_string(), id.to_string())
}

/// Finds `bin` in PATH unless it is a path already.
fn resolve_binary(bin: &Path) -> Result<PathBuf> {
    if bin.components().count() > 1 || bin.is_absolute() {
        if bin.is_file() {
            return Ok(bin.to_path_buf());
        }
        return Err(Error::InvalidArgument(format!(
            "runtime binary {} does not exist",
            bin.display()
        )));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "runtime binary {} not found in PATH",
                bin.display()
            ))
        })
}

fn exit_from(pid: u32, exit_status: u32, at: Option<&prost_types::Timestamp>) -> ExitInfo {
    ExitInfo {
        pid,
        exit_status,
        exited_at: at.map(|t| from_timestamp(Some(t))).unwrap_or_else(Utc::now),
    }
}

impl TaskManager {
    /// A task manager over the given store; call [`TaskManager::recover`] before serving.
    pub fn new(
        cfg: TaskConfig,
        store: Arc<dyn MetadataStore>,
        containers: Arc<ContainerService>,
        events: EventBus,
        shims: ShimManager,
        shutdown: CancellationToken,
    ) -> TaskManager {
        TaskManager {
            cfg,
            store,
            containers,
            events,
            shims,
            tasks: RwLock::new(BTreeMap::new()),
            locks: StdMutex::new(HashMap::new()),
            shutdown,
        }
    }

    fn lock_for(&self, ns: &str, id: &str) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(locks.entry(key(ns, id)).or_default())
    }

    async fn task(&self, ns: &str, id: &str) -> Result<Arc<Task>> {
        ids::validate("namespace", ns)?;
        ids::validate("container id", id)?;
        self.tasks
            .read()
            .await
            .get(&key(ns, id))
            .cloned()
            .ok_or_else(|| Error::TaskNotFound {
                namespace: ns.to_string(),
                id: id.to_string(),
            })
    }

    fn live_shim(task: &Task) -> Result<ShimClient> {
        task.shim().ok_or_else(|| Error::TaskState {
            id: task.id.clone(),
            reason: "task is stopped (its shim has exited); delete it".into(),
        })
    }

    async fn persist(&self, record: TaskRecord) -> Result<()> {
        store_blocking(&self.store, move |s| s.put_task(&record)).await
    }

    /// Whether the container has a task.
    pub async fn has_task(&self, ns: &str, id: &str) -> bool {
        self.tasks.read().await.contains_key(&key(ns, id))
    }

    /// Deletes a container unless it has a task (checked under its lifecycle lock).
    pub async fn delete_container(&self, ns: &str, id: &str) -> Result<()> {
        let lock = self.lock_for(ns, id);
        let _guard = lock.lock().await;
        if self.has_task(ns, id).await {
            return Err(Error::ContainerHasTask {
                namespace: ns.to_string(),
                id: id.to_string(),
            });
        }
        self.containers.delete(ns, id).await
    }

    fn paths(&self, ns: &str, id: &str) -> (PathBuf, PathBuf) {
        let bundle = self.cfg.state_dir.join(ns).join(id);
        // Socket paths must stay under 108 bytes, and ids may be 128 long: the shim's state
        // dir is named by a short hash instead (recorded, so it need not be reproducible).
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (ns, id, Utc::now().timestamp_nanos_opt()).hash(&mut h);
        let state = self
            .cfg
            .state_dir
            .join("s")
            .join(format!("{:016x}", h.finish()));
        (bundle, state)
    }

    /// Creates the task of a container: bundle, rootfs mounts, shim, runtime create.
    #[tracing::instrument(skip_all, fields(namespace = %ns, container_id = %id))]
    pub async fn create(
        self: &Arc<Self>,
        ns: &str,
        id: &str,
        io: Option<types::Io>,
    ) -> Result<Created> {
        ids::validate("namespace", ns)?;
        ids::validate("container id", id)?;
        let lock = self.lock_for(ns, id);
        let _guard = lock.lock().await;
        let container = self.containers.get(ns, id).await?;
        if self.has_task(ns, id).await {
            return Err(Error::TaskExists {
                namespace: ns.to_string(),
                id: id.to_string(),
            });
        }
        let binary = if container.runtime.binary.is_empty() {
            self.cfg.default_runtime.clone()
        } else {
            PathBuf::from(&container.runtime.binary)
        };
        let binary = resolve_binary(&binary)?;
        let runtime_root = if container.runtime.root.is_empty() {
            self.cfg.state_dir.join("runtime").join(ns)
        } else {
            PathBuf::from(&container.runtime.root)
        };
        let (bundle, state_dir) = self.paths(ns, id);
        let record = TaskRecord {
            namespace: ns.to_string(),
            container_id: id.to_string(),
            bundle: bundle.clone(),
            shim_socket: state_dir.join("shim.sock"),
            state_dir: state_dir.clone(),
            shim_pid: 0,
            pid: 0,
            runtime: RuntimeConfig {
                binary: binary.to_string_lossy().into_owned(),
                root: runtime_root.to_string_lossy().into_owned(),
                systemd_cgroup: container.runtime.systemd_cgroup,
            },
            rootfs_mounts: container.rootfs.clone(),
            shim_gone: None,
            created_at: Utc::now(),
        };
        // Record first: whatever happens next, a restarted supervisor finds what to clean up.
        self.persist(record.clone()).await?;
        let task = Arc::new(Task::new(record.clone(), self.shutdown.child_token()));
        self.tasks
            .write()
            .await
            .insert(key(ns, id), Arc::clone(&task));

        match self.create_inner(&task, &container.spec, io).await {
            Ok(created) => {
                tracing::info!(pid = created.pid, "task created");
                Ok(created)
            }
            Err(e) => {
                if let Err(cleanup) = self.teardown(&task).await {
                    tracing::warn!(error = %cleanup, "clean up after failed task create");
                }
                Err(e)
            }
        }
    }

    async fn create_inner(
        self: &Arc<Self>,
        task: &Arc<Task>,
        spec: &str,
        io: Option<types::Io>,
    ) -> Result<Created> {
        let r = task.record();
        let (bundle, state_dir, mounts, root) = (
            r.bundle.clone(),
            r.state_dir.clone(),
            r.rootfs_mounts.clone(),
            PathBuf::from(&r.runtime.root),
        );
        let spec = spec.to_string();
        tokio::task::spawn_blocking(move || -> Result<()> {
            bundle::remove_dir(&state_dir)?;
            for d in [&bundle, &state_dir, &root] {
                std::fs::create_dir_all(d).map_err(|e| Error::io("create dir", d, e))?;
            }
            bundle::write_config(&bundle, &spec, !mounts.is_empty())?;
            if !mounts.is_empty() {
                bundle::mount_rootfs(&bundle.join("rootfs"), &mounts)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::Internal(format!("prepare bundle: {e}")))??;

        let socket = self
            .shims
            .start(&StartArgs {
                namespace: &task.namespace,
                id: &task.id,
                bundle: &r.bundle,
                runtime: Path::new(&r.runtime.binary),
                runtime_root: Path::new(&r.runtime.root),
                systemd_cgroup: r.runtime.systemd_cgroup,
                state_dir: &r.state_dir,
            })
            .await?;
        let (shim, info) = ShimClient::connect(&task.id, &socket).await?;
        task.set_shim(Some(shim.clone()));
        let record = task.update_record(|r| {
            r.shim_socket = socket.clone();
            r.shim_pid = info.shim_pid;
        });
        self.persist(record).await?;
        // Subscribe before Create: the shim does not queue events for absent listeners.
        let stream = shim.events().await?;
        self.spawn_forwarder(task, stream);

        let pid = shim.create(&r.bundle, io).await?;
        let record = task.update_record(|r| r.pid = pid);
        self.persist(record).await?;
        let state = shim.state("").await.unwrap_or_default();
        Ok(Created {
            pid,
            stdin_path: state.stdin_path,
            log_path: state.log_path,
        })
    }

    /// Undoes everything of a task: shim, mounts, dirs, record. Teardown continues past
    /// failures; the first is returned.
    async fn teardown(&self, task: &Arc<Task>) -> Result<()> {
        task.cancel.cancel();
        let mut first: Option<Error> = None;
        if let Some(shim) = task.shim() {
            if let Err(e) = shim.shutdown(true).await {
                tracing::debug!(error = %e, "shim shutdown");
            }
            task.set_shim(None);
        }
        let r = task.record();
        if r.shim_gone.is_none() && r.shim_pid != 0 {
            // A shim that got as far as Create may have left a runtime container behind.
            if let Err(e) = self.shims.delete(&r).await {
                tracing::debug!(error = %e, "berth-shim delete during teardown");
            }
        }
        let rr = r.clone();
        let res = tokio::task::spawn_blocking(move || -> Result<()> {
            let mut first = None;
            if !rr.rootfs_mounts.is_empty() {
                if let Err(e) = bundle::unmount_rootfs(&rr.bundle.join("rootfs"), &rr.rootfs_mounts)
                {
                    first.get_or_insert(e);
                }
            }
            for d in [&rr.bundle, &rr.state_dir] {
                if let Err(e) = bundle::remove_dir(d) {
                    first.get_or_insert(e);
                }
            }
            first.map_or(Ok(()), Err)
        })
        .await
        .map_err(|e| Error::Internal(format!("teardown: {e}")))
        .and_then(|r| r);
        if let Err(e) = res {
            first.get_or_insert(e);
        }
        let (ns, id) = (r.namespace.clone(), r.container_id.clone());
        if let Err(e) = store_blocking(&self.store, move |s| s.delete_task(&ns, &id)).await {
            first.get_or_insert(e);
        }
        self.tasks
            .write()
            .await
            .remove(&key(&r.namespace, &r.container_id));
        first.map_or(Ok(()), Err)
    }

    fn spawn_forwarder(self: &Arc<Self>, task: &Arc<Task>, stream: tonic::Streaming<ShimEvent>) {
        let mgr = Arc::clone(self);
        let task = Arc::clone(task);
        let span = tracing::info_span!(parent: None, "shim_events", namespace = %task.namespace, container_id = %task.id);
        tokio::spawn(async move { mgr.forward_events(task, stream).await }.instrument(span));
    }

    async fn forward_events(
        self: Arc<Self>,
        task: Arc<Task>,
        mut stream: tonic::Streaming<ShimEvent>,
    ) {
        loop {
            loop {
                let msg = tokio::select! {
                    _ = task.cancel.cancelled() => return,
                    m = stream.message() => m,
                };
                match msg {
                    Ok(Some(ev)) => self.on_shim_event(&task, ev),
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(error = %status, "shim event stream broke");
                        break;
                    }
                }
            }
            if task.cancel.is_cancelled() {
                return;
            }
            match self.reconnect(&task).await {
                Some(s) => stream = s,
                None => {
                    self.handle_dead_shim(&task).await;
                    return;
                }
            }
        }
    }

    /// After the event stream broke: reconnect if the shim still lives, `None` if it is gone.
    async fn reconnect(&self, task: &Arc<Task>) -> Option<tonic::Streaming<ShimEvent>> {
        let r = task.record();
        for attempt in 0..10 {
            if task.cancel.is_cancelled() {
                return None;
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            match ShimClient::connect(&task.id, &r.shim_socket).await {
                Ok((shim, _)) => match shim.events().await {
                    Ok(stream) => {
                        tracing::info!("reconnected to shim");
                        task.set_shim(Some(shim.clone()));
                        self.sync_state(task, &shim).await;
                        return Some(stream);
                    }
                    Err(e) => tracing::debug!(error = %e, "resubscribe to shim events"),
                },
                Err(e) => {
                    tracing::debug!(error = %e, attempt, "reconnect to shim");
                    if pid_is_dead(r.shim_pid) && attempt >= 1 {
                        return None;
                    }
                }
            }
        }
        None
    }

    /// Catches up with an exit that happened while nobody listened.
    async fn sync_state(&self, task: &Task, shim: &ShimClient) {
        match shim.state("").await {
            Ok(st) if st.status == types::Status::Stopped as i32 => {
                let exit = exit_from(st.pid, st.exit_status, st.exited_at.as_ref());
                task.note_exit(exit);
                self.publish_exit(task, exit);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "read task state from shim"),
        }
    }

    fn publish_exit(&self, task: &Task, exit: ExitInfo) {
        if task.exit_published.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::info!(
            exit_status = exit.exit_status,
            pid = exit.pid,
            "task exited"
        );
        let mut ev = Event::new(&task.namespace, "/tasks/exit", &task.id);
        ev.pid = exit.pid;
        ev.exit_status = exit.exit_status;
        ev.exited_at = Some(exit.exited_at);
        self.events.publish(ev);
    }

    fn on_shim_event(self: &Arc<Self>, task: &Arc<Task>, ev: ShimEvent) {
        let init = ev.exec_id.is_empty();
        if init && ev.topic == "/tasks/exit" {
            let exit = exit_from(ev.pid, ev.exit_status, ev.exited_at.as_ref());
            task.note_exit(exit);
            if task.start_requested.load(Ordering::SeqCst)
                && !task.start_seen.load(Ordering::SeqCst)
            {
                *task.held_exit.lock().unwrap_or_else(|p| p.into_inner()) = Some(exit);
                // Should the start event never come, the exit still goes out.
                let (mgr, task) = (Arc::clone(self), Arc::clone(task));
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    if let Some(exit) = task.take_held_exit() {
                        mgr.publish_exit(&task, exit);
                    }
                });
            } else {
                self.publish_exit(task, exit);
            }
            return;
        }
        let release = init && ev.topic == "/tasks/start";
        if init && ev.topic == "/tasks/delete" {
            // Published by the supervisor once the task is fully cleaned up.
            return;
        }
        self.events.publish(Event {
            timestamp: ev
                .timestamp
                .as_ref()
                .map(|t| from_timestamp(Some(t)))
                .unwrap_or_else(Utc::now),
            namespace: task.namespace.clone(),
            topic: ev.topic,
            container_id: task.id.clone(),
            exec_id: ev.exec_id,
            pid: ev.pid,
            exit_status: ev.exit_status,
            exited_at: ev.exited_at.as_ref().map(|t| from_timestamp(Some(t))),
        });
        if release {
            task.start_seen.store(true, Ordering::SeqCst);
            if let Some(exit) = task.take_held_exit() {
                self.publish_exit(task, exit);
            }
        }
    }

    /// The shim is gone: force-delete the container with the runtime, unmount, and record the
    /// task as stopped with the status the shim left in `init.exit` (137 without one).
    async fn handle_dead_shim(&self, task: &Arc<Task>) {
        let _guard = task.cleanup.lock().await;
        let r = task.record();
        if r.shim_gone.is_some() {
            return;
        }
        tracing::warn!(shim_pid = r.shim_pid, "shim is gone; cleaning up its task");
        task.set_shim(None);
        let recorded = read_init_exit(&r.state_dir);
        if let Err(e) = self.shims.delete(&r).await {
            tracing::warn!(error = %e, "berth-shim delete after dead shim");
        }
        let exit = recorded.or(task.known_exit()).unwrap_or(ExitInfo {
            pid: r.pid,
            exit_status: UNKNOWN_EXIT_STATUS,
            exited_at: Utc::now(),
        });
        if !r.rootfs_mounts.is_empty() {
            let (rootfs, mounts) = (r.bundle.join("rootfs"), r.rootfs_mounts.clone());
            match tokio::task::spawn_blocking(move || bundle::unmount_rootfs(&rootfs, &mounts))
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "unmount rootfs of dead shim's task"),
                Err(e) => tracing::warn!(error = %e, "unmount rootfs of dead shim's task"),
            }
        }
        let record = task.update_record(|r| r.shim_gone = Some(exit));
        if let Err(e) = self.persist(record).await {
            tracing::error!(error = %e, "record stopped task");
        }
        task.note_exit(exit);
        self.publish_exit(task, exit);
    }

    /// Finds every recorded task again after a (re)start: reconnects to live shims and cleans
    /// up after dead ones.
    pub async fn recover(self: &Arc<Self>, records: Vec<TaskRecord>) {
        for record in records {
            let span = tracing::info_span!(parent: None, "recover", namespace = %record.namespace, container_id = %record.container_id);
            self.recover_one(record).instrument(span).await;
        }
    }

    async fn recover_one(self: &Arc<Self>, record: TaskRecord) {
        let task = Arc::new(Task::new(record.clone(), self.shutdown.child_token()));
        self.tasks.write().await.insert(
            key(&record.namespace, &record.container_id),
            Arc::clone(&task),
        );
        if record.shim_gone.is_some() {
            return;
        }
        match ShimClient::connect(&record.container_id, &record.shim_socket).await {
            Ok((shim, info))
                if info.container_id.is_empty() || info.container_id == record.container_id =>
            {
                match shim.events().await {
                    Ok(stream) => {
                        task.set_shim(Some(shim.clone()));
                        if record.shim_pid == 0 || record.pid == 0 {
                            let r = task.update_record(|r| {
                                r.shim_pid = info.shim_pid;
                                r.pid = info.task_pid;
                            });
                            if let Err(e) = self.persist(r).await {
                                tracing::warn!(error = %e, "update task record");
                            }
                        }
                        self.spawn_forwarder(&task, stream);
                        self.sync_state(&task, &shim).await;
                        tracing::info!(
                            shim_pid = info.shim_pid,
                            pid = info.task_pid,
                            "reconnected to shim"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "subscribe to shim events");
                        self.handle_dead_shim(&task).await;
                    }
                }
            }
            Ok((_, info)) => {
                tracing::warn!(other = %info.container_id, "socket serves another container's shim");
                self.handle_dead_shim(&task).await;
            }
            Err(e) => {
                tracing::info!(error = %e, "shim not reachable");
                self.handle_dead_shim(&task).await;
            }
        }
    }

    /// Starts the init (empty `exec_id`) or an exec.
    #[tracing::instrument(skip_all, fields(namespace = %ns, container_id = %id, exec_id = %exec_id))]
    pub async fn start(&self, ns: &str, id: &str, exec_id: &str) -> Result<u32> {
        let task = self.task(ns, id).await?;
        let shim = Self::live_shim(&task)?;
        if exec_id.is_empty() {
            task.start_requested.store(true, Ordering::SeqCst);
        }
        let pid = shim.start(exec_id).await?;
        tracing::info!(pid, "started");
        Ok(pid)
    }

    /// Deletes the init's task (everything) or an exited exec.
    #[tracing::instrument(skip_all, fields(namespace = %ns, container_id = %id, exec_id = %exec_id))]
    pub async fn delete(&self, ns: &str, id: &str, exec_id: &str, force: bool) -> Result<ExitInfo> {
        let task = self.task(ns, id).await?;
        if !exec_id.is_empty() {
            ids::validate("exec id", exec_id)?;
            let shim = Self::live_shim(&task)?;
            if force {
                let _ = shim.kill(exec_id, libc::SIGKILL as u32, false).await;
                let _ = tokio::time::timeout(Duration::from_secs(10), shim.wait(exec_id)).await;
            }
            let r = shim.delete(exec_id).await?;
            return Ok(exit_from(r.pid, r.exit_status, r.exited_at.as_ref()));
        }
        let lock = self.lock_for(ns, id);
        let _guard = lock.lock().await;
        let task = self.task(ns, id).await?;
        let mut exit = None;
        if let Some(shim) = task.shim() {
            if force {
                if let Err(e) = shim.kill("", libc::SIGKILL as u32, true).await {
                    tracing::debug!(error = %e, "kill before forced delete");
                }
                let _ = tokio::time::timeout(Duration::from_secs(10), self.wait_init(&task)).await;
            }
            match shim.delete("").await {
                Ok(r) => exit = Some(exit_from(r.pid, r.exit_status, r.exited_at.as_ref())),
                Err(e) if e.kind() == ErrorKind::Unavailable && force => {
                    self.handle_dead_shim(&task).await;
                }
                Err(e) => return Err(e),
            }
            task.cancel.cancel();
            if exit.is_some() {
                if let Err(e) = shim.shutdown(false).await {
                    tracing::debug!(error = %e, "shim shutdown; retrying with now");
                    let _ = shim.shutdown(true).await;
                }
            }
            task.set_shim(None);
        }
        let r = task.record();
        let exit = exit
            .or(r.shim_gone)
            .or(task.known_exit())
            .unwrap_or(ExitInfo {
                pid: r.pid,
                exit_status: UNKNOWN_EXIT_STATUS,
                exited_at: Utc::now(),
            });
        // The runtime container is gone; make sure teardown does not run `berth-shim delete`.
        task.update_record(|r| r.shim_gone = Some(exit));
        self.teardown(&task).await?;
        tracing::info!(exit_status = exit.exit_status, "task deleted");
        let mut ev = Event::new(ns, "/tasks/delete", id);
        ev.pid = exit.pid;
        ev.exit_status = exit.exit_status;
        ev.exited_at = Some(exit.exited_at);
        self.events.publish(ev);
        Ok(exit)
    }

    /// The state of the init or an exec, and the shim's pid.
    pub async fn get(
        &self,
        ns: &str,
        id: &str,
        exec_id: &str,
    ) -> Result<(types::ProcessState, u32)> {
        let task = self.task(ns, id).await?;
        let shim_pid = task.record().shim_pid;
        match task.shim() {
            Some(shim) => {
                let mut st = shim.state(exec_id).await?;
                st.container_id = id.to_string();
                if exec_id.is_empty() && st.status == types::Status::Stopped as i32 {
                    task.note_exit(exit_from(st.pid, st.exit_status, st.exited_at.as_ref()));
                }
                Ok((st, shim_pid))
            }
            None if exec_id.is_empty() => {
                let exit = task.known_exit().unwrap_or(ExitInfo {
                    pid: 0,
                    exit_status: UNKNOWN_EXIT_STATUS,
                    exited_at: Utc::now(),
                });
                Ok((task.stopped_state(exit), shim_pid))
            }
            None => Err(Error::TaskState {
                id: id.to_string(),
                reason: format!("exec {exec_id}: the task is stopped"),
            }),
        }
    }

    /// The init states of a namespace's tasks.
    pub async fn list(&self, ns: &str) -> Result<Vec<types::ProcessState>> {
        ids::validate("namespace", ns)?;
        let ids: Vec<String> = self
            .tasks
            .read()
            .await
            .keys()
            .filter(|(n, _)| n == ns)
            .map(|(_, id)| id.clone())
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.get(ns, &id, "").await {
                Ok((st, _)) => out.push(st),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(container_id = %id, error = %e, "task state");
                    out.push(types::ProcessState {
                        container_id: id,
                        status: types::Status::Unknown as i32,
                        ..Default::default()
                    });
                }
            }
        }
        Ok(out)
    }

    /// Signals the init or an exec.
    pub async fn kill(
        &self,
        ns: &str,
        id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> Result<()> {
        let task = self.task(ns, id).await?;
        let signal = if signal == 0 {
            libc::SIGTERM as u32
        } else {
            signal
        };
        Self::live_shim(&task)?.kill(exec_id, signal, all).await
    }

    /// Adds an exec process.
    pub async fn exec(
        &self,
        ns: &str,
        id: &str,
        exec_id: &str,
        spec: Vec<u8>,
        io: Option<types::Io>,
    ) -> Result<()> {
        ids::validate("exec id", exec_id)?;
        serde_json::from_slice::<oci_spec::runtime::Process>(&spec).map_err(|e| {
            Error::InvalidArgument(format!(
                "invalid process spec for exec {exec_id} in {id}: {e}"
            ))
        })?;
        let task = self.task(ns, id).await?;
        Self::live_shim(&task)?.exec(exec_id, spec, io).await
    }

    /// Resizes a pty.
    pub async fn resize_pty(
        &self,
        ns: &str,
        id: &str,
        exec_id: &str,
        w: u32,
        h: u32,
    ) -> Result<()> {
        let task = self.task(ns, id).await?;
        Self::live_shim(&task)?.resize_pty(exec_id, w, h).await
    }

    /// Closes stdin.
    pub async fn close_io(&self, ns: &str, id: &str, exec_id: &str, stdin: bool) -> Result<()> {
        let task = self.task(ns, id).await?;
        Self::live_shim(&task)?.close_io(exec_id, stdin).await
    }

    /// Pauses the container.
    pub async fn pause(&self, ns: &str, id: &str) -> Result<()> {
        let task = self.task(ns, id).await?;
        Self::live_shim(&task)?.pause().await
    }

    /// Resumes the container.
    pub async fn resume(&self, ns: &str, id: &str) -> Result<()> {
        let task = self.task(ns, id).await?;
        Self::live_shim(&task)?.resume().await
    }

    /// The container's processes.
    pub async fn pids(&self, ns: &str, id: &str) -> Result<Vec<types::ProcessInfo>> {
        let task = self.task(ns, id).await?;
        Self::live_shim(&task)?.pids().await
    }

    /// Changes resources.
    pub async fn update(&self, ns: &str, id: &str, resources: Vec<u8>) -> Result<()> {
        serde_json::from_slice::<oci_spec::runtime::LinuxResources>(&resources).map_err(|e| {
            Error::InvalidArgument(format!("invalid linux.resources for {id}: {e}"))
        })?;
        let task = self.task(ns, id).await?;
        Self::live_shim(&task)?.update(resources).await
    }

    /// Resource usage.
    pub async fn stats(&self, ns: &str, id: &str) -> Result<Option<types::Stats>> {
        let task = self.task(ns, id).await?;
        Self::live_shim(&task)?.stats().await
    }

    async fn wait_init(&self, task: &Arc<Task>) -> Result<ExitInfo> {
        let mut rx = task.exit.subscribe();
        if let Some(e) = *rx.borrow_and_update() {
            return Ok(e);
        }
        let from_watch = async {
            match rx.wait_for(Option::is_some).await {
                Ok(v) => v.ok_or_else(|| Error::Internal("exit watch empty".into())),
                Err(_) => Err(Error::TaskNotFound {
                    namespace: task.namespace.clone(),
                    id: task.id.clone(),
                }),
            }
        };
        tokio::pin!(from_watch);
        let Some(shim) = task.shim() else {
            return from_watch.await;
        };
        tokio::select! {
            r = shim.wait("") => match r {
                Ok(w) => {
                    let exit = exit_from(task.record().pid, w.exit_status, w.exited_at.as_ref());
                    task.note_exit(exit);
                    Ok(exit)
                }
                // The shim went away while we waited: its cleanup records the status.
                Err(e) if e.kind() == ErrorKind::Unavailable => from_watch.await,
                Err(e) => Err(e),
            },
            r = &mut from_watch => r,
        }
    }

    /// Blocks until the init or an exec exits.
    pub async fn wait(&self, ns: &str, id: &str, exec_id: &str) -> Result<ExitInfo> {
        let task = self.task(ns, id).await?;
        if exec_id.is_empty() {
            return self.wait_init(&task).await;
        }
        let w = Self::live_shim(&task)?.wait(exec_id).await?;
        Ok(exit_from(0, w.exit_status, w.exited_at.as_ref()))
    }

    /// Proxies an attach stream to the shim.
    pub async fn attach<S>(
        &self,
        ns: &str,
        id: &str,
        outbound: S,
    ) -> Result<shim_manager::AttachStream>
    where
        S: tokio_stream::Stream<Item = types::AttachRequest> + Send + 'static,
    {
        let task = self.task(ns, id).await?;
        Self::live_shim(&task)?.attach(outbound).await
    }

    /// Stops every event forwarder (shims keep running).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }
}
