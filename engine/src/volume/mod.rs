//! Volumes: the local driver (data under `<data-root>/volumes/<name>/_data`, the record beside
//! it in `volume.json`, written crash-safely), Docker's volume API, and what a container's
//! `-v`, `--mount type=volume`, anonymous and image-declared volumes and `--volumes-from`
//! resolve to (`service.rs`).

mod service;

pub use service::{copy_up, VolumeMount};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Label dockerd puts on anonymous volumes (`rm -v`, `--rm` and a plain prune remove them).
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// One volume, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub created: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The driver options as given (`-o`); the local driver takes none yet.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl Volume {
    pub fn anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }
}

/// dockerd's rule for volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (two characters at least).
pub fn valid_name(name: &str) -> bool {
    name.len() >= 2
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockerd() {
        assert!(valid_name("db-data"));
        assert!(valid_name("a1"));
        assert!(!valid_name("a"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("has space"));
        assert!(!valid_name("sl/ash"));
    }
}
