//! The `berth` CLI against a real daemon, for `tests/tests/cli.rs`.
//!
//! [`CliEnv::start`] starts `berthd` (which starts its own supervisor) on a socket in a temp
//! dir and loads a busybox-static image into it with `berth load`, so the image commands are
//! exercised on the way. With `$BERTH_CLI_TEST_HOST` set (e.g. `unix:///tmp/d/docker.sock`)
//! no daemon is started and that one is used instead: this is how the suite is checked
//! against the real dockerd, since berth must behave the same against either.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use crate::bins::{require_workspace_binary, workspace_binary};
use crate::daemon::Daemon;
use crate::tarball::{sha256_digest, Layer};
use crate::{Cmd, Output};

/// The image every CLI test runs (a busybox-static tree, `CMD ["sh"]`).
pub const IMAGE: &str = "berth-cli-test/busybox:latest";

/// A daemon and the `berth` binary pointed at it.
#[derive(Debug)]
pub struct CliEnv {
    host: String,
    berth: PathBuf,
    dir: tempfile::TempDir,
    daemon: Option<Daemon>,
    /// How berthd was started (program, args, env), to start it again on the same dirs.
    respawn: Option<Respawn>,
    label: String,
    /// Global flags put before every command (the TLS flags).
    global: Vec<String>,
}

impl CliEnv {
    /// Starts berthd in a temp dir (or uses `$BERTH_CLI_TEST_HOST`) and loads [`IMAGE`].
    /// Panics with the daemon's log if anything fails.
    ///
    /// Returns `None` (the test then passes vacuously, with a note on stderr) only while the
    /// workspace's berthd is still the skeleton that exits with "not built yet": the CLI suite
    /// was written before the engine, and runs for real as soon as berthd serves the API.
    pub fn start() -> Option<CliEnv> {
        Self::start_with(false, &[])
    }

    /// Like [`CliEnv::start`], with more berthd flags (a daemon of our own only: `None` with
    /// `$BERTH_CLI_TEST_HOST`).
    pub fn start_with_daemon_args(extra: &[&str]) -> Option<CliEnv> {
        if std::env::var("BERTH_CLI_TEST_HOST").is_ok_and(|h| !h.is_empty()) {
            eprintln!("skipping: the test needs berthd flags of its own");
            return None;
        }
        Self::start_with(false, extra)
    }

    /// Like [`CliEnv::start`], with `berth` talking to the daemon over `tcp://127.0.0.1` with
    /// TLS and client certificates (`--tlsverify`), made with `openssl` for the test. With
    /// `$BERTH_CLI_TEST_HOST`, `$BERTH_CLI_TEST_TLS_HOST` names the daemon's TLS address and
    /// `$BERTH_CLI_TEST_CERT_DIR` holds `ca.pem`, `cert.pem`, `key.pem`; without them the
    /// test is skipped.
    pub fn start_tls() -> Option<CliEnv> {
        Self::start_with(true, &[])
    }

    fn start_with(tls: bool, extra: &[&str]) -> Option<CliEnv> {
        match Self::try_start(tls, extra) {
            Ok(env) => Some(env),
            Err(e) if format!("{e:#}").contains("berthd: not built yet") => {
                eprintln!("skipping: berthd is not built yet ({e:#})");
                None
            }
            Err(e) => panic!("start CLI test environment: {e:#}"),
        }
    }

    fn try_start(tls: bool, extra: &[&str]) -> Result<CliEnv> {
        let berth = require_workspace_binary("berth");
        let dir = tempfile::Builder::new()
            .prefix("berth-cli-")
            .tempdir()
            .context("temp dir")?;
        let mut global = Vec::new();
        let mut respawn = None;
        let (host, daemon) = match std::env::var("BERTH_CLI_TEST_HOST") {
            Ok(h) if !h.is_empty() => {
                if tls {
                    let (Ok(host), Ok(certs)) = (
                        std::env::var("BERTH_CLI_TEST_TLS_HOST"),
                        std::env::var("BERTH_CLI_TEST_CERT_DIR"),
                    ) else {
                        anyhow::bail!(
                            "berthd: not built yet (no TLS host given for an external daemon)"
                        );
                    };
                    global = tls_flags(Path::new(&certs));
                    (host, None)
                } else {
                    (h, None)
                }
            }
            _ => {
                let berthd = require_workspace_binary("berthd");
                let sock = dir.path().join("berth.sock");
                let mut cmd = Command::new(berthd);
                cmd.arg("--data-root")
                    .arg(dir.path().join("data"))
                    .arg("--exec-root")
                    .arg(dir.path().join("exec"))
                    .arg("-H")
                    .arg(format!("unix://{}", sock.display()));
                // A default bridge and an nftables table of this daemon's own.
                let (bridge, table) = net_names();
                cmd.arg("--bridge")
                    .arg(&bridge)
                    .arg("--nft-table")
                    .arg(&table)
                    .args(extra);
                let mut tcp = None;
                if tls {
                    let certs = dir.path().join("certs");
                    make_certs(&certs)?;
                    let port = std::net::TcpListener::bind("127.0.0.1:0")
                        .and_then(|l| l.local_addr())
                        .context("pick a free port")?
                        .port();
                    cmd.arg("-H")
                        .arg(format!("tcp://127.0.0.1:{port}"))
                        .arg("--tlsverify")
                        .arg("--tlscacert")
                        .arg(certs.join("ca.pem"))
                        .arg("--tlscert")
                        .arg(certs.join("server-cert.pem"))
                        .arg("--tlskey")
                        .arg(certs.join("server-key.pem"));
                    global = tls_flags(&certs);
                    tcp = Some(port);
                }
                // berthd finds berth-supervisor, berth-shim and berth-runtime next to itself.
                if let Some(bin_dir) = workspace_binary("berthd").parent() {
                    let path = std::env::var("PATH").unwrap_or_default();
                    cmd.env("PATH", format!("{}:{path}", bin_dir.display()));
                }
                respawn = Some(Respawn::of(&cmd));
                let mut d = Daemon::spawn("berthd", cmd, dir.path().join("berthd.log"))?;
                d.wait_for_unix_socket(&sock, Duration::from_secs(30))?;
                match tcp {
                    Some(port) => {
                        d.wait_for_tcp(([127, 0, 0, 1], port).into(), Duration::from_secs(30))?;
                        (format!("tcp://127.0.0.1:{port}"), Some(d))
                    }
                    None => (format!("unix://{}", sock.display()), Some(d)),
                }
            }
        };
        let env = CliEnv {
            host,
            berth,
            dir,
            daemon,
            respawn,
            global,
            label: format!("berth-cli-test={}", crate::unique_id("env")),
        };
        let archive = env.dir.path().join("busybox.tar");
        std::fs::write(&archive, docker_archive(&busybox_tar_layer()?, IMAGE)?)
            .context("write image archive")?;
        let out = env.berth(["load", "-i"]).arg(&archive).output()?;
        anyhow::ensure!(out.success(), "berth load of the busybox image: {out}");
        Ok(env)
    }

    /// `berth <args>` against this daemon (not yet run).
    pub fn berth<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Cmd::new(&self.berth)
            .env("BERTH_HOST", &self.host)
            .env("DOCKER_HOST", "unix:///nonexistent-berth-test.sock")
            .args(&self.global)
            .args(args)
    }

    /// Runs `berth <args>` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.berth(args)
            .output()
            .unwrap_or_else(|e| panic!("berth {args:?}: {e:#}"))
    }

    /// Runs `berth <args>`, asserting exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.code(), 0, "berth {args:?} failed: {out}");
        out.stdout
    }

    /// A `key=value` label unique to this environment: containers carrying it are removed
    /// when the environment is dropped (what is left on an external daemon).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The daemon address given to `berth`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// A scratch directory that lives as long as the environment.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The unix socket of the daemon, when it is reached over one.
    pub fn socket(&self) -> Option<PathBuf> {
        self.host.strip_prefix("unix://").map(PathBuf::from)
    }

    /// The real `docker` CLI pointed at this daemon (`DOCKER_HOST`, a private `DOCKER_CONFIG`).
    /// Panics when the machine has no docker CLI: check [`docker_cli`] first.
    pub fn docker<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let docker = docker_cli().expect("no docker CLI on this machine (check docker_cli())");
        Cmd::new(docker)
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env("DOCKER_CLI_HINTS", "false")
            .args(args)
    }

    /// `docker <args>` against this daemon, run to its end (bounded by the command's default
    /// timeout); its output whatever the exit code. Panics if it cannot be run.
    pub fn docker_output(&self, args: &[&str]) -> Output {
        self.docker(args)
            .output()
            .unwrap_or_else(|e| panic!("docker {args:?}: {e:#}\n{}", self.daemon_logs()))
    }

    /// `docker <args>`, asserting exit 0 (with berthd's log on failure); returns stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker_output(args);
        assert_eq!(
            out.code(),
            0,
            "docker {args:?} failed: {out}\n--- berthd log ---\n{}",
            self.daemon_logs()
        );
        out.stdout
    }

    /// `docker <args>` that must fail with `message` in its stderr (dockerd's words).
    #[track_caller]
    pub fn docker_fails(&self, args: &[&str], message: &str) {
        let out = self.docker_output(args);
        assert_ne!(out.code(), 0, "{args:?} was accepted: {out}");
        assert!(
            out.stderr.contains(message),
            "{args:?}: want {message:?}: {out}"
        );
    }

    /// berthd's pid (`None` for an external daemon).
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().and_then(Daemon::pid)
    }

    /// `kill -9` of berthd (its supervisor, shims and containers keep running).
    pub fn kill_daemon(&mut self) -> Result<()> {
        let d = self.daemon.take().context("no daemon of our own to kill")?;
        d.signal(nix::sys::signal::Signal::SIGKILL)?;
        // Reaps it (already dead, so no SIGTERM grace is spent).
        let _ = d.stop(Duration::ZERO);
        Ok(())
    }

    /// `kill -9` of the berth-supervisor our berthd started (the shims and containers keep
    /// running); returns how many were killed.
    pub fn kill_supervisor(&self) -> usize {
        let dir = self.dir.path().to_string_lossy().into_owned();
        let mut n = 0;
        for pid in pids_with_arg_under(&dir) {
            let argv0 = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv0 = argv0.split(|&b| b == 0).next().unwrap_or_default();
            if String::from_utf8_lossy(argv0).ends_with("berth-supervisor") {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                n += 1;
            }
        }
        n
    }

    /// Stops berthd with SIGTERM (SIGKILL after `grace`), as a service manager does.
    pub fn stop_daemon(&mut self, grace: Duration) -> Result<()> {
        let d = self.daemon.take().context("no daemon of our own to stop")?;
        let status = d.stop(grace)?;
        anyhow::ensure!(status.success(), "berthd ended with {status} on SIGTERM");
        Ok(())
    }

    /// Starts berthd again with the same flags and dirs, after [`CliEnv::kill_daemon`], and
    /// waits until it serves `/_ping`.
    pub fn restart_daemon(&mut self) -> Result<()> {
        anyhow::ensure!(self.daemon.is_none(), "berthd is still running");
        let r = self
            .respawn
            .as_ref()
            .context("no daemon of our own to restart")?;
        let sock = self.socket().context("berthd listens on a unix socket")?;
        let mut d = Daemon::spawn("berthd", r.command(), self.dir.path().join("berthd.log"))?;
        d.wait_ready("GET /_ping", Duration::from_secs(30), || {
            ping(&sock).unwrap_or(false)
        })?;
        self.daemon = Some(d);
        Ok(())
    }

    /// A flag berthd was started with (`--nft-table`), for a daemon of our own.
    pub fn daemon_flag(&self, name: &str) -> Option<String> {
        let r = self.respawn.as_ref()?;
        let i = r.args.iter().position(|a| a == name)?;
        r.args.get(i + 1).map(|a| a.to_string_lossy().into_owned())
    }

    /// The daemon's log so far (empty for an external daemon).
    pub fn daemon_logs(&self) -> String {
        self.daemon.as_ref().map(Daemon::logs).unwrap_or_default()
    }
}

impl Drop for CliEnv {
    fn drop(&mut self) {
        if self.respawn.is_some() {
            self.stop_own_stack();
            return;
        }
        // Containers a test left behind (they are named with unique ids) go with the daemon;
        // against an external daemon, remove what carries this environment's label.
        if self.daemon.is_none() {
            let filter = format!("label={}", self.label);
            let ids = self
                .berth(["ps", "-aq", "--filter", &filter])
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = self.berth(["rm", "-f"]).args(ids).output();
            }
        }
    }
}

impl CliEnv {
    /// Tears down what our own berthd started: its containers (`rm -f`), berthd, then the
    /// supervisor and shims it left running (found by their command lines naming our temp
    /// dir, killed by pid), and any mount left under the dir.
    fn stop_own_stack(&mut self) {
        if self.daemon.is_some() {
            let ids = self
                .berth(["ps", "-aq"])
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = self.berth(["rm", "-f"]).args(ids).output();
            }
        }
        if let Some(d) = self.daemon.take() {
            let _ = d.stop(Duration::from_secs(5));
        }
        let dir = self.dir.path().to_string_lossy().into_owned();
        for pid in pids_with_arg_under(&dir) {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        if self.respawn.is_some() {
            remove_daemon_network(self, &self.dir.path().join("data"));
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut under: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&dir))
            .collect();
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in under {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// A bridge name and an nftables table name for one test daemon (unique on the host).
pub fn net_names() -> (String, String) {
    let tag = crate::unique_id("n")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>();
    let tag = format!(
        "{:x}{}",
        std::process::id(),
        &tag[tag.len().saturating_sub(6)..]
    );
    let tag: String = tag.chars().rev().take(12).collect();
    (format!("bt{tag}"), format!("berth_{tag}"))
}

/// Removes what a stopped test daemon leaves on the host: the bridges of its networks (read
/// from its records under `data_root/network`) and its nftables table.
pub fn remove_daemon_network_of(bridge_hint: Option<&str>, table: Option<&str>, data_root: &Path) {
    let mut bridges: Vec<String> = bridge_hint.map(str::to_string).into_iter().collect();
    for e in std::fs::read_dir(data_root.join("network"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let v: serde_json::Value = std::fs::read(e.path())
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_default();
        if let Some(b) = v["bridge"].as_str().filter(|b| !b.is_empty()) {
            bridges.push(b.to_string());
        }
    }
    for b in bridges {
        let _ = Command::new("ip")
            .args(["link", "del", &b])
            .stderr(std::process::Stdio::null())
            .status();
    }
    if let Some(t) = table {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", t])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn remove_daemon_network(env: &CliEnv, data_root: &Path) {
    if env.daemon_flag("--firewall-backend").as_deref() == Some("iptables") {
        if let Some(prefix) = env.daemon_flag("--nft-table") {
            berth_network::iptables::remove(&prefix);
        }
    }
    remove_daemon_network_of(
        env.daemon_flag("--bridge").as_deref(),
        env.daemon_flag("--nft-table").as_deref(),
        data_root,
    );
}

/// Pids of processes with a command-line argument under `dir` (our supervisor and shims).
fn pids_with_arg_under(dir: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .split(|&b| b == 0)
                .any(|a| a.starts_with(dir.as_bytes()))
        })
        .collect()
}

/// How a daemon was started, so it can be started again the same way.
#[derive(Debug)]
struct Respawn {
    program: std::ffi::OsString,
    args: Vec<std::ffi::OsString>,
    envs: Vec<(std::ffi::OsString, Option<std::ffi::OsString>)>,
}

impl Respawn {
    fn of(cmd: &Command) -> Respawn {
        Respawn {
            program: cmd.get_program().to_owned(),
            args: cmd.get_args().map(ToOwned::to_owned).collect(),
            envs: cmd
                .get_envs()
                .map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned)))
                .collect(),
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        for (k, v) in &self.envs {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c
    }
}

/// Whether the daemon on `sock` answers `GET /_ping` with 200.
fn ping(sock: &Path) -> Result<bool> {
    let r = crate::http::request(sock, "GET", "/_ping", None)?;
    Ok(r.status == 200)
}

/// Starts berthd for a docker CLI test, or returns `None` (saying why on stderr) when the
/// machine has no docker CLI.
pub fn start_for_docker() -> Option<CliEnv> {
    if docker_cli().is_none() {
        eprintln!("skipping: no docker CLI on this machine (CI installs docker 28)");
        return None;
    }
    CliEnv::start()
}

/// The real docker CLI, when this machine has one (`$PATH`, `/usr/local/bin`, `/usr/bin`).
pub fn docker_cli() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/local/bin".into(), "/usr/bin".into()])
        .map(|d| d.join("docker"))
        .find(|p| p.is_file())
}

/// Whether a failed `berth` run says the daemon lacks the endpoint (404 without a message,
/// "page not found", "not implemented"): tests of commands beyond the core set skip then, so
/// the suite follows berthd as it grows instead of failing on what it does not serve yet.
pub fn unsupported(out: &Output) -> bool {
    let err = out.stderr.trim();
    !out.success()
        && (err.ends_with("Error response from daemon:")
            || err.contains("page not found")
            || err.contains("not implemented")
            || err.contains("not available")
            || err.contains("Not Implemented"))
}

/// `--tlsverify` and the CA and client certificate flags for the files in `dir`.
pub fn tls_flags(dir: &Path) -> Vec<String> {
    let f = |n: &str| dir.join(n).display().to_string();
    vec![
        "--tlsverify".into(),
        "--tlscacert".into(),
        f("ca.pem"),
        "--tlscert".into(),
        f("cert.pem"),
        "--tlskey".into(),
        f("key.pem"),
    ]
}

/// Writes a throwaway CA (`ca.pem`), a server certificate for 127.0.0.1/localhost
/// (`server-cert.pem`, `server-key.pem`) and a client certificate (`cert.pem`, `key.pem`) with
/// `openssl`, as docker's "protect the daemon socket" guide does.
pub fn make_certs(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )?;
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n")?;
    let steps: [&[&str]; 5] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=berth-test-ca",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server-key.pem",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-out",
            "server-cert.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "client.csr",
            "-subj",
            "/CN=berth-client",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-extfile",
            "client.ext",
        ],
    ];
    for args in steps {
        let out = Cmd::new("openssl").args(args).current_dir(dir).output()?;
        anyhow::ensure!(out.success(), "openssl {args:?}: {out}");
    }
    Ok(())
}

/// An uncompressed busybox layer (for `docker save` archives, whose layers are plain tars).
pub fn busybox_tar_layer() -> Result<Layer> {
    let dir = tempfile::tempdir().context("temp dir for busybox layer")?;
    crate::rootfs::populate(dir.path())?;
    Layer::from_dir(dir.path(), false)
}

/// A `docker save` archive (manifest.json, config, one layer) holding `layer` tagged `tag`.
pub fn docker_archive(layer: &Layer, tag: &str) -> Result<Vec<u8>> {
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {
            "Cmd": ["sh"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "berth-tests busybox-static"}],
    })
    .to_string()
    .into_bytes();
    let config_hex = sha256_digest(&config)
        .trim_start_matches("sha256:")
        .to_string();
    let layer_hex = layer.diff_id.trim_start_matches("sha256:").to_string();
    let manifest = json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": [tag],
        "Layers": [format!("{layer_hex}/layer.tar")],
    }])
    .to_string()
    .into_bytes();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], dir: bool| -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_mode(if dir { 0o755 } else { 0o644 });
        h.set_mtime(1_704_067_200);
        if dir {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            b.append_data(&mut h, path, std::io::empty())
                .with_context(|| format!("add {path}"))
        } else {
            h.set_size(data.len() as u64);
            b.append_data(&mut h, path, data)
                .with_context(|| format!("add {path}"))
        }
    };
    add(&format!("{layer_hex}/"), &[], true)?;
    add(&format!("{layer_hex}/layer.tar"), &layer.bytes, false)?;
    add(&format!("{config_hex}.json"), &config, false)?;
    add("manifest.json", &manifest, false)?;
    let mut out = b.into_inner().context("finish archive")?;
    out.flush().ok();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_certs_writes_a_ca_a_server_and_a_client_pair() {
        let dir = tempfile::tempdir().unwrap();
        make_certs(dir.path()).unwrap();
        for f in [
            "ca.pem",
            "server-cert.pem",
            "server-key.pem",
            "cert.pem",
            "key.pem",
        ] {
            assert!(dir.path().join(f).is_file(), "{f} missing");
        }
        let out = Cmd::new("openssl")
            .args(["verify", "-CAfile", "ca.pem", "server-cert.pem", "cert.pem"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.success(), "{out}");
    }

    #[test]
    fn docker_archives_have_a_manifest_config_and_layer() {
        let layer = Layer::from_dir(tempfile::tempdir().unwrap().path(), false).unwrap();
        let bytes = docker_archive(&layer, "x/y:1").unwrap();
        let mut ar = tar::Archive::new(&bytes[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(names.contains(&"manifest.json".to_string()), "{names:?}");
        assert!(names.iter().any(|n| n.ends_with("/layer.tar")), "{names:?}");
        assert!(names
            .iter()
            .any(|n| n.ends_with(".json") && n != "manifest.json"));
    }
}
