//! The supervisor's error type: every variant names the object it is about and has a kind.

use std::io;
use std::path::PathBuf;

/// What went wrong, independent of how an edge reports it (`grpc/status.rs` maps it once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such namespace, container, task or exec.
    NotFound,
    /// An object with that id already exists.
    AlreadyExists,
    /// The request itself is wrong (bad id, bad spec JSON).
    InvalidArgument,
    /// The object is in the wrong state for this operation.
    FailedPrecondition,
    /// A shim (or another process) could not be reached.
    Unavailable,
    /// A deadline passed.
    DeadlineExceeded,
    /// Anything else: I/O failures, bugs.
    Internal,
}

/// Errors of the supervisor's domain (store, containers, tasks, shims).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An id or name does not match `[A-Za-z0-9][A-Za-z0-9_.-]{0,127}`.
    #[error("invalid {what} {id:?}: must match [A-Za-z0-9][A-Za-z0-9_.-]{{0,127}}")]
    InvalidId {
        /// "container id", "namespace", "exec id".
        what: &'static str,
        /// The rejected value.
        id: String,
    },
    /// A request field is missing or malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The container's spec is not a valid OCI runtime spec.
    #[error("invalid spec for container {id}: {reason}")]
    InvalidSpec {
        /// Container id.
        id: String,
        /// The parser's message.
        reason: String,
    },
    /// No such namespace.
    #[error("namespace {0} not found")]
    NamespaceNotFound(String),
    /// Namespace already exists.
    #[error("namespace {0} already exists")]
    NamespaceExists(String),
    /// Namespace still holds containers.
    #[error("namespace {0} is not empty: it still has containers")]
    NamespaceNotEmpty(String),
    /// No such container.
    #[error("container {id} not found in namespace {namespace}")]
    ContainerNotFound {
        /// Namespace.
        namespace: String,
        /// Container id.
        id: String,
    },
    /// Container already exists.
    #[error("container {id} already exists in namespace {namespace}")]
    ContainerExists {
        /// Namespace.
        namespace: String,
        /// Container id.
        id: String,
    },
    /// The container has a task, so it cannot be deleted (or get a second one).
    #[error("container {id} in namespace {namespace} has a task; delete the task first")]
    ContainerHasTask {
        /// Namespace.
        namespace: String,
        /// Container id.
        id: String,
    },
    /// No task for the container.
    #[error("no task for container {id} in namespace {namespace}")]
    TaskNotFound {
        /// Namespace.
        namespace: String,
        /// Container id.
        id: String,
    },
    /// A task exists already.
    #[error("task for container {id} in namespace {namespace} already exists")]
    TaskExists {
        /// Namespace.
        namespace: String,
        /// Container id.
        id: String,
    },
    /// The operation does not fit the task's state.
    #[error("task {id}: {reason}")]
    TaskState {
        /// Container id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A field named in an update mask is unknown.
    #[error("unknown update_mask field {0:?} (known: labels, spec, image, runtime, extensions)")]
    UnknownField(String),
    /// The shim answered with an error; its code and message are kept.
    #[error("shim of {id}: {message}")]
    Shim {
        /// Container id.
        id: String,
        /// Kind derived from the shim's gRPC code.
        kind: ErrorKind,
        /// The shim's message, verbatim.
        message: String,
    },
    /// The shim could not be reached.
    #[error("shim of {id} unavailable: {reason}")]
    ShimUnavailable {
        /// Container id.
        id: String,
        /// Why.
        reason: String,
    },
    /// Starting the shim failed.
    #[error("start shim for {id}: {reason}")]
    ShimStart {
        /// Container id.
        id: String,
        /// Why (the shim's stderr when it said something).
        reason: String,
    },
    /// A call crossing a process boundary did not finish in time.
    #[error("{what}: timed out after {secs}s")]
    Timeout {
        /// What was being done.
        what: String,
        /// The limit.
        secs: u64,
    },
    /// Mounting or unmounting a rootfs failed.
    #[error("{op} {target}: {source}")]
    Mount {
        /// "mount" or "unmount".
        op: &'static str,
        /// Mount target.
        target: PathBuf,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// A file-system operation on the store or a bundle failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A stored record could not be (de)serialized.
    #[error("{op} {path}: {source}")]
    Json {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// Something that should not happen.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The kind the edges map to a status.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidId { .. }
            | Error::InvalidArgument(_)
            | Error::InvalidSpec { .. }
            | Error::UnknownField(_) => ErrorKind::InvalidArgument,
            Error::NamespaceNotFound(_)
            | Error::ContainerNotFound { .. }
            | Error::TaskNotFound { .. } => ErrorKind::NotFound,
            Error::NamespaceExists(_)
            | Error::ContainerExists { .. }
            | Error::TaskExists { .. } => ErrorKind::AlreadyExists,
            Error::NamespaceNotEmpty(_)
            | Error::ContainerHasTask { .. }
            | Error::TaskState { .. } => ErrorKind::FailedPrecondition,
            Error::Shim { kind, .. } => *kind,
            Error::ShimUnavailable { .. } => ErrorKind::Unavailable,
            Error::Timeout { .. } => ErrorKind::DeadlineExceeded,
            Error::ShimStart { .. }
            | Error::Mount { .. }
            | Error::Io { .. }
            | Error::Json { .. }
            | Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Result with the supervisor's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
