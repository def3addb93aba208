//! cgroup layout detection and host-side paths of a container's cgroup files.

use std::fs;
use std::path::{Path, PathBuf};

/// Where cgroup filesystems are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Only v1 hierarchies, one per controller.
    V1,
    /// v1 controllers plus an (often empty) cgroup2 at `/sys/fs/cgroup/unified`; our CI hosts.
    Hybrid,
    /// A single cgroup2 hierarchy at `/sys/fs/cgroup`.
    V2,
}

impl CgroupMode {
    /// Detects the mode of this host from what is mounted under [`CGROUP_ROOT`].
    pub fn detect() -> CgroupMode {
        Self::detect_at(Path::new(CGROUP_ROOT))
    }

    /// Detects the mode of a cgroup tree mounted at `root` (for tests with a fake tree).
    pub fn detect_at(root: &Path) -> CgroupMode {
        if root.join("cgroup.controllers").exists() {
            CgroupMode::V2
        } else if root.join("unified/cgroup.controllers").exists() {
            CgroupMode::Hybrid
        } else {
            CgroupMode::V1
        }
    }

    /// The host path of `file` for the cgroup at `cgroups_path` (as in `linux.cgroupsPath`).
    ///
    /// `v1` is the (controller, file name) on v1 and hybrid hosts, `v2` the file name on v2; e.g.
    /// `("memory", "memory.limit_in_bytes")` and `"memory.max"`.
    pub fn file(self, cgroups_path: &str, v1: (&str, &str), v2: &str) -> PathBuf {
        let rel = cgroups_path.trim_start_matches('/');
        match self {
            CgroupMode::V2 => Path::new(CGROUP_ROOT).join(rel).join(v2),
            CgroupMode::V1 | CgroupMode::Hybrid => {
                Path::new(CGROUP_ROOT).join(v1.0).join(rel).join(v1.1)
            }
        }
    }

    /// Host path of the memory limit file of a container's cgroup.
    pub fn memory_limit_file(self, cgroups_path: &str) -> PathBuf {
        self.file(
            cgroups_path,
            ("memory", "memory.limit_in_bytes"),
            "memory.max",
        )
    }

    /// Host path of the pids limit file of a container's cgroup.
    pub fn pids_limit_file(self, cgroups_path: &str) -> PathBuf {
        self.file(cgroups_path, ("pids", "pids.max"), "pids.max")
    }

    /// Host path of the process list of a container's cgroup (`cgroup.procs`).
    pub fn procs_file(self, cgroups_path: &str) -> PathBuf {
        self.file(cgroups_path, ("pids", "cgroup.procs"), "cgroup.procs")
    }

    /// Host path of the freezer state file (`freezer.state` on v1, `cgroup.freeze` on v2).
    pub fn freezer_file(self, cgroups_path: &str) -> PathBuf {
        self.file(cgroups_path, ("freezer", "freezer.state"), "cgroup.freeze")
    }

    /// The directories that exist for `cgroups_path`, one per hierarchy (on v1 and hybrid hosts
    /// every mounted controller, `systemd` and `unified` included). Empty once a runtime has
    /// deleted the container properly; cleanup removes whatever is left.
    pub fn dirs(self, cgroups_path: &str) -> Vec<PathBuf> {
        let rel = cgroups_path.trim_start_matches('/');
        match self {
            CgroupMode::V2 => vec![Path::new(CGROUP_ROOT).join(rel)],
            CgroupMode::V1 | CgroupMode::Hybrid => fs::read_dir(CGROUP_ROOT)
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .map(|e| e.path().join(rel))
                        .filter(|p| p.is_dir())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// Reads a numeric cgroup limit: `Some(n)`, or `None` for `max` / unlimited / unreadable.
pub fn read_limit(path: &Path) -> Option<u64> {
    let s = fs::read_to_string(path).ok()?;
    let s = s.trim();
    if s == "max" {
        return None;
    }
    s.parse().ok()
}

/// Best-effort teardown of a container's cgroups: SIGKILL every listed process, then remove
/// the directories. For cleanup after a runtime that failed to delete what it created.
pub fn kill_and_remove(cgroups_path: &str) {
    let mode = CgroupMode::detect();
    let dirs = mode.dirs(cgroups_path);
    for dir in &dirs {
        if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    // A frozen cgroup's processes cannot die until thawed.
    let _ = fs::write(
        mode.freezer_file(cgroups_path),
        if mode == CgroupMode::V2 {
            "0"
        } else {
            "THAWED"
        },
    );
    for dir in &dirs {
        for _ in 0..50 {
            if fs::remove_dir(dir).is_ok() || !dir.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_per_mode() {
        assert_eq!(
            CgroupMode::Hybrid.memory_limit_file("/berth-test/a"),
            Path::new("/sys/fs/cgroup/memory/berth-test/a/memory.limit_in_bytes")
        );
        assert_eq!(
            CgroupMode::V2.memory_limit_file("/berth-test/a"),
            Path::new("/sys/fs/cgroup/berth-test/a/memory.max")
        );
        assert_eq!(
            CgroupMode::V1.pids_limit_file("berth-test/a"),
            Path::new("/sys/fs/cgroup/pids/berth-test/a/pids.max")
        );
    }

    #[test]
    fn detect_on_fake_trees() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(CgroupMode::detect_at(d.path()), CgroupMode::V1);
        fs::create_dir(d.path().join("unified")).unwrap();
        fs::write(d.path().join("unified/cgroup.controllers"), "").unwrap();
        assert_eq!(CgroupMode::detect_at(d.path()), CgroupMode::Hybrid);
        fs::write(d.path().join("cgroup.controllers"), "").unwrap();
        assert_eq!(CgroupMode::detect_at(d.path()), CgroupMode::V2);
    }

    #[test]
    fn read_limit_parses_numbers_and_max() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x");
        fs::write(&f, "67108864\n").unwrap();
        assert_eq!(read_limit(&f), Some(64 << 20));
        fs::write(&f, "max\n").unwrap();
        assert_eq!(read_limit(&f), None);
    }
}
