//! Helpers shared by the registry tests: stores, test images, raw pushes, tree comparison.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::{Arc, Mutex};

use berth_registry::{DirStore, Progress, ProgressSink, Registry, RegistryConfig, RegistryStore};
use serde_json::{json, Value};

/// A client over a fresh [`DirStore`] in a temp dir.
pub struct Client {
    pub dir: tempfile::TempDir,
    pub store: Arc<DirStore>,
    pub registry: Registry,
}

pub fn client() -> Client {
    client_with(RegistryConfig::default())
}

pub fn client_with(config: RegistryConfig) -> Client {
    let dir = tempfile::Builder::new()
        .prefix("berth-regtest-")
        .tempdir()
        .unwrap();
    let store = Arc::new(DirStore::open(&dir.path().join("store")).unwrap());
    let registry = Registry::new(config, store.clone());
    Client {
        dir,
        store,
        registry,
    }
}

/// Progress events as Docker JSON, collected.
#[derive(Clone, Default)]
pub struct Events(pub Arc<Mutex<Vec<Value>>>);

impl Events {
    pub fn sink(&self) -> ProgressSink {
        let v = self.0.clone();
        ProgressSink::new(move |p: Progress| v.lock().unwrap().push(p.to_docker_json()))
    }
    pub fn statuses(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|j| match j["id"].as_str() {
                Some(id) => format!("{id}: {}", j["status"].as_str().unwrap_or("")),
                None => j["status"].as_str().unwrap_or("").to_string(),
            })
            .collect()
    }
    pub fn has(&self, status: &str) -> bool {
        self.statuses().iter().any(|s| s.contains(status))
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn base_config() -> Value {
    json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "history": [],
    })
}

/// Tar entries for test layers.
pub enum Entry<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8], u32, u64),
    Link(&'a str, &'a str),
    Symlink(&'a str, &'a str),
    Whiteout(&'a str),
    Opaque(&'a str),
    CharDev(&'a str, u32, u32),
    /// A file with one extended attribute (a PAX `SCHILY.xattr.` record).
    FileXattr(&'a str, &'a [u8], &'a str, &'a [u8]),
}

pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            Entry::Dir(p, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                b.append_data(&mut h, format!("{p}/"), std::io::empty())
                    .unwrap();
            }
            Entry::File(p, data, mode, uid) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_uid(*uid);
                h.set_gid(*uid);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).unwrap();
            }
            Entry::Link(p, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
            Entry::Symlink(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
            Entry::Whiteout(p) => {
                let path = Path::new(p);
                let name = format!(".wh.{}", path.file_name().unwrap().to_str().unwrap());
                let full = match path.parent() {
                    Some(d) if !d.as_os_str().is_empty() => format!("{}/{name}", d.display()),
                    _ => name,
                };
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_data(&mut h, full, std::io::empty()).unwrap();
            }
            Entry::Opaque(dir) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_data(&mut h, format!("{dir}/.wh..wh..opq"), std::io::empty())
                    .unwrap();
            }
            Entry::FileXattr(p, data, name, value) => {
                b.append_pax_extensions([(format!("SCHILY.xattr.{name}").as_str(), *value)])
                    .unwrap();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).unwrap();
            }
            Entry::CharDev(p, major, minor) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(0o666);
                h.set_size(0);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// The busybox tree as a layer tar.
pub fn busybox_tar() -> Vec<u8> {
    let d = tempfile::tempdir().unwrap();
    berth_tests::rootfs::populate(d.path()).unwrap();
    berth_tests::tarball::tar_dir(d.path()).unwrap()
}

/// A description of every file under `dir`: type, mode, owner, content hash or link target,
/// device numbers, overlay markers, and which hard links share an inode.
pub fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    walk(dir, dir, &mut out, &mut inodes);
    out
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, String>,
    inodes: &mut BTreeMap<u64, String>,
) {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for n in names {
        let p = dir.join(&n);
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let m = std::fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let what = if ft.is_dir() {
            let opaque = xattr::get(&p, "trusted.overlay.opaque").ok().flatten();
            format!(
                "dir opaque={:?}",
                opaque.map(|v| String::from_utf8_lossy(&v).into_owned())
            )
        } else if ft.is_symlink() {
            format!("symlink {}", std::fs::read_link(&p).unwrap().display())
        } else if ft.is_char_device() {
            format!(
                "chr {}:{}",
                nix::sys::stat::major(m.rdev()),
                nix::sys::stat::minor(m.rdev())
            )
        } else if ft.is_file() {
            let link = if m.nlink() > 1 {
                let first = inodes.entry(m.ino()).or_insert_with(|| rel.clone());
                format!(" link-group={first}")
            } else {
                String::new()
            };
            format!(
                "file {}{link}",
                berth_registry::sha256_digest(&std::fs::read(&p).unwrap())
            )
        } else {
            "other".to_string()
        };
        let mode = if ft.is_symlink() {
            0
        } else {
            m.mode() & 0o7777
        };
        let mut xattrs: Vec<String> = xattr::list(&p)
            .map(|names| {
                names
                    .map(|n| n.to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with("trusted.overlay."))
                    .map(|n| {
                        let v = xattr::get(&p, &n).ok().flatten().unwrap_or_default();
                        format!("{n}={}", String::from_utf8_lossy(&v))
                    })
                    .collect()
            })
            .unwrap_or_default();
        xattrs.sort();
        out.insert(
            rel.clone(),
            format!(
                "{what} mode={mode:o} uid={} gid={} xattrs=[{}]",
                m.uid(),
                m.gid(),
                xattrs.join(",")
            ),
        );
        if ft.is_dir() {
            walk(root, &p, out, inodes);
        }
    }
}

/// The trees of an image's layers in a store, bottom first.
pub fn image_trees(store: &DirStore, reference: &str) -> Vec<BTreeMap<String, String>> {
    let img = store.image(reference).unwrap().expect("image in store");
    img.diff_ids
        .iter()
        .map(|d| tree(&store.layer_path(d).expect("layer dir")))
        .collect()
}

/// Pushes a raw image straight through the distribution API (for layer kinds and manifests
/// berth's own push does not make: zstd and plain tar layers, indexes).
pub async fn push_raw(
    host: &str,
    repo: &str,
    tag: &str,
    layers: &[(&str, Vec<u8>, String)],
    config: Value,
    manifest_type: &str,
) -> (String, usize) {
    let client = oci(host);
    let r = oci_client::Reference::with_tag(host.into(), repo.into(), tag.into());
    let mut config = config;
    config["rootfs"] = json!({"type": "layers", "diff_ids": layers.iter().map(|l| l.2.clone()).collect::<Vec<_>>()});
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = berth_registry::sha256_digest(&config);
    client
        .push_blob(&r, config.clone(), &config_digest)
        .await
        .unwrap();
    let mut descs = Vec::new();
    for (mt, blob, _) in layers {
        let d = berth_registry::sha256_digest(blob);
        client.push_blob(&r, blob.clone(), &d).await.unwrap();
        let mut desc = json!({"mediaType": mt, "size": blob.len(), "digest": d});
        if mt.contains("foreign") {
            // Never fetched: pulls skip foreign layers.
            desc["urls"] = json!(["https://example.invalid/foreign-layer"]);
        }
        descs.push(desc);
    }
    let config_type = if manifest_type.contains("oci") {
        "application/vnd.oci.image.config.v1+json"
    } else {
        "application/vnd.docker.container.image.v1+json"
    };
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "size": config.len(), "digest": config_digest},
        "layers": descs,
    });
    let body = serde_json::to_vec(&manifest).unwrap();
    let digest = berth_registry::sha256_digest(&body);
    client
        .push_manifest_raw(&r, body.clone(), manifest_type.parse().unwrap())
        .await
        .unwrap();
    (digest, body.len())
}

/// Pushes an index of already pushed manifests `(digest, size, os, arch)` under `tag`.
pub async fn push_index(
    host: &str,
    repo: &str,
    tag: &str,
    entries: &[(String, usize, &str, &str)],
) -> String {
    let client = oci(host);
    let r = oci_client::Reference::with_tag(host.into(), repo.into(), tag.into());
    let manifests: Vec<Value> = entries
        .iter()
        .map(|(d, s, os, arch)| {
            json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": d, "size": s,
                "platform": {"os": os, "architecture": arch},
            })
        })
        .collect();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let body = serde_json::to_vec(&index).unwrap();
    client
        .push_manifest_raw(
            &r,
            body.clone(),
            "application/vnd.oci.image.index.v1+json".parse().unwrap(),
        )
        .await
        .unwrap();
    berth_registry::sha256_digest(&body)
}

fn oci(host: &str) -> oci_client::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::HttpsExcept(vec![host.to_string()]),
        ..Default::default()
    })
}

/// `size` bytes that do not compress.
pub fn random_bytes(size: usize) -> Vec<u8> {
    use std::io::Read;
    let mut v = vec![0u8; size];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut v)
        .unwrap();
    v
}
