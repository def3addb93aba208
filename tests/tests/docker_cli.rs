//! The real `docker` CLI (docker 28) against a real berthd: the acceptance cases of issue 4.
//!
//! Each test starts its own berthd in a temp dir ([`CliEnv`]) and points the docker binary at
//! it with `DOCKER_HOST`. Without a docker CLI on the machine the tests say so and return
//! (CI has one). Run: `cargo build --workspace --bins`, then
//! `sudo -E cargo test -p berth-tests --test docker_cli -- --include-ignored`.

use std::time::Duration;

use berth_tests::cli::{CliEnv, IMAGE};
use berth_tests::{skip_unless_root, unique_id, wait_until, Output};

fn start() -> Option<CliEnv> {
    berth_tests::cli::start_for_docker()
}

/// `docker <args>`; its output, whatever the exit code.
fn docker(env: &CliEnv, args: &[&str]) -> Output {
    env.docker_output(args)
}

/// `docker <args>`, asserting exit 0; returns stdout.
fn ok(env: &CliEnv, args: &[&str]) -> String {
    env.docker_ok(args)
}

/// `docker inspect -f <format> <name>`, trimmed.
fn inspect(env: &CliEnv, format: &str, name: &str) -> String {
    ok(env, &["inspect", "-f", format, name]).trim().to_string()
}

/// Waits (bounded) until `docker logs <name>` contains `needle`; returns the logs.
fn wait_for_log(env: &CliEnv, name: &str, needle: &str) -> String {
    wait_until(
        &format!("{needle:?} in the logs of {name}"),
        Duration::from_secs(15),
        || {
            let out = docker(env, &["logs", name]);
            let all = out.stdout + &out.stderr;
            all.contains(needle).then_some(all)
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}; logs: {}", docker(env, &["logs", name])))
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn docker_run_propagates_exit_codes_pipes_stdin_and_follows_logs() {
    skip_unless_root!();
    let Some(env) = start() else { return };
    let label = env.label();

    let out = docker(
        &env,
        &[
            "run",
            "--rm",
            "-l",
            label,
            IMAGE,
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    );
    assert_eq!(out.code(), 3, "{out}");
    assert_eq!(out.stdout, "out\n", "{out}");
    assert_eq!(out.stderr, "err\n", "{out}");

    let data: String = (0..500).map(|i| format!("line {i}\n")).collect();
    let out = env
        .docker(["run", "-i", "--rm", "-l", label, IMAGE, "cat"])
        .stdin(data.clone())
        .output()
        .unwrap();
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout, data, "stdin did not come back whole");

    // --rm containers are gone once the CLI returns.
    let filter = format!("label={label}");
    assert_eq!(ok(&env, &["ps", "-aq", "--filter", &filter]), "");

    // logs -f follows a running container and ends when it exits.
    let name = unique_id("dk-follow");
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "-l",
            label,
            IMAGE,
            "sh",
            "-c",
            "for i in 1 2 3 4; do echo tick$i; sleep 0.3; done; echo bye >&2; exit 4",
        ],
    );
    let out = docker(&env, &["logs", "-f", &name]);
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout, "tick1\ntick2\ntick3\ntick4\n", "{out}");
    assert_eq!(out.stderr, "bye\n", "{out}");
    assert_eq!(ok(&env, &["wait", &name]), "4\n");
    assert_eq!(
        inspect(&env, "{{.State.Status}} {{.State.ExitCode}}", &name),
        "exited 4"
    );
    // logs --tail counts the lines of both streams.
    let out = docker(&env, &["logs", "--tail", "2", &name]);
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("tick4\n", "bye\n"),
        "{out}"
    );
    ok(&env, &["rm", &name]);
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn docker_exec_gives_exit_codes_env_workdir_user_and_stdin() {
    skip_unless_root!();
    let Some(env) = start() else { return };
    let name = unique_id("dk-exec");
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "-l",
            env.label(),
            IMAGE,
            "sleep",
            "300",
        ],
    );
    let out = docker(&env, &["exec", &name, "sh", "-c", "echo in; exit 5"]);
    assert_eq!(out.code(), 5, "{out}");
    assert_eq!(out.stdout, "in\n", "{out}");
    for code in ["0", "1", "42"] {
        let out = docker(&env, &["exec", &name, "sh", "-c", &format!("exit {code}")]);
        assert_eq!(out.code().to_string(), code, "{out}");
    }
    let out = ok(
        &env,
        &[
            "exec",
            "-e",
            "FOO=bar",
            "-w",
            "/tmp",
            "-u",
            "1000",
            &name,
            "sh",
            "-c",
            "echo $FOO $(pwd) $(id -u)",
        ],
    );
    assert_eq!(out, "bar /tmp 1000\n");
    let out = env
        .docker(["exec", "-i", &name, "sh", "-c", "wc -l; exit 3"])
        .stdin("a\nb\nc\n")
        .output()
        .unwrap();
    assert_eq!(out.code(), 3, "{out}");
    assert_eq!(out.stdout.trim(), "3", "{out}");
    // The CLI sends its input and EOF at once, often before the exec process started: none
    // of it may be lost (the shim once dropped stdin closed before Start).
    for n in 1..=8 {
        let input: String = (0..n).map(|i| format!("{i}\n")).collect();
        let out = env
            .docker(["exec", "-i", &name, "wc", "-l"])
            .stdin(input)
            .output()
            .unwrap();
        assert_eq!(
            (out.code(), out.stdout.trim()),
            (0, n.to_string().as_str()),
            "{out}"
        );
    }
    // Detached exec: the process runs in the container.
    ok(
        &env,
        &["exec", "-d", &name, "sh", "-c", "echo done > /tmp/d"],
    );
    let seen = wait_until(
        "detached exec wrote /tmp/d",
        Duration::from_secs(10),
        || {
            let out = docker(&env, &["exec", &name, "cat", "/tmp/d"]);
            (out.code() == 0).then_some(out.stdout)
        },
    )
    .unwrap();
    assert_eq!(seen, "done\n");
    let out = docker(&env, &["exec", "berth-no-such-container", "true"]);
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        out.stderr
            .contains("No such container: berth-no-such-container"),
        "{out}"
    );
    ok(&env, &["rm", "-f", &name]);
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn docker_stop_kill_restart_and_attach_deliver_signals_and_codes() {
    skip_unless_root!();
    let Some(env) = start() else { return };
    let label = env.label();

    // A `sh` PID 1 with handlers sees SIGUSR1 from kill -s and SIGTERM from stop.
    let trap = unique_id("dk-trap");
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &trap,
            "-l",
            label,
            IMAGE,
            "sh",
            "-c",
            "trap 'echo got-usr1' USR1; trap 'echo got-term; exit 7' TERM; echo ready; \
             while :; do sleep 0.1; done",
        ],
    );
    wait_for_log(&env, &trap, "ready");
    assert_eq!(
        ok(&env, &["kill", "-s", "USR1", &trap]),
        format!("{trap}\n")
    );
    wait_for_log(&env, &trap, "got-usr1");
    assert_eq!(inspect(&env, "{{.State.Status}}", &trap), "running");
    let started = std::time::Instant::now();
    assert_eq!(ok(&env, &["stop", &trap]), format!("{trap}\n"));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "stop waited for the timeout although the container handles SIGTERM"
    );
    let logs = ok(&env, &["logs", &trap]);
    assert_eq!(logs, "ready\ngot-usr1\ngot-term\n");
    assert_eq!(
        inspect(&env, "{{.State.Status}} {{.State.ExitCode}}", &trap),
        "exited 7"
    );

    // kill (SIGKILL by default) gives 137.
    let sleeper = unique_id("dk-kill");
    ok(
        &env,
        &[
            "run", "-d", "--name", &sleeper, "-l", label, IMAGE, "sleep", "300",
        ],
    );
    ok(&env, &["kill", &sleeper]);
    assert_eq!(ok(&env, &["wait", &sleeper]), "137\n");

    // restart: a new process, the same container, the log kept.
    let rs = unique_id("dk-restart");
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &rs,
            "-l",
            label,
            IMAGE,
            "sh",
            "-c",
            "trap 'exit 0' TERM; echo start; while :; do sleep 0.1; done",
        ],
    );
    wait_for_log(&env, &rs, "start");
    let before = inspect(&env, "{{.State.Pid}} {{.State.StartedAt}}", &rs);
    assert_eq!(ok(&env, &["restart", &rs]), format!("{rs}\n"));
    let after = inspect(
        &env,
        "{{.State.Status}} {{.State.Pid}} {{.State.StartedAt}} {{.RestartCount}}",
        &rs,
    );
    let fields: Vec<&str> = after.split(' ').collect();
    assert_eq!(fields[0], "running", "{after}");
    assert_ne!(
        format!("{} {}", fields[1], fields[2]),
        before,
        "restart kept pid and start time"
    );
    assert_eq!(
        fields[3], "0",
        "docker restart does not count as a policy restart"
    );
    let logs = wait_for_log(&env, &rs, "start\nstart\n");
    assert_eq!(logs, "start\nstart\n");

    // attach: output of both streams and the exit code, after the CLI attached.
    let at = unique_id("dk-attach");
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &at,
            "-l",
            label,
            IMAGE,
            "sh",
            "-c",
            "while [ ! -e /tmp/go ]; do sleep 0.05; done; echo attached-out; \
             echo attached-err >&2; exit 6",
        ],
    );
    let attach = env.docker(["attach", &at]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    ok(&env, &["exec", &at, "touch", "/tmp/go"]);
    let out = attach.wait(Duration::from_secs(20)).unwrap();
    assert_eq!(out.code(), 6, "{out}");
    assert_eq!(out.stdout, "attached-out\n", "{out}");
    assert_eq!(out.stderr, "attached-err\n", "{out}");

    // attach with stdin to a container started with -i.
    let ai = unique_id("dk-attach-in");
    ok(
        &env,
        &[
            "run",
            "-d",
            "-i",
            "--name",
            &ai,
            "-l",
            label,
            IMAGE,
            "sh",
            "-c",
            "read line; echo got:$line; exit 2",
        ],
    );
    let out = env
        .docker(["attach", &ai])
        .stdin("hello\n")
        .output()
        .unwrap();
    // As with dockerd, the end of stdin (no StdinOnce) ends the attached output, so the
    // reply may not reach the CLI; the container got the line and the CLI its exit code.
    assert_eq!(out.code(), 2, "{out}");
    assert_eq!(ok(&env, &["logs", &ai]), "got:hello\n");
    ok(&env, &["rm", "-f", &trap, &sleeper, &rs, &at, &ai]);
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn docker_inspect_ps_filters_pause_stats_top_and_rename() {
    skip_unless_root!();
    let Some(env) = start() else { return };
    let label = env.label();
    let host_dir = env.dir().join("bind-src");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("f"), "from-the-host\n").unwrap();
    let bind = format!("{}:/data", host_dir.display());
    let web = unique_id("dk-web");
    let job = unique_id("dk-job");
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &web,
            "-l",
            label,
            "-l",
            "role=web",
            "-m",
            "64m",
            "-e",
            "MODE=test",
            "-v",
            &bind,
            IMAGE,
            "sh",
            "-c",
            "cat /data/f; exec sleep 300",
        ],
    );
    ok(
        &env,
        &[
            "run",
            "--name",
            &job,
            "-l",
            label,
            "-l",
            "role=batch",
            IMAGE,
            "true",
        ],
    );

    // inspect: State, Config, HostConfig, Mounts, NetworkSettings.
    let state = inspect(
        &env,
        "{{.State.Status}} {{.State.Running}} {{.State.Paused}} {{.State.ExitCode}}",
        &web,
    );
    assert_eq!(state, "running true false 0");
    let pid: u32 = inspect(&env, "{{.State.Pid}}", &web).parse().unwrap();
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "State.Pid {pid} is not a live process"
    );
    assert_eq!(
        inspect(
            &env,
            "{{.Name}} {{.Config.Image}} {{json .Config.Cmd}}",
            &web
        ),
        format!("/{web} {IMAGE} [\"sh\",\"-c\",\"cat /data/f; exec sleep 300\"]")
    );
    assert_eq!(
        inspect(&env, "{{index .Config.Labels \"role\"}}", &web),
        "web"
    );
    assert!(inspect(&env, "{{json .Config.Env}}", &web).contains("\"MODE=test\""));
    assert_eq!(inspect(&env, "{{.HostConfig.Memory}}", &web), "67108864");
    let mounts: serde_json::Value =
        serde_json::from_str(&inspect(&env, "{{json .Mounts}}", &web)).unwrap();
    assert_eq!(mounts.as_array().map(Vec::len), Some(1), "{mounts}");
    assert_eq!(mounts[0]["Type"], "bind", "{mounts}");
    assert_eq!(
        mounts[0]["Source"],
        host_dir.display().to_string(),
        "{mounts}"
    );
    assert_eq!(mounts[0]["Destination"], "/data", "{mounts}");
    assert_eq!(mounts[0]["RW"], true, "{mounts}");
    let net: serde_json::Value =
        serde_json::from_str(&inspect(&env, "{{json .NetworkSettings}}", &web)).unwrap();
    // On the default bridge with an address of its own, and dockerd 20.10's MAC for it.
    let ip = net["Networks"]["bridge"]["IPAddress"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(net["IPAddress"], ip, "{net}");
    assert!(
        net["Networks"]["bridge"]["MacAddress"]
            .as_str()
            .is_some_and(|m| m.starts_with("02:42:")),
        "{net}"
    );
    assert!(net["Ports"].is_object(), "{net}");
    assert_eq!(
        inspect(&env, "{{.State.Status}} {{.State.ExitCode}}", &job),
        "exited 0"
    );
    assert_eq!(ok(&env, &["logs", &web]), "from-the-host\n");

    // ps filters and --format.
    let ps = |extra: &[&str]| {
        let lf = format!("label={label}");
        let mut args = vec!["ps", "--filter", &lf, "--format", "{{.Names}}"];
        args.extend_from_slice(extra);
        let mut names: Vec<String> = ok(&env, &args).lines().map(str::to_string).collect();
        names.sort();
        names
    };
    let mut both = vec![web.clone(), job.clone()];
    both.sort();
    assert_eq!(ps(&[]), vec![web.clone()]);
    assert_eq!(ps(&["-a"]), both);
    assert_eq!(ps(&["--filter", "status=running"]), vec![web.clone()]);
    assert_eq!(ps(&["-a", "--filter", "status=exited"]), vec![job.clone()]);
    assert_eq!(
        ps(&["-a", "--filter", "label=role=batch"]),
        vec![job.clone()]
    );
    assert_eq!(ps(&["-a", "--filter", "label=role"]), both);
    assert_eq!(
        ps(&["-a", "--filter", &format!("name={job}")]),
        vec![job.clone()]
    );
    assert_eq!(ps(&["-a", "--filter", &format!("ancestor={IMAGE}")]), both);
    assert_eq!(
        ps(&["-a", "--filter", "ancestor=berth-no/such-image:1"]),
        Vec::<String>::new()
    );
    let line = ok(
        &env,
        &[
            "ps",
            "--filter",
            &format!("name={web}"),
            "--format",
            "{{.Names}}|{{.Image}}|{{.Command}}|{{.Status}}|{{.Label \"role\"}}|{{.Networks}}",
        ],
    );
    assert!(
        line.starts_with(&format!("{web}|{IMAGE}|\"sh -c cat /data/f; …\"|Up ")),
        "{line}"
    );
    assert!(line.trim_end().ends_with("|web|bridge"), "{line}");

    // pause and unpause, seen by inspect and the status filter.
    assert_eq!(ok(&env, &["pause", &web]), format!("{web}\n"));
    assert_eq!(
        inspect(&env, "{{.State.Status}} {{.State.Paused}}", &web),
        "paused true"
    );
    assert_eq!(ps(&["--filter", "status=paused"]), vec![web.clone()]);
    let out = docker(&env, &["exec", &web, "true"]);
    assert_ne!(out.code(), 0, "exec into a paused container: {out}");
    assert!(out.stderr.contains("is paused"), "{out}");
    assert_eq!(ok(&env, &["unpause", &web]), format!("{web}\n"));
    assert_eq!(
        inspect(&env, "{{.State.Status}} {{.State.Paused}}", &web),
        "running false"
    );

    // stats --no-stream, with the memory limit as the limit.
    let stats = ok(
        &env,
        &[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}}|{{.MemUsage}}|{{.PIDs}}",
            &web,
        ],
    );
    let f: Vec<&str> = stats.trim().split('|').collect();
    assert_eq!(f.len(), 3, "{stats}");
    assert_eq!(f[0], web, "{stats}");
    assert!(f[1].ends_with("/ 64MiB"), "{stats}");
    assert!(!f[1].starts_with("0B"), "no memory usage: {stats}");
    assert_eq!(f[2], "1", "{stats}");

    // top lists the container's process with its host pid.
    let top = ok(&env, &["top", &web]);
    let mut lines = top.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.starts_with("UID") && header.contains("PID") && header.contains("CMD"),
        "{top}"
    );
    assert!(
        lines
            .any(|l| l.contains("sleep 300")
                && l.split_whitespace().nth(1) == Some(&pid.to_string())),
        "{top}"
    );

    // rename keeps the container, frees the old name.
    let renamed = unique_id("dk-renamed");
    ok(&env, &["rename", &web, &renamed]);
    assert_eq!(inspect(&env, "{{.Name}}", &renamed), format!("/{renamed}"));
    let out = docker(&env, &["inspect", &web]);
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        out.stderr.contains(&format!("No such object: {web}")),
        "{out}"
    );
    let out = docker(&env, &["rename", &renamed, &job]);
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("is already in use"), "{out}");
    ok(&env, &["rm", "-f", &renamed, &job]);
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn docker_save_rmi_load_round_trip_keeps_the_image() {
    skip_unless_root!();
    let Some(env) = start() else { return };
    let tag = format!("berth-docker-test/rt:{}", unique_id("t"));
    ok(&env, &["tag", IMAGE, &tag]);
    let id = ok(&env, &["image", "inspect", "-f", "{{.Id}}", IMAGE]);
    let archive = env.dir().join("saved.tar");
    let archive_s = archive.display().to_string();
    ok(&env, &["save", "-o", &archive_s, IMAGE, &tag]);
    let len = std::fs::metadata(&archive).unwrap().len();
    assert!(len > 500_000, "archive of a busybox image is {len} bytes");

    let out = ok(&env, &["rmi", IMAGE, &tag]);
    assert!(out.contains(&format!("Untagged: {IMAGE}")), "{out}");
    assert!(out.contains(&format!("Untagged: {tag}")), "{out}");
    assert!(out.contains(&format!("Deleted: {}", id.trim())), "{out}");
    let out = docker(&env, &["image", "inspect", &tag]);
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("No such image"), "{out}");

    let out = ok(&env, &["load", "-i", &archive_s]);
    assert!(out.contains(&format!("Loaded image: {IMAGE}")), "{out}");
    assert!(out.contains(&format!("Loaded image: {tag}")), "{out}");
    assert_eq!(ok(&env, &["image", "inspect", "-f", "{{.Id}}", &tag]), id);
    let out = docker(&env, &["run", "--rm", &tag, "echo", "round-trip"]);
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout, "round-trip\n", "{out}");

    // load from stdin, over an image that is already there.
    let out = env
        .docker(["load"])
        .stdin(std::fs::read(&archive).unwrap())
        .output()
        .unwrap();
    assert_eq!(out.code(), 0, "{out}");
    assert!(
        out.stdout.contains(&format!("Loaded image: {tag}")),
        "{out}"
    );
    let out = ok(
        &env,
        &[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}}",
            &tag,
        ],
    );
    assert_eq!(out, format!("{tag} {}\n", &id.trim()[7..19]));
}
