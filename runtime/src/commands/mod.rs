//! One module per runc verb, plus the helpers they share.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use libcgroups::common::{AnyCgroupManager, CgroupConfig};
use libcontainer::container::Container;

pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod features;
pub mod kill;
pub mod list;
pub mod pause;
pub mod ps;
pub mod resume;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;
pub mod update;

/// Create the state root (mode 0700, like runc) and return it canonicalized.
pub fn ensure_root(root: &Path) -> Result<PathBuf> {
    if !root.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .with_context(|| format!("create state root {}", root.display()))?;
    }
    fs::canonicalize(root).with_context(|| format!("state root {}", root.display()))
}

/// The cgroup manager of a loaded container.
pub fn cgroup_manager(container: &Container) -> Result<AnyCgroupManager> {
    let config = container
        .spec()
        .with_context(|| format!("load config of container {}", container.id()))?;
    libcgroups::common::create_cgroup_manager(CgroupConfig {
        cgroup_path: config.cgroup_path,
        systemd_cgroup: container.systemd(),
        container_name: container.id().to_string(),
    })
    .with_context(|| format!("open cgroup of container {}", container.id()))
}
