//! The event bus: every container, namespace and task event, fanned out to subscribers.

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

/// How many events a subscriber may fall behind before it is dropped.
pub const SUBSCRIBER_BUFFER: usize = 1024;

/// One event, tagged with its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// Namespace of the object.
    pub namespace: String,
    /// Topic, e.g. "/tasks/exit".
    pub topic: String,
    /// Container id (empty for namespace events).
    pub container_id: String,
    /// Exec id, if about an exec.
    pub exec_id: String,
    /// Process id, where known.
    pub pid: u32,
    /// For /tasks/exit and /tasks/delete.
    pub exit_status: u32,
    /// For /tasks/exit and /tasks/delete.
    pub exited_at: Option<DateTime<Utc>>,
}

impl Event {
    /// An event with only namespace, topic and container id set.
    pub fn new(namespace: &str, topic: &str, container_id: &str) -> Event {
        Event {
            timestamp: Utc::now(),
            namespace: namespace.to_string(),
            topic: topic.to_string(),
            container_id: container_id.to_string(),
            exec_id: String::new(),
            pid: 0,
            exit_status: 0,
            exited_at: None,
        }
    }
}

/// Which events a subscriber wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this namespace; empty for all.
    pub namespace: String,
    /// Only topics starting with one of these; empty for all.
    pub topics: Vec<String>,
}

impl Filter {
    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &Event) -> bool {
        (self.namespace.is_empty() || self.namespace == event.namespace)
            && (self.topics.is_empty()
                || self
                    .topics
                    .iter()
                    .any(|t| t.is_empty() || event.topic.starts_with(t.as_str())))
    }
}

/// Publishes events to every subscriber; a subscriber that lags more than
/// [`SUBSCRIBER_BUFFER`] events sees `Lagged` and is dropped by the edge.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(SUBSCRIBER_BUFFER)
    }
}

impl EventBus {
    /// A bus whose subscribers may lag `capacity` events.
    pub fn new(capacity: usize) -> EventBus {
        let (tx, _) = broadcast::channel(capacity);
        EventBus { tx }
    }

    /// Publishes an event (dropped if nobody listens).
    pub fn publish(&self, event: Event) {
        tracing::debug!(
            namespace = %event.namespace,
            topic = %event.topic,
            container_id = %event.container_id,
            exec_id = %event.exec_id,
            "event"
        );
        let _ = self.tx.send(event);
    }

    /// A new subscription; filter with [`Filter::matches`].
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_filter_matches_everything() {
        let f = Filter::default();
        assert!(f.matches(&Event::new("a", "/tasks/exit", "c")));
        assert!(f.matches(&Event::new("b", "/namespaces/create", "")));
    }

    #[test]
    fn namespace_filter_is_exact() {
        let f = Filter {
            namespace: "a".into(),
            topics: vec![],
        };
        assert!(f.matches(&Event::new("a", "/tasks/exit", "c")));
        assert!(!f.matches(&Event::new("ab", "/tasks/exit", "c")));
        assert!(!f.matches(&Event::new("b", "/tasks/exit", "c")));
    }

    #[test]
    fn topic_filter_is_prefix_any_of() {
        let f = Filter {
            namespace: String::new(),
            topics: vec!["/tasks/exit".into(), "/containers/".into()],
        };
        assert!(f.matches(&Event::new("a", "/tasks/exit", "c")));
        assert!(f.matches(&Event::new("a", "/containers/create", "c")));
        assert!(!f.matches(&Event::new("a", "/tasks/start", "c")));
        assert!(!f.matches(&Event::new("a", "/namespaces/create", "")));
    }

    #[tokio::test]
    async fn slow_subscriber_sees_lagged() {
        let bus = EventBus::new(2);
        let mut rx = bus.subscribe();
        for i in 0..5 {
            bus.publish(Event::new("a", "/tasks/start", &format!("c{i}")));
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
    }
}
