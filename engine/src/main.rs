//! berthd: the Docker Engine API daemon of berth. Flags are dockerd's.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

/// berthd: Docker Engine API over berth's supervisor, shims and runtime.
#[derive(Debug, Parser)]
#[command(name = "berthd", version)]
struct Args {
    /// Address(es) to serve the API on: unix:///path, fd:// (systemd socket activation).
    #[arg(short = 'H', long = "host")]
    hosts: Vec<String>,
    /// Persistent state: containers, images, the supervisor's metadata.
    #[arg(long, default_value = "/var/lib/berth")]
    data_root: PathBuf,
    /// Runtime state: sockets, bundles.
    #[arg(long, default_value = "/run/berth")]
    exec_root: PathBuf,
    /// Write the daemon's pid here.
    #[arg(short = 'p', long)]
    pidfile: Option<PathBuf>,
    /// daemon.json-style config file (missing is fine).
    #[arg(long, default_value = "/etc/berth/daemon.json")]
    config_file: PathBuf,
    /// Use this running berth-supervisor instead of starting one.
    #[arg(long)]
    supervisor: Option<PathBuf>,
    /// Supervisor namespace of berthd's containers.
    #[arg(long, default_value = "berth")]
    supervisor_namespace: String,
    /// Log level: debug, info, warn, error.
    #[arg(short = 'l', long, default_value = "info")]
    log_level: String,
    /// Accepted for dockerd compatibility: berth always keeps containers across restarts.
    #[arg(long)]
    live_restore: bool,
    /// The default bridge network's interface (dockerd's `--bridge`, docker0 there).
    #[arg(short = 'b', long = "bridge")]
    bridge: Option<String>,
    /// The default bridge's address and subnet, e.g. 172.30.0.1/16 (dockerd's `--bip`); from
    /// the default pools when not given.
    #[arg(long)]
    bip: Option<String>,
    /// The nftables table (family inet) that holds berthd's rules: one per daemon.
    #[arg(long = "nft-table")]
    nft_table: Option<String>,
    /// `nftables` or `iptables` (dockerd's `--firewall-backend`); by default nftables where
    /// the kernel has it, else iptables.
    #[arg(long = "firewall-backend")]
    firewall_backend: Option<String>,
    /// Registry spoken to over plain HTTP (or HTTPS without verification): host[:port] or CIDR.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// Mirror of Docker Hub (URL), tried before it on pulls.
    #[arg(long = "registry-mirror")]
    registry_mirrors: Vec<String>,
    /// Serve tcp:// hosts with TLS (implied by --tlsverify).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    tls: Option<bool>,
    /// TLS and require client certificates signed by --tlscacert.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    tlsverify: Option<bool>,
    /// Trust client certificates signed by this CA (default ~/.docker/ca.pem).
    #[arg(long)]
    tlscacert: Option<PathBuf>,
    /// The server's TLS certificate (default ~/.docker/cert.pem).
    #[arg(long)]
    tlscert: Option<PathBuf>,
    /// The server's TLS key (default ~/.docker/key.pem).
    #[arg(long)]
    tlskey: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(format!(
                // netlink-packet-route warns at every link dump of a newer kernel than it knows.
                "warn,netlink_packet_route=error,berth_engine={}",
                args.log_level
            ))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let file: serde_json::Value = match std::fs::read(&args.config_file) {
        Ok(data) => serde_json::from_slice(&data)
            .with_context(|| format!("parse {}", args.config_file.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(e).with_context(|| format!("read {}", args.config_file.display())),
    };
    let mut hosts = args.hosts.clone();
    if hosts.is_empty() {
        hosts = file["hosts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|h| h.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
    }
    if hosts.is_empty() {
        hosts.push("unix:///run/berth/berth.sock".into());
    }
    let registry = registry_config(&file, &args)?;
    let tls = berth_engine::api::listen::from_flags_and_file(
        &file,
        (args.tls, args.tlsverify),
        (args.tlscacert, args.tlscert, args.tlskey),
    );
    berth_engine::api::listen::check_hosts(&hosts, tls.as_ref())?;
    let opts = &file["log-opts"];
    let config = berth_engine::Config {
        hosts,
        data_root: args.data_root,
        exec_root: args.exec_root,
        pidfile: args.pidfile,
        supervisor: args.supervisor,
        namespace: args.supervisor_namespace,
        log_level: args.log_level,
        log_max_size: opts["max-size"]
            .as_str()
            .and_then(berth_engine::container::parse_size)
            .unwrap_or(10 << 20),
        // 10 MiB × 2 files per container unless daemon.json says otherwise (DESIGN.md).
        log_max_files: opts["max-file"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2),
        registry,
        tls,
        bridge: args
            .bridge
            .clone()
            .or_else(|| file["bridge"].as_str().map(str::to_string))
            .unwrap_or_else(|| berth_engine::network::DEFAULT_BRIDGE.into()),
        bip: args
            .bip
            .clone()
            .or_else(|| file["bip"].as_str().map(str::to_string)),
        nft_table: args
            .nft_table
            .clone()
            .unwrap_or_else(|| berth_network::firewall::TABLE.into()),
        firewall: berth_network::firewall::Backend::choose(
            args.firewall_backend
                .as_deref()
                .or_else(|| file["firewall-backend"].as_str())
                .unwrap_or_default(),
        )
        .map_err(anyhow::Error::msg)?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(berth_engine::run(config))
}

/// daemon.json's registry keys, with the flags added (as dockerd, both lists merge).
fn registry_config(
    file: &serde_json::Value,
    args: &Args,
) -> Result<berth_registry::RegistryConfig> {
    let mut c: berth_registry::RegistryConfig = serde_json::from_value(file.clone())
        .with_context(|| format!("registry settings in {}", args.config_file.display()))?;
    c.insecure_registries
        .extend(args.insecure_registries.iter().cloned());
    c.registry_mirrors
        .extend(args.registry_mirrors.iter().cloned());
    for (key, v) in [
        ("max-concurrent-downloads", c.max_concurrent_downloads),
        ("max-concurrent-uploads", c.max_concurrent_uploads),
        ("max-download-attempts", c.max_download_attempts),
    ] {
        anyhow::ensure!(v > 0, "invalid {key} value: {v} (must be at least 1)");
    }
    Ok(c)
}
