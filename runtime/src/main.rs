//! `berth-runtime`: a runc-compatible OCI runtime over youki's libcontainer.

use std::process::ExitCode;

use clap::Parser;

use berth_runtime::cli::Cli;
use berth_runtime::{observability, seal};

fn main() -> ExitCode {
    // CVE-2019-5736: commands that put a process of ours inside a container re-execute
    // from a sealed memfd copy first, so the container can never reach our binary on disk.
    // Decided from raw argv, before anything else, because the re-exec restarts main.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if seal::argv_needs_seal(&args) {
        if let Err(err) = seal::ensure_sealed() {
            eprintln!("berth-runtime: {err:#}");
            return ExitCode::from(1);
        }
    }

    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout and usage errors to stderr.
            let code = if err.use_stderr() { 1 } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    if cli.version {
        berth_runtime::print_version();
        return ExitCode::SUCCESS;
    }

    let log_config = observability::LogConfig::from_global(&cli.global);
    if let Err(err) = observability::init(&log_config) {
        eprintln!("berth-runtime: {err:#}");
        return ExitCode::from(1);
    }

    match berth_runtime::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            observability::report_fatal(&err);
            ExitCode::from(1)
        }
    }
}
