//! Events service: the bus, filtered per subscriber; lagging subscribers are dropped.

use std::pin::Pin;

use berth_proto::supervisor::v1 as pb;
use berth_proto::supervisor::v1::events_server::Events;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::events::{Event, EventBus, Filter};
use crate::uds::to_timestamp;

/// Serves `berth.supervisor.v1.Events`.
#[derive(Debug)]
pub struct EventsApi {
    /// The bus.
    pub events: EventBus,
    /// Ends every subscription when the supervisor shuts down.
    pub shutdown: CancellationToken,
}

/// Domain to proto.
pub fn to_envelope(e: Event) -> pb::Envelope {
    pb::Envelope {
        timestamp: Some(to_timestamp(e.timestamp)),
        namespace: e.namespace,
        topic: e.topic,
        container_id: e.container_id,
        exec_id: e.exec_id,
        pid: e.pid,
        exit_status: e.exit_status,
        exited_at: e.exited_at.map(to_timestamp),
    }
}

type EnvelopeStream = Pin<Box<dyn Stream<Item = Result<pb::Envelope, Status>> + Send>>;

#[tonic::async_trait]
impl Events for EventsApi {
    type SubscribeStream = EnvelopeStream;

    #[tracing::instrument(skip_all, fields(rpc = "Events.Subscribe", namespace = %req.get_ref().namespace))]
    async fn subscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let r = req.into_inner();
        let filter = Filter {
            namespace: r.namespace,
            topics: r.topics,
        };
        let mut rx = self.events.subscribe();
        let (tx, out) = tokio::sync::mpsc::channel(16);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = rx.recv() => r,
                };
                let item = match received {
                    Ok(ev) if filter.matches(&ev) => Ok(to_envelope(ev)),
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "dropping slow event subscriber");
                        let _ = tx
                            .send(Err(Status::resource_exhausted(format!(
                                "subscriber too slow: {n} events missed; resubscribe and re-read state"
                            ))))
                            .await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                };
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }
}
