//! The shim's error type and its one mapping to gRPC statuses.

use std::io;
use std::path::PathBuf;

use tonic::{Code, Status};

/// Everything a Task RPC can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// No such process (init not created yet, unknown exec id, already exited).
    #[error("{0}")]
    NotFound(String),
    /// The init or an exec with that id exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request itself is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The process is not in a state that allows the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The runtime command failed; `message` is its own error, verbatim.
    #[error("{message}")]
    Runtime {
        /// The runtime verb (`create`, `start`, ...).
        verb: &'static str,
        /// The runtime's last error message from its `--log`, or its stderr.
        message: String,
    },
    /// The runtime command did not finish in time and was killed.
    #[error("runtime {verb} timed out after {secs} s")]
    Timeout {
        /// The runtime verb.
        verb: &'static str,
        /// The limit that was exceeded.
        secs: u64,
    },
    /// A file or system call of the shim itself failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done (`create stdin fifo`, `read pid file`).
        what: &'static str,
        /// The file involved (may be empty).
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl ShimError {
    /// An [`ShimError::Io`] for `what` on `path`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ShimError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// The gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            ShimError::NotFound(_) => Code::NotFound,
            ShimError::AlreadyExists(_) => Code::AlreadyExists,
            ShimError::InvalidArgument(_) => Code::InvalidArgument,
            ShimError::FailedPrecondition(_) => Code::FailedPrecondition,
            ShimError::Runtime { .. } => Code::Unknown,
            ShimError::Timeout { .. } => Code::DeadlineExceeded,
            ShimError::Io { .. } => Code::Internal,
        }
    }
}

impl From<ShimError> for Status {
    fn from(e: ShimError) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

/// Result of shim operations.
pub type Result<T, E = ShimError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_errors_keep_the_message_verbatim() {
        let e = ShimError::Runtime {
            verb: "start",
            message: "container not running".into(),
        };
        let s: Status = e.into();
        assert_eq!(s.message(), "container not running");
        assert_eq!(s.code(), Code::Unknown);
        let s: Status = ShimError::NotFound("exec x not found".into()).into();
        assert_eq!(s.code(), Code::NotFound);
    }
}
