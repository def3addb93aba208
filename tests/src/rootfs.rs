//! The busybox-static root filesystem every test container runs in.
//!
//! Layout: `/bin/busybox` plus one relative symlink per applet (`/bin/sh -> busybox`);
//! `/sbin`, `/usr/bin` and `/usr/sbin` are symlinks to `/bin` (merged-usr: one symlink per
//! applet, not four, because each symlink costs about a millisecond on our CI disks);
//! `/etc/passwd`, `/etc/group`,
//! `/etc/hostname`, `/etc/hosts`, and empty `/proc /sys /dev /tmp /root /home /var /run`.
//! Nothing else, so what a test sees inside is only what the runtime put there.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};

use crate::bins::BUSYBOX;

/// Applets every test may rely on, linked even when `busybox --list` cannot be run.
pub const APPLETS: &[&str] = &[
    "sh",
    "ash",
    "true",
    "false",
    "echo",
    "cat",
    "sleep",
    "ls",
    "id",
    "ps",
    "wc",
    "head",
    "tail",
    "grep",
    "hostname",
    "mount",
    "umount",
    "kill",
    "mkdir",
    "rmdir",
    "rm",
    "touch",
    "cp",
    "mv",
    "ln",
    "env",
    "printf",
    "test",
    "[",
    "seq",
    "stat",
    "readlink",
    "uname",
    "whoami",
    "pwd",
    "tr",
    "sed",
    "awk",
    "cut",
    "sort",
    "uniq",
    "date",
    "nproc",
    "dd",
    "df",
    "du",
    "chmod",
    "chown",
    "find",
    "xargs",
    "timeout",
    "tee",
    "yes",
    "wget",
    "nc",
    "ip",
    "ifconfig",
    "ping",
    "nslookup",
    "top",
    "free",
    "pidof",
    "killall",
    "nsenter",
    "unshare",
    "setsid",
    "stty",
    "tty",
    "vi",
    "tar",
    "gzip",
    "gunzip",
    "sha256sum",
    "md5sum",
    "mkfifo",
    "basename",
    "dirname",
    "expr",
    "usleep",
];

/// Contents of `/etc/passwd` in test rootfs trees (root, a daemon-style user, nobody).
pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
berth:x:1000:1000:berth test user:/home/berth:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";

/// Contents of `/etc/group` in test rootfs trees.
pub const GROUP: &str = "root:x:0:\ndaemon:x:1:\ntty:x:5:\nberth:x:1000:\nnogroup:x:65534:\n";

/// Every applet the host's busybox provides (`busybox --list`), falling back to [`APPLETS`].
pub fn applets() -> Vec<String> {
    let listed = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut all: Vec<String> = listed
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && !a.contains('/') && *a != "busybox")
        .map(String::from)
        .collect();
    for a in APPLETS {
        if !all.iter().any(|x| x == a) {
            all.push((*a).to_string());
        }
    }
    all.sort();
    all.dedup();
    all
}

/// Fills `dir` (created if missing) with the busybox tree described in the module docs.
pub fn populate(dir: &Path) -> Result<()> {
    populate_with(dir, Path::new(BUSYBOX))
}

/// Like [`populate`], with another static busybox binary.
pub fn populate_with(dir: &Path, busybox: &Path) -> Result<()> {
    for d in [
        "bin",
        "usr",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "home/berth",
        "var/tmp",
        "run",
    ] {
        fs::create_dir_all(dir.join(d)).with_context(|| format!("create {}/{d}", dir.display()))?;
    }
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777))
        .context("chmod /tmp")?;
    let target = dir.join("bin/busybox");
    fs::copy(busybox, &target)
        .with_context(|| format!("copy {} (install busybox-static)", busybox.display()))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).context("chmod busybox")?;
    for applet in applets() {
        link(&dir.join("bin").join(&applet), "busybox")?;
    }
    link(&dir.join("sbin"), "bin")?;
    link(&dir.join("usr/bin"), "../bin")?;
    link(&dir.join("usr/sbin"), "../bin")?;
    let files = [
        ("etc/passwd", PASSWD),
        ("etc/group", GROUP),
        ("etc/hostname", "berth-test\n"),
        ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"),
    ];
    for (path, contents) in files {
        fs::write(dir.join(path), contents).with_context(|| format!("write /{path}"))?;
    }
    Ok(())
}

fn link(at: &Path, to: &str) -> Result<()> {
    match symlink(to, at) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        r => r.with_context(|| format!("symlink {} -> {to}", at.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn populate_makes_a_runnable_tree() {
        let dir = tempfile::tempdir().unwrap();
        populate(dir.path()).unwrap();
        let root = dir.path();
        assert!(root.join("bin/busybox").is_file());
        assert_eq!(
            fs::read_link(root.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        assert_eq!(
            fs::read_link(root.join("usr/bin")).unwrap(),
            Path::new("../bin")
        );
        assert!(root.join("usr/bin/env").is_file(), "symlink resolves");
        for d in ["proc", "sys", "dev", "tmp"] {
            assert!(root.join(d).is_dir(), "{d}");
        }
        assert!(fs::read_to_string(root.join("etc/passwd"))
            .unwrap()
            .starts_with("root:x:0:0"));
        // The copied binary runs and knows its applets.
        let out = std::process::Command::new(root.join("bin/echo"))
            .arg("hi")
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"hi\n");
    }

    #[test]
    fn applets_include_the_documented_ones() {
        let all = applets();
        for a in ["sh", "true", "sleep", "hostname", "kill"] {
            assert!(all.iter().any(|x| x == a), "{a}");
        }
    }
}
