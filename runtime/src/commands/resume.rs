//! `resume`: thaw a paused container.

use anyhow::{Context, Result};

use crate::cli::GlobalOpts;
use crate::state::load;

/// `berth-runtime resume <id>`.
pub fn resume(global: &GlobalOpts, args: liboci_cli::Resume) -> Result<()> {
    let (mut container, _) = load(&global.root, &args.container_id)?;
    container
        .resume()
        .with_context(|| format!("resume container {}", args.container_id))
}
