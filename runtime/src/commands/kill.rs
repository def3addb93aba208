//! `kill`: signal a container's init, or every process with `--all`.

use anyhow::{anyhow, bail, Context, Result};
use libcontainer::container::ContainerStatus;

use crate::cli::{GlobalOpts, KillArgs};
use crate::signals::parse_signal;
use crate::state::load;

/// `berth-runtime kill [--all] <id> [signal]`.
pub fn kill(global: &GlobalOpts, args: KillArgs) -> Result<()> {
    let signal = parse_signal(&args.signal).map_err(|e| anyhow!(e))?;
    let (mut container, dir) = load(&global.root, &args.container_id)?;
    let before = container.status();
    if before == ContainerStatus::Stopped && !args.all {
        bail!("container {} is not running", args.container_id);
    }
    // A foreground `run` may reap the container and delete its state while we signal
    // it; once the state is gone the signal has done its job, as with runc.
    let gone = || !dir.join("state.json").exists();
    if let Err(err) = container.kill(signal, args.all) {
        if gone() {
            tracing::debug!(container_id = %args.container_id, "container deleted while being killed");
            return Ok(());
        }
        return Err(err).with_context(|| format!("kill container {}", args.container_id));
    }
    // libcontainer records "stopped" after any signal; a created or paused container
    // that survived (say, SIGUSR1) must keep its state or `start`/`resume` break.
    if before != ContainerStatus::Stopped && init_alive(&container) {
        container.set_status(before);
        if let Err(err) = container.save() {
            if !gone() {
                return Err(err)
                    .with_context(|| format!("save state of container {}", args.container_id));
            }
        }
    }
    Ok(())
}

/// Whether the init process still exists and is not a zombie.
fn init_alive(container: &libcontainer::container::Container) -> bool {
    let Some(pid) = container.pid() else {
        return false;
    };
    match std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw())) {
        Ok(stat) => {
            // The state letter follows the ")" that closes the command name.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}
