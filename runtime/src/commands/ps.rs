//! `ps`: the container's pids as JSON, or the host's `ps` output filtered to them.

use std::process::Command;

use anyhow::{bail, Context, Result};
use libcgroups::common::CgroupManager;

use crate::cli::GlobalOpts;
use crate::commands::cgroup_manager;
use crate::state::load;

/// Index of the PID column in a `ps` header line.
pub fn pid_column(header: &str) -> Option<usize> {
    header.split_whitespace().position(|f| f == "PID")
}

/// Keep the header and the lines whose PID column is one of `pids`.
pub fn filter_ps_output(output: &str, pids: &[i32]) -> Result<String> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or_default();
    let idx = pid_column(header).context("couldn't find PID field in ps output")?;
    let mut out = format!("{header}\n");
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(field) = fields.get(idx) else {
            continue;
        };
        if let Ok(pid) = field.parse::<i32>() {
            if pids.contains(&pid) {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// `berth-runtime ps [--format json] <id> [ps args...]`.
pub fn ps(global: &GlobalOpts, args: liboci_cli::Ps) -> Result<()> {
    let (container, _) = load(&global.root, &args.container_id)?;
    let manager = cgroup_manager(&container)?;
    let mut pids: Vec<i32> = manager
        .get_all_pids()
        .with_context(|| format!("list processes of container {}", args.container_id))?
        .iter()
        .map(|p| p.as_raw())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    match args.format.as_str() {
        "json" => crate::write_stdout(&format!("{}\n", serde_json::to_string(&pids)?))?,
        "table" => {
            let ps_args = if args.ps_options.is_empty() {
                vec!["-ef".to_string()]
            } else {
                args.ps_options.clone()
            };
            let output = Command::new("ps")
                .args(&ps_args)
                .output()
                .context("run ps")?;
            if !output.status.success() {
                bail!(
                    "ps {}: {}",
                    ps_args.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
            crate::write_stdout(&filter_ps_output(
                &String::from_utf8_lossy(&output.stdout),
                &pids,
            )?)?;
        }
        other => bail!("invalid format option {other:?}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_pid_column() {
        let out = "UID PID PPID CMD\nroot 1 0 init\nroot 42 1 sh\nroot 43 42 sleep\n";
        assert_eq!(
            filter_ps_output(out, &[42, 43]).expect("filter"),
            "UID PID PPID CMD\nroot 42 1 sh\nroot 43 42 sleep\n"
        );
        assert!(filter_ps_output("NOPE\n", &[1]).is_err());
    }
}
