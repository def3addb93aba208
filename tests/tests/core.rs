//! Issue 10, the core made trustworthy, with the real docker CLI and `berth` against a real
//! berthd: every byte of output arrives (run, attach, exec; with and without a TTY), `logs -f`
//! of 100 MiB is complete across rotations, failed starts end with dockerd's exit codes and
//! never hang, users and groups resolve from the image's files, Docker's defaults, `import
//! --change`, and berthd stopped and started again with running containers.
//!
//! Run: `cargo build --workspace --bins`, then
//! `sudo -E cargo test -p berth-tests --test core -- --include-ignored`.

use std::path::Path;
use std::time::Duration;

use berth_tests::cli::{CliEnv, IMAGE};
use berth_tests::{skip_unless_root, unique_id, Cmd, Output};

/// Bytes each output check moves (2 MiB).
const OUTPUT_BYTES: usize = 2 * 1024 * 1024;
/// Runs per path (run, attach, exec) of the checksum comparison.
const ROUNDS: usize = 50;
/// The bound on any one docker command here: a hang fails the test instead of stalling CI.
const BOUND: Duration = Duration::from_secs(60);

fn start() -> Option<CliEnv> {
    berth_tests::cli::start_for_docker()
}

fn docker(env: &CliEnv, args: &[&str]) -> Output {
    env.docker_output(args)
}

fn ok(env: &CliEnv, args: &[&str]) -> String {
    env.docker_ok(args)
}

/// What `sh -c "$PRINT"` writes in the test image: 2 MiB of the busybox binary, twice over.
const PRINT: &str = "cat /bin/busybox /bin/busybox | head -c 2097152";

fn expected_output() -> Vec<u8> {
    let bb = std::fs::read("/bin/busybox").expect("read /bin/busybox (busybox-static)");
    bb.iter()
        .chain(bb.iter())
        .take(OUTPUT_BYTES)
        .copied()
        .collect()
}

/// A terminal turns each `\n` into `\r\n`.
fn through_tty(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 64);
    for &b in data {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Runs `cmd` with its stdout in a file; returns (its bytes, the output record).
fn raw_stdout(cmd: Cmd, dir: &Path) -> (Vec<u8>, Output) {
    let path = dir.join(unique_id("stdout"));
    let out = cmd
        .timeout(BOUND)
        .stdout_to(&path)
        .output()
        .expect("run command");
    let bytes = std::fs::read(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    (bytes, out)
}

fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: got {} bytes, want {} (first difference at {first:?})",
            got.len(),
            want.len()
        );
    }
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn every_byte_reaches_run_attach_and_exec_clients() {
    skip_unless_root!();
    let Some(env) = start() else { return };
    let want = expected_output();
    let want_tty = through_tty(&want);
    let dir = env.dir().to_path_buf();

    for i in 0..ROUNDS {
        let (got, out) = raw_stdout(env.docker(["run", "--rm", IMAGE, "sh", "-c", PRINT]), &dir);
        assert_eq!(out.code(), 0, "{out}");
        assert_same(&got, &want, &format!("docker run, round {i}"));
    }
    for i in 0..ROUNDS / 5 {
        let (got, out) = raw_stdout(
            env.docker(["run", "--rm", "-t", IMAGE, "sh", "-c", PRINT]),
            &dir,
        );
        assert_eq!(out.code(), 0, "{out}");
        assert_same(&got, &want_tty, &format!("docker run -t, round {i}"));
    }
    // Attach: `start -a` attaches before the start; `attach` joins a running container.
    for i in 0..ROUNDS {
        let name = unique_id("core-attach");
        ok(&env, &["create", "--name", &name, IMAGE, "sh", "-c", PRINT]);
        let (got, out) = raw_stdout(env.docker(["start", "-a", &name]), &dir);
        assert_eq!(out.code(), 0, "{out}");
        assert_same(&got, &want, &format!("docker start -a, round {i}"));
        ok(&env, &["rm", &name]);
    }
    let name = unique_id("core-attach-late");
    let script = format!("sleep 1; {PRINT}");
    ok(
        &env,
        &["run", "-d", "--name", &name, IMAGE, "sh", "-c", &script],
    );
    let (got, out) = raw_stdout(env.docker(["attach", &name]), &dir);
    assert_eq!(out.code(), 0, "{out}");
    assert_same(&got, &want, "docker attach");
    ok(&env, &["rm", &name]);

    let name = unique_id("core-exec");
    ok(&env, &["run", "-d", "--name", &name, IMAGE, "sleep", "600"]);
    for i in 0..ROUNDS {
        let (got, out) = raw_stdout(env.docker(["exec", &name, "sh", "-c", PRINT]), &dir);
        assert_eq!(out.code(), 0, "{out}");
        assert_same(&got, &want, &format!("docker exec, round {i}"));
    }
    for i in 0..ROUNDS / 5 {
        let (got, out) = raw_stdout(env.docker(["exec", "-t", &name, "sh", "-c", PRINT]), &dir);
        assert_eq!(out.code(), 0, "{out}");
        assert_same(&got, &want_tty, &format!("docker exec -t, round {i}"));
    }
    ok(&env, &["rm", "-f", &name]);

    // The berth CLI, and a fast exit on stderr.
    for i in 0..ROUNDS / 5 {
        let (got, out) = raw_stdout(env.berth(["run", "--rm", IMAGE, "sh", "-c", PRINT]), &dir);
        assert_eq!(out.code(), 0, "{out}");
        assert_same(&got, &want, &format!("berth run, round {i}"));
    }
    let out = docker(&env, &["run", "--rm", IMAGE, "sh", "-c", "seq 1 20000 >&2"]);
    let want_err: String = (1..=20000).map(|i| format!("{i}\n")).collect();
    assert!(
        out.stderr == want_err,
        "stderr lost bytes: {} of {}",
        out.stderr.len(),
        want_err.len()
    );
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn logs_follow_of_100_mib_is_complete_across_rotations() {
    skip_unless_root!();
    let Some(env) = start() else { return };
    let name = unique_id("core-follow");
    // 102,400 numbered lines of 1 KiB; the default bounds (10 MiB x 2 files) rotate it many
    // times while the follower reads.
    let script = "sleep 0.5; awk 'BEGIN{for(i=0;i<102400;i++) printf \"%08d %01014d\\n\", i, 0}'";
    ok(
        &env,
        &["run", "-d", "--name", &name, IMAGE, "sh", "-c", script],
    );
    let (got, out) = raw_stdout(
        env.docker(["logs", "-f", &name])
            .timeout(Duration::from_secs(300)),
        env.dir(),
    );
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(
        got.len(),
        100 * 1024 * 1024,
        "logs -f delivered {} bytes",
        got.len()
    );
    for (n, line) in got
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let num: usize = std::str::from_utf8(&line[..8]).unwrap().parse().unwrap();
        assert_eq!(
            num, n,
            "line {n} is line {num}: a gap in what logs -f delivered"
        );
    }
    // Without -f, what is still stored: the last lines, within the default bounds (10 MiB x 3).
    let (stored, _) = raw_stdout(env.docker(["logs", &name]), env.dir());
    assert!(
        stored.len() <= 30 * 1024 * 1024 && !stored.is_empty(),
        "{}",
        stored.len()
    );
    assert!(stored.ends_with(format!("{:08} {:01014}\n", 102399, 0).as_bytes()));
    // Per-container bounds from --log-opt.
    let small = unique_id("core-logopt");
    ok(
        &env,
        &[
            "run",
            "--name",
            &small,
            "--log-opt",
            "max-size=100k",
            "--log-opt",
            "max-file=2",
            IMAGE,
            "sh",
            "-c",
            "seq 1 100000",
        ],
    );
    let (stored, _) = raw_stdout(env.docker(["logs", &small]), env.dir());
    assert!(
        stored.len() < 200 * 1024,
        "max-size ignored: {} bytes kept",
        stored.len()
    );
    assert!(stored.ends_with(b"99999\n100000\n"));
    ok(&env, &["rm", &name, &small]);
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn failed_starts_end_with_dockerd_codes_and_remove_rm_containers() {
    skip_unless_root!();
    let Some(env) = start() else { return };
    let label = env.label().to_string();
    let filter = format!("label={label}");
    for (args, code, words) in [
        (vec!["/no/such/binary"], 127, "no such"),
        (vec!["nosuchcommand"], 127, "not found"),
        (vec!["/etc"], 126, "permission denied"),
        (
            vec!["-u", "nosuch", IMAGE, "id"],
            125,
            "unable to find user nosuch",
        ),
    ] {
        let mut argv = vec!["run", "--rm", "-l", &label];
        if args[0].starts_with('-') {
            argv.extend(args.iter().copied());
        } else {
            argv.push(IMAGE);
            argv.extend(args.iter().copied());
        }
        let out = docker(&env, &argv);
        assert_eq!(out.code(), code, "{argv:?}: {out}");
        assert!(out.stderr.contains(words), "{argv:?}: {out}");
        assert_eq!(
            ok(&env, &["ps", "-aq", "--filter", &filter]),
            "",
            "{argv:?} left its --rm container"
        );
    }
    // Without --rm the container stays, created, with the reason and the code.
    let name = unique_id("core-failed");
    let out = docker(&env, &["run", "--name", &name, IMAGE, "/no/such/binary"]);
    assert_eq!(out.code(), 127, "{out}");
    let state = ok(
        &env,
        &[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}} {{.State.Error}}",
            &name,
        ],
    );
    assert!(state.starts_with("created 127 "), "{state}");
    // A wait started before a failed start ends.
    let out = docker(&env, &["start", &name]);
    assert_ne!(out.code(), 0, "{out}");
    ok(&env, &["rm", &name]);
    // A missing working directory is made.
    let out = ok(&env, &["run", "--rm", "-w", "/tmp/new/dir", IMAGE, "pwd"]);
    assert_eq!(out, "/tmp/new/dir\n");
    // Owned by the container's user, so it can write there; an existing parent keeps its
    // owner and mode.
    let tmp_mode = ok(&env, &["run", "--rm", IMAGE, "stat", "-c", "%U %a", "/tmp"]);
    let out = ok(
        &env,
        &[
            "run",
            "--rm",
            "-u",
            "berth",
            "-w",
            "/tmp/work/here",
            IMAGE,
            "sh",
            "-c",
            "touch f && stat -c '%U %a' . /tmp",
        ],
    );
    assert_eq!(out, format!("berth 755\n{tmp_mode}"));
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn users_groups_and_defaults_come_from_the_image() {
    skip_unless_root!();
    let Some(env) = start() else { return };
    let id = |args: &[&str]| {
        let mut argv = vec!["run", "--rm"];
        argv.extend_from_slice(args);
        ok(&env, &argv)
    };
    assert_eq!(
        id(&["-u", "berth", IMAGE, "id"]),
        "uid=1000(berth) gid=1000(berth)\n"
    );
    assert_eq!(
        id(&["-u", "berth:tty", IMAGE, "id"]),
        "uid=1000(berth) gid=5(tty)\n"
    );
    assert_eq!(id(&["-u", "1000:5", IMAGE, "id", "-u"]), "1000\n");
    assert_eq!(
        id(&["-u", "4242", IMAGE, "sh", "-c", "id -u; id -g; echo $HOME"]),
        "4242\n0\n/\n"
    );
    assert_eq!(
        id(&[
            "--group-add",
            "tty",
            "--group-add",
            "4000",
            IMAGE,
            "id",
            "-G"
        ]),
        "0 5 4000\n"
    );
    let out = docker(&env, &["run", "--rm", "-u", "berth:nogroup-x", IMAGE, "id"]);
    assert_eq!(out.code(), 125, "{out}");
    assert!(
        out.stderr.contains("unable to find group nogroup-x"),
        "{out}"
    );

    // exec resolves its own -u the same way, HOME included.
    let name = unique_id("core-exec-user");
    ok(&env, &["run", "-d", "--name", &name, IMAGE, "sleep", "600"]);
    assert_eq!(
        ok(
            &env,
            &[
                "exec",
                "-u",
                "berth",
                &name,
                "sh",
                "-c",
                "id -un; echo $HOME"
            ]
        ),
        "berth\n/home/berth\n"
    );
    assert_eq!(
        ok(&env, &["exec", &name, "sh", "-c", "echo $HOME"]),
        "/root\n"
    );
    ok(&env, &["rm", "-f", &name]);

    // Docker's environment: PATH, HOSTNAME, HOME from passwd, TERM with -t.
    let env_of = |args: &[&str]| -> Vec<String> {
        let mut argv = vec!["run", "--rm", "--hostname", "hn"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&[IMAGE, "env"]);
        let mut v: Vec<String> = ok(&env, &argv)
            .lines()
            .map(|l| l.trim_end_matches('\r').to_string())
            .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL="))
            .collect();
        v.sort();
        v
    };
    let path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    assert_eq!(env_of(&[]), vec!["HOME=/root", "HOSTNAME=hn", path]);
    assert_eq!(
        env_of(&["-t", "-u", "berth"]),
        vec!["HOME=/home/berth", "HOSTNAME=hn", path, "TERM=xterm"]
    );
    // no_new_privs only when asked; seccomp on either way.
    let status = ok(
        &env,
        &[
            "run",
            "--rm",
            IMAGE,
            "grep",
            "-E",
            "NoNewPrivs|Seccomp:",
            "/proc/self/status",
        ],
    );
    assert!(
        status.contains("NoNewPrivs:\t0") && status.contains("Seccomp:\t2"),
        "{status}"
    );
    let status = ok(
        &env,
        &[
            "run",
            "--rm",
            "--security-opt",
            "no-new-privileges",
            IMAGE,
            "grep",
            "NoNewPrivs",
            "/proc/self/status",
        ],
    );
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn import_change_sets_the_image_config() {
    skip_unless_root!();
    let Some(env) = start() else { return };
    let tar = env.dir().join("rootfs.tar");
    let layer = berth_tests::cli::busybox_tar_layer().expect("busybox layer");
    std::fs::write(&tar, &layer.bytes).expect("write rootfs tar");
    let tag = format!("{}:v1", unique_id("core-import"));
    ok(
        &env,
        &[
            "import",
            "-c",
            "CMD [\"echo\", \"from cmd\"]",
            "-c",
            "ENV A=1 B=two",
            "-c",
            "WORKDIR /w",
            "-c",
            "USER berth",
            "-c",
            "LABEL l=v",
            "-c",
            "EXPOSE 8080",
            "-c",
            "VOLUME /data",
            "-c",
            "STOPSIGNAL SIGINT",
            "-c",
            "ONBUILD RUN true",
            tar.to_str().unwrap(),
            &tag,
        ],
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&ok(&env, &["inspect", "-f", "{{json .Config}}", &tag])).unwrap();
    assert_eq!(cfg["Cmd"], serde_json::json!(["echo", "from cmd"]));
    assert_eq!(cfg["Env"], serde_json::json!(["A=1", "B=two"]));
    assert_eq!(cfg["WorkingDir"], "/w");
    assert_eq!(cfg["User"], "berth");
    assert_eq!(cfg["Labels"]["l"], "v");
    assert!(cfg["ExposedPorts"]["8080/tcp"].is_object(), "{cfg}");
    assert!(cfg["Volumes"]["/data"].is_object(), "{cfg}");
    assert_eq!(cfg["StopSignal"], "SIGINT");
    assert_eq!(cfg["OnBuild"], serde_json::json!(["RUN true"]));
    assert_eq!(ok(&env, &["run", "--rm", &tag]), "from cmd\n");
    assert_eq!(
        ok(
            &env,
            &["run", "--rm", &tag, "sh", "-c", "echo $A $B; pwd; id -un"]
        ),
        "1 two\n/w\nberth\n"
    );
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn stopping_berthd_stops_its_supervisor_and_keeps_containers() {
    skip_unless_root!();
    let Some(mut env) = start() else { return };
    let name = unique_id("core-keep");
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &name,
            IMAGE,
            "sh",
            "-c",
            "while true; do echo tick; sleep 0.2; done",
        ],
    );
    let pid = ok(&env, &["inspect", "-f", "{{.State.Pid}}", &name]);
    let sup = supervisors_under(env.dir());
    assert_eq!(
        sup.len(),
        1,
        "one supervisor runs under the test dir: {sup:?}"
    );
    env.stop_daemon(Duration::from_secs(20))
        .expect("stop berthd with SIGTERM");
    let left = supervisors_under(env.dir());
    assert!(
        left.is_empty(),
        "berthd's supervisor still runs after SIGTERM: {left:?}"
    );
    assert!(
        Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "the container died with berthd"
    );
    env.restart_daemon().expect("start berthd again");
    assert_eq!(
        ok(
            &env,
            &["inspect", "-f", "{{.State.Status}} {{.State.Pid}}", &name]
        ),
        format!("running {}", pid)
    );
    let out = ok(&env, &["exec", &name, "echo", "still here"]);
    assert_eq!(out, "still here\n");
    ok(&env, &["rm", "-f", &name]);
}

/// berth-supervisor processes whose command line names a path under `dir`.
fn supervisors_under(dir: &Path) -> Vec<i32> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            !zombie
                && args
                    .first()
                    .is_some_and(|a| a.ends_with(b"berth-supervisor"))
                && args.iter().any(|a| a.starts_with(dir.as_bytes()))
        })
        .collect()
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn unknown_endpoints_answer_404_after_the_body() {
    skip_unless_root!();
    let Some(env) = start() else { return };
    let sock = env.socket().expect("berthd on a unix socket");
    let body = vec![b'x'; 4 * 1024 * 1024];
    let r = berth_tests::http::request(
        &sock,
        "POST",
        "/v1.45/no/such/endpoint",
        Some(("application/json", &body)),
    )
    .expect("an answer, not a broken pipe");
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.text(), "{\"message\":\"page not found\"}");
}
