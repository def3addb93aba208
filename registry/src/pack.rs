//! Packing an unpacked layer directory back into a tar stream for a push, deterministically
//! (sorted entries, metadata from the files), with overlayfs whiteouts turned back into OCI
//! `.wh.` entries.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::unpack::{OPAQUE_WHITEOUT, OPAQUE_XATTR, WHITEOUT_PREFIX};

/// Writes the tar of layer directory `dir` to `out`. The same tree always gives the same bytes.
pub fn pack_layer<W: Write>(dir: &Path, out: W) -> Result<W> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    walk(dir, "", &mut b, &mut links)?;
    b.into_inner()
        .map_err(|e| Error::io("finish tar of", dir, e))
}

fn walk<W: Write>(
    root: &Path,
    rel: &str,
    b: &mut tar::Builder<W>,
    links: &mut HashMap<(u64, u64), String>,
) -> Result<()> {
    let here = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let mut names: Vec<_> = fs::read_dir(&here)
        .map_err(|e| Error::io("read dir", &here, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io("read dir", &here, e))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let name = name.to_string_lossy().into_owned();
        let path_rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let full = root.join(&path_rel);
        let m = fs::symlink_metadata(&full).map_err(|e| Error::io("stat", &full, e))?;
        let ft = m.file_type();
        let mut h = tar::Header::new_gnu();
        h.set_uid(m.uid().into());
        h.set_gid(m.gid().into());
        h.set_mtime(m.mtime().max(0) as u64);
        h.set_mode(m.mode() & 0o7777);
        let io = |e| Error::io("add to tar", &full, e);
        if ft.is_char_device() && m.rdev() == 0 {
            // An overlayfs whiteout: OCI's empty `.wh.<name>` file.
            let wh = match rel {
                "" => format!("{WHITEOUT_PREFIX}{name}"),
                r => format!("{r}/{WHITEOUT_PREFIX}{name}"),
            };
            let mut h = whiteout_header(&m);
            b.append_data(&mut h, wh, std::io::empty()).map_err(io)?;
            continue;
        }
        append_xattrs(b, &full)?;
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            b.append_data(&mut h, format!("{path_rel}/"), std::io::empty())
                .map_err(io)?;
            if xattr::get(&full, OPAQUE_XATTR).ok().flatten().as_deref() == Some(b"y") {
                let mut h = whiteout_header(&m);
                b.append_data(
                    &mut h,
                    format!("{path_rel}/{OPAQUE_WHITEOUT}"),
                    std::io::empty(),
                )
                .map_err(io)?;
            }
            walk(root, &path_rel, b, links)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&full).map_err(|e| Error::io("readlink", &full, e))?;
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, &path_rel, target).map_err(io)?;
        } else if ft.is_file() {
            if m.nlink() > 1 {
                if let Some(first) = links.get(&(m.dev(), m.ino())) {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, &path_rel, first).map_err(io)?;
                    continue;
                }
                links.insert((m.dev(), m.ino()), path_rel.clone());
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(m.len());
            let f = fs::File::open(&full).map_err(|e| Error::io("open", &full, e))?;
            b.append_data(&mut h, &path_rel, f).map_err(io)?;
        } else {
            let kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else if ft.is_fifo() {
                tar::EntryType::Fifo
            } else {
                tracing::warn!(path = %full.display(), "socket not packed into layer");
                continue;
            };
            h.set_entry_type(kind);
            h.set_size(0);
            let rdev = m.rdev();
            h.set_device_major(nix::sys::stat::major(rdev) as u32)
                .map_err(io)?;
            h.set_device_minor(nix::sys::stat::minor(rdev) as u32)
                .map_err(io)?;
            b.append_data(&mut h, &path_rel, std::io::empty())
                .map_err(io)?;
        }
    }
    Ok(())
}

fn whiteout_header(m: &fs::Metadata) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(0);
    h.set_mode(0o644);
    h.set_mtime(m.mtime().max(0) as u64);
    h
}

/// Adds a PAX record with the file's xattrs (except overlayfs' own) before its entry.
fn append_xattrs<W: Write>(b: &mut tar::Builder<W>, path: &Path) -> Result<()> {
    let Ok(names) = xattr::list(path) else {
        return Ok(());
    };
    let mut records: Vec<(String, Vec<u8>)> = Vec::new();
    for n in names {
        let n = n.to_string_lossy().into_owned();
        if n.starts_with("trusted.overlay.") || n.starts_with("user.overlay.") {
            continue;
        }
        if let Ok(Some(v)) = xattr::get(path, &n) {
            records.push((format!("SCHILY.xattr.{n}"), v));
        }
    }
    if records.is_empty() {
        return Ok(());
    }
    records.sort();
    b.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
        .map_err(|e| Error::io("add xattrs to tar", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_unpack_round_trip_is_deterministic() {
        let src = tempfile::tempdir().unwrap();
        let d = src.path();
        fs::create_dir_all(d.join("a/b")).unwrap();
        fs::write(d.join("a/f"), b"data").unwrap();
        fs::hard_link(d.join("a/f"), d.join("a/b/h")).unwrap();
        std::os::unix::fs::symlink("../f", d.join("a/b/s")).unwrap();
        let t1 = pack_layer(d, Vec::new()).unwrap();
        let t2 = pack_layer(d, Vec::new()).unwrap();
        assert_eq!(t1, t2);
        let dst = tempfile::tempdir().unwrap();
        let u = crate::unpack::unpack_layer(&t1[..], dst.path(), "l").unwrap();
        assert_eq!(u.diff_id, crate::fsutil::sha256_digest(&t1));
        let t3 = pack_layer(dst.path(), Vec::new()).unwrap();
        assert_eq!(t1, t3, "unpacked tree packs to the same bytes");
        let m1 = fs::metadata(dst.path().join("a/f")).unwrap();
        let m2 = fs::metadata(dst.path().join("a/b/h")).unwrap();
        assert_eq!(m1.ino(), m2.ino());
    }
}
