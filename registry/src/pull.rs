//! The pull pipeline: reference → manifest → config → layers (parallel, streamed into the
//! store while downloading, resumable) → image registered only when everything verified.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use oci_client::client::BlobResponse;
use sha2::{Digest, Sha256};
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::auth::AuthConfig;
use crate::client::{pull_error, Endpoint};
use crate::error::{Error, ErrorKind, Result};
use crate::fsutil::{check_digest, digest_hex, hex, sha256_digest};
use crate::manifest::{self, Compression, Descriptor, Parsed};
use crate::platform::Platform;
use crate::progress::{LayerStatus, ProgressSink};
use crate::reference::Reference;
use crate::store::{BlobInfo, NewImage, RegistryStore};
use crate::unpack::unpack_layer;
use crate::Registry;

/// How often (in compressed bytes) a download reports `Downloading`.
const PROGRESS_EVERY: u64 = 512 * 1024;

/// Options of one pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `--platform` (`linux/arm64`); empty means the host's.
    pub platform: String,
    /// Credentials for the registry (from `X-Registry-Auth` or a config file).
    pub auth: AuthConfig,
}

/// A layer whose download continued a kept partial blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumedLayer {
    /// The blob digest.
    pub digest: String,
    /// Bytes that were already on disk (the Range request started there).
    pub offset: u64,
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// `sha256:` of the image config (the image id).
    pub image_id: String,
    /// The reference as Docker prints it (`busybox:latest`).
    pub reference: String,
    /// Digest of the manifest (or of the index, when the reference named one): `Digest: ...`.
    pub digest: String,
    /// `name@sha256:...` recorded for the image.
    pub repo_digest: String,
    /// The image was already there (`Image is up to date for ...`).
    pub up_to_date: bool,
    /// Layers downloaded (blob digests).
    pub downloaded: Vec<String>,
    /// Layers the store already had.
    pub already_existed: Vec<String>,
    /// Downloads that continued a partial blob with a Range request.
    pub resumed: Vec<ResumedLayer>,
    /// Foreign / non-distributable layers that were skipped.
    pub skipped: Vec<String>,
    /// The endpoint the image came from (`host[:port]`: a mirror or the registry).
    pub endpoint: String,
}

/// One layer to download.
#[derive(Clone)]
struct Job {
    desc: Descriptor,
    diff_id: String,
}

/// A downloaded, verified, unpacked layer (committed right after).
struct Done {
    dir: PathBuf,
    blob_file: PathBuf,
    info: BlobInfo,
    resumed: Option<ResumedLayer>,
}

impl Registry {
    /// Pulls `reference` (`name[:tag]` or `name@sha256:...`) into the store, reporting
    /// progress to `progress`. Docker's messages on failure: `invalid reference format`,
    /// `manifest for x:y not found: manifest unknown: manifest unknown`, `pull access denied
    /// for x, repository does not exist or may require 'docker login': ...`.
    #[tracing::instrument(skip_all, fields(image = %reference))]
    pub async fn pull(
        &self,
        reference: &str,
        options: &PullOptions,
        progress: &ProgressSink,
    ) -> Result<PullReport> {
        let r = Reference::parse(reference)?.with_default_tag();
        let platform = Platform::parse(&options.platform)?;
        let endpoints = self.config.pull_endpoints(&r);
        progress.status(Some(&r.tag_or_digest()), format!("Pulling from {}", r.path));

        // Manifest: mirrors first, then the registry.
        let mut last_err = None;
        let mut found = None;
        for ep in &endpoints {
            let transport = self.config.transport(&ep.host).await;
            let auth = if ep.mirror {
                oci_client::secrets::RegistryAuth::Anonymous
            } else {
                let scope = format!("repository:{}:pull", r.path);
                self.oci_auth(&options.auth, &ep.host, transport, &scope)
                    .await?
            };
            let client = self.config.oci_client(&ep.host, transport);
            match self
                .resolve_manifest(&client, &r, ep, &auth, &platform)
                .await
            {
                Ok(m) => {
                    found = Some((ep.clone(), client, m));
                    break;
                }
                Err(e) if ep.mirror => {
                    tracing::warn!(mirror = %ep.host, error = %e, "mirror failed; trying the next endpoint");
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        let Some((ep, client, resolved)) = found else {
            return Err(last_err.unwrap_or_else(|| Error::NotFound("no endpoint".into())));
        };
        let oci_ref = r.to_oci(&ep.host);

        // Config blob, verified.
        let config = fetch_blob(&client, &r, &oci_ref, &resolved.config.digest).await?;
        let actual = sha256_digest(&config);
        if actual != resolved.config.digest {
            return Err(Error::DigestMismatch {
                what: "image config",
                expected: resolved.config.digest.clone(),
                actual,
            });
        }
        let config_json: serde_json::Value = serde_json::from_slice(&config)
            .map_err(|e| Error::Unsupported(format!("invalid image config: {e}")))?;
        // Docker refuses images of another OS before downloading their layers.
        let os = config_json["os"].as_str().unwrap_or("");
        if !os.is_empty() && os != "linux" {
            return Err(Error::Unsupported(format!(
                "image operating system \"{os}\" cannot be used on this platform: operating system is not supported"
            )));
        }
        let diff_ids: Vec<String> = config_json["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if diff_ids.len() != resolved.layers.len() {
            return Err(Error::Unsupported(format!(
                "invalid image {}: the manifest has {} layers but the config has {} diff ids",
                r.familiar_string(),
                resolved.layers.len(),
                diff_ids.len()
            )));
        }
        let image_id = actual;
        let repo_digest = format!("{}@{}", r.familiar_name(), resolved.top_digest);
        let familiar = r.familiar_string();
        let repo_tag = r
            .tag
            .as_ref()
            .filter(|_| r.digest.is_none())
            .map(|_| familiar.clone());

        let mut report = PullReport {
            image_id: image_id.clone(),
            reference: familiar.clone(),
            digest: resolved.top_digest.clone(),
            repo_digest: repo_digest.clone(),
            up_to_date: false,
            downloaded: Vec::new(),
            already_existed: Vec::new(),
            resumed: Vec::new(),
            skipped: Vec::new(),
            endpoint: ep.host.clone(),
        };

        // Which layers to fetch.
        let store = self.store.clone();
        let mut jobs: Vec<Job> = Vec::new();
        let mut kept_diff_ids = Vec::new();
        for (desc, diff_id) in resolved.layers.iter().zip(&diff_ids) {
            if manifest::is_foreign(&desc.media_type) {
                progress.layer(
                    &desc.digest,
                    LayerStatus::Skipped {
                        reason: format!("Skipping foreign layer ({})", desc.media_type),
                    },
                );
                tracing::warn!(digest = %desc.digest, media_type = %desc.media_type, "skipping foreign layer");
                report.skipped.push(desc.digest.clone());
                continue;
            }
            check_digest(&desc.digest)?;
            kept_diff_ids.push(diff_id.clone());
            if store.has_layer(diff_id) {
                if !report.already_existed.contains(&desc.digest) {
                    progress.layer(&desc.digest, LayerStatus::AlreadyExists);
                    report.already_existed.push(desc.digest.clone());
                }
                continue;
            }
            if jobs.iter().any(|j| j.desc.digest == desc.digest) {
                continue;
            }
            jobs.push(Job {
                desc: desc.clone(),
                diff_id: diff_id.clone(),
            });
        }

        let existing = store.image(&image_id).ok().flatten();
        let current = match &repo_tag {
            Some(t) => store.image(t).ok().flatten().map(|i| i.id),
            None => existing.as_ref().map(|i| i.id.clone()),
        };
        if jobs.is_empty() && current.as_deref() == Some(image_id.as_str()) {
            let s = store.clone();
            let (rd, id) = (repo_digest.clone(), image_id.clone());
            blocking(move || s.add_repo_digest(&id, &rd)).await?;
            progress.status(None, format!("Digest: {}", resolved.top_digest));
            progress.status(None, format!("Status: Image is up to date for {familiar}"));
            report.up_to_date = true;
            return Ok(report);
        }

        for (i, j) in jobs.iter().enumerate() {
            progress.layer(&j.desc.digest, LayerStatus::PullingFsLayer);
            if i >= self.config.max_concurrent_downloads.max(1) {
                progress.layer(&j.desc.digest, LayerStatus::Waiting);
            }
        }
        let downloads = store.downloads_dir();
        fs::create_dir_all(&downloads).map_err(|e| Error::io("create dir", &downloads, e))?;
        let results: Vec<(String, Result<Option<Option<ResumedLayer>>>)> =
            futures_util::stream::iter(jobs)
                .map(|job| {
                    let client = client.clone();
                    let oci_ref = oci_ref.clone();
                    let r = r.clone();
                    let store = store.clone();
                    let downloads = downloads.clone();
                    let progress = progress.clone();
                    let lock = self.blob_lock(&job.desc.digest);
                    let attempts = self.config.max_download_attempts.max(1);
                    let delay = self.config.retry_delay;
                    async move {
                        let digest = job.desc.digest.clone();
                        // Held until the layer is committed: a concurrent pull of the same blob
                        // waits, then finds the layer there.
                        let _guard = lock.lock_owned().await;
                        if store.has_layer(&job.diff_id) {
                            // Another pull committed it while this one waited.
                            progress.layer(&digest, LayerStatus::AlreadyExists);
                            return (digest, Ok(None));
                        }
                        let mut attempt = 1;
                        let res = loop {
                            let res = pull_layer(
                                &client,
                                &r,
                                &oci_ref,
                                job.clone(),
                                store.clone(),
                                &downloads,
                                &progress,
                            )
                            .await;
                            match res {
                                // Network trouble: try again (resuming from the partial
                                // blob), as Docker does `max-download-attempts` times.
                                Err(e) if e.kind() == ErrorKind::Unavailable && attempt < attempts => {
                                    let wait = delay * attempt as u32;
                                    tracing::warn!(%digest, attempt, error = %e, "layer download failed; retrying");
                                    progress.layer(
                                        &digest,
                                        LayerStatus::Retrying {
                                            seconds: wait.as_secs_f64().ceil() as u64,
                                        },
                                    );
                                    tokio::time::sleep(wait).await;
                                    attempt += 1;
                                }
                                other => break other,
                            }
                        };
                        // A verified layer is committed at once (releasing its lock): a pull of
                        // another image waiting for it, or the next try of an interrupted pull,
                        // finds it there ("Already exists").
                        let res = match res {
                            Ok(d) => {
                                let p = progress.clone();
                                let dg = digest.clone();
                                blocking(move || {
                                    let committed = store
                                        .commit_layer(&d.dir, &d.info.diff_id)
                                        .and_then(|()| {
                                            store.put_layer_blob(
                                                &d.blob_file,
                                                &d.info.diff_id,
                                                &d.info,
                                            )
                                        });
                                    if committed.is_err() {
                                        store.discard_layer_dir(&d.dir);
                                    }
                                    committed?;
                                    p.layer(&dg, LayerStatus::PullComplete);
                                    Ok(Some(d.resumed))
                                })
                                .await
                            }
                            Err(e) => Err(e),
                        };
                        (digest, res)
                    }
                })
                .buffer_unordered(self.config.max_concurrent_downloads.max(1))
                .collect()
                .await;

        // The image is registered only if every layer verified.
        let mut first_err = None;
        for (digest, res) in results {
            match res {
                Ok(Some(resumed)) => {
                    self.remember_source(&digest, &r);
                    report.downloaded.push(digest);
                    report.resumed.extend(resumed);
                }
                Ok(None) => report.already_existed.push(digest),
                Err(e) => {
                    tracing::debug!(%digest, error = %e, "layer failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        let s = store.clone();
        let new_image = NewImage {
            config,
            diff_ids: kept_diff_ids,
            repo_tag,
            repo_digest,
        };
        let id = blocking(move || s.register_image(new_image)).await?;
        debug_assert_eq!(id, image_id);
        for d in &report.already_existed {
            self.remember_source(d, &r);
        }
        self.save_sources().await;
        progress.status(None, format!("Digest: {}", resolved.top_digest));
        progress.status(
            None,
            format!("Status: Downloaded newer image for {familiar}"),
        );
        tracing::info!(image = %familiar, id = %image_id, "pulled");
        Ok(report)
    }

    /// The tags of a repository (`docker pull --all-tags` pulls each), sorted as the
    /// registry lists them. Pages through the registry's list.
    pub async fn list_tags(&self, repository: &str, auth: &AuthConfig) -> Result<Vec<String>> {
        let r = Reference::parse(repository)?.with_default_tag();
        let host = r.registry_host();
        let transport = self.config.transport(&host).await;
        let client = self.config.oci_client(&host, transport);
        let oci_ref = r.to_oci(&host);
        let mut tags: Vec<String> = Vec::new();
        loop {
            let page = client
                .list_tags(
                    &oci_ref,
                    &auth.to_oci(),
                    Some(1000),
                    tags.last().map(String::as_str),
                )
                .await
                .map_err(|e| pull_error(&r, &format!("list tags of {}", r.name()), e))?;
            let n = page.tags.len();
            tags.extend(page.tags);
            if n < 1000 {
                return Ok(tags);
            }
        }
    }

    /// `/distribution/{name}/json`: the manifest descriptor and platforms of a reference.
    pub async fn inspect_distribution(
        &self,
        reference: &str,
        auth: &AuthConfig,
    ) -> Result<crate::DistributionInspect> {
        let r = Reference::parse(reference)?.with_default_tag();
        let host = r.registry_host();
        let transport = self.config.transport(&host).await;
        let client = self.config.oci_client(&host, transport);
        let oci_ref = r.to_oci(&host);
        let (body, digest) = client
            .pull_manifest_raw(&oci_ref, &auth.to_oci(), manifest::ACCEPT)
            .await
            .map_err(|e| pull_error(&r, &format!("fetch manifest of {r}"), e))?;
        let parsed = manifest::parse(&body, &r.familiar_string())?;
        let (media_type, platforms) = match parsed {
            Parsed::Index {
                media_type,
                manifests,
            } => (
                media_type,
                manifests
                    .iter()
                    .filter_map(|m| m.platform.as_ref())
                    .map(|p| crate::Platform {
                        os: p.os.clone(),
                        architecture: p.architecture.clone(),
                        variant: p.variant.clone().unwrap_or_default(),
                    })
                    .collect(),
            ),
            Parsed::Image {
                media_type, config, ..
            } => {
                let cfg = fetch_blob(&client, &r, &oci_ref, &config.digest).await?;
                let v: serde_json::Value = serde_json::from_slice(&cfg).unwrap_or_default();
                let p = crate::Platform {
                    os: v["os"].as_str().unwrap_or("linux").to_string(),
                    architecture: v["architecture"].as_str().unwrap_or("").to_string(),
                    variant: v["variant"].as_str().unwrap_or("").to_string(),
                };
                (media_type, vec![p])
            }
        };
        Ok(crate::DistributionInspect {
            descriptor: crate::ManifestDescriptor {
                media_type,
                digest,
                size: body.len() as u64,
            },
            platforms,
        })
    }

    /// Fetches the manifest at `ep`, following an index to `platform`'s manifest.
    async fn resolve_manifest(
        &self,
        client: &oci_client::Client,
        r: &Reference,
        ep: &Endpoint,
        auth: &oci_client::secrets::RegistryAuth,
        platform: &Platform,
    ) -> Result<Resolved> {
        let oci_ref = r.to_oci(&ep.host);
        let ctx = format!("fetch manifest of {r} from {}", ep.host);
        let (body, digest) = client
            .pull_manifest_raw(&oci_ref, auth, manifest::ACCEPT)
            .await
            .map_err(|e| pull_error(r, &ctx, e))?;
        match manifest::parse(&body, &r.familiar_string())? {
            Parsed::Image { config, layers, .. } => Ok(Resolved {
                top_digest: digest,
                config,
                layers,
            }),
            Parsed::Index { manifests, .. } => {
                let entry = manifest::select_platform(&manifests, platform)?;
                let by_digest = oci_ref.clone_with_digest(entry.digest.clone());
                let (body, _) = client
                    .pull_manifest_raw(&by_digest, auth, manifest::ACCEPT)
                    .await
                    .map_err(|e| pull_error(r, &ctx, e))?;
                let actual = sha256_digest(&body);
                if actual != entry.digest {
                    return Err(Error::DigestMismatch {
                        what: "manifest",
                        expected: entry.digest.clone(),
                        actual,
                    });
                }
                match manifest::parse(&body, &r.familiar_string())? {
                    Parsed::Image { config, layers, .. } => Ok(Resolved {
                        top_digest: digest,
                        config,
                        layers,
                    }),
                    Parsed::Index { .. } => Err(Error::Unsupported(format!(
                        "unsupported manifest for {}: nested index",
                        r.familiar_string()
                    ))),
                }
            }
        }
    }
}

/// A manifest resolved for the platform.
struct Resolved {
    /// What the reference named (the index digest for a multi-platform image).
    top_digest: String,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// Runs store work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Store(format!("blocking task failed: {e}")))?
}

/// Fetches a small blob (a config) whole.
async fn fetch_blob(
    client: &oci_client::Client,
    r: &Reference,
    oci_ref: &oci_client::Reference,
    digest: &str,
) -> Result<Vec<u8>> {
    let ctx = format!("fetch blob {digest} of {r}");
    let resp = client
        .pull_blob_stream_partial(oci_ref, digest, 0, None)
        .await
        .map_err(|e| pull_error(r, &ctx, e))?;
    let mut stream = match resp {
        BlobResponse::Full(s) | BlobResponse::Partial(s) => s.stream,
    };
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::registry(ctx.clone(), e.into()))?;
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Downloads one layer into the store's temp layer dir, resuming a kept partial blob.
#[allow(clippy::too_many_arguments)]
async fn pull_layer(
    client: &oci_client::Client,
    r: &Reference,
    oci_ref: &oci_client::Reference,
    job: Job,
    store: Arc<dyn RegistryStore>,
    downloads: &Path,
    progress: &ProgressSink,
) -> Result<Done> {
    let digest = job.desc.digest.clone();
    let partial = downloads.join(format!("{}.partial", digest_hex(&digest)));
    let mut retried = false;
    loop {
        let have = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        // A kept prefix as long as the blob cannot be continued: start again.
        let offset = if job.desc.size > 0 && have >= job.desc.size {
            0
        } else {
            have
        };
        let ctx = format!("download layer {digest} of {r}");
        let resp = client
            .pull_blob_stream_partial(oci_ref, digest.as_str(), offset, None)
            .await
            .map_err(|e| pull_error(r, &ctx, e))?;
        let (stream, from) = match resp {
            BlobResponse::Partial(s) => (s, offset),
            // The registry ignored the Range header: the body is the whole blob.
            BlobResponse::Full(s) => (s, 0),
        };
        if from > 0 {
            tracing::info!(%digest, offset = from, "resuming layer download");
            progress.layer(&digest, LayerStatus::Resuming { offset: from });
        }
        let reader = SyncIoBridge::new(StreamReader::new(stream.stream));
        let dir = {
            let s = store.clone();
            blocking(move || s.new_layer_dir()).await?
        };
        let (p, d, j, part) = (progress.clone(), dir.clone(), job.clone(), partial.clone());
        let res =
            tokio::task::spawn_blocking(move || layer_pipeline(reader, &part, from, &j, &d, &p))
                .await
                .map_err(|e| Error::Store(format!("layer task failed: {e}")))?;
        match res {
            Ok(info) => {
                return Ok(Done {
                    dir,
                    blob_file: partial,
                    info,
                    resumed: (from > 0).then(|| ResumedLayer {
                        digest: digest.clone(),
                        offset: from,
                    }),
                })
            }
            Err(e) => {
                store.discard_layer_dir(&dir);
                // A resumed blob that does not verify had a bad kept prefix (the pipeline
                // removed it): download it whole, once.
                if from > 0 && !retried && matches!(e, Error::DigestMismatch { .. }) {
                    tracing::warn!(%digest, error = %e, "resumed download did not verify; downloading it again");
                    retried = true;
                    continue;
                }
                return Err(e);
            }
        }
    }
}

/// Reads the kept prefix of a partial blob, then the network, writing what comes from the
/// network to the partial file; hashes and counts everything; reports `Downloading`.
struct Tee<'a, R> {
    prefix: Option<io::Take<File>>,
    net: R,
    out: File,
    hasher: Sha256,
    count: u64,
    total: u64,
    reported: u64,
    /// The network read that failed, if one did (the partial blob is then kept).
    net_error: Option<String>,
    digest: &'a str,
    progress: &'a ProgressSink,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.prefix.as_mut() {
            Some(p) => match p.read(buf)? {
                0 => {
                    self.prefix = None;
                    return self.read(buf);
                }
                n => n,
            },
            None => {
                let n = match self.net.read(buf) {
                    Ok(n) => n,
                    Err(e) => {
                        self.net_error = Some(e.to_string());
                        return Err(e);
                    }
                };
                self.out.write_all(&buf[..n])?;
                n
            }
        };
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        if self.count - self.reported >= PROGRESS_EVERY || (n == 0 && self.count != self.reported) {
            self.reported = self.count;
            self.progress.layer(
                self.digest,
                LayerStatus::Downloading {
                    current: self.count,
                    total: self.total,
                },
            );
        }
        Ok(n)
    }
}

/// download → sha256 → decompress → untar, all streaming; then verify digest, size, diff id.
fn layer_pipeline<R: Read>(
    net: R,
    partial: &Path,
    from: u64,
    job: &Job,
    dir: &Path,
    progress: &ProgressSink,
) -> Result<BlobInfo> {
    let digest = job.desc.digest.as_str();
    let mut out = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(partial)
        .map_err(|e| Error::io("open", partial, e))?;
    out.set_len(from)
        .map_err(|e| Error::io("truncate", partial, e))?;
    out.seek(io::SeekFrom::End(0))
        .map_err(|e| Error::io("seek", partial, e))?;
    let prefix = if from > 0 {
        Some(
            File::open(partial)
                .map_err(|e| Error::io("open", partial, e))?
                .take(from),
        )
    } else {
        None
    };
    let mut tee = Tee {
        prefix,
        net,
        out,
        hasher: Sha256::new(),
        count: 0,
        total: job.desc.size,
        reported: 0,
        net_error: None,
        digest,
        progress,
    };
    let unpacked = {
        let mut buf = BufReader::with_capacity(256 * 1024, &mut tee);
        // By magic bytes, as Docker's DecompressStream does: media types sometimes lie
        // (uncompressed layers labelled gzip exist in the wild).
        let head = buf.fill_buf().map_err(|e| net_err(digest, e))?;
        let compression = if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        };
        let res = match compression {
            Compression::Gzip => {
                unpack_layer(flate2::bufread::MultiGzDecoder::new(&mut buf), dir, digest)
            }
            Compression::Zstd => match ruzstd::decoding::StreamingDecoder::new(&mut buf) {
                Ok(dec) => unpack_layer(dec, dir, digest),
                Err(e) => Err(Error::BadLayer {
                    digest: digest.to_string(),
                    message: format!("zstd: {e}"),
                }),
            },
            Compression::None => unpack_layer(&mut buf, dir, digest),
        };
        // Whatever happened, read the blob to its end: the digest decides what the error is.
        let drained = io::copy(&mut buf, &mut io::sink());
        (res, drained)
    };
    let (unpacked, drained) = unpacked;
    tee.out
        .sync_data()
        .map_err(|e| Error::io("fsync", partial, e))?;
    let count = tee.count;
    // An interrupted download keeps its partial blob for the next pull to resume.
    if let Some(e) = tee.net_error.take() {
        return Err(net_err(
            digest,
            io::Error::other(format!(
                "interrupted after {count} of {} bytes: {e}",
                job.desc.size
            )),
        ));
    }
    if let Err(e) = drained {
        return Err(net_err(digest, e));
    }
    if job.desc.size > 0 && count < job.desc.size {
        return Err(net_err(
            digest,
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("interrupted after {count} of {} bytes", job.desc.size),
            ),
        ));
    }
    let actual = format!("sha256:{}", hex(&tee.hasher.finalize_reset()));
    if actual != digest {
        let _ = fs::remove_file(partial);
        return Err(Error::DigestMismatch {
            what: "filesystem layer",
            expected: digest.to_string(),
            actual,
        });
    }
    progress.layer(digest, LayerStatus::VerifyingChecksum);
    if job.desc.size > 0 && count != job.desc.size {
        let _ = fs::remove_file(partial);
        return Err(Error::BadLayer {
            digest: digest.to_string(),
            message: format!(
                "size {count} does not match the manifest's {}",
                job.desc.size
            ),
        });
    }
    progress.layer(digest, LayerStatus::DownloadComplete);
    let unpacked = match unpacked {
        Ok(u) => u,
        Err(e) => {
            let _ = fs::remove_file(partial);
            return Err(e);
        }
    };
    if unpacked.diff_id != job.diff_id {
        let _ = fs::remove_file(partial);
        return Err(Error::DigestMismatch {
            what: "layer diff id",
            expected: job.diff_id.clone(),
            actual: unpacked.diff_id,
        });
    }
    progress.layer(
        digest,
        LayerStatus::Extracting {
            current: count,
            total: count,
        },
    );
    Ok(BlobInfo {
        digest: digest.to_string(),
        size: count,
        media_type: job.desc.media_type.clone(),
        diff_id: unpacked.diff_id,
    })
}

fn net_err(digest: &str, e: io::Error) -> Error {
    Error::Registry {
        context: format!("download layer {digest}"),
        source: Box::new(oci_client::errors::OciDistributionError::IoError(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Progress;

    /// Yields `data`, then fails (a connection cut) if `fail`.
    struct Cut {
        data: io::Cursor<Vec<u8>>,
        fail: bool,
    }

    impl Read for Cut {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let max = buf.len().min(1000);
            let n = self.data.read(&mut buf[..max])?;
            if n == 0 && self.fail {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "cut"));
            }
            Ok(n)
        }
    }

    fn layer() -> (Vec<u8>, Vec<u8>) {
        let mut b = tar::Builder::new(Vec::new());
        let data = vec![42u8; 50_000];
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, "f", &data[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        io::Write::write_all(&mut gz, &tar).unwrap();
        (tar, gz.finish().unwrap())
    }

    #[test]
    fn a_cut_download_keeps_its_prefix_and_resumes_from_it() {
        let (tar, gz) = layer();
        let job = Job {
            desc: Descriptor {
                media_type: manifest::OCI_LAYER_GZIP.into(),
                digest: sha256_digest(&gz),
                size: gz.len() as u64,
                ..Descriptor::default()
            },
            diff_id: sha256_digest(&tar),
        };
        let dir = tempfile::tempdir().unwrap();
        let partial = dir.path().join("x.partial");
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let ev = events.clone();
        let progress = ProgressSink::new(move |p| ev.lock().unwrap().push(p));

        let cut = 20_000;
        let first = Cut {
            data: io::Cursor::new(gz[..cut].to_vec()),
            fail: true,
        };
        let out1 = dir.path().join("l1");
        fs::create_dir(&out1).unwrap();
        let e = layer_pipeline(first, &partial, 0, &job, &out1, &progress).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert_eq!(fs::read(&partial).unwrap(), &gz[..cut], "prefix kept");

        let rest = Cut {
            data: io::Cursor::new(gz[cut..].to_vec()),
            fail: false,
        };
        let out2 = dir.path().join("l2");
        fs::create_dir(&out2).unwrap();
        let info = layer_pipeline(rest, &partial, cut as u64, &job, &out2, &progress).unwrap();
        assert_eq!(info.digest, job.desc.digest);
        assert_eq!(info.diff_id, job.diff_id);
        assert_eq!(fs::read(&partial).unwrap(), gz, "whole blob on disk");
        assert_eq!(fs::read(out2.join("f")).unwrap().len(), 50_000);
        let ev = events.lock().unwrap();
        assert!(ev.iter().any(|p| matches!(
            p,
            Progress::Layer {
                status: LayerStatus::Downloading { current, .. },
                ..
            } if *current == gz.len() as u64
        )));
    }

    #[test]
    fn a_wrong_blob_is_refused_and_its_partial_removed() {
        let (tar, gz) = layer();
        let job = Job {
            desc: Descriptor {
                media_type: manifest::OCI_LAYER_GZIP.into(),
                digest: format!("sha256:{}", "0".repeat(64)),
                size: gz.len() as u64,
                ..Descriptor::default()
            },
            diff_id: sha256_digest(&tar),
        };
        let dir = tempfile::tempdir().unwrap();
        let partial = dir.path().join("x.partial");
        let r = Cut {
            data: io::Cursor::new(gz),
            fail: false,
        };
        let e =
            layer_pipeline(r, &partial, 0, &job, dir.path(), &ProgressSink::none()).unwrap_err();
        assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
        assert!(!partial.exists());
    }
}
