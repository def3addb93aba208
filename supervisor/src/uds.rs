//! gRPC over unix sockets: the client connector (to shims, and for `ctl`) and time helpers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

/// Strips a `unix://` prefix from an address.
pub fn socket_path(address: &str) -> PathBuf {
    PathBuf::from(address.strip_prefix("unix://").unwrap_or(address))
}

/// Connects a gRPC channel to a unix socket, failing after `timeout`.
pub async fn connect(path: &Path, timeout: Duration) -> Result<Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    // The URI is required by the API but unused: the connector ignores it.
    Endpoint::from_static("http://[::1]:0")
        .connect_timeout(timeout)
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
}

/// chrono to protobuf time.
pub fn to_timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// protobuf to chrono time (the epoch if out of range).
pub fn from_timestamp(t: Option<&prost_types::Timestamp>) -> DateTime<Utc> {
    t.and_then(|t| Utc.timestamp_opt(t.seconds, t.nanos.max(0) as u32).single())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        let now = Utc::now();
        assert_eq!(from_timestamp(Some(&to_timestamp(now))), now);
        assert_eq!(from_timestamp(None), DateTime::<Utc>::default());
        assert_eq!(
            socket_path("unix:///run/x.sock"),
            PathBuf::from("/run/x.sock")
        );
        assert_eq!(socket_path("/run/x.sock"), PathBuf::from("/run/x.sock"));
    }
}
