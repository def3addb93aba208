//! `update`: change a running container's cgroup limits from flags or a JSON file.

use std::io::Read;

use anyhow::{anyhow, Context, Result};
use libcgroups::common::{CgroupManager, ControllerOpt};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use crate::cli::{GlobalOpts, UpdateArgs};
use crate::commands::cgroup_manager;
use crate::state::load;
use crate::units::parse_ram_bytes;

fn size(flag: &str, raw: &Option<String>) -> Result<Option<i64>> {
    raw.as_deref()
        .map(|s| parse_ram_bytes(s).map_err(|e| anyhow!("--{flag}: {e}")))
        .transpose()
}

/// Build the resources to apply: `-r` JSON (file or `-` for stdin) as the base,
/// flags on top, as runc does.
pub fn resources_from_args(args: &UpdateArgs, stdin: &mut dyn Read) -> Result<LinuxResources> {
    let mut res: LinuxResources = match &args.resources {
        Some(path) if path.as_os_str() == "-" => {
            let mut buf = String::new();
            stdin
                .read_to_string(&mut buf)
                .context("read resources from stdin")?;
            serde_json::from_str(&buf).context("parse resources JSON from stdin")?
        }
        Some(path) => {
            let data = std::fs::read_to_string(path)
                .with_context(|| format!("read resources file {}", path.display()))?;
            serde_json::from_str(&data)
                .with_context(|| format!("parse resources file {}", path.display()))?
        }
        None => LinuxResources::default(),
    };

    let memory = size("memory", &args.memory)?;
    let reservation = size("memory-reservation", &args.memory_reservation)?;
    let swap = size("memory-swap", &args.memory_swap)?;
    if memory.is_some() || reservation.is_some() || swap.is_some() {
        let mut m: LinuxMemory = (*res.memory()).unwrap_or_default();
        if memory.is_some() {
            m.set_limit(memory);
        }
        if reservation.is_some() {
            m.set_reservation(reservation);
        }
        if swap.is_some() {
            m.set_swap(swap);
        }
        res.set_memory(Some(m));
    }

    if args.cpu_share.is_some()
        || args.cpu_quota.is_some()
        || args.cpu_period.is_some()
        || args.cpu_rt_period.is_some()
        || args.cpu_rt_runtime.is_some()
        || args.cpuset_cpus.is_some()
        || args.cpuset_mems.is_some()
    {
        let mut c: LinuxCpu = res.cpu().clone().unwrap_or_default();
        if args.cpu_share.is_some() {
            c.set_shares(args.cpu_share);
        }
        if args.cpu_quota.is_some() {
            c.set_quota(args.cpu_quota);
        }
        if args.cpu_period.is_some() {
            c.set_period(args.cpu_period);
        }
        if args.cpu_rt_period.is_some() {
            c.set_realtime_period(args.cpu_rt_period);
        }
        if args.cpu_rt_runtime.is_some() {
            c.set_realtime_runtime(args.cpu_rt_runtime);
        }
        if args.cpuset_cpus.is_some() {
            c.set_cpus(args.cpuset_cpus.clone());
        }
        if args.cpuset_mems.is_some() {
            c.set_mems(args.cpuset_mems.clone());
        }
        res.set_cpu(Some(c));
    }

    if let Some(limit) = args.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(limit);
        res.set_pids(Some(p));
    }

    if let Some(weight) = args.blkio_weight {
        let mut b: LinuxBlockIo = res.block_io().clone().unwrap_or_default();
        b.set_weight(Some(weight));
        res.set_block_io(Some(b));
    }

    if args.kernel_memory.is_some() || args.kernel_memory_tcp.is_some() {
        tracing::warn!("kernel memory limits are not supported; ignoring them");
    }
    if args.l3_cache_schema.is_some() || args.mem_bw_schema.is_some() {
        return Err(anyhow!("intel RDT is not supported"));
    }
    Ok(res)
}

/// `berth-runtime update [flags] <id>`.
pub fn update(global: &GlobalOpts, args: UpdateArgs) -> Result<()> {
    let id = &args.container_id;
    let (container, _) = load(&global.root, id)?;
    let resources = resources_from_args(&args, &mut std::io::stdin())?;
    let manager = cgroup_manager(&container)?;
    manager
        .apply(&ControllerOpt {
            resources: &resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        })
        .with_context(|| format!("update resources of container {id}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn update_args(argv: &[&str]) -> UpdateArgs {
        let cli = Cli::try_parse_from(
            ["berth-runtime", "update"]
                .into_iter()
                .chain(argv.iter().copied()),
        )
        .expect("parse");
        match cli.command {
            Some(Command::Update(u)) => u,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn flags_become_resources() {
        let args = update_args(&[
            "--memory",
            "64m",
            "--cpu-shares",
            "256",
            "--cpu-quota",
            "50000",
            "--cpu-period",
            "100000",
            "--cpuset-cpus",
            "0",
            "--pids-limit",
            "20",
            "c1",
        ]);
        let res = resources_from_args(&args, &mut std::io::empty()).expect("resources");
        assert_eq!(
            res.memory().as_ref().and_then(|m| m.limit()),
            Some(64 << 20)
        );
        let cpu = res.cpu().as_ref().expect("cpu");
        assert_eq!(cpu.shares(), Some(256));
        assert_eq!(cpu.quota(), Some(50000));
        assert_eq!(cpu.period(), Some(100000));
        assert_eq!(cpu.cpus().as_deref(), Some("0"));
        assert_eq!(res.pids().as_ref().map(|p| p.limit()), Some(20));
    }

    #[test]
    fn stdin_json_with_flag_override() {
        let args = update_args(&["-r", "-", "--pids-limit", "5", "c1"]);
        let json = r#"{"memory":{"limit":1048576},"pids":{"limit":100}}"#;
        let res = resources_from_args(&args, &mut json.as_bytes()).expect("resources");
        assert_eq!(res.memory().as_ref().and_then(|m| m.limit()), Some(1048576));
        assert_eq!(res.pids().as_ref().map(|p| p.limit()), Some(5));
    }

    #[test]
    fn bad_sizes_are_errors() {
        let args = update_args(&["--memory", "lots", "c1"]);
        assert!(resources_from_args(&args, &mut std::io::empty()).is_err());
    }
}
