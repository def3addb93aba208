//! `run`, `create`, `start` and `attach`: docker's container flags turned into the create
//! request, and the attach/start/wait dance that gives `run` the container's exit code.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{ArgAction, Args};
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;

use super::StatusError;
use crate::client::{is_not_found, q, Client, DaemonError};
use crate::format::{parse_cpus, parse_ram};
use crate::stream::{self, Ended, StreamOpts};
use crate::tty;

/// Flags shared by `run` and `create` (docker's container options).
#[derive(Debug, Args, Default, Clone)]
pub struct ContainerOpts {
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short = 'a', long = "attach")]
    pub attach: Vec<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Automatically remove the container and its associated anonymous volumes when it exits
    #[arg(long)]
    pub rm: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Bind mount a volume
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Memory limit
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Mount a tmpfs directory
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Connect a container to a network
    #[arg(long = "network", alias = "net")]
    pub network: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias")]
    pub network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address (e.g., 2001:db8::33)
    #[arg(long)]
    pub ip6: Option<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    /// Add link to another container
    #[arg(long)]
    pub link: Vec<String>,
    /// Expose a port or a range of ports
    #[arg(long)]
    pub expose: Vec<String>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<i64>,
    /// Security Options
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Attach a filesystem mount to the container (type=bind|volume|tmpfs,source=,target=,readonly)
    #[arg(long)]
    pub mount: Vec<String>,
    /// Ulimit options (name=soft[:hard])
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Add a host device to the container (/dev/x[:/dev/y[:rwm]])
    #[arg(long)]
    pub device: Vec<String>,
    /// Add additional groups to join
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// IPC mode to use
    #[arg(long)]
    pub ipc: Option<String>,
    /// PID namespace to use
    #[arg(long)]
    pub pid: Option<String>,
    /// UTS namespace to use
    #[arg(long)]
    pub uts: Option<String>,
    /// User namespace to use
    #[arg(long)]
    pub userns: Option<String>,
    /// Cgroup namespace to use (host|private)
    #[arg(long)]
    pub cgroupns: Option<String>,
    /// Optional parent cgroup for the container
    #[arg(long = "cgroup-parent")]
    pub cgroup_parent: Option<String>,
    /// Logging driver for the container
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Log driver options
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    /// Disable OOM Killer
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// Tune host's OOM preferences (-1000 to 1000)
    #[arg(long = "oom-score-adj", allow_hyphen_values = true)]
    pub oom_score_adj: Option<i64>,
    /// Sysctl options
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Container NIS domain name
    #[arg(long)]
    pub domainname: Option<String>,
    /// Mount volumes from the specified container(s)
    #[arg(long = "volumes-from")]
    pub volumes_from: Vec<String>,
    /// Runtime to use for this container
    #[arg(long)]
    pub runtime: Option<String>,
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long = "health-interval")]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long = "health-timeout")]
    pub health_timeout: Option<String>,
    /// Start period for the container to initialize before starting health-retries countdown
    #[arg(long = "health-start-period")]
    pub health_start_period: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries")]
    pub health_retries: Option<i64>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Write the container ID to the file
    #[arg(long)]
    pub cidfile: Option<PathBuf>,
    /// Set platform if server is multi-platform capable (accepted, not used)
    #[arg(long)]
    pub platform: Option<String>,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Suppress the pull output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Print usage
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
    /// IMAGE [COMMAND] [ARG...]: everything after the image belongs to the command, as
    /// docker stops parsing flags at the first positional argument
    #[arg(value_name = "IMAGE", required = true, num_args = 1.., trailing_var_arg = true,
          allow_hyphen_values = true)]
    pub args: Vec<String>,
}

impl ContainerOpts {
    /// The image.
    pub fn image(&self) -> &str {
        self.args.first().map(String::as_str).unwrap_or("")
    }

    /// The command and its arguments (empty: the image's default).
    pub fn command(&self) -> &[String] {
        self.args.get(1..).unwrap_or(&[])
    }
}

/// `berth run`
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Proxy received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub sig_proxy: bool,
    #[command(flatten)]
    pub opts: ContainerOpts,
}

/// `berth create`
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    #[command(flatten)]
    pub opts: ContainerOpts,
}

/// Which streams to attach, from `-a` and `-i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attach {
    stdin: bool,
    stdout: bool,
    stderr: bool,
}

fn attach_streams(opts: &ContainerOpts) -> Result<Attach> {
    let mut a = Attach {
        stdin: false,
        stdout: false,
        stderr: false,
    };
    for s in &opts.attach {
        match s.to_ascii_lowercase().as_str() {
            "stdin" => a.stdin = true,
            "stdout" => a.stdout = true,
            "stderr" => a.stderr = true,
            _ => bail!("invalid argument \"{s}\" for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR"),
        }
    }
    if opts.interactive {
        a.stdin = true;
    }
    if opts.attach.is_empty() {
        a.stdout = true;
        a.stderr = true;
    }
    Ok(a)
}

/// `-e` values: `KEY=v` as is, `KEY` from our environment when set there.
pub fn expand_env(values: &[String]) -> Vec<String> {
    values
        .iter()
        .map(|v| {
            if v.contains('=') {
                v.clone()
            } else {
                match std::env::var(v) {
                    Ok(val) => format!("{v}={val}"),
                    Err(_) => v.clone(),
                }
            }
        })
        .collect()
}

fn read_env_files(files: &[PathBuf]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("open {}", f.display()))?;
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            out.push(line.to_string());
        }
    }
    Ok(expand_env(&out))
}

fn normalize_cap(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    if up == "ALL" || up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// `80` or `8000-8010` as a range of ports.
fn port_range(s: &str, what: &str) -> Result<(u16, u16)> {
    let bad = || anyhow!("invalid {what}: {s}");
    let (lo, hi) = s.split_once('-').unwrap_or((s, s));
    let lo: u16 = lo.parse().map_err(|_| bad())?;
    let hi: u16 = hi.parse().map_err(|_| bad())?;
    if hi < lo {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// `-p [ip:][host:]ctr[/proto]`, with ranges as docker's CLI expands them: a container range
/// maps one to one onto a host range of the same length; a single container port onto a host
/// range means any free port of it.
fn parse_publish(specs: &[String]) -> Result<(Map<String, Value>, Map<String, Value>)> {
    let mut exposed = Map::new();
    let mut bindings = Map::new();
    for spec in specs {
        let (rest, proto) = match spec.rsplit_once('/') {
            Some((r, p)) => (r, p),
            None => (spec.as_str(), "tcp"),
        };
        let parts: Vec<&str> = rest.rsplitn(3, ':').collect();
        let (ctr, host_port, host_ip) = match parts.as_slice() {
            [c] => (*c, "", ""),
            [c, h] => (*c, *h, ""),
            [c, h, ip] => (*c, *h, ip.trim_matches(|c| c == '[' || c == ']')),
            _ => bail!("invalid publish spec: {spec}"),
        };
        let (clo, chi) = port_range(ctr, "containerPort")?;
        let hosts: Vec<String> = if host_port.is_empty() {
            vec![String::new(); (chi - clo + 1) as usize]
        } else {
            let (hlo, hhi) = port_range(host_port, "hostPort")?;
            if clo == chi {
                vec![host_port.to_string()]
            } else if hhi - hlo == chi - clo {
                (hlo..=hhi).map(|p| p.to_string()).collect()
            } else {
                bail!(
                    "invalid ranges specified for container and host Ports: {ctr} and {host_port}"
                );
            }
        };
        for (port, host) in (clo..=chi).zip(hosts) {
            let key = format!("{port}/{proto}");
            exposed.insert(key.clone(), json!({}));
            let entry = bindings.entry(key).or_insert_with(|| json!([]));
            if let Some(arr) = entry.as_array_mut() {
                arr.push(json!({"HostIp": host_ip, "HostPort": host}));
            }
        }
    }
    Ok((exposed, bindings))
}

fn restart_policy(s: &str) -> Result<Value> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (
            n,
            c.parse::<i64>().map_err(|_| {
                anyhow!("invalid restart policy format: maximum retry count must be an integer")
            })?,
        ),
        None => (s, 0),
    };
    match name {
        "no" | "always" | "unless-stopped" | "on-failure" => {}
        _ => bail!("invalid restart policy format: unknown policy '{name}'"),
    }
    Ok(json!({"Name": name, "MaximumRetryCount": count}))
}

/// Parses a flag's value, failing with docker's `invalid argument "v" for "flag" flag: ...`.
fn flag_value(v: &str, flag: &str, parse: fn(&str) -> Result<i64>) -> Result<i64> {
    parse(v).map_err(|e| {
        let e = e.to_string();
        let e = e
            .strip_prefix(&format!("invalid argument \"{v}\" for \"{flag}\" flag: "))
            .unwrap_or(&e)
            .to_string();
        anyhow!("invalid argument \"{v}\" for \"{flag}\" flag: {e}")
    })
}

/// Builds the `POST /containers/create` body from the flags. `detach` clears the attach flags
/// as docker does for `run -d`.
pub fn container_config(opts: &ContainerOpts, detach: bool) -> Result<Value> {
    // The image positional accepts hyphens (for the command after it), so an unknown flag
    // before the image lands here: report it as docker does.
    if let Some(flag) = opts.image().strip_prefix('-') {
        if flag.starts_with('-') {
            bail!("unknown flag: -{flag}");
        }
        bail!(
            "unknown shorthand flag: '{}' in -{flag}",
            flag.chars().next().unwrap_or('-')
        );
    }
    let a = attach_streams(opts)?;
    let mut env = read_env_files(&opts.env_file)?;
    env.extend(expand_env(&opts.env));
    let mut cfg = Map::new();
    let mut host = Map::new();
    if let Some(h) = &opts.hostname {
        cfg.insert("Hostname".into(), json!(h));
    }
    if let Some(u) = &opts.user {
        cfg.insert("User".into(), json!(u));
    }
    let attached = !detach;
    cfg.insert("AttachStdin".into(), json!(attached && a.stdin));
    cfg.insert("AttachStdout".into(), json!(attached && a.stdout));
    cfg.insert("AttachStderr".into(), json!(attached && a.stderr));
    cfg.insert("Tty".into(), json!(opts.tty));
    cfg.insert("OpenStdin".into(), json!(opts.interactive));
    cfg.insert("StdinOnce".into(), json!(attached && a.stdin));
    if !env.is_empty() {
        cfg.insert("Env".into(), json!(env));
    }
    if !opts.command().is_empty() {
        cfg.insert("Cmd".into(), json!(opts.command()));
    }
    cfg.insert("Image".into(), json!(opts.image()));
    if let Some(w) = &opts.workdir {
        cfg.insert("WorkingDir".into(), json!(w));
    }
    if let Some(e) = &opts.entrypoint {
        cfg.insert("Entrypoint".into(), json!([e]));
    }
    let mut labels = BTreeMap::new();
    for l in &opts.label {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        labels.insert(k.to_string(), v.to_string());
    }
    cfg.insert("Labels".into(), json!(labels));
    if let Some(s) = &opts.stop_signal {
        cfg.insert("StopSignal".into(), json!(s));
    }
    if let Some(t) = opts.stop_timeout {
        cfg.insert("StopTimeout".into(), json!(t));
    }

    let mut binds = Vec::new();
    let mut volumes = Map::new();
    for v in &opts.volume {
        if v.contains(':') {
            binds.push(v.clone());
        } else {
            volumes.insert(v.clone(), json!({}));
        }
    }
    if !volumes.is_empty() {
        cfg.insert("Volumes".into(), Value::Object(volumes));
    }
    if !binds.is_empty() {
        host.insert("Binds".into(), json!(binds));
    }
    let (mut exposed, bindings) = parse_publish(&opts.publish)?;
    for e in &opts.expose {
        let key = if e.contains('/') {
            e.clone()
        } else {
            format!("{e}/tcp")
        };
        exposed.insert(key, json!({}));
    }
    if !exposed.is_empty() {
        cfg.insert("ExposedPorts".into(), Value::Object(exposed));
    }
    if !bindings.is_empty() {
        host.insert("PortBindings".into(), Value::Object(bindings));
    }
    host.insert(
        "NetworkMode".into(),
        json!(opts.network.as_deref().unwrap_or("default")),
    );
    if opts.publish_all {
        host.insert("PublishAllPorts".into(), json!(true));
    }
    if !opts.link.is_empty() {
        host.insert("Links".into(), json!(opts.link));
    }
    if let Some(mac) = &opts.mac_address {
        cfg.insert("MacAddress".into(), json!(mac));
    }
    if let Some(r) = &opts.restart {
        if opts.rm && r != "no" {
            bail!("conflicting options: cannot specify both --restart and --rm");
        }
        host.insert("RestartPolicy".into(), restart_policy(r)?);
    }
    host.insert("AutoRemove".into(), json!(opts.rm));
    if !opts.cap_add.is_empty() {
        host.insert(
            "CapAdd".into(),
            json!(opts
                .cap_add
                .iter()
                .map(|c| normalize_cap(c))
                .collect::<Vec<_>>()),
        );
    }
    if !opts.cap_drop.is_empty() {
        host.insert(
            "CapDrop".into(),
            json!(opts
                .cap_drop
                .iter()
                .map(|c| normalize_cap(c))
                .collect::<Vec<_>>()),
        );
    }
    if !opts.dns.is_empty() {
        host.insert("Dns".into(), json!(opts.dns));
    }
    if !opts.add_host.is_empty() {
        host.insert("ExtraHosts".into(), json!(opts.add_host));
    }
    if opts.privileged {
        host.insert("Privileged".into(), json!(true));
    }
    if opts.read_only {
        host.insert("ReadonlyRootfs".into(), json!(true));
    }
    if !opts.security_opt.is_empty() {
        host.insert("SecurityOpt".into(), json!(opts.security_opt));
    }
    if !opts.tmpfs.is_empty() {
        let mut t = Map::new();
        for spec in &opts.tmpfs {
            let (path, o) = spec.split_once(':').unwrap_or((spec.as_str(), ""));
            t.insert(path.to_string(), json!(o));
        }
        host.insert("Tmpfs".into(), Value::Object(t));
    }
    if let Some(s) = &opts.shm_size {
        host.insert(
            "ShmSize".into(),
            json!(flag_value(s, "--shm-size", parse_ram)?),
        );
    }
    if let Some(m) = &opts.memory {
        host.insert(
            "Memory".into(),
            json!(flag_value(m, "-m, --memory", parse_ram)?),
        );
    }
    if let Some(s) = &opts.memory_swap {
        let v = if s.trim() == "-1" {
            -1
        } else {
            flag_value(s, "--memory-swap", parse_ram)?
        };
        host.insert("MemorySwap".into(), json!(v));
    }
    if let Some(c) = &opts.cpus {
        host.insert(
            "NanoCpus".into(),
            json!(flag_value(c, "--cpus", parse_cpus)?),
        );
    }
    if let Some(c) = opts.cpu_shares {
        host.insert("CpuShares".into(), json!(c));
    }
    if let Some(p) = opts.pids_limit {
        host.insert("PidsLimit".into(), json!(p));
    }
    if opts.init {
        host.insert("Init".into(), json!(true));
    }
    extra_host_config(opts, &mut cfg, &mut host)?;
    // docker sends these lists empty rather than absent; daemons echo them back in inspect.
    for key in [
        "BlkioWeightDevice",
        "BlkioDeviceReadBps",
        "BlkioDeviceWriteBps",
        "BlkioDeviceReadIOps",
        "BlkioDeviceWriteIOps",
        "Devices",
        "Dns",
        "DnsOptions",
        "DnsSearch",
        "Ulimits",
    ] {
        host.entry(key).or_insert_with(|| json!([]));
    }
    host.entry("PortBindings").or_insert_with(|| json!({}));
    host.entry("RestartPolicy")
        .or_insert_with(|| json!({"Name": "no", "MaximumRetryCount": 0}));
    cfg.insert("HostConfig".into(), Value::Object(host));
    // The endpoint on the network of the mode: aliases, static addresses.
    let net = opts.network.as_deref().unwrap_or("default");
    let mut endpoint = Map::new();
    if !opts.network_alias.is_empty() {
        endpoint.insert("Aliases".into(), json!(opts.network_alias));
    }
    let mut ipam = Map::new();
    if let Some(ip) = &opts.ip {
        ipam.insert("IPv4Address".into(), json!(ip));
    }
    if let Some(ip) = &opts.ip6 {
        ipam.insert("IPv6Address".into(), json!(ip));
    }
    if !ipam.is_empty() {
        endpoint.insert("IPAMConfig".into(), Value::Object(ipam));
    }
    let user_net =
        !matches!(net, "none" | "host" | "default" | "bridge") && !net.starts_with("container:");
    if user_net || !endpoint.is_empty() {
        cfg.insert(
            "NetworkingConfig".into(),
            json!({"EndpointsConfig": {net: Value::Object(endpoint)}}),
        );
    }
    Ok(Value::Object(cfg))
}

/// Go's duration syntax ("30s", "1m30s", "500ms") in nanoseconds.
pub fn parse_go_duration(s: &str) -> Result<i64> {
    berth_builder::instructions::go_duration(s).ok_or_else(|| anyhow!("invalid duration \"{s}\""))
}

/// The flags beyond the common ones: mounts, ulimits, devices, namespaces, logging, cgroup
/// tuning, sysctls, health checks.
fn extra_host_config(
    opts: &ContainerOpts,
    cfg: &mut Map<String, Value>,
    host: &mut Map<String, Value>,
) -> Result<()> {
    if !opts.mount.is_empty() {
        let mut mounts = Vec::new();
        for m in &opts.mount {
            let mut mount = Map::new();
            let mut typ = "volume".to_string();
            let mut readonly = false;
            for kv in m.split(',') {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                match k.trim().to_ascii_lowercase().as_str() {
                    "type" => typ = v.to_string(),
                    "source" | "src" => {
                        mount.insert("Source".into(), json!(v));
                    }
                    "target" | "destination" | "dst" => {
                        mount.insert("Target".into(), json!(v));
                    }
                    "readonly" | "ro" => readonly = v.is_empty() || v == "true" || v == "1",
                    "bind-propagation" => {
                        mount.insert("BindOptions".into(), json!({"Propagation": v}));
                    }
                    "tmpfs-size" => {
                        mount.insert(
                            "TmpfsOptions".into(),
                            json!({"SizeBytes": flag_value(v, "--mount", parse_ram)?}),
                        );
                    }
                    "volume-nocopy" => {
                        mount.insert("VolumeOptions".into(), json!({"NoCopy": true}));
                    }
                    other => bail!("invalid argument \"{m}\" for \"--mount\" flag: unexpected key '{other}' in '{kv}'"),
                }
            }
            if !mount.contains_key("Target") {
                bail!("invalid argument \"{m}\" for \"--mount\" flag: target is required");
            }
            mount.insert("Type".into(), json!(typ));
            mount.insert("ReadOnly".into(), json!(readonly));
            mounts.push(Value::Object(mount));
        }
        host.insert("Mounts".into(), json!(mounts));
    }
    if !opts.ulimit.is_empty() {
        let mut u = Vec::new();
        for l in &opts.ulimit {
            let (name, vals) = l.split_once('=').ok_or_else(|| {
                anyhow!("invalid argument \"{l}\" for \"--ulimit\" flag: invalid ulimit argument")
            })?;
            let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
            let n = |v: &str| -> Result<i64> {
                v.parse().map_err(|_| {
                    anyhow!("invalid argument \"{l}\" for \"--ulimit\" flag: invalid ulimit value")
                })
            };
            u.push(json!({"Name": name, "Soft": n(soft)?, "Hard": n(hard)?}));
        }
        host.insert("Ulimits".into(), json!(u));
    }
    if !opts.device.is_empty() {
        let devices: Vec<Value> = opts
            .device
            .iter()
            .map(|d| {
                let parts: Vec<&str> = d.split(':').collect();
                let host_path = parts[0];
                let (ctr, perms) = match parts.as_slice() {
                    [_, c, p] => (*c, *p),
                    [_, p] if p.chars().all(|c| "rwm".contains(c)) => (host_path, *p),
                    [_, c] => (*c, "rwm"),
                    _ => (host_path, "rwm"),
                };
                json!({"PathOnHost": host_path, "PathInContainer": ctr, "CgroupPermissions": perms})
            })
            .collect();
        host.insert("Devices".into(), json!(devices));
    }
    if !opts.group_add.is_empty() {
        host.insert("GroupAdd".into(), json!(opts.group_add));
    }
    for (flag, key) in [
        (&opts.ipc, "IpcMode"),
        (&opts.pid, "PidMode"),
        (&opts.uts, "UTSMode"),
        (&opts.userns, "UsernsMode"),
        (&opts.cgroupns, "CgroupnsMode"),
        (&opts.cgroup_parent, "CgroupParent"),
        (&opts.cpuset_cpus, "CpusetCpus"),
        (&opts.cpuset_mems, "CpusetMems"),
        (&opts.runtime, "Runtime"),
    ] {
        if let Some(v) = flag {
            host.insert(key.into(), json!(v));
        }
    }
    if opts.log_driver.is_some() || !opts.log_opt.is_empty() {
        let mut conf = Map::new();
        for o in &opts.log_opt {
            let (k, v) = o.split_once('=').unwrap_or((o.as_str(), ""));
            conf.insert(k.to_string(), json!(v));
        }
        host.insert(
            "LogConfig".into(),
            json!({"Type": opts.log_driver.clone().unwrap_or_default(), "Config": conf}),
        );
    }
    if let Some(m) = &opts.memory_reservation {
        host.insert(
            "MemoryReservation".into(),
            json!(flag_value(m, "--memory-reservation", parse_ram)?),
        );
    }
    if let Some(q) = opts.cpu_quota {
        host.insert("CpuQuota".into(), json!(q));
    }
    if let Some(p) = opts.cpu_period {
        host.insert("CpuPeriod".into(), json!(p));
    }
    if opts.oom_kill_disable {
        host.insert("OomKillDisable".into(), json!(true));
    }
    if let Some(o) = opts.oom_score_adj {
        host.insert("OomScoreAdj".into(), json!(o));
    }
    if !opts.sysctl.is_empty() {
        let mut m = Map::new();
        for s in &opts.sysctl {
            let (k, v) = s.split_once('=').ok_or_else(|| {
                anyhow!(
                    "invalid argument \"{s}\" for \"--sysctl\" flag: sysctl '{s}' is not allowed"
                )
            })?;
            m.insert(k.to_string(), json!(v));
        }
        host.insert("Sysctls".into(), Value::Object(m));
    }
    if !opts.volumes_from.is_empty() {
        host.insert("VolumesFrom".into(), json!(opts.volumes_from));
    }
    if let Some(d) = &opts.domainname {
        cfg.insert("Domainname".into(), json!(d));
    }
    if opts.no_healthcheck {
        cfg.insert("Healthcheck".into(), json!({"Test": ["NONE"]}));
    } else if opts.health_cmd.is_some()
        || opts.health_interval.is_some()
        || opts.health_timeout.is_some()
        || opts.health_start_period.is_some()
        || opts.health_retries.is_some()
    {
        let mut h = Map::new();
        if let Some(c) = &opts.health_cmd {
            h.insert("Test".into(), json!(["CMD-SHELL", c]));
        }
        for (v, key, flag) in [
            (&opts.health_interval, "Interval", "--health-interval"),
            (&opts.health_timeout, "Timeout", "--health-timeout"),
            (
                &opts.health_start_period,
                "StartPeriod",
                "--health-start-period",
            ),
        ] {
            if let Some(v) = v {
                h.insert(key.into(), json!(flag_value(v, flag, parse_go_duration)?));
            }
        }
        if let Some(r) = opts.health_retries {
            h.insert("Retries".into(), json!(r));
        }
        cfg.insert("Healthcheck".into(), Value::Object(h));
    }
    Ok(())
}

/// The familiar reference docker prints in "Unable to find image": a tag is added if missing.
pub fn with_default_tag(image: &str) -> String {
    if image.contains('@') {
        return image.to_string();
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// Creates the container (pulling the image when it is missing, as docker does) and returns
/// its id.
async fn create_container(client: &Client, opts: &ContainerOpts, detach: bool) -> Result<String> {
    if matches!(opts.pull.as_str(), "always" | "missing" | "never") {
    } else {
        bail!(
            "invalid pull option: '{}': must be one of \"always\", \"missing\" or \"never\"",
            opts.pull
        );
    }
    let body = container_config(opts, detach)?;
    let path = match &opts.name {
        Some(n) => format!("/containers/create?name={}", q(n)),
        None => "/containers/create".to_string(),
    };
    if opts.pull == "always" {
        super::image::pull(client, opts.image(), opts.quiet).await?;
    }
    let resp = match client.call(Method::POST, &path, Some(&body)).await {
        Err(e) if is_not_found(&e) && opts.pull != "never" && is_image_missing(&e) => {
            eprintln!(
                "Unable to find image '{}' locally",
                with_default_tag(opts.image())
            );
            super::image::pull(client, opts.image(), opts.quiet).await?;
            client.call(Method::POST, &path, Some(&body)).await?
        }
        r => r?,
    };
    let id = resp
        .get("Id")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("daemon answered create without an Id"))?
        .to_string();
    if let Some(w) = resp.get("Warnings").and_then(Value::as_array) {
        for w in w.iter().filter_map(Value::as_str) {
            eprintln!("WARNING: {w}");
        }
    }
    if let Some(f) = &opts.cidfile {
        std::fs::write(f, &id).with_context(|| format!("write cidfile {}", f.display()))?;
    }
    Ok(id)
}

fn is_image_missing(e: &anyhow::Error) -> bool {
    e.downcast_ref::<DaemonError>().is_some_and(|d| {
        let m = d.message.to_ascii_lowercase();
        m.contains("no such image") || m.contains("not found") || m.contains("unable to find")
    })
}

/// `berth create`: prints the new container's id. Unlike `run`, docker reports create's
/// daemon errors plainly and exits 1.
pub async fn create(client: &Client, args: CreateArgs) -> Result<i32> {
    container_config(&args.opts, false).map_err(|e| usage_error("create", &e))?;
    let id = create_container(client, &args.opts, false)
        .await
        .map_err(|e| StatusError::exit(1, format!("{e:#}")))?;
    println!("{id}");
    Ok(0)
}

/// The exit code docker gives a failed start: 127 for a missing command, 126 for one that
/// cannot be run, 125 otherwise.
pub fn start_error_code(message: &str) -> i32 {
    if message.contains("executable file not found")
        || message.contains("no such file or directory")
        || message.contains("system cannot find the file specified")
    {
        127
    } else if message.contains("permission denied") || message.contains("is a directory") {
        126
    } else {
        125
    }
}

/// A bad flag value, as docker reports it: the message, the usage line, exit 125.
fn usage_error(cmd: &str, e: &anyhow::Error) -> anyhow::Error {
    StatusError::exit(
        125,
        format!(
            "{e:#}\n\nUsage:  berth {cmd} [OPTIONS] IMAGE [COMMAND] [ARG...]\n\nRun 'berth {cmd} --help' for more information"
        ),
    )
}

/// How docker prints a failed `run`/`create`: prefixed, with a pointer to the help.
fn run_error(msg: &str) -> String {
    format!("berth: {msg}\n\nRun 'berth run --help' for more information")
}

/// Waits for a container on a separate request that is sent before the container starts.
struct Waiter {
    rx: oneshot::Receiver<Result<i32>>,
}

impl Waiter {
    async fn start(client: &Client, id: &str, condition: &str) -> Waiter {
        let (tx, rx) = oneshot::channel();
        let (sent_tx, sent_rx) = oneshot::channel::<()>();
        let client = client.clone();
        let path = if condition.is_empty() {
            format!("/containers/{id}/wait")
        } else {
            format!("/containers/{id}/wait?condition={condition}")
        };
        tokio::spawn(async move {
            let r = async {
                let resp = client
                    .request(Method::POST, &path, crate::client::empty(), None)
                    .await;
                let _ = sent_tx.send(());
                let body = resp?.into_body().collect().await?.to_bytes();
                let v: Value = serde_json::from_slice(&body).context("decode wait response")?;
                if let Some(msg) = v
                    .get("Error")
                    .and_then(|e| e.get("Message"))
                    .and_then(Value::as_str)
                    .filter(|m| !m.is_empty())
                {
                    bail!("{msg}");
                }
                Ok(v.get("StatusCode").and_then(Value::as_i64).unwrap_or(0) as i32)
            }
            .await;
            let _ = tx.send(r);
        });
        // dockerd sends the response head once the waiter is registered; a daemon that waits
        // with the head until the exit gets the request a moment before `start`.
        let _ = tokio::time::timeout(Duration::from_secs(2), sent_rx).await;
        Waiter { rx }
    }

    async fn status(self) -> Result<i32> {
        self.rx.await.context("wait for container")?
    }
}

/// How `run`, `start -a` and `attach` attach.
#[derive(Debug, Clone)]
struct AttachPlan {
    streams: Attach,
    tty: bool,
    auto_remove: bool,
    detach_keys: String,
    sig_proxy: bool,
    start: bool,
}

/// Attach, wait, start and stream: shared by `run`, `start -a` and `attach`.
async fn attach_start_wait(client: &Client, id: &str, plan: AttachPlan) -> Result<i32> {
    let AttachPlan {
        streams: a,
        tty,
        auto_remove,
        detach_keys,
        sig_proxy,
        start,
    } = plan;
    let detach_keys = detach_keys.as_str();
    let keys = tty::parse_detach_keys(detach_keys)?;
    let mut query = format!(
        "stream=1&stdin={}&stdout={}&stderr={}",
        a.stdin as u8, a.stdout as u8, a.stderr as u8
    );
    if detach_keys != tty::DEFAULT_DETACH_KEYS {
        query.push_str(&format!("&detachKeys={}", q(detach_keys)));
    }
    let hijacked = client
        .hijack(&format!("/containers/{id}/attach?{query}"), None)
        .await
        .map_err(|e| StatusError::exit(125, run_error(&format!("{e:#}"))))?;
    let condition = if auto_remove { "removed" } else { "next-exit" };
    let waiter = Waiter::start(client, id, condition).await;
    let raw = if tty && a.stdin {
        tty::RawMode::enable()?
    } else {
        None
    };
    if start {
        if let Err(e) = client.post(&format!("/containers/{id}/start")).await {
            drop(raw);
            let msg = format!("{e:#}");
            let code = start_error_code(&msg);
            return Err(StatusError::exit(code, run_error(&msg)));
        }
    }
    let resize = if tty && tty::stdout_is_tty() {
        Some(stream::monitor_resize(
            client.clone(),
            format!("/containers/{id}/resize"),
        ))
    } else {
        None
    };
    let signals = if sig_proxy && !tty {
        Some(stream::proxy_signals(client.clone(), id.to_string()))
    } else {
        None
    };
    let opts = StreamOpts {
        tty,
        stdin: a.stdin,
        detach_keys: if a.stdin { keys } else { Vec::new() },
    };
    let ended = stream::pump(hijacked, &opts).await;
    drop(raw);
    if let Some(r) = resize {
        r.abort();
    }
    if let Some(s) = signals {
        s.abort();
    }
    if ended? == Ended::Detached {
        return Ok(0);
    }
    waiter.status().await
}

/// `berth run`
pub async fn run(client: &Client, args: RunArgs) -> Result<i32> {
    let opts = &args.opts;
    if args.detach && !opts.attach.is_empty() {
        return Err(StatusError::exit(
            125,
            "berth: Conflicting options: -a and -d.\n\nRun 'berth run --help' for more information",
        ));
    }
    if !args.detach && opts.tty && opts.interactive && !tty::stdin_is_tty() {
        return Err(StatusError::exit(1, "the input device is not a TTY"));
    }
    let detach_keys = opts
        .detach_keys
        .clone()
        .unwrap_or_else(|| tty::DEFAULT_DETACH_KEYS.to_string());
    tty::parse_detach_keys(&detach_keys).map_err(|e| usage_error("run", &e))?;
    container_config(opts, args.detach).map_err(|e| usage_error("run", &e))?;
    let id = create_container(client, opts, args.detach)
        .await
        .map_err(|e| StatusError::exit(125, run_error(&format!("{e:#}"))))?;
    if args.detach {
        if let Err(e) = client.post(&format!("/containers/{id}/start")).await {
            let msg = format!("{e:#}");
            return Err(StatusError::exit(start_error_code(&msg), run_error(&msg)));
        }
        println!("{id}");
        return Ok(0);
    }
    let a = attach_streams(opts)?;
    let plan = AttachPlan {
        streams: a,
        tty: opts.tty,
        auto_remove: opts.rm,
        detach_keys,
        sig_proxy: args.sig_proxy,
        start: true,
    };
    attach_start_wait(client, &id, plan).await
}

/// `berth start`
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Containers
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `berth start`
pub async fn start(client: &Client, args: StartArgs) -> Result<i32> {
    if args.attach || args.interactive {
        if args.containers.len() > 1 {
            return Err(StatusError::exit(
                1,
                "you cannot start and attach multiple containers at once",
            ));
        }
        let id = &args.containers[0];
        let info = client.get(&format!("/containers/{id}/json")).await?;
        let cfg = &info["Config"];
        let tty = cfg["Tty"].as_bool().unwrap_or(false);
        let stdin = args.interactive && cfg["OpenStdin"].as_bool().unwrap_or(false);
        if tty && stdin && !tty::stdin_is_tty() {
            return Err(StatusError::exit(1, "the input device is not a TTY"));
        }
        let full = info["Id"].as_str().unwrap_or(id).to_string();
        let auto_remove = info["HostConfig"]["AutoRemove"].as_bool().unwrap_or(false);
        let keys = args
            .detach_keys
            .clone()
            .unwrap_or_else(|| tty::DEFAULT_DETACH_KEYS.to_string());
        let a = Attach {
            stdin,
            stdout: true,
            stderr: true,
        };
        let plan = AttachPlan {
            streams: a,
            tty,
            auto_remove,
            detach_keys: keys,
            sig_proxy: true,
            start: true,
        };
        return attach_start_wait(client, &full, plan).await;
    }
    let mut failed = Vec::new();
    for c in &args.containers {
        match client.post(&format!("/containers/{}/start", q(c))).await {
            Ok(_) => println!("{c}"),
            Err(e) => {
                eprintln!("{e:#}");
                failed.push(c.clone());
            }
        }
    }
    if failed.is_empty() {
        Ok(0)
    } else {
        Err(StatusError::exit(
            1,
            format!("Error: failed to start containers: {}", failed.join(", ")),
        ))
    }
}

/// `berth attach`
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub sig_proxy: bool,
    /// Container
    pub container: String,
}

/// `berth attach`
pub async fn attach(client: &Client, args: AttachArgs) -> Result<i32> {
    let info = client
        .get(&format!("/containers/{}/json", q(&args.container)))
        .await?;
    let id = info["Id"].as_str().unwrap_or(&args.container).to_string();
    let state = &info["State"];
    if !state["Running"].as_bool().unwrap_or(false) {
        return Err(StatusError::exit(
            1,
            "You cannot attach to a stopped container, start it first",
        ));
    }
    if state["Paused"].as_bool().unwrap_or(false) {
        return Err(StatusError::exit(
            1,
            "You cannot attach to a paused container, unpause it first",
        ));
    }
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let stdin = !args.no_stdin && info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    if tty && stdin && !tty::stdin_is_tty() {
        return Err(StatusError::exit(1, "the input device is not a TTY"));
    }
    let keys = args
        .detach_keys
        .clone()
        .unwrap_or_else(|| tty::DEFAULT_DETACH_KEYS.to_string());
    let a = Attach {
        stdin,
        stdout: true,
        stderr: true,
    };
    let plan = AttachPlan {
        streams: a,
        tty,
        auto_remove: false,
        detach_keys: keys,
        sig_proxy: args.sig_proxy,
        start: false,
    };
    attach_start_wait(client, &id, plan).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(args: &[&str]) -> RunArgs {
        let mut argv = vec!["run"];
        argv.extend_from_slice(args);
        Wrap::try_parse_from(argv).unwrap().run
    }

    #[test]
    fn run_flags_become_the_create_body() {
        std::env::set_var("BERTH_TEST_FROM_ENV", "fromenv");
        let r = parse(&[
            "-it",
            "--rm",
            "--name",
            "web",
            "-e",
            "A=1",
            "-e",
            "BERTH_TEST_FROM_ENV",
            "-w",
            "/tmp",
            "-u",
            "1000:1000",
            "-v",
            "/host:/ctr:ro",
            "-v",
            "/anon",
            "--memory",
            "64m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "10",
            "--init",
            "--read-only",
            "--tmpfs",
            "/run:size=1m",
            "--cap-add",
            "net_admin",
            "--cap-drop",
            "ALL",
            "--privileged",
            "--network",
            "none",
            "-l",
            "k=v",
            "busybox",
            "sh",
            "-c",
            "echo hi",
        ]);
        assert!(!r.detach);
        let b = container_config(&r.opts, false).unwrap();
        assert_eq!(b["Image"], "busybox");
        assert_eq!(b["Cmd"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(b["Tty"], true);
        assert_eq!(b["OpenStdin"], true);
        assert_eq!(b["StdinOnce"], true);
        assert_eq!(b["AttachStdin"], true);
        assert_eq!(b["Env"], json!(["A=1", "BERTH_TEST_FROM_ENV=fromenv"]));
        assert_eq!(b["WorkingDir"], "/tmp");
        assert_eq!(b["User"], "1000:1000");
        assert_eq!(b["Volumes"], json!({"/anon": {}}));
        assert_eq!(b["Labels"], json!({"k": "v"}));
        let h = &b["HostConfig"];
        assert_eq!(h["Binds"], json!(["/host:/ctr:ro"]));
        assert_eq!(h["Memory"], 64 * 1024 * 1024);
        assert_eq!(h["NanoCpus"], 500_000_000);
        assert_eq!(h["PidsLimit"], 10);
        assert_eq!(h["Init"], true);
        assert_eq!(h["ReadonlyRootfs"], true);
        assert_eq!(h["Tmpfs"], json!({"/run": "size=1m"}));
        assert_eq!(h["CapAdd"], json!(["CAP_NET_ADMIN"]));
        assert_eq!(h["CapDrop"], json!(["ALL"]));
        assert_eq!(h["Privileged"], true);
        assert_eq!(h["NetworkMode"], "none");
        assert_eq!(h["AutoRemove"], true);
        assert_eq!(r.opts.name.as_deref(), Some("web"));
    }

    #[test]
    fn detached_runs_attach_nothing() {
        let r = parse(&["-d", "-i", "busybox"]);
        assert!(r.detach);
        let b = container_config(&r.opts, true).unwrap();
        assert_eq!(b["AttachStdin"], false);
        assert_eq!(b["AttachStdout"], false);
        assert_eq!(b["StdinOnce"], false);
        assert_eq!(b["OpenStdin"], true);
        assert!(b.get("Cmd").is_none());
        assert_eq!(b["HostConfig"]["NetworkMode"], "default");
    }

    #[test]
    fn flags_after_the_image_belong_to_the_command() {
        let r = parse(&["busybox", "ls", "-la", "--name", "x"]);
        assert_eq!(r.opts.command(), vec!["ls", "-la", "--name", "x"]);
        assert_eq!(r.opts.name, None);
        let r = parse(&["busybox", "-la"]);
        assert_eq!(r.opts.command(), vec!["-la"]);
    }

    #[test]
    fn attach_flags_pick_streams() {
        let r = parse(&["-a", "stdout", "busybox"]);
        let b = container_config(&r.opts, false).unwrap();
        assert_eq!(b["AttachStdout"], true);
        assert_eq!(b["AttachStderr"], false);
        assert_eq!(b["AttachStdin"], false);
        let r = parse(&["-a", "bogus", "busybox"]);
        assert!(container_config(&r.opts, false).is_err());
    }

    #[test]
    fn entrypoint_ports_restart_and_sig_proxy() {
        let r = parse(&[
            "--entrypoint",
            "",
            "-p",
            "8080:80",
            "-p",
            "127.0.0.1:53:53/udp",
            "--restart",
            "on-failure:3",
            "--sig-proxy=false",
            "busybox",
        ]);
        assert!(!r.sig_proxy);
        let b = container_config(&r.opts, false).unwrap();
        assert_eq!(b["Entrypoint"], json!([""]));
        assert_eq!(b["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(
            b["HostConfig"]["PortBindings"],
            json!({"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                   "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "53"}]})
        );
        assert_eq!(
            b["HostConfig"]["RestartPolicy"],
            json!({"Name": "on-failure", "MaximumRetryCount": 3})
        );
        assert!(parse(&["busybox"]).sig_proxy);
    }

    #[test]
    fn less_common_flags_reach_the_host_config() {
        let r = parse(&[
            "--mount",
            "type=bind,source=/src,target=/dst,readonly",
            "--mount",
            "type=tmpfs,target=/t,tmpfs-size=1m",
            "--ulimit",
            "nofile=1024:2048",
            "--device",
            "/dev/fuse",
            "--group-add",
            "audio",
            "--ipc",
            "host",
            "--pid",
            "host",
            "--log-driver",
            "none",
            "--log-opt",
            "max-size=1m",
            "--memory-reservation",
            "32m",
            "--cpuset-cpus",
            "0",
            "--cpu-quota",
            "50000",
            "--oom-score-adj",
            "-500",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "--health-cmd",
            "true",
            "--health-interval",
            "1m30s",
            "--health-retries",
            "3",
            "busybox",
        ]);
        let b = container_config(&r.opts, false).unwrap();
        let h = &b["HostConfig"];
        assert_eq!(
            h["Mounts"],
            json!([{"Type": "bind", "Source": "/src", "Target": "/dst", "ReadOnly": true},
                   {"Type": "tmpfs", "Target": "/t", "ReadOnly": false,
                    "TmpfsOptions": {"SizeBytes": 1 << 20}}])
        );
        assert_eq!(
            h["Ulimits"],
            json!([{"Name": "nofile", "Soft": 1024, "Hard": 2048}])
        );
        assert_eq!(
            h["Devices"],
            json!([{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"}])
        );
        assert_eq!(h["GroupAdd"], json!(["audio"]));
        assert_eq!(h["IpcMode"], "host");
        assert_eq!(h["PidMode"], "host");
        assert_eq!(
            h["LogConfig"],
            json!({"Type": "none", "Config": {"max-size": "1m"}})
        );
        assert_eq!(h["MemoryReservation"], 32 << 20);
        assert_eq!(h["CpusetCpus"], "0");
        assert_eq!(h["CpuQuota"], 50000);
        assert_eq!(h["OomScoreAdj"], -500);
        assert_eq!(h["Sysctls"], json!({"net.ipv4.ip_forward": "1"}));
        assert_eq!(
            b["Healthcheck"],
            json!({"Test": ["CMD-SHELL", "true"], "Interval": 90_000_000_000i64, "Retries": 3})
        );
        assert!(container_config(
            &parse(&["--mount", "type=bind,source=/x", "busybox"]).opts,
            false
        )
        .is_err());
        assert_eq!(parse_go_duration("500ms").unwrap(), 500_000_000);
        assert!(parse_go_duration("5").is_err());
        let unknown = container_config(&parse(&["--bogus", "busybox"]).opts, false).unwrap_err();
        assert_eq!(unknown.to_string(), "unknown flag: --bogus");
        assert!(container_config(
            &parse(&["--rm", "--restart", "always", "busybox"]).opts,
            false
        )
        .is_err());
    }

    #[test]
    fn env_files_skip_comments() {
        let dir = std::env::temp_dir().join(format!("berth-env-{}", std::process::id()));
        std::fs::write(&dir, "# comment\n\nA=1\nB=two words\n").unwrap();
        let r = parse(&["--env-file", dir.to_str().unwrap(), "-e", "C=3", "busybox"]);
        let b = container_config(&r.opts, false).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(b["Env"], json!(["A=1", "B=two words", "C=3"]));
    }

    #[test]
    fn start_errors_map_to_docker_exit_codes() {
        assert_eq!(
            start_error_code("exec: \"nope\": executable file not found in $PATH"),
            127
        );
        assert_eq!(start_error_code("exec /etc/passwd: permission denied"), 126);
        assert_eq!(start_error_code("something else"), 125);
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(
            with_default_tag("localhost:5000/x"),
            "localhost:5000/x:latest"
        );
        assert_eq!(with_default_tag("x:1"), "x:1");
    }

    #[test]
    fn publish_ranges_expand_as_dockers_cli() {
        let specs: Vec<String> = ["8000-8001:80-81", "127.0.0.1:9000-9010:90/udp", "7000-7001"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (exposed, b) = parse_publish(&specs).unwrap();
        assert_eq!(exposed.len(), 5);
        assert_eq!(b["80/tcp"], json!([{"HostIp": "", "HostPort": "8000"}]));
        assert_eq!(b["81/tcp"], json!([{"HostIp": "", "HostPort": "8001"}]));
        assert_eq!(
            b["90/udp"],
            json!([{"HostIp": "127.0.0.1", "HostPort": "9000-9010"}])
        );
        assert_eq!(b["7001/tcp"], json!([{"HostIp": "", "HostPort": ""}]));
        assert!(parse_publish(&["8000-8002:80-81".to_string()]).is_err());
        assert!(parse_publish(&["x:80".to_string()]).is_err());
    }
}
