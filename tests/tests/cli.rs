//! End-to-end tests of the `berth` CLI: berthd in a temp dir (or `$BERTH_CLI_TEST_HOST`, see
//! `berth_tests::cli`), driven by the real binary, checked against what docker prints.
//!
//! Build first: `cargo build -p berth-cli -p berth-engine -p berth-supervisor -p berth-shim
//! -p berth-runtime`, then `sudo -E cargo test -p berth-tests --test cli -- --include-ignored`.

use std::time::Duration;

use berth_tests::cli::{docker_cli, CliEnv, IMAGE};
use berth_tests::{skip_unless_root, unique_id, wait_until, Cmd};

fn is_hex_id(s: &str, len: usize) -> bool {
    s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit())
}

#[test]
fn unreachable_daemon_is_reported_like_docker() {
    let berth = berth_tests::bins::require_workspace_binary("berth");
    let out = Cmd::new(&berth)
        .args(["-H", "unix:///nonexistent/berth.sock", "ps"])
        .output()
        .unwrap();
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        out.stderr
            .contains("Cannot connect to the berth daemon at unix:///nonexistent/berth.sock"),
        "{out}"
    );
    let out = Cmd::new(&berth)
        .args(["-H", "unix:///nonexistent/berth.sock", "run", "busybox"])
        .output()
        .unwrap();
    assert_eq!(out.code(), 125, "{out}");
    let out = Cmd::new(&berth)
        .args(["-H", "ssh://user@host", "ps"])
        .output()
        .unwrap();
    assert_ne!(out.code(), 0, "{out}");
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn run_exits_with_the_container_code_and_splits_streams() {
    skip_unless_root!();
    let Some(env) = CliEnv::start() else { return };
    let out = env.run(&[
        "run",
        "--rm",
        "-l",
        env.label(),
        IMAGE,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.code(), 3, "{out}");
    assert_eq!(out.stdout, "out\n", "{out}");
    assert_eq!(out.stderr, "err\n", "{out}");
    let out = env.run(&["run", "--rm", IMAGE, "true"]);
    assert_eq!(out.code(), 0, "{out}");
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn run_pipes_stdin_and_closes_it_at_eof() {
    skip_unless_root!();
    let Some(env) = CliEnv::start() else { return };
    let out = env
        .berth(["run", "-i", "--rm", IMAGE, "cat"])
        .stdin("hi\n")
        .output()
        .unwrap();
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout, "hi\n", "{out}");
    let data: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    let out = env
        .berth(["run", "-i", "--rm", IMAGE, "wc", "-l"])
        .stdin(data)
        .output()
        .unwrap();
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout.trim(), "2000", "{out}");
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn run_reports_daemon_and_exec_errors_with_docker_codes() {
    skip_unless_root!();
    let Some(env) = CliEnv::start() else { return };
    let out = env.run(&["run", "--rm", IMAGE, "/no/such/binary"]);
    assert_eq!(out.code(), 127, "{out}");
    assert!(out.stderr.contains("Error response from daemon"), "{out}");
    let out = env.run(&["run", "--rm", IMAGE, "/etc/passwd"]);
    assert_eq!(out.code(), 126, "{out}");
    let name = unique_id("dup");
    env.ok(&["create", "--name", &name, "-l", env.label(), IMAGE]);
    let out = env.run(&["run", "--name", &name, IMAGE, "true"]);
    assert_eq!(out.code(), 125, "{out}");
    assert!(
        out.stderr.starts_with("berth: Error response from daemon:")
            && out.stderr.contains("is already in use"),
        "{out}"
    );
    let out = env.run(&["run", "--rm", "berth-cli-test/nosuch:latest", "true"]);
    assert_eq!(out.code(), 125, "{out}");
    assert!(
        out.stderr
            .contains("Unable to find image 'berth-cli-test/nosuch:latest' locally"),
        "{out}"
    );
    env.ok(&["rm", &name]);
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn run_rm_removes_the_container_and_flags_reach_it() {
    skip_unless_root!();
    let Some(env) = CliEnv::start() else { return };
    let name = unique_id("rm");
    std::env::set_var("BERTH_CLI_FROM_ENV", "yes");
    let out = env
        .berth([
            "run",
            "--rm",
            "--name",
            &name,
            "-e",
            "A=1",
            "-e",
            "BERTH_CLI_FROM_ENV",
            "-w",
            "/tmp",
            "-u",
            "65534",
            "--entrypoint",
            "sh",
            IMAGE,
            "-c",
            "echo $A $BERTH_CLI_FROM_ENV $(pwd) $(id -u)",
        ])
        .env("BERTH_CLI_FROM_ENV", "yes")
        .output()
        .unwrap();
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout.trim(), "1 yes /tmp 65534", "{out}");
    // --rm: the daemon removes it; allow a moment for a daemon that removes asynchronously.
    wait_until("container removal", Duration::from_secs(10), || {
        let ps = env.ok(&["ps", "-a", "-q", "--filter", &format!("name={name}")]);
        ps.trim().is_empty().then_some(())
    })
    .unwrap();
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn detached_run_prints_the_id_and_logs_follow_until_exit() {
    skip_unless_root!();
    let Some(env) = CliEnv::start() else { return };
    let name = unique_id("logs");
    let id = env.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "-l",
        env.label(),
        IMAGE,
        "sh",
        "-c",
        "for i in 1 2 3; do echo line $i; sleep 0.2; done; echo oops >&2",
    ]);
    assert!(is_hex_id(id.trim(), 64), "{id:?}");
    let out = env
        .berth(["logs", "-f", &name])
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout, "line 1\nline 2\nline 3\n", "{out}");
    assert_eq!(out.stderr, "oops\n", "{out}");
    // The last two lines: "line 3" on stdout, "oops" on stderr.
    let out = env.run(&["logs", "--tail", "2", &name]);
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("line 3\n", "oops\n")
    );
    let ts = env.ok(&["logs", "-t", "--tail", "2", &name]);
    assert!(
        ts.len() > 30 && ts.as_bytes()[4] == b'-' && ts.contains("T") && ts.ends_with(" line 3\n"),
        "{ts:?}"
    );
    assert_eq!(env.ok(&["wait", &name]).trim(), "0");
    env.ok(&["rm", &name]);
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn exec_runs_commands_in_a_running_container() {
    skip_unless_root!();
    let Some(env) = CliEnv::start() else { return };
    let name = unique_id("exec");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "-l",
        env.label(),
        IMAGE,
        "sleep",
        "1000",
    ]);
    let out = env.run(&["exec", &name, "sh", "-c", "echo hi; exit 4"]);
    assert_eq!(out.code(), 4, "{out}");
    assert_eq!(out.stdout, "hi\n");
    let out = env.run(&[
        "exec",
        "-e",
        "X=1",
        "-w",
        "/tmp",
        "-u",
        "65534",
        &name,
        "sh",
        "-c",
        "echo $X $(pwd) $(id -u)",
    ]);
    assert_eq!(out.stdout.trim(), "1 /tmp 65534", "{out}");
    let out = env
        .berth(["exec", "-i", &name, "cat"])
        .stdin("piped\n")
        .output()
        .unwrap();
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout, "piped\n", "{out}");
    let out = env.run(&["exec", &name, "/no/such/binary"]);
    assert!(matches!(out.code(), 126 | 127), "{out}");
    let out = env.run(&["exec", "berth-cli-no-such-container", "true"]);
    assert_ne!(out.code(), 0, "{out}");
    assert!(
        out.stderr
            .contains("Error response from daemon: No such container: berth-cli-no-such-container"),
        "{out}"
    );
    env.ok(&["rm", "-f", &name]);
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn stop_kill_start_and_rm_print_names_and_change_state() {
    skip_unless_root!();
    let Some(env) = CliEnv::start() else { return };
    let name = unique_id("stop");
    // sh as PID 1 with a TERM trap, so stop ends it with SIGTERM, not the kill after -t.
    env.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "-l",
        env.label(),
        IMAGE,
        "sh",
        "-c",
        "trap 'exit 0' TERM; while :; do sleep 0.1; done",
    ]);
    assert_eq!(env.ok(&["stop", "-t", "5", &name]), format!("{name}\n"));
    let status = env.ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("name={name}"),
        "--format",
        "{{.Status}}",
    ]);
    assert!(status.starts_with("Exited (0)"), "{status:?}");
    assert_eq!(env.ok(&["start", &name]), format!("{name}\n"));
    assert_eq!(env.ok(&["kill", &name]), format!("{name}\n"));
    assert_eq!(env.ok(&["wait", &name]).trim(), "137");
    env.ok(&["start", &name]);
    let out = env.run(&["rm", &name]);
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("Error response from daemon"), "{out}");
    assert_eq!(env.ok(&["rm", "-f", &name]), format!("{name}\n"));
    let out = env.run(&["stop", "berth-cli-no-such-container"]);
    assert_eq!(out.code(), 1, "{out}");
    assert_eq!(
        out.stderr.trim(),
        "Error response from daemon: No such container: berth-cli-no-such-container"
    );
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn ps_filters_formats_and_quiet() {
    skip_unless_root!();
    let Some(env) = CliEnv::start() else { return };
    let a = unique_id("psa");
    let b = unique_id("psb");
    let id_a = env.ok(&[
        "create",
        "--name",
        &a,
        "-l",
        env.label(),
        "-l",
        "role=a",
        IMAGE,
        "true",
    ]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        &b,
        "-l",
        env.label(),
        IMAGE,
        "sleep",
        "1000",
    ]);
    let running = env.ok(&["ps", "-q", "--filter", &format!("name={b}")]);
    assert!(is_hex_id(running.trim(), 12), "{running:?}");
    let q = env.ok(&["ps", "-aq", "--filter", "label=role=a"]);
    assert_eq!(q.trim(), &id_a.trim()[..12]);
    assert_eq!(
        env.ok(&["ps", "-a", "--no-trunc", "-q", "--filter", "label=role=a"])
            .trim(),
        id_a.trim()
    );
    let f = env.ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("name={a}"),
        "--format",
        "{{.Names}} {{.State}} {{.Command}}",
    ]);
    assert_eq!(f, format!("{a} created \"true\"\n"));
    let t = env.ok(&[
        "ps",
        "--filter",
        &format!("name={b}"),
        "--format",
        "table {{.Names}}\t{{.Status}}",
    ]);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 2, "{t}");
    assert!(
        lines[0].starts_with("NAMES") && lines[0].ends_with("STATUS"),
        "{t}"
    );
    assert!(lines[1].starts_with(&b) && lines[1].contains("Up "), "{t}");
    let j = env.ok(&[
        "ps",
        "--filter",
        &format!("name={b}"),
        "--format",
        "{{json .}}",
    ]);
    let v: serde_json::Value = serde_json::from_str(j.trim()).unwrap();
    assert_eq!(v["Names"], b.as_str());
    assert_eq!(v["Image"], IMAGE);
    let table = env.ok(&["ps", "--filter", &format!("name={b}")]);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("CONTAINER ID   IMAGE") && header.ends_with("PORTS     NAMES"),
        "{table}"
    );
    // status=exited excludes the running and the created container.
    let exited = env.ok(&[
        "ps",
        "-a",
        "-q",
        "--filter",
        "status=exited",
        "--filter",
        &format!("name={b}"),
    ]);
    assert!(exited.trim().is_empty(), "{exited}");
    env.ok(&["rm", "-f", &a, &b]);
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn inspect_prints_indented_json_and_templates() {
    skip_unless_root!();
    let Some(env) = CliEnv::start() else { return };
    let name = unique_id("insp");
    env.ok(&[
        "create",
        "--name",
        &name,
        "-l",
        env.label(),
        "-e",
        "K=v",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        IMAGE,
        "echo",
        "x",
    ]);
    let out = env.ok(&["inspect", &name]);
    assert!(out.starts_with("[\n    {\n        \""), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["Name"], format!("/{name}"));
    assert_eq!(v[0]["HostConfig"]["Memory"], 64 * 1024 * 1024);
    assert_eq!(v[0]["HostConfig"]["NanoCpus"], 500_000_000);
    assert_eq!(v[0]["Config"]["Cmd"], serde_json::json!(["echo", "x"]));
    assert_eq!(
        env.ok(&["inspect", "--format", "{{.Name}} {{.State.Status}}", &name]),
        format!("/{name} created\n")
    );
    assert_eq!(
        env.ok(&["container", "inspect", "-f", "{{json .Config.Cmd}}", &name]),
        "[\"echo\",\"x\"]\n"
    );
    let img = env.ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Cmd}}",
        IMAGE,
    ]);
    assert_eq!(img, "[\"sh\"]\n");
    let out = env.run(&["inspect", "berth-cli-no-such-object"]);
    assert_eq!(out.code(), 1, "{out}");
    assert_eq!(out.stdout, "[]\n");
    assert_eq!(
        out.stderr.trim(),
        "Error: No such object: berth-cli-no-such-object"
    );
    env.ok(&["rm", &name]);
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn images_tag_save_load_history_and_rmi() {
    skip_unless_root!();
    let Some(env) = CliEnv::start() else { return };
    let images = env.ok(&["images"]);
    let header = images.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    );
    assert!(images.contains("berth-cli-test/busybox"), "{images}");
    let id = env.ok(&["images", "-q", IMAGE]);
    assert!(is_hex_id(id.trim(), 12), "{id:?}");
    let tag = format!("berth-cli-test/{}:v1", unique_id("tag").to_lowercase());
    env.ok(&["tag", IMAGE, &tag]);
    let rows = env.ok(&[
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}}",
        &tag,
    ]);
    assert_eq!(rows.trim(), format!("{tag} {}", id.trim()));
    let archive = env.dir().join("saved.tar");
    env.ok(&["save", "-o", archive.to_str().unwrap(), &tag]);
    assert!(std::fs::metadata(&archive).unwrap().len() > 100_000);
    let rmi = env.ok(&["rmi", &tag]);
    assert_eq!(rmi, format!("Untagged: {tag}\n"));
    let load = env.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(load.contains(&format!("Loaded image: {tag}")), "{load}");
    let hist = env.ok(&["history", &tag]);
    assert!(hist.starts_with("IMAGE"), "{hist}");
    let out = env.run(&["rmi", "berth-cli-test/nosuch:latest"]);
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("Error response from daemon"), "{out}");
    env.ok(&["image", "rm", &tag]);
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn pause_unpause_rename_top_and_stats() {
    skip_unless_root!();
    let Some(env) = CliEnv::start() else { return };
    let name = unique_id("misc");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "-l",
        env.label(),
        IMAGE,
        "sleep",
        "1000",
    ]);
    assert_eq!(env.ok(&["pause", &name]), format!("{name}\n"));
    let st = env.ok(&[
        "ps",
        "--filter",
        &format!("name={name}"),
        "--format",
        "{{.Status}}",
    ]);
    assert!(st.contains("(Paused)"), "{st}");
    assert_eq!(env.ok(&["unpause", &name]), format!("{name}\n"));
    let top = env.ok(&["top", &name]);
    assert!(
        top.starts_with("UID") && top.contains("sleep 1000"),
        "{top}"
    );
    let stats = env.ok(&["stats", "--no-stream", &name]);
    let lines: Vec<&str> = stats.lines().collect();
    assert!(lines[0].starts_with("CONTAINER ID   NAME"), "{stats}");
    assert!(
        lines[1].contains(&name) && lines[1].contains('%'),
        "{stats}"
    );
    let new = unique_id("renamed");
    env.ok(&["rename", &name, &new]);
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.Name}}", &new]).trim(),
        format!("/{new}")
    );
    env.ok(&["rm", "-f", &new]);
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn create_then_start_attached_gives_output_and_code() {
    skip_unless_root!();
    let Some(env) = CliEnv::start() else { return };
    let name = unique_id("start");
    env.ok(&[
        "create",
        "--name",
        &name,
        "-l",
        env.label(),
        IMAGE,
        "sh",
        "-c",
        "echo started; exit 2",
    ]);
    let out = env.run(&["start", "-a", &name]);
    assert_eq!(out.code(), 2, "{out}");
    assert_eq!(out.stdout, "started\n", "{out}");
    env.ok(&["rm", &name]);
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn version_and_info_show_client_and_server() {
    skip_unless_root!();
    let Some(env) = CliEnv::start() else { return };
    let v = env.ok(&["version"]);
    assert!(v.starts_with("Client:\n Version:"), "{v}");
    assert!(v.contains("\nServer:\n Engine:\n  Version:"), "{v}");
    let sv = env.ok(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert!(sv.trim().starts_with("1."), "{sv}");
    let info = env.ok(&["info"]);
    assert!(info.contains("Server:\n Containers: "), "{info}");
    let n = env.ok(&["info", "--format", "{{.Images}}"]);
    assert!(n.trim().parse::<u32>().unwrap() >= 1, "{n}");
}

/// `script` gives `berth` a terminal: checks raw mode end to end, the size sent at start,
/// the exit code through a TTY, and ctrl-p ctrl-q leaving the container running.
#[test]
#[ignore = "needs root: runs containers under berthd"]
fn run_it_gives_a_terminal_with_size_exit_code_and_detach_keys() {
    skip_unless_root!();
    let Some(env) = CliEnv::start() else { return };
    let berth = berth_tests::bins::require_workspace_binary("berth");
    let script = |input: &str, berth_args: &str| {
        let inner = format!(
            "stty rows 33 cols 77; BERTH_HOST={} {} {berth_args}",
            env.host(),
            berth.display()
        );
        Cmd::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "(sleep 1; printf '{input}'; sleep 2) | script -qec \"{inner}\" /dev/null"
            ))
            .timeout(Duration::from_secs(20))
            .output()
            .unwrap()
    };
    let out = script(
        "stty size; echo hi-$((40+2)); exit 3\\n",
        &format!("run -it --rm {IMAGE} sh"),
    );
    assert_eq!(out.code(), 3, "{out}");
    assert!(out.stdout.contains("33 77"), "{out}");
    assert!(out.stdout.contains("hi-42"), "{out}");
    let name = unique_id("detach");
    let out = script(
        "echo before\\n\\020\\021",
        &format!("run -it --name {name} -l {} {IMAGE} sh", env.label()),
    );
    assert_eq!(out.code(), 0, "{out}");
    let st = env.ok(&[
        "ps",
        "--filter",
        &format!("name={name}"),
        "--format",
        "{{.Status}}",
    ]);
    assert!(st.starts_with("Up "), "still running after detach: {st:?}");
    env.ok(&["rm", "-f", &name]);
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn attached_run_forwards_signals_to_the_container() {
    skip_unless_root!();
    let Some(env) = CliEnv::start() else { return };
    let mut running = env
        .berth([
            "run",
            "--rm",
            "-l",
            env.label(),
            IMAGE,
            "sh",
            "-c",
            "trap 'echo got-int; exit 3' INT; echo ready; while :; do sleep 0.1; done",
        ])
        .spawn()
        .unwrap();
    // Give the container time to start and install its trap.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!running.has_exited());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.pid() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = running.wait(Duration::from_secs(15)).unwrap();
    assert_eq!(out.code(), 3, "{out}");
    assert_eq!(out.stdout, "ready\ngot-int\n", "{out}");
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn tls_with_client_certificates_carries_requests_and_streams() {
    skip_unless_root!();
    let Some(env) = CliEnv::start_tls() else {
        return;
    };
    assert!(env.host().starts_with("tcp://"), "{}", env.host());
    let v = env.ok(&["version", "--format", "{{.Server.Version}}"]);
    assert!(!v.trim().is_empty());
    // A hijacked stream with stdin half-closed through TLS.
    let out = env
        .berth(["run", "-i", "--rm", IMAGE, "cat"])
        .stdin("over tls\n")
        .output()
        .unwrap();
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout, "over tls\n", "{out}");
    // Without a client certificate the daemon refuses the handshake.
    let berth = berth_tests::bins::require_workspace_binary("berth");
    let ca = env.dir().join("certs/ca.pem");
    let mut cmd = Cmd::new(&berth).args(["-H", env.host(), "--tlsverify", "--tlscacert"]);
    if ca.is_file() {
        cmd = cmd.arg(&ca);
        let out = cmd.arg("ps").output().unwrap();
        assert_eq!(out.code(), 1, "{out}");
    }
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn cp_copies_files_both_ways() {
    skip_unless_root!();
    let Some(env) = CliEnv::start() else { return };
    let name = unique_id("cp");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "-l",
        env.label(),
        IMAGE,
        "sleep",
        "1000",
    ]);
    let local = env.dir().join("note.txt");
    std::fs::write(&local, "from the host\n").unwrap();
    let first = env.run(&["cp", local.to_str().unwrap(), &format!("{name}:/tmp/")]);
    if berth_tests::cli::unsupported(&first) {
        eprintln!("skipping: the daemon does not serve the archive API yet: {first}");
        env.ok(&["rm", "-f", &name]);
        return;
    }
    assert_eq!(first.code(), 0, "{first}");
    env.ok(&[
        "cp",
        local.to_str().unwrap(),
        &format!("{name}:/tmp/renamed.txt"),
    ]);
    let out = env.ok(&["exec", &name, "cat", "/tmp/note.txt", "/tmp/renamed.txt"]);
    assert_eq!(out, "from the host\nfrom the host\n");
    let back = env.dir().join("passwd-copy");
    env.ok(&["cp", &format!("{name}:/etc/passwd"), back.to_str().unwrap()]);
    assert!(std::fs::read_to_string(&back).unwrap().starts_with("root:"));
    let dir = env.dir().join("etc-copy");
    env.ok(&["cp", &format!("{name}:/etc"), dir.to_str().unwrap()]);
    assert!(dir.join("passwd").is_file());
    let out = env.run(&[
        "cp",
        &format!("{name}:/no/such/file"),
        back.to_str().unwrap(),
    ]);
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("Error response from daemon"), "{out}");
    env.ok(&["rm", "-f", &name]);
}

/// berth and the real docker CLI, on the same daemon, print the same bytes and exit with the
/// same codes (for output that does not depend on the clock).
#[test]
#[ignore = "needs root: runs containers under berthd"]
fn output_matches_the_docker_cli() {
    skip_unless_root!();
    let Some(docker) = docker_cli() else {
        eprintln!("skipping: no docker CLI on this machine");
        return;
    };
    let Some(env) = CliEnv::start() else { return };
    let a = unique_id("same-a");
    let b = unique_id("same-b");
    env.ok(&[
        "create",
        "--name",
        &a,
        "-l",
        env.label(),
        "-e",
        "X=1",
        IMAGE,
        "sh",
        "-c",
        "echo a",
    ]);
    env.ok(&[
        "create",
        "--name",
        &b,
        "-l",
        env.label(),
        "--memory",
        "32m",
        IMAGE,
    ]);
    let filter = format!("label={}", env.label());
    let cases: Vec<Vec<&str>> = vec![
        vec!["ps", "-a", "-q", "--filter", &filter],
        vec!["ps", "-a", "--no-trunc", "-q", "--filter", &filter],
        vec![
            "ps",
            "-a",
            "--filter",
            &filter,
            "--format",
            "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.Status}}\t{{.Names}}\t{{.Labels}}",
        ],
        vec![
            "ps",
            "-a",
            "--filter",
            &filter,
            "--format",
            "{{.Names}} {{.Mounts}} {{.Size}}",
        ],
        vec!["inspect", &a],
        vec!["inspect", &a, &b],
        vec![
            "inspect",
            "-f",
            "{{json .Config.Cmd}} {{json .Config.Labels}}",
            &b,
        ],
        vec![
            "inspect",
            "-f",
            "{{.Config.Cmd}} {{.HostConfig.Memory}} {{.Config.Env}}",
            &a,
        ],
        vec![
            "container",
            "inspect",
            "-f",
            "{{range .Config.Env}}[{{.}}]{{end}}",
            &a,
        ],
        // Not the whole image: parallel tests tag it against an external daemon.
        vec![
            "image",
            "inspect",
            "-f",
            "{{.Id}} {{.Os}} {{json .Config.Cmd}}",
            IMAGE,
        ],
        vec![
            "images",
            "--format",
            "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}",
            IMAGE,
        ],
        vec!["images", "-q", IMAGE],
        vec!["inspect", "berth-cli-no-such-object"],
        vec!["rm", "berth-cli-no-such-container"],
        vec!["stop", "berth-cli-no-such-container"],
        vec!["logs", "berth-cli-no-such-container"],
        vec![
            "version",
            "--format",
            "{{.Server.Version}} {{.Server.APIVersion}}",
        ],
    ];
    let mut mismatches = Vec::new();
    for args in &cases {
        let ours = env.run(args);
        let theirs = Cmd::new(&docker)
            .arg("-H")
            .arg(env.host())
            .args(args)
            .output()
            .unwrap();
        let theirs_err = theirs.stderr.replace("docker", "berth");
        if ours.stdout != theirs.stdout || ours.stderr != theirs_err || ours.code() != theirs.code()
        {
            mismatches.push(format!(
                "{args:?}\n--- berth ({}) ---\n{}{}--- docker ({}) ---\n{}{}",
                ours.code(),
                ours.stdout,
                ours.stderr,
                theirs.code(),
                theirs.stdout,
                theirs_err
            ));
        }
    }
    env.ok(&["rm", &a, &b]);
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn push_pull_and_run_pulls_through_a_registry() {
    skip_unless_root!();
    let Some(env) = CliEnv::start() else { return };
    if !std::path::Path::new(berth_tests::registry::REGISTRY_BIN).is_file() {
        eprintln!("skipping: no docker-registry on this machine");
        return;
    }
    let registry = berth_tests::registry::Registry::start().unwrap();
    // 127.0.0.1 registries are insecure by default (plain HTTP), as with dockerd.
    let reference = format!(
        "{}/berth-cli/{}:v1",
        registry.host(),
        unique_id("bb").to_lowercase()
    );
    env.ok(&["tag", IMAGE, &reference]);
    let first = env.run(&["push", &reference]);
    assert_eq!(first.code(), 0, "{first}");
    let push = first.stdout;
    assert!(push.contains("digest: sha256:"), "{push}");
    env.ok(&["rmi", &reference]);
    let out = env.run(&["run", "--rm", &reference, "echo", "pulled"]);
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout.lines().last(), Some("pulled"), "{out}");
    assert!(
        out.stderr
            .contains(&format!("Unable to find image '{reference}' locally")),
        "{out}"
    );
    env.ok(&["rmi", &reference]);
    let pull = env.ok(&["pull", &reference]);
    assert!(pull.trim_end().ends_with(&reference), "{pull}");
    let out = env.run(&["pull", &format!("{}/berth-cli/nosuch:1", registry.host())]);
    assert_eq!(out.code(), 1, "{out}");
    env.ok(&["rmi", &reference]);
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn login_stores_credentials_that_push_and_pull_use() {
    skip_unless_root!();
    let Some(env) = CliEnv::start() else { return };
    if !std::path::Path::new(berth_tests::registry::REGISTRY_BIN).is_file()
        || !std::path::Path::new("/usr/bin/htpasswd").is_file()
    {
        eprintln!("skipping: needs docker-registry and htpasswd (apache2-utils)");
        return;
    }
    let registry =
        berth_tests::registry::Registry::start_with(berth_tests::registry::RegistryAuth::Basic {
            user: "alice".into(),
            password: "s3cret".into(),
        })
        .unwrap();
    let config = env.dir().join("docker-config");
    let berth = |args: &[&str], stdin: &str| {
        env.berth(args)
            .env("DOCKER_CONFIG", &config)
            .stdin(stdin.to_string())
            .output()
            .unwrap()
    };
    let host = registry.host();
    let out = berth(
        &["login", "-u", "alice", "--password-stdin", &host],
        "wrong\n",
    );
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("Error response from daemon"), "{out}");
    let out = berth(
        &["login", "-u", "alice", "--password-stdin", &host],
        "s3cret\n",
    );
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout.trim(), "Login Succeeded", "{out}");
    let saved = std::fs::read_to_string(config.join("config.json")).unwrap();
    assert!(saved.contains(&host), "{saved}");
    let reference = format!("{host}/berth-cli/private:v1");
    env.ok(&["tag", IMAGE, &reference]);
    let out = berth(&["push", &reference], "");
    assert_eq!(out.code(), 0, "{out}");
    env.ok(&["rmi", &reference]);
    let out = berth(&["pull", &reference], "");
    assert_eq!(out.code(), 0, "{out}");
    env.ok(&["rmi", &reference]);
    let out = berth(&["logout", &host], "");
    assert_eq!(
        out.stdout.trim(),
        format!("Removing login credentials for {host}")
    );
    let out = berth(&["pull", &reference], "");
    assert_eq!(out.code(), 1, "{out}");
}
