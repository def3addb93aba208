//! berthd: the Docker Engine API over berth's supervisor, shims and runtime.
//!
//! `Engine` holds the daemon's state (container records, the image store, the supervisor
//! clients); `api` translates HTTP to its methods. Container records are written crash-safely
//! before an API call answers; running containers belong to their shims, so berthd can be
//! killed at any moment and finds them again on start (see `Engine::reconcile`).

#![recursion_limit = "256"]

pub mod api;
pub mod build;
pub mod container;
pub mod error;
pub mod events;
pub mod logs;
pub mod network;
pub mod registry;
pub mod supervisor;
pub mod volume;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use berth_image::ImageStore;
use serde_json::Value;
use tokio::sync::watch;

use crate::container::Record;
use crate::supervisor::Supervisor;

/// Daemon settings (flags and daemon.json).
#[derive(Debug, Clone)]
pub struct Config {
    pub hosts: Vec<String>,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub pidfile: Option<PathBuf>,
    pub supervisor: Option<PathBuf>,
    pub namespace: String,
    pub log_level: String,
    /// Default json-file rotation (`log-opts` max-size / max-file).
    pub log_max_size: u64,
    pub log_max_files: u32,
    /// Registry settings: daemon.json's `insecure-registries`, `registry-mirrors`, `mirrors`,
    /// `max-concurrent-downloads|uploads`, `max-download-attempts`, and the matching flags.
    pub registry: berth_registry::RegistryConfig,
    /// TLS for `tcp://` hosts (`--tls`, `--tlsverify`); `None`: off.
    pub tls: Option<api::listen::TlsSettings>,
    /// The default bridge's interface (`--bridge`).
    pub bridge: String,
    /// The default bridge's gateway and subnet (`--bip`).
    pub bip: Option<String>,
    /// The nftables table of this daemon's rules (`--nft-table`; the iptables chains' prefix
    /// with the iptables backend).
    pub nft_table: String,
    /// nftables, or iptables where the kernel has no nf_tables (`--firewall-backend`).
    pub firewall: berth_network::firewall::Backend,
}

/// An exec instance (`/containers/{id}/exec`).
#[derive(Debug, Clone)]
pub struct Exec {
    pub id: String,
    pub container_id: String,
    pub config: Value,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub pid: u32,
}

/// The daemon's shared state.
#[derive(Debug)]
pub struct Engine {
    pub config: Config,
    pub images: ImageStore,
    /// Pulls, pushes and logins (`registry.rs`).
    pub registry: registry::RegistryService,
    pub sup: Supervisor,
    containers: Mutex<HashMap<String, Record>>,
    pub execs: Mutex<HashMap<String, Exec>>,
    /// Bumped at every container state change; waiters re-check their condition.
    changes: watch::Sender<u64>,
    /// Live attach streams per container (cleanup waits for them to drain).
    attaches: Mutex<HashMap<String, container::Attaches>>,
    /// Containers removed from the API whose cleanup runs in the background: id -> (image id,
    /// exit code); the image stays in use until their rootfs is gone.
    removing: Mutex<HashMap<String, (String, i64)>>,
    pub started: chrono::DateTime<chrono::Utc>,
    /// Docker's event stream (`events.rs`).
    pub events: events::EventBus,
    /// Rootfs mounts of stopped containers held for `docker cp`, diff, export and commit:
    /// id -> users.
    pub(crate) rootfs_leases: Mutex<HashMap<String, usize>>,
    /// Networks, address pools, DNS servers (`network/`).
    pub(crate) net: Mutex<network::NetState>,
    /// Serializes firewall table rewrites.
    pub(crate) net_op: tokio::sync::Mutex<()>,
    /// Serializes taking endpoints down: the exit path and a `rm -f` may both do it, and the
    /// second must not answer before the first has removed the rules.
    pub(crate) endpoints_op: tokio::sync::Mutex<()>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// A signal by Docker's names (`SIGTERM`, `TERM`, `15`).
pub fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    nix::sys::signal::Signal::iterator()
        .find(|sig| sig.as_str().strip_prefix("SIG") == Some(name))
        .map(|sig| sig as i32)
}

/// Loads the records under `<data-root>/containers`.
fn load_records(data_root: &Path) -> HashMap<String, Record> {
    let mut map = HashMap::new();
    if let Ok(entries) = std::fs::read_dir(data_root.join("containers")) {
        for e in entries.flatten() {
            // `.removing-<id>`: a removal's tombstone, finished by reconcile.
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if let Some(rec) = container::load(&e.path()) {
                map.insert(rec.id.clone(), rec);
            }
        }
    }
    map
}

/// Runs the daemon until SIGTERM/SIGINT.
pub async fn run(config: Config) -> Result<()> {
    // Every HTTPS client of the process (registries, ADD of a URL) uses ring.
    berth_registry::ensure_tls_provider();
    // Scratch files of builds a crash interrupted (contexts, downloads, tars).
    let _ = std::fs::remove_dir_all(config.data_root.join("build"));
    for d in [&config.data_root, &config.exec_root] {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    if let Some(p) = &config.pidfile {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("write {}", p.display()))?;
    }
    let images = ImageStore::open(&config.data_root.join("image"))
        .map_err(|e| anyhow::anyhow!("open image store: {e}"))?;
    let registry = registry::RegistryService::new(config.registry.clone(), &images);
    let sup = supervisor::start_or_connect(
        config.supervisor.as_deref(),
        &config.data_root,
        &config.exec_root,
        &config.namespace,
        &config.log_level,
    )
    .await?;
    let (changes, _) = watch::channel(0u64);
    let engine = Arc::new(Engine {
        rootfs_leases: Mutex::new(HashMap::new()),
        net: Mutex::new(network::NetState::default()),
        net_op: tokio::sync::Mutex::new(()),
        endpoints_op: tokio::sync::Mutex::new(()),
        containers: Mutex::new(load_records(&config.data_root)),
        config: config.clone(),
        images,
        registry,
        sup,
        execs: Mutex::new(HashMap::new()),
        changes,
        attaches: Mutex::new(HashMap::new()),
        removing: Mutex::new(HashMap::new()),
        started: chrono::Utc::now(),
        events: events::EventBus::default(),
    });
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(engine.clone().watch_events(ready_tx));
    let _ = ready_rx.await;
    engine.volumes_cleanup();
    engine.networks_init().await;
    engine.reconcile().await;
    let result = api::serve(engine.clone(), &config.hosts).await;
    // Stopping berthd stops the supervisor it started; containers keep running in their
    // shims and are found again at the next start.
    engine.sup.stop_owned(Duration::from_secs(15)).await;
    if let Some(p) = &config.pidfile {
        let _ = std::fs::remove_file(p);
    }
    result
}

/// A JSON object of strings (labels, options) as a map; anything else is empty.
pub fn string_map(v: &Value) -> std::collections::BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The host's architecture in Go's (Docker's) words.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}
