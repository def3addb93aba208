//! Errors of the registry client, with the kinds the engine maps to Docker's status codes.

use std::path::PathBuf;

/// What kind of failure an [`Error`] is; the engine maps each kind to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 404: unknown manifest, tag, repository, or no manifest for the platform.
    NotFound,
    /// 401: the registry refused the credentials (`login`), or needs some.
    Unauthorized,
    /// 400: bad reference, bad `X-Registry-Auth`, bad platform string.
    InvalidArgument,
    /// 500: the registry could not be reached or answered badly.
    Unavailable,
    /// 500: digest mismatches, disk errors, anything else.
    Internal,
}

impl ErrorKind {
    /// The HTTP status Docker answers with for this kind.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::NotFound => 404,
            ErrorKind::Unauthorized => 401,
            ErrorKind::InvalidArgument => 400,
            ErrorKind::Unavailable | ErrorKind::Internal => 500,
        }
    }
}

/// A registry client error. `Display` is Docker's message for the same failure where Docker
/// has one (`invalid reference format`, `manifest for x:y not found: manifest unknown: ...`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A reference that does not parse: `invalid reference format[: ...]`.
    #[error("{0}")]
    InvalidReference(String),
    /// Any other bad input from the caller (platform string, auth header, config file).
    #[error("{0}")]
    InvalidArgument(String),
    /// The registry has no such manifest or repository, or access was denied to it (Docker
    /// reports `pull access denied ...` as not found too).
    #[error("{0}")]
    NotFound(String),
    /// Credentials missing or refused.
    #[error("{0}")]
    Unauthorized(String),
    /// A blob's content does not match its digest (nothing is stored).
    #[error("{what} verification failed for digest {expected}: got {actual}")]
    DigestMismatch {
        /// `filesystem layer`, `image config`, `manifest`.
        what: &'static str,
        /// The digest the manifest or config promised.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A layer tarball tried to write outside its directory, or is otherwise unusable.
    #[error("unpack layer {digest}: {message}")]
    BadLayer {
        /// The layer's blob digest (or diff id when unpacking a local tar).
        digest: String,
        /// What was wrong.
        message: String,
    },
    /// The manifest or index uses something berth does not pull (schema 1, unknown media type).
    #[error("{0}")]
    Unsupported(String),
    /// Talking to the registry failed.
    #[error("{context}: {source}")]
    Registry {
        /// What was being done (`pull manifest 127.0.0.1:5000/x:y`).
        context: String,
        /// The distribution client's error.
        #[source]
        source: Box<oci_client::errors::OciDistributionError>,
    },
    /// Plain HTTP errors outside the distribution client (login checks).
    #[error("{context}: {source}")]
    Http {
        /// What was being done.
        context: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// A file operation failed.
    #[error("{what} {path}: {source}", path = path.display())]
    Io {
        /// What was being done (`write`, `create layer dir`).
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The image store refused or failed an operation.
    #[error("image store: {0}")]
    Store(String),
}

impl Error {
    /// The kind the engine maps to a status code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidReference(_) | Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Unauthorized(_) => ErrorKind::Unauthorized,
            Error::Registry { .. } | Error::Http { .. } => ErrorKind::Unavailable,
            Error::Unsupported(_) => ErrorKind::InvalidArgument,
            Error::DigestMismatch { .. }
            | Error::BadLayer { .. }
            | Error::Io { .. }
            | Error::Store(_) => ErrorKind::Internal,
        }
    }

    /// Shorthand for [`Error::Io`].
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// Shorthand for [`Error::Registry`].
    pub(crate) fn registry(
        context: impl Into<String>,
        source: oci_client::errors::OciDistributionError,
    ) -> Self {
        Error::Registry {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

/// Result with the registry client's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_docker_statuses() {
        assert_eq!(
            Error::InvalidReference("invalid reference format".into())
                .kind()
                .http_status(),
            400
        );
        assert_eq!(Error::NotFound("x".into()).kind().http_status(), 404);
        assert_eq!(Error::Unauthorized("x".into()).kind().http_status(), 401);
        let e = Error::DigestMismatch {
            what: "filesystem layer",
            expected: "sha256:aa".into(),
            actual: "sha256:bb".into(),
        };
        assert_eq!(e.kind().http_status(), 500);
        assert_eq!(
            e.to_string(),
            "filesystem layer verification failed for digest sha256:aa: got sha256:bb"
        );
    }
}
