//! berth-supervisor: parses flags, sets up logging, and runs the daemon or the `ctl` client.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use berth_supervisor::{ctl, run, Config};
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// A containerd-like supervisor: containers, tasks and events over gRPC on a unix socket.
#[derive(Debug, Parser)]
#[command(name = "berth-supervisor", version)]
struct Cli {
    /// Unix socket to serve on.
    #[arg(
        long,
        env = "BERTH_SUPERVISOR_ADDRESS",
        default_value = "/run/berth/supervisor.sock"
    )]
    address: PathBuf,
    /// Persistent metadata (namespaces, containers, task records).
    #[arg(long, default_value = "/var/lib/berth-supervisor")]
    root: PathBuf,
    /// Runtime state (bundles, shim state dirs, runtime roots).
    #[arg(long, default_value = "/run/berth-supervisor")]
    state: PathBuf,
    /// The shim binary [default: berth-shim next to this executable, else from PATH].
    #[arg(long)]
    shim: Option<PathBuf>,
    /// The default OCI runtime [default: berth-runtime next to this executable, else PATH].
    #[arg(long)]
    runtime: Option<PathBuf>,
    /// error, warn, info, debug or trace (or a tracing filter directive).
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A small client of a running supervisor.
    Ctl(ctl::CtlArgs),
}

/// `name` next to our own executable if it exists there, else `name` (looked up in PATH).
fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn init_logging(level: &str, format: LogFormat) {
    // A plain level applies to berth's own crate; libraries (h2 frame dumps) log from warn.
    let directive = if level.contains('=') || level.contains(',') {
        level.to_string()
    } else {
        format!("warn,berth_supervisor={level}")
    };
    let filter = EnvFilter::try_new(directive).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Ctl(args)) = cli.command {
        return ctl::main(args).await;
    }
    init_logging(&cli.log_level, cli.log_format);
    let config = Config {
        address: cli.address,
        root: cli.root,
        state: cli.state,
        shim: cli.shim.unwrap_or_else(|| sibling("berth-shim")),
        runtime: cli.runtime.unwrap_or_else(|| sibling("berth-runtime")),
        log_level: cli.log_level,
    };
    tracing::info!(
        ?config,
        version = env!("CARGO_PKG_VERSION"),
        "starting berth-supervisor"
    );
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "berth-supervisor failed");
            eprintln!("berth-supervisor: {e:#}");
            ExitCode::FAILURE
        }
    }
}
