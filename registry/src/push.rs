//! The push pipeline: layer blobs (kept originals, or packed once and remembered), uploaded in
//! parallel unless the registry has them or can mount them; config; manifest; tag.

use std::io::Write;
use std::path::PathBuf;

use bytes::Bytes;
use futures_util::StreamExt;
use oci_client::RegistryOperation;
use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::auth::AuthConfig;
use crate::client::push_error;
use crate::error::{Error, Result};
use crate::fsutil::{digest_hex, sha256_digest, HashingWriter};
use crate::manifest::{
    DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP, OCI_LAYER_TAR,
    OCI_LAYER_ZSTD, OCI_MANIFEST,
};
use crate::progress::{LayerStatus, ProgressSink};
use crate::pull::blocking;
use crate::reference::Reference;
use crate::store::{BlobInfo, RegistryStore};
use crate::Registry;

/// Bytes per upload request (the registry gets a PATCH per chunk).
const UPLOAD_CHUNK: usize = 4 * 1024 * 1024;

/// Options of one push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Credentials for the registry.
    pub auth: AuthConfig,
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushReport {
    /// The tag pushed.
    pub tag: String,
    /// `sha256:` of the manifest pushed.
    pub digest: String,
    /// Manifest size in bytes.
    pub size: u64,
    /// `name@sha256:...` recorded for the image.
    pub repo_digest: String,
    /// The manifest's media type (Docker v2 schema 2 or OCI).
    pub media_type: String,
    /// Layer blob digests uploaded.
    pub pushed: Vec<String>,
    /// Layer blob digests the registry already had.
    pub existed: Vec<String>,
    /// Layer blob digests mounted from another repository.
    pub mounted: Vec<String>,
}

/// What happened to one blob.
enum Outcome {
    Pushed,
    Existed,
    Mounted,
}

impl Registry {
    /// Pushes the local image `reference` (`name[:tag]`) to its registry. Progress uses the
    /// layers' short diff ids as Docker does (`Preparing`, `Pushing`, `Pushed`, `Layer already
    /// exists`, `Mounted from <repo>`, then `<tag>: digest: sha256:... size: N`).
    #[tracing::instrument(skip_all, fields(image = %reference))]
    pub async fn push(
        &self,
        reference: &str,
        options: &PushOptions,
        progress: &ProgressSink,
    ) -> Result<PushReport> {
        let r = Reference::parse(reference)?.with_default_tag();
        if r.digest.is_some() {
            return Err(Error::InvalidArgument(
                "cannot push a digest reference".into(),
            ));
        }
        let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
        let store = self.store.clone();
        let familiar = r.familiar_string();
        let local = {
            let s = store.clone();
            let f = familiar.clone();
            blocking(move || s.image(&f)).await?
        }
        .ok_or_else(|| {
            Error::NotFound(format!(
                "An image does not exist locally with the tag: {}",
                r.familiar_name()
            ))
        })?;
        progress.status(
            None,
            format!("The push refers to repository [{}]", r.name()),
        );
        let host = r.registry_host();
        let transport = self.config.transport(&host).await;
        let client = self.config.oci_client(&host, transport);
        let target = r.to_oci(&host);
        let scope = format!("repository:{}:pull,push", r.path);
        let auth = self
            .oci_auth(&options.auth, &host, transport, &scope)
            .await?;
        client
            .auth(&target, &auth, RegistryOperation::Push)
            .await
            .map_err(|e| push_error(&r, &format!("authenticate to {host}"), e))?;

        for d in local.diff_ids.iter().rev() {
            progress.layer(d, LayerStatus::Preparing);
        }
        // Compressed blobs: the kept ones, or packed now (and kept for the next push).
        let blobs: Vec<(PathBuf, BlobInfo)> = {
            let s = store.clone();
            let diff_ids = local.diff_ids.clone();
            blocking(move || {
                diff_ids
                    .iter()
                    .map(|d| match s.layer_blob(d) {
                        Some(b) => Ok(b),
                        None => pack_blob(s.as_ref(), d),
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .await?
        };
        let oci = blobs.iter().any(|(_, b)| {
            b.media_type.starts_with("application/vnd.oci.") || b.media_type == OCI_LAYER_ZSTD
        });
        // The config must name the diff ids of the blobs pushed.
        let mut config = local.config.clone();
        let mut rewritten = false;
        let actual_diff_ids: Vec<&str> = blobs.iter().map(|(_, b)| b.diff_id.as_str()).collect();
        if actual_diff_ids
            != local
                .diff_ids
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        {
            tracing::warn!(image = %familiar, "packed layers differ from the stored diff ids; pushing an updated config");
            let mut v: serde_json::Value = serde_json::from_slice(&config)
                .map_err(|e| Error::Store(format!("parse config of {familiar}: {e}")))?;
            v["rootfs"]["diff_ids"] = json!(actual_diff_ids);
            config = serde_json::to_vec(&v).map_err(|e| Error::Store(e.to_string()))?;
            rewritten = true;
        }
        let config_digest = sha256_digest(&config);

        let results: Vec<Result<(String, Outcome)>> =
            futures_util::stream::iter(local.diff_ids.iter().cloned().zip(blobs.iter().cloned()))
                .map(|(diff_id, (path, info))| {
                    let client = client.clone();
                    let target = target.clone();
                    let r = r.clone();
                    let progress = progress.clone();
                    let sources = self.sources_of(&info.digest);
                    async move {
                        let o = upload_layer(
                            &client, &r, &target, &diff_id, &path, &info, sources, &progress,
                        )
                        .await?;
                        Ok((info.digest.clone(), o))
                    }
                })
                .buffer_unordered(self.config.max_concurrent_uploads.max(1))
                .collect()
                .await;
        let mut report = PushReport {
            tag: tag.clone(),
            digest: String::new(),
            size: 0,
            repo_digest: String::new(),
            media_type: String::new(),
            pushed: Vec::new(),
            existed: Vec::new(),
            mounted: Vec::new(),
        };
        for res in results {
            let (digest, o) = res?;
            match o {
                Outcome::Pushed => report.pushed.push(digest),
                Outcome::Existed => report.existed.push(digest),
                Outcome::Mounted => report.mounted.push(digest),
            }
        }

        let ctx = |what: &str| format!("{what} to {r}");
        let has_config = client
            .blob_exists(&target, &config_digest)
            .await
            .map_err(|e| push_error(&r, &ctx("check config"), e))?;
        if !has_config {
            client
                .push_blob(&target, config.clone(), &config_digest)
                .await
                .map_err(|e| push_error(&r, &ctx("push config"), e))?;
        }

        let (media_type, config_type) = if oci {
            (OCI_MANIFEST, OCI_CONFIG)
        } else {
            (DOCKER_MANIFEST, DOCKER_CONFIG)
        };
        let layers: Vec<serde_json::Value> = blobs
            .iter()
            .map(|(_, b)| {
                json!({
                    "mediaType": layer_media_type(&b.media_type, oci),
                    "size": b.size,
                    "digest": b.digest,
                })
            })
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": config_type, "size": config.len(), "digest": config_digest},
            "layers": layers,
        });
        let body = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Store(e.to_string()))?;
        let digest = sha256_digest(&body);
        let size = body.len() as u64;
        client
            .push_manifest_raw(
                &target,
                body,
                reqwest::header::HeaderValue::from_static(media_type),
            )
            .await
            .map_err(|e| push_error(&r, &ctx("push manifest"), e))?;
        for (_, b) in &blobs {
            self.remember_source(&b.digest, &r);
        }
        self.save_sources().await;
        let repo_digest = format!("{}@{digest}", r.familiar_name());
        // The repo digest names the local image only if the registry got its very config.
        if !rewritten {
            let s = store.clone();
            let (id, rd) = (local.id.clone(), repo_digest.clone());
            blocking(move || s.add_repo_digest(&id, &rd)).await?;
        }
        progress.status(None, format!("{tag}: digest: {digest} size: {size}"));
        tracing::info!(image = %familiar, %digest, "pushed");
        report.digest = digest;
        report.size = size;
        report.repo_digest = repo_digest;
        report.media_type = media_type.to_string();
        Ok(report)
    }
}

/// The media type of a layer in a manifest of the chosen family.
fn layer_media_type(kept: &str, oci: bool) -> &'static str {
    let zstd = kept.ends_with("zstd");
    let plain = kept.ends_with(".tar") || kept.ends_with("diff.tar");
    match (oci, zstd, plain) {
        (_, true, _) => OCI_LAYER_ZSTD,
        (true, _, true) => OCI_LAYER_TAR,
        (false, _, true) => "application/vnd.docker.image.rootfs.diff.tar",
        (true, _, _) => OCI_LAYER_GZIP,
        (false, _, _) => DOCKER_LAYER_GZIP,
    }
}

/// Packs layer `diff_id` into a gzip blob, keeps it in the store, and returns it.
fn pack_blob(store: &dyn RegistryStore, diff_id: &str) -> Result<(PathBuf, BlobInfo)> {
    let dir = store
        .layer_path(diff_id)
        .ok_or_else(|| Error::Store(format!("layer {diff_id} is missing")))?;
    let downloads = store.downloads_dir();
    std::fs::create_dir_all(&downloads).map_err(|e| Error::io("create dir", &downloads, e))?;
    let tmp = downloads.join(format!(
        "pack-{}.tmp-{}",
        digest_hex(diff_id),
        std::process::id()
    ));
    let file = std::fs::File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    let gz =
        flate2::write::GzEncoder::new(HashingWriter::new(file), flate2::Compression::default());
    let tar_hash = crate::pack::pack_layer(&dir, HashingWriter::new(gz))?;
    let (gz, tar_digest, _) = tar_hash.finish();
    let blob_hash = gz.finish().map_err(|e| Error::io("compress", &tmp, e))?;
    let (mut file, digest, size) = blob_hash.finish();
    file.flush().map_err(|e| Error::io("write", &tmp, e))?;
    file.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
    let info = BlobInfo {
        digest,
        size,
        media_type: DOCKER_LAYER_GZIP.into(),
        diff_id: tar_digest,
    };
    store.put_layer_blob(&tmp, diff_id, &info)?;
    store
        .layer_blob(diff_id)
        .ok_or_else(|| Error::Store(format!("blob of layer {diff_id} vanished")))
}

/// Uploads one layer blob unless the registry has it or can mount it from `sources`.
#[allow(clippy::too_many_arguments)]
async fn upload_layer(
    client: &oci_client::Client,
    r: &Reference,
    target: &oci_client::Reference,
    diff_id: &str,
    path: &std::path::Path,
    info: &BlobInfo,
    sources: Vec<String>,
    progress: &ProgressSink,
) -> Result<Outcome> {
    let ctx = format!("push layer {} to {r}", info.digest);
    if client
        .blob_exists(target, &info.digest)
        .await
        .map_err(|e| push_error(r, &ctx, e))?
    {
        progress.layer(diff_id, LayerStatus::LayerAlreadyExists);
        return Ok(Outcome::Existed);
    }
    let prefix = format!("{}/", r.domain);
    for src in sources {
        let Some(path) = src.strip_prefix(&prefix) else {
            continue;
        };
        if path == r.path {
            continue;
        }
        let from = oci_client::Reference::with_tag(
            target.registry().to_string(),
            path.to_string(),
            "latest".into(),
        );
        match client.mount_blob(target, &from, &info.digest).await {
            Ok(()) => {
                let shown = Reference {
                    domain: r.domain.clone(),
                    path: path.to_string(),
                    tag: None,
                    digest: None,
                };
                let repository = if r.domain == crate::reference::DEFAULT_DOMAIN {
                    path.to_string()
                } else {
                    shown.familiar_name()
                };
                progress.layer(diff_id, LayerStatus::MountedFrom { repository });
                return Ok(Outcome::Mounted);
            }
            Err(e) => tracing::debug!(from = %path, error = %e, "mount failed; uploading"),
        }
    }
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io("open", path, e))?;
    let total = info.size;
    let progress2 = progress.clone();
    let id = diff_id.to_string();
    let stream = futures_util::stream::unfold((file, 0u64), move |(mut f, sent)| {
        let progress = progress2.clone();
        let id = id.clone();
        async move {
            let mut buf = vec![0u8; UPLOAD_CHUNK];
            let mut n = 0;
            while n < buf.len() {
                match f.read(&mut buf[n..]).await {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) => {
                        return Some((
                            Err(oci_client::errors::OciDistributionError::IoError(e)),
                            (f, sent),
                        ))
                    }
                }
            }
            if n == 0 {
                return None;
            }
            buf.truncate(n);
            let sent = sent + n as u64;
            progress.layer(
                &id,
                LayerStatus::Pushing {
                    current: sent,
                    total,
                },
            );
            Some((Ok(Bytes::from(buf)), (f, sent)))
        }
    });
    let res = client
        .push_blob_stream_chunked(target, stream)
        .await
        .map_err(|e| push_error(r, &ctx, e))?;
    if res.blob_digest != info.digest {
        return Err(Error::DigestMismatch {
            what: "pushed layer",
            expected: info.digest.clone(),
            actual: res.blob_digest,
        });
    }
    progress.layer(diff_id, LayerStatus::Pushed);
    Ok(Outcome::Pushed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_types_follow_the_manifest_family() {
        assert_eq!(layer_media_type(OCI_LAYER_GZIP, false), DOCKER_LAYER_GZIP);
        assert_eq!(layer_media_type(DOCKER_LAYER_GZIP, true), OCI_LAYER_GZIP);
        assert_eq!(layer_media_type(OCI_LAYER_TAR, true), OCI_LAYER_TAR);
        assert_eq!(layer_media_type(OCI_LAYER_ZSTD, false), OCI_LAYER_ZSTD);
    }

    #[test]
    fn packed_blobs_are_kept_and_identical() {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::DirStore::open(&dir.path().join("store")).unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("f"), b"content").unwrap();
        let tar = crate::pack::pack_layer(&src, Vec::new()).unwrap();
        s.create_image(&[tar], json!({"os": "linux"}), "x").unwrap();
        let img = s.image("x").unwrap().unwrap();
        let (p, info) = pack_blob(&s, &img.diff_ids[0]).unwrap();
        assert_eq!(
            info.diff_id, img.diff_ids[0],
            "re-tar gives the same diff id"
        );
        assert_eq!(sha256_digest(&std::fs::read(&p).unwrap()), info.digest);
        assert_eq!(s.layer_blob(&img.diff_ids[0]).unwrap().1, info);
    }
}
