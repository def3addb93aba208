//! Persistence of namespaces, containers and task records behind [`MetadataStore`].

mod file;

use std::fmt::Debug;

pub use file::{atomic_write, FileStore};

use crate::error::Result;
use crate::model::{Container, Namespace, TaskRecord};

/// Everything the store holds, read at startup.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// All namespaces.
    pub namespaces: Vec<Namespace>,
    /// All containers with their namespace.
    pub containers: Vec<(String, Container)>,
    /// All task records.
    pub tasks: Vec<TaskRecord>,
}

/// Crash-safe persistence: once a `put_*` or `delete_*` returns `Ok`, the change survives a
/// `kill -9` or a power loss. Calls are synchronous (they fsync); async callers run them on
/// the blocking pool.
pub trait MetadataStore: Send + Sync + Debug {
    /// Reads every record.
    fn load(&self) -> Result<Snapshot>;
    /// Creates or replaces a namespace.
    fn put_namespace(&self, ns: &Namespace) -> Result<()>;
    /// Removes a namespace (absent is fine).
    fn delete_namespace(&self, name: &str) -> Result<()>;
    /// Creates or replaces a container.
    fn put_container(&self, namespace: &str, container: &Container) -> Result<()>;
    /// Removes a container (absent is fine).
    fn delete_container(&self, namespace: &str, id: &str) -> Result<()>;
    /// Creates or replaces a task record.
    fn put_task(&self, task: &TaskRecord) -> Result<()>;
    /// Removes a task record (absent is fine).
    fn delete_task(&self, namespace: &str, id: &str) -> Result<()>;
}
