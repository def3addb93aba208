//! Namespaces service.

use std::sync::Arc;

use berth_proto::supervisor::v1 as pb;
use berth_proto::supervisor::v1::namespaces_server::Namespaces;
use tonic::{Request, Response, Status};

use crate::containers::ContainerService;
use crate::model::Namespace;

/// Serves `berth.supervisor.v1.Namespaces`.
#[derive(Debug)]
pub struct NamespacesApi {
    /// The domain.
    pub containers: Arc<ContainerService>,
}

fn to_pb(ns: Namespace) -> pb::Namespace {
    pb::Namespace {
        name: ns.name,
        labels: ns.labels.into_iter().collect(),
    }
}

#[tonic::async_trait]
impl Namespaces for NamespacesApi {
    #[tracing::instrument(skip_all, fields(rpc = "Namespaces.Create", namespace = %req.get_ref().name))]
    async fn create(
        &self,
        req: Request<pb::CreateNamespaceRequest>,
    ) -> Result<Response<pb::Namespace>, Status> {
        let r = req.into_inner();
        let ns = self
            .containers
            .create_namespace(&r.name, r.labels.into_iter().collect())
            .await?;
        Ok(Response::new(to_pb(ns)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Namespaces.List"))]
    async fn list(
        &self,
        _: Request<pb::ListNamespacesRequest>,
    ) -> Result<Response<pb::ListNamespacesResponse>, Status> {
        let namespaces = self.containers.list_namespaces().await;
        Ok(Response::new(pb::ListNamespacesResponse {
            namespaces: namespaces.into_iter().map(to_pb).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Namespaces.Remove", namespace = %req.get_ref().name))]
    async fn remove(
        &self,
        req: Request<pb::RemoveNamespaceRequest>,
    ) -> Result<Response<()>, Status> {
        self.containers
            .remove_namespace(&req.get_ref().name)
            .await?;
        Ok(Response::new(()))
    }
}
