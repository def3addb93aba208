//! OOM notifications from the container's memory cgroup: cgroup v1 `memory.oom_control`
//! through an eventfd, cgroup v2 `memory.events` (`oom_kill` counter) through inotify.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use tokio::io::unix::AsyncFd;

/// Where cgroup hierarchies are mounted on our hosts.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The memory cgroup of `pid`, as (path, is cgroup v2).
pub fn memory_cgroup(pid: u32) -> Option<(PathBuf, bool)> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    find_memory_cgroup(&text, Path::new(CGROUP_ROOT))
}

fn find_memory_cgroup(proc_cgroup: &str, root: &Path) -> Option<(PathBuf, bool)> {
    let mut unified = None;
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            let dir = root.join("memory").join(rel);
            if dir.join("memory.oom_control").exists() {
                return Some((dir, false));
            }
        } else if controllers.is_empty() {
            unified = Some(root.join(rel));
        }
    }
    let dir = unified?;
    dir.join("memory.events").exists().then_some((dir, true))
}

/// The `oom_kill` counter of a v2 `memory.events` file.
pub fn oom_kills(memory_events: &str) -> u64 {
    memory_events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn cvt(r: libc::c_int) -> io::Result<OwnedFd> {
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a non-negative return of eventfd/inotify_init1 is a new fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

async fn read_event(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        match guard
            .try_io(|f| nix::unistd::read(f.get_ref().as_raw_fd(), buf).map_err(io::Error::from))
        {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

/// Calls `on_oom` for every OOM in `pid`'s memory cgroup until the cgroup goes away.
/// Returns an error when there is no memory cgroup to watch.
pub fn watch(pid: u32, on_oom: impl Fn() + Send + 'static) -> io::Result<()> {
    let (dir, v2) = memory_cgroup(pid)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no memory cgroup"))?;
    if v2 {
        watch_v2(dir, on_oom)
    } else {
        watch_v1(dir, on_oom)
    }
}

fn watch_v1(dir: PathBuf, on_oom: impl Fn() + Send + 'static) -> io::Result<()> {
    // SAFETY: eventfd(2) with constant flags.
    let efd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    let control = fs::File::open(dir.join("memory.oom_control"))?;
    fs::write(
        dir.join("cgroup.event_control"),
        format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()),
    )?;
    // SAFETY: `efd` is an open OwnedFd moved into the AsyncFd, which owns it until drop.
    let efd = unsafe { AsyncFd::register(efd) }?;
    tokio::spawn(async move {
        let _control = control;
        let mut buf = [0u8; 8];
        while read_event(&efd, &mut buf).await.is_ok() {
            // The kernel also signals when the cgroup is removed.
            if !dir.exists() {
                break;
            }
            on_oom();
        }
    });
    Ok(())
}

fn watch_v2(dir: PathBuf, on_oom: impl Fn() + Send + 'static) -> io::Result<()> {
    let events = dir.join("memory.events");
    // SAFETY: inotify_init1(2) with constant flags.
    let ifd = cvt(unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) })?;
    let cpath =
        std::ffi::CString::new(events.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    // SAFETY: valid fd and NUL-terminated path.
    let wd = unsafe { libc::inotify_add_watch(ifd.as_raw_fd(), cpath.as_ptr(), libc::IN_MODIFY) };
    if wd < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut seen = oom_kills(&fs::read_to_string(&events).unwrap_or_default());
    // SAFETY: `ifd` is an open OwnedFd moved into the AsyncFd, which owns it until drop.
    let ifd = unsafe { AsyncFd::register(ifd) }?;
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while read_event(&ifd, &mut buf).await.is_ok() {
            let Ok(text) = fs::read_to_string(&events) else {
                break;
            };
            let now = oom_kills(&text);
            if now > seen {
                seen = now;
                on_oom();
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_v1_memory_cgroup_or_the_unified_one() {
        let root = tempfile::tempdir().unwrap();
        let v1 = root.path().join("memory/berth/c1");
        fs::create_dir_all(&v1).unwrap();
        fs::write(v1.join("memory.oom_control"), "").unwrap();
        let hybrid = "9:name=systemd:/berth/c1\n4:memory:/berth/c1\n0::/berth/c1\n";
        assert_eq!(find_memory_cgroup(hybrid, root.path()), Some((v1, false)));
        let v2 = root.path().join("berth/c2");
        fs::create_dir_all(&v2).unwrap();
        fs::write(v2.join("memory.events"), "").unwrap();
        assert_eq!(
            find_memory_cgroup("0::/berth/c2\n", root.path()),
            Some((v2, true))
        );
        assert_eq!(find_memory_cgroup("0::/nope\n", root.path()), None);
    }

    #[test]
    fn counts_oom_kills() {
        assert_eq!(
            oom_kills("low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n"),
            2
        );
        assert_eq!(oom_kills(""), 0);
    }
}
