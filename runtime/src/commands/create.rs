//! `create`: set up a container whose process waits on the exec FIFO until `start`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use libcgroups::common::{CgroupConfig, CgroupManager};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;

use crate::bundle::{self, PreparedBundle};
use crate::cli::GlobalOpts;
use crate::commands::ensure_root;
use crate::executor::CleanSignalExecutor;
use crate::state::container_dir;

/// What to build, common to `create` and `run`.
#[derive(Debug)]
pub struct InitRequest<'a> {
    /// Container id.
    pub id: &'a str,
    /// `--pid-file`.
    pub pid_file: Option<&'a Path>,
    /// `--console-socket` (or our own bridge's socket).
    pub console_socket: Option<PathBuf>,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// `--preserve-fds`.
    pub preserve_fds: i32,
    /// Whether libcontainer should treat this as detached (it only checks the
    /// terminal/console-socket combination with it).
    pub detached: bool,
}

/// Check the id, make the root and prepare the bundle.
pub fn prepare(global: &GlobalOpts, id: &str, bundle: &Path) -> Result<(PathBuf, PreparedBundle)> {
    let root = ensure_root(&global.root)?;
    let dir = container_dir(&root, id)?;
    if dir.exists() {
        bail!("container with id {id} already exists");
    }
    let prepared = bundle::prepare(bundle, id, global.systemd_cgroup, &root)?;
    Ok((root, prepared))
}

/// Build the container (state Created) or clean up everything a failed build left.
pub fn build(
    root: &Path,
    prepared: &PreparedBundle,
    req: &InitRequest<'_>,
) -> Result<(Container, PathBuf)> {
    let dir = root.join(req.id);
    let result = ContainerBuilder::new(req.id.to_string(), SyscallType::default())
        .with_executor(CleanSignalExecutor::default())
        .with_pid_file(req.pid_file)
        .and_then(|b| b.with_root_path(root))
        .map(|b| {
            b.with_console_socket(req.console_socket.as_ref())
                .with_preserved_fds(req.preserve_fds)
        })
        .and_then(|b| b.validate_id())
        .and_then(|b| {
            b.as_init(prepared.effective())
                // This build has no systemd cgroup driver; systemd-style paths were
                // mapped onto cgroupfs when the bundle was prepared.
                .with_systemd(false)
                .with_detach(req.detached)
                .with_no_pivot(req.no_pivot)
                .build()
        });
    match result {
        Ok(mut container) => match prepared
            .adopt(&mut container, &dir)
            .and_then(|()| disable_oom_killer(prepared))
        {
            Ok(()) => {
                tracing::debug!(container_id = req.id, "created");
                Ok((container, dir))
            }
            Err(err) => {
                cleanup_failed(&dir, prepared, req.id);
                Err(err.context(format!("create container {}", req.id)))
            }
        },
        Err(err) => {
            cleanup_failed(&dir, prepared, req.id);
            let err = anyhow::Error::new(err);
            let err = match runc_exec_error(&err, prepared) {
                Some(runc_style) => err.context(runc_style),
                None => err,
            };
            Err(err.context(format!("create container {}", req.id)))
        }
    }
}

/// `linux.resources.memory.disableOOMKiller` on cgroup v1 (`memory.oom_control`), which
/// libcontainer 0.7 does not apply. cgroup v2 has no such switch.
fn disable_oom_killer(prepared: &PreparedBundle) -> Result<()> {
    let wanted = prepared
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.disable_oom_killer())
        .unwrap_or(false);
    if !wanted {
        return Ok(());
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let mounts = crate::cgroupfs::parse_cgroup_mounts(&mountinfo);
    for dir in crate::cgroupfs::cgroup_dirs(&mounts, &prepared.cgroups_path) {
        let control = dir.join("memory.oom_control");
        if control.exists() {
            fs::write(&control, "1").with_context(|| format!("write {}", control.display()))?;
        }
    }
    Ok(())
}

/// Docker decides between exit codes 127/126/125 by looking for runc's wording
/// ("executable file not found", "no such file or directory", "permission denied")
/// in the error, so a missing executable is reported in runc's words too.
fn runc_exec_error(err: &anyhow::Error, prepared: &PreparedBundle) -> Option<String> {
    let text = crate::observability::error_line(err);
    let arg0 = || {
        prepared
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.args().as_ref())
            .and_then(|a| a.first())
            .cloned()
            .unwrap_or_default()
    };
    if text.contains("not found in $PATH") {
        let arg0 = arg0();
        // runc: a path is stat'ed, a bare name is looked up in $PATH.
        return Some(if arg0.contains('/') {
            format!("exec: {arg0:?}: stat {arg0}: no such file or directory")
        } else {
            format!("exec: {arg0:?}: executable file not found in $PATH")
        });
    }
    // libcontainer: "executable '<path>' at path '<path>' does not have correct permissions"
    // (not executable, or a directory); runc says "permission denied" (docker: exit 126).
    if text.contains("does not have correct permissions") {
        return Some(format!("exec: {:?}: permission denied", arg0()));
    }
    None
}

/// Remove what a failed create may have left: processes, cgroup, state dir, shadow.
pub fn cleanup_failed(dir: &Path, prepared: &PreparedBundle, id: &str) {
    if dir.join("state.json").exists() {
        if let Ok(mut container) = Container::load(dir.to_path_buf()) {
            if let Err(e) = container.delete(true) {
                tracing::debug!(container_id = id, error = %e, "cleanup: delete");
            }
        }
    }
    if let Ok(manager) = libcgroups::common::create_cgroup_manager(CgroupConfig {
        cgroup_path: prepared.cgroups_path.clone(),
        systemd_cgroup: false,
        container_name: id.to_string(),
    }) {
        let _ = manager.remove();
    }
    if dir.exists() {
        if let Err(e) = fs::remove_dir_all(dir) {
            tracing::warn!(container_id = id, error = %e, "cleanup: remove state dir");
        }
    }
    prepared.discard_shadow();
}

/// `berth-runtime create`.
pub fn create(global: &GlobalOpts, args: liboci_cli::Create) -> Result<()> {
    let (root, prepared) = prepare(global, &args.container_id, &args.bundle)?;
    let req = InitRequest {
        id: &args.container_id,
        pid_file: args.pid_file.as_deref(),
        console_socket: args.console_socket.clone(),
        no_pivot: args.no_pivot,
        preserve_fds: args.preserve_fds,
        detached: true,
    };
    build(&root, &prepared, &req).map(|_| ())
}
