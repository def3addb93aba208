//! The gRPC edge: one file per service of `berth.supervisor.v1`; handlers only translate
//! between proto messages and the domain.

pub mod containers;
pub mod events;
pub mod namespaces;
pub mod status;
pub mod tasks;
pub mod version;

use std::sync::Arc;

use berth_proto::supervisor::v1::containers_server::ContainersServer;
use berth_proto::supervisor::v1::events_server::EventsServer;
use berth_proto::supervisor::v1::namespaces_server::NamespacesServer;
use berth_proto::supervisor::v1::tasks_server::TasksServer;
use berth_proto::supervisor::v1::version_server::VersionServer;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Router;
use tonic::transport::Server;

use crate::containers::ContainerService;
use crate::events::EventBus;
use crate::task::TaskManager;

/// Everything the handlers need.
#[derive(Debug, Clone)]
pub struct Services {
    /// Namespaces and containers.
    pub containers: Arc<ContainerService>,
    /// Tasks.
    pub tasks: Arc<TaskManager>,
    /// Events.
    pub events: EventBus,
    /// Cancelled when the supervisor shuts down.
    pub shutdown: CancellationToken,
}

/// A tonic router serving every service of the supervisor API.
pub fn router(services: Services) -> Router {
    Server::builder()
        .add_service(VersionServer::new(version::VersionApi))
        .add_service(NamespacesServer::new(namespaces::NamespacesApi {
            containers: Arc::clone(&services.containers),
        }))
        .add_service(ContainersServer::new(containers::ContainersApi {
            containers: Arc::clone(&services.containers),
            tasks: Arc::clone(&services.tasks),
        }))
        .add_service(TasksServer::new(tasks::TasksApi {
            tasks: Arc::clone(&services.tasks),
        }))
        .add_service(EventsServer::new(events::EventsApi {
            events: services.events.clone(),
            shutdown: services.shutdown.clone(),
        }))
}
