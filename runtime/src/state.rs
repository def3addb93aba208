//! Finding containers under `--root` and showing their state as runc does.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use libcontainer::container::{Container, ContainerStatus};
use serde::Serialize;

use crate::bundle::Sidecar;

/// runc's `state`/`list --format json` object. Field order and names follow runc's
/// `containerState` (go-runc and Docker decode it).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StateView {
    /// OCI runtime spec version.
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Init pid; 0 once stopped, as runc reports.
    pub pid: i32,
    /// created, running, paused or stopped.
    pub status: String,
    /// The bundle the caller gave.
    pub bundle: PathBuf,
    /// The root filesystem.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339 with nanoseconds.
    pub created: String,
    /// Owner user name (empty in `state`, as runc).
    pub owner: String,
    /// Annotations from config.json.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<HashMap<String, String>>,
}

/// runc's status word for a libcontainer status.
pub fn status_word(status: ContainerStatus) -> &'static str {
    match status {
        ContainerStatus::Creating => "creating",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Paused => "paused",
        ContainerStatus::Stopped => "stopped",
    }
}

/// Go's `time.RFC3339Nano` (trailing zeros of the fraction trimmed).
pub fn rfc3339_nano(t: &DateTime<Utc>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos == 0 {
        return format!("{base}Z");
    }
    let frac = format!("{nanos:09}");
    format!("{base}.{}Z", frac.trim_end_matches('0'))
}

impl StateView {
    /// Build the view of a loaded container.
    pub fn of(container: &Container, container_dir: &Path) -> StateView {
        let sidecar = Sidecar::load(container_dir);
        let status = container.status();
        let pid = match status {
            ContainerStatus::Stopped => 0,
            _ => container.pid().map(|p| p.as_raw()).unwrap_or(0),
        };
        StateView {
            oci_version: container.state.oci_version.clone(),
            id: container.id().to_string(),
            pid,
            status: status_word(status).to_string(),
            bundle: sidecar
                .as_ref()
                .map(|s| s.bundle.clone())
                .unwrap_or_else(|| container.bundle().clone()),
            rootfs: sidecar.map(|s| s.rootfs).unwrap_or_default(),
            created: container
                .created()
                .map(|t| rfc3339_nano(&t))
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string()),
            owner: String::new(),
            annotations: container.state.annotations.clone(),
        }
    }
}

/// Reject ids that could escape the root dir (libcontainer checks again on create).
pub fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id == "." || id == ".." || id.contains('/') || id.starts_with('.') {
        bail!("invalid container id {id:?}");
    }
    Ok(())
}

/// `<root>/<id>`.
pub fn container_dir(root: &Path, id: &str) -> Result<PathBuf> {
    check_id(id)?;
    Ok(root.join(id))
}

/// Load a container, with runc's message when it does not exist.
pub fn load(root: &Path, id: &str) -> Result<(Container, PathBuf)> {
    let dir = container_dir(root, id)?;
    if !dir.join("state.json").exists() {
        bail!("container {id} does not exist");
    }
    let container =
        Container::load(dir.clone()).with_context(|| format!("load state of container {id}"))?;
    Ok((container, dir))
}

/// Ids of all containers under `root` (directories holding a state.json), sorted.
pub fn list_ids(root: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("read {}", root.display())),
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("state.json").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_json_has_runc_fields_in_order() {
        let view = StateView {
            oci_version: "1.0.2".into(),
            id: "c1".into(),
            pid: 42,
            status: "running".into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: "2024-01-02T03:04:05.5Z".into(),
            owner: String::new(),
            annotations: None,
        };
        let json = serde_json::to_string(&view).expect("json");
        assert_eq!(
            json,
            r#"{"ociVersion":"1.0.2","id":"c1","pid":42,"status":"running","bundle":"/b","rootfs":"/b/rootfs","created":"2024-01-02T03:04:05.5Z","owner":""}"#
        );
    }

    #[test]
    fn status_words() {
        assert_eq!(status_word(ContainerStatus::Created), "created");
        assert_eq!(status_word(ContainerStatus::Paused), "paused");
        assert_eq!(status_word(ContainerStatus::Stopped), "stopped");
    }

    #[test]
    fn time_format_matches_go_rfc3339nano() {
        let t = DateTime::parse_from_rfc3339("2024-01-02T03:04:05.120000000Z")
            .expect("parse")
            .with_timezone(&Utc);
        assert_eq!(rfc3339_nano(&t), "2024-01-02T03:04:05.12Z");
        let t = DateTime::parse_from_rfc3339("2024-01-02T03:04:05Z")
            .expect("parse")
            .with_timezone(&Utc);
        assert_eq!(rfc3339_nano(&t), "2024-01-02T03:04:05Z");
    }

    #[test]
    fn ids_that_escape_are_rejected() {
        assert!(check_id("../x").is_err());
        assert!(check_id(".bundle-x").is_err());
        assert!(check_id("ok-id_1").is_ok());
    }
}
