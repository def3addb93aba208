//! The one place error kinds become gRPC codes (and shim codes become kinds).

use tonic::{Code, Status};

use crate::error::{Error, ErrorKind};

/// The gRPC code of an error kind.
pub fn code_of(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorKind::Internal => Code::Internal,
    }
}

/// The kind of a code received from a shim.
pub fn kind_of(code: Code) -> ErrorKind {
    match code {
        Code::NotFound => ErrorKind::NotFound,
        Code::AlreadyExists => ErrorKind::AlreadyExists,
        Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidArgument,
        Code::FailedPrecondition | Code::Aborted => ErrorKind::FailedPrecondition,
        Code::Unavailable | Code::Cancelled => ErrorKind::Unavailable,
        Code::DeadlineExceeded => ErrorKind::DeadlineExceeded,
        _ => ErrorKind::Internal,
    }
}

/// Turns an error into the status a client sees, logging it once (here, at the edge).
pub fn to_status(err: Error) -> Status {
    let code = code_of(err.kind());
    match code {
        Code::Internal | Code::Unavailable | Code::DeadlineExceeded => {
            tracing::error!(error = %err, "request failed")
        }
        _ => tracing::info!(error = %err, code = ?code, "request refused"),
    }
    Status::new(code, err.to_string())
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        to_status(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_codes_and_back() {
        let kinds = [
            ErrorKind::NotFound,
            ErrorKind::AlreadyExists,
            ErrorKind::InvalidArgument,
            ErrorKind::FailedPrecondition,
            ErrorKind::Unavailable,
            ErrorKind::DeadlineExceeded,
            ErrorKind::Internal,
        ];
        for k in kinds {
            assert_eq!(kind_of(code_of(k)), k);
        }
    }

    #[test]
    fn errors_become_statuses_with_their_message() {
        let s = to_status(Error::ContainerNotFound {
            namespace: "ns".into(),
            id: "c1".into(),
        });
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "container c1 not found in namespace ns");
        let s = to_status(Error::InvalidSpec {
            id: "c1".into(),
            reason: "expected value".into(),
        });
        assert_eq!(s.code(), Code::InvalidArgument);
        let s = to_status(Error::NamespaceNotEmpty("ns".into()));
        assert_eq!(s.code(), Code::FailedPrecondition);
        let s = to_status(Error::ShimUnavailable {
            id: "c".into(),
            reason: "gone".into(),
        });
        assert_eq!(s.code(), Code::Unavailable);
        let s = to_status(Error::Shim {
            id: "c".into(),
            kind: kind_of(Code::FailedPrecondition),
            message: "process is running".into(),
        });
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(s.message(), "shim of c: process is running");
    }
}
