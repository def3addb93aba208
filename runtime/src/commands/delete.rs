//! `delete`: remove a stopped (or created, or with `--force` any) container.

use std::fs;

use anyhow::{bail, Context, Result};
use libcontainer::container::ContainerStatus;

use crate::cli::GlobalOpts;
use crate::state::{container_dir, load, status_word};

/// `berth-runtime delete [--force] <id>`.
pub fn delete(global: &GlobalOpts, args: liboci_cli::Delete) -> Result<()> {
    let id = &args.container_id;
    let dir = container_dir(&global.root, id)?;
    let shadow = global.root.join(format!(".bundle-{id}"));
    if !dir.join("state.json").exists() {
        // An aborted create can leave a directory without state; runc removes it too.
        let existed = dir.exists();
        if existed {
            fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
        }
        let _ = fs::remove_dir_all(&shadow);
        if args.force || existed {
            return Ok(());
        }
        bail!("container {id} does not exist");
    }
    let (mut container, _) = load(&global.root, id)?;
    let status = container.status();
    if !args.force && matches!(status, ContainerStatus::Running | ContainerStatus::Paused) {
        bail!(
            "cannot delete container {id} that is not stopped: {}",
            status_word(status)
        );
    }
    container
        .delete(args.force)
        .with_context(|| format!("delete container {id}"))?;
    let _ = fs::remove_dir_all(&shadow);
    tracing::debug!(container_id = %id, "deleted");
    Ok(())
}
