//! The builder's errors. Each one's text is what dockerd's classic builder says, so the
//! engine can pass it to clients unchanged.

/// A build error.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile does not parse (`dockerfile parse error line N: ...`): answered before
    /// any step runs.
    #[error("{0}")]
    Parse(String),
    /// A request the builder refuses before it starts (unknown target).
    #[error("{0}")]
    Request(String),
    /// A context the builder cannot use (no Dockerfile, a broken tar): refused before it
    /// starts, as the daemon's fault in dockerd's words (500).
    #[error("{0}")]
    Context(String),
    /// A step failed; `code` is a failing RUN's exit code.
    #[error("{message}")]
    Step { message: String, code: Option<i64> },
    /// Bad input met while a step runs (a substitution, a flag value).
    #[error("{0}")]
    Invalid(String),
    /// The engine failed.
    #[error("{0}")]
    Backend(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl BuildError {
    /// A step's failure without an exit code (a RUN's carries its code).
    pub fn step(message: impl Into<String>) -> BuildError {
        BuildError::Step {
            message: message.into(),
            code: None,
        }
    }

    /// Whether the error comes before the build starts (an HTTP error, not a stream message).
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            BuildError::Parse(_) | BuildError::Request(_) | BuildError::Context(_)
        )
    }

    /// A failing RUN's exit code.
    pub fn code(&self) -> Option<i64> {
        match self {
            BuildError::Step { code, .. } => *code,
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, BuildError>;
