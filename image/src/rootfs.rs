//! A container's root filesystem before it is mounted for the runtime: reading files through
//! its layers (for `/etc/passwd` and `/etc/group`), and creating a directory in it (the
//! working directory) through a short-lived overlay mount.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use crate::RootfsMount;

/// How many symlinks a path may pass through before resolution gives up (Linux's limit).
const MAX_SYMLINKS: usize = 40;

/// The directories of a container's overlay, top first: its upper dir, then the image's
/// layers from the newest.
#[derive(Debug, Clone)]
pub struct RootfsLayers {
    dirs: Vec<PathBuf>,
}

impl RootfsLayers {
    /// The layers named by an overlay mount's `upperdir=` and `lowerdir=` options.
    pub fn from_mount(m: &RootfsMount) -> RootfsLayers {
        let mut dirs = Vec::new();
        for o in &m.options {
            if let Some(u) = o.strip_prefix("upperdir=") {
                dirs.insert(0, PathBuf::from(u));
            }
        }
        for o in &m.options {
            if let Some(l) = o.strip_prefix("lowerdir=") {
                dirs.extend(l.split(':').map(PathBuf::from));
            }
        }
        RootfsLayers { dirs }
    }

    /// The image's layers only (without the container's writable layer): what the
    /// container started from, for `docker diff`.
    pub fn image_only(m: &RootfsMount) -> RootfsLayers {
        let mut dirs = Vec::new();
        for o in &m.options {
            if let Some(l) = o.strip_prefix("lowerdir=") {
                dirs.extend(l.split(':').map(PathBuf::from));
            }
        }
        RootfsLayers { dirs }
    }

    /// Where `path` (absolute in the container, no symlinks followed) lives on disk, as
    /// overlayfs would show it: the topmost layer that has it, unless a whiteout or an opaque
    /// directory above hides the layers below.
    pub fn lookup(&self, path: &str) -> Option<PathBuf> {
        let parts: Vec<_> = Path::new(path)
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        if parts.is_empty() {
            return self.dirs.first().cloned();
        }
        for layer in &self.dirs {
            let mut cur = layer.clone();
            // An opaque directory on the way hides the layers below this one.
            let mut opaque = false;
            for (i, part) in parts.iter().enumerate() {
                cur.push(part);
                match fs::symlink_metadata(&cur) {
                    Ok(md) if is_whiteout(&md) => return None,
                    Ok(_) if i + 1 == parts.len() => return Some(cur),
                    Ok(md) if md.is_dir() => opaque |= is_opaque(&cur),
                    // A file or symlink where a directory was needed: nothing below it, here
                    // or in the layers under it.
                    Ok(_) => return None,
                    Err(_) => break,
                }
            }
            if opaque {
                return None;
            }
        }
        None
    }

    /// The content of a regular file of the rootfs, if it has one at `path`.
    pub fn read_file(&self, path: &str) -> Option<Vec<u8>> {
        let p = self.lookup(path)?;
        let md = fs::symlink_metadata(&p).ok()?;
        if !md.is_file() {
            return None;
        }
        fs::read(p).ok()
    }

    /// Whether the rootfs has a directory at `path` (without following symlinks).
    pub fn is_dir(&self, path: &str) -> bool {
        self.lookup(path)
            .and_then(|p| fs::symlink_metadata(p).ok())
            .is_some_and(|m| m.is_dir())
    }
}

fn is_whiteout(md: &fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    let Ok(p) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut buf = [0u8; 4];
    // SAFETY: both strings are NUL-terminated and `buf` is valid for its length.
    let n = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

/// Creates directory `path` inside the rootfs of `mount` (and its missing parents, mode 0755,
/// owned by `uid:gid`), as dockerd does for a missing working directory. The overlay is
/// mounted at `scratch` for the time it takes; every symlink met on the way is resolved
/// inside the rootfs, never on the host.
pub fn mkdir_all(
    mount: &RootfsMount,
    scratch: &Path,
    path: &str,
    uid: u32,
    gid: u32,
) -> io::Result<()> {
    fs::create_dir_all(scratch)?;
    let data = mount.options.join(",");
    nix::mount::mount(
        Some(mount.source.as_str()),
        scratch,
        Some(mount.kind.as_str()),
        nix::mount::MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(io::Error::from)?;
    let made = make_in_root(scratch, path, uid, gid);
    let unmounted =
        nix::mount::umount2(scratch, nix::mount::MntFlags::MNT_DETACH).map_err(io::Error::from);
    let _ = fs::remove_dir(scratch);
    made.and(unmounted)
}

/// `mkdir -p` of `path` under `root`, symlinks resolved with `root` as `/`.
fn make_in_root(root: &Path, path: &str, uid: u32, gid: u32) -> io::Result<()> {
    let mut todo: Vec<PathBuf> = Path::new(path)
        .components()
        .rev()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    let mut cur = PathBuf::new(); // relative to root
    let mut links = 0;
    while let Some(part) = todo.pop() {
        match part.to_str() {
            Some("/") | Some(".") | Some("") => continue,
            Some("..") => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        let next = cur.join(&part);
        let full = root.join(&next);
        match fs::symlink_metadata(&full) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::other(format!(
                        "mkdir {path}: too many levels of symbolic links"
                    )));
                }
                let target = fs::read_link(&full)?;
                if target.is_absolute() {
                    cur = PathBuf::new();
                }
                for c in target.components().rev() {
                    todo.push(PathBuf::from(c.as_os_str()));
                }
            }
            Ok(md) if md.is_dir() => cur = next,
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "mkdir {}: not a directory",
                    Path::new("/").join(&next).display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&full)?;
                fs::set_permissions(&full, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
                std::os::unix::fs::lchown(&full, Some(uid), Some(gid))?;
                cur = next;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_takes_the_top_layer_and_honours_whiteouts() {
        let d = tempfile::tempdir().unwrap();
        let (up, l1, l2) = (
            d.path().join("up"),
            d.path().join("l1"),
            d.path().join("l2"),
        );
        for l in [&up, &l1, &l2] {
            fs::create_dir_all(l.join("etc")).unwrap();
        }
        fs::write(l2.join("etc/passwd"), "old").unwrap();
        fs::write(l1.join("etc/passwd"), "new").unwrap();
        fs::write(l2.join("etc/group"), "g").unwrap();
        nix::sys::stat::mknod(
            &l1.join("etc/group"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .ok();
        let m = RootfsMount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                format!("lowerdir={}:{}", l1.display(), l2.display()),
                format!("upperdir={}", up.display()),
            ],
        };
        let layers = RootfsLayers::from_mount(&m);
        assert_eq!(layers.read_file("/etc/passwd").unwrap(), b"new");
        assert!(layers.is_dir("/etc"));
        assert!(!layers.is_dir("/nope"));
        if nix::unistd::geteuid().is_root() {
            // The whiteout (made only as root) hides the lower layer's file.
            assert!(layers.read_file("/etc/group").is_none());
        }
    }

    #[test]
    fn make_in_root_resolves_symlinks_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        fs::create_dir_all(root.join("data")).unwrap();
        std::os::unix::fs::symlink("/data", root.join("link")).unwrap();
        std::os::unix::fs::symlink("../../../..", root.join("up")).unwrap();
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        make_in_root(&root, "/link/a/b", me.0, me.1).unwrap();
        assert!(root.join("data/a/b").is_dir());
        make_in_root(&root, "/up/escaped", me.0, me.1).unwrap();
        assert!(root.join("escaped").is_dir());
        assert!(!d.path().join("escaped").exists());
        fs::write(root.join("file"), "").unwrap();
        let err = make_in_root(&root, "/file/x", me.0, me.1).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
