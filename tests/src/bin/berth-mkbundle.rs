//! Writes a busybox OCI bundle (rootfs + config.json) to a directory.
//!
//! `berth-mkbundle DIR [--hostname H] [--tty] [--id ID] -- CMD ARGS...`

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

use berth_tests::{rootfs, SpecBuilder};

/// Write a busybox-static OCI bundle for berth-runtime or runc.
#[derive(Debug, Parser)]
#[command(name = "berth-mkbundle")]
struct Args {
    /// Bundle directory to create (rootfs/ and config.json go inside).
    dir: PathBuf,
    /// Container hostname.
    #[arg(long, default_value = "berth")]
    hostname: String,
    /// Give the process a terminal (then run it with a console socket or interactively).
    #[arg(long)]
    tty: bool,
    /// Container id used in linux.cgroupsPath (/berth-test/<id>).
    #[arg(long, default_value = "berth-bundle")]
    id: String,
    /// The command to run (default: sh).
    #[arg(last = true)]
    command: Vec<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut spec = SpecBuilder::new(&args.id)
        .hostname(&args.hostname)
        .terminal(args.tty);
    if !args.command.is_empty() {
        spec = spec.args(args.command.clone());
    }
    rootfs::populate(&args.dir.join("rootfs"))?;
    std::fs::write(args.dir.join("config.json"), spec.to_json()?)
        .with_context(|| format!("write {}/config.json", args.dir.display()))?;
    println!("{}", args.dir.display());
    Ok(())
}
