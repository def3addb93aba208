//! `exec`: run a new process inside a running container, like `runc exec`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::ContainerStatus;
use libcontainer::syscall::syscall::SyscallType;
use oci_spec::runtime::{Capability, LinuxCapabilities, Process, Spec, User};

use crate::capabilities;
use crate::cli::GlobalOpts;
use crate::executor::{CleanSignalExecutor, ExecSeccomp};
use crate::foreground::{block_all_signals, wait_forwarding, TtyBridge};
use crate::state::{load, status_word};

/// Parse `CAP_X` / `X` capability names.
fn parse_cap(name: &str) -> Result<Capability> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| anyhow!("unknown capability {name:?}"))
}

/// The process runc would run for `exec` without `--process`: the container's own
/// process (user, rlimits, capabilities, apparmor...) with the flags applied.
pub fn process_from_flags(base: Option<&Process>, args: &liboci_cli::Exec) -> Result<Process> {
    if args.command.is_empty() {
        bail!("exec args cannot be empty");
    }
    let mut p = base.cloned().unwrap_or_default();
    p.set_args(Some(args.command.clone()));
    p.set_terminal(Some(args.tty));
    p.set_console_size(None);

    let mut env = p.env().clone().unwrap_or_default();
    for (k, v) in &args.env {
        let prefix = format!("{k}=");
        env.retain(|e| !e.starts_with(&prefix));
        env.push(format!("{k}={v}"));
    }
    p.set_env(Some(env));

    if let Some(cwd) = &args.cwd {
        if !cwd.is_absolute() {
            bail!("cwd {} must be an absolute path", cwd.display());
        }
        p.set_cwd(cwd.clone());
    }

    let mut user: User = p.user().clone();
    if let Some((uid, gid)) = args.user {
        user.set_uid(uid);
        if let Some(gid) = gid {
            user.set_gid(gid);
        }
    }
    if !args.additional_gids.is_empty() {
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        gids.extend(args.additional_gids.iter().copied());
        user.set_additional_gids(Some(gids));
    }
    p.set_user(user);

    if !args.cap.is_empty() {
        let mut caps: LinuxCapabilities = p.capabilities().clone().unwrap_or_default();
        let extra = args
            .cap
            .iter()
            .map(|c| parse_cap(c))
            .collect::<Result<Vec<_>>>()?;
        let add = |set: &Option<oci_spec::runtime::Capabilities>| {
            let mut s = set.clone().unwrap_or_default();
            s.extend(extra.iter().copied());
            Some(s)
        };
        let (b, e, i, pe, a) = (
            add(caps.bounding()),
            add(caps.effective()),
            add(caps.inheritable()),
            add(caps.permitted()),
            add(caps.ambient()),
        );
        caps.set_bounding(b)
            .set_effective(e)
            .set_inheritable(i)
            .set_permitted(pe)
            .set_ambient(a);
        p.set_capabilities(Some(caps));
    }
    if args.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(profile) = &args.apparmor {
        p.set_apparmor_profile(Some(profile.clone()));
    }
    if let Some(label) = &args.process_label {
        p.set_selinux_label(Some(label.clone()));
    }
    Ok(p)
}

fn read_process(path: &Path) -> Result<Process> {
    let data = fs::read(path).with_context(|| format!("read process file {}", path.display()))?;
    serde_json::from_slice(&data)
        .with_context(|| format!("invalid process file {}", path.display()))
}

/// `berth-runtime exec [flags] <id> [command...]`; returns the exit code to exit with.
pub fn exec(global: &GlobalOpts, args: liboci_cli::Exec) -> Result<u8> {
    let id = args.container_id.as_str();
    let root = fs::canonicalize(&global.root)
        .with_context(|| format!("state root {}", global.root.display()))?;
    let (container, dir) = load(&root, id)?;
    match container.status() {
        ContainerStatus::Running => {}
        ContainerStatus::Paused if args.ignore_paused => {}
        other => bail!("cannot exec in a {} container {id}", status_word(other)),
    }

    let mut process = match &args.process {
        Some(path) => read_process(path)?,
        None => {
            let config = container.bundle().join("config.json");
            let spec =
                Spec::load(&config).map_err(|e| anyhow!("load config of container {id}: {e}"))?;
            process_from_flags(spec.process().as_ref(), &args)?
        }
    };
    capabilities::filter_process_for_host(&mut process, id);
    let exec_seccomp =
        exec_seccomp_for(&container.bundle().join("config.json"), &dir, &mut process)?;
    let terminal = process.terminal().unwrap_or(false);

    // libcontainer takes the process from a file; write ours next to the state.
    let process_file: PathBuf = dir.join(format!("exec-{}.json", std::process::id()));
    fs::write(&process_file, serde_json::to_vec(&process)?)
        .with_context(|| format!("write {}", process_file.display()))?;
    let _cleanup = RemoveOnDrop(process_file.clone());

    let mut bridge = if terminal && args.console_socket.is_none() && !args.detach {
        Some(TtyBridge::listen(&dir, "exec")?)
    } else {
        None
    };
    if terminal && args.detach && args.console_socket.is_none() {
        bail!("cannot allocate tty if runc will detach without setting console socket");
    }
    let console_socket = args
        .console_socket
        .clone()
        .or_else(|| bridge.as_ref().map(|b| b.path().to_path_buf()));

    let _blocked = if args.detach {
        None
    } else {
        Some(block_all_signals()?)
    };

    let pid = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_executor(CleanSignalExecutor { exec_seccomp })
        .with_root_path(&root)
        .and_then(|b| b.with_pid_file(args.pid_file.as_ref()))
        .map(|b| {
            b.with_console_socket(console_socket.as_ref())
                .with_preserved_fds(args.preserve_fds)
        })
        .and_then(|b| b.validate_id())
        .and_then(|b| {
            b.as_tenant()
                .with_detach(args.detach || console_socket.is_some())
                .with_process(Some(&process_file))
                .with_ignore_paused(args.ignore_paused)
                .with_sub_cgroup(args.cgroup.clone())
                .build()
        })
        .with_context(|| format!("exec in container {id}"))?;
    tracing::debug!(container_id = id, pid = pid.as_raw(), "exec started");

    if let Some(b) = bridge.as_mut() {
        b.start()?;
    }
    if args.detach {
        return Ok(0);
    }
    let code = wait_forwarding(pid, bridge.as_ref());
    if let Some(b) = bridge.take() {
        b.finish();
    }
    code
}

/// The container's seccomp filter for this exec, with the capabilities it needs to load it
/// added to `process` (taken away again right before execve, see [`ExecSeccomp`]).
fn exec_seccomp_for(
    config: &Path,
    state: &Path,
    process: &mut Process,
) -> Result<Option<ExecSeccomp>> {
    let Ok(spec) = Spec::load(config) else {
        return Ok(None);
    };
    let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().clone()) else {
        return Ok(None);
    };
    let host = capabilities::host_bounding_set().unwrap_or(u64::MAX);
    let needed = [Capability::SysAdmin, Capability::Setpcap];
    if needed
        .iter()
        .any(|c| host & (1u64 << capabilities::cap_number(*c)) == 0)
    {
        tracing::warn!("the host's bounding set lacks CAP_SYS_ADMIN or CAP_SETPCAP: exec runs without the container's seccomp filter");
        return Ok(None);
    }
    let mut caps = process.capabilities().clone().unwrap_or_default();
    let mask = |set: &Option<oci_spec::runtime::Capabilities>| -> u64 {
        set.iter()
            .flatten()
            .map(|c| capabilities::cap_number(*c))
            .filter(|n| *n < 64)
            .fold(0u64, |m, n| m | (1u64 << n))
    };
    let (effective, permitted, inheritable) = (
        mask(caps.effective()),
        mask(caps.permitted()),
        mask(caps.inheritable()),
    );
    let bounding = mask(caps.bounding());
    let mut added = Vec::new();
    for cap in needed {
        let n = capabilities::cap_number(cap);
        if bounding & (1u64 << n) == 0 {
            added.push(n);
        }
        for set in [0, 1, 2] {
            let mut list = match set {
                0 => caps.bounding().clone(),
                1 => caps.effective().clone(),
                _ => caps.permitted().clone(),
            }
            .unwrap_or_default();
            list.insert(cap);
            match set {
                0 => caps.set_bounding(Some(list)),
                1 => caps.set_effective(Some(list)),
                _ => caps.set_permitted(Some(list)),
            };
        }
    }
    process.set_capabilities(Some(caps));
    let bpf = match crate::exec_filter::exec_filter(state, &profile) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "exec filter cache: compiling in the exec instead");
            None
        }
    };
    Ok(Some(ExecSeccomp {
        profile,
        bpf,
        added,
        effective,
        permitted,
        inheritable,
    }))
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn exec_args(argv: &[&str]) -> liboci_cli::Exec {
        let cli = Cli::try_parse_from(
            ["berth-runtime", "exec"]
                .into_iter()
                .chain(argv.iter().copied()),
        )
        .expect("parse");
        match cli.command {
            Some(Command::Exec(e)) => e,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn flags_override_the_container_process() {
        let mut base = Process::default();
        base.set_env(Some(vec!["PATH=/bin".into(), "A=1".into()]));
        let args = exec_args(&[
            "--env",
            "A=2",
            "-e",
            "B=3",
            "--cwd",
            "/tmp",
            "--user",
            "1000:1001",
            "--tty",
            "--cap",
            "CAP_SYS_ADMIN",
            "c1",
            "sh",
            "-c",
            "echo hi",
        ]);
        let p = process_from_flags(Some(&base), &args).expect("process");
        assert_eq!(
            p.args().clone().expect("args"),
            vec!["sh".to_string(), "-c".into(), "echo hi".into()]
        );
        let env = p.env().clone().expect("env");
        assert!(env.contains(&"A=2".to_string()));
        assert!(!env.contains(&"A=1".to_string()));
        assert!(env.contains(&"B=3".to_string()));
        assert_eq!(p.cwd(), &PathBuf::from("/tmp"));
        assert_eq!(p.user().uid(), 1000);
        assert_eq!(p.user().gid(), 1001);
        assert_eq!(p.terminal(), Some(true));
        assert!(p
            .capabilities()
            .as_ref()
            .and_then(|c| c.effective().clone())
            .expect("eff")
            .contains(&Capability::SysAdmin));
    }

    #[test]
    fn empty_command_is_an_error() {
        let args = exec_args(&["c1"]);
        assert!(process_from_flags(None, &args).is_err());
    }
}
