//! berth-shim's command line: `start` (detach a shim), `serve` (be the shim), `delete`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use berth_shim::Config;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Parser)]
#[command(name = "berth-shim", version, about = "per-container shim of berth")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a detached shim; print its socket address once it serves.
    Start(Flags),
    /// Be the shim (what `start` runs in a new session).
    Serve(Flags),
    /// Clean up after a dead shim; print the recorded exit status as JSON.
    Delete(Flags),
}

#[derive(Args)]
struct Flags {
    #[arg(long)]
    id: String,
    #[arg(long, default_value = "default")]
    namespace: String,
    #[arg(long)]
    bundle: PathBuf,
    #[arg(long)]
    runtime: PathBuf,
    #[arg(long)]
    runtime_root: PathBuf,
    #[arg(long)]
    state_dir: PathBuf,
    #[arg(long)]
    systemd_cgroup: bool,
    #[arg(long, default_value = "info")]
    log_level: String,
}

impl Flags {
    fn config(self) -> Config {
        Config {
            id: self.id,
            namespace: self.namespace,
            bundle: self.bundle,
            runtime: self.runtime,
            runtime_root: self.runtime_root,
            state_dir: self.state_dir,
            systemd_cgroup: self.systemd_cgroup,
            log_level: self.log_level,
        }
    }
}

fn init_logging(level: &str) {
    let level: LevelFilter = level.parse().unwrap_or(LevelFilter::INFO);
    // The shim's own events at `level`; its libraries' (h2 frame dumps) only from warn.
    let filter = Targets::new()
        .with_target("berth_shim", level)
        .with_default(level.min(LevelFilter::WARN));
    // stderr is `<state-dir>/shim.log` for a started shim.
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::io::stderr),
        )
        .with(filter)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Start(f) => {
            let cfg = f.config();
            berth_shim::start(&cfg)
                .with_context(|| format!("start shim for {}", cfg.id))
                .map(|addr| println!("{addr}"))
        }
        Cmd::Serve(f) => {
            let cfg = f.config();
            init_logging(&cfg.log_level);
            let id = cfg.id.clone();
            berth_shim::serve(cfg).with_context(|| format!("serve shim for {id}"))
        }
        Cmd::Delete(f) => {
            let cfg = f.config();
            init_logging("warn");
            berth_shim::delete(&cfg)
                .with_context(|| format!("delete {}", cfg.id))
                .and_then(|out| {
                    println!("{}", serde_json::to_string(&out)?);
                    Ok(())
                })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-shim: {e:#}");
            tracing::error!(error = %format!("{e:#}"), "berth-shim failed");
            ExitCode::FAILURE
        }
    }
}
