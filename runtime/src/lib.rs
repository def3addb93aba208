//! berth-runtime: a runc-compatible OCI runtime built on youki's libcontainer.
//!
//! `main.rs` parses the command line ([`cli::Cli`]), seals itself against CVE-2019-5736
//! when the verb enters a container ([`seal`]), starts logging ([`observability`]) and
//! calls [`run`], which dispatches to one module per verb under [`commands`].
//! State lives under `--root` (default `/run/berth-runtime`), one directory per container
//! as libcontainer lays it out, plus our `berth.json` sidecar (see [`bundle`]).

#![warn(missing_docs)]

pub mod bundle;
pub mod capabilities;
pub mod cgroupfs;
pub mod cli;
pub mod commands;
pub mod exec_filter;
pub mod executor;
pub mod foreground;
pub mod observability;
pub mod seal;
pub mod signals;
pub mod state;
pub mod units;

use anyhow::Result;

use crate::cli::{Cli, Command};

/// The version line printed by `--version`, shaped like runc's.
pub fn version_text() -> String {
    format!(
        "berth-runtime version {}\nspec: {}\n",
        env!("CARGO_PKG_VERSION"),
        oci_spec::runtime::VERSION
    )
}

/// Print [`version_text`] to stdout.
pub fn print_version() {
    let _ = write_stdout(&version_text());
}

/// Write to stdout without panicking: a closed pipe (`state ID | head`) is not an
/// error worth a backtrace, so it is ignored; other errors are returned.
pub fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Run one verb and return the process exit code (non-zero only for `run`/`exec`
/// passing on the container's own exit status; failures are `Err`).
pub fn run(cli: Cli) -> Result<u8> {
    let global = cli.global;
    let Some(command) = cli.command else {
        use clap::CommandFactory;
        Cli::command().print_help()?;
        return Ok(0);
    };
    tracing::debug!(argv = ?std::env::args().collect::<Vec<_>>(), "invoked");
    match command {
        Command::Create(args) => commands::create::create(&global, args).map(|_| 0),
        Command::Start(args) => commands::start::start(&global, args).map(|_| 0),
        Command::Run(args) => commands::run::run(&global, args),
        Command::State(args) => commands::state::state(&global, args).map(|_| 0),
        Command::Kill(args) => commands::kill::kill(&global, args).map(|_| 0),
        Command::Delete(args) => commands::delete::delete(&global, args).map(|_| 0),
        Command::List(args) => commands::list::list(&global, args).map(|_| 0),
        Command::Ps(args) => commands::ps::ps(&global, args).map(|_| 0),
        Command::Exec(args) => commands::exec::exec(&global, args),
        Command::Pause(args) => commands::pause::pause(&global, args).map(|_| 0),
        Command::Resume(args) => commands::resume::resume(&global, args).map(|_| 0),
        Command::Events(args) => commands::events::events(&global, args).map(|_| 0),
        Command::Update(args) => commands::update::update(&global, args).map(|_| 0),
        Command::Spec(args) => commands::spec::spec(args).map(|_| 0),
        Command::Features(_) => commands::features::features().map(|_| 0),
    }
}
