//! `docker load` / `docker save` archives: docker-archive (`manifest.json`) and OCI image
//! layout (`index.json`), read and written.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use berth_registry::Reference;
use serde_json::{json, Value};

use crate::fsutil::{decompress, digest_hex, file_digest, io_err, is_digest, sha256_digest};
use crate::store::{host_arch, NewRecord, Store, MEDIA_TAR};
use crate::{Error, Loaded, Result};

const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

fn bad(msg: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("invalid image archive: {msg}"))
}

/// One image found in an archive.
struct Entry {
    config: PathBuf,
    /// Expected digest of the config (OCI descriptors, or the file name in docker archives).
    config_digest: String,
    layers: Vec<(PathBuf, Option<String>)>,
    tags: Vec<String>,
}

/// Removes the spool dir when the load ends, however it ends.
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn load(store: &Store, archive: impl Read) -> Result<Vec<Loaded>> {
    let spool = Spool(store.tmp_path("load"));
    fs::create_dir_all(&spool.0).map_err(|e| io_err(&spool.0, e))?;
    let mut tar = tar::Archive::new(decompress(archive)?);
    // unpack() refuses entries that would land outside the directory.
    tar.unpack(&spool.0)
        .map_err(|e| bad(format!("read tar: {e}")))?;
    let dir = &spool.0;
    let entries = if dir.join("manifest.json").is_file() {
        docker_entries(dir)?
    } else if dir.join("index.json").is_file() {
        oci_entries(dir)?
    } else {
        return Err(bad(
            "no manifest.json (docker save) or index.json (OCI layout) in it",
        ));
    };
    if entries.is_empty() {
        return Err(bad("it holds no image"));
    }
    // Verify and unpack everything first; register images only when all of it is good.
    let mut ready = Vec::new();
    let before: HashSet<String> = HashSet::new();
    let mut added_layers: Vec<String> = Vec::new();
    let result = (|| {
        for e in &entries {
            let config =
                fs::read(&e.config).map_err(|x| bad(format!("{}: {x}", rel(dir, &e.config))))?;
            if !e.config_digest.is_empty() && sha256_digest(&config) != e.config_digest {
                return Err(bad(format!(
                    "config {} does not match its digest",
                    rel(dir, &e.config)
                )));
            }
            let cfg: Value = serde_json::from_slice(&config)
                .map_err(|x| bad(format!("config {}: {x}", rel(dir, &e.config))))?;
            let diff_ids: Vec<String> = cfg["rootfs"]["diff_ids"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|d| d.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if diff_ids.len() != e.layers.len() {
                return Err(bad(format!(
                    "config lists {} layers, the manifest {}",
                    diff_ids.len(),
                    e.layers.len()
                )));
            }
            for ((path, digest), want) in e.layers.iter().zip(&diff_ids) {
                if let Some(d) = digest {
                    let got = file_digest(path)?;
                    if &got != d {
                        return Err(bad(format!(
                            "layer {} does not match its digest {d}",
                            rel(dir, path)
                        )));
                    }
                }
                if store.has_layer(want) {
                    continue;
                }
                let f = File::open(path).map_err(|x| bad(format!("{}: {x}", rel(dir, path))))?;
                let (diff_id, _) = store.unpack_layer(BufReader::new(f), &rel(dir, path))?;
                if !before.contains(&diff_id) {
                    added_layers.push(diff_id.clone());
                }
                if &diff_id != want {
                    return Err(bad(format!(
                        "layer {} has diff id {diff_id}, the config says {want}",
                        rel(dir, path)
                    )));
                }
            }
            ready.push((config, diff_ids, e.tags.clone()));
        }
        Ok(())
    })();
    if let Err(e) = result {
        store.discard_unused_layers(&added_layers);
        return Err(e);
    }
    let mut loaded = Vec::new();
    for (config, diff_ids, tags) in ready {
        let id = store.register(NewRecord {
            config,
            diff_ids,
            tags: tags.clone(),
            repo_digest: None,
            parent: String::new(),
            cache_key: None,
        })?;
        let repo_tags = tags
            .iter()
            .filter_map(|t| Reference::parse(t).ok())
            .map(|r| r.with_default_tag().familiar_string())
            .collect();
        loaded.push(Loaded { id, repo_tags });
    }
    Ok(loaded)
}

fn rel(dir: &Path, p: &Path) -> String {
    p.strip_prefix(dir).unwrap_or(p).display().to_string()
}

/// A path inside the archive, refusing anything that leaves it.
fn inside(dir: &Path, name: &str) -> Result<PathBuf> {
    let p = Path::new(name);
    if p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(bad(format!("path {name:?} leaves the archive")));
    }
    Ok(dir.join(p))
}

/// Digest named by a `blobs/sha256/<hex>` or `<hex>.json` / `<hex>/layer.tar` path.
fn digest_in_path(name: &str) -> Option<String> {
    let base = Path::new(name);
    let candidates = [
        base.file_name().and_then(|f| f.to_str()),
        base.file_stem().and_then(|f| f.to_str()),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(|c| format!("sha256:{c}"))
        .find(|d| is_digest(d))
}

fn docker_entries(dir: &Path) -> Result<Vec<Entry>> {
    let data =
        fs::read(dir.join("manifest.json")).map_err(|e| bad(format!("manifest.json: {e}")))?;
    let list: Vec<Value> =
        serde_json::from_slice(&data).map_err(|e| bad(format!("manifest.json: {e}")))?;
    let mut out = Vec::new();
    for m in list {
        let config_name = m["Config"]
            .as_str()
            .ok_or_else(|| bad("manifest.json entry without Config"))?;
        let layers = m["Layers"]
            .as_array()
            .map(|a| a.iter().filter_map(|l| l.as_str()).collect::<Vec<_>>())
            .unwrap_or_default();
        let mut ls = Vec::new();
        for l in layers {
            // Only `blobs/sha256/<hex>` names promise the blob's digest; `<hex>/layer.tar`
            // names are v1 ids. Diff ids are checked for every layer anyway.
            let digest = l
                .starts_with("blobs/sha256/")
                .then(|| digest_in_path(l))
                .flatten();
            ls.push((inside(dir, l)?, digest));
        }
        out.push(Entry {
            config: inside(dir, config_name)?,
            config_digest: digest_in_path(config_name).unwrap_or_default(),
            layers: ls,
            tags: m["RepoTags"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    Ok(out)
}

fn blob(dir: &Path, digest: &str) -> Result<PathBuf> {
    if !is_digest(digest) {
        return Err(bad(format!("bad digest {digest:?}")));
    }
    Ok(dir.join("blobs/sha256").join(digest_hex(digest)))
}

fn read_verified(dir: &Path, digest: &str) -> Result<Vec<u8>> {
    let p = blob(dir, digest)?;
    let data = fs::read(&p).map_err(|e| bad(format!("blob {digest}: {e}")))?;
    if sha256_digest(&data) != digest {
        return Err(bad(format!("blob {digest} does not match its digest")));
    }
    Ok(data)
}

fn oci_entries(dir: &Path) -> Result<Vec<Entry>> {
    let data = fs::read(dir.join("index.json")).map_err(|e| bad(format!("index.json: {e}")))?;
    let index: Value =
        serde_json::from_slice(&data).map_err(|e| bad(format!("index.json: {e}")))?;
    let mut out = Vec::new();
    for desc in index["manifests"].as_array().into_iter().flatten() {
        let tags = oci_tags(desc);
        if let Some(e) = oci_manifest(dir, desc, tags, 0)? {
            out.push(e);
        }
    }
    Ok(out)
}

/// Names an OCI descriptor gives its image.
fn oci_tags(desc: &Value) -> Vec<String> {
    let ann = &desc["annotations"];
    if let Some(full) = ann["io.containerd.image.name"].as_str() {
        return vec![full.to_string()];
    }
    match ann["org.opencontainers.image.ref.name"].as_str() {
        // A full reference; a bare tag ("latest") names no repository, so no tag.
        Some(r) if r.contains(':') || r.contains('/') => vec![r.to_string()],
        _ => Vec::new(),
    }
}

fn oci_manifest(dir: &Path, desc: &Value, tags: Vec<String>, depth: u32) -> Result<Option<Entry>> {
    if depth > 4 {
        return Err(bad("indexes nested too deep"));
    }
    let digest = desc["digest"].as_str().unwrap_or_default();
    let media = desc["mediaType"].as_str().unwrap_or_default();
    let body: Value = serde_json::from_slice(&read_verified(dir, digest)?)
        .map_err(|e| bad(format!("manifest {digest}: {e}")))?;
    let media = if media.is_empty() {
        body["mediaType"].as_str().unwrap_or_default().to_string()
    } else {
        media.to_string()
    };
    if media == MEDIA_OCI_INDEX || media == MEDIA_DOCKER_LIST || body["manifests"].is_array() {
        // Pick this host's platform.
        let manifests = body["manifests"].as_array().cloned().unwrap_or_default();
        let pick = manifests
            .iter()
            .find(|m| {
                m["platform"]["os"] == "linux" && m["platform"]["architecture"] == host_arch()
            })
            .or_else(|| manifests.iter().find(|m| m["platform"].is_null()));
        return match pick {
            Some(m) => oci_manifest(dir, m, tags, depth + 1),
            None => Err(bad(format!(
                "no image for linux/{} in index {digest}",
                host_arch()
            ))),
        };
    }
    let config_digest = body["config"]["digest"]
        .as_str()
        .ok_or_else(|| bad(format!("manifest {digest} has no config")))?
        .to_string();
    let mut layers = Vec::new();
    for l in body["layers"].as_array().into_iter().flatten() {
        let d = l["digest"].as_str().unwrap_or_default();
        layers.push((blob(dir, d)?, Some(d.to_string())));
    }
    Ok(Some(Entry {
        config: blob(dir, &config_digest)?,
        config_digest,
        layers,
        tags,
    }))
}

/// Writes the named images as one archive that is both a `docker save` archive and an OCI
/// image layout (as Docker 25+ writes them). Layers are written uncompressed, byte for byte
/// the tars their diff ids name.
pub(crate) fn save(store: &Store, references: &[String], out: impl Write) -> Result<()> {
    let mut builder = tar::Builder::new(out);
    let mut written: HashSet<String> = HashSet::new();
    let mut manifest_json = Vec::new();
    let mut index = Vec::new();
    let mut repositories = serde_json::Map::new();
    let spool = Spool(store.tmp_path("save"));
    fs::create_dir_all(&spool.0).map_err(|e| io_err(&spool.0, e))?;
    let io = |e: std::io::Error| Error::Internal(format!("write archive: {e}"));
    builder
        .append_data(&mut dir_header(), "blobs/", std::io::empty())
        .map_err(io)?;
    builder
        .append_data(&mut dir_header(), "blobs/sha256/", std::io::empty())
        .map_err(io)?;
    for reference in references {
        let img = store.get(reference)?;
        // Saved by name: keep that tag; saved by id: no tag, as Docker.
        let tags: Vec<String> = match Reference::parse(reference.trim()) {
            Ok(r) if r.digest.is_none() && !img.id.contains(reference.trim()) => {
                let r = r.with_default_tag();
                vec![r.familiar_string()]
            }
            _ => Vec::new(),
        };
        let config = store.config_blob(&img.id)?;
        add_blob(
            &mut builder,
            &mut written,
            &img.id,
            &config[..],
            config.len() as u64,
        )?;
        let mut layer_names = Vec::new();
        let mut layer_descs = Vec::new();
        for diff_id in &img.diff_ids {
            let (path, size) = uncompressed_layer(store, diff_id, &spool.0)?;
            let f = File::open(&path).map_err(|e| io_err(&path, e))?;
            add_blob(&mut builder, &mut written, diff_id, f, size)?;
            layer_names.push(format!("blobs/sha256/{}", digest_hex(diff_id)));
            layer_descs.push(json!({"mediaType": MEDIA_TAR, "digest": diff_id, "size": size}));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": img.id, "size": config.len()},
            "layers": layer_descs,
        });
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| Error::Internal(e.to_string()))?;
        let manifest_digest = sha256_digest(&manifest_bytes);
        add_blob(
            &mut builder,
            &mut written,
            &manifest_digest,
            &manifest_bytes[..],
            manifest_bytes.len() as u64,
        )?;
        manifest_json.push(json!({
            "Config": format!("blobs/sha256/{}", digest_hex(&img.id)),
            "RepoTags": tags,
            "Layers": layer_names,
        }));
        let mut desc = json!({
            "mediaType": MEDIA_OCI_MANIFEST,
            "digest": manifest_digest,
            "size": manifest_bytes.len(),
        });
        if let Some(t) = tags.first() {
            if let Ok(r) = Reference::parse(t) {
                let r = r.with_default_tag();
                desc["annotations"] = json!({
                    "io.containerd.image.name": format!("{}:{}", r.name(), r.tag_or_digest()),
                    "org.opencontainers.image.ref.name": r.tag_or_digest(),
                });
            }
        }
        index.push(desc);
        for t in &tags {
            if let (Ok(r), Some(top)) = (Reference::parse(t), img.diff_ids.last()) {
                let repo = repositories
                    .entry(r.familiar_name())
                    .or_insert_with(|| json!({}));
                repo[r.tag_or_digest()] = json!(digest_hex(top));
            }
        }
    }
    let files: [(&str, Value); 4] = [
        (
            "index.json",
            json!({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": index}),
        ),
        ("manifest.json", Value::Array(manifest_json)),
        ("oci-layout", json!({"imageLayoutVersion": "1.0.0"})),
        ("repositories", Value::Object(repositories)),
    ];
    for (name, value) in files {
        let data = serde_json::to_vec(&value).map_err(|e| Error::Internal(e.to_string()))?;
        let mut h = file_header(data.len() as u64);
        builder.append_data(&mut h, name, &data[..]).map_err(io)?;
    }
    builder.into_inner().map_err(io)?.flush().map_err(io)?;
    Ok(())
}

fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn dir_header() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o755);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Directory);
    h
}

fn add_blob<W: Write>(
    builder: &mut tar::Builder<W>,
    written: &mut HashSet<String>,
    digest: &str,
    data: impl Read,
    size: u64,
) -> Result<()> {
    if !written.insert(digest.to_string()) {
        return Ok(());
    }
    let mut h = file_header(size);
    builder
        .append_data(&mut h, format!("blobs/sha256/{}", digest_hex(digest)), data)
        .map_err(|e| Error::Internal(format!("write archive: {e}")))
}

/// A file holding the layer's uncompressed tar, byte for byte what its diff id names: the
/// kept blob itself when it is an uncompressed tar, else the kept blob decompressed, else (no
/// blob kept) the layer dir packed again (its digest then may differ from the diff id, which
/// is reported).
fn uncompressed_layer(store: &Store, diff_id: &str, spool: &Path) -> Result<(PathBuf, u64)> {
    if let Some((path, info)) = store.layer_blob(diff_id) {
        if info.media_type == MEDIA_TAR {
            let size = path.metadata().map_err(|e| io_err(&path, e))?.len();
            return Ok((path, size));
        }
        let out = spool.join(digest_hex(diff_id));
        let f = File::open(&path).map_err(|e| io_err(&path, e))?;
        let mut r = decompress(BufReader::new(f))?;
        let mut w = File::create(&out).map_err(|e| io_err(&out, e))?;
        let size = std::io::copy(&mut r, &mut w).map_err(|e| io_err(&out, e))?;
        return Ok((out, size));
    }
    let out = spool.join(digest_hex(diff_id));
    let w = File::create(&out).map_err(|e| io_err(&out, e))?;
    berth_registry::pack::pack_layer(&store.layer_dir(diff_id), w)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let got = file_digest(&out)?;
    if got != diff_id {
        return Err(Error::Internal(format!(
            "layer {diff_id} was stored without its original tar and packs to {got}; it cannot be saved byte for byte"
        )));
    }
    let size = out.metadata().map_err(|e| io_err(&out, e))?.len();
    Ok((out, size))
}
