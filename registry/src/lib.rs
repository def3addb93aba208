//! berth's registry client: pulls and pushes images over the OCI distribution API for berthd.
//!
//! - [`Registry::pull`]: reference → manifest (platform picked from an index) → config →
//!   layers downloaded in parallel, each hashed, decompressed (gzip, zstd, none) and unpacked
//!   into the store while it downloads; resumable with Range requests; nothing registered
//!   unless every blob matched its digest.
//! - [`Registry::push`]: layers (kept original blobs, or packed deterministically), skipping
//!   blobs the registry has and mounting from other repositories; config; manifest; tag.
//! - [`Registry::login`], [`auth`]: credentials as Docker keeps and sends them.
//! - Progress is reported as [`Progress`] events, which [`Progress::to_docker_json`] turns into
//!   the lines of Docker's `/images/create` and `/images/{name}/push` streams.
//!
//! The image store is reached through [`RegistryStore`]; [`DirStore`] implements it on plain
//! files until `berth-image` offers the same calls (see `image/REQUESTS.md`).

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub mod auth;
mod client;
mod error;
mod fsutil;
mod login;
mod manifest;
pub mod pack;
mod platform;
mod progress;
mod pull;
mod push;
pub mod reference;
pub mod store;
pub mod unpack;

pub use auth::{decode_registry_auth, encode_registry_auth, AuthConfig, DockerConfigFile};
pub use client::ensure_tls_provider;
pub use error::{Error, ErrorKind, Result};
pub use fsutil::{sha256_digest, short_id};
pub use login::LoginResult;
pub use manifest::{DistributionInspect, ManifestDescriptor};
pub use platform::Platform;
pub use progress::{docker_error_json, LayerStatus, Progress, ProgressSink};
pub use pull::{PullOptions, PullReport, ResumedLayer};
pub use push::{PushOptions, PushReport};
pub use reference::Reference;
pub use store::{BlobInfo, DirStore, LocalImage, NewImage, RegistryStore};

/// File under the downloads dir remembering which repositories hold which blobs.
const SOURCES_FILE: &str = "blob-sources.json";

/// Docker's default for `max-concurrent-downloads`.
pub const DEFAULT_MAX_CONCURRENT_DOWNLOADS: usize = 3;
/// Docker's default for `max-download-attempts`.
pub const DEFAULT_MAX_DOWNLOAD_ATTEMPTS: usize = 5;
/// Docker's default for `max-concurrent-uploads`.
pub const DEFAULT_MAX_CONCURRENT_UPLOADS: usize = 5;

/// The registry part of berthd's config, with daemon.json's key names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct RegistryConfig {
    /// `insecure-registries`: `host[:port]` or CIDRs spoken to over plain HTTP. Loopback
    /// addresses are always insecure, as in Docker.
    pub insecure_registries: Vec<String>,
    /// `registry-mirrors`: mirrors of Docker Hub (URLs), tried in order before it.
    pub registry_mirrors: Vec<String>,
    /// berth's per-registry mirrors: registry domain (`127.0.0.1:5000`, `quay.io`) → mirror
    /// URLs, tried in order before the registry on pulls.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// `max-concurrent-downloads` (default 3).
    pub max_concurrent_downloads: usize,
    /// `max-concurrent-uploads` (default 5).
    pub max_concurrent_uploads: usize,
    /// `max-download-attempts` (default 5): tries per layer; a retry resumes the download.
    pub max_download_attempts: usize,
    /// Wait before retry n is n × this (Docker: 5 s). Not a daemon.json key.
    #[serde(skip)]
    pub retry_delay: std::time::Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure_registries: Vec::new(),
            registry_mirrors: Vec::new(),
            mirrors: BTreeMap::new(),
            max_concurrent_downloads: DEFAULT_MAX_CONCURRENT_DOWNLOADS,
            max_concurrent_uploads: DEFAULT_MAX_CONCURRENT_UPLOADS,
            max_download_attempts: DEFAULT_MAX_DOWNLOAD_ATTEMPTS,
            retry_delay: std::time::Duration::from_secs(5),
        }
    }
}

/// The registry client of one berthd: config, the store it pulls into and pushes from, and
/// what it learned about where blobs live (for cross-repository mounts). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Registry {
    config: Arc<RegistryConfig>,
    store: Arc<dyn RegistryStore>,
    /// Blob digest → repositories (`domain/path`) known to hold it.
    sources: Arc<std::sync::Mutex<BTreeMap<String, Vec<String>>>>,
    /// One download per blob at a time (its partial file is shared), held until committed.
    in_flight: Arc<std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Registry {
    /// A client pulling into and pushing from `store`.
    pub fn new(config: RegistryConfig, store: Arc<dyn RegistryStore>) -> Registry {
        // Where blobs came from survives restarts, so mounts keep working.
        let sources = std::fs::read(store.downloads_dir().join(SOURCES_FILE))
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_default();
        Registry {
            config: Arc::new(config),
            store,
            sources: Arc::new(std::sync::Mutex::new(sources)),
            in_flight: Arc::default(),
        }
    }

    /// Removes partial downloads not touched for `older_than` (kept for resuming); returns the
    /// bytes freed. For the engine's image prune.
    pub fn clean_downloads(&self, older_than: std::time::Duration) -> Result<u64> {
        let dir = self.store.downloads_dir();
        let mut freed = 0;
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io("read dir", &dir, e)),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "partial") {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            let old = meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age >= older_than);
            if old && std::fs::remove_file(&path).is_ok() {
                freed += meta.len();
            }
        }
        Ok(freed)
    }

    /// The lock serializing downloads of blob `digest`.
    fn blob_lock(&self, digest: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        // Forget locks nobody holds any more, so the map stays small.
        m.retain(|_, l| Arc::strong_count(l) > 1);
        m.entry(digest.to_string()).or_default().clone()
    }

    /// The config in use.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn RegistryStore> {
        &self.store
    }

    fn remember_source(&self, digest: &str, repo: &Reference) {
        let mut s = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let list = s.entry(digest.to_string()).or_default();
        let name = repo.name();
        if !list.contains(&name) {
            list.push(name);
        }
    }

    /// Writes the blob sources next to the partial downloads (best effort: only mounts
    /// depend on it).
    async fn save_sources(&self) {
        let json = {
            let s = self.sources.lock().unwrap_or_else(|e| e.into_inner());
            serde_json::to_vec(&*s).unwrap_or_default()
        };
        let path = self.store.downloads_dir().join(SOURCES_FILE);
        let res = pull::blocking(move || fsutil::write_atomic(&path, &json, 0o644)).await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "cannot save blob sources");
        }
    }

    fn sources_of(&self, digest: &str) -> Vec<String> {
        let s = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        s.get(digest).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_downloads_removes_old_partials_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(DirStore::open(dir.path()).unwrap());
        let r = Registry::new(RegistryConfig::default(), store.clone());
        let d = store.downloads_dir();
        std::fs::write(d.join("aa.partial"), b"12345").unwrap();
        std::fs::write(d.join("blob-sources.json"), b"{}").unwrap();
        assert_eq!(
            r.clean_downloads(std::time::Duration::from_secs(3600))
                .unwrap(),
            0
        );
        assert_eq!(r.clean_downloads(std::time::Duration::ZERO).unwrap(), 5);
        assert!(!d.join("aa.partial").exists());
        assert!(d.join("blob-sources.json").exists());
        let c: RegistryConfig =
            serde_json::from_str(r#"{"insecure-registries":["a:1"],"max-concurrent-downloads":5}"#)
                .unwrap();
        assert_eq!(c.insecure_registries, ["a:1"]);
        assert_eq!(c.max_concurrent_downloads, 5);
        assert_eq!(c.max_concurrent_uploads, DEFAULT_MAX_CONCURRENT_UPLOADS);
    }
}
