//! Quick cgroup removal straight from /proc/self/mountinfo.
//!
//! libcgroups' managers probe procfs through a hardened handle (a fresh procfs mount
//! and several checks per controller), which costs milliseconds per manager. When a
//! foreground `run` ends, the container is known to be empty, so its cgroup dirs are
//! removed directly; any trouble sends the caller back to libcontainer's `delete`.

use std::fs;
use std::path::{Path, PathBuf};

/// `(mount point, root)` of every cgroup v1 and v2 mount in a mountinfo text.
pub fn parse_cgroup_mounts(mountinfo: &str) -> Vec<(PathBuf, PathBuf)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let fstype = post.split_whitespace().next()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            let mut f = pre.split_whitespace();
            let root = f.nth(3)?;
            let mount_point = f.next()?;
            Some((
                PathBuf::from(unescape(mount_point)),
                PathBuf::from(unescape(root)),
            ))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Directories that hold the cgroup `path` (e.g. `/berth/c1`) in each hierarchy.
pub fn cgroup_dirs(mounts: &[(PathBuf, PathBuf)], path: &Path) -> Vec<PathBuf> {
    mounts
        .iter()
        .filter_map(|(mount_point, root)| {
            let rel = path.strip_prefix(root).ok()?;
            Some(mount_point.join(rel))
        })
        .filter(|dir| !dir.as_os_str().is_empty())
        .collect()
}

/// Remove `dir` and any child cgroups below it, deepest first.
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&entry.path())?;
            }
        }
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Remove an (empty) container cgroup from every hierarchy.
pub fn remove_empty_cgroup(path: &Path) -> std::io::Result<()> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let mounts = parse_cgroup_mounts(&mountinfo);
    for dir in cgroup_dirs(&mounts, path) {
        if dir.exists() {
            remove_tree(&dir)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw
33 25 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
34 33 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
35 33 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
36 33 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
37 33 0:32 /docker /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
";

    #[test]
    fn finds_v1_and_v2_hierarchies() {
        let mounts = parse_cgroup_mounts(MOUNTINFO);
        assert_eq!(mounts.len(), 4);
        let dirs = cgroup_dirs(&mounts, Path::new("/berth/c1"));
        assert!(dirs.contains(&PathBuf::from("/sys/fs/cgroup/memory/berth/c1")));
        assert!(dirs.contains(&PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/berth/c1")));
        assert!(dirs.contains(&PathBuf::from("/sys/fs/cgroup/unified/berth/c1")));
        // A hierarchy mounted at a different root only holds paths under that root.
        assert!(!dirs.iter().any(|d| d.starts_with("/sys/fs/cgroup/pids")));
        let dirs = cgroup_dirs(&mounts, Path::new("/docker/c1"));
        assert!(dirs.contains(&PathBuf::from("/sys/fs/cgroup/pids/c1")));
    }
}
