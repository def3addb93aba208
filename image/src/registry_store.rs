//! The image store as the registry client's pull and push pipelines use it.

use std::path::{Path, PathBuf};

use berth_registry::{BlobInfo, LocalImage, NewImage, RegistryStore};

use crate::store::NewRecord;
use crate::{Error, ImageStore};

fn to_registry(e: Error) -> berth_registry::Error {
    berth_registry::Error::Store(e.to_string())
}

impl RegistryStore for ImageStore {
    fn has_layer(&self, diff_id: &str) -> bool {
        self.inner.has_layer(diff_id)
    }

    fn new_layer_dir(&self) -> berth_registry::Result<PathBuf> {
        let dir = self.inner.tmp_path("pull");
        std::fs::create_dir_all(&dir)
            .map_err(|e| berth_registry::Error::Store(format!("{}: {e}", dir.display())))?;
        Ok(dir)
    }

    fn commit_layer(&self, dir: &Path, diff_id: &str) -> berth_registry::Result<()> {
        self.inner
            .commit_layer(dir, diff_id, None)
            .map_err(to_registry)
    }

    fn discard_layer_dir(&self, dir: &Path) {
        let _ = std::fs::remove_dir_all(dir);
    }

    fn layer_path(&self, diff_id: &str) -> Option<PathBuf> {
        self.inner
            .has_layer(diff_id)
            .then(|| self.inner.layer_dir(diff_id))
    }

    fn put_layer_blob(
        &self,
        file: &Path,
        layer_diff_id: &str,
        info: &BlobInfo,
    ) -> berth_registry::Result<()> {
        self.inner
            .put_layer_blob(file, layer_diff_id, info)
            .map_err(to_registry)
    }

    fn layer_blob(&self, layer_diff_id: &str) -> Option<(PathBuf, BlobInfo)> {
        self.inner.layer_blob(layer_diff_id)
    }

    fn register_image(&self, image: NewImage) -> berth_registry::Result<String> {
        self.inner
            .register(NewRecord {
                config: image.config,
                diff_ids: image.diff_ids,
                tags: image.repo_tag.into_iter().collect(),
                repo_digest: Some(image.repo_digest),
                parent: String::new(),
                cache_key: None,
            })
            .map_err(to_registry)
    }

    fn image(&self, reference: &str) -> berth_registry::Result<Option<LocalImage>> {
        match self.inner.get(reference) {
            Ok(img) => Ok(Some(LocalImage {
                config: self.inner.config_blob(&img.id).map_err(to_registry)?,
                id: img.id,
                diff_ids: img.diff_ids,
            })),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(to_registry(e)),
        }
    }

    fn add_repo_digest(&self, image_id: &str, repo_digest: &str) -> berth_registry::Result<()> {
        self.inner
            .add_repo_digest(image_id, repo_digest)
            .map_err(to_registry)
    }

    fn downloads_dir(&self) -> PathBuf {
        self.inner.downloads_dir()
    }
}
