//! Builds: berthd's side of [`berth_builder::Backend`]. RUN steps are real containers of
//! the engine (created, attached before their start, waited for, committed, removed as
//! dockerd's classic builder does); COPY and ADD write into a created container's rootfs
//! inside its root; commits go to the image store with the step's cache key.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_builder::{BuildError, CommitRequest, ImageInfo, Message, Output};
use berth_proto::types::v1 as types;
use berth_registry::AuthConfig;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::container::archive::{ArchiveError, Root};
use crate::container::RootfsLease;
use crate::error::ApiError;
use crate::Engine;

type Result<T> = std::result::Result<T, BuildError>;

fn backend_error(e: ApiError) -> BuildError {
    BuildError::Backend(e.message.clone())
}

fn blocking_error(e: tokio::task::JoinError) -> BuildError {
    BuildError::Backend(format!("build worker failed: {e}"))
}

/// A build's engine side: its containers' settings, leases and scratch files.
pub struct EngineBackend {
    engine: Arc<Engine>,
    /// HostConfig of RUN containers (`--network`, `--memory`, `--cpu-*`, ...).
    host_config: Value,
    /// Registry credentials by registry host (`X-Registry-Config`).
    auths: HashMap<String, AuthConfig>,
    scratch: PathBuf,
    /// Rootfs leases of build containers (COPY targets and COPY --from sources).
    leases: Mutex<HashMap<String, RootfsLease>>,
    /// Containers of `scratch`: plain directories.
    dirs: Mutex<HashMap<String, PathBuf>>,
    /// Build containers that ran (RUN): their upper dirs hold the runtime's mount points,
    /// so they are committed through a tar; the others' upper dirs become the layer.
    started: Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for EngineBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBackend")
            .field("scratch", &self.scratch)
            .finish()
    }
}

const SCRATCH_PREFIX: &str = "scratch-";

impl EngineBackend {
    pub fn new(
        engine: Arc<Engine>,
        host_config: Value,
        auths: HashMap<String, AuthConfig>,
        scratch: PathBuf,
    ) -> EngineBackend {
        EngineBackend {
            engine,
            host_config,
            auths,
            scratch,
            leases: Mutex::default(),
            dirs: Mutex::default(),
            started: Mutex::default(),
        }
    }

    fn dir_of(&self, container: &str) -> Option<PathBuf> {
        self.dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(container)
            .cloned()
    }

    /// Runs `f` on the container's filesystem root (blocking; leased on first use).
    async fn with_root<T: Send + 'static>(
        &self,
        container: &str,
        f: impl FnOnce(&Root) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let path = self.root_path(container).await?;
        tokio::task::spawn_blocking(move || f(&Root::open(&path)?))
            .await
            .map_err(blocking_error)?
    }

    /// Where a build container's filesystem is: its directory (scratch) or its leased rootfs.
    async fn root_path(&self, container: &str) -> Result<PathBuf> {
        match self.dir_of(container) {
            Some(d) => Ok(d),
            None => self.lease(container).await,
        }
    }

    /// The mounted rootfs of a build container, leased until it is removed.
    async fn lease(&self, container: &str) -> Result<PathBuf> {
        if let Some(l) = self
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(container)
        {
            return l
                .path()
                .map(Path::to_path_buf)
                .ok_or_else(|| BuildError::Backend("the build container is running".into()));
        }
        let rec = self.engine.find(container).map_err(backend_error)?;
        let e = self.engine.clone();
        let lease = tokio::task::spawn_blocking(move || e.lease_rootfs(&rec))
            .await
            .map_err(blocking_error)?
            .map_err(backend_error)?;
        let path = lease
            .path()
            .map(Path::to_path_buf)
            .ok_or_else(|| BuildError::Backend("the build container is running".into()))?;
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(container.to_string(), lease);
        Ok(path)
    }

    fn release(&self, container: &str) {
        let lease = self
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(container);
        drop(lease);
    }

    fn auth_for(&self, name: &str) -> AuthConfig {
        let host = berth_registry::Reference::parse(name)
            .map(|r| r.domain.clone())
            .unwrap_or_default();
        self.auths
            .iter()
            .find(|(k, _)| {
                let k = k
                    .trim_start_matches("https://")
                    .trim_start_matches("http://");
                let k = k.split('/').next().unwrap_or(k);
                k == host || (host == "docker.io" && k.contains("index.docker.io"))
            })
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

fn info(img: berth_image::Image) -> ImageInfo {
    ImageInfo {
        id: img.id,
        config: img.raw_config,
    }
}

/// Tars an overlay upper directory (OCI whiteouts) into `consume` through a pipe; the
/// consumer's result and the writer's.
pub(crate) fn tar_layer_piped<T>(
    root: Root,
    consume: impl FnOnce(&mut dyn Read) -> T,
) -> std::io::Result<(T, std::result::Result<(), ArchiveError>)> {
    let (mut reader, writer) = std::io::pipe()?;
    let writing = std::thread::spawn(move || {
        let w = std::io::BufWriter::with_capacity(256 * 1024, writer);
        root.tar_layer(w)
    });
    let out = consume(&mut reader);
    drop(reader);
    let written = writing
        .join()
        .unwrap_or_else(|_| Err(ArchiveError::Invalid("the layer writer panicked".into())));
    Ok((out, written))
}

impl berth_builder::Backend for EngineBackend {
    async fn image(&self, name: &str, pull: bool, out: &Output) -> Result<ImageInfo> {
        if !pull {
            if let Ok(img) = self.engine.images.get(name) {
                return Ok(info(img));
            }
        }
        // One tag: a name without one means `latest` (an empty tag would pull every tag).
        let reference = berth_registry::Reference::parse(name)
            .map(|r| r.with_default_tag().familiar_string())
            .map_err(|x| BuildError::step(x.to_string()))?;
        let stream = self
            .engine
            .registry
            .pull(&reference, "", "", self.auth_for(name), {
                let e = self.engine.clone();
                move |ev| e.emit_image_event(ev.action, &ev.image, &ev.name)
            })
            .await
            .map_err(|x| BuildError::step(x.to_string()))?;
        for v in stream.head {
            let _ = out.0.send(Message::Raw(v));
        }
        let mut rest = stream.rest;
        while let Some(m) = rest.recv().await {
            match m {
                crate::registry::Msg::Progress(v) => {
                    let _ = out.0.send(Message::Raw(v));
                }
                crate::registry::Msg::Done(Ok(())) => break,
                crate::registry::Msg::Done(Err(m)) => return Err(BuildError::step(m)),
            }
        }
        self.engine
            .images
            .get(&reference)
            .map(info)
            .map_err(|x| BuildError::step(x.to_string()))
    }

    async fn create(&self, image: &str, config: Value) -> Result<String> {
        if image.is_empty() {
            // `FROM scratch`: a plain directory stands for the container.
            let id = format!("{SCRATCH_PREFIX}{}", crate::container::new_id());
            let dir = self.scratch.join(&id);
            std::fs::create_dir_all(&dir)?;
            self.dirs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.clone(), dir);
            return Ok(id);
        }
        let mut body = match config {
            Value::Object(o) => o,
            _ => Default::default(),
        };
        body.insert("Image".into(), json!(image));
        body.insert("AttachStdout".into(), json!(true));
        body.insert("AttachStderr".into(), json!(true));
        body.insert("HostConfig".into(), self.host_config.clone());
        let e = self.engine.clone();
        let (rec, _) = tokio::task::spawn_blocking(move || e.create(None, Value::Object(body)))
            .await
            .map_err(blocking_error)?
            .map_err(backend_error)?;
        Ok(rec.id)
    }

    async fn run(&self, container: &str, out: &Output) -> Result<i64> {
        if self.dir_of(container).is_some() {
            return Err(BuildError::Step {
                message: "OCI runtime create failed: runc create failed: unable to start container process: exec: \"/bin/sh\": stat /bin/sh: no such file or directory: unknown".into(),
                code: Some(127),
            });
        }
        let e = &self.engine;
        let rec = e.find(container).map_err(backend_error)?;
        let exits = rec.exits;
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(container.to_string());
        e.attach_started(container);
        e.attach_pending(container, true);
        let starting = {
            let e = e.clone();
            let id = container.to_string();
            tokio::spawn(async move { e.start(&id).await })
        };
        let ran = e
            .wait_for(container, None, |r| r.running() || r.exits > exits)
            .await
            .is_some_and(|r| r.running());
        let mut pumped = Ok(());
        if ran {
            pumped = self.pump(container, out).await;
        } else {
            e.attach_pending(container, false);
        }
        e.attach_ended(container);
        let started = starting
            .await
            .map_err(|x| BuildError::Backend(x.to_string()))?;
        if let Err(err) = started {
            return Err(BuildError::step(err.message.clone()));
        }
        pumped?;
        let done = e
            .wait_for(container, None, |r| !r.running() && r.exits > exits)
            .await
            .ok_or_else(|| BuildError::Backend("the build container vanished".into()))?;
        Ok(done.state.exit_code)
    }

    async fn copy_into(
        &self,
        container: &str,
        dest: &str,
        tar: Box<dyn Read + Send>,
    ) -> Result<()> {
        let dest = dest.to_string();
        self.with_root(container, move |root| {
            root.make_dir(&dest)?;
            root.extract(&dest, tar, true, false).map_err(|x| match x {
                ArchiveError::NotFound => BuildError::step(format!(
                    "failed to copy files: {dest}: no such file or directory"
                )),
                ArchiveError::Invalid(m) => BuildError::step(format!("failed to copy files: {m}")),
                ArchiveError::Io(e) => BuildError::Io(e),
            })
        })
        .await
    }

    async fn stat(&self, container: &str, path: &str) -> Result<Option<bool>> {
        let path = path.to_string();
        self.with_root(container, move |root| match root.stat(&path) {
            Ok(s) => Ok(Some(s.is_dir())),
            Err(ArchiveError::NotFound) => Ok(None),
            Err(ArchiveError::Io(e)) => Err(BuildError::Io(e)),
            Err(ArchiveError::Invalid(m)) => Err(BuildError::Backend(m)),
        })
        .await
    }

    async fn view(&self, container: &str) -> Result<PathBuf> {
        self.root_path(container).await
    }

    async fn lookup_owner(&self, container: &str, user: &str) -> Result<(u32, u32)> {
        let numeric = |s: &str| s.parse::<u32>().ok();
        let (u, g) = user.split_once(':').unwrap_or((user, ""));
        if let (Some(uid), true) = (numeric(u), g.is_empty() || numeric(g).is_some()) {
            return Ok((uid, numeric(g).unwrap_or(uid)));
        }
        let bad = |m: String| {
            BuildError::step(format!(
                "unable to convert uid/gid chown string to host mapping: {m}"
            ))
        };
        if self.dir_of(container).is_some() {
            return Err(bad(format!(
                "can't find uid for user {u}: no such file or directory"
            )));
        }
        let rec = self.engine.find(container).map_err(backend_error)?;
        let layers = self
            .engine
            .images
            .image_layers(&rec.image_id, &rec.id)
            .map_err(|x| bad(x.to_string()))?;
        let spec = if g.is_empty() {
            u.to_string()
        } else {
            format!("{u}:{g}")
        };
        let user = crate::container::resolve_user(&layers, &rec, &spec)
            .map_err(|x| bad(x.message.clone()))?;
        Ok((user.uid, user.gid))
    }

    async fn commit(&self, req: CommitRequest) -> Result<String> {
        let store = self.engine.images.clone();
        let mut opts = berth_image::BuildCommit {
            parent: req.parent.clone(),
            parent_config: req.parent_config.clone(),
            config: req.config.clone(),
            created_by: req.created_by.clone(),
            cache_key: req.cache_key.clone(),
            container: String::new(),
        };
        let Some(c) = req.container else {
            let layer = req.layer.clone();
            let img = tokio::task::spawn_blocking(move || {
                store.build_commit(layer.map(berth_image::LayerSource::Existing), &opts)
            })
            .await
            .map_err(blocking_error)?
            .map_err(|x| BuildError::Backend(x.to_string()))?;
            return Ok(img.id);
        };
        let ran = self
            .started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&c);
        let dir = match self.dir_of(&c) {
            Some(d) => d,
            None => {
                opts.container = c.clone();
                self.release(&c);
                self.engine.images.rootfs_upper(&c)
            }
        };
        let img = tokio::task::spawn_blocking(move || -> Result<berth_image::Image> {
            let root = Root::open(&dir)?;
            let (img, written) = tar_layer_piped(root, |r: &mut dyn Read| {
                let source = if ran {
                    berth_image::LayerSource::Tar(r)
                } else {
                    // Never ran: its upper dir holds just the step's files, in the store's
                    // own form; it becomes the layer instead of being unpacked again.
                    berth_image::LayerSource::Dir { dir: &dir, tar: r }
                };
                store.build_commit(Some(source), &opts)
            })?;
            let img = img.map_err(|x| BuildError::Backend(x.to_string()))?;
            if let Err(err) = written {
                let _ = store.remove(&img.id, true, true, &|_| false);
                return Err(BuildError::Backend(format!("write the layer: {err:?}")));
            }
            Ok(img)
        })
        .await
        .map_err(blocking_error)??;
        Ok(img.id)
    }

    async fn remove(&self, container: &str) {
        self.release(container);
        let dir = self
            .dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(container);
        if let Some(d) = dir {
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(d)).await;
            return;
        }
        if let Err(err) = self.engine.remove_with_volumes(container, true, true).await {
            tracing::warn!(container_id = %container, error = %err.message, "remove build container");
        }
    }

    async fn cached(&self, parent: &str, key: &str) -> Option<ImageInfo> {
        let store = self.engine.images.clone();
        let (p, k) = (parent.to_string(), key.to_string());
        tokio::task::spawn_blocking(move || {
            let id = store.cached(&p, &k)?;
            store.get(&id).ok().map(info)
        })
        .await
        .ok()
        .flatten()
    }

    async fn get(&self, id: &str) -> Result<ImageInfo> {
        self.engine
            .images
            .get(id)
            .map(info)
            .map_err(|x| BuildError::Backend(x.to_string()))
    }

    async fn tag(&self, id: &str, reference: &str) -> Result<()> {
        self.engine
            .images
            .tag(id, reference)
            .map_err(|x| BuildError::Backend(x.to_string()))?;
        self.engine.emit_image_event("tag", id, reference);
        Ok(())
    }

    fn scratch_dir(&self) -> PathBuf {
        self.scratch.clone()
    }
}

impl EngineBackend {
    /// Streams a started build container's output (subscribed before its process runs).
    async fn pump(&self, container: &str, out: &Output) -> Result<()> {
        let e = &self.engine;
        let (req_tx, req_rx) = mpsc::channel::<types::AttachRequest>(4);
        let _ = req_tx
            .send(types::AttachRequest {
                msg: Some(types::attach_request::Msg::Open(types::AttachOpen {
                    namespace: e.sup.namespace.clone(),
                    container_id: container.to_string(),
                    exec_id: String::new(),
                    stdin: false,
                    stdout: true,
                    stderr: true,
                    replay: false,
                    log_records: false,
                })),
            })
            .await;
        let attached = e.sup.tasks().attach(ReceiverStream::new(req_rx)).await;
        e.attach_pending(container, false);
        let mut stream = attached
            .map_err(|s| BuildError::Backend(format!("attach: {}", s.message())))?
            .into_inner();
        while let Ok(Some(chunk)) = stream.message().await {
            let text = String::from_utf8_lossy(&chunk.data).into_owned();
            if chunk.stream == types::StdStream::Stderr as i32 {
                out.stderr(text);
            } else {
                out.stream(text);
            }
            e.attach_progress(container);
        }
        drop(req_tx);
        Ok(())
    }
}
