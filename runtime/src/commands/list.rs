//! `list`: runc's table (`ID PID STATUS BUNDLE CREATED OWNER`), `--format json`, `-q`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Result};
use libcontainer::container::Container;

use crate::cli::{GlobalOpts, ListArgs};
use crate::state::{list_ids, StateView};

/// Render rows like Go's `tabwriter.NewWriter(w, 12, 1, 3, ' ', 0)`: every
/// tab-terminated cell is padded to max(12, widest cell + 3); the last cell is not.
pub fn tabulate(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                widths[i] = widths[i].max(cell.chars().count() + 3).max(12);
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

fn owner_name(dir: &Path) -> String {
    let Ok(meta) = std::fs::metadata(dir) else {
        return String::new();
    };
    let uid = meta.uid();
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => user.name,
        _ => format!("#{uid}"),
    }
}

/// `berth-runtime list`.
pub fn list(global: &GlobalOpts, args: ListArgs) -> Result<()> {
    let mut views = Vec::new();
    for id in list_ids(&global.root)? {
        let dir = global.root.join(&id);
        match Container::load(dir.clone()) {
            Ok(container) => {
                let mut view = StateView::of(&container, &dir);
                view.owner = owner_name(&dir);
                views.push(view);
            }
            Err(e) => tracing::debug!(container_id = %id, error = %e, "skip unreadable state"),
        }
    }
    if args.quiet {
        for v in &views {
            crate::write_stdout(&format!("{}\n", v.id))?;
        }
        return Ok(());
    }
    match args.format.as_str() {
        "table" => {
            let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()];
            for v in &views {
                rows.push(vec![
                    v.id.clone(),
                    v.pid.to_string(),
                    v.status.clone(),
                    v.bundle.display().to_string(),
                    v.created.clone(),
                    v.owner.clone(),
                ]);
            }
            crate::write_stdout(&tabulate(&rows))?;
        }
        "json" => crate::write_stdout(&format!("{}\n", serde_json::to_string(&views)?))?,
        other => bail!("invalid format option {other:?}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_go_tabwriter() {
        let rows = vec![
            vec!["ID".to_string(), "PID".to_string(), "OWNER".to_string()],
            vec![
                "a-long-container-id".to_string(),
                "0".to_string(),
                "root".to_string(),
            ],
        ];
        let expected = format!(
            "{:<22}{:<12}OWNER\n{:<22}{:<12}root\n",
            "ID", "PID", "a-long-container-id", "0"
        );
        assert_eq!(tabulate(&rows), expected);
    }
}
