//! `pull-docker`: image pulls from a local registry, berthd vs the real dockerd (Debian's
//! docker.io), in one run.
//!
//! A private Debian `docker-registry` on 127.0.0.1 gets, for each of `-n` rounds, two images
//! with gzip layers (pushed with `skopeo copy` from `docker save`-style archives built here):
//!
//! - `big-<round>`: 5 layers of incompressible data, `--layer-mib` MiB each (200 MiB in all);
//! - `small-<round>`: one layer of `--files` small files (20,000 by default, 0.5–2 KiB each,
//!   in 100 directories).
//!
//! Each round's images have their own content, so every pull starts with none of its layers
//! in either store ("from an empty store") without deleting anything between pulls: on ext4,
//! creating thousands of files shortly after deleting thousands is slowed by the inode
//! allocator skipping recently freed inodes (seconds of `recently_deleted` in the kernel),
//! which would measure the previous round's cleanup instead of the pull. Both daemons start
//! with empty data roots. The daemons alternate which pulls first. One sample is
//! `POST /images/create?fromImage=…&tag=…` until its progress stream ends (checked for an
//! error line). Throughput = compressed bytes of the image's layers / time; the table shows
//! medians and the ratio berth/docker.
//!
//! dockerd runs in its own `--data-root`/`--exec-root`/`-H`/`--pidfile` with `--bridge none
//! --iptables=false` and a config file listing the registry in `insecure-registries`; berthd
//! gets `--insecure-registry` the same way.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_bench::is_executable;
use berth_tests::bins::workspace_binary;
use berth_tests::daemon::Daemon;
use berth_tests::registry::{layer_from_entries, Entry, Registry};
use berth_tests::tarball::{sha256_digest, Layer};
use clap::Parser;

/// berthd vs dockerd: pull throughput from a local registry.
#[derive(Debug, Parser)]
#[command(name = "pull-docker")]
struct Args {
    /// Timed pulls per daemon and image.
    #[arg(short = 'n', long, default_value_t = 3)]
    runs: usize,
    /// MiB per layer of the 5-layer image.
    #[arg(long, default_value_t = 40)]
    layer_mib: usize,
    /// Files in the small-files image.
    #[arg(long, default_value_t = 20_000)]
    files: usize,
    /// dockerd binary.
    #[arg(long, default_value = "/usr/sbin/dockerd")]
    dockerd: PathBuf,
    /// Required ratio berth/docker of the median throughput for `--check`.
    #[arg(long, default_value_t = 1.5)]
    target: f64,
    /// Exit 1 when a ratio misses `--target`.
    #[arg(long)]
    check: bool,
    /// Seconds to let the machine settle (after `sync`) before each pull.
    #[arg(long, default_value_t = 2)]
    settle: u64,
    /// Where both daemons keep their data. Not /tmp: on our hosts its ext4 block group is
    /// churned by every test run, and creating a file there costs ~1 ms instead of ~30 µs.
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
}

const TIMEOUT: Duration = Duration::from_secs(600);

/// One daemon under measurement, reached with curl over its unix socket.
struct Engine {
    name: &'static str,
    dir: PathBuf,
    _daemon: Daemon,
}

/// An image pushed to the registry for the benchmark.
struct Image {
    repo: String,
    /// Compressed bytes of its layers (what a pull downloads).
    bytes: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !berth_tests::is_root() {
        bail!("pull-docker needs root (it starts daemons): run it with sudo");
    }
    let berthd = workspace_binary("berthd");
    for b in [
        &berthd,
        &args.dockerd,
        &PathBuf::from(berth_tests::registry::REGISTRY_BIN),
    ] {
        if !is_executable(b) {
            bail!(
                "{} not found (cargo build --release -p berth-engine -p berth-supervisor -p \
                 berth-shim -p berth-runtime -p berth-bench; apt-get install docker.io \
                 docker-registry)",
                b.display()
            );
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("bpd-")
        .tempdir_in(&args.dir)?;
    let registry = Registry::start().context("start docker-registry")?;
    let host = registry.host();
    let engines = [
        Engine::berth(dir.path(), &berthd, &host)?,
        Engine::docker(dir.path(), &args.dockerd, &host)?,
    ];

    eprintln!("building and pushing the images (skopeo)...");
    let kinds = [
        format!("5 layers x {} MiB", args.layer_mib),
        format!("{} small files", args.files),
    ];
    let mut images: [Vec<Image>; 2] = [Vec::new(), Vec::new()];
    for round in 0..args.runs as u64 {
        let big = big_layers(args.layer_mib, round)?;
        images[0].push(publish(
            dir.path(),
            &host,
            &format!("bench/big-{round}"),
            &big,
        )?);
        drop(big);
        let small = vec![small_files_layer(args.files, round)?];
        images[1].push(publish(
            dir.path(),
            &host,
            &format!("bench/small-{round}"),
            &small,
        )?);
    }

    let result = measure(&args, &host, &engines, &kinds, &images);
    drop(engines);
    // berthd's supervisor is detached (it outlives berthd on purpose): stop ours.
    let root = dir.path().display().to_string();
    for pid in berth_bench::pids_matching(|c| c.contains("berth-supervisor") && c.contains(&root)) {
        // SAFETY: kill(2) on a pid we just read; the worst case is a stale pid.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    result
}

fn measure(
    args: &Args,
    host: &str,
    engines: &[Engine; 2],
    kinds: &[String; 2],
    images: &[Vec<Image>; 2],
) -> Result<()> {
    // Round by round, both images, so each kind sees the same phases of the machine's load
    // (writeback of the previous pulls included).
    let mut times: [[Vec<Duration>; 2]; 2] = Default::default();
    for (round, pair) in images[0].iter().zip(&images[1]).enumerate() {
        for (kind, label) in kinds.iter().enumerate() {
            let img = if kind == 0 { pair.0 } else { pair.1 };
            for k in 0..2 {
                let e = (round + k) % 2;
                let t = engines[e]
                    .pull(&format!("{host}/{}", img.repo), args.settle)
                    .with_context(|| format!("{}: pull {label}", engines[e].name))?;
                eprintln!(
                    "  {label} {:<8} round {round}: {:.2} s",
                    engines[e].name,
                    t.as_secs_f64()
                );
                times[kind][e].push(t);
            }
        }
    }
    let rows: Vec<(String, u64, [Vec<Duration>; 2])> = kinds
        .iter()
        .zip(times)
        .enumerate()
        .map(|(kind, (label, t))| {
            let bytes = images[kind].iter().map(|i| i.bytes).sum::<u64>() / args.runs.max(1) as u64;
            (label.clone(), bytes, t)
        })
        .collect();

    println!(
        "{:<22} {:<7} {:>5} {:>10} {:>10} {:>12}",
        "image", "engine", "runs", "median", "min", "MiB/s (med)"
    );
    let mut missed = false;
    for (label, bytes, times) in &rows {
        let mut med = [0.0; 2];
        for (e, t) in times.iter().enumerate() {
            let m = median(t);
            med[e] = m.as_secs_f64();
            let min = t.iter().min().copied().unwrap_or_default();
            println!(
                "{:<22} {:<7} {:>5} {:>8.2} s {:>8.2} s {:>12.1}",
                label,
                engines[e].name,
                t.len(),
                m.as_secs_f64(),
                min.as_secs_f64(),
                *bytes as f64 / (1 << 20) as f64 / m.as_secs_f64()
            );
        }
        let ratio = med[1] / med[0];
        let met = ratio >= args.target;
        missed |= !met;
        println!(
            "{:<22} throughput berth/docker: {ratio:.2}x (target >= {:.2}x: {})",
            label,
            args.target,
            if met { "met" } else { "missed" }
        );
    }
    if args.check && missed {
        std::process::exit(1);
    }
    Ok(())
}

fn median(xs: &[Duration]) -> Duration {
    let mut v = xs.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Incompressible bytes (xorshift64*), different per `seed`.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Gzips a plain layer (what registries usually hold).
fn gzip(l: &Layer) -> Result<Layer> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&l.bytes).context("gzip layer")?;
    let bytes = enc.finish().context("finish gzip")?;
    Ok(Layer {
        digest: sha256_digest(&bytes),
        diff_id: l.diff_id.clone(),
        bytes,
        media_type: berth_tests::tarball::MEDIA_TYPE_LAYER_GZIP,
    })
}

fn big_layers(mib: usize, round: u64) -> Result<Vec<Layer>> {
    (0..5u64)
        .map(|i| {
            let data = noise(mib << 20, round * 100 + i + 1);
            let name = format!("blob-{i}.bin");
            gzip(&layer_from_entries(&[Entry::File(&name, &data, 0o644, 0)])?)
        })
        .collect()
}

fn small_files_layer(files: usize, round: u64) -> Result<Layer> {
    let dirs = 100;
    let names: Vec<(String, Vec<u8>)> = (0..files)
        .map(|i| {
            let len = 512 + (i * 7919) % 1536;
            (
                format!("files/d{:03}/f{i:05}", i % dirs),
                noise(len, (round << 32) + i as u64 + 1000),
            )
        })
        .collect();
    let dir_names: Vec<String> = (0..dirs).map(|d| format!("files/d{d:03}")).collect();
    let mut entries = vec![Entry::Dir("files", 0o755)];
    entries.extend(dir_names.iter().map(|d| Entry::Dir(d, 0o755)));
    entries.extend(names.iter().map(|(n, data)| Entry::File(n, data, 0o644, 0)));
    gzip(&layer_from_entries(&entries)?)
}

/// Pushes an image made of `layers` to the registry as `repo:latest` with skopeo (no
/// daemon involved, so neither store sees it before its timed pull); returns the compressed
/// size the registry's manifest lists.
fn publish(work: &Path, host: &str, repo: &str, layers: &[Layer]) -> Result<Image> {
    let reference = format!("{host}/{repo}:latest");
    let archive = work.join("archive.tar");
    std::fs::write(
        &archive,
        berth_tests::registry::docker_archive_layers(layers, &reference)?,
    )
    .context("write image archive")?;
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("docker://{reference}"))
        .output()
        .context("run skopeo (apt-get install skopeo)")?;
    let _ = std::fs::remove_file(&archive);
    anyhow::ensure!(
        out.status.success(),
        "skopeo copy to {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .context("run skopeo inspect")?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parse the pushed manifest")?;
    let bytes = manifest["layers"]
        .as_array()
        .map(|l| l.iter().filter_map(|x| x["size"].as_u64()).sum())
        .unwrap_or(0);
    anyhow::ensure!(
        bytes > 0,
        "no layers in the manifest of {reference}: {manifest}"
    );
    Ok(Image {
        repo: repo.to_string(),
        bytes,
    })
}

impl Engine {
    fn berth(base: &Path, berthd: &Path, registry: &str) -> Result<Engine> {
        let dir = base.join("berth");
        std::fs::create_dir_all(&dir)?;
        let mut cmd = Command::new(berthd);
        cmd.arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("api.sock").display()))
            .arg("--pidfile")
            .arg(dir.join("berthd.pid"))
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .args(["--insecure-registry", registry])
            .args(["--log-level", "warn"]);
        if let Some(bin) = berthd.parent() {
            let path = std::env::var("PATH").unwrap_or_default();
            cmd.env("PATH", format!("{}:{path}", bin.display()));
        }
        let mut daemon = Daemon::spawn("berthd", cmd, dir.join("berthd.log"))?;
        daemon.wait_for_unix_socket(&dir.join("api.sock"), TIMEOUT)?;
        Ok(Engine {
            name: "berth",
            dir,
            _daemon: daemon,
        })
    }

    fn docker(base: &Path, dockerd: &Path, registry: &str) -> Result<Engine> {
        let dir = base.join("docker");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("daemon.json"),
            serde_json::json!({"insecure-registries": [registry]}).to_string(),
        )?;
        let mut cmd = Command::new(dockerd);
        cmd.arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("api.sock").display()))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .args(["--bridge", "none", "--iptables=false", "--ip-masq=false"])
            .args(["--log-level", "warn"]);
        let mut daemon = Daemon::spawn("dockerd", cmd, dir.join("dockerd.log"))?;
        daemon.wait_for_unix_socket(&dir.join("api.sock"), TIMEOUT)?;
        Ok(Engine {
            name: "docker",
            dir,
            _daemon: daemon,
        })
    }

    /// `curl` against the daemon's API; returns the body (a failed transfer is an error).
    fn curl(&self, method: &str, path: &str, extra: &[&str]) -> Result<String> {
        let out = Command::new("curl")
            .args(["-sS", "--fail-with-body", "--unix-socket"])
            .arg(self.dir.join("api.sock"))
            .args(["-X", method])
            .args(extra)
            .arg(format!("http://localhost/v1.41{path}"))
            .output()
            .context("run curl")?;
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "{} {method} {path}: {}{body}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(body)
    }

    /// Lets the machine settle, then times a pull of `repo:latest` (none of whose layers
    /// the store has) to the end of its stream.
    fn pull(&self, repo: &str, settle: u64) -> Result<Duration> {
        // SAFETY: sync(2) has no arguments and cannot fail.
        unsafe { libc::sync() };
        std::thread::sleep(Duration::from_secs(settle));
        let path = format!(
            "/images/create?fromImage={}&tag=latest",
            repo.replace('/', "%2F")
        );
        let start = Instant::now();
        let out = self.curl("POST", &path, &["-H", "X-Registry-Auth: e30="])?;
        let took = start.elapsed();
        anyhow::ensure!(
            !out.contains("\"error\"") && out.contains("Downloaded newer image"),
            "pull: {out}"
        );
        Ok(took)
    }
}
