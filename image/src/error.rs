//! Errors of the image store, in kinds the engine maps to Docker's status codes.

/// An image store error. The engine maps kinds to HTTP status codes: `NotFound` 404,
/// `Conflict` 409, `InvalidArgument` 400, `Internal` 500; the text is Docker's message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `No such image: <ref>` and the like.
    #[error("{0}")]
    NotFound(String),
    /// e.g. `conflict: unable to remove repository reference "x" (must force) - container
    /// <id> is using its referenced image <id>`.
    #[error("{0}")]
    Conflict(String),
    /// Bad references, bad archives, digest mismatches.
    #[error("{0}")]
    InvalidArgument(String),
    /// Disk errors and anything unexpected.
    #[error("{0}")]
    Internal(String),
}

/// Result with the store's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
