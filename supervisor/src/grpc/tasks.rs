//! Tasks service.

use std::pin::Pin;
use std::sync::Arc;

use berth_proto::supervisor::v1 as pb;
use berth_proto::supervisor::v1::tasks_server::Tasks;
use berth_proto::types::v1 as types;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::error::Error;
use crate::task::TaskManager;
use crate::uds::to_timestamp;

/// Serves `berth.supervisor.v1.Tasks`.
#[derive(Debug)]
pub struct TasksApi {
    /// The domain.
    pub tasks: Arc<TaskManager>,
}

type AttachStream = Pin<Box<dyn Stream<Item = Result<types::AttachResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Tasks for TasksApi {
    #[tracing::instrument(skip_all, fields(rpc = "Tasks.Create", namespace = %req.get_ref().namespace, container_id = %req.get_ref().container_id))]
    async fn create(
        &self,
        req: Request<pb::CreateTaskRequest>,
    ) -> Result<Response<pb::CreateTaskResponse>, Status> {
        let r = req.into_inner();
        let c = self
            .tasks
            .create(&r.namespace, &r.container_id, r.io)
            .await?;
        Ok(Response::new(pb::CreateTaskResponse {
            pid: c.pid,
            stdin_path: c.stdin_path,
            log_path: c.log_path,
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Tasks.Start", namespace = %req.get_ref().namespace, container_id = %req.get_ref().container_id, exec_id = %req.get_ref().exec_id))]
    async fn start(
        &self,
        req: Request<pb::StartTaskRequest>,
    ) -> Result<Response<pb::StartTaskResponse>, Status> {
        let r = req.into_inner();
        let pid = self
            .tasks
            .start(&r.namespace, &r.container_id, &r.exec_id)
            .await?;
        Ok(Response::new(pb::StartTaskResponse { pid }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Tasks.Delete", namespace = %req.get_ref().namespace, container_id = %req.get_ref().container_id, exec_id = %req.get_ref().exec_id))]
    async fn delete(
        &self,
        req: Request<pb::DeleteTaskRequest>,
    ) -> Result<Response<pb::DeleteTaskResponse>, Status> {
        let r = req.into_inner();
        let e = self
            .tasks
            .delete(&r.namespace, &r.container_id, &r.exec_id, r.force)
            .await?;
        Ok(Response::new(pb::DeleteTaskResponse {
            pid: e.pid,
            exit_status: e.exit_status,
            exited_at: Some(to_timestamp(e.exited_at)),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Tasks.Get", namespace = %req.get_ref().namespace, container_id = %req.get_ref().container_id, exec_id = %req.get_ref().exec_id))]
    async fn get(
        &self,
        req: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::GetTaskResponse>, Status> {
        let r = req.into_inner();
        let (process, shim_pid) = self
            .tasks
            .get(&r.namespace, &r.container_id, &r.exec_id)
            .await?;
        Ok(Response::new(pb::GetTaskResponse {
            process: Some(process),
            shim_pid,
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Tasks.List", namespace = %req.get_ref().namespace))]
    async fn list(
        &self,
        req: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let tasks = self.tasks.list(&req.get_ref().namespace).await?;
        Ok(Response::new(pb::ListTasksResponse { tasks }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Tasks.Kill", namespace = %req.get_ref().namespace, container_id = %req.get_ref().container_id, exec_id = %req.get_ref().exec_id))]
    async fn kill(&self, req: Request<pb::KillTaskRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        self.tasks
            .kill(&r.namespace, &r.container_id, &r.exec_id, r.signal, r.all)
            .await?;
        Ok(Response::new(()))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Tasks.Exec", namespace = %req.get_ref().namespace, container_id = %req.get_ref().container_id, exec_id = %req.get_ref().exec_id))]
    async fn exec(&self, req: Request<pb::ExecTaskRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        self.tasks
            .exec(&r.namespace, &r.container_id, &r.exec_id, r.spec, r.io)
            .await?;
        Ok(Response::new(()))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Tasks.ResizePty", namespace = %req.get_ref().namespace, container_id = %req.get_ref().container_id))]
    async fn resize_pty(&self, req: Request<pb::ResizePtyRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        self.tasks
            .resize_pty(&r.namespace, &r.container_id, &r.exec_id, r.width, r.height)
            .await?;
        Ok(Response::new(()))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Tasks.CloseIO", namespace = %req.get_ref().namespace, container_id = %req.get_ref().container_id))]
    async fn close_io(&self, req: Request<pb::CloseIoRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        self.tasks
            .close_io(&r.namespace, &r.container_id, &r.exec_id, r.stdin)
            .await?;
        Ok(Response::new(()))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Tasks.Pause", namespace = %req.get_ref().namespace, container_id = %req.get_ref().container_id))]
    async fn pause(&self, req: Request<pb::PauseTaskRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        self.tasks.pause(&r.namespace, &r.container_id).await?;
        Ok(Response::new(()))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Tasks.Resume", namespace = %req.get_ref().namespace, container_id = %req.get_ref().container_id))]
    async fn resume(&self, req: Request<pb::ResumeTaskRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        self.tasks.resume(&r.namespace, &r.container_id).await?;
        Ok(Response::new(()))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Tasks.ListPids", namespace = %req.get_ref().namespace, container_id = %req.get_ref().container_id))]
    async fn list_pids(
        &self,
        req: Request<pb::ListPidsRequest>,
    ) -> Result<Response<pb::ListPidsResponse>, Status> {
        let r = req.into_inner();
        let processes = self.tasks.pids(&r.namespace, &r.container_id).await?;
        Ok(Response::new(pb::ListPidsResponse { processes }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Tasks.Update", namespace = %req.get_ref().namespace, container_id = %req.get_ref().container_id))]
    async fn update(&self, req: Request<pb::UpdateTaskRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        self.tasks
            .update(&r.namespace, &r.container_id, r.resources)
            .await?;
        Ok(Response::new(()))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Tasks.Wait", namespace = %req.get_ref().namespace, container_id = %req.get_ref().container_id, exec_id = %req.get_ref().exec_id))]
    async fn wait(
        &self,
        req: Request<pb::WaitTaskRequest>,
    ) -> Result<Response<pb::WaitTaskResponse>, Status> {
        let r = req.into_inner();
        let e = self
            .tasks
            .wait(&r.namespace, &r.container_id, &r.exec_id)
            .await?;
        Ok(Response::new(pb::WaitTaskResponse {
            exit_status: e.exit_status,
            exited_at: Some(to_timestamp(e.exited_at)),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Tasks.Stats", namespace = %req.get_ref().namespace, container_id = %req.get_ref().container_id))]
    async fn stats(
        &self,
        req: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let r = req.into_inner();
        let stats = self.tasks.stats(&r.namespace, &r.container_id).await?;
        Ok(Response::new(pb::StatsResponse { stats }))
    }

    type AttachStream = AttachStream;

    #[tracing::instrument(skip_all, fields(rpc = "Tasks.Attach"))]
    async fn attach(
        &self,
        req: Request<Streaming<types::AttachRequest>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let mut inbound = req.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Error::InvalidArgument("attach stream closed before open".into()))?;
        let open = match &first.msg {
            Some(types::attach_request::Msg::Open(o)) => o.clone(),
            _ => {
                return Err(Error::InvalidArgument(
                    "the first attach message must carry open".into(),
                )
                .into())
            }
        };
        tracing::Span::current().record("container_id", open.container_id.as_str());
        // The client's later messages (stdin, close) follow the open message to the shim; a
        // broken client stream simply ends the outbound stream.
        let outbound = tokio_stream::once(first).chain(inbound.map_while(|m| m.ok()));
        let out = self
            .tasks
            .attach(&open.namespace, &open.container_id, outbound)
            .await?;
        Ok(Response::new(Box::pin(out)))
    }
}
