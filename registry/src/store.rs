//! Where pulled images go and pushed images come from: the [`RegistryStore`] trait the
//! pipeline codes against, and [`DirStore`], a small file-based implementation used by the
//! tests and as the adapter until the image store (`berth-image`) offers the same calls.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::{digest_hex, sha256_digest, write_atomic};
use crate::reference::Reference;

/// A compressed layer blob kept for pushes (the original from a registry, or one packed for an
/// earlier push), so pushing the same layer again gives the same digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobInfo {
    /// `sha256:` of the compressed blob.
    pub digest: String,
    /// Blob size in bytes.
    pub size: u64,
    /// Its media type (`application/vnd.oci.image.layer.v1.tar+gzip`, ...).
    pub media_type: String,
    /// `sha256:` of the blob's uncompressed tar.
    pub diff_id: String,
}

/// A verified image to register after a pull.
#[derive(Debug, Clone)]
pub struct NewImage {
    /// The config blob as pulled (its digest is the image id).
    pub config: Vec<u8>,
    /// Layer diff ids, bottom first (all already committed with [`RegistryStore::commit_layer`]).
    pub diff_ids: Vec<String>,
    /// `name:tag` to point at the image (Docker's familiar form), if pulled by tag.
    pub repo_tag: Option<String>,
    /// `name@sha256:<manifest or index digest>`.
    pub repo_digest: String,
}

/// An image as a push needs it.
#[derive(Debug, Clone)]
pub struct LocalImage {
    /// `sha256:` of the config.
    pub id: String,
    /// The config blob.
    pub config: Vec<u8>,
    /// Layer diff ids, bottom first.
    pub diff_ids: Vec<String>,
}

/// The image store as the pull and push pipelines use it. Every method is called from
/// blocking threads (never holds the async runtime).
pub trait RegistryStore: Send + Sync + std::fmt::Debug + 'static {
    /// Whether the layer with this diff id is unpacked in the store.
    fn has_layer(&self, diff_id: &str) -> bool;
    /// A fresh empty directory, on the layers' filesystem, to unpack a layer into.
    fn new_layer_dir(&self) -> Result<PathBuf>;
    /// Moves the unpacked and verified layer `dir` into place under `diff_id`. If the store
    /// got the layer meanwhile, `dir` is discarded.
    fn commit_layer(&self, dir: &Path, diff_id: &str) -> Result<()>;
    /// Throws away a directory from [`RegistryStore::new_layer_dir`].
    fn discard_layer_dir(&self, dir: &Path);
    /// The directory of an unpacked layer.
    fn layer_path(&self, diff_id: &str) -> Option<PathBuf>;
    /// Keeps the verified compressed blob in `file` (moved) as layer `layer_diff_id`'s blob.
    fn put_layer_blob(&self, file: &Path, layer_diff_id: &str, info: &BlobInfo) -> Result<()>;
    /// The kept compressed blob of a layer, if any.
    fn layer_blob(&self, layer_diff_id: &str) -> Option<(PathBuf, BlobInfo)>;
    /// Registers a verified image; returns its id. Moves `repo_tag` from any other image.
    fn register_image(&self, image: NewImage) -> Result<String>;
    /// The image a reference (`name:tag` in Docker's familiar form, or an id) names.
    fn image(&self, reference: &str) -> Result<Option<LocalImage>>;
    /// Records `name@sha256:...` for an image after a push.
    fn add_repo_digest(&self, image_id: &str, repo_digest: &str) -> Result<()>;
    /// Where partial downloads live (`<root>/downloads`), on the layers' filesystem.
    fn downloads_dir(&self) -> PathBuf;
}

/// An image record of [`DirStore`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DirImage {
    /// `sha256:` of the config.
    pub id: String,
    /// Layer diff ids, bottom first.
    pub diff_ids: Vec<String>,
    /// `name:tag` references.
    pub repo_tags: Vec<String>,
    /// `name@sha256:` references.
    pub repo_digests: Vec<String>,
}

/// A file-based [`RegistryStore`]:
///
/// ```text
/// <root>/blobs/sha256/<hex>          configs and compressed layer blobs
/// <root>/layers/<hex of diff id>/    unpacked layers
/// <root>/layer-blobs/<hex>.json      diff id -> kept compressed blob (BlobInfo)
/// <root>/images/<hex of id>.json     image records (DirImage)
/// <root>/downloads/<hex>.partial     partial downloads, resumed with Range requests
/// <root>/tmp/                        layers being unpacked
/// ```
#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
    seq: AtomicU64,
    /// Serializes image record updates (tags move between records).
    records: Mutex<()>,
}

impl DirStore {
    /// Opens (creating) a store under `root`; leftovers of interrupted unpacks are removed.
    pub fn open(root: &Path) -> Result<DirStore> {
        for d in [
            "blobs/sha256",
            "layers",
            "layer-blobs",
            "images",
            "downloads",
            "tmp",
        ] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(|e| Error::io("create dir", &p, e))?;
        }
        let tmp = root.join("tmp");
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for e in entries.flatten() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        Ok(DirStore {
            root: root.to_path_buf(),
            seq: AtomicU64::new(0),
            records: Mutex::new(()),
        })
    }

    /// The store's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every image record.
    pub fn images(&self) -> Result<Vec<DirImage>> {
        let dir = self.root.join("images");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(|e| Error::io("read dir", &dir, e))? {
            let p = e.map_err(|e| Error::io("read dir", &dir, e))?.path();
            if p.extension().is_some_and(|x| x == "json") {
                let data = std::fs::read(&p).map_err(|e| Error::io("read", &p, e))?;
                out.push(
                    serde_json::from_slice(&data)
                        .map_err(|e| Error::Store(format!("parse {}: {e}", p.display())))?,
                );
            }
        }
        Ok(out)
    }

    /// The path of a blob by digest.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(digest_hex(digest))
    }

    /// Removes an image record (not its layers), as `rmi` would before a pull-back test.
    pub fn remove_image(&self, id: &str) -> Result<()> {
        let p = self.image_path(id);
        std::fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))
    }

    /// Makes an image from uncompressed layer tars (bottom first) and a config template
    /// (whose `rootfs` is replaced), tagged `repo_tag`; no compressed blobs are kept, so a
    /// push packs the layers. Used to build test images without a registry.
    pub fn create_image(
        &self,
        layers: &[Vec<u8>],
        mut config: serde_json::Value,
        repo_tag: &str,
    ) -> Result<String> {
        let mut diff_ids = Vec::new();
        for tar in layers {
            let dir = self.new_layer_dir()?;
            let u = crate::unpack::unpack_layer(&tar[..], &dir, "local layer")?;
            self.commit_layer(&dir, &u.diff_id)?;
            diff_ids.push(u.diff_id);
        }
        config["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": diff_ids});
        let config = serde_json::to_vec(&config).map_err(|e| Error::Store(e.to_string()))?;
        let tag = Reference::parse(repo_tag)?
            .with_default_tag()
            .familiar_string();
        self.register(&config, diff_ids, Some(tag), None)
    }

    fn image_path(&self, id: &str) -> PathBuf {
        self.root
            .join("images")
            .join(format!("{}.json", digest_hex(id)))
    }

    fn read_image(&self, id: &str) -> Result<Option<DirImage>> {
        let p = self.image_path(id);
        match std::fs::read(&p) {
            Ok(d) => serde_json::from_slice(&d)
                .map(Some)
                .map_err(|e| Error::Store(format!("parse {}: {e}", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", &p, e)),
        }
    }

    fn write_image(&self, img: &DirImage) -> Result<()> {
        let json = serde_json::to_vec_pretty(img).map_err(|e| Error::Store(e.to_string()))?;
        write_atomic(&self.image_path(&img.id), &json, 0o644)
    }

    fn register(
        &self,
        config: &[u8],
        diff_ids: Vec<String>,
        repo_tag: Option<String>,
        repo_digest: Option<String>,
    ) -> Result<String> {
        let id = sha256_digest(config);
        write_atomic(&self.blob_path(&id), config, 0o644)?;
        let _guard = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tag) = &repo_tag {
            for mut other in self.images()? {
                if other.id != id && other.repo_tags.contains(tag) {
                    other.repo_tags.retain(|t| t != tag);
                    self.write_image(&other)?;
                }
            }
        }
        let mut img = self.read_image(&id)?.unwrap_or_else(|| DirImage {
            id: id.clone(),
            diff_ids: diff_ids.clone(),
            ..DirImage::default()
        });
        if let Some(t) = repo_tag {
            if !img.repo_tags.contains(&t) {
                img.repo_tags.push(t);
            }
        }
        if let Some(d) = repo_digest {
            if !img.repo_digests.contains(&d) {
                img.repo_digests.push(d);
            }
        }
        self.write_image(&img)?;
        Ok(id)
    }
}

impl RegistryStore for DirStore {
    fn has_layer(&self, diff_id: &str) -> bool {
        self.root.join("layers").join(digest_hex(diff_id)).is_dir()
    }

    fn new_layer_dir(&self) -> Result<PathBuf> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let p = self
            .root
            .join("tmp")
            .join(format!("{}-{n}", std::process::id()));
        std::fs::create_dir(&p).map_err(|e| Error::io("create layer dir", &p, e))?;
        Ok(p)
    }

    fn commit_layer(&self, dir: &Path, diff_id: &str) -> Result<()> {
        let dest = self.root.join("layers").join(digest_hex(diff_id));
        if dest.is_dir() {
            self.discard_layer_dir(dir);
            return Ok(());
        }
        match std::fs::rename(dir, &dest) {
            Ok(()) => {
                crate::fsutil::sync_dir(&self.root.join("layers"));
                Ok(())
            }
            // Another pull committed the same layer first.
            Err(_) if dest.is_dir() => {
                self.discard_layer_dir(dir);
                Ok(())
            }
            Err(e) => Err(Error::io("commit layer", &dest, e)),
        }
    }

    fn discard_layer_dir(&self, dir: &Path) {
        let _ = std::fs::remove_dir_all(dir);
    }

    fn layer_path(&self, diff_id: &str) -> Option<PathBuf> {
        let p = self.root.join("layers").join(digest_hex(diff_id));
        p.is_dir().then_some(p)
    }

    fn put_layer_blob(&self, file: &Path, layer_diff_id: &str, info: &BlobInfo) -> Result<()> {
        let dest = self.blob_path(&info.digest);
        std::fs::rename(file, &dest).map_err(|e| Error::io("store blob", &dest, e))?;
        let json = serde_json::to_vec(info).map_err(|e| Error::Store(e.to_string()))?;
        write_atomic(
            &self
                .root
                .join("layer-blobs")
                .join(format!("{}.json", digest_hex(layer_diff_id))),
            &json,
            0o644,
        )
    }

    fn layer_blob(&self, layer_diff_id: &str) -> Option<(PathBuf, BlobInfo)> {
        let p = self
            .root
            .join("layer-blobs")
            .join(format!("{}.json", digest_hex(layer_diff_id)));
        let info: BlobInfo = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
        let blob = self.blob_path(&info.digest);
        blob.is_file().then_some((blob, info))
    }

    fn register_image(&self, image: NewImage) -> Result<String> {
        self.register(
            &image.config,
            image.diff_ids,
            image.repo_tag,
            Some(image.repo_digest),
        )
    }

    fn image(&self, reference: &str) -> Result<Option<LocalImage>> {
        let found = if reference.starts_with("sha256:") {
            self.read_image(reference)?
        } else {
            let want = Reference::parse(reference)?
                .with_default_tag()
                .familiar_string();
            self.images()?
                .into_iter()
                .find(|i| i.repo_tags.contains(&want) || i.repo_digests.contains(&want))
        };
        let Some(img) = found else { return Ok(None) };
        let p = self.blob_path(&img.id);
        let config = std::fs::read(&p).map_err(|e| Error::io("read config", &p, e))?;
        Ok(Some(LocalImage {
            id: img.id,
            config,
            diff_ids: img.diff_ids,
        }))
    }

    fn add_repo_digest(&self, image_id: &str, repo_digest: &str) -> Result<()> {
        let _guard = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut img) = self.read_image(image_id)? {
            if !img.repo_digests.iter().any(|d| d == repo_digest) {
                img.repo_digests.push(repo_digest.to_string());
                self.write_image(&img)?;
            }
        }
        Ok(())
    }

    fn downloads_dir(&self) -> PathBuf {
        self.root.join("downloads")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_tag_lookup_and_move_tags() {
        let dir = tempfile::tempdir().unwrap();
        let s = DirStore::open(dir.path()).unwrap();
        let tar = crate::pack::pack_layer(
            &{
                let d = dir.path().join("src");
                std::fs::create_dir(&d).unwrap();
                std::fs::write(d.join("f"), b"1").unwrap();
                d
            },
            Vec::new(),
        )
        .unwrap();
        let id1 = s
            .create_image(
                std::slice::from_ref(&tar),
                serde_json::json!({"os": "linux"}),
                "x",
            )
            .unwrap();
        let img = s.image("x:latest").unwrap().unwrap();
        assert_eq!(img.id, id1);
        assert!(s.has_layer(&img.diff_ids[0]));
        let id2 = s
            .create_image(
                &[tar],
                serde_json::json!({"os": "linux", "v": 2}),
                "x:latest",
            )
            .unwrap();
        assert_ne!(id1, id2);
        assert_eq!(s.image("x").unwrap().unwrap().id, id2);
        assert!(s.read_image(&id1).unwrap().unwrap().repo_tags.is_empty());
        assert!(s.image("y").unwrap().is_none());
    }
}
