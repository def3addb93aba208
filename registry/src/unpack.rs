//! Unpacking a layer tar stream into a directory usable as an overlayfs lowerdir.
//!
//! OCI whiteouts become overlayfs whiteouts: `.wh.<name>` becomes a 0:0 character device
//! `<name>`, and `.wh..wh..opq` marks its directory opaque (`trusted.overlay.opaque=y`).
//! Hard links, symlinks, device nodes, FIFOs, ownership, modes, mtimes and `SCHILY.xattr.*`
//! records are kept. Entries that would land outside the directory (`..` components, a
//! parent that is a symlink, hard links to outside) are refused, so no chroot is needed.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use filetime::FileTime;
use nix::fcntl::AtFlags;
use nix::sys::stat::{mknod, Mode, SFlag};
use nix::unistd::{fchownat, Gid, Uid};

use crate::error::{Error, Result};
use crate::fsutil::HashingReader;

/// The xattr overlayfs reads to make a directory opaque.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Prefix of OCI whiteout file names.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// OCI name of the opaque-directory marker.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// What unpacking a layer gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// `sha256:` of the uncompressed tar stream (the layer's diff id).
    pub diff_id: String,
    /// Bytes of regular file content unpacked (Docker's layer size).
    pub size: u64,
}

/// Unpacks the (uncompressed) tar stream `reader` into `dest`, which should be empty. `layer`
/// names the layer in errors. The whole stream is read, so the diff id covers trailing padding.
pub fn unpack_layer<R: Read>(reader: R, dest: &Path, layer: &str) -> Result<Unpacked> {
    let bad = |message: String| Error::BadLayer {
        digest: layer.to_string(),
        message,
    };
    let mut hashing = HashingReader::new(reader);
    let mut size = 0u64;
    let mut dirs: Vec<(PathBuf, FileTime)> = Vec::new();
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let entries = archive
            .entries()
            .map_err(|e| bad(format!("read tar: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| bad(format!("read tar: {e}")))?;
            let raw = entry.path_bytes().into_owned();
            let rel = clean_path(&raw).map_err(bad)?;
            let target = dest.join(&rel);
            let name = rel.file_name().map(|n| n.as_bytes().to_vec());
            if let Some(name) = name.as_deref().filter(|n| n.starts_with(b".wh.")) {
                let parent = rel.parent().unwrap_or(Path::new(""));
                ensure_parents(dest, &rel).map_err(bad)?;
                if name == OPAQUE_WHITEOUT.as_bytes() {
                    xattr::set(dest.join(parent), OPAQUE_XATTR, b"y")
                        .map_err(|e| bad(format!("mark {} opaque: {e}", parent.display())))?;
                } else if !name.starts_with(b".wh..wh.") {
                    // `.wh..wh.*` other than the opaque marker are aufs metadata: ignored.
                    let hidden = dest.join(parent).join(OsStr::from_bytes(&name[4..]));
                    remove_existing(&hidden).map_err(bad)?;
                    mknod(&hidden, SFlag::S_IFCHR, Mode::empty(), 0)
                        .map_err(|e| bad(format!("whiteout {}: {e}", hidden.display())))?;
                }
                continue;
            }
            let header = entry.header().clone();
            let kind = header.entry_type();
            if rel.as_os_str().is_empty() {
                // The layer's root directory ("./"): only its metadata applies.
                if kind.is_dir() {
                    apply_metadata(&mut entry, &header, dest, &mut dirs, true).map_err(bad)?;
                }
                continue;
            }
            ensure_parents(dest, &rel).map_err(bad)?;
            let is_dir = kind.is_dir();
            match fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() && is_dir => {}
                Ok(_) => remove_existing(&target).map_err(bad)?,
                Err(_) => {}
            }
            let io_err = |what: &str, e: io::Error| bad(format!("{what} {}: {e}", rel.display()));
            match kind {
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse => {
                    let mut f = fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&target)
                        .map_err(|e| io_err("create", e))?;
                    size += io::copy(&mut entry, &mut f).map_err(|e| io_err("write", e))?;
                }
                tar::EntryType::Directory => {
                    if !target.is_dir() {
                        fs::create_dir(&target).map_err(|e| io_err("mkdir", e))?;
                    }
                }
                tar::EntryType::Symlink => {
                    let link = entry
                        .link_name_bytes()
                        .ok_or_else(|| bad(format!("symlink {} has no target", rel.display())))?;
                    symlink(OsStr::from_bytes(&link), &target).map_err(|e| io_err("symlink", e))?;
                }
                tar::EntryType::Link => {
                    let link = entry
                        .link_name_bytes()
                        .ok_or_else(|| bad(format!("hard link {} has no target", rel.display())))?;
                    let src_rel = clean_path(&link).map_err(bad)?;
                    check_parents(dest, &src_rel).map_err(bad)?;
                    fs::hard_link(dest.join(&src_rel), &target)
                        .map_err(|e| io_err(&format!("link to {}", src_rel.display()), e))?;
                    // A hard link shares its target's inode and metadata.
                    continue;
                }
                tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                    let sflag = match kind {
                        tar::EntryType::Char => SFlag::S_IFCHR,
                        tar::EntryType::Block => SFlag::S_IFBLK,
                        _ => SFlag::S_IFIFO,
                    };
                    let major = header.device_major().ok().flatten().unwrap_or(0);
                    let minor = header.device_minor().ok().flatten().unwrap_or(0);
                    let dev = nix::sys::stat::makedev(major.into(), minor.into());
                    let perm = Mode::from_bits_truncate(header.mode().unwrap_or(0o644) & 0o777);
                    mknod(&target, sflag, perm, dev)
                        .map_err(|e| bad(format!("mknod {}: {e}", rel.display())))?;
                }
                // Pax/GNU long-name records are folded into the next entry by the tar crate.
                _ => continue,
            }
            apply_metadata(&mut entry, &header, &target, &mut dirs, is_dir).map_err(bad)?;
        }
    }
    // Directories' mtimes last: creating their children changed them.
    for (dir, mtime) in dirs.iter().rev() {
        let _ = filetime::set_symlink_file_times(dir, mtime.to_owned(), mtime.to_owned());
    }
    hashing.drain().map_err(|e| bad(format!("read tar: {e}")))?;
    let (diff_id, _) = hashing.finish();
    Ok(Unpacked { diff_id, size })
}

fn apply_metadata<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    header: &tar::Header,
    target: &Path,
    dirs: &mut Vec<(PathBuf, FileTime)>,
    is_dir: bool,
) -> std::result::Result<(), String> {
    let is_symlink = header.entry_type().is_symlink();
    let uid = header.uid().unwrap_or(0);
    let gid = header.gid().unwrap_or(0);
    if let Err(e) = fchownat(
        None,
        target,
        Some(Uid::from_raw(uid as u32)),
        Some(Gid::from_raw(gid as u32)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        // Unprivileged unpacks (unit tests) cannot chown; root always can.
        if nix::unistd::geteuid().is_root() {
            return Err(format!("chown {}: {e}", target.display()));
        }
    }
    let xattrs: Vec<(String, Vec<u8>)> = match entry.pax_extensions() {
        Ok(Some(exts)) => exts
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let key = e.key().ok()?;
                let name = key.strip_prefix("SCHILY.xattr.")?;
                Some((name.to_string(), e.value_bytes().to_vec()))
            })
            .collect(),
        _ => Vec::new(),
    };
    for (name, value) in xattrs {
        if let Err(e) = xattr::set(target, &name, &value) {
            tracing::warn!(path = %target.display(), xattr = %name, error = %e, "cannot set xattr");
        }
    }
    if !is_symlink {
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        fs::set_permissions(target, fs::Permissions::from_mode(mode))
            .map_err(|e| format!("chmod {}: {e}", target.display()))?;
    }
    let mtime = FileTime::from_unix_time(header.mtime().unwrap_or(0) as i64, 0);
    if is_dir {
        dirs.push((target.to_path_buf(), mtime));
    } else {
        let _ = filetime::set_symlink_file_times(target, mtime, mtime);
    }
    Ok(())
}

/// The entry's path relative to the layer root: leading `/` and `./` dropped, `..` refused.
fn clean_path(raw: &[u8]) -> std::result::Result<PathBuf, String> {
    let p = Path::new(OsStr::from_bytes(raw));
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!(
                    "path traversal refused: {:?} leaves the layer",
                    String::from_utf8_lossy(raw)
                ))
            }
        }
    }
    Ok(out)
}

/// Creates the missing parents of `rel` under `dest`; refuses a parent that is a symlink or
/// not a directory (writing through it could land outside the layer).
fn ensure_parents(dest: &Path, rel: &Path) -> std::result::Result<(), String> {
    let mut cur = dest.to_path_buf();
    let parents: Vec<_> = rel
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    for c in parents {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "path traversal refused: {} is under {}, which is not a directory",
                    rel.display(),
                    cur.strip_prefix(dest).unwrap_or(&cur).display()
                ))
            }
            Err(_) => fs::create_dir(&cur).map_err(|e| format!("mkdir {}: {e}", cur.display()))?,
        }
    }
    Ok(())
}

/// Like [`ensure_parents`] but creates nothing (for hard link sources).
fn check_parents(dest: &Path, rel: &Path) -> std::result::Result<(), String> {
    let mut cur = dest.to_path_buf();
    for c in rel
        .parent()
        .map(|p| p.components().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            _ => {
                return Err(format!(
                    "hard link target {} is not inside the layer",
                    rel.display()
                ))
            }
        }
    }
    Ok(())
}

fn remove_existing(path: &Path) -> std::result::Result<(), String> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    }
    .map_err(|e| format!("replace {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o640 });
            h.set_mtime(1_600_000_000);
            if let Some(l) = link {
                b.append_link(&mut h, path, l).unwrap();
            } else {
                // Raw names so tests can write paths the builder would refuse.
                let name = h.as_old_mut().name.as_mut();
                name[..path.len()].copy_from_slice(path.as_bytes());
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn unpacks_files_dirs_links_and_computes_diff_id() {
        let tar = tar_of(&[
            ("./", tar::EntryType::Directory, b"", None),
            ("etc/", tar::EntryType::Directory, b"", None),
            ("etc/a", tar::EntryType::Regular, b"hello", None),
            ("etc/b", tar::EntryType::Link, b"", Some("etc/a")),
            ("etc/s", tar::EntryType::Symlink, b"", Some("a")),
            ("deep/er/f", tar::EntryType::Regular, b"x", None),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let u = unpack_layer(&tar[..], dir.path(), "l").unwrap();
        assert_eq!(u.diff_id, crate::fsutil::sha256_digest(&tar));
        assert_eq!(u.size, 6);
        let d = dir.path();
        assert_eq!(fs::read(d.join("etc/a")).unwrap(), b"hello");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            fs::metadata(d.join("etc/a")).unwrap().ino(),
            fs::metadata(d.join("etc/b")).unwrap().ino()
        );
        assert_eq!(fs::read_link(d.join("etc/s")).unwrap(), Path::new("a"));
        assert_eq!(fs::metadata(d.join("etc/a")).unwrap().mode() & 0o777, 0o640);
        assert_eq!(fs::metadata(d.join("etc")).unwrap().mtime(), 1_600_000_000);
        assert_eq!(fs::read(d.join("deep/er/f")).unwrap(), b"x");
    }

    #[test]
    fn refuses_path_traversal() {
        for entries in [
            vec![("../evil", tar::EntryType::Regular, &b"x"[..], None)],
            vec![("a/../../evil", tar::EntryType::Regular, &b"x"[..], None)],
            vec![
                ("lnk", tar::EntryType::Symlink, &b""[..], Some("/tmp")),
                ("lnk/evil", tar::EntryType::Regular, &b"x"[..], None),
            ],
        ] {
            let outer = tempfile::tempdir().unwrap();
            let dest = outer.path().join("layer");
            fs::create_dir(&dest).unwrap();
            let e = unpack_layer(&tar_of(&entries)[..], &dest, "sha256:l").unwrap_err();
            assert!(e.to_string().contains("path traversal refused"), "{e}");
            assert!(!outer.path().join("evil").exists());
        }
    }

    #[test]
    fn hard_link_outside_the_layer_is_refused() {
        let tar = tar_of(&[
            ("l", tar::EntryType::Symlink, b"", Some("/etc")),
            ("h", tar::EntryType::Link, b"", Some("l/passwd")),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let e = unpack_layer(&tar[..], dir.path(), "l").unwrap_err();
        assert!(e.to_string().contains("not inside the layer"), "{e}");
    }

    #[test]
    #[ignore = "needs root: mknod whiteouts and trusted xattrs"]
    fn whiteouts_become_overlay_whiteouts() {
        berth_tests::skip_unless_root!();
        let tar = tar_of(&[
            ("a/", tar::EntryType::Directory, b"", None),
            ("a/.wh..wh..opq", tar::EntryType::Regular, b"", None),
            ("b/.wh.gone", tar::EntryType::Regular, b"", None),
            ("dev/null", tar::EntryType::Char, b"", None),
        ]);
        let dir = tempfile::tempdir().unwrap();
        unpack_layer(&tar[..], dir.path(), "l").unwrap();
        assert_eq!(
            xattr::get(dir.path().join("a"), OPAQUE_XATTR)
                .unwrap()
                .unwrap(),
            b"y"
        );
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let m = fs::symlink_metadata(dir.path().join("b/gone")).unwrap();
        assert!(m.file_type().is_char_device() && m.rdev() == 0);
        assert!(!dir.path().join("b/.wh.gone").exists());
        assert!(fs::symlink_metadata(dir.path().join("dev/null"))
            .unwrap()
            .file_type()
            .is_char_device());
    }
}
