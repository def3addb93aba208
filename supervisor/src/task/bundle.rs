//! Bundles: the directory with `config.json` and the rootfs mounts a task runs from.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{Error, Result};
use crate::model::Mount;

/// Writes `<bundle>/config.json` from the container's spec. With rootfs mounts, `root.path`
/// becomes "rootfs" (where [`mount_rootfs`] mounts them); without, the spec's root.path is kept.
pub fn write_config(bundle: &Path, spec: &str, has_rootfs_mounts: bool) -> Result<()> {
    let config = bundle.join("config.json");
    let mut value: serde_json::Value =
        serde_json::from_str(spec).map_err(|source| Error::Json {
            op: "parse spec for",
            path: config.clone(),
            source,
        })?;
    if has_rootfs_mounts {
        let obj = value
            .as_object_mut()
            .ok_or_else(|| Error::Internal("spec is not a JSON object".into()))?;
        let root = obj.entry("root").or_insert_with(|| serde_json::json!({}));
        match root.as_object_mut() {
            Some(r) => {
                r.insert("path".into(), serde_json::Value::String("rootfs".into()));
            }
            None => *root = serde_json::json!({ "path": "rootfs" }),
        }
    }
    let data = serde_json::to_vec_pretty(&value).map_err(|source| Error::Json {
        op: "encode",
        path: config.clone(),
        source,
    })?;
    crate::store::atomic_write(&config, &data)
}

/// Splits mount options into flags and the data string, as mount(8) does.
pub fn parse_options(options: &[String]) -> (MsFlags, Vec<String>) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        let (set, clear) = match o.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            other => {
                data.push(other.to_string());
                continue;
            }
        };
        flags.insert(set);
        flags.remove(clear);
    }
    (flags, data)
}

fn target_of(rootfs: &Path, m: &Mount) -> PathBuf {
    if m.target.is_empty() {
        rootfs.to_path_buf()
    } else {
        rootfs.join(m.target.trim_start_matches('/'))
    }
}

/// Mounts `mounts` in order onto `rootfs` (created if missing). On failure, the mounts made
/// so far are undone and the first error is returned.
pub fn mount_rootfs(rootfs: &Path, mounts: &[Mount]) -> Result<()> {
    fs::create_dir_all(rootfs).map_err(|e| Error::io("create dir", rootfs, e))?;
    for (i, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one(rootfs, m) {
            if let Err(cleanup) = unmount_rootfs(rootfs, &mounts[..i]) {
                tracing::warn!(error = %cleanup, "undo rootfs mounts after a failed mount");
            }
            return Err(e);
        }
    }
    Ok(())
}

fn mount_one(rootfs: &Path, m: &Mount) -> Result<()> {
    let target = target_of(rootfs, m);
    fs::create_dir_all(&target).map_err(|e| Error::io("create mount target", &target, e))?;
    let (flags, data) = parse_options(&m.options);
    let is_bind = flags.contains(MsFlags::MS_BIND) || m.kind == "bind" || m.kind == "rbind";
    let mut flags = flags;
    if m.kind == "bind" {
        flags |= MsFlags::MS_BIND;
    }
    if m.kind == "rbind" {
        flags |= MsFlags::MS_BIND | MsFlags::MS_REC;
    }
    let fstype = if is_bind { None } else { Some(m.kind.as_str()) };
    let data = data.join(",");
    let data_opt = if data.is_empty() {
        None
    } else {
        Some(data.as_str())
    };
    tracing::debug!(source = %m.source, target = %target.display(), fstype = %m.kind, options = ?m.options, "mount");
    // A bind mount ignores MS_RDONLY on the first call; read-only needs a remount.
    let first_flags = if is_bind {
        flags & !MsFlags::MS_RDONLY
    } else {
        flags
    };
    mount(
        Some(m.source.as_str()),
        &target,
        fstype,
        first_flags,
        data_opt,
    )
    .map_err(|source| Error::Mount {
        op: "mount",
        target: target.clone(),
        source,
    })?;
    if is_bind && flags.contains(MsFlags::MS_RDONLY) {
        let remount = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
        if let Err(source) = mount(None::<&str>, &target, None::<&str>, remount, None::<&str>) {
            let _ = umount2(&target, MntFlags::MNT_DETACH);
            return Err(Error::Mount {
                op: "remount read-only",
                target,
                source,
            });
        }
    }
    Ok(())
}

/// Unmounts `mounts` from `rootfs` in reverse order. Targets that are not mounted (already
/// cleaned up, or never mounted) are fine; teardown continues past failures and the first one
/// is returned.
pub fn unmount_rootfs(rootfs: &Path, mounts: &[Mount]) -> Result<()> {
    let mut first = None;
    for m in mounts.iter().rev() {
        let target = target_of(rootfs, m);
        if let Err(e) = unmount(&target) {
            tracing::warn!(error = %e, "unmount rootfs");
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

fn unmount(target: &Path) -> Result<()> {
    tracing::debug!(target = %target.display(), "unmount");
    match umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(nix::Error::EBUSY) => {
            umount2(target, MntFlags::MNT_DETACH).map_err(|source| Error::Mount {
                op: "unmount",
                target: target.to_path_buf(),
                source,
            })
        }
        Err(source) => Err(Error::Mount {
            op: "unmount",
            target: target.to_path_buf(),
            source,
        }),
    }
}

/// Removes a directory tree; absent is fine.
pub fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let (flags, data) = parse_options(&[
            "ro".into(),
            "nosuid".into(),
            "lowerdir=/a:/b".into(),
            "upperdir=/u".into(),
        ]);
        assert!(flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID));
        assert_eq!(data, vec!["lowerdir=/a:/b", "upperdir=/u"]);
        let (flags, _) = parse_options(&["rbind".into(), "ro".into(), "rw".into()]);
        assert!(flags.contains(MsFlags::MS_BIND | MsFlags::MS_REC));
        assert!(!flags.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn config_gets_rootfs_path_only_with_mounts() {
        let dir = tempfile::tempdir().unwrap();
        let spec =
            r#"{"ociVersion":"1.0.2","root":{"path":"/abs/rootfs","readonly":true},"x-extra":1}"#;
        write_config(dir.path(), spec, false).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join("config.json")).unwrap()).unwrap();
        assert_eq!(v["root"]["path"], "/abs/rootfs");
        assert_eq!(v["x-extra"], 1, "unknown fields survive");
        write_config(dir.path(), spec, true).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join("config.json")).unwrap()).unwrap();
        assert_eq!(v["root"]["path"], "rootfs");
        assert_eq!(v["root"]["readonly"], true);
    }
}
