//! berth: the command-line client of berth, with docker's commands, flags and output.
//!
//! `main` parses docker's global flags and command tree, connects to the daemon (`-H`,
//! `BERTH_HOST`, `DOCKER_HOST`, default `unix:///run/berth/berth.sock`), runs the command and
//! exits with docker's codes: the container's for `run`/`start -a`/`exec`, 125 for daemon
//! errors in `run`/`create`, 1 for other failures.

mod client;
mod commands;
mod format;
mod stream;
mod tty;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use commands::{
    build, container as ctr, cp, exec, image, login, objects, run, system, StatusError,
};

/// A self-sufficient runtime for containers
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    disable_version_flag = true,
    disable_help_subcommand = true
)]
struct Cli {
    /// Location of client config files (accepted for docker compatibility)
    #[arg(long)]
    config: Option<PathBuf>,
    /// Name of the context to use (accepted, ignored)
    #[arg(short = 'c', long)]
    context: Option<String>,
    /// Enable debug mode
    #[arg(short = 'D', long)]
    debug: bool,
    /// Daemon socket to connect to
    #[arg(short = 'H', long = "host")]
    host: Vec<String>,
    /// Set the logging level ("debug", "info", "warn", "error", "fatal")
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    log_level: String,
    /// Use TLS; implied by --tlsverify
    #[arg(long)]
    tls: bool,
    /// Trust certs signed only by this CA
    #[arg(long)]
    tlscacert: Option<PathBuf>,
    /// Path to TLS certificate file
    #[arg(long)]
    tlscert: Option<PathBuf>,
    /// Path to TLS key file
    #[arg(long)]
    tlskey: Option<PathBuf>,
    /// Use TLS and verify the remote
    #[arg(long)]
    tlsverify: bool,
    /// Print version information and quit
    #[arg(short = 'v', long = "version")]
    version: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create and run a new container from an image
    Run(run::RunArgs),
    /// Create a new container
    Create(run::CreateArgs),
    /// Start one or more stopped containers
    Start(run::StartArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(run::AttachArgs),
    /// Execute a command in a running container
    Exec(exec::ExecArgs),
    /// List containers
    Ps(ctr::PsArgs),
    /// Fetch the logs of a container
    Logs(ctr::LogsArgs),
    /// Stop one or more running containers
    Stop(ctr::StopArgs),
    /// Kill one or more running containers
    Kill(ctr::KillArgs),
    /// Restart one or more containers
    Restart(ctr::StopArgs),
    /// Remove one or more containers
    Rm(ctr::RmArgs),
    /// Return low-level information on Docker objects
    Inspect(ctr::InspectArgs),
    /// Display the running processes of a container
    Top(ctr::TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(ctr::StatsArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(ctr::ContainersArgs),
    /// Pause all processes within one or more containers
    Pause(ctr::ContainersArgs),
    /// Unpause all processes within one or more containers
    Unpause(ctr::ContainersArgs),
    /// Rename a container
    Rename(ctr::RenameArgs),
    /// List port mappings or a specific mapping for the container
    Port(ctr::PortArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(ctr::DiffArgs),
    /// Export a container's filesystem as a tar archive
    Export(ctr::ExportArgs),
    /// Create a new image from a container's changes
    Commit(ctr::CommitArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(cp::CpArgs),
    /// Update configuration of one or more containers
    Update(ctr::UpdateArgs),
    /// List images
    Images(image::ImagesArgs),
    /// Remove one or more images
    Rmi(image::RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(image::TagArgs),
    /// Show the history of an image
    History(image::HistoryArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(image::SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(image::LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(image::ImportArgs),
    /// Download an image from a registry
    Pull(image::PullArgs),
    /// Upload an image to a registry
    Push(image::PushArgs),
    /// Build an image from a Dockerfile
    Build(build::BuildArgs),
    /// Authenticate to a registry
    Login(login::LoginArgs),
    /// Log out from a registry
    Logout(login::LogoutArgs),
    /// Show the Docker version information
    Version(system::FormatArgs),
    /// Display system-wide information
    Info(system::FormatArgs),
    /// Get real time events from the server
    Events(system::EventsArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCmd),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCmd),
    /// Manage Docker
    #[command(subcommand)]
    System(SystemCmd),
    /// Manage volumes
    #[command(subcommand)]
    Volume(objects::VolumeCmd),
    /// Manage networks
    #[command(subcommand)]
    Network(objects::NetworkCmd),
}

#[derive(Debug, Subcommand)]
enum ContainerCmd {
    /// Create and run a new container from an image
    Run(run::RunArgs),
    /// Create a new container
    Create(run::CreateArgs),
    /// Start one or more stopped containers
    Start(run::StartArgs),
    /// Attach to a running container
    Attach(run::AttachArgs),
    /// Execute a command in a running container
    Exec(exec::ExecArgs),
    /// List containers
    #[command(visible_aliases = ["ps", "list"])]
    Ls(ctr::PsArgs),
    /// Fetch the logs of a container
    Logs(ctr::LogsArgs),
    /// Stop one or more running containers
    Stop(ctr::StopArgs),
    /// Kill one or more running containers
    Kill(ctr::KillArgs),
    /// Restart one or more containers
    Restart(ctr::StopArgs),
    /// Remove one or more containers
    #[command(visible_alias = "remove")]
    Rm(ctr::RmArgs),
    /// Display detailed information on one or more containers
    Inspect(ctr::InspectArgs),
    /// Display the running processes of a container
    Top(ctr::TopArgs),
    /// Display resource usage statistics
    Stats(ctr::StatsArgs),
    /// Block until one or more containers stop
    Wait(ctr::ContainersArgs),
    /// Pause all processes within one or more containers
    Pause(ctr::ContainersArgs),
    /// Unpause all processes within one or more containers
    Unpause(ctr::ContainersArgs),
    /// Rename a container
    Rename(ctr::RenameArgs),
    /// List port mappings or a specific mapping for the container
    Port(ctr::PortArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(ctr::DiffArgs),
    /// Export a container's filesystem as a tar archive
    Export(ctr::ExportArgs),
    /// Create a new image from a container's changes
    Commit(ctr::CommitArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(cp::CpArgs),
    /// Update configuration of one or more containers
    Update(ctr::UpdateArgs),
    /// Remove all stopped containers
    Prune(ctr::PruneArgs),
}

#[derive(Debug, Subcommand)]
enum ImageCmd {
    /// List images
    #[command(visible_aliases = ["list"], name = "ls")]
    Ls(image::ImagesArgs),
    /// Display detailed information on one or more images
    Inspect(ctr::InspectArgs),
    /// Remove one or more images
    #[command(visible_alias = "remove")]
    Rm(image::RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(image::TagArgs),
    /// Show the history of an image
    History(image::HistoryArgs),
    /// Remove unused images
    Prune(image::ImagePruneArgs),
    /// Save one or more images to a tar archive
    Save(image::SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(image::LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(image::ImportArgs),
    /// Download an image from a registry
    Pull(image::PullArgs),
    /// Upload an image to a registry
    Push(image::PushArgs),
    /// Build an image from a Dockerfile
    Build(build::BuildArgs),
}

#[derive(Debug, Subcommand)]
enum SystemCmd {
    /// Show docker disk usage
    Df(system::DfArgs),
    /// Display system-wide information
    Info(system::FormatArgs),
    /// Get real time events from the server
    Events(system::EventsArgs),
    /// Remove unused data
    Prune(system::SystemPruneArgs),
}

fn main() {
    // Die quietly on a closed pipe (`berth events | head`), as docker and other CLIs do,
    // instead of failing every later write with EPIPE.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Usage errors exit 125 as docker's do (clap would exit 2); help and version exit 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 125 } else { 0 });
        }
    };
    if cli.version {
        println!("berth version {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    if cli.command.is_none() {
        // Like docker with no command: the usage, and a failure.
        let _ = Cli::command().print_help();
        std::process::exit(1);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: start async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => match e.downcast_ref::<StatusError>() {
            Some(s) => {
                if !s.message.is_empty() {
                    eprintln!("{}", s.message);
                }
                s.code
            }
            None => {
                eprintln!("{e:#}");
                1
            }
        },
    };
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // Exit without waiting for the stdin reader thread, which may sit in a blocking read.
    std::process::exit(code);
}

async fn connect(cli: &Cli) -> anyhow::Result<client::Client> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let tls_env = env("DOCKER_TLS_VERIFY").is_some();
    let tls = client::TlsOptions {
        tls: cli.tls,
        verify: cli.tlsverify || tls_env,
        ca: cli.tlscacert.clone(),
        cert: cli.tlscert.clone(),
        key: cli.tlskey.clone(),
    };
    if cli.host.len() > 1 {
        anyhow::bail!("Please specify only one -H");
    }
    let host = cli
        .host
        .first()
        .cloned()
        .or_else(|| env("BERTH_HOST"))
        .or_else(|| env("DOCKER_HOST"))
        .unwrap_or_else(|| client::DEFAULT_HOST.to_string());
    let host = client::parse_host(&host, tls.tls || tls.verify)?;
    let mut c = client::Client::new(host, &tls)?;
    c.set_debug(cli.debug || cli.log_level == "debug");
    c.negotiate().await?;
    Ok(c)
}

async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let debug = cli.debug || cli.log_level == "debug";
    // logout only edits the client's config file: no daemon needed.
    if let Some(Cmd::Logout(a)) = cli.command {
        return login::logout(a).await;
    }
    let _ = &cli.config;
    let _ = &cli.context;
    let c = match connect(&cli).await {
        Ok(c) => c,
        Err(e) => {
            // docker run/create report connection failures with 125 as well.
            let code = match &cli.command {
                Some(Cmd::Run(_) | Cmd::Create(_)) => 125,
                _ => 1,
            };
            return Err(StatusError::exit(code, format!("{e:#}")));
        }
    };
    let c = &c;
    let Some(command) = cli.command else {
        return Ok(0);
    };
    match command {
        Cmd::Run(a) => run::run(c, a).await,
        Cmd::Create(a) => run::create(c, a).await,
        Cmd::Start(a) => run::start(c, a).await,
        Cmd::Attach(a) => run::attach(c, a).await,
        Cmd::Exec(a) => exec::exec(c, a).await,
        Cmd::Ps(a) => ctr::ps(c, a).await,
        Cmd::Logs(a) => ctr::logs(c, a).await,
        Cmd::Stop(a) => ctr::stop(c, a, "stop").await,
        Cmd::Kill(a) => ctr::kill(c, a).await,
        Cmd::Restart(a) => ctr::stop(c, a, "restart").await,
        Cmd::Rm(a) => ctr::rm(c, a).await,
        Cmd::Inspect(a) => ctr::inspect(c, a, None).await,
        Cmd::Top(a) => ctr::top(c, a).await,
        Cmd::Stats(a) => ctr::stats(c, a).await,
        Cmd::Wait(a) => ctr::wait(c, a).await,
        Cmd::Pause(a) => ctr::simple(c, a, "pause").await,
        Cmd::Unpause(a) => ctr::simple(c, a, "unpause").await,
        Cmd::Rename(a) => ctr::rename(c, a).await,
        Cmd::Port(a) => ctr::port(c, a).await,
        Cmd::Diff(a) => ctr::diff(c, a).await,
        Cmd::Export(a) => ctr::export(c, a).await,
        Cmd::Commit(a) => ctr::commit(c, a).await,
        Cmd::Cp(a) => cp::cp(c, a).await,
        Cmd::Update(a) => ctr::update(c, a).await,
        Cmd::Images(a) => image::images(c, a).await,
        Cmd::Rmi(a) => image::rmi(c, a).await,
        Cmd::Tag(a) => image::tag(c, a).await,
        Cmd::History(a) => image::history(c, a).await,
        Cmd::Save(a) => image::save(c, a).await,
        Cmd::Load(a) => image::load(c, a).await,
        Cmd::Import(a) => image::import(c, a).await,
        Cmd::Pull(a) => image::pull_cmd(c, a).await,
        Cmd::Push(a) => image::push(c, a).await,
        Cmd::Build(a) => build::build(c, a).await,
        Cmd::Login(a) => login::login(c, a).await,
        Cmd::Logout(a) => login::logout(a).await,
        Cmd::Version(a) => system::version(c, a).await,
        Cmd::Info(a) => system::info(c, a, debug).await,
        Cmd::Events(a) => system::events(c, a).await,
        Cmd::Container(cmd) => match cmd {
            ContainerCmd::Run(a) => run::run(c, a).await,
            ContainerCmd::Create(a) => run::create(c, a).await,
            ContainerCmd::Start(a) => run::start(c, a).await,
            ContainerCmd::Attach(a) => run::attach(c, a).await,
            ContainerCmd::Exec(a) => exec::exec(c, a).await,
            ContainerCmd::Ls(a) => ctr::ps(c, a).await,
            ContainerCmd::Logs(a) => ctr::logs(c, a).await,
            ContainerCmd::Stop(a) => ctr::stop(c, a, "stop").await,
            ContainerCmd::Kill(a) => ctr::kill(c, a).await,
            ContainerCmd::Restart(a) => ctr::stop(c, a, "restart").await,
            ContainerCmd::Rm(a) => ctr::rm(c, a).await,
            ContainerCmd::Inspect(a) => ctr::inspect(c, a, Some("container")).await,
            ContainerCmd::Top(a) => ctr::top(c, a).await,
            ContainerCmd::Stats(a) => ctr::stats(c, a).await,
            ContainerCmd::Wait(a) => ctr::wait(c, a).await,
            ContainerCmd::Pause(a) => ctr::simple(c, a, "pause").await,
            ContainerCmd::Unpause(a) => ctr::simple(c, a, "unpause").await,
            ContainerCmd::Rename(a) => ctr::rename(c, a).await,
            ContainerCmd::Port(a) => ctr::port(c, a).await,
            ContainerCmd::Diff(a) => ctr::diff(c, a).await,
            ContainerCmd::Export(a) => ctr::export(c, a).await,
            ContainerCmd::Commit(a) => ctr::commit(c, a).await,
            ContainerCmd::Cp(a) => cp::cp(c, a).await,
            ContainerCmd::Update(a) => ctr::update(c, a).await,
            ContainerCmd::Prune(a) => ctr::prune(c, a).await,
        },
        Cmd::Image(cmd) => match cmd {
            ImageCmd::Ls(a) => image::images(c, a).await,
            ImageCmd::Inspect(a) => ctr::inspect(c, a, Some("image")).await,
            ImageCmd::Rm(a) => image::rmi(c, a).await,
            ImageCmd::Tag(a) => image::tag(c, a).await,
            ImageCmd::History(a) => image::history(c, a).await,
            ImageCmd::Prune(a) => image::image_prune(c, a).await,
            ImageCmd::Save(a) => image::save(c, a).await,
            ImageCmd::Load(a) => image::load(c, a).await,
            ImageCmd::Import(a) => image::import(c, a).await,
            ImageCmd::Pull(a) => image::pull_cmd(c, a).await,
            ImageCmd::Push(a) => image::push(c, a).await,
            ImageCmd::Build(a) => build::build(c, a).await,
        },
        Cmd::Volume(cmd) => objects::volume(c, cmd).await,
        Cmd::Network(cmd) => objects::network(c, cmd).await,
        Cmd::System(cmd) => match cmd {
            SystemCmd::Df(a) => system::df(c, a).await,
            SystemCmd::Info(a) => system::info(c, a, debug).await,
            SystemCmd::Events(a) => system::events(c, a).await,
            SystemCmd::Prune(a) => system::prune(c, a).await,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_tree_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_come_before_the_command() {
        let cli = Cli::try_parse_from([
            "berth",
            "-H",
            "unix:///tmp/x.sock",
            "-D",
            "--log-level",
            "warn",
            "ps",
            "-a",
        ])
        .unwrap();
        assert_eq!(cli.host, vec!["unix:///tmp/x.sock"]);
        assert!(cli.debug);
        assert!(matches!(cli.command, Some(Cmd::Ps(ref p)) if p.all));
        let cli = Cli::try_parse_from(["berth", "container", "ls", "-q"]).unwrap();
        assert!(matches!(cli.command, Some(Cmd::Container(ContainerCmd::Ls(ref p))) if p.quiet));
        let cli = Cli::try_parse_from(["berth", "run", "-h", "myhost", "busybox"]).unwrap();
        assert!(
            matches!(cli.command, Some(Cmd::Run(ref r)) if r.opts.hostname.as_deref() == Some("myhost"))
        );
    }
}
