//! The store's implementation: records, tags, layers, containers' writable layers.
//!
//! Layout under the root:
//!
//! ```text
//! blobs/sha256/<hex>        content-addressed blobs (image configs, kept layer blobs)
//! layers/<16 hex>/          one unpacked layer (overlay lowerdir), keyed by its diff id
//! layers/<16 hex>.json      its record: diff id, size, kept compressed blob; written last,
//!                           so a layer exists exactly when its record does
//! images/<hex>.json         image records (id = digest of the config blob)
//! repositories.json         tags: full reference -> image id
//! containers/<id>/          a container's upper/ and work/ dirs, and the image it uses
//! downloads/                partial blobs of interrupted pulls
//! tmp/                      unpacking and spooling; emptied by open()
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use berth_registry::{BlobInfo, Reference};
use serde::{Deserialize, Serialize};

use crate::fsutil::{
    decompress, digest_hex, dir_size, io_err, is_digest, sha256_digest, sync_dir, write_atomic,
    HashingReader,
};
use crate::{
    DiskUsage, Error, HistoryItem, Image, ImportOptions, Loaded, PruneReport, Removed, Result,
    RootfsMount,
};

pub(crate) const MEDIA_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const MEDIA_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const MEDIA_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Copies what is read through it to `copy` (the blob as it came), remembering its first
/// bytes (to tell the compression).
struct Tee<R, W> {
    inner: R,
    copy: W,
    head: Vec<u8>,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        if self.head.len() < 8 {
            let take = (8 - self.head.len()).min(n);
            self.head.extend_from_slice(&buf[..take]);
        }
        Ok(n)
    }
}

/// Tags, as stored in `repositories.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Repos {
    /// Full reference (`docker.io/library/busybox:latest`) -> image id.
    tags: BTreeMap<String, String>,
}

/// An image record, `images/<hex>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    pub(crate) id: String,
    pub(crate) diff_ids: Vec<String>,
    #[serde(default)]
    pub(crate) parent: String,
    pub(crate) added: String,
    /// Familiar `name@sha256:...`.
    #[serde(default)]
    pub(crate) repo_digests: Vec<String>,
    /// The build step's cache key (images made by `docker build`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cache_key: Option<String>,
}

/// A layer record, `layers/<key>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LayerRecord {
    diff_id: String,
    size: u64,
    #[serde(default)]
    blob: Option<BlobInfo>,
}

/// A verified image to record.
#[derive(Debug)]
pub(crate) struct NewRecord {
    pub(crate) config: Vec<u8>,
    pub(crate) diff_ids: Vec<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) repo_digest: Option<String>,
    /// The image a build step made this one over (empty otherwise).
    pub(crate) parent: String,
    /// The build cache key of the step that made it.
    pub(crate) cache_key: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Store {
    root: PathBuf,
    /// Serializes every change of records, tags and layers.
    lock: Mutex<()>,
    seq: AtomicU64,
}

fn not_found(reference: &str) -> Error {
    // As dockerd: a name is shown as a reference with its tag (`busybox:latest`), an id as given.
    let shown = match Reference::parse(reference) {
        Ok(r) if !reference.starts_with("sha256:") => {
            let mut s = r.familiar_string();
            if r.tag.is_none() && r.digest.is_none() {
                s.push_str(":latest");
            }
            s
        }
        _ => reference.to_string(),
    };
    Error::NotFound(format!("No such image: {shown}"))
}

fn bad_ref(e: berth_registry::Error) -> Error {
    Error::InvalidArgument(e.to_string())
}

/// Short (12 hex) form of an id, as Docker prints it in messages.
pub(crate) fn short(id: &str) -> String {
    digest_hex(id).chars().take(12).collect()
}

/// `busybox:latest` for `docker.io/library/busybox:latest`.
fn familiar(full: &str) -> String {
    Reference::parse(full)
        .map(|r| r.familiar_string())
        .unwrap_or_else(|_| full.to_string())
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl Store {
    pub(crate) fn open(root: &Path) -> Result<Self> {
        for d in [
            "blobs/sha256",
            "layers",
            "images",
            "containers",
            "downloads",
            "tmp",
        ] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(|e| io_err(&p, e))?;
        }
        // Leftovers of interrupted unpacks and spools.
        let tmp = root.join("tmp");
        if let Ok(entries) = fs::read_dir(&tmp) {
            for e in entries.flatten() {
                let p = e.path();
                let _ = if p.is_dir() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
            }
        }
        // Layer dirs whose record was never written (interrupted commit).
        if let Ok(entries) = fs::read_dir(root.join("layers")) {
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() && !p.with_extension("json").exists() {
                    let _ = fs::remove_dir_all(&p);
                }
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
            lock: Mutex::new(()),
            seq: AtomicU64::new(0),
        })
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.root.clone()
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- paths -------------------------------------------------------------------------

    pub(crate) fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(digest_hex(digest))
    }

    fn layer_key(diff_id: &str) -> String {
        digest_hex(diff_id).chars().take(16).collect()
    }

    pub(crate) fn layer_dir(&self, diff_id: &str) -> PathBuf {
        self.root.join("layers").join(Self::layer_key(diff_id))
    }

    fn layer_record_path(&self, diff_id: &str) -> PathBuf {
        self.layer_dir(diff_id).with_extension("json")
    }

    fn image_path(&self, id: &str) -> PathBuf {
        self.root
            .join("images")
            .join(format!("{}.json", digest_hex(id)))
    }

    fn container_dir(&self, container_id: &str) -> PathBuf {
        self.root.join("containers").join(container_id)
    }

    pub(crate) fn tmp_path(&self, what: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{what}-{}-{n}", std::process::id()))
    }

    pub(crate) fn downloads_dir(&self) -> PathBuf {
        self.root.join("downloads")
    }

    // ---- records -----------------------------------------------------------------------

    fn read_repos(&self) -> Result<Repos> {
        let p = self.root.join("repositories.json");
        match fs::read(&p) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| io_err(&p, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Repos::default()),
            Err(e) => Err(io_err(&p, e)),
        }
    }

    fn write_repos(&self, repos: &Repos) -> Result<()> {
        let data = serde_json::to_vec_pretty(repos).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(&self.root.join("repositories.json"), &data)
    }

    pub(crate) fn record(&self, id: &str) -> Result<Option<ImageRecord>> {
        let p = self.image_path(id);
        match fs::read(&p) {
            Ok(data) => serde_json::from_slice(&data)
                .map(Some)
                .map_err(|e| io_err(&p, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&p, e)),
        }
    }

    fn write_record(&self, rec: &ImageRecord) -> Result<()> {
        let data = serde_json::to_vec_pretty(rec).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(&self.image_path(&rec.id), &data)
    }

    fn records(&self) -> Result<Vec<ImageRecord>> {
        let dir = self.root.join("images");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(|e| io_err(&dir, e))?.flatten() {
            let name = e.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if let Some(r) = self.record(&format!("sha256:{hex}"))? {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn layer_record(&self, diff_id: &str) -> Option<LayerRecord> {
        let data = fs::read(self.layer_record_path(diff_id)).ok()?;
        serde_json::from_slice(&data).ok()
    }

    pub(crate) fn has_layer(&self, diff_id: &str) -> bool {
        self.layer_record(diff_id)
            .is_some_and(|r| r.diff_id == diff_id)
    }

    /// The config blob of an image, checked against its digest.
    pub(crate) fn config_blob(&self, id: &str) -> Result<Vec<u8>> {
        let p = self.blob_path(id);
        let data = fs::read(&p).map_err(|e| io_err(&p, e))?;
        if sha256_digest(&data) != id {
            return Err(Error::Internal(format!(
                "config blob of image {id} is corrupted (digest mismatch)"
            )));
        }
        Ok(data)
    }

    fn image_from(&self, rec: &ImageRecord, repos: &Repos) -> Result<Image> {
        let raw = self.config_blob(&rec.id)?;
        let config = oci_spec::image::ImageConfiguration::from_reader(&raw[..])
            .map_err(|e| Error::Internal(format!("image {}: bad config: {e}", short(&rec.id))))?;
        let raw_config: serde_json::Value =
            serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null);
        let size = rec
            .diff_ids
            .iter()
            .filter_map(|d| self.layer_record(d))
            .map(|l| l.size)
            .sum();
        Ok(Image {
            id: rec.id.clone(),
            repo_tags: repos
                .tags
                .iter()
                .filter(|(_, id)| **id == rec.id)
                .map(|(t, _)| familiar(t))
                .collect(),
            repo_digests: rec.repo_digests.clone(),
            parent: rec.parent.clone(),
            config,
            raw_config,
            diff_ids: rec.diff_ids.clone(),
            size,
            added: rec.added.clone(),
            cache_key: rec.cache_key.clone(),
        })
    }

    /// Resolves a reference to an image id (see `ImageStore::get`).
    fn resolve(&self, reference: &str, repos: &Repos) -> Result<String> {
        let r = reference.trim();
        if is_digest(r) {
            return match self.record(r)? {
                Some(_) => Ok(r.to_string()),
                None => Err(not_found(reference)),
            };
        }
        let is_hex = !r.is_empty() && r.bytes().all(|b| b.is_ascii_hexdigit());
        if let Ok(parsed) = Reference::parse(r) {
            let parsed = parsed.with_default_tag();
            if let Some(d) = &parsed.digest {
                // name@digest: an image that has this repo digest.
                let want = format!("{}@{d}", parsed.familiar_name());
                for rec in self.records()? {
                    if rec.repo_digests.contains(&want) {
                        return Ok(rec.id);
                    }
                }
                return Err(not_found(reference));
            }
            let key = format!("{}:{}", parsed.name(), parsed.tag_or_digest());
            if let Some(id) = repos.tags.get(&key) {
                return Ok(id.clone());
            }
        } else if !is_hex && !r.starts_with("sha256:") {
            return Err(not_found(reference));
        }
        // An id prefix.
        let prefix = r.strip_prefix("sha256:").unwrap_or(r).to_ascii_lowercase();
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found(reference));
        }
        let matches: Vec<String> = self
            .records()?
            .into_iter()
            .map(|r| r.id)
            .filter(|id| digest_hex(id).starts_with(&prefix))
            .collect();
        match matches.len() {
            1 => Ok(matches.into_iter().next().unwrap_or_default()),
            0 => Err(not_found(reference)),
            _ => Err(Error::InvalidArgument(format!(
                "multiple IDs found with provided prefix: {prefix}"
            ))),
        }
    }

    // ---- queries -----------------------------------------------------------------------

    pub(crate) fn list(&self) -> Result<Vec<Image>> {
        let repos = self.read_repos()?;
        let mut out = Vec::new();
        for rec in self.records()? {
            match self.image_from(&rec, &repos) {
                Ok(i) => out.push(i),
                Err(e) => tracing::warn!(image = %rec.id, error = %e, "skipping unreadable image"),
            }
        }
        out.sort_by(|a, b| {
            let ca = a.config.created().clone().unwrap_or_default();
            let cb = b.config.created().clone().unwrap_or_default();
            cb.cmp(&ca).then_with(|| b.added.cmp(&a.added))
        });
        Ok(out)
    }

    pub(crate) fn get(&self, reference: &str) -> Result<Image> {
        let repos = self.read_repos()?;
        let id = self.resolve(reference, &repos)?;
        let rec = self.record(&id)?.ok_or_else(|| not_found(reference))?;
        self.image_from(&rec, &repos)
    }

    pub(crate) fn history(&self, reference: &str) -> Result<Vec<HistoryItem>> {
        let img = self.get(reference)?;
        let layer_sizes: Vec<u64> = img
            .diff_ids
            .iter()
            .map(|d| self.layer_record(d).map(|l| l.size).unwrap_or(0))
            .collect();
        let mut items = Vec::new();
        let mut layer = 0usize;
        let history = img.config.history().clone().unwrap_or_default();
        for h in &history {
            let empty = h.empty_layer().unwrap_or(false);
            let size = if empty {
                0
            } else {
                let s = layer_sizes.get(layer).copied().unwrap_or(0);
                layer += 1;
                s
            };
            items.push(HistoryItem {
                id: "<missing>".into(),
                created: h
                    .created()
                    .as_deref()
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                    .map(|t| t.timestamp())
                    .unwrap_or(0),
                created_by: h.created_by().clone().unwrap_or_default(),
                tags: Vec::new(),
                size,
                comment: h.comment().clone().unwrap_or_default(),
            });
        }
        if items.is_empty() {
            items.push(HistoryItem {
                id: String::new(),
                created: 0,
                created_by: String::new(),
                tags: Vec::new(),
                size: img.size,
                comment: String::new(),
            });
        }
        items.reverse();
        if let Some(top) = items.first_mut() {
            top.id = img.id.clone();
            top.tags = img.repo_tags.clone();
        }
        Ok(items)
    }

    pub(crate) fn disk_usage(&self) -> Result<DiskUsage> {
        let mut du = DiskUsage::default();
        let dir = self.root.join("layers");
        for e in fs::read_dir(&dir).map_err(|e| io_err(&dir, e))?.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                if let Some(r) = fs::read(&p)
                    .ok()
                    .and_then(|d| serde_json::from_slice::<LayerRecord>(&d).ok())
                {
                    du.layers_size += r.size;
                }
            }
        }
        let dir = self.root.join("containers");
        for e in fs::read_dir(&dir).map_err(|e| io_err(&dir, e))?.flatten() {
            if let Some(name) = e.file_name().to_str() {
                du.containers
                    .push((name.to_string(), dir_size(&e.path().join("upper"))));
            }
        }
        Ok(du)
    }

    // ---- layers ------------------------------------------------------------------------

    /// Moves an unpacked layer into place (or drops it when the layer exists already).
    pub(crate) fn commit_layer(&self, dir: &Path, diff_id: &str, size: Option<u64>) -> Result<()> {
        let _g = self.guard();
        if self.has_layer(diff_id) {
            let _ = fs::remove_dir_all(dir);
            return Ok(());
        }
        let size = size.unwrap_or_else(|| dir_size(dir));
        let dest = self.layer_dir(diff_id);
        if dest.exists() {
            fs::remove_dir_all(&dest).map_err(|e| io_err(&dest, e))?;
        }
        fs::rename(dir, &dest).map_err(|e| io_err(&dest, e))?;
        sync_dir(&self.root.join("layers"));
        let rec = LayerRecord {
            diff_id: diff_id.to_string(),
            size,
            blob: None,
        };
        let data = serde_json::to_vec(&rec).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(&self.layer_record_path(diff_id), &data)
    }

    /// Unpacks a (possibly compressed) layer tar into the store and keeps the blob as it came
    /// (so `save` and `push` give back the same bytes); returns its diff id and size.
    pub(crate) fn unpack_layer(&self, reader: impl Read, name: &str) -> Result<(String, u64)> {
        let dir = self.tmp_path("layer");
        let blob = self.tmp_path("blob");
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let result = (|| {
            let file = fs::File::create(&blob).map_err(|e| io_err(&blob, e))?;
            let mut tee = Tee {
                inner: HashingReader::new(reader),
                copy: std::io::BufWriter::new(file),
                head: Vec::new(),
            };
            let unpacked = {
                let r = decompress(&mut tee)?;
                let mut r = r;
                let u = berth_registry::unpack::unpack_layer(&mut r, &dir, name)
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
                std::io::copy(&mut r, &mut std::io::sink())
                    .map_err(|e| Error::InvalidArgument(format!("read layer: {e}")))?;
                u
            };
            let Tee { inner, copy, head } = tee;
            let (digest, size) = inner
                .finish()
                .map_err(|e| Error::InvalidArgument(format!("read layer: {e}")))?;
            let file = copy.into_inner().map_err(|e| io_err(&blob, e.error()))?;
            file.sync_all().map_err(|e| io_err(&blob, e))?;
            let media_type = if head.starts_with(&[0x1f, 0x8b]) {
                MEDIA_TAR_GZIP
            } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                MEDIA_TAR_ZSTD
            } else {
                MEDIA_TAR
            };
            Ok((
                unpacked,
                BlobInfo {
                    digest,
                    size,
                    media_type: media_type.to_string(),
                    diff_id: String::new(),
                },
            ))
        })();
        match result {
            Ok((u, mut info)) => {
                info.diff_id = u.diff_id.clone();
                self.commit_layer(&dir, &u.diff_id, Some(u.size))?;
                if self.layer_blob(&u.diff_id).is_none() {
                    self.put_layer_blob(&blob, &u.diff_id, &info)?;
                } else {
                    let _ = fs::remove_file(&blob);
                }
                Ok((u.diff_id, u.size))
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                let _ = fs::remove_file(&blob);
                Err(e)
            }
        }
    }

    pub(crate) fn put_layer_blob(&self, file: &Path, diff_id: &str, info: &BlobInfo) -> Result<()> {
        let _g = self.guard();
        let mut rec = self
            .layer_record(diff_id)
            .ok_or_else(|| Error::NotFound(format!("no layer {diff_id}")))?;
        let dest = self.blob_path(&info.digest);
        fs::rename(file, &dest).map_err(|e| io_err(&dest, e))?;
        sync_dir(&self.root.join("blobs/sha256"));
        rec.blob = Some(info.clone());
        let data = serde_json::to_vec(&rec).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(&self.layer_record_path(diff_id), &data)
    }

    pub(crate) fn layer_blob(&self, diff_id: &str) -> Option<(PathBuf, BlobInfo)> {
        let info = self.layer_record(diff_id)?.blob?;
        let p = self.blob_path(&info.digest);
        p.exists().then_some((p, info))
    }

    // ---- adding images -----------------------------------------------------------------

    /// Stores a config blob (verified by construction) and an image record, and points tags
    /// at it. Every layer must be in the store already.
    pub(crate) fn register(&self, new: NewRecord) -> Result<String> {
        let config: serde_json::Value = serde_json::from_slice(&new.config)
            .map_err(|e| Error::InvalidArgument(format!("invalid image config: {e}")))?;
        let cfg_diffs: Vec<String> = config_diff_ids(&config);
        if cfg_diffs != new.diff_ids {
            return Err(Error::InvalidArgument(format!(
                "layers do not match the image config: config lists {} diff ids, got {}",
                cfg_diffs.len(),
                new.diff_ids.len()
            )));
        }
        let mut tags = Vec::new();
        for t in &new.tags {
            let r = Reference::parse(t).map_err(bad_ref)?.with_default_tag();
            if r.digest.is_some() {
                return Err(Error::InvalidArgument(
                    "refusing to create a tag with a digest reference".into(),
                ));
            }
            tags.push(format!("{}:{}", r.name(), r.tag_or_digest()));
        }
        let id = sha256_digest(&new.config);
        let _g = self.guard();
        for d in &new.diff_ids {
            if !self.has_layer(d) {
                return Err(Error::Internal(format!("layer {d} is not in the store")));
            }
        }
        let blob = self.blob_path(&id);
        if !blob.exists() {
            write_atomic(&blob, &new.config)?;
        }
        let mut rec = self.record(&id)?.unwrap_or(ImageRecord {
            id: id.clone(),
            diff_ids: new.diff_ids.clone(),
            parent: new.parent.clone(),
            added: now_rfc3339(),
            repo_digests: Vec::new(),
            cache_key: new.cache_key.clone(),
        });
        if let Some(rd) = new.repo_digest {
            if !rec.repo_digests.contains(&rd) {
                rec.repo_digests.push(rd);
            }
        }
        self.write_record(&rec)?;
        if !tags.is_empty() {
            let mut repos = self.read_repos()?;
            for t in tags {
                repos.tags.insert(t, id.clone());
            }
            self.write_repos(&repos)?;
        }
        Ok(id)
    }

    pub(crate) fn add_repo_digest(&self, id: &str, repo_digest: &str) -> Result<()> {
        let _g = self.guard();
        let mut rec = self.record(id)?.ok_or_else(|| not_found(id))?;
        if !rec.repo_digests.iter().any(|d| d == repo_digest) {
            rec.repo_digests.push(repo_digest.to_string());
            self.write_record(&rec)?;
        }
        Ok(())
    }

    pub(crate) fn import(&self, tarball: impl Read, options: &ImportOptions) -> Result<Image> {
        let (diff_id, _) = self.unpack_layer(tarball, "import")?;
        let now = now_rfc3339();
        let mut cfg = serde_json::Map::new();
        for change in &options.changes {
            crate::changes::apply(&mut cfg, change)?;
        }
        let comment = if options.message.is_empty() {
            "Imported from -".to_string()
        } else {
            options.message.clone()
        };
        let config = serde_json::json!({
            "architecture": if options.architecture.is_empty() { host_arch() } else { options.architecture.as_str() },
            "os": if options.os.is_empty() { "linux" } else { options.os.as_str() },
            "created": now,
            "comment": comment,
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": now, "comment": comment}],
        });
        let tags = match &options.reference {
            Some(r) if !r.is_empty() => vec![r.clone()],
            _ => Vec::new(),
        };
        let bytes = serde_json::to_vec(&config).map_err(|e| Error::Internal(e.to_string()))?;
        let id = self.register(NewRecord {
            config: bytes,
            diff_ids: vec![diff_id],
            tags,
            repo_digest: None,
            parent: String::new(),
            cache_key: None,
        })?;
        self.get(&id)
    }

    pub(crate) fn commit(&self, layer: impl Read, options: &crate::CommitOptions) -> Result<Image> {
        let parent = self.get(&options.parent)?;
        let mut config: serde_json::Value = serde_json::from_slice(&self.config_blob(&parent.id)?)
            .map_err(|e| Error::Internal(format!("parent config: {e}")))?;
        let (diff_id, _) = self.unpack_layer(layer, "commit")?;
        let now = now_rfc3339();
        let mut cfg = options.config.as_object().cloned().unwrap_or_default();
        for change in &options.changes {
            crate::changes::apply(&mut cfg, change)?;
        }
        let mut diff_ids: Vec<String> = config_diff_ids(&config);
        diff_ids.push(diff_id);
        let mut history = config["history"].as_array().cloned().unwrap_or_default();
        let mut entry = serde_json::json!({"created": now, "created_by": options.created_by});
        if !options.comment.is_empty() {
            entry["comment"] = serde_json::json!(options.comment);
        }
        if !options.author.is_empty() {
            entry["author"] = serde_json::json!(options.author);
        }
        history.push(entry);
        config["config"] = serde_json::Value::Object(cfg.clone());
        config["container_config"] = serde_json::Value::Object(cfg);
        config["created"] = serde_json::json!(now);
        config["container"] = serde_json::json!(options.container);
        config["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": diff_ids});
        config["history"] = serde_json::json!(history);
        match options.author.as_str() {
            "" => {
                if let Some(o) = config.as_object_mut() {
                    o.remove("author");
                }
            }
            a => config["author"] = serde_json::json!(a),
        }
        if options.comment.is_empty() {
            if let Some(o) = config.as_object_mut() {
                o.remove("comment");
            }
        } else {
            config["comment"] = serde_json::json!(options.comment);
        }
        let tags = match &options.reference {
            Some(r) if !r.is_empty() => vec![r.clone()],
            _ => Vec::new(),
        };
        let bytes = serde_json::to_vec(&config).map_err(|e| Error::Internal(e.to_string()))?;
        let id = self.register(NewRecord {
            config: bytes,
            diff_ids,
            tags,
            repo_digest: None,
            // The committed container's image, as dockerd records it (inspect's Parent).
            parent: parent.id.clone(),
            cache_key: None,
        })?;
        self.get(&id)
    }

    /// A build step's image: the parent's config with the step's container config, one
    /// more history entry, and the layer when the step made one.
    /// Moves a directory that already holds a layer's files in overlay form (a build
    /// container's upper dir that never ran) into the store as the layer `tar` describes:
    /// the tar is hashed and kept as the layer's blob, not unpacked again.
    pub(crate) fn adopt_layer_dir(&self, dir: &Path, tar: &mut dyn Read) -> Result<String> {
        let blob = self.tmp_path("blob");
        let result = (|| {
            let file = fs::File::create(&blob).map_err(|e| io_err(&blob, e))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            let mut r = HashingReader::new(tar);
            std::io::copy(&mut r, &mut w).map_err(|e| io_err(&blob, e))?;
            let (digest, size) = r
                .finish()
                .map_err(|e| Error::InvalidArgument(format!("read layer: {e}")))?;
            let file = w.into_inner().map_err(|e| io_err(&blob, e.error()))?;
            file.sync_all().map_err(|e| io_err(&blob, e))?;
            Ok((digest, size))
        })();
        let (digest, size) = match result {
            Ok(x) => x,
            Err(e) => {
                let _ = fs::remove_file(&blob);
                return Err(e);
            }
        };
        // An uncompressed tar: its digest is its diff id.
        self.commit_layer(dir, &digest, None)?;
        if self.layer_blob(&digest).is_none() {
            let info = BlobInfo {
                digest: digest.clone(),
                size,
                media_type: MEDIA_TAR.to_string(),
                diff_id: digest.clone(),
            };
            self.put_layer_blob(&blob, &digest, &info)?;
        } else {
            let _ = fs::remove_file(&blob);
        }
        Ok(digest)
    }

    pub(crate) fn build_commit(
        &self,
        layer: Option<crate::LayerSource<'_>>,
        options: &crate::BuildCommit,
    ) -> Result<Image> {
        let mut config = options.parent_config.clone();
        let now = now_rfc3339();
        let mut diff_ids: Vec<String> = config_diff_ids(&config);
        let mut history = config["history"].as_array().cloned().unwrap_or_default();
        let mut entry = serde_json::json!({"created": now, "created_by": options.created_by});
        match layer {
            Some(crate::LayerSource::Tar(l)) => {
                let (diff_id, _) = self.unpack_layer(l, "build")?;
                diff_ids.push(diff_id);
            }
            Some(crate::LayerSource::Dir { dir, tar }) => {
                diff_ids.push(self.adopt_layer_dir(dir, tar)?);
            }
            Some(crate::LayerSource::Existing(d)) => {
                if !self.has_layer(&d) {
                    return Err(Error::NotFound(format!("no layer {d}")));
                }
                diff_ids.push(d);
            }
            None => entry["empty_layer"] = serde_json::json!(true),
        }
        history.push(entry);
        let mut container_config = options.config.clone();
        container_config["Cmd"] = serde_json::json!(["/bin/sh", "-c", options.created_by]);
        config["config"] = options.config.clone();
        config["container_config"] = container_config;
        config["created"] = serde_json::json!(now);
        config["container"] = serde_json::json!(options.container);
        config["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": diff_ids});
        config["history"] = serde_json::json!(history);
        let bytes = serde_json::to_vec(&config).map_err(|e| Error::Internal(e.to_string()))?;
        let id = self.register(NewRecord {
            config: bytes,
            diff_ids,
            tags: Vec::new(),
            repo_digest: None,
            parent: options.parent.clone(),
            cache_key: Some(options.cache_key.clone()),
        })?;
        self.get(&id)
    }

    /// The image a build step with this parent and cache key made, when all of it is here.
    pub(crate) fn cached(&self, parent: &str, key: &str) -> Option<String> {
        let records = self.records().ok()?;
        records
            .into_iter()
            .filter(|r| r.parent == parent && r.cache_key.as_deref() == Some(key))
            .find(|r| r.diff_ids.iter().all(|d| self.has_layer(d)))
            .map(|r| r.id)
    }

    pub(crate) fn load(&self, archive: impl Read) -> Result<Vec<Loaded>> {
        crate::archive::load(self, archive)
    }

    pub(crate) fn save(&self, references: &[String], out: impl Write) -> Result<()> {
        crate::archive::save(self, references, out)
    }

    pub(crate) fn tag(&self, source: &str, target: &str) -> Result<()> {
        let r = Reference::parse(target)
            .map_err(bad_ref)?
            .with_default_tag();
        if r.digest.is_some() {
            return Err(Error::InvalidArgument(
                "refusing to create a tag with a digest reference".into(),
            ));
        }
        let _g = self.guard();
        let mut repos = self.read_repos()?;
        let id = self.resolve(source, &repos)?;
        repos
            .tags
            .insert(format!("{}:{}", r.name(), r.tag_or_digest()), id);
        self.write_repos(&repos)
    }

    /// Full tag keys of an image.
    fn tags_of(repos: &Repos, id: &str) -> Vec<String> {
        repos
            .tags
            .iter()
            .filter(|(_, v)| *v == id)
            .map(|(k, _)| k.clone())
            .collect()
    }

    // ---- removal -----------------------------------------------------------------------

    pub(crate) fn remove(
        &self,
        reference: &str,
        force: bool,
        noprune: bool,
        in_use: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<Removed>> {
        let _g = self.guard();
        let mut repos = self.read_repos()?;
        let id = self.resolve(reference, &repos)?;
        let tags = Self::tags_of(&repos, &id);
        // Was the image named by one of its tags (rather than by id)?
        let named_tag = Reference::parse(reference.trim())
            .ok()
            .map(|r| r.with_default_tag())
            .filter(|r| r.digest.is_none())
            .map(|r| format!("{}:{}", r.name(), r.tag_or_digest()))
            .filter(|k| tags.contains(k));
        let mut out = Vec::new();
        if let Some(tag) = &named_tag {
            if tags.len() > 1 {
                repos.tags.remove(tag);
                self.write_repos(&repos)?;
                return Ok(vec![Removed::Untagged(familiar(tag))]);
            }
        } else if tags.len() > 1 && !force {
            return Err(Error::Conflict(format!(
                "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                short(&id)
            )));
        }
        if in_use(&id) {
            if !force {
                let what = match &named_tag {
                    Some(t) => format!(
                        "conflict: unable to remove repository reference \"{}\" (must force) - container is using its referenced image {}",
                        familiar(t),
                        short(&id)
                    ),
                    None => format!(
                        "conflict: unable to delete {} (must be forced) - image is being used by a container",
                        short(&id)
                    ),
                };
                return Err(Error::Conflict(what));
            }
            // Forced while in use: untag only; the layers stay for the container.
            for t in &tags {
                repos.tags.remove(t);
                out.push(Removed::Untagged(familiar(t)));
            }
            self.write_repos(&repos)?;
            return Ok(out);
        }
        for t in &tags {
            repos.tags.remove(t);
            out.push(Removed::Untagged(familiar(t)));
        }
        self.write_repos(&repos)?;
        let rec = self.record(&id)?;
        for d in rec.iter().flat_map(|r| &r.repo_digests) {
            out.push(Removed::Untagged(d.clone()));
        }
        let parent = rec.map(|r| r.parent).unwrap_or_default();
        out.extend(self.delete_image(&id)?.0);
        if !noprune {
            out.extend(self.delete_untagged_parents(&parent, in_use)?.0);
        }
        Ok(out)
    }

    /// Deletes `parent` and its own parents while each is untagged, unused and childless
    /// (the intermediate images of a build, as dockerd prunes them). The caller holds the lock.
    fn delete_untagged_parents(
        &self,
        parent: &str,
        in_use: &dyn Fn(&str) -> bool,
    ) -> Result<(Vec<Removed>, u64)> {
        let mut out = Vec::new();
        let mut freed = 0;
        let mut p = parent.to_string();
        while !p.is_empty() {
            let repos = self.read_repos()?;
            let records = self.records()?;
            let Some(rec) = records.iter().find(|r| r.id == p).cloned() else {
                break;
            };
            if !Self::tags_of(&repos, &p).is_empty()
                || in_use(&p)
                || records.iter().any(|r| r.parent == p)
            {
                break;
            }
            let (lines, f) = self.delete_image(&p)?;
            out.extend(lines);
            freed += f;
            p = rec.parent;
        }
        Ok((out, freed))
    }

    /// Deletes an image record and config, then its layers nothing else uses. Returns the
    /// removal lines and the bytes freed. The caller holds the lock.
    fn delete_image(&self, id: &str) -> Result<(Vec<Removed>, u64)> {
        let Some(rec) = self.record(id)? else {
            return Ok((Vec::new(), 0));
        };
        let mut freed = 0u64;
        let p = self.image_path(id);
        fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
        sync_dir(&self.root.join("images"));
        let blob = self.blob_path(id);
        freed += blob.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = fs::remove_file(&blob);
        let mut out = vec![Removed::Deleted(id.to_string())];
        let used = self.layers_in_use()?;
        for d in rec.diff_ids.iter().rev() {
            if used.contains(d) {
                continue;
            }
            freed += self.remove_layer(d);
            out.push(Removed::Deleted(d.clone()));
        }
        Ok((out, freed))
    }

    /// Removes a layer's dir, record and kept blob; returns the bytes freed.
    fn remove_layer(&self, diff_id: &str) -> u64 {
        let mut freed = 0;
        if let Some(rec) = self.layer_record(diff_id) {
            freed += rec.size;
            if let Some(b) = rec.blob {
                let p = self.blob_path(&b.digest);
                freed += p.metadata().map(|m| m.len()).unwrap_or(0);
                let _ = fs::remove_file(p);
            }
        }
        // Record first: a layer without a record is garbage that open() removes.
        let _ = fs::remove_file(self.layer_record_path(diff_id));
        let _ = fs::remove_dir_all(self.layer_dir(diff_id));
        freed
    }

    /// Removes those of `diff_ids` that no image or container uses (after a failed load).
    pub(crate) fn discard_unused_layers(&self, diff_ids: &[String]) {
        let _g = self.guard();
        let Ok(used) = self.layers_in_use() else {
            return;
        };
        for d in diff_ids {
            if !used.contains(d) {
                self.remove_layer(d);
            }
        }
    }

    /// Diff ids used by any image record or any container's rootfs.
    fn layers_in_use(&self) -> Result<HashSet<String>> {
        let mut used: HashSet<String> = self
            .records()?
            .into_iter()
            .flat_map(|r| r.diff_ids)
            .collect();
        let dir = self.root.join("containers");
        for e in fs::read_dir(&dir).map_err(|e| io_err(&dir, e))?.flatten() {
            if let Ok(data) = fs::read(e.path().join("layers.json")) {
                if let Ok(ids) = serde_json::from_slice::<Vec<String>>(&data) {
                    used.extend(ids);
                }
            }
        }
        Ok(used)
    }

    pub(crate) fn prune(&self, all: bool, in_use: &dyn Fn(&str) -> bool) -> Result<PruneReport> {
        let _g = self.guard();
        let repos = self.read_repos()?;
        let mut report = PruneReport::default();
        let records = self.records()?;
        for rec in &records {
            let tagged = !Self::tags_of(&repos, &rec.id).is_empty();
            // Intermediate images (with children) go with the image over them.
            let has_children = records.iter().any(|r| r.parent == rec.id);
            if (tagged && !all) || has_children || in_use(&rec.id) {
                continue;
            }
            if self.record(&rec.id)?.is_none() {
                continue;
            }
            let mut repos = self.read_repos()?;
            for t in Self::tags_of(&repos, &rec.id) {
                repos.tags.remove(&t);
                report.removed.push(Removed::Untagged(familiar(&t)));
            }
            self.write_repos(&repos)?;
            let (lines, freed) = self.delete_image(&rec.id)?;
            report.removed.extend(lines);
            report.space_reclaimed += freed;
            let (lines, freed) = self.delete_untagged_parents(&rec.parent, in_use)?;
            report.removed.extend(lines);
            report.space_reclaimed += freed;
        }
        Ok(report)
    }

    // ---- containers' rootfs ------------------------------------------------------------

    pub(crate) fn prepare_rootfs(&self, image_id: &str, container_id: &str) -> Result<RootfsMount> {
        let (mount, diff_ids) = self.rootfs_mount(image_id, container_id)?;
        let dir = self.container_dir(container_id);
        for d in [dir.join("upper"), dir.join("work")] {
            fs::create_dir_all(&d).map_err(|e| io_err(&d, e))?;
        }
        if diff_ids.is_empty() {
            // overlayfs needs a lower dir; an image without layers gets an empty one.
            let empty = dir.join("empty");
            fs::create_dir_all(&empty).map_err(|e| io_err(&empty, e))?;
        }
        let layers = serde_json::to_vec(&diff_ids).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(&dir.join("layers.json"), &layers)?;
        Ok(mount)
    }

    /// The overlay mount of a container's rootfs (and the image's layers), computed without
    /// touching the disk: for reading files of a container that was prepared before.
    pub(crate) fn rootfs_mount(
        &self,
        image_id: &str,
        container_id: &str,
    ) -> Result<(RootfsMount, Vec<String>)> {
        if container_id.is_empty() || container_id.contains('/') || container_id.starts_with('.') {
            return Err(Error::InvalidArgument(format!(
                "invalid container id {container_id:?}"
            )));
        }
        let _g = self.guard();
        let rec = self.record(image_id)?.ok_or_else(|| not_found(image_id))?;
        let dir = self.container_dir(container_id);
        let upper = dir.join("upper");
        let work = dir.join("work");
        let mut lower: Vec<String> = Vec::new();
        // A layer that comes twice (two build steps that changed nothing the same way) is
        // one directory: overlayfs refuses a stack naming it twice (ELOOP). The topmost
        // occurrence alone gives the same view.
        let mut seen = HashSet::new();
        for d in rec.diff_ids.iter().rev() {
            if !seen.insert(d.as_str()) {
                continue;
            }
            if !self.has_layer(d) {
                return Err(Error::Internal(format!(
                    "layer {d} of image {} is missing from the store",
                    short(image_id)
                )));
            }
            lower.push(self.layer_dir(d).to_string_lossy().into_owned());
        }
        if lower.is_empty() {
            lower.push(dir.join("empty").to_string_lossy().into_owned());
        }
        let options = vec![
            format!("lowerdir={}", lower.join(":")),
            format!("upperdir={}", upper.display()),
            format!("workdir={}", work.display()),
        ];
        let len: usize = options.iter().map(|o| o.len() + 1).sum();
        if len >= 4096 {
            return Err(Error::Internal(format!(
                "image {} has too many layers for one overlay mount ({} layers)",
                short(image_id),
                rec.diff_ids.len()
            )));
        }
        let mount = RootfsMount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options,
        };
        Ok((mount, rec.diff_ids.clone()))
    }

    pub(crate) fn remove_rootfs(&self, container_id: &str) -> Result<()> {
        if container_id.is_empty() || container_id.contains('/') || container_id.starts_with('.') {
            return Ok(());
        }
        let dir = self.container_dir(container_id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&dir, e)),
        }
    }

    pub(crate) fn rootfs_upper(&self, container_id: &str) -> PathBuf {
        self.container_dir(container_id).join("upper")
    }
}

/// The `rootfs.diff_ids` of an image config.
fn config_diff_ids(config: &serde_json::Value) -> Vec<String> {
    config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The host's architecture in Go's (OCI's) words.
pub(crate) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}
