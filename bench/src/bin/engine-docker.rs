//! `engine-docker`: berthd (with its supervisor, shims, berth-runtime) against the real Docker
//! Engine (Debian's docker.io: dockerd + containerd + containerd-shim-runc-v2 + runc), each
//! started in its own temp data root, side by side in one run.
//!
//! 1. `docker run --rm --network none IMAGE true` end to end, the same docker CLI pointed at
//!    each daemon, interleaved.
//! 2. create + start + wait + remove of the same container through the Engine API directly
//!    (one kept-alive HTTP/1.1 connection per daemon), interleaved.
//! 3. Memory per container of every engine-side process (daemon, supervisor or containerd,
//!    shims) with `-c` running `sleep` containers: (growth of the daemons + all shims) / N.
//! 3. `docker exec NAME true` through the CLI into a running container, interleaved.
//! 4. Logs: a container writes `--log-mib` MiB to stdout; time from start to exit (the
//!    logging pipeline's ingest rate) and the time to read it all back through
//!    `/containers/{id}/logs`; `docker logs -f` started with the container, to its end (every
//!    byte checked); `docker run` of the same container with the CLI attached, to its end.
//!
//! Both daemons get the same busybox image through `POST /images/create?fromSrc=-` (import).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_bench::{
    is_executable, memory_of, memory_of_all, mib, ms, percentile, pids_matching, run_timed,
    run_timed_from, run_timed_to, Memory,
};
use berth_tests::bins::workspace_binary;
use berth_tests::daemon::Daemon;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// berthd vs dockerd: run latency, API lifecycle, memory per container, logs throughput.
#[derive(Debug, Parser)]
#[command(name = "engine-docker")]
struct Args {
    /// Timed runs per daemon for each latency measurement.
    #[arg(short = 'n', long, default_value_t = 30)]
    runs: usize,
    /// Untimed runs per daemon first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Running containers for the memory measurement (0 skips it).
    #[arg(short = 'c', long, default_value_t = 50)]
    containers: usize,
    /// MiB written to stdout for the logs measurement (0 skips it).
    #[arg(long, default_value_t = 100)]
    log_mib: u64,
    /// Seconds to let every process settle before reading memory.
    #[arg(long, default_value_t = 5)]
    settle: u64,
    /// dockerd binary.
    #[arg(long, default_value = "/usr/sbin/dockerd")]
    dockerd: PathBuf,
    /// docker CLI used for the end-to-end runs (against both daemons).
    #[arg(long, default_value = "docker")]
    docker: PathBuf,
    /// Sections to run, comma-separated: run, exec, memory, logs, cp, commit, seccomp, net,
    /// vol, build.
    #[arg(
        long,
        default_value = "run,exec,memory,logs,cp,commit,seccomp,net,vol,build"
    )]
    only: String,
    /// `docker cp` data set: this many files...
    #[arg(long, default_value_t = 1000)]
    cp_files: usize,
    /// ...of this many KiB each (1,000 × 100 KiB is the issue's 100 MiB).
    #[arg(long, default_value_t = 100)]
    cp_kib: usize,
    /// Timed rounds of the cp and commit measurements.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// MiB a container writes before `docker commit`.
    #[arg(long, default_value_t = 50)]
    commit_mib: usize,
}

impl Args {
    fn wants(&self, section: &str) -> bool {
        self.only.split(',').any(|s| s.trim() == section)
    }
}

const TIMEOUT: Duration = Duration::from_secs(120);
/// berthd's default bridge and nftables table in the benchmark.
const BENCH_BRIDGE: &str = "bbench0";
const BENCH_TABLE: &str = "berth_bench";
const IMAGE: &str = "benchbox:latest";

/// One engine under measurement.
struct Engine {
    name: &'static str,
    dir: PathBuf,
    daemon: Daemon,
    /// Program names of this engine's helper (containerd or supervisor) and shims; their
    /// command lines name the engine's exec root, which tells them from other engines' ones.
    helper_name: &'static str,
    shim_name: &'static str,
    exec_root: String,
    conn: Option<SendRequest<Full<Bytes>>>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !berth_tests::is_root() {
        bail!("engine-docker needs root (it starts daemons and containers): run it with sudo");
    }
    let berthd = workspace_binary("berthd");
    for b in [
        &berthd,
        &workspace_binary("berth-supervisor"),
        &workspace_binary("berth-shim"),
        &workspace_binary("berth-runtime"),
        &args.dockerd,
    ] {
        if !is_executable(b) {
            bail!(
                "{} not found (cargo build --release -p berth-engine -p berth-supervisor -p \
                 berth-shim -p berth-runtime -p berth-bench; apt-get install docker.io)",
                b.display()
            );
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::Builder::new().prefix("bed-").tempdir_in("/tmp")?;
    let layer = berth_tests::tarball::Layer::busybox()?;

    let had_docker0 = Path::new("/sys/class/net/docker0").exists();
    let mut engines = [
        Engine::berth(dir.path(), &berthd)?,
        Engine::docker(dir.path(), &args.dockerd, args.wants("net"))?,
    ];
    for e in &mut engines {
        rt.block_on(e.connect())?;
        rt.block_on(e.import(&layer.bytes))
            .with_context(|| format!("{}: import busybox image", e.name))?;
    }
    let result = rt.block_on(measure(&args, &mut engines));
    for e in &mut engines {
        rt.block_on(e.remove_all());
    }
    for e in &engines {
        let _ = docker_cmd(&args, e)
            .args(["network", "rm", "benchnet"])
            .output();
    }
    drop(engines);
    // The bridges and the table the two daemons made.
    let mut links = vec![BENCH_BRIDGE];
    if !had_docker0 {
        links.push("docker0");
    }
    for l in links {
        let _ = Command::new("ip").args(["link", "del", l]).output();
    }
    let _ = Command::new("nft")
        .args(["delete", "table", "inet", BENCH_TABLE])
        .output();
    result
}

async fn measure(args: &Args, engines: &mut [Engine; 2]) -> Result<()> {
    if args.wants("run") {
        measure_run(args, engines).await?;
    }
    if args.wants("exec") {
        measure_exec(args, engines).await?;
    }
    if args.wants("memory") {
        measure_memory(args, engines).await?;
    }
    if args.wants("logs") {
        measure_logs(args, engines).await?;
    }
    if args.wants("cp") {
        measure_cp(args, engines)?;
    }
    if args.wants("commit") {
        measure_commit(args, engines)?;
    }
    if args.wants("seccomp") {
        measure_seccomp(args, &engines[0])?;
    }
    if args.wants("net") {
        measure_net(args, engines)?;
    }
    if args.wants("vol") {
        measure_vol(args, engines)?;
    }
    if args.wants("build") {
        measure_build(args, engines)?;
    }
    if args.wants("compose") {
        measure_compose(args, engines)?;
    }
    Ok(())
}

/// docker-compose 1.29 (over docker-py) on each daemon: `up -d` of a three-service stack
/// (a built httpd with a published port, a stateful service with a named volume and a health
/// check, one waiting for it to be healthy; two networks), its images built beforehand, and
/// `down -v`. The services run under `init: true`, so a stop measures the engines rather
/// than the 10 s (here 1 s) a PID 1 that ignores SIGTERM costs both.
fn measure_compose(args: &Args, engines: &[Engine; 2]) -> Result<()> {
    let dir = engines[0]
        .dir
        .parent()
        .unwrap_or(Path::new("/tmp"))
        .join("compose-stack");
    std::fs::create_dir_all(dir.join("web"))?;
    std::fs::write(
        dir.join("web/Dockerfile"),
        format!(
            "FROM {IMAGE}\nRUN mkdir -p /www && echo hello > /www/index.html\n\
             CMD [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n"
        ),
    )?;
    std::fs::write(
        dir.join("docker-compose.yml"),
        format!(
            r#"version: "3.8"
services:
  web:
    build: ./web
    image: benchstack_web
    init: true
    ports: ["80"]
    networks: [default, back]
  db:
    image: {IMAGE}
    init: true
    command: ["sh", "-c", "echo started >> /data/log; exec sleep 100000"]
    volumes: [dbdata:/data]
    healthcheck:
      test: ["CMD", "test", "-f", "/data/log"]
      interval: 100ms
      retries: 50
    networks: [back]
  app:
    image: {IMAGE}
    init: true
    command: ["sleep", "100000"]
    depends_on:
      db:
        condition: service_healthy
    networks: [back]
volumes:
  dbdata:
networks:
  back:
"#
        ),
    )?;
    let compose = |e: &Engine, argv: &[&str]| -> Result<Duration> {
        let mut cmd = Command::new("docker-compose");
        cmd.env("DOCKER_HOST", e.host())
            .env("DOCKER_BUILDKIT", "0")
            .current_dir(&dir)
            .args(["--no-ansi", "-p", "benchstack"])
            .args(argv);
        run_timed(&mut cmd, TIMEOUT).with_context(|| format!("{}: docker-compose {argv:?}", e.name))
    };
    for e in engines {
        compose(e, &["build"])?;
    }
    let mut up = [Vec::new(), Vec::new()];
    let mut down = [Vec::new(), Vec::new()];
    eprintln!(
        "compose: 1 warm-up + {} timed rounds per daemon, interleaved",
        args.rounds
    );
    for round in 0..args.rounds + 1 {
        for k in 0..2 {
            let e = (round + k) % 2;
            let t1 = compose(&engines[e], &["up", "-d"])?;
            let t2 = compose(&engines[e], &["down", "-v", "-t", "1"])?;
            if round > 0 {
                up[e].push(t1);
                down[e].push(t2);
            }
        }
    }
    println!("compose (median / p90 / min)");
    report("docker-compose up -d", engines, &up, "target <= 0.50x");
    report("docker-compose down -v", engines, &down, "target <= 0.50x");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Builds with the classic builder (`DOCKER_BUILDKIT=0`, POST /build) on each daemon:
/// FROM the busybox image, three RUN steps and a COPY of a 50 MiB context, with `--no-cache`
/// and fully cached; and a two-stage build whose stages are independent (each a busy loop),
/// which berth runs at once and dockerd one after the other.
fn measure_build(args: &Args, engines: &[Engine; 2]) -> Result<()> {
    let root = engines[0]
        .dir
        .parent()
        .unwrap_or(Path::new("/tmp"))
        .join("build-ctx");
    let steps = root.join("steps");
    std::fs::create_dir_all(steps.join("data"))?;
    // 50 files of 1 MiB, not compressible.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..50 {
        let mut buf = vec![0u8; 1 << 20];
        for chunk in buf.chunks_mut(8) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
        }
        std::fs::write(steps.join(format!("data/f{i:02}")), &buf)?;
    }
    std::fs::write(
        steps.join("Dockerfile"),
        format!(
            "FROM {IMAGE}\nRUN echo one > /one\nRUN echo two > /two\nRUN echo three > /three\nCOPY data /data\n"
        ),
    )?;
    let stages = root.join("stages");
    std::fs::create_dir_all(&stages)?;
    let busy = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done";
    std::fs::write(
        stages.join("Dockerfile"),
        format!(
            "FROM {IMAGE} AS a\nRUN {busy}; echo a > /a\nFROM {IMAGE} AS b\nRUN {busy}; echo b > /b\n\
             FROM {IMAGE}\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n"
        ),
    )?;
    let build = |e: &Engine, dir: &Path, extra: &[&str]| -> Result<Duration> {
        let mut cmd = docker_cmd(args, e);
        cmd.env("DOCKER_BUILDKIT", "0")
            .current_dir(dir)
            .args(["build", "-q"])
            .args(extra)
            .arg(".");
        run_timed(&mut cmd, TIMEOUT).with_context(|| format!("{}: docker build", e.name))
    };
    let mut nocache = [Vec::new(), Vec::new()];
    let mut cached = [Vec::new(), Vec::new()];
    let mut two = [Vec::new(), Vec::new()];
    eprintln!(
        "builds: 1 warm-up + {} timed rounds per daemon, interleaved",
        args.rounds
    );
    for round in 0..args.rounds + 1 {
        for k in 0..2 {
            let e = (round + k) % 2;
            let eng = &engines[e];
            let t1 = build(eng, &steps, &["--no-cache", "-t", "bench-build"])?;
            let t2 = build(eng, &steps, &["-t", "bench-build"])?;
            let t3 = build(eng, &stages, &["--no-cache", "-t", "bench-stages"])?;
            if round > 0 {
                nocache[e].push(t1);
                cached[e].push(t2);
                two[e].push(t3);
            }
        }
    }
    println!("builds (median / p90 / min)");
    report(
        "build 3 RUN + 50 MiB COPY",
        engines,
        &nocache,
        "--no-cache, target <= 0.50x",
    );
    report(
        "same build, fully cached",
        engines,
        &cached,
        "target <= 0.50x",
    );
    report(
        "two independent stages",
        engines,
        &two,
        "--no-cache, target <= 0.50x",
    );
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

async fn measure_run(args: &Args, engines: &mut [Engine; 2]) -> Result<()> {
    // --- docker run --rm ------------------------------------------------------------------
    let mut run_times = [Vec::new(), Vec::new()];
    let mut api_times = [Vec::new(), Vec::new()];
    let mut step_times: [[Vec<Duration>; 4]; 2] = Default::default();
    eprintln!(
        "latency: {} warm-up + {} timed runs per daemon, interleaved",
        args.warmup, args.runs
    );
    for i in 0..args.warmup + args.runs {
        for k in 0..2 {
            let e = (i + k) % 2;
            let mut cmd = docker_cmd(args, &engines[e]);
            cmd.args(["run", "--rm", "--network", "none", IMAGE, "true"]);
            let t = run_timed(&mut cmd, TIMEOUT)
                .with_context(|| format!("{}: docker run --rm", engines[e].name))?;
            let t2 = engines[e]
                .api_lifecycle(&format!("lc-{i}"))
                .await
                .with_context(|| format!("{}: API lifecycle", engines[e].name))?;
            if i >= args.warmup {
                run_times[e].push(t);
                api_times[e].push(t2[4]);
                for (s, d) in t2[..4].iter().enumerate() {
                    step_times[e][s].push(*d);
                }
            }
        }
    }
    println!("latency (median / p90 / min)");
    for (title, times) in [
        ("docker run --rm true", &run_times),
        ("API create/start/wait/rm", &api_times),
    ] {
        for (e, t) in engines.iter().zip(times.iter()) {
            row(title, e.name, t);
        }
        let ratio = median_ratio(&times[0], &times[1]);
        println!(
            "{:<26} ratio berth/docker {ratio:.2}x (target <= 0.30x)",
            title
        );
    }
    println!("API lifecycle steps (median)");
    for (s, step) in ["create", "start", "wait", "delete"].iter().enumerate() {
        let b = percentile(&step_times[0][s], 50.0);
        let d = percentile(&step_times[1][s], 50.0);
        println!(
            "  {step:<8} berth {:>10}  docker {:>10}  ratio {:.2}x{}",
            ms(b),
            ms(d),
            b.as_secs_f64() / d.as_secs_f64(),
            if *step == "delete" {
                " (target <= 0.5x)"
            } else {
                ""
            }
        );
    }

    Ok(())
}

async fn measure_exec(args: &Args, engines: &mut [Engine; 2]) -> Result<()> {
    // --- docker exec ----------------------------------------------------------------------
    let mut exec_times = [Vec::new(), Vec::new()];
    for e in engines.iter_mut() {
        let id = e.create("execbox", &["sleep", "3600"]).await?;
        e.post(&format!("/containers/{id}/start"), None).await?;
    }
    for i in 0..args.warmup + args.runs {
        for k in 0..2 {
            let e = (i + k) % 2;
            let mut cmd = docker_cmd(args, &engines[e]);
            cmd.args(["exec", "execbox", "true"]);
            let t = run_timed(&mut cmd, TIMEOUT)
                .with_context(|| format!("{}: docker exec", engines[e].name))?;
            if i >= args.warmup {
                exec_times[e].push(t);
            }
        }
    }
    for (e, t) in engines.iter().zip(exec_times.iter()) {
        row("docker exec true", e.name, t);
    }
    println!(
        "{:<26} ratio berth/docker {:.2}x (target <= 0.5x)",
        "docker exec true",
        median_ratio(&exec_times[0], &exec_times[1])
    );
    for e in engines.iter_mut() {
        e.remove_all().await;
    }

    Ok(())
}

async fn measure_memory(args: &Args, engines: &mut [Engine; 2]) -> Result<()> {
    // --- memory ---------------------------------------------------------------------------
    if args.containers > 0 {
        let n = args.containers;
        tokio::time::sleep(Duration::from_secs(args.settle)).await;
        let before = [engines[0].daemons_memory()?, engines[1].daemons_memory()?];
        eprintln!("memory: starting {n} `sleep` containers on each daemon");
        for i in 0..n {
            for e in engines.iter_mut() {
                let id = e.create(&format!("mem-{i}"), &["sleep", "3600"]).await?;
                e.post(&format!("/containers/{id}/start"), None).await?;
            }
        }
        tokio::time::sleep(Duration::from_secs(args.settle)).await;
        println!();
        println!("memory with {n} running containers (RSS / PSS)");
        println!(
            "{:<8} {:>24} {:>24} {:>24} {:>22}",
            "engine", "daemons idle", "daemons with N", "all shims", "per container"
        );
        let mut per = [Memory::default(); 2];
        for (k, e) in engines.iter().enumerate() {
            let after = e.daemons_memory()?;
            let shims = e.shim_pids();
            if shims.len() != n {
                bail!(
                    "{}: expected {n} {} processes, found {}",
                    e.name,
                    e.shim_name,
                    shims.len()
                );
            }
            let shim_mem = memory_of_all(&shims)?;
            per[k] = Memory {
                rss_kib: (after.rss_kib.saturating_sub(before[k].rss_kib) + shim_mem.rss_kib)
                    / n as u64,
                pss_kib: (after.pss_kib.saturating_sub(before[k].pss_kib) + shim_mem.pss_kib)
                    / n as u64,
            };
            let pair = |m: Memory| format!("{} / {}", mib(m.rss_kib), mib(m.pss_kib));
            println!(
                "{:<8} {:>24} {:>24} {:>24} {:>22}",
                e.name,
                pair(before[k]),
                pair(after),
                pair(shim_mem),
                pair(per[k])
            );
        }
        println!(
            "ratio berth/docker per container: RSS {:.2}x, PSS {:.2}x (target <= 0.25x)",
            per[0].rss_kib as f64 / per[1].rss_kib as f64,
            per[0].pss_kib as f64 / per[1].pss_kib as f64,
        );
        for e in engines.iter_mut() {
            e.remove_all().await;
        }
    }

    Ok(())
}

async fn measure_logs(args: &Args, engines: &mut [Engine; 2]) -> Result<()> {
    // --- logs -----------------------------------------------------------------------------
    if args.log_mib > 0 {
        let bytes = args.log_mib * 1024 * 1024;
        // 100-byte lines (99 characters and a newline), as typical log lines.
        let script = format!(
            "yes 012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678 | head -c {bytes}"
        );
        println!();
        println!("logs: {} MiB of 100-byte lines on stdout", args.log_mib);
        let mut write_rate = [0.0; 2];
        let mut read_rate = [0.0; 2];
        for (k, e) in engines.iter_mut().enumerate() {
            let id = e.create("logs", &["sh", "-c", &script]).await?;
            let start = Instant::now();
            e.post(&format!("/containers/{id}/start"), None).await?;
            e.post(&format!("/containers/{id}/wait"), None).await?;
            let write = start.elapsed();
            let start = Instant::now();
            let body = e
                .get(&format!("/containers/{id}/logs?stdout=1&stderr=1"))
                .await?;
            let read = start.elapsed();
            // Multiplexed framing: 8 bytes of header per frame.
            let payload = demux_len(&body);
            if payload < bytes {
                bail!("{}: logs gave back {payload} of {bytes} bytes", e.name);
            }
            write_rate[k] = bytes as f64 / 1048576.0 / write.as_secs_f64();
            read_rate[k] = bytes as f64 / 1048576.0 / read.as_secs_f64();
            println!(
                "{:<8} write (start → exit) {:>10} = {:>7.1} MiB/s   read back {:>10} = {:>7.1} MiB/s",
                e.name,
                ms(write),
                write_rate[k],
                ms(read),
                read_rate[k]
            );
            e.remove(&id).await?;
        }
        println!(
            "ratio berth/docker throughput: write {:.2}x, read {:.2}x (target >= 2x)",
            write_rate[0] / write_rate[1],
            read_rate[0] / read_rate[1]
        );
        // logs -f from the start, and an attached docker run: every byte must arrive.
        let mut follow_rate = [0.0; 2];
        let mut attach_rate = [0.0; 2];
        for (k, e) in engines.iter_mut().enumerate() {
            let name = format!("follow-{k}");
            let out = e.dir.join("follow.out");
            let mut create = docker_cmd(args, e);
            create.args(["create", "--name", &name, "--network", "none"]);
            create.args([IMAGE, "sh", "-c", &script]);
            run_timed(&mut create, TIMEOUT)?;
            let mut start = docker_cmd(args, e);
            start.args(["start", &name]);
            let t0 = Instant::now();
            run_timed(&mut start, TIMEOUT)?;
            let mut follow = docker_cmd(args, e);
            follow.args(["logs", "-f", &name]);
            run_timed_to(&mut follow, TIMEOUT, std::fs::File::create(&out)?)?;
            let took = t0.elapsed();
            let got = std::fs::metadata(&out)?.len();
            if got != bytes {
                bail!("{}: logs -f delivered {got} of {bytes} bytes", e.name);
            }
            follow_rate[k] = bytes as f64 / 1048576.0 / took.as_secs_f64();
            let mut run = docker_cmd(args, e);
            run.args([
                "run",
                "--rm",
                "--network",
                "none",
                IMAGE,
                "sh",
                "-c",
                &script,
            ]);
            let took = run_timed_to(&mut run, TIMEOUT, std::fs::File::create(&out)?)?;
            let got = std::fs::metadata(&out)?.len();
            if got != bytes {
                bail!("{}: docker run delivered {got} of {bytes} bytes", e.name);
            }
            attach_rate[k] = bytes as f64 / 1048576.0 / took.as_secs_f64();
            println!(
                "{:<8} logs -f from the start {:>7.1} MiB/s   docker run attached {:>7.1} MiB/s",
                e.name, follow_rate[k], attach_rate[k]
            );
            let _ = std::fs::remove_file(&out);
        }
        println!(
            "ratio berth/docker: logs -f {:.2}x, attached run {:.2}x (target >= 2x)",
            follow_rate[0] / follow_rate[1],
            attach_rate[0] / attach_rate[1]
        );
    }
    Ok(())
}

/// Runs a docker command against `e` that must succeed; its duration.
fn docker_timed(args: &Args, e: &Engine, argv: &[&str]) -> Result<Duration> {
    let mut cmd = docker_cmd(args, e);
    cmd.args(argv);
    run_timed(&mut cmd, TIMEOUT).with_context(|| format!("{}: docker {argv:?}", e.name))
}

/// Prints one timed row per engine and berth's ratio to docker (lower is faster).
fn report(title: &str, engines: &[Engine; 2], times: &[Vec<Duration>; 2], target: &str) {
    for (e, t) in engines.iter().zip(times.iter()) {
        row(title, e.name, t);
    }
    let r = median_ratio(&times[0], &times[1]);
    println!(
        "{title:<26} berth/docker {r:.2}x, docker/berth {:.2}x ({target})",
        1.0 / r
    );
}

/// One row of timings: median, p90 and min.
fn row(title: &str, name: &str, t: &[Duration]) {
    println!(
        "{:<26} {:<8} {:>10} {:>10} {:>10}",
        title,
        name,
        ms(percentile(t, 50.0)),
        ms(percentile(t, 90.0)),
        ms(*t.iter().min().unwrap_or(&Duration::ZERO)),
    );
}

/// The ratio of two medians.
fn median_ratio(a: &[Duration], b: &[Duration]) -> f64 {
    percentile(a, 50.0).as_secs_f64() / percentile(b, 50.0).as_secs_f64()
}

/// `docker <argv>` that must succeed; its stdout.
fn docker_out(args: &Args, e: &Engine, argv: &[&str]) -> Result<String> {
    let out = docker_cmd(args, e)
        .args(argv)
        .output()
        .with_context(|| format!("{}: docker {argv:?}", e.name))?;
    if !out.status.success() {
        bail!(
            "{}: docker {argv:?}: {}",
            e.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// CPU time (user + system, in 1/100 s ticks) of every docker-proxy process so far.
fn proxy_cpu_ticks() -> u64 {
    pids_matching(|c| {
        c.split(' ')
            .next()
            .unwrap_or_default()
            .ends_with("docker-proxy")
    })
    .into_iter()
    .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
    .filter_map(|stat| {
        // Fields after the command's closing parenthesis: utime is the 12th, stime the 13th.
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    })
    .sum()
}

/// busybox `time`'s "real 0m 1.23s" in seconds.
fn busybox_real(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.trim_start().starts_with("real"))?;
    let v = line.trim_start().trim_start_matches("real").trim();
    let (m, s) = v.split_once('m')?;
    Some(
        m.trim().parse::<f64>().ok()? * 60.0
            + s.trim().trim_end_matches('s').parse::<f64>().ok()?,
    )
}

/// The median of a list of measurements (0 when empty).
fn median_f64(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// `docker <argv> sh -c "time sh -c '<script>'"`, which must succeed: the seconds busybox's
/// `time` reports from inside the container.
fn busybox_timed(args: &Args, e: &Engine, argv: &[&str], script: &str) -> Result<f64> {
    let out = docker_cmd(args, e)
        .args(argv)
        .args(["sh", "-c"])
        .arg(format!("time sh -c '{script}'"))
        .output()?;
    if !out.status.success() {
        bail!(
            "{}: {script}: {}",
            e.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    busybox_real(&String::from_utf8_lossy(&out.stderr)).context("no time from busybox")
}

/// Throughput rows (higher is better): median MB/s per engine and berth's ratio.
fn report_rate(
    title: &str,
    engines: &[Engine; 2],
    rates: &[Vec<f64>; 2],
    unit: &str,
    target: &str,
) {
    let med = median_f64;
    for (e, r) in engines.iter().zip(rates.iter()) {
        println!("{title:<34} {:<8} {:>10.1} {unit}", e.name, med(r));
    }
    let ratio = med(&rates[0]) / med(&rates[1]).max(f64::MIN_POSITIVE);
    println!("{title:<34} berth/docker {ratio:.2}x ({target})");
}

/// Networking: `run --rm` on the default bridge, a published port's throughput from the
/// host through 127.0.0.1 (iperf3, and small requests to a busybox httpd with wrk),
/// container to container on a user network (iperf3), and name lookups through the
/// embedded DNS.
fn measure_net(args: &Args, engines: &[Engine; 2]) -> Result<()> {
    let mut times = [Vec::new(), Vec::new()];
    for i in 0..args.warmup + args.runs {
        for k in 0..2 {
            let e = (i + k) % 2;
            let t = docker_timed(args, &engines[e], &["run", "--rm", IMAGE, "true"])?;
            if i >= args.warmup {
                times[e].push(t);
            }
        }
    }
    println!("networking (median / p90 / min)");
    report(
        "run --rm (default bridge)",
        engines,
        &times,
        "target <= 0.40x",
    );

    // iperf3 (the host's binary, with the host's /usr bound read-only) in the containers.
    let iperf_mounts = [
        "-v",
        "/usr:/usr:ro",
        "-v",
        "/usr/lib:/lib:ro",
        "-v",
        "/usr/lib64:/lib64:ro",
    ];
    let iperf_gbps = |out: &[u8]| -> Option<f64> {
        let v: serde_json::Value = serde_json::from_slice(out).ok()?;
        Some(v["end"]["sum_received"]["bits_per_second"].as_f64()? / 1e9)
    };
    // Runs `cmd` until iperf3 reports (the server may still be starting): Gbit/s.
    let iperf = |what: &str, mut cmd: Command| -> Result<f64> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let out = cmd.output()?;
            if let Some(g) = iperf_gbps(&out.stdout).filter(|_| out.status.success()) {
                return Ok(g);
            }
            if Instant::now() > deadline {
                bail!(
                    "iperf3 {what} never ran: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let mut ports = Vec::new();
    for e in engines {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let web = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let publish = format!("{port}:5201");
        let mut argv = vec!["run", "-d", "--name", "netiperf", "-p", &publish];
        argv.extend(iperf_mounts);
        argv.extend([IMAGE, "/usr/bin/iperf3", "-s"]);
        docker_out(args, e, &argv)?;
        docker_out(
            args,
            e,
            &[
                "run",
                "-d",
                "--name",
                "netweb",
                "-p",
                &format!("{web}:80"),
                IMAGE,
                "sh",
                "-c",
                "mkdir /www && echo ok > /www/index.html && exec httpd -f -p 80 -h /www",
            ],
        )?;
        ports.push((port, web));
    }
    // One stream and four; and the CPU time the path costs outside the kernel's softirqs:
    // docker-proxy's (berth has no process on the path).
    let mut rates = [Vec::new(), Vec::new()];
    let mut rates4 = [Vec::new(), Vec::new()];
    let mut proxy_cpu = Vec::new();
    for _ in 0..args.rounds {
        for (k, (port, _)) in ports.iter().enumerate() {
            let before = proxy_cpu_ticks();
            let mut cmd = Command::new("iperf3");
            cmd.args(["-c", "127.0.0.1", "-p", &port.to_string(), "-t", "3", "-J"]);
            rates[k].push(iperf("through a published port", cmd)?);
            if k == 1 {
                // Ticks are 1/100 s; the run lasts 3 s: percent of one core.
                proxy_cpu.push((proxy_cpu_ticks() - before) as f64 / 3.0);
            }
            let mut cmd = Command::new("iperf3");
            cmd.args([
                "-c",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                "3",
                "-P",
                "4",
                "-J",
            ]);
            rates4[k].push(iperf("through a published port, 4 streams", cmd)?);
        }
    }
    report_rate(
        "published port 127.0.0.1, iperf3",
        engines,
        &rates,
        "Gbit/s",
        "target >= 2x",
    );
    report_rate(
        "published port 127.0.0.1, iperf3 -P 4",
        engines,
        &rates4,
        "Gbit/s",
        "target >= 2x",
    );
    println!(
        "{:<34} docker-proxy {:>8.0}% of a core (median, one stream); berth: no process",
        "published port 127.0.0.1, CPU",
        median_f64(&proxy_cpu)
    );
    if Path::new("/usr/bin/wrk").exists() {
        let mut rps = [Vec::new(), Vec::new()];
        for _ in 0..3 {
            for (k, (_, web)) in ports.iter().enumerate() {
                let out = Command::new("wrk")
                    .args([
                        "-t2",
                        "-c16",
                        "-d3s",
                        &format!("http://127.0.0.1:{web}/index.html"),
                    ])
                    .output()?;
                let text = String::from_utf8_lossy(&out.stdout);
                let v = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Requests/sec:"))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .unwrap_or(0.0);
                rps[k].push(v);
            }
        }
        report_rate(
            "published port 127.0.0.1, wrk",
            engines,
            &rps,
            "req/s",
            "target >= 2x",
        );
    }

    // Container to container on one user network (iperf3 by name), and lookups through the
    // embedded DNS.
    for e in engines {
        docker_out(args, e, &["network", "create", "benchnet"])?;
        // netcli (busybox only) looks names up; netipc runs the iperf3 client.
        for (name, cmd, mounts) in [
            ("netsrv", ["/usr/bin/iperf3", "-s"], true),
            ("netipc", ["sleep", "3600"], true),
            ("netcli", ["sleep", "3600"], false),
        ] {
            let mut argv = vec!["run", "-d", "--name", name, "--network", "benchnet"];
            if mounts {
                argv.extend(iperf_mounts);
            }
            argv.push(IMAGE);
            argv.extend(cmd);
            docker_out(args, e, &argv)?;
        }
    }
    let mut c2c = [Vec::new(), Vec::new()];
    let mut dns = [Vec::new(), Vec::new()];
    let lookups = 500;
    for _ in 0..args.rounds {
        for (k, e) in engines.iter().enumerate() {
            let mut cmd = docker_cmd(args, e);
            cmd.args([
                "exec",
                "netipc",
                "/usr/bin/iperf3",
                "-c",
                "netsrv",
                "-t",
                "3",
                "-J",
            ]);
            c2c[k].push(iperf("between containers", cmd)?);
            let script = format!(
                "i=0; while [ $i -lt {lookups} ]; do nslookup netsrv >/dev/null || exit 1; i=$((i+1)); done"
            );
            let secs = busybox_timed(args, e, &["exec", "netcli"], &script)?;
            dns[k].push(Duration::from_secs_f64(secs / lookups as f64));
        }
    }
    report_rate(
        "container to container, iperf3",
        engines,
        &c2c,
        "Gbit/s",
        "target >= 1.0x",
    );
    report(
        "DNS lookup (nslookup, each)",
        engines,
        &dns,
        "target <= 1.0x",
    );
    Ok(())
}

/// Volumes (issue 13): `docker run --rm -v vol:/data`; in a named volume and, for reference,
/// in a host directory bound with `-v /dir:/data`: a 1 GiB sequential write (fsync'd) and read
/// (page cache dropped first) with dd, and 10,000 small files made by the shell.
fn measure_vol(args: &Args, engines: &[Engine; 2]) -> Result<()> {
    for e in engines {
        docker_out(args, e, &["volume", "create", "benchvol"])?;
    }
    let mut times = [Vec::new(), Vec::new()];
    for i in 0..args.warmup + args.runs {
        for k in 0..2 {
            let e = (i + k) % 2;
            let t = docker_timed(
                args,
                &engines[e],
                &[
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "-v",
                    "benchvol:/data",
                    IMAGE,
                    "true",
                ],
            )?;
            if i >= args.warmup {
                times[e].push(t);
            }
        }
    }
    println!("volumes (median / p90 / min)");
    report("run --rm -v vol:/data", engines, &times, "target <= 0.40x");

    let host_dir = engines[0]
        .dir
        .parent()
        .unwrap_or(Path::new("/tmp"))
        .join("vol-host");
    let drop_caches = || {
        let _ = Command::new("sync").status();
        let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    };
    // (label, engine, mount spec)
    let mut cases: Vec<(String, usize, String)> = Vec::new();
    for (k, e) in engines.iter().enumerate() {
        cases.push((format!("{} volume", e.name), k, "benchvol:/data".into()));
    }
    cases.push((
        "host dir".into(),
        0,
        format!("{}:/data", host_dir.display()),
    ));
    let mut write: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut read: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut small: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 0..args.rounds {
        // Each round in another order: the disk's state favours no case.
        for step in 0..cases.len() {
            let c = (step + round) % cases.len();
            let (_, k, spec) = &cases[c];
            let _ = std::fs::create_dir_all(&host_dir);
            let e = &engines[*k];
            let argv = ["run", "--rm", "--network", "none", "-v", spec, IMAGE];
            let run = |script: &str| busybox_timed(args, e, &argv, script);
            let w = run("dd if=/dev/zero of=/data/big bs=1M count=1024 conv=fsync 2>/dev/null")?;
            drop_caches();
            let r = run("dd if=/data/big of=/dev/null bs=1M 2>/dev/null")?;
            let f = run(
                "mkdir -p /data/small && cd /data/small && i=0; while [ $i -lt 10000 ]; do echo $i > f$i; i=$((i+1)); done; sync",
            )?;
            run("rm -rf /data/big /data/small")?;
            write[c].push(1024.0 / w.max(0.001));
            read[c].push(1024.0 / r.max(0.001));
            small[c].push(f);
        }
    }
    let med = median_f64;
    for (what, data, unit) in [
        ("1 GiB write (fsync)", &write, "MiB/s"),
        ("1 GiB read (cold)", &read, "MiB/s"),
        ("10,000 small files", &small, "s"),
    ] {
        for (c, (label, _, _)) in cases.iter().enumerate() {
            println!("{what:<26} {label:<14} {:>10.2} {unit}", med(&data[c]));
        }
        let (b, d, h) = (med(&data[0]), med(&data[1]), med(&data[2]));
        // Rates: higher is better; the small files are a time: lower is better.
        let (vs_docker, vs_host) = if unit == "s" {
            (d / b.max(f64::MIN_POSITIVE), h / b.max(f64::MIN_POSITIVE))
        } else {
            (b / d.max(f64::MIN_POSITIVE), b / h.max(f64::MIN_POSITIVE))
        };
        println!(
            "{what:<26} berth vs docker {vs_docker:.2}x, vs host dir {vs_host:.2}x (targets >= 1.0x, >= 0.95x)"
        );
    }
    let _ = std::fs::remove_dir_all(&host_dir);
    Ok(())
}

/// `docker cp` of a directory of `--cp-files` files into and out of a running container.
fn measure_cp(args: &Args, engines: &[Engine; 2]) -> Result<()> {
    let data = engines[0]
        .dir
        .parent()
        .unwrap_or(Path::new("/tmp"))
        .join("cp-data");
    std::fs::create_dir_all(&data)?;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..args.cp_files {
        let mut buf = vec![0u8; args.cp_kib * 1024];
        for chunk in buf.chunks_mut(8) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let n = chunk.len();
            chunk.copy_from_slice(&seed.to_le_bytes()[..n]);
        }
        std::fs::write(data.join(format!("f{i:04}")), buf)?;
    }
    let total = (args.cp_files * args.cp_kib) as f64 / 1024.0;
    eprintln!(
        "docker cp: {} files, {total:.0} MiB, {} rounds",
        args.cp_files, args.rounds
    );
    for e in engines {
        docker_timed(
            args,
            e,
            &[
                "run",
                "-d",
                "--name",
                "cpbox",
                "--network",
                "none",
                IMAGE,
                "sleep",
                "3600",
            ],
        )?;
    }
    let mut into = [Vec::new(), Vec::new()];
    let mut out_of = [Vec::new(), Vec::new()];
    // The same data as one tar stream (`docker cp - C:DIR`, `docker cp C:DIR -`): the CLI
    // then reads or writes no files, which leaves the engine's share.
    let tarball = data.with_extension("tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&data)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()?;
    if !status.success() {
        bail!("tar of the cp data set failed");
    }
    let mut stream_in = [Vec::new(), Vec::new()];
    let mut stream_out = [Vec::new(), Vec::new()];
    for i in 0..args.rounds + 1 {
        for k in 0..2 {
            let e = &engines[(i + k) % 2];
            docker_timed(
                args,
                e,
                &["exec", "cpbox", "mkdir", "-p", &format!("/s-{i}")],
            )?;
            let mut put = docker_cmd(args, e);
            put.args(["cp", "-", &format!("cpbox:/s-{i}")]);
            let t_in = run_timed_from(&mut put, TIMEOUT, std::fs::File::open(&tarball)?)?;
            let mut get = docker_cmd(args, e);
            get.args(["cp", &format!("cpbox:/s-{i}"), "-"]);
            let t_out = run_timed_to(&mut get, TIMEOUT, std::fs::File::create("/dev/null")?)?;
            docker_timed(args, e, &["exec", "cpbox", "rm", "-rf", &format!("/s-{i}")])?;
            if i > 0 {
                stream_in[(i + k) % 2].push(t_in);
                stream_out[(i + k) % 2].push(t_out);
            }
        }
    }
    for i in 0..args.rounds + 1 {
        for k in 0..2 {
            let e = &engines[(i + k) % 2];
            let dest = format!("cpbox:/in-{i}");
            let t_in = docker_timed(args, e, &["cp", data.to_str().unwrap_or_default(), &dest])?;
            let back = e.dir.join(format!("out-{i}"));
            let t_out = docker_timed(
                args,
                e,
                &[
                    "cp",
                    &format!("cpbox:/in-{i}"),
                    back.to_str().unwrap_or_default(),
                ],
            )?;
            let n = std::fs::read_dir(&back)?.count();
            if n != args.cp_files {
                bail!(
                    "{}: docker cp out gave {n} of {} files",
                    e.name,
                    args.cp_files
                );
            }
            std::fs::remove_dir_all(&back)?;
            docker_timed(
                args,
                e,
                &["exec", "cpbox", "rm", "-rf", &format!("/in-{i}")],
            )?;
            if i > 0 {
                into[(i + k) % 2].push(t_in);
                out_of[(i + k) % 2].push(t_out);
            }
        }
    }
    println!(
        "docker cp of {total:.0} MiB in {} files (median / p90 / min)",
        args.cp_files
    );
    report(
        "cp into a container",
        engines,
        &into,
        "target docker/berth >= 1.5x",
    );
    report(
        "cp out of a container",
        engines,
        &out_of,
        "target docker/berth >= 1.5x",
    );
    report(
        "cp - (tar on stdin) in",
        engines,
        &stream_in,
        "the engine's share",
    );
    report(
        "cp - (tar to stdout) out",
        engines,
        &stream_out,
        "the engine's share",
    );
    let _ = std::fs::remove_file(&tarball);
    for e in engines {
        docker_timed(args, e, &["rm", "-f", "cpbox"])?;
    }
    std::fs::remove_dir_all(&data)?;
    Ok(())
}

/// `docker commit` of a container that wrote `--commit-mib` MiB.
fn measure_commit(args: &Args, engines: &[Engine; 2]) -> Result<()> {
    let script = format!(
        "i=0; while [ $i -lt {} ]; do head -c 1048576 /dev/urandom > /data-$i; i=$((i+1)); done; sleep 3600",
        args.commit_mib
    );
    let mut times = [Vec::new(), Vec::new()];
    for i in 0..args.rounds + 1 {
        for k in 0..2 {
            let e = &engines[(i + k) % 2];
            let name = format!("commitbox-{i}");
            docker_timed(
                args,
                e,
                &[
                    "run",
                    "-d",
                    "--name",
                    &name,
                    "--network",
                    "none",
                    IMAGE,
                    "sh",
                    "-c",
                    &script,
                ],
            )?;
            // Wait until the data is written.
            let deadline = Instant::now() + TIMEOUT;
            loop {
                let mut c = docker_cmd(args, e);
                c.args([
                    "exec",
                    &name,
                    "sh",
                    "-c",
                    &format!("test -f /data-{}", args.commit_mib - 1),
                ]);
                if c.status()?.success() || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(Duration::from_millis(300));
            let t = docker_timed(args, e, &["commit", &name, &format!("committed:{i}")])?;
            docker_timed(args, e, &["rm", "-f", &name])?;
            docker_timed(args, e, &["rmi", &format!("committed:{i}")])?;
            if i > 0 {
                times[(i + k) % 2].push(t);
            }
        }
    }
    println!(
        "docker commit of {} MiB of changes (median / p90 / min)",
        args.commit_mib
    );
    report(
        "docker commit",
        engines,
        &times,
        "target docker/berth >= 1.5x",
    );
    Ok(())
}

/// berth's `docker run --rm` with the built-in allow-list seccomp profile against the same
/// run with the deny-list profile berth had before (given as a Docker-format profile).
fn measure_seccomp(args: &Args, berth: &Engine) -> Result<()> {
    let old = berth.dir.join("old-deny-list.json");
    let denied = [
        "acct",
        "add_key",
        "bpf",
        "clock_adjtime",
        "clock_settime",
        "create_module",
        "delete_module",
        "finit_module",
        "get_kernel_syms",
        "get_mempolicy",
        "init_module",
        "ioperm",
        "iopl",
        "kcmp",
        "kexec_file_load",
        "kexec_load",
        "keyctl",
        "lookup_dcookie",
        "mbind",
        "move_pages",
        "nfsservctl",
        "perf_event_open",
        "query_module",
        "quotactl",
        "reboot",
        "request_key",
        "set_mempolicy",
        "settimeofday",
        "swapon",
        "swapoff",
        "sysfs",
        "_sysctl",
        "uselib",
        "userfaultfd",
        "ustat",
        "mount",
        "umount2",
        "unshare",
        "setns",
        "pivot_root",
        "name_to_handle_at",
        "open_by_handle_at",
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
    ];
    let profile = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": denied.to_vec(), "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    });
    std::fs::write(&old, serde_json::to_vec(&profile)?)?;
    let old_opt = format!("seccomp={}", old.display());
    let mut times = [Vec::new(), Vec::new()];
    for i in 0..args.warmup + args.runs {
        for k in 0..2 {
            let which = (i + k) % 2;
            let mut argv = vec!["run", "--rm", "--network", "none"];
            if which == 1 {
                argv.extend(["--security-opt", old_opt.as_str()]);
            }
            argv.extend([IMAGE, "true"]);
            let t = docker_timed(args, berth, &argv)?;
            if i >= args.warmup {
                times[which].push(t);
            }
        }
    }
    println!("berth docker run --rm true by seccomp profile (median / p90 / min)");
    for (name, t) in [
        "allow-list (Docker's, built in)",
        "deny-list (before issue 11)",
    ]
    .iter()
    .zip(times.iter())
    {
        println!(
            "{name:<34} {:>10} {:>10} {:>10}",
            ms(percentile(t, 50.0)),
            ms(percentile(t, 90.0)),
            ms(*t.iter().min().unwrap_or(&Duration::ZERO)),
        );
    }
    println!(
        "ratio allow-list/deny-list {:.2}x (target <= 1.0x)",
        median_ratio(&times[0], &times[1])
    );
    Ok(())
}

/// The docker CLI pointed at `e` (its own config dir).
fn docker_cmd(args: &Args, e: &Engine) -> Command {
    let mut cmd = Command::new(&args.docker);
    cmd.env("DOCKER_CONFIG", e.dir.join("docker-config"))
        .arg("-H")
        .arg(e.host());
    cmd
}

/// Payload bytes in a Docker multiplexed stream (8-byte headers with big-endian lengths).
fn demux_len(mut body: &[u8]) -> u64 {
    let mut total = 0u64;
    while body.len() >= 8 {
        let len = u32::from_be_bytes([body[4], body[5], body[6], body[7]]) as usize;
        total += len.min(body.len() - 8) as u64;
        body = &body[(8 + len).min(body.len())..];
    }
    total
}

impl Engine {
    fn berth(base: &Path, berthd: &Path) -> Result<Engine> {
        let dir = base.join("berth");
        std::fs::create_dir_all(&dir)?;
        let exec_root = dir.join("exec");
        let mut cmd = Command::new(berthd);
        cmd.arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(&exec_root)
            .arg("-H")
            .arg(format!("unix://{}", dir.join("api.sock").display()))
            .arg("--pidfile")
            .arg(dir.join("berthd.pid"))
            .args(["--bridge", BENCH_BRIDGE, "--bip", "172.31.251.1/24"])
            .args(["--nft-table", BENCH_TABLE])
            .args(["--log-level", "warn"]);
        let mut daemon = Daemon::spawn("berthd", cmd, dir.join("berthd.log"))?;
        daemon.wait_for_unix_socket(&dir.join("api.sock"), TIMEOUT)?;
        let exec = exec_root.to_string_lossy().into_owned();
        Ok(Engine {
            name: "berth",
            dir,
            daemon,
            helper_name: "berth-supervisor",
            shim_name: "berth-shim",
            exec_root: exec,
            conn: None,
        })
    }

    /// dockerd without iptables rules (nothing of the host's firewall is touched); with a
    /// default bridge of its own only for the net section (its published ports then go
    /// through docker-proxy, its userland proxy).
    fn docker(base: &Path, dockerd: &Path, bridge: bool) -> Result<Engine> {
        let dir = base.join("docker");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("daemon.json"), "{}")?;
        let exec_root = dir.join("exec");
        let mut cmd = Command::new(dockerd);
        cmd.arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(&exec_root)
            .arg("-H")
            .arg(format!("unix://{}", dir.join("api.sock").display()))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .args(if bridge {
                ["--bip", "172.31.250.1/24"]
            } else {
                ["--bridge", "none"]
            })
            .args(["--iptables=false", "--ip-masq=false"])
            .args(["--log-level", "warn"]);
        let mut daemon = Daemon::spawn("dockerd", cmd, dir.join("dockerd.log"))?;
        daemon.wait_for_unix_socket(&dir.join("api.sock"), TIMEOUT)?;
        let exec = exec_root.to_string_lossy().into_owned();
        Ok(Engine {
            name: "docker",
            dir,
            daemon,
            helper_name: "containerd",
            shim_name: "containerd-shim-runc-v2",
            exec_root: exec,
            conn: None,
        })
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.join("api.sock").display())
    }

    /// Pids of the daemon and its helper (supervisor or containerd).
    fn daemon_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.daemon.pid().into_iter().collect();
        pids.extend(self.pids_of(self.helper_name));
        pids
    }

    fn daemons_memory(&self) -> Result<Memory> {
        let pids = self.daemon_pids();
        if pids.len() != 2 {
            bail!(
                "{}: expected the daemon and its helper, found pids {pids:?}",
                self.name
            );
        }
        Ok(memory_of(pids[0])? + memory_of(pids[1])?)
    }

    fn shim_pids(&self) -> Vec<u32> {
        self.pids_of(self.shim_name)
    }

    /// Processes running program `name` with this engine's exec root on their command line.
    fn pids_of(&self, name: &str) -> Vec<u32> {
        pids_matching(|c| {
            let argv0 = c.split(' ').next().unwrap_or_default();
            argv0.rsplit('/').next() == Some(name) && c.contains(&self.exec_root)
        })
    }

    async fn connect(&mut self) -> Result<()> {
        let stream = tokio::net::UnixStream::connect(self.dir.join("api.sock")).await?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        self.conn = Some(send);
        Ok(())
    }

    async fn request(&mut self, method: &str, path: &str, body: Option<Bytes>) -> Result<Bytes> {
        let json = body.is_some();
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("http://localhost/v1.41{path}"))
            .header("Host", "localhost")
            .header(
                "Content-Type",
                if json {
                    "application/json"
                } else {
                    "text/plain"
                },
            )
            .body(Full::new(body.unwrap_or_default()))?;
        if self.conn.as_ref().is_none_or(|c| c.is_closed()) {
            self.connect().await?;
        }
        let conn = self.conn.as_mut().context("no connection")?;
        conn.ready().await?;
        let resp = conn.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!(
                "{}: {method} {path}: {status}: {}",
                self.name,
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }

    async fn post(&mut self, path: &str, json: Option<serde_json::Value>) -> Result<Bytes> {
        let body = json.map(|j| Bytes::from(j.to_string()));
        self.request("POST", path, body).await
    }

    async fn get(&mut self, path: &str) -> Result<Bytes> {
        self.request("GET", path, None).await
    }

    async fn import(&mut self, tarball: &[u8]) -> Result<()> {
        let req = hyper::Request::builder()
            .method("POST")
            .uri("http://localhost/v1.41/images/create?fromSrc=-&repo=benchbox&tag=latest")
            .header("Host", "localhost")
            .header("Content-Type", "application/x-tar")
            .body(Full::new(Bytes::copy_from_slice(tarball)))?;
        let conn = self.conn.as_mut().context("no connection")?;
        let resp = conn.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&body);
        if !status.is_success() || text.contains("\"error") {
            bail!("import: {status}: {text}");
        }
        Ok(())
    }

    async fn create(&mut self, name: &str, cmd: &[&str]) -> Result<String> {
        let body = serde_json::json!({
            "Image": IMAGE,
            "Cmd": cmd,
            "HostConfig": {
                "NetworkMode": "none",
                "LogConfig": {"Type": "json-file", "Config": {"max-size": "1g"}},
            },
        });
        let resp = self
            .post(&format!("/containers/create?name={name}"), Some(body))
            .await?;
        let v: serde_json::Value = serde_json::from_slice(&resp)?;
        v["Id"]
            .as_str()
            .map(str::to_string)
            .context("create: no Id in response")
    }

    async fn remove(&mut self, id: &str) -> Result<()> {
        self.request("DELETE", &format!("/containers/{id}?force=1"), None)
            .await?;
        Ok(())
    }

    /// create + start + wait + remove of a `true` container: each step's time, then the
    /// total.
    async fn api_lifecycle(&mut self, name: &str) -> Result<[Duration; 5]> {
        let start = Instant::now();
        let id = self.create(name, &["true"]).await?;
        let created = start.elapsed();
        self.post(&format!("/containers/{id}/start"), None).await?;
        let started = start.elapsed();
        let wait = self.post(&format!("/containers/{id}/wait"), None).await?;
        let waited = start.elapsed();
        self.remove(&id).await?;
        let elapsed = start.elapsed();
        let v: serde_json::Value = serde_json::from_slice(&wait)?;
        if v["StatusCode"] != 0 {
            bail!("{}: `true` exited with {}", self.name, v["StatusCode"]);
        }
        Ok([
            created,
            started - created,
            waited - started,
            elapsed - waited,
            elapsed,
        ])
    }

    /// Force-removes every container of this daemon (best effort).
    async fn remove_all(&mut self) {
        let Ok(list) = self.get("/containers/json?all=1").await else {
            return;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&list) else {
            return;
        };
        for c in v.as_array().into_iter().flatten() {
            if let Some(id) = c["Id"].as_str() {
                let _ = self.remove(id).await;
            }
        }
    }
}
