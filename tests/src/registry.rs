//! A real OCI distribution registry for tests: Debian's `docker-registry` (distribution 2.8)
//! on 127.0.0.1 with its storage in a temp dir; optionally htpasswd basic auth or bearer
//! tokens from an issuer the test runs. Stop and restart keep the port and the storage.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::daemon::Daemon;

/// The registry binary (package `docker-registry`).
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// How the registry authenticates clients.
#[derive(Debug, Clone, Default)]
pub enum RegistryAuth {
    /// Anyone may pull and push.
    #[default]
    None,
    /// htpasswd basic auth with one user (the file is made with `htpasswd -B`, apache2-utils).
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// Bearer tokens (JWT, ES256) from `realm`, trusted through the PEM certificate bundle.
    Token {
        /// URL of the token endpoint.
        realm: String,
        /// `service` the tokens are for (their audience).
        service: String,
        /// `iss` of the tokens.
        issuer: String,
        /// PEM of the certificate whose key signs the tokens.
        cert_pem: String,
    },
}

/// A running registry. Dropping it stops the process and removes its storage.
#[derive(Debug)]
pub struct Registry {
    daemon: Option<Daemon>,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Registry {
    /// Starts an open registry on a free port.
    pub fn start() -> Result<Registry> {
        Registry::start_with(RegistryAuth::None)
    }

    /// Starts a registry with the given auth on a free port.
    pub fn start_with(auth: RegistryAuth) -> Result<Registry> {
        Registry::start_full(auth, None)
    }

    /// Starts an open registry serving HTTPS with the given PEM certificate and key.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Result<Registry> {
        Registry::start_full(
            RegistryAuth::None,
            Some((cert_pem.to_string(), key_pem.to_string())),
        )
    }

    fn start_full(auth: RegistryAuth, tls: Option<(String, String)>) -> Result<Registry> {
        if !Path::new(REGISTRY_BIN).exists() {
            bail!("{REGISTRY_BIN} not found: apt-get install docker-registry");
        }
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .context("registry temp dir")?;
        let addr = free_port()?;
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).context("create registry storage")?;
        let auth_yaml = match &auth {
            RegistryAuth::None => String::new(),
            RegistryAuth::Basic { user, password } => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .context("run htpasswd (apt-get install apache2-utils)")?;
                if !out.status.success() {
                    bail!("htpasswd: {}", String::from_utf8_lossy(&out.stderr));
                }
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, &out.stdout).context("write htpasswd")?;
                format!(
                    "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                    file.display()
                )
            }
            RegistryAuth::Token {
                realm,
                service,
                issuer,
                cert_pem,
            } => {
                let file = dir.path().join("token-ca.pem");
                std::fs::write(&file, cert_pem).context("write token cert")?;
                format!(
                    "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                    file.display()
                )
            }
        };
        let tls_yaml = match &tls {
            None => String::new(),
            Some((cert, key)) => {
                let (c, k) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
                std::fs::write(&c, cert).context("write tls cert")?;
                std::fs::write(&k, key).context("write tls key")?;
                format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    c.display(),
                    k.display()
                )
            }
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nvalidation:\n  manifests:\n    urls:\n      allow:\n        - ^https?://\nhttp:\n  addr: {addr}\n{tls_yaml}{auth_yaml}",
            storage.display()
        );
        std::fs::write(dir.path().join("config.yml"), config).context("write registry config")?;
        let mut reg = Registry {
            daemon: None,
            dir,
            addr,
        };
        reg.restart()?;
        Ok(reg)
    }

    /// `127.0.0.1:<port>`, the registry part of image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The storage root (`docker/registry/v2/...` below it).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The file holding blob `digest` (`sha256:<hex>`) in the registry's storage.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The registry's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Kills the registry at once (SIGKILL), as a crash or a cut connection would.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(d) = self.daemon.take() {
            d.stop(Duration::ZERO)?;
        }
        Ok(())
    }

    /// Starts the registry again (same port, same storage); waits until it accepts.
    pub fn restart(&mut self) -> Result<()> {
        self.kill()?;
        let mut cmd = Command::new(REGISTRY_BIN);
        cmd.arg("serve").arg(self.dir.path().join("config.yml"));
        let mut d = Daemon::spawn("docker-registry", cmd, self.dir.path().join("registry.log"))?;
        d.wait_for_tcp(self.addr, Duration::from_secs(20))?;
        self.daemon = Some(d);
        Ok(())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released for the daemon to take).
pub fn free_port() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind a free port")?;
    l.local_addr().context("local addr")
}

/// One entry of a hand-made layer tar (for images with whiteouts and hard links, which a
/// directory cannot express: `tar_dir` stores hard links as separate files).
#[derive(Debug, Clone, Copy)]
pub enum Entry<'a> {
    /// A directory (path without the trailing slash) and its mode.
    Dir(&'a str, u32),
    /// A regular file: path, content, mode, owner uid (and gid).
    File(&'a str, &'a [u8], u32, u64),
    /// A hard link: path, target path (both relative to the layer root).
    Link(&'a str, &'a str),
    /// A symbolic link: path, target.
    Symlink(&'a str, &'a str),
    /// An OCI whiteout removing `path` of the layers below (`dir/.wh.name`).
    Whiteout(&'a str),
    /// An opaque-directory marker (`dir/.wh..wh..opq`): hides what the layers below hold.
    Opaque(&'a str),
}

/// An uncompressed layer (`Layer::media_type` is the plain tar's) made of `entries`, in order.
pub fn layer_from_entries(entries: &[Entry]) -> Result<crate::tarball::Layer> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        match *e {
            Entry::Dir(p, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(mode);
                b.append_data(&mut h, format!("{p}/"), std::io::empty())
            }
            Entry::File(p, data, mode, uid) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(mode);
                h.set_uid(uid);
                h.set_gid(uid);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, data)
            }
            Entry::Link(p, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                b.append_link(&mut h, p, target)
            }
            Entry::Symlink(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                b.append_link(&mut h, p, target)
            }
            Entry::Whiteout(p) => {
                let (dir, name) = p.rsplit_once('/').unwrap_or(("", p));
                let path = if dir.is_empty() {
                    format!(".wh.{name}")
                } else {
                    format!("{dir}/.wh.{name}")
                };
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                b.append_data(&mut h, path, std::io::empty())
            }
            Entry::Opaque(dir) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                b.append_data(&mut h, format!("{dir}/.wh..wh..opq"), std::io::empty())
            }
        }
        .with_context(|| format!("add {e:?} to a layer tar"))?;
    }
    let bytes = b.into_inner().context("finish layer tar")?;
    let digest = crate::tarball::sha256_digest(&bytes);
    Ok(crate::tarball::Layer {
        diff_id: digest.clone(),
        digest,
        bytes,
        media_type: crate::tarball::MEDIA_TYPE_LAYER_TAR,
    })
}

/// A `docker save` archive of one image made of `layers` (bottom first, uncompressed tars),
/// tagged `tag`, with `CMD ["sh"]`; one history entry per layer; for the host's architecture.
pub fn docker_archive_layers(layers: &[crate::tarball::Layer], tag: &str) -> Result<Vec<u8>> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    docker_archive_for(layers, tag, arch)
}

/// Like [`docker_archive_layers`], with the config's `architecture` set to `arch` (Go's
/// names: `amd64`, `arm64`), for multi-platform images.
pub fn docker_archive_for(
    layers: &[crate::tarball::Layer],
    tag: &str,
    arch: &str,
) -> Result<Vec<u8>> {
    use crate::tarball::sha256_digest;
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    let history: Vec<serde_json::Value> = (0..layers.len())
        .map(|i| serde_json::json!({"created": "2024-01-01T00:00:00Z", "created_by": format!("berth-tests layer {i}")}))
        .collect();
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {
            "Cmd": ["sh"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    })
    .to_string()
    .into_bytes();
    let config_hex = sha256_digest(&config)
        .trim_start_matches("sha256:")
        .to_string();
    let layer_paths: Vec<String> = layers
        .iter()
        .map(|l| format!("{}/layer.tar", l.diff_id.trim_start_matches("sha256:")))
        .collect();
    let manifest = serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": [tag],
        "Layers": layer_paths,
    }])
    .to_string()
    .into_bytes();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(1_704_067_200);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data)
            .with_context(|| format!("add {path}"))
    };
    for (l, p) in layers.iter().zip(&layer_paths) {
        add(p, &l.bytes)?;
    }
    add(&format!("{config_hex}.json"), &config)?;
    add("manifest.json", &manifest)?;
    b.into_inner().context("finish archive")
}
