//! The container service: records (Docker's Config and HostConfig as stored), their store,
//! naming, the OCI spec generated from them, and the lifecycle (`service.rs`: create, start,
//! exit, stop, kill, pause, remove, reconcile after a restart).

pub mod archive;
pub mod health;
mod naming;
pub mod options;
pub mod seccomp;
mod service;
pub(crate) use service::hosts_file;
pub use service::{resolve_user, Attaches, RootfsLease};
mod spec;
mod store;
mod user;

pub use naming::{new_id, random_name, valid_name};
pub use spec::*;
pub use store::{load, save, save_json};
pub use user::ExecUser;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A container's state, in Docker's words.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// created, running, paused, restarting, removing, exited, dead
    pub status: String,
    pub pid: u32,
    pub exit_code: i64,
    pub started_at: String,
    pub finished_at: String,
    pub oom_killed: bool,
    pub error: String,
    /// Docker's State.Health (Status, FailingStreak, Log) when the container has a check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<serde_json::Value>,
}

/// One container, as stored in `<data-root>/containers/<id>/config.v2.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// With Docker's leading slash.
    pub name: String,
    pub created: String,
    /// As the client named it.
    pub image: String,
    pub image_id: String,
    pub path: String,
    pub args: Vec<String>,
    /// Docker's `Config`, with the image's defaults merged in.
    pub config: Value,
    /// Docker's `HostConfig` as given.
    pub host_config: Value,
    pub state: State,
    pub restart_count: u64,
    pub log_path: PathBuf,
    /// Bumped at every exit (for `wait?condition=next-exit`).
    #[serde(default)]
    pub exits: u64,
    /// Stopped or killed by a client: the restart policy leaves it stopped (dockerd's
    /// HasBeenManuallyStopped).
    #[serde(default)]
    pub manually_stopped: bool,
    /// The restart policy's current delay (100 ms, doubling, back to 100 ms after 10 s of
    /// running).
    #[serde(default)]
    pub restart_backoff_ms: u64,
    /// Its networks by name (`NetworkSettings.Networks`): what was asked, what it got.
    #[serde(default)]
    pub endpoints: BTreeMap<String, crate::network::Endpoint>,
    /// Its network namespace while it runs (`NetworkSettings.SandboxKey`).
    #[serde(default)]
    pub sandbox: String,
    /// The ports it publishes while it runs.
    #[serde(default)]
    pub published: Vec<crate::network::Published>,
    /// Its volumes (named, anonymous, image-declared, from `--volumes-from`), resolved at
    /// create.
    #[serde(default)]
    pub volumes: Vec<crate::volume::VolumeMount>,
}

impl Record {
    pub fn tty(&self) -> bool {
        self.config["Tty"].as_bool().unwrap_or(false)
    }
    pub fn running(&self) -> bool {
        matches!(self.state.status.as_str(), "running" | "paused")
    }
    /// Waiting for its restart policy's delay.
    pub fn restarting(&self) -> bool {
        self.state.status == "restarting"
    }
    /// `RestartPolicy`: its name ("no" when none) and maximum retry count.
    pub fn restart_policy(&self) -> (&str, i64) {
        let p = &self.host_config["RestartPolicy"];
        let name = p["Name"].as_str().filter(|n| !n.is_empty()).unwrap_or("no");
        (name, p["MaximumRetryCount"].as_i64().unwrap_or(0))
    }
    /// Whether the restart policy starts the container again after an exit; `boot` is the
    /// check when berthd starts, where `always` ignores a manual stop, as in dockerd.
    pub fn policy_restarts(&self, boot: bool) -> bool {
        let (name, max) = self.restart_policy();
        match name {
            "always" => boot || !self.manually_stopped,
            "unless-stopped" => !self.manually_stopped,
            "on-failure" => {
                !self.manually_stopped
                    && self.state.exit_code != 0
                    && (max == 0 || (self.restart_count as i64) < max)
            }
            _ => false,
        }
    }
    pub fn auto_remove(&self) -> bool {
        self.host_config["AutoRemove"].as_bool().unwrap_or(false)
    }
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.config["Labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }
}
