//! What the builder needs from the engine: images, containers for RUN, COPY and WORKDIR,
//! commits, the cache index and tags. berthd implements it over its container service and
//! image store; the builder knows nothing of HTTP or the supervisor.

use std::future::Future;
use std::path::PathBuf;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::error::Result;

/// An image as the builder sees it.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// `sha256:...`, empty for `scratch`.
    pub id: String,
    /// The whole image config (`config`, `rootfs`, `history`, `os`, `architecture`).
    pub config: Value,
}

impl ImageInfo {
    /// The image's container config (`config`: Env, Cmd, ...).
    pub fn container_config(&self) -> Value {
        match &self.config["config"] {
            Value::Object(o) => Value::Object(o.clone()),
            _ => Value::Object(Default::default()),
        }
    }
}

/// What a build says as it goes, in dockerd's JSON stream terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Text for `{"stream": ...}`.
    Stream(String),
    /// A RUN's standard error (dockerd colours it).
    Stderr(String),
    /// The built image's id (`{"aux":{"ID":...}}`).
    Aux(String),
    /// A message passed through as it is (a pull's progress).
    Raw(Value),
}

/// Where messages go (dropped when the client is gone).
#[derive(Debug, Clone)]
pub struct Output(pub mpsc::UnboundedSender<Message>);

impl Output {
    pub fn stream(&self, s: impl Into<String>) {
        let _ = self.0.send(Message::Stream(s.into()));
    }
    pub fn stderr(&self, s: impl Into<String>) {
        let _ = self.0.send(Message::Stderr(s.into()));
    }
    pub fn aux(&self, id: impl Into<String>) {
        let _ = self.0.send(Message::Aux(id.into()));
    }
}

/// A new image: a step's result over `parent`.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    /// The parent image (empty for scratch).
    pub parent: String,
    /// The parent's whole config (for scratch: an empty one).
    pub parent_config: Value,
    /// The container whose changes become the new layer; none for a metadata step.
    pub container: Option<String>,
    /// A layer the engine holds already (a `--cache-from` image's), by diff id.
    pub layer: Option<String>,
    /// The new image's container config.
    pub config: Value,
    /// The history entry's `created_by` (and the `container_config.Cmd` it came from).
    pub created_by: String,
    /// The cache key the image is found by later.
    pub cache_key: String,
}

/// The engine's side of a build. Containers made here are the build's own: the builder
/// removes them with [`Backend::remove`].
pub trait Backend: Send + Sync {
    /// The image `name` names; pulled when missing, or always with `pull`.
    fn image(
        &self,
        name: &str,
        pull: bool,
        out: &Output,
    ) -> impl Future<Output = Result<ImageInfo>> + Send;

    /// Creates a container of `image` (empty for scratch) with a container `config` (Cmd,
    /// Env, User, WorkingDir...), not started.
    fn create(&self, image: &str, config: Value) -> impl Future<Output = Result<String>> + Send;

    /// Starts a created container, sends its output to `out` as it comes, and waits for it:
    /// its exit code.
    fn run(&self, container: &str, out: &Output) -> impl Future<Output = Result<i64>> + Send;

    /// Copies a tar stream into a created container's filesystem at `dest` (made first when
    /// missing), inside its root, symlinks resolved in it; owners as the tar says.
    fn copy_into(
        &self,
        container: &str,
        dest: &str,
        tar: Box<dyn std::io::Read + Send>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// What `path` is in a created container's filesystem: `Some(true)` a directory,
    /// `Some(false)` something else, `None` nothing.
    fn stat(
        &self,
        container: &str,
        path: &str,
    ) -> impl Future<Output = Result<Option<bool>>> + Send;

    /// A read-only view of a created container's filesystem, for reading another stage's or
    /// image's files (COPY --from); held until [`Backend::remove`].
    fn view(&self, container: &str) -> impl Future<Output = Result<PathBuf>> + Send;

    /// The uid and gid a `--chown` user or group names in a created container (by
    /// `/etc/passwd` and `/etc/group` when not numeric).
    fn lookup_owner(
        &self,
        container: &str,
        user: &str,
    ) -> impl Future<Output = Result<(u32, u32)>> + Send;

    /// Commits a step as a new image; its id.
    fn commit(&self, req: CommitRequest) -> impl Future<Output = Result<String>> + Send;

    /// Removes a build container.
    fn remove(&self, container: &str) -> impl Future<Output = ()> + Send;

    /// The image a step made before with this parent and key, when it is still there.
    fn cached(&self, parent: &str, key: &str) -> impl Future<Output = Option<ImageInfo>> + Send;

    /// An image by id (for cache hits and stage results).
    fn get(&self, id: &str) -> impl Future<Output = Result<ImageInfo>> + Send;

    /// Points a tag at an image.
    fn tag(&self, id: &str, reference: &str) -> impl Future<Output = Result<()>> + Send;

    /// The directory for the build's scratch files (downloads, tars).
    fn scratch_dir(&self) -> PathBuf;
}
