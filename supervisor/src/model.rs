//! Domain records: namespaces, containers and task records, as stored.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A namespace: a set of containers, tasks and events that other namespaces do not see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// Name (an id).
    pub name: String,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Which OCI runtime a container's shim drives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeConfig {
    /// Path or name of a runc-compatible binary; empty means the supervisor's default.
    #[serde(default)]
    pub binary: String,
    /// The runtime's `--root`; empty means the supervisor's default per namespace.
    #[serde(default)]
    pub root: String,
    /// Pass `--systemd-cgroup`.
    #[serde(default)]
    pub systemd_cgroup: bool,
}

/// A rootfs mount, mounted onto `<bundle>/rootfs` in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// File-system type ("overlay", "bind", ...).
    pub kind: String,
    /// Source.
    pub source: String,
    /// Relative to the rootfs; empty means the rootfs itself.
    #[serde(default)]
    pub target: String,
    /// Options (flags like "ro", "bind", and data like "lowerdir=...").
    #[serde(default)]
    pub options: Vec<String>,
}

/// A container: metadata only; its running side is a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// Id, unique within its namespace.
    pub id: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Image reference, for the client's bookkeeping.
    #[serde(default)]
    pub image: String,
    /// Runtime selection.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// The OCI runtime spec as JSON text (validated on create and update).
    pub spec: String,
    /// Rootfs mounts.
    #[serde(default)]
    pub rootfs: Vec<Mount>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update.
    pub updated_at: DateTime<Utc>,
    /// Opaque client data.
    #[serde(default)]
    pub extensions: BTreeMap<String, Vec<u8>>,
}

/// The exit of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// The container's init pid (0 if unknown).
    #[serde(default)]
    pub pid: u32,
    /// Exit code, or 128+N for death by signal N.
    pub exit_status: u32,
    /// When.
    pub exited_at: DateTime<Utc>,
}

/// What the supervisor records about a task so it can find it again after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Namespace.
    pub namespace: String,
    /// Container id.
    pub container_id: String,
    /// Bundle directory (config.json, rootfs).
    pub bundle: PathBuf,
    /// The shim's state dir (shim.sock, shim.pid, init.exit, logs).
    pub state_dir: PathBuf,
    /// The shim's socket path.
    pub shim_socket: PathBuf,
    /// The shim's pid, once known.
    #[serde(default)]
    pub shim_pid: u32,
    /// The init's pid, once created.
    #[serde(default)]
    pub pid: u32,
    /// Runtime binary (resolved path) and root the shim was started with.
    pub runtime: RuntimeConfig,
    /// Whether the supervisor mounted the container's rootfs mounts (and must unmount them).
    #[serde(default)]
    pub rootfs_mounts: Vec<Mount>,
    /// Set once the shim is gone (it died, or was cleaned up): the task is stopped with this
    /// status until it is deleted.
    #[serde(default)]
    pub shim_gone: Option<ExitInfo>,
    /// When the task was created.
    pub created_at: DateTime<Utc>,
}
