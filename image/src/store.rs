//! The store's implementation (being written; see the contract in lib.rs).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::{
    DiskUsage, Error, HistoryItem, Image, ImportOptions, Loaded, PruneReport, Removed, Result,
    RootfsMount,
};

fn pending() -> Error {
    Error::Internal("image store: not implemented yet".into())
}

#[derive(Debug)]
pub(crate) struct Store {
    root: PathBuf,
}

impl Store {
    pub(crate) fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root)
            .map_err(|e| Error::Internal(format!("{}: {e}", root.display())))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }
    pub(crate) fn root(&self) -> PathBuf {
        self.root.clone()
    }
    pub(crate) fn list(&self) -> Result<Vec<Image>> {
        Err(pending())
    }
    pub(crate) fn get(&self, _reference: &str) -> Result<Image> {
        Err(pending())
    }
    pub(crate) fn load(&self, _archive: impl Read) -> Result<Vec<Loaded>> {
        Err(pending())
    }
    pub(crate) fn import(&self, _tarball: impl Read, _options: &ImportOptions) -> Result<Image> {
        Err(pending())
    }
    pub(crate) fn save(&self, _references: &[String], _out: impl Write) -> Result<()> {
        Err(pending())
    }
    pub(crate) fn tag(&self, _source: &str, _target: &str) -> Result<()> {
        Err(pending())
    }
    pub(crate) fn remove(
        &self,
        _reference: &str,
        _force: bool,
        _noprune: bool,
        _in_use: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<Removed>> {
        Err(pending())
    }
    pub(crate) fn prune(&self, _all: bool, _in_use: &dyn Fn(&str) -> bool) -> Result<PruneReport> {
        Err(pending())
    }
    pub(crate) fn history(&self, _reference: &str) -> Result<Vec<HistoryItem>> {
        Err(pending())
    }
    pub(crate) fn prepare_rootfs(
        &self,
        _image_id: &str,
        _container_id: &str,
    ) -> Result<RootfsMount> {
        Err(pending())
    }
    pub(crate) fn remove_rootfs(&self, _container_id: &str) -> Result<()> {
        Err(pending())
    }
    pub(crate) fn rootfs_upper(&self, container_id: &str) -> PathBuf {
        self.root.join("containers").join(container_id)
    }
    pub(crate) fn disk_usage(&self) -> Result<DiskUsage> {
        Err(pending())
    }
}
