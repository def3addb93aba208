//! berth-supervisor: a containerd-like daemon serving `berth.supervisor.v1` over gRPC on a
//! unix socket.
//!
//! - [`containers`]: namespaces and container metadata, stored crash-safely by a
//!   [`store::MetadataStore`] ([`store::FileStore`]: one JSON file per record, written with
//!   temp file + fsync + rename + fsync dir).
//! - [`task`]: the [`task::TaskManager`] creates bundles and shims (`berth-shim start`), proxies
//!   task calls to them with timeouts, republishes their events, and on start finds every
//!   recorded shim again (or cleans up after a dead one).
//! - [`events`]: the broadcast bus behind the Events service.
//! - [`grpc`]: the edge, one file per service; [`grpc::status`] maps error kinds to codes.
//! - [`ctl`]: `berth-supervisor ctl`, a small client.
#![warn(missing_docs)]

pub mod containers;
pub mod ctl;
pub mod error;
pub mod events;
pub mod grpc;
pub mod ids;
pub mod model;
pub mod store;
pub mod task;
pub mod uds;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;

use crate::containers::ContainerService;
use crate::events::EventBus;
use crate::store::{FileStore, MetadataStore};
use crate::task::shim_manager::ShimManager;
use crate::task::{TaskConfig, TaskManager};

/// Longest path a unix socket address can have (sun_path is 108 bytes with the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// How long in-flight calls may take to finish after SIGTERM.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// What the daemon needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The unix socket to serve on.
    pub address: PathBuf,
    /// Persistent metadata.
    pub root: PathBuf,
    /// Runtime state: bundles, shim state dirs.
    pub state: PathBuf,
    /// The shim binary.
    pub shim: PathBuf,
    /// The default runtime binary.
    pub runtime: PathBuf,
    /// Passed to shims as `--log-level`.
    pub log_level: String,
}

fn make_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))
}

/// Removes a stale socket file, refusing if another process serves on it.
async fn prepare_socket(path: &Path) -> anyhow::Result<()> {
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        bail!(
            "socket path {} is longer than {MAX_SOCKET_PATH} bytes",
            path.display()
        );
    }
    if let Some(dir) = path.parent() {
        make_dir(dir)?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            bail!("another process is serving on {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("remove stale {}", path.display()))?;
    }
    Ok(())
}

/// Runs the daemon until SIGTERM or SIGINT. Shims keep running.
pub async fn run(config: Config) -> anyhow::Result<()> {
    make_dir(&config.root)?;
    make_dir(&config.state)?;
    let store: Arc<dyn MetadataStore> = Arc::new(
        FileStore::open(&config.root)
            .with_context(|| format!("open metadata store {}", config.root.display()))?,
    );
    let snapshot = store.load().context("load metadata")?;
    tracing::info!(
        namespaces = snapshot.namespaces.len(),
        containers = snapshot.containers.len(),
        tasks = snapshot.tasks.len(),
        "loaded metadata"
    );
    let events = EventBus::default();
    let containers = Arc::new(ContainerService::new(
        Arc::clone(&store),
        events.clone(),
        snapshot.namespaces,
        snapshot.containers,
    ));
    let shutdown = CancellationToken::new();
    let tasks = Arc::new(TaskManager::new(
        TaskConfig {
            state_dir: config.state.clone(),
            default_runtime: config.runtime.clone(),
        },
        Arc::clone(&store),
        Arc::clone(&containers),
        events.clone(),
        ShimManager::new(config.shim.clone(), config.log_level.clone()),
        shutdown.child_token(),
    ));
    tasks.recover(snapshot.tasks).await;

    prepare_socket(&config.address).await?;
    let listener = UnixListener::bind(&config.address)
        .with_context(|| format!("listen on {}", config.address.display()))?;
    let incoming = UnixListenerStream::new(listener);
    tracing::info!(address = %config.address.display(), "serving");

    let stop = shutdown.clone();
    let mut term = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        stop.cancel();
    });

    let services = grpc::Services {
        containers,
        tasks: Arc::clone(&tasks),
        events,
        shutdown: shutdown.clone(),
    };
    let serve = grpc::router(services)
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    // Graceful shutdown waits for in-flight calls; Wait and Attach can last forever, so they
    // get a grace period and are then cut off (clients see the connection close).
    let drain = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let result = tokio::select! {
        r = serve => r.context("serve gRPC"),
        _ = drain => {
            tracing::warn!("in-flight calls did not finish within the grace period; exiting");
            Ok(())
        }
    };
    tasks.shutdown();
    let _ = std::fs::remove_file(&config.address);
    tracing::info!("stopped; shims keep running");
    result
}
