//! Version service.

use berth_proto::supervisor::v1::version_server::Version;
use berth_proto::supervisor::v1::VersionResponse;
use tonic::{Request, Response, Status};

/// Serves `berth.supervisor.v1.Version`.
#[derive(Debug)]
pub struct VersionApi;

#[tonic::async_trait]
impl Version for VersionApi {
    async fn version(&self, _: Request<()>) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: option_env!("BERTH_REVISION")
                .unwrap_or("unknown")
                .to_string(),
        }))
    }
}
