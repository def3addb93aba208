//! `pause`: freeze every process of a running container.

use anyhow::{Context, Result};

use crate::cli::GlobalOpts;
use crate::state::load;

/// `berth-runtime pause <id>`.
pub fn pause(global: &GlobalOpts, args: liboci_cli::Pause) -> Result<()> {
    let (mut container, _) = load(&global.root, &args.container_id)?;
    container
        .pause()
        .with_context(|| format!("pause container {}", args.container_id))
}
