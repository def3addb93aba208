//! berth's image store: used by berthd (and later by the supervisor's CRI image service).
//!
//! This file is the contract between the store and its callers. The engine codes against the
//! types and method signatures here; their bodies live in the modules below.
//!
//! - Content-addressed: every blob (layer tarball, image config, manifest) is stored under its
//!   sha256 digest and checked against it when written and when read back.
//! - An image's id is the digest of its config blob (`sha256:<hex>`), as in Docker.
//! - Layers are unpacked once per diff id into a directory usable as an overlayfs lowerdir,
//!   and shared between images.
//! - A container's rootfs is an overlay mount over its image's layers with a writable upper
//!   dir owned by the store ([`ImageStore::prepare_rootfs`] / [`ImageStore::remove_rootfs`]).
//! - Every record is written crash-safely (temp file, fsync, rename, fsync dir).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod archive;
mod changes;
mod error;
mod fsutil;
mod registry_store;
pub mod rootfs;
mod store;

pub use changes::go_duration;
pub use error::{Error, Result};

/// A stored image: its identity, names and parsed config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Image {
    /// `sha256:<hex>` of the config blob.
    pub id: String,
    /// `name:tag` references pointing at this image, normalized as Docker prints them
    /// (`busybox:latest`, `localhost:5000/app:v1`; `docker.io/library/` dropped).
    pub repo_tags: Vec<String>,
    /// `name@sha256:<manifest digest>` for images that came from (or went to) a registry.
    pub repo_digests: Vec<String>,
    /// Parent image id (only for images built locally; empty otherwise).
    pub parent: String,
    /// The image config blob as stored (OCI image config / Docker image config JSON: `config`,
    /// `rootfs`, `history`, `created`, `architecture`, `os`, ...).
    pub config: oci_spec::image::ImageConfiguration,
    /// The same config as raw JSON, with every field Docker images carry (Healthcheck,
    /// OnBuild, Shell, ...), for callers that print it whole.
    pub raw_config: serde_json::Value,
    /// Layer diff ids (`sha256:` of the uncompressed tars), bottom first.
    pub diff_ids: Vec<String>,
    /// Total unpacked size of the layers in bytes (Docker's `Size`).
    pub size: u64,
    /// When the store got the image (RFC 3339), for `Metadata.LastTagTime`-like needs.
    pub added: String,
    /// The build cache key of the step that made it (images made by `docker build`).
    pub cache_key: Option<String>,
}

/// One entry of `docker image history`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryItem {
    /// Image id for the top entry, `<missing>` for the others (as Docker).
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    pub created_by: String,
    pub tags: Vec<String>,
    /// Size of the layer this step made (0 for empty layers).
    pub size: u64,
    pub comment: String,
}

/// What `load` did, in Docker's words (`Loaded image: x:y`, `Loaded image ID: sha256:...`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Loaded {
    pub id: String,
    /// References tagged by the load (empty when the archive named none).
    pub repo_tags: Vec<String>,
}

/// One line of an image removal's answer (`Untagged: ...` / `Deleted: ...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Removed {
    Untagged(String),
    Deleted(String),
}

/// What a prune removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PruneReport {
    pub removed: Vec<Removed>,
    /// Bytes freed on disk.
    pub space_reclaimed: u64,
}

/// Changes applied to the config of an imported rootfs (`docker import --change`, `--message`).
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// The image the container was made from (its id).
    pub parent: String,
    /// Reference to tag the result with (`repo[:tag]`).
    pub reference: Option<String>,
    /// The new image's `config` (Docker's Config of the container, image fields only).
    pub config: serde_json::Value,
    /// Dockerfile-style instructions applied over `config` (`--change`).
    pub changes: Vec<String>,
    /// `--message`, `--author`, and the container's command for the history.
    pub comment: String,
    pub author: String,
    pub created_by: String,
    /// The container's id, recorded in the image config as Docker does.
    pub container: String,
}

/// Where a build step's layer comes from.
pub enum LayerSource<'a> {
    /// A layer tar (OCI whiteouts), unpacked into the store.
    Tar(&'a mut dyn Read),
    /// A directory already holding the layer in overlay form, moved into the store, and the
    /// tar of it (hashed for the diff id and kept as the layer's blob).
    Dir {
        dir: &'a Path,
        tar: &'a mut dyn Read,
    },
    /// A layer the store holds already (a `--cache-from` image's), by diff id.
    Existing(String),
}

impl std::fmt::Debug for LayerSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayerSource::Tar(_) => f.write_str("LayerSource::Tar"),
            LayerSource::Dir { dir, .. } => write!(f, "LayerSource::Dir({})", dir.display()),
            LayerSource::Existing(d) => write!(f, "LayerSource::Existing({d})"),
        }
    }
}

/// A build step's image (`ImageStore::build_commit`).
#[derive(Debug, Clone, Default)]
pub struct BuildCommit {
    /// The parent image's id (empty for `scratch`).
    pub parent: String,
    /// The parent's whole config (for scratch: an empty one with os and architecture).
    pub parent_config: serde_json::Value,
    /// The new image's container config.
    pub config: serde_json::Value,
    /// The history entry's `created_by`.
    pub created_by: String,
    /// The key later builds find this step by.
    pub cache_key: String,
    /// The build container it came from (empty for a config-only step).
    pub container: String,
}

/// Options of [`ImageStore::import`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Reference to tag the result with (`repo[:tag]`).
    pub reference: Option<String>,
    /// Dockerfile-style instructions: `CMD ["sh"]`, `ENV A=b`, `WORKDIR /x`, `ENTRYPOINT ...`,
    /// `USER`, `LABEL`, `EXPOSE`, `VOLUME`, `STOPSIGNAL`.
    pub changes: Vec<String>,
    /// History comment.
    pub message: String,
    /// Platform of the result; empty means the host's.
    pub os: String,
    pub architecture: String,
}

/// The mounts that make a container's rootfs, in the supervisor's `Mount` shape
/// (`berth.types.v1.Mount`): one overlay mount with `lowerdir=...,upperdir=...,workdir=...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootfsMount {
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Disk usage for `/system/df`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DiskUsage {
    /// Bytes used by all layers (shared ones counted once).
    pub layers_size: u64,
    /// Per container id: bytes in its writable layer.
    pub containers: Vec<(String, u64)>,
}

/// The store. Cheap to clone; safe to use from several threads (the engine calls it from
/// `spawn_blocking`).
#[derive(Debug, Clone)]
pub struct ImageStore {
    inner: std::sync::Arc<store::Store>,
}

impl ImageStore {
    /// Opens (creating if needed) the store under `root` (berthd uses `<data-root>/image`).
    /// Leftovers of interrupted writes are cleaned up.
    pub fn open(root: &Path) -> Result<Self> {
        Ok(Self {
            inner: std::sync::Arc::new(store::Store::open(root)?),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> PathBuf {
        self.inner.root()
    }

    /// Every image, newest first.
    pub fn list(&self) -> Result<Vec<Image>> {
        self.inner.list()
    }

    /// Resolves a reference as Docker does: `name[:tag]` (tag defaults to `latest`),
    /// `name@sha256:...`, a full id `sha256:<hex>`, or an unambiguous id prefix (≥ 1 hex digit,
    /// with or without `sha256:`). [`Error::NotFound`] carries Docker's
    /// `No such image: <ref>` text.
    pub fn get(&self, reference: &str) -> Result<Image> {
        self.inner.get(reference)
    }

    /// Loads a `docker save` archive (manifest.json + repositories) or an OCI image layout
    /// archive (index.json, with `org.opencontainers.image.ref.name` annotations as tags).
    /// Every blob is checked against its digest; nothing is stored when the archive is bad.
    pub fn load(&self, archive: impl Read) -> Result<Vec<Loaded>> {
        self.inner.load(archive)
    }

    /// Imports a rootfs tarball (plain, gzip, zstd) as a one-layer image.
    pub fn import(&self, tarball: impl Read, options: &ImportOptions) -> Result<Image> {
        self.inner.import(tarball, options)
    }

    /// `docker commit`: a new image of `options.parent` plus the layer `layer` (a tar with
    /// OCI whiteouts), with the container's config.
    pub fn commit(&self, layer: impl Read, options: &CommitOptions) -> Result<Image> {
        self.inner.commit(layer, options)
    }

    /// A build step's image over `options.parent`, with `layer` (a tar with OCI whiteouts)
    /// when the step made one.
    pub fn build_commit(
        &self,
        layer: Option<LayerSource<'_>>,
        options: &BuildCommit,
    ) -> Result<Image> {
        self.inner.build_commit(layer, options)
    }

    /// The image an earlier build step with this parent and cache key made, if it is here.
    pub fn cached(&self, parent: &str, key: &str) -> Option<String> {
        self.inner.cached(parent, key)
    }

    /// Writes a `docker save`-compatible archive (also readable as an OCI layout: it has
    /// index.json and oci-layout too, as Docker 25+ writes) of the named images.
    pub fn save(&self, references: &[String], out: impl Write) -> Result<()> {
        self.inner.save(references, out)
    }

    /// Adds the tag `target` (`repo[:tag]`) to the image `source` resolves to.
    pub fn tag(&self, source: &str, target: &str) -> Result<()> {
        self.inner.tag(source, target)
    }

    /// Removes a reference, and the image when no reference is left (as `docker rmi`).
    /// `in_use(image_id)` says whether a container uses the image: removal is then refused
    /// with [`Error::Conflict`] unless `force` (which untags but keeps the image's layers
    /// while a container uses them). `noprune`: keep untagged parents.
    pub fn remove(
        &self,
        reference: &str,
        force: bool,
        noprune: bool,
        in_use: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<Removed>> {
        self.inner.remove(reference, force, noprune, in_use)
    }

    /// Removes dangling images (no tags), or with `all` every image no container uses; then
    /// unreferenced layers and blobs.
    pub fn prune(&self, all: bool, in_use: &dyn Fn(&str) -> bool) -> Result<PruneReport> {
        self.inner.prune(all, in_use)
    }

    /// `docker history`, newest step first.
    pub fn history(&self, reference: &str) -> Result<Vec<HistoryItem>> {
        self.inner.history(reference)
    }

    /// Makes the writable layer of container `container_id` over image `image_id` and returns
    /// the mount that assembles its rootfs. Idempotent for the same container.
    pub fn prepare_rootfs(&self, image_id: &str, container_id: &str) -> Result<RootfsMount> {
        self.inner.prepare_rootfs(image_id, container_id)
    }

    /// The layers of container `container_id`'s rootfs (prepared before), to read its files;
    /// nothing is written.
    pub fn rootfs_layers(
        &self,
        image_id: &str,
        container_id: &str,
    ) -> Result<rootfs::RootfsLayers> {
        let (mount, _) = self.inner.rootfs_mount(image_id, container_id)?;
        Ok(rootfs::RootfsLayers::from_mount(&mount))
    }

    /// The image layers under container `container_id`'s writable layer (what it started
    /// from, for `docker diff`); nothing is written.
    pub fn image_layers(&self, image_id: &str, container_id: &str) -> Result<rootfs::RootfsLayers> {
        let (mount, _) = self.inner.rootfs_mount(image_id, container_id)?;
        Ok(rootfs::RootfsLayers::image_only(&mount))
    }

    /// Removes container `container_id`'s writable layer (after the supervisor unmounted it).
    /// Removing one that does not exist is not an error.
    pub fn remove_rootfs(&self, container_id: &str) -> Result<()> {
        self.inner.remove_rootfs(container_id)
    }

    /// The directory holding a container's writable layer (for `docker diff`/`SizeRw`).
    pub fn rootfs_upper(&self, container_id: &str) -> PathBuf {
        self.inner.rootfs_upper(container_id)
    }

    /// The image's config blob as stored (its sha256 is the image id), checked on read.
    pub fn config_blob(&self, image_id: &str) -> Result<Vec<u8>> {
        self.inner.config_blob(image_id)
    }

    /// Disk usage of layers and containers' writable layers.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        self.inner.disk_usage()
    }
}
