//! `start`: release a created container's process from the exec FIFO.

use anyhow::{Context, Result};

use crate::cli::GlobalOpts;
use crate::state::{load, status_word};

/// `berth-runtime start <id>`.
pub fn start(global: &GlobalOpts, args: liboci_cli::Start) -> Result<()> {
    let (mut container, _) = load(&global.root, &args.container_id)?;
    if !container.can_start() {
        anyhow::bail!(
            "cannot start container {} in {} state",
            args.container_id,
            status_word(container.status())
        );
    }
    container
        .start()
        .with_context(|| format!("start container {}", args.container_id))?;
    tracing::debug!(container_id = %args.container_id, "started");
    Ok(())
}
