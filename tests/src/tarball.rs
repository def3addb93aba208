//! Rootfs tarballs and OCI image layers made from a directory (usually the busybox tree).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// Media type of a gzip-compressed OCI layer.
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Media type of an uncompressed OCI layer.
pub const MEDIA_TYPE_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// An image layer blob with the digests a manifest and an image config need.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The blob as stored and pushed (tar, or tar+gzip).
    pub bytes: Vec<u8>,
    /// `sha256:<hex>` of [`Layer::bytes`] (the manifest's layer digest).
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar (the image config's `rootfs.diff_ids`).
    pub diff_id: String,
    /// [`MEDIA_TYPE_LAYER_GZIP`] or [`MEDIA_TYPE_LAYER_TAR`].
    pub media_type: &'static str,
}

impl Layer {
    /// Packs `dir` into a layer, gzip-compressed if `gzip`.
    pub fn from_dir(dir: &Path, gzip: bool) -> Result<Layer> {
        let tar = tar_dir(dir)?;
        let diff_id = sha256_digest(&tar);
        let (bytes, media_type) = if gzip {
            let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&tar).context("gzip layer")?;
            (enc.finish().context("finish gzip")?, MEDIA_TYPE_LAYER_GZIP)
        } else {
            (tar.clone(), MEDIA_TYPE_LAYER_TAR)
        };
        Ok(Layer {
            digest: sha256_digest(&bytes),
            diff_id,
            bytes,
            media_type,
        })
    }

    /// A gzip layer holding a fresh busybox tree (see [`crate::rootfs::populate`]).
    pub fn busybox() -> Result<Layer> {
        let dir = tempfile::tempdir().context("temp dir for busybox layer")?;
        crate::rootfs::populate(dir.path())?;
        Layer::from_dir(dir.path(), true)
    }

    /// Size of the blob in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// An uncompressed tar of `dir`'s contents, paths relative to `dir`, symlinks kept as symlinks,
/// entries sorted and owned by root so the same tree always gives the same bytes and digest.
pub fn tar_dir(dir: &Path) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Deterministic);
    append_sorted(&mut builder, dir, Path::new(""))?;
    builder.into_inner().context("finish tar")
}

/// Writes [`tar_dir`] of `dir` to `dest`.
pub fn write_rootfs_tar(dir: &Path, dest: &Path) -> Result<()> {
    std::fs::write(dest, tar_dir(dir)?).with_context(|| format!("write {}", dest.display()))
}

fn append_sorted(builder: &mut tar::Builder<Vec<u8>>, root: &Path, rel: &Path) -> Result<()> {
    let here = root.join(rel);
    let mut entries: Vec<_> = std::fs::read_dir(&here)
        .with_context(|| format!("read dir {}", here.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("list {}", here.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let rel_path = rel.join(entry.file_name());
        let full = entry.path();
        let ft = entry.file_type().context("file type")?;
        builder
            .append_path_with_name(&full, &rel_path)
            .with_context(|| format!("add {} to tar", full.display()))?;
        if ft.is_dir() {
            append_sorted(builder, root, &rel_path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_layer_is_deterministic_and_complete() {
        let a = Layer::busybox().unwrap();
        let b = Layer::busybox().unwrap();
        assert_eq!(a.diff_id, b.diff_id, "same tree, same tar");
        assert!(a.digest.starts_with("sha256:") && a.digest.len() == 71);
        assert_eq!(a.media_type, MEDIA_TYPE_LAYER_GZIP);

        let dec = flate2::read::GzDecoder::new(&a.bytes[..]);
        let mut archive = tar::Archive::new(dec);
        let mut saw_busybox = false;
        let mut saw_sh_link = false;
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let path = e.path().unwrap().into_owned();
            if path == Path::new("bin/busybox") {
                saw_busybox = e.header().entry_type().is_file() && e.size() > 100_000;
            }
            if path == Path::new("bin/sh") {
                saw_sh_link = e.header().entry_type().is_symlink()
                    && e.link_name().unwrap().unwrap() == Path::new("busybox");
            }
        }
        assert!(saw_busybox && saw_sh_link);
    }

    #[test]
    fn tar_roundtrips_through_unpack() {
        let src = tempfile::tempdir().unwrap();
        crate::rootfs::populate(src.path()).unwrap();
        let tarball = src
            .path()
            .join("../")
            .join(format!("berth-tar-test-{}.tar", crate::unique_id("t")));
        write_rootfs_tar(src.path(), &tarball).unwrap();
        let dst = tempfile::tempdir().unwrap();
        tar::Archive::new(std::fs::File::open(&tarball).unwrap())
            .unpack(dst.path())
            .unwrap();
        std::fs::remove_file(&tarball).unwrap();
        assert!(dst.path().join("bin/busybox").is_file());
        assert!(dst.path().join("etc/passwd").is_file());
    }
}
