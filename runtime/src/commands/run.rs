//! `run`: create and start; in the foreground, wait and exit with the container's code.

use std::path::Path;

use anyhow::{bail, Context, Result};
use libcontainer::container::Container;

use crate::cgroupfs;
use crate::cli::GlobalOpts;
use crate::commands::create::{build, prepare, InitRequest};
use crate::foreground::{block_all_signals, wait_forwarding, TtyBridge};

/// `berth-runtime run [--detach] <id>`; returns the exit code to exit with.
pub fn run(global: &GlobalOpts, args: liboci_cli::Run) -> Result<u8> {
    let id = args.container_id.as_str();
    let (root, prepared) = prepare(global, id, &args.bundle)?;
    let terminal = prepared
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);

    // Foreground with `terminal: true` and no console socket: receive the pty
    // ourselves and bridge it to our stdio, as runc does.
    let mut bridge = if terminal && args.console_socket.is_none() && !args.detach {
        match TtyBridge::listen(&root, id) {
            Ok(b) => Some(b),
            Err(e) => {
                prepared.discard_shadow();
                return Err(e);
            }
        }
    } else {
        None
    };
    if terminal && args.detach && args.console_socket.is_none() {
        prepared.discard_shadow();
        bail!("cannot allocate tty if runc will detach without setting console socket");
    }
    let console_socket = args
        .console_socket
        .clone()
        .or_else(|| bridge.as_ref().map(|b| b.path().to_path_buf()));

    // Block signals before anything is cloned so no SIGCHLD can be lost.
    let _blocked = if args.detach {
        None
    } else {
        Some(block_all_signals()?)
    };

    let req = InitRequest {
        id,
        pid_file: args.pid_file.as_deref(),
        console_socket: console_socket.clone(),
        no_pivot: args.no_pivot,
        preserve_fds: args.preserve_fds,
        // libcontainer insists on detached mode whenever a console socket is used.
        detached: args.detach || console_socket.is_some(),
    };
    let (mut container, dir) = build(&root, &prepared, &req)?;
    if let Some(bridge) = bridge.as_mut() {
        if let Err(e) = bridge.start() {
            let _ = container.delete(true);
            return Err(e.context(format!("attach to the tty of container {id}")));
        }
    }
    if let Err(e) = container.start() {
        let _ = container.delete(true);
        return Err(anyhow::Error::new(e).context(format!("start container {id}")));
    }
    if args.detach {
        return Ok(0);
    }

    let pid = container
        .pid()
        .with_context(|| format!("container {id} has no init pid"))?;
    let code = wait_forwarding(pid, bridge.as_ref());
    if let Some(bridge) = bridge.take() {
        bridge.finish();
    }
    if !args.keep {
        teardown(&mut container, &dir).with_context(|| format!("delete container {id}"))?;
    }
    code
}

/// Remove a container whose init has been reaped. Without poststop hooks the cgroup
/// and state dir are removed directly (see [`crate::cgroupfs`]); otherwise, or if
/// anything is still in the cgroup, libcontainer's full `delete` runs.
fn teardown(container: &mut Container, dir: &Path) -> Result<()> {
    let config = container.spec()?;
    let has_poststop = config
        .hooks
        .as_ref()
        .and_then(|h| h.poststop().as_ref())
        .is_some_and(|v| !v.is_empty());
    if !has_poststop && cgroupfs::remove_empty_cgroup(&config.cgroup_path).is_ok() {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            tracing::debug!(error = %e, "quick teardown: remove state dir");
        } else {
            return Ok(());
        }
    }
    container.refresh_status()?;
    container.delete(true)?;
    Ok(())
}
