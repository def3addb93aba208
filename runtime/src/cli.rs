//! Command-line flags, shaped like runc's so Docker, containerd and people can use either.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Default state directory, like runc's `/run/runc`.
pub const DEFAULT_ROOT: &str = "/run/berth-runtime";

/// The whole command line.
#[derive(Parser, Debug)]
#[command(
    name = "berth-runtime",
    about = "runc-compatible OCI runtime built on youki's libcontainer",
    disable_version_flag = true
)]
pub struct Cli {
    /// Global flags shared with runc.
    #[command(flatten)]
    pub global: GlobalOpts,

    /// Print the version (like `runc --version`).
    #[arg(short = 'v', long = "version")]
    pub version: bool,

    /// The verb.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// runc's global flags. liboci-cli's `GlobalOpts` lacks `--criu` and `--rootless`, which
/// callers such as go-runc may pass, so the set is spelled out here.
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalOpts {
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    pub log_format: String,
    /// Enable debug logging.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Root directory for container state.
    #[arg(long, global = true, default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Use systemd cgroup paths (`slice:prefix:name`); mapped onto cgroupfs here.
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility (checkpoint/restore is not supported).
    #[arg(long, hide = true)]
    pub criu: Option<String>,
    /// Accepted for runc compatibility: true, false or auto.
    #[arg(long, hide = true)]
    pub rootless: Option<String>,
}

/// Verbs, one file each under `commands/`.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container that waits for `start`.
    Create(liboci_cli::Create),
    /// Start a created container.
    Start(liboci_cli::Start),
    /// Create and start a container.
    Run(liboci_cli::Run),
    /// Print a container's state as JSON.
    State(liboci_cli::State),
    /// Send a signal to a container's init (or all its processes).
    Kill(KillArgs),
    /// Delete a container.
    Delete(liboci_cli::Delete),
    /// List containers.
    #[command(alias = "ls")]
    List(ListArgs),
    /// Show the processes of a container.
    Ps(liboci_cli::Ps),
    /// Run a new process in a running container.
    Exec(liboci_cli::Exec),
    /// Freeze all processes of a container.
    Pause(liboci_cli::Pause),
    /// Thaw a paused container.
    Resume(liboci_cli::Resume),
    /// Print container events (only `--stats` snapshots and periodic stats).
    Events(EventsArgs),
    /// Change a container's resource limits.
    Update(UpdateArgs),
    /// Write a default config.json.
    Spec(liboci_cli::Spec),
    /// Print what this runtime supports, as JSON.
    Features(liboci_cli::Features),
}

/// `kill`: runc's signal is optional and defaults to SIGTERM (liboci-cli requires it).
#[derive(Args, Debug)]
pub struct KillArgs {
    /// Send the signal to every process in the container.
    #[arg(short, long)]
    pub all: bool,
    /// Container id.
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub container_id: String,
    /// Signal name (KILL, SIGKILL) or number; default SIGTERM.
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

/// `list`: runc has `-f` for `--format`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// table or json.
    #[arg(short, long, default_value = "table")]
    pub format: String,
    /// Print only the ids.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `events`: runc's `--interval` is a duration such as `5s`.
#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Print one stats snapshot and exit.
    #[arg(long)]
    pub stats: bool,
    /// Interval between stats (e.g. 5s, 500ms, 1m).
    #[arg(long, default_value = "5s")]
    pub interval: String,
    /// Container id.
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub container_id: String,
}

/// `update`: runc's flag names and value syntax (sizes like `512m`, `-1` for unlimited).
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Path to a LinuxResources JSON file, `-` for stdin.
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    /// Block IO weight (10-1000).
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// CPU CFS period in microseconds.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU CFS quota in microseconds (-1 for unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU realtime period.
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime runtime.
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(long = "cpu-share", alias = "cpu-shares")]
    pub cpu_share: Option<u64>,
    /// CPUs to use (0-3, 0,1).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to use.
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Memory limit (bytes or with a k/m/g suffix; -1 for unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory soft limit.
    #[arg(long, allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit.
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Kernel memory limit (ignored, as by runc on recent kernels).
    #[arg(long, allow_hyphen_values = true, hide = true)]
    pub kernel_memory: Option<String>,
    /// Kernel TCP memory limit (ignored).
    #[arg(long, allow_hyphen_values = true, hide = true)]
    pub kernel_memory_tcp: Option<String>,
    /// Maximum number of pids (-1 or 0 for unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Intel RDT L3 cache schema (not supported).
    #[arg(long, hide = true)]
    pub l3_cache_schema: Option<String>,
    /// Intel RDT memory bandwidth schema (not supported).
    #[arg(long, hide = true)]
    pub mem_bw_schema: Option<String>,
    /// Container id.
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub container_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("berth-runtime").chain(args.iter().copied()))
            .expect("parse")
    }

    #[test]
    fn containerd_create_line_parses() {
        let cli = parse(&[
            "--root",
            "/r",
            "--log",
            "/b/log.json",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/b/init.pid",
            "--console-socket",
            "/s.sock",
            "c1",
        ]);
        assert_eq!(cli.global.root, PathBuf::from("/r"));
        assert_eq!(cli.global.log_format, "json");
        match cli.command {
            Some(Command::Create(c)) => {
                assert_eq!(c.container_id, "c1");
                assert_eq!(c.bundle, PathBuf::from("/b"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn kill_signal_defaults_to_sigterm_and_accepts_positional_number() {
        match parse(&["kill", "c1"]).command {
            Some(Command::Kill(k)) => assert_eq!(k.signal, "SIGTERM"),
            other => panic!("unexpected {other:?}"),
        }
        match parse(&["kill", "--all", "c1", "9"]).command {
            Some(Command::Kill(k)) => {
                assert!(k.all);
                assert_eq!(k.signal, "9");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn global_flags_accepted_after_verb_and_rootless_value() {
        let cli = parse(&[
            "--rootless",
            "false",
            "--systemd-cgroup",
            "state",
            "c1",
            "--root",
            "/x",
        ]);
        assert!(
            matches!(parse(&["spec", "--rootless"]).command, Some(Command::Spec(s)) if s.rootless)
        );
        assert!(cli.global.systemd_cgroup);
        assert_eq!(cli.global.root, PathBuf::from("/x"));
        assert_eq!(cli.global.rootless.as_deref(), Some("false"));
    }

    #[test]
    fn update_accepts_runc_flag_spellings() {
        match parse(&[
            "update",
            "--memory",
            "512m",
            "--cpu-shares",
            "512",
            "--cpu-quota",
            "-1",
            "c1",
        ])
        .command
        {
            Some(Command::Update(u)) => {
                assert_eq!(u.memory.as_deref(), Some("512m"));
                assert_eq!(u.cpu_share, Some(512));
                assert_eq!(u.cpu_quota, Some(-1));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn list_short_flags() {
        match parse(&["list", "-f", "json", "-q"]).command {
            Some(Command::List(l)) => {
                assert_eq!(l.format, "json");
                assert!(l.quiet);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
