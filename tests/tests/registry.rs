//! Images through a real registry with a real berthd: Debian's `docker-registry` on
//! 127.0.0.1, berthd in a temp dir (`berth_tests::cli::CliEnv`), driven by `berth`, by the
//! real docker CLI, and over raw HTTP for Docker's error shapes.
//!
//! Build first: `cargo build --workspace --bins`, then
//! `sudo -E cargo test -p berth-tests --test registry -- --include-ignored`.

use std::path::{Path, PathBuf};

use berth_tests::cli::{CliEnv, IMAGE};
use berth_tests::registry::{
    docker_archive_layers, layer_from_entries, Entry, Registry, RegistryAuth,
};
use berth_tests::{skip_unless_root, unique_id, Cmd, Output};

/// The docker CLI these tests drive (docker 28 on the test machines).
const DOCKER: &str = "/usr/local/bin/docker";

fn have_registry() -> bool {
    let ok = Path::new(berth_tests::registry::REGISTRY_BIN).is_file();
    if !ok {
        eprintln!("skipping: no docker-registry on this machine (apt-get install docker-registry)");
    }
    ok
}

/// `docker <args>` against the environment's berthd, with its own config dir.
fn docker(env: &CliEnv, config: &Path, args: &[&str], stdin: &str) -> Output {
    Cmd::new(DOCKER)
        .env("DOCKER_HOST", env.host())
        .env("DOCKER_CONFIG", config)
        .args(args)
        .stdin(stdin.to_string())
        .output()
        .unwrap_or_else(|e| panic!("docker {args:?}: {e:#}"))
}

/// The daemon's unix socket path.
fn socket(env: &CliEnv) -> PathBuf {
    PathBuf::from(
        env.host()
            .strip_prefix("unix://")
            .expect("the test daemon listens on a unix socket"),
    )
}

/// An HTTP request to berthd with curl: (status, body).
fn http(env: &CliEnv, method: &str, path: &str, headers: &[&str]) -> (u16, String) {
    let mut cmd = Cmd::new("curl")
        .args(["-sS", "--unix-socket"])
        .arg(socket(env))
        .args(["-X", method, "-w", "\n%{http_code}"]);
    for h in headers {
        cmd = cmd.args(["-H", h]);
    }
    let out = cmd
        .arg(format!("http://localhost/v1.45{path}"))
        .output()
        .expect("run curl");
    assert!(out.success(), "curl {path}: {out}");
    let (body, code) = out.stdout.rsplit_once('\n').unwrap_or(("", ""));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn docker_cli_logs_in_pushes_and_pulls_against_berthd() {
    skip_unless_root!();
    if !Path::new(DOCKER).is_file() {
        eprintln!("skipping: {DOCKER} is not installed (the real docker CLI is what this tests)");
        return;
    }
    if !have_registry() || !Path::new("/usr/bin/htpasswd").is_file() {
        eprintln!("skipping: needs htpasswd (apache2-utils)");
        return;
    }
    let Some(env) = CliEnv::start() else { return };
    let registry = Registry::start_with(RegistryAuth::Basic {
        user: "bob".into(),
        password: "hunter2".into(),
    })
    .unwrap();
    let host = registry.host();
    let config = env.dir().join("docker-cli-config");
    std::fs::create_dir_all(&config).unwrap();

    let out = docker(
        &env,
        &config,
        &["login", "-u", "bob", "--password-stdin", &host],
        "wrong\n",
    );
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("Error response from daemon"), "{out}");
    let out = docker(
        &env,
        &config,
        &["login", "-u", "bob", "--password-stdin", &host],
        "hunter2\n",
    );
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.stdout.contains("Login Succeeded"), "{out}");

    let reference = format!("{host}/docker-cli/{}:v1", unique_id("bb").to_lowercase());
    let out = docker(&env, &config, &["tag", IMAGE, &reference], "");
    assert_eq!(out.code(), 0, "{out}");
    let out = docker(&env, &config, &["push", &reference], "");
    assert_eq!(out.code(), 0, "{out}");
    assert!(
        out.stdout.contains(&format!(
            "The push refers to repository [{}]",
            reference.trim_end_matches(":v1")
        )),
        "{out}"
    );
    assert!(out.stdout.contains("Pushed"), "{out}");
    assert!(out.stdout.contains("v1: digest: sha256:"), "{out}");
    // A second push finds every layer there.
    let out = docker(&env, &config, &["push", &reference], "");
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.stdout.contains("Layer already exists"), "{out}");

    let out = docker(&env, &config, &["rmi", &reference], "");
    assert_eq!(out.code(), 0, "{out}");
    let out = docker(&env, &config, &["pull", &reference], "");
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.stdout.contains("v1: Pulling from docker-cli/"), "{out}");
    assert!(out.stdout.contains("Digest: sha256:"), "{out}");
    assert!(
        out.stdout
            .contains(&format!("Status: Downloaded newer image for {reference}")),
        "{out}"
    );
    assert_eq!(out.stdout.lines().last(), Some(reference.as_str()), "{out}");
    let out = docker(&env, &config, &["pull", &reference], "");
    assert_eq!(out.code(), 0, "{out}");
    assert!(
        out.stdout
            .contains(&format!("Status: Image is up to date for {reference}")),
        "{out}"
    );
    // What docker pulled runs.
    let out = env.run(&["run", "--rm", &reference, "echo", "pulled by docker"]);
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout.trim(), "pulled by docker", "{out}");

    let out = docker(
        &env,
        &config,
        &["pull", &format!("{host}/docker-cli/nosuch:1")],
        "",
    );
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("Error response from daemon"), "{out}");
    assert!(out.stderr.contains("not found"), "{out}");

    let out = docker(&env, &config, &["logout", &host], "");
    assert_eq!(out.code(), 0, "{out}");
    let out = docker(&env, &config, &["rmi", &reference], "");
    assert_eq!(out.code(), 0, "{out}");
    let out = docker(&env, &config, &["pull", &reference], "");
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("Error response from daemon"), "{out}");
}

/// Lists what a container of `image` sees under /data: every path, contents, link counts,
/// modes, owners, which files share an inode, and a symlink.
fn data_view(env: &CliEnv, image: &str) -> String {
    let script = r#"cd /data && find . | sort
for f in a.txt b.txt c.txt d.txt dir/keep old/new suid; do
  echo "$f $(md5sum < $f | cut -c1-32) $(stat -c '%h %a %u:%g %s' $f)"
done
[ "$(stat -c %i a.txt)" = "$(stat -c %i b.txt)" ] && echo a-b-one-inode
[ "$(stat -c %i c.txt)" = "$(stat -c %i d.txt)" ] && echo c-d-one-inode
echo "link -> $(readlink link)"
ls -a old | sort | tr '\n' ' '"#;
    let out = env.run(&["run", "--rm", image, "sh", "-c", script]);
    assert_eq!(out.code(), 0, "{out}\n{}", env.daemon_logs());
    out.stdout
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn multi_layer_image_with_whiteouts_and_hard_links_round_trips_through_a_registry() {
    skip_unless_root!();
    if !have_registry() {
        return;
    }
    let Some(env) = CliEnv::start() else { return };
    let registry = Registry::start().unwrap();
    let reference = format!(
        "{}/berth-rt/{}:v1",
        registry.host(),
        unique_id("layers").to_lowercase()
    );
    let base = berth_tests::cli::busybox_tar_layer().unwrap();
    let second = layer_from_entries(&[
        Entry::Dir("data", 0o755),
        Entry::File("data/a.txt", b"alpha\n", 0o644, 0),
        Entry::Link("data/b.txt", "data/a.txt"),
        Entry::Symlink("data/link", "a.txt"),
        Entry::Dir("data/dir", 0o750),
        Entry::File("data/dir/keep", b"kept v1\n", 0o600, 1000),
        Entry::File("data/dir/gone", b"to be deleted\n", 0o644, 0),
        Entry::Dir("data/old", 0o755),
        Entry::File("data/old/x", b"hidden by an opaque dir\n", 0o644, 0),
        Entry::File("data/suid", b"#!/bin/sh\n", 0o4755, 0),
    ])
    .unwrap();
    let third = layer_from_entries(&[
        Entry::Dir("data", 0o755),
        Entry::Dir("data/dir", 0o750),
        Entry::Whiteout("data/dir/gone"),
        Entry::File("data/dir/keep", b"kept v2\n", 0o640, 1000),
        Entry::Dir("data/old", 0o755),
        Entry::Opaque("data/old"),
        Entry::File("data/old/new", b"new\n", 0o644, 0),
        Entry::File("data/c.txt", &[0xabu8; 70_000], 0o644, 0),
        Entry::Link("data/d.txt", "data/c.txt"),
    ])
    .unwrap();
    let archive = env.dir().join("layers.tar");
    std::fs::write(
        &archive,
        docker_archive_layers(&[base, second, third], &reference).unwrap(),
    )
    .unwrap();
    env.ok(&["load", "-i", archive.to_str().unwrap()]);
    let id_before = env.ok(&["image", "inspect", "-f", "{{.Id}}", &reference]);
    let before = data_view(&env, &reference);
    for want in [
        "./dir/keep",
        "./old/new",
        "a-b-one-inode",
        "c-d-one-inode",
        "link -> a.txt",
    ] {
        assert!(before.contains(want), "{want} missing:\n{before}");
    }
    assert!(
        !before.contains("./dir/gone"),
        "whiteout ignored:\n{before}"
    );
    assert!(!before.contains("./old/x"), "opaque dir ignored:\n{before}");
    let line = |name: &str| {
        before
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .map(|l| l.split_whitespace().skip(2).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    // Link count, mode, owner, size.
    assert_eq!(line("a.txt"), "2 644 0:0 6", "{before}");
    assert_eq!(line("d.txt"), "2 644 0:0 70000", "{before}");
    assert_eq!(line("dir/keep"), "1 640 1000:1000 8", "{before}");
    assert_eq!(line("suid"), "1 4755 0:0 10", "{before}");

    let out = env.run(&["push", &reference]);
    assert_eq!(out.code(), 0, "{out}");
    env.ok(&["rmi", &reference]);
    let out = env.run(&["image", "inspect", &reference]);
    assert_eq!(out.code(), 1, "the image should be gone: {out}");
    let out = env.run(&["pull", &reference]);
    assert_eq!(out.code(), 0, "{out}");
    let id_after = env.ok(&["image", "inspect", "-f", "{{.Id}}", &reference]);
    assert_eq!(id_before, id_after, "the pulled image has another id");
    let after = data_view(&env, &reference);
    assert_eq!(before, after, "files differ after push, rmi, pull");
    env.ok(&["rmi", &reference]);
}

#[test]
#[ignore = "needs root: runs berthd"]
fn registry_endpoints_answer_with_dockers_statuses_and_prune_frees_the_disk() {
    skip_unless_root!();
    if !have_registry() {
        return;
    }
    let Some(env) = CliEnv::start() else { return };
    let registry = Registry::start().unwrap();
    let host = registry.host();

    // Errors before the stream: Docker's {"message"} and status.
    let (code, body) = http(
        &env,
        "POST",
        "/images/create?fromImage=Bad%2F%2FRef&tag=1",
        &[],
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("invalid reference format"), "{body}");
    let (code, body) = http(
        &env,
        "POST",
        &format!("/images/create?fromImage={host}%2Fno%2Fsuch&tag=1"),
        &[],
    );
    assert_eq!(code, 404, "{body}");
    assert!(body.starts_with("{\"message\":"), "{body}");
    let (code, body) = http(
        &env,
        "POST",
        &format!("/images/create?fromImage={host}%2Fx&tag=1"),
        &["X-Registry-Auth: %%%not-base64"],
    );
    assert_eq!(code, 400, "{body}");
    let (code, body) = http(
        &env,
        "POST",
        &format!("/images/{host}%2Fnot-here/push?tag=1"),
        &[],
    );
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("An image does not exist locally"), "{body}");

    // An image with a 3 MiB incompressible layer: push, pull, then account for it.
    let noise: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let base = berth_tests::cli::busybox_tar_layer().unwrap();
    let big = layer_from_entries(&[Entry::File("noise.bin", &noise, 0o644, 0)]).unwrap();
    let reference = format!("{host}/berth-df/{}:v1", unique_id("df").to_lowercase());
    let archive = env.dir().join("big.tar");
    std::fs::write(
        &archive,
        docker_archive_layers(&[base, big.clone()], &reference).unwrap(),
    )
    .unwrap();
    env.ok(&["load", "-i", archive.to_str().unwrap()]);
    env.ok(&["push", &reference]);
    let (code, body) = http(
        &env,
        "GET",
        &format!("/distribution/{}/json", reference.replace('/', "%2F")),
        &[],
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"digest\":\"sha256:"), "{body}");
    let (code, body) = http(
        &env,
        "POST",
        &format!(
            "/images/create?fromImage={}&tag=nosuch",
            reference.trim_end_matches(":v1").replace('/', "%2F")
        ),
        &[],
    );
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains(&format!(
            "manifest for {}:nosuch not found",
            reference.trim_end_matches(":v1")
        )),
        "{body}"
    );
    env.ok(&["rmi", &reference]);
    let (code, body) = http(
        &env,
        "POST",
        &format!(
            "/images/create?fromImage={}&tag=v1",
            reference.trim_end_matches(":v1").replace('/', "%2F")
        ),
        &[],
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("Pull complete"), "{body}");
    assert!(
        body.contains("Status: Downloaded newer image for"),
        "{body}"
    );

    let data = env.dir().join("data/image");
    let layer_blob = data
        .join("blobs/sha256")
        .join(big.digest.trim_start_matches("sha256:"));
    assert!(layer_blob.is_file(), "the pulled layer's blob is kept");
    let (code, df) = http(&env, "GET", "/system/df", &[]);
    assert_eq!(code, 200, "{df}");
    let df: serde_json::Value = serde_json::from_str(&df).unwrap();
    let layers_size = df["LayersSize"].as_u64().unwrap();
    assert!(
        layers_size > 2 * (3 << 20),
        "unpacked layer and kept blob: {df}"
    );

    // A partial download left by an interrupted pull is freed by the prune too.
    let partial = data
        .join("downloads")
        .join(format!("{}.partial", "ab".repeat(32)));
    std::fs::write(&partial, vec![7u8; 1 << 20]).unwrap();
    env.ok(&["rmi", &reference]);
    assert!(!layer_blob.exists(), "rmi should free the layer's blob");
    let out = env.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("Total reclaimed space:"), "{out}");
    assert!(!partial.exists(), "prune should drop partial downloads");
    let (_, df) = http(&env, "GET", "/system/df", &[]);
    let df: serde_json::Value = serde_json::from_str(&df).unwrap();
    assert!(
        df["LayersSize"].as_u64().unwrap() + (3 << 20) < layers_size,
        "disk use did not go down: {df}"
    );
    let layers_left = std::fs::read_dir(data.join("layers")).unwrap().count();
    assert_eq!(layers_left, 0, "prune -a left layers behind");
}

/// A berthd of its own (CliEnv starts one without a config file), driven with `berth`.
struct OwnDaemon {
    dir: tempfile::TempDir,
    _daemon: berth_tests::daemon::Daemon,
    net: (String, String),
}

impl OwnDaemon {
    fn start(config: &serde_json::Value, flags: &[&str]) -> OwnDaemon {
        let dir = tempfile::Builder::new()
            .prefix("berth-regcfg-")
            .tempdir()
            .expect("temp dir");
        let cfg = dir.path().join("daemon.json");
        std::fs::write(&cfg, config.to_string()).expect("write daemon.json");
        let berthd = berth_tests::bins::require_workspace_binary("berthd");
        let sock = dir.path().join("berth.sock");
        let mut cmd = std::process::Command::new(&berthd);
        cmd.arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--config-file")
            .arg(&cfg)
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args(flags);
        let net = berth_tests::cli::net_names();
        cmd.arg("--bridge")
            .arg(&net.0)
            .arg("--nft-table")
            .arg(&net.1);
        if let Some(bin) = berthd.parent() {
            let path = std::env::var("PATH").unwrap_or_default();
            cmd.env("PATH", format!("{}:{path}", bin.display()));
        }
        let mut daemon =
            berth_tests::daemon::Daemon::spawn("berthd", cmd, dir.path().join("berthd.log"))
                .expect("start berthd");
        daemon
            .wait_for_unix_socket(&sock, std::time::Duration::from_secs(30))
            .expect("berthd serves");
        OwnDaemon {
            dir,
            _daemon: daemon,
            net,
        }
    }

    fn berth(&self, args: &[&str]) -> Output {
        Cmd::new(berth_tests::bins::require_workspace_binary("berth"))
            .env(
                "BERTH_HOST",
                format!("unix://{}", self.dir.path().join("berth.sock").display()),
            )
            .args(args)
            .output()
            .expect("run berth")
    }
}

impl Drop for OwnDaemon {
    fn drop(&mut self) {
        // berthd's supervisor is detached on purpose; this test started it, so stop it.
        let root = self.dir.path().display().to_string();
        let pid = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .find(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains("berth-supervisor") && c.contains(&root)
                })
            });
        if let Some(pid) = pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        berth_tests::cli::remove_daemon_network_of(
            Some(&self.net.0),
            Some(&self.net.1),
            &self.dir.path().join("data"),
        );
    }
}

#[test]
#[ignore = "needs root: runs berthd"]
fn per_registry_mirrors_and_registry_flags_from_the_config_serve_pulls() {
    skip_unless_root!();
    if !have_registry() {
        return;
    }
    let mirror = Registry::start().unwrap();
    let upstream = Registry::start().unwrap();
    let d = OwnDaemon::start(
        &serde_json::json!({
            "mirrors": {upstream.host(): [format!("http://{}", mirror.host())]},
            "max-concurrent-downloads": 2,
        }),
        &[
            "--insecure-registry",
            "10.9.0.0/16",
            "--registry-mirror",
            "https://hub.example.com",
        ],
    );
    let info = d.berth(&["info", "--format", "{{json .RegistryConfig}}"]);
    assert_eq!(info.code(), 0, "{info}");
    let rc: serde_json::Value = serde_json::from_str(info.stdout.trim()).unwrap();
    assert!(
        rc["InsecureRegistryCIDRs"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("10.9.0.0/16")),
        "{rc}"
    );
    assert_eq!(
        rc["Mirrors"],
        serde_json::json!(["https://hub.example.com/"]),
        "{rc}"
    );
    assert_eq!(
        rc["IndexConfigs"][upstream.host()]["Mirrors"],
        serde_json::json!([format!("http://{}", mirror.host())]),
        "{rc}"
    );

    // The image exists only on the mirror, under the path the upstream reference names.
    let archive = d.dir.path().join("bb.tar");
    let on_mirror = format!("{}/lib/bb:v1", mirror.host());
    std::fs::write(
        &archive,
        berth_tests::cli::docker_archive(
            &berth_tests::cli::busybox_tar_layer().unwrap(),
            &on_mirror,
        )
        .unwrap(),
    )
    .unwrap();
    let out = d.berth(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out.code(), 0, "{out}");
    let out = d.berth(&["push", &on_mirror]);
    assert_eq!(out.code(), 0, "{out}");
    let out = d.berth(&["rmi", &on_mirror]);
    assert_eq!(out.code(), 0, "{out}");

    let from_upstream = format!("{}/lib/bb:v1", upstream.host());
    let out = d.berth(&["pull", &from_upstream]);
    assert_eq!(out.code(), 0, "pulled through the mirror: {out}");
    let out = d.berth(&["image", "inspect", "-f", "{{.RepoTags}}", &from_upstream]);
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.stdout.contains(&from_upstream), "{out}");
    // Not on the mirror: falls through to the upstream, which has nothing either.
    let out = d.berth(&["pull", &format!("{}/lib/other:v1", upstream.host())]);
    assert_eq!(out.code(), 1, "{out}");
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn images_pushed_by_skopeo_as_oci_gzip_and_zstd_pull_and_run() {
    skip_unless_root!();
    if !have_registry() {
        return;
    }
    if !Path::new("/usr/bin/skopeo").is_file() {
        eprintln!("skipping: no skopeo on this machine");
        return;
    }
    let Some(env) = CliEnv::start() else { return };
    let registry = Registry::start().unwrap();
    for (format, compression, media) in [
        ("oci", "gzip", "application/vnd.oci.image.layer.v1.tar+gzip"),
        ("oci", "zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
        (
            "v2s2",
            "gzip",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ),
    ] {
        let reference = format!(
            "{}/skopeo/{}-{format}-{compression}:v1",
            registry.host(),
            unique_id("img").to_lowercase()
        );
        // Layers of their own for each push: skopeo reuses a blob it pushed before in another
        // compression when the registry has it, which would defeat the point.
        let base = tempfile::tempdir().unwrap();
        berth_tests::rootfs::populate(base.path()).unwrap();
        std::fs::write(base.path().join("etc/image-name"), &reference).unwrap();
        let base = berth_tests::tarball::Layer::from_dir(base.path(), false).unwrap();
        let flavour = format!("from skopeo as {format} {compression}\n");
        let extra = layer_from_entries(&[
            Entry::Dir("etc", 0o755),
            Entry::File("etc/flavour", flavour.as_bytes(), 0o644, 0),
        ])
        .unwrap();
        let archive = env.dir().join("skopeo-src.tar");
        std::fs::write(
            &archive,
            docker_archive_layers(&[base, extra], "skopeo/src:v1").unwrap(),
        )
        .unwrap();
        let out = Cmd::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                "--format",
                format,
            ])
            .args(["--dest-compress-format", compression])
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(format!("docker://{reference}"))
            .output()
            .unwrap();
        assert!(out.success(), "skopeo copy: {out}");
        let out = Cmd::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{reference}"))
            .output()
            .unwrap();
        assert!(out.stdout.contains(media), "{media} expected: {out}");
        let out = env.run(&["pull", &reference]);
        assert_eq!(out.code(), 0, "{format}/{compression}: {out}");
        let out = env.run(&["run", "--rm", &reference, "cat", "/etc/flavour"]);
        assert_eq!(out.code(), 0, "{format}/{compression}: {out}");
        assert_eq!(out.stdout, flavour, "{format}/{compression}: {out}");
        env.ok(&["rmi", &reference]);
    }
}

/// A TCP proxy in front of the registry that slows blob bodies down (so a pull can be caught
/// mid-layer), can cut every connection at once, and records what clients sent (to see the
/// Range request of a resumed download).
struct Proxy {
    addr: std::net::SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    requests: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Proxy {
    fn start(upstream: std::net::SocketAddr, bytes_per_sec: usize) -> Proxy {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, r) = (cut.clone(), requests.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: refused while cut
                }
                let Ok(server) = std::net::TcpStream::connect(upstream) else {
                    continue;
                };
                let pairs = [
                    (client.try_clone(), server.try_clone(), true),
                    (server.try_clone(), client.try_clone(), false),
                ];
                for (from, to, upward) in pairs {
                    let (Ok(mut from), Ok(mut to)) = (from, to) else {
                        continue;
                    };
                    let (c, r) = (c.clone(), r.clone());
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 64 << 10];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if c.load(Ordering::SeqCst) {
                                break;
                            }
                            if upward {
                                r.lock()
                                    .expect("requests lock")
                                    .extend_from_slice(&buf[..n]);
                            } else {
                                let pause = n as f64 / bytes_per_sec as f64;
                                std::thread::sleep(std::time::Duration::from_secs_f64(pause));
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = from.shutdown(std::net::Shutdown::Both);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy {
            addr,
            cut,
            requests,
        }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::SeqCst);
    }

    fn requests(&self) -> String {
        String::from_utf8_lossy(&self.requests.lock().expect("requests lock")).into_owned()
    }
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn a_pull_cut_mid_layer_resumes_with_a_range_request_and_runs() {
    skip_unless_root!();
    if !have_registry() {
        return;
    }
    let Some(env) = CliEnv::start() else { return };
    let registry = Registry::start().unwrap();
    // 24 MiB that gzip cannot shrink, behind a busybox layer.
    let noise: Vec<u8> = {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..(24usize << 20) / 8)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()
            })
            .collect()
    };
    let big = layer_from_entries(&[Entry::File("big.bin", &noise, 0o644, 0)]).unwrap();
    let direct = format!(
        "{}/resume/{}:v1",
        registry.host(),
        unique_id("r").to_lowercase()
    );
    let archive = env.dir().join("resume.tar");
    std::fs::write(
        &archive,
        docker_archive_layers(
            &[berth_tests::cli::busybox_tar_layer().unwrap(), big.clone()],
            &direct,
        )
        .unwrap(),
    )
    .unwrap();
    env.ok(&["load", "-i", archive.to_str().unwrap()]);
    let want = env.ok(&["run", "--rm", &direct, "md5sum", "/big.bin"]);
    env.ok(&["push", &direct]);
    env.ok(&["rmi", &direct]);
    env.ok(&["image", "prune", "-a", "-f"]);

    // 6 MiB/s: the 24 MiB layer takes about 4 s, time enough to cut it in the middle.
    let proxy = Proxy::start(registry.addr(), 6 << 20);
    let through_proxy = direct.replacen(&registry.host(), &proxy.addr.to_string(), 1);
    let pull = env
        .berth(["pull", &through_proxy])
        .timeout(std::time::Duration::from_secs(120))
        .spawn()
        .unwrap();
    let partial = env.dir().join("data/image/downloads").join(format!(
        "{}.partial",
        big.digest.trim_start_matches("sha256:")
    ));
    berth_tests::wait_until(
        "8 MiB of the big layer downloaded",
        std::time::Duration::from_secs(60),
        || {
            std::fs::metadata(&partial)
                .ok()
                .filter(|m| m.len() >= 8 << 20)
                .map(|m| m.len())
        },
    )
    .unwrap();
    proxy.set_cut(true);
    // The pull retries after 5 s (Docker's delay); let the proxy through again before that.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        std::fs::metadata(&partial).is_ok_and(|m| m.len() >= 8 << 20),
        "the partial blob is kept while the pull waits to retry"
    );
    proxy.set_cut(false);
    let out = pull.wait(std::time::Duration::from_secs(120)).unwrap();
    assert_eq!(out.code(), 0, "{out}\n{}", env.daemon_logs());
    assert!(out.stdout.contains("Retrying in"), "{out}");
    let requests = proxy.requests();
    assert!(
        requests
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("range: bytes=") && !l.contains("=0-")),
        "no Range request went to the registry:\n{requests}"
    );
    assert!(!partial.exists(), "the finished blob left its partial file");
    let got = env.ok(&["run", "--rm", &through_proxy, "md5sum", "/big.bin"]);
    assert_eq!(got, want, "the resumed layer differs");
}

#[test]
#[ignore = "needs root: runs berthd"]
fn a_corrupted_blob_fails_the_pull_in_stream_and_stores_nothing() {
    skip_unless_root!();
    if !have_registry() {
        return;
    }
    let Some(env) = CliEnv::start() else { return };
    let registry = Registry::start().unwrap();
    let layer = layer_from_entries(&[Entry::File("payload", &[0x5a; 300_000], 0o644, 0)]).unwrap();
    let reference = format!(
        "{}/corrupt/{}:v1",
        registry.host(),
        unique_id("c").to_lowercase()
    );
    let archive = env.dir().join("corrupt.tar");
    std::fs::write(
        &archive,
        docker_archive_layers(
            &[
                berth_tests::cli::busybox_tar_layer().unwrap(),
                layer.clone(),
            ],
            &reference,
        )
        .unwrap(),
    )
    .unwrap();
    env.ok(&["load", "-i", archive.to_str().unwrap()]);
    env.ok(&["push", &reference]);
    env.ok(&["rmi", &reference]);
    env.ok(&["image", "prune", "-a", "-f"]);
    // Same length, other bytes: only the digest check can tell.
    let data = registry.blob_data_path(&layer.digest);
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[100_000] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();

    let (repo, tag) = reference.rsplit_once(':').unwrap();
    let (code, body) = http(
        &env,
        "POST",
        &format!(
            "/images/create?fromImage={}&tag={tag}",
            repo.replace('/', "%2F")
        ),
        &[],
    );
    // The stream had started (layers were announced), so the failure is its last line.
    assert_eq!(code, 200, "{body}");
    let last: serde_json::Value =
        serde_json::from_str(body.lines().last().unwrap_or_default()).unwrap();
    let msg = last["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("verification failed for digest") && msg.contains(&layer.digest),
        "{body}"
    );
    assert_eq!(last["errorDetail"]["message"], last["error"], "{body}");
    let out = env.run(&["image", "inspect", &reference]);
    assert_eq!(out.code(), 1, "nothing may be registered: {out}");
    let out = env.run(&["pull", &reference]);
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("verification failed"), "{out}");
    let blob = env
        .dir()
        .join("data/image/blobs/sha256")
        .join(layer.digest.trim_start_matches("sha256:"));
    assert!(!blob.exists(), "the corrupted blob was kept");
}

#[test]
#[ignore = "needs root: runs berthd"]
fn a_multi_platform_index_pulls_the_requested_platform() {
    skip_unless_root!();
    if !have_registry() {
        return;
    }
    let Some(env) = CliEnv::start() else { return };
    let registry = Registry::start().unwrap();
    let repo = format!(
        "{}/multi/{}",
        registry.host(),
        unique_id("m").to_lowercase()
    );
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let marker = layer_from_entries(&[Entry::File("arch", arch.as_bytes(), 0o644, 0)]).unwrap();
        let reference = format!("{repo}:{arch}");
        let archive = env.dir().join(format!("{arch}.tar"));
        std::fs::write(
            &archive,
            berth_tests::registry::docker_archive_for(&[marker], &reference, arch).unwrap(),
        )
        .unwrap();
        env.ok(&["load", "-i", archive.to_str().unwrap()]);
        env.ok(&["push", &reference]);
        env.ok(&["rmi", &reference]);
        // The manifest as the registry has it: digest, size, media type.
        let out = Cmd::new("curl")
            .args(["-sS", "-D", "-", "-o", "/dev/null", "-H"])
            .arg("Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
            .arg(format!(
                "http://{}/v2/{}/manifests/{arch}",
                registry.host(),
                repo.split_once('/').unwrap().1
            ))
            .output()
            .unwrap();
        let header = |name: &str| {
            out.stdout
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                })
                .unwrap_or_else(|| panic!("no {name} in {out}"))
        };
        entries.push(serde_json::json!({
            "mediaType": header("Content-Type"),
            "digest": header("Docker-Content-Digest"),
            "size": header("Content-Length").parse::<u64>().unwrap(),
            "platform": {"os": "linux", "architecture": arch},
        }));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    })
    .to_string();
    let out = Cmd::new("curl")
        .args(["-sS", "--fail-with-body", "-X", "PUT", "-H"])
        .arg("Content-Type: application/vnd.oci.image.index.v1+json")
        .args(["--data-binary", &index])
        .arg(format!(
            "http://{}/v2/{}/manifests/v1",
            registry.host(),
            repo.split_once('/').unwrap().1
        ))
        .output()
        .unwrap();
    assert!(out.success(), "put index: {out}");

    let (code, body) = http(
        &env,
        "GET",
        &format!(
            "/distribution/{}/json",
            format!("{repo}:v1").replace('/', "%2F")
        ),
        &[],
    );
    assert_eq!(code, 200, "{body}");
    let d: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        d["Descriptor"]["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{d}"
    );
    let archs: Vec<&str> = d["Platforms"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["architecture"].as_str())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"], "{d}");

    let reference = format!("{repo}:v1");
    for arch in ["arm64", "amd64"] {
        let out = env.run(&["pull", "--platform", &format!("linux/{arch}"), &reference]);
        assert_eq!(out.code(), 0, "{out}");
        let got = env.ok(&["image", "inspect", "-f", "{{.Architecture}}", &reference]);
        assert_eq!(got.trim(), arch, "--platform linux/{arch}");
    }
    let out = env.run(&["pull", "--platform", "linux/s390x", &reference]);
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        out.stderr.contains("no matching manifest for linux/s390x"),
        "{out}"
    );
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn import_from_a_tarball_still_works_and_the_result_pushes_and_pulls() {
    skip_unless_root!();
    if !have_registry() {
        return;
    }
    let Some(env) = CliEnv::start() else { return };
    let registry = Registry::start().unwrap();
    let rootfs = tempfile::tempdir().unwrap();
    berth_tests::rootfs::populate(rootfs.path()).unwrap();
    std::fs::write(rootfs.path().join("etc/imported"), "yes\n").unwrap();
    let tarball = env.dir().join("rootfs.tar");
    berth_tests::tarball::write_rootfs_tar(rootfs.path(), &tarball).unwrap();
    let reference = format!(
        "{}/imported/{}:v1",
        registry.host(),
        unique_id("i").to_lowercase()
    );
    // `fromSrc=-` (the body) next to `fromImage` on the same endpoint.
    env.ok(&[
        "import",
        "--change",
        "CMD [\"cat\", \"/etc/imported\"]",
        tarball.to_str().unwrap(),
        &reference,
    ]);
    let out = env.run(&["run", "--rm", &reference]);
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout, "yes\n", "{out}");
    env.ok(&["push", &reference]);
    env.ok(&["rmi", &reference]);
    env.ok(&["pull", &reference]);
    let out = env.run(&["run", "--rm", &reference]);
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout, "yes\n", "{out}");
}
