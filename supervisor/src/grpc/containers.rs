//! Containers service.

use std::sync::Arc;

use berth_proto::supervisor::v1 as pb;
use berth_proto::supervisor::v1::containers_server::Containers;
use berth_proto::types::v1 as types;
use tonic::{Request, Response, Status};

use crate::containers::{ContainerService, UpdateMask};
use crate::error::Error;
use crate::model::{Container, Mount, RuntimeConfig};
use crate::task::TaskManager;
use crate::uds::{from_timestamp, to_timestamp};

/// Serves `berth.supervisor.v1.Containers`.
#[derive(Debug)]
pub struct ContainersApi {
    /// Metadata.
    pub containers: Arc<ContainerService>,
    /// Tasks (a container with a task cannot be deleted).
    pub tasks: Arc<TaskManager>,
}

/// Proto to domain; the spec must be UTF-8 (it is validated as JSON by the domain).
pub fn from_pb(c: pb::Container) -> Result<Container, Error> {
    let spec = String::from_utf8(c.spec).map_err(|_| Error::InvalidSpec {
        id: c.id.clone(),
        reason: "spec is not UTF-8 JSON".into(),
    })?;
    let runtime = c.runtime.unwrap_or_default();
    Ok(Container {
        id: c.id,
        labels: c.labels.into_iter().collect(),
        image: c.image,
        runtime: RuntimeConfig {
            binary: runtime.binary,
            root: runtime.root,
            systemd_cgroup: runtime.systemd_cgroup,
        },
        spec,
        rootfs: c
            .rootfs
            .into_iter()
            .map(|m| Mount {
                kind: m.r#type,
                source: m.source,
                target: m.target,
                options: m.options,
            })
            .collect(),
        created_at: from_timestamp(c.created_at.as_ref()),
        updated_at: from_timestamp(c.updated_at.as_ref()),
        extensions: c.extensions.into_iter().collect(),
    })
}

/// Domain to proto.
pub fn to_pb(c: Container) -> pb::Container {
    pb::Container {
        id: c.id,
        labels: c.labels.into_iter().collect(),
        image: c.image,
        runtime: Some(pb::Runtime {
            binary: c.runtime.binary,
            root: c.runtime.root,
            systemd_cgroup: c.runtime.systemd_cgroup,
        }),
        spec: c.spec.into_bytes(),
        rootfs: c
            .rootfs
            .into_iter()
            .map(|m| types::Mount {
                r#type: m.kind,
                source: m.source,
                target: m.target,
                options: m.options,
            })
            .collect(),
        created_at: Some(to_timestamp(c.created_at)),
        updated_at: Some(to_timestamp(c.updated_at)),
        extensions: c.extensions.into_iter().collect(),
    }
}

fn required(c: Option<pb::Container>) -> Result<pb::Container, Error> {
    c.ok_or_else(|| Error::InvalidArgument("container is required".into()))
}

#[tonic::async_trait]
impl Containers for ContainersApi {
    #[tracing::instrument(skip_all, fields(rpc = "Containers.Create", namespace = %req.get_ref().namespace,
        container_id = %req.get_ref().container.as_ref().map(|c| c.id.as_str()).unwrap_or("")))]
    async fn create(
        &self,
        req: Request<pb::CreateContainerRequest>,
    ) -> Result<Response<pb::ContainerResponse>, Status> {
        let r = req.into_inner();
        let c = from_pb(required(r.container)?)?;
        let c = self.containers.create(&r.namespace, c).await?;
        Ok(Response::new(pb::ContainerResponse {
            container: Some(to_pb(c)),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Containers.Get", namespace = %req.get_ref().namespace, container_id = %req.get_ref().id))]
    async fn get(
        &self,
        req: Request<pb::GetContainerRequest>,
    ) -> Result<Response<pb::ContainerResponse>, Status> {
        let r = req.into_inner();
        let c = self.containers.get(&r.namespace, &r.id).await?;
        Ok(Response::new(pb::ContainerResponse {
            container: Some(to_pb(c)),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Containers.List", namespace = %req.get_ref().namespace))]
    async fn list(
        &self,
        req: Request<pb::ListContainersRequest>,
    ) -> Result<Response<pb::ListContainersResponse>, Status> {
        let r = req.into_inner();
        let filter = r.label_filter.into_iter().collect();
        let list = self.containers.list(&r.namespace, &filter).await?;
        Ok(Response::new(pb::ListContainersResponse {
            containers: list.into_iter().map(to_pb).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Containers.Update", namespace = %req.get_ref().namespace,
        container_id = %req.get_ref().container.as_ref().map(|c| c.id.as_str()).unwrap_or("")))]
    async fn update(
        &self,
        req: Request<pb::UpdateContainerRequest>,
    ) -> Result<Response<pb::ContainerResponse>, Status> {
        let r = req.into_inner();
        let mask = UpdateMask::parse(&r.update_mask)?;
        let mut pc = required(r.container)?;
        if !mask.spec {
            pc.spec.clear();
        }
        let c = from_pb(pc)?;
        let c = self.containers.update(&r.namespace, c, mask).await?;
        Ok(Response::new(pb::ContainerResponse {
            container: Some(to_pb(c)),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Containers.Delete", namespace = %req.get_ref().namespace, container_id = %req.get_ref().id))]
    async fn delete(
        &self,
        req: Request<pb::DeleteContainerRequest>,
    ) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        self.tasks.delete_container(&r.namespace, &r.id).await?;
        Ok(Response::new(()))
    }
}
