//! `state`: print runc's state JSON for one container.

use anyhow::Result;

use crate::cli::GlobalOpts;
use crate::state::{load, StateView};

/// `berth-runtime state <id>`.
pub fn state(global: &GlobalOpts, args: liboci_cli::State) -> Result<()> {
    let (container, dir) = load(&global.root, &args.container_id)?;
    let view = StateView::of(&container, &dir);
    // runc prints the object without a trailing newline.
    crate::write_stdout(&serde_json::to_string_pretty(&view)?)?;
    Ok(())
}
