//! Root tests of the OCI runtime's command line with real containers.
//!
//! They drive [`Runtime::under_test`]: the workspace's `berth-runtime`, or whatever
//! `BERTH_TEST_RUNTIME` names (`BERTH_TEST_RUNTIME=runc` checks the tests themselves against
//! Debian's runc). Run with `sudo -E cargo test -p berth-tests --test runtime -- --include-ignored`.

use std::time::Duration;

use berth_tests::cgroup::{read_limit, CgroupMode};
use berth_tests::console::ConsoleSocket;
use berth_tests::spec::{cap_mask, DEFAULT_CAPS};
use berth_tests::{skip_unless_root, unique_id, Bundle, Runtime, SpecBuilder};
use oci_spec::runtime::Capability;

const WAIT: Duration = Duration::from_secs(20);

/// A container that idles until killed (SIGKILL; PID 1 ignores SIGTERM without a handler).
const IDLE: [&str; 2] = ["sleep", "300"];

fn bundle(spec: SpecBuilder) -> Bundle {
    Bundle::busybox(spec).expect("make busybox bundle")
}

/// Creates and starts an idle container, returning once `state` says it runs.
fn start_idle(rt: &Runtime, id: &str, b: &Bundle) {
    rt.create(id, b).assert_success();
    rt.start(id).assert_success();
    rt.wait_status(id, "running", WAIT).expect("container runs");
}

#[test]
#[ignore = "needs root: creates containers"]
fn lifecycle_create_start_state_kill_delete() {
    skip_unless_root!();
    let id = unique_id("lifecycle");
    let b = bundle(SpecBuilder::new(&id).args(IDLE));
    let rt = Runtime::under_test();

    rt.create(&id, &b).assert_success();
    let st = rt.state(&id).expect("state after create");
    assert_eq!(st.id, id);
    assert_eq!(st.status, "created");
    assert!(st.pid > 0, "created container has an init pid: {st:?}");
    assert!(
        std::path::Path::new(&format!("/proc/{}", st.pid)).exists(),
        "init process {} exists",
        st.pid
    );
    assert_eq!(st.bundle, b.path().canonicalize().unwrap());
    assert!(!st.oci_version.is_empty(), "ociVersion set: {st:?}");
    assert!(rt.list_ids().unwrap().contains(&id));

    rt.start(&id).assert_success();
    let running = rt.wait_status(&id, "running", WAIT).unwrap();
    assert_eq!(
        running.pid, st.pid,
        "start runs the process created by create"
    );

    rt.kill(&id, "KILL").assert_success();
    rt.wait_status(&id, "stopped", WAIT).unwrap();

    rt.delete(&id).assert_success();
    assert!(rt.state(&id).is_err(), "state of a deleted container fails");
    assert!(!rt.list_ids().unwrap().contains(&id));
    let mode = CgroupMode::detect();
    assert!(
        mode.dirs(&b.cgroups_path().unwrap()).is_empty(),
        "delete removes the container's cgroups"
    );
}

#[test]
#[ignore = "needs root: creates containers"]
fn kill_accepts_signal_numbers_and_names() {
    skip_unless_root!();
    let id = unique_id("killnum");
    let b = bundle(SpecBuilder::new(&id).args(IDLE));
    let rt = Runtime::under_test();
    start_idle(&rt, &id, &b);
    // containerd's shim sends the number, positionally.
    rt.kill(&id, "9").assert_success();
    rt.wait_status(&id, "stopped", WAIT).unwrap();
    rt.delete(&id).assert_success();

    let id2 = unique_id("killname");
    let b2 = bundle(SpecBuilder::new(&id2).args(IDLE));
    start_idle(&rt, &id2, &b2);
    rt.kill(&id2, "SIGKILL").assert_success();
    rt.wait_status(&id2, "stopped", WAIT).unwrap();
}

#[test]
#[ignore = "needs root: creates containers"]
fn delete_refuses_running_container_without_force() {
    skip_unless_root!();
    let id = unique_id("delrunning");
    let b = bundle(SpecBuilder::new(&id).args(IDLE));
    let rt = Runtime::under_test();
    start_idle(&rt, &id, &b);

    rt.delete(&id).assert_clean_failure(1);
    assert_eq!(
        rt.state(&id).unwrap().status,
        "running",
        "failed delete changes nothing"
    );
    rt.delete_force(&id).assert_success();
    assert!(!rt.list_ids().unwrap().contains(&id));
}

#[test]
#[ignore = "needs root: creates containers"]
fn run_prints_output_and_propagates_exit_code() {
    skip_unless_root!();
    let rt = Runtime::under_test();

    let id = unique_id("run-echo");
    let b = bundle(SpecBuilder::new(&id).args(["echo", "hello from berth"]));
    let out = rt.run(&id, &b);
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout, "hello from berth\n");
    assert!(
        !rt.list_ids().unwrap().contains(&id),
        "foreground run deletes the container"
    );

    let id = unique_id("run-exit3");
    let b = bundle(SpecBuilder::new(&id).shell("echo to-stderr >&2; exit 3"));
    let out = rt.run(&id, &b);
    assert_eq!(out.code(), 3, "{out}");
    assert!(out.stderr.contains("to-stderr"), "{out}");

    let id = unique_id("run-false");
    let b = bundle(SpecBuilder::new(&id).args(["false"]));
    assert_eq!(rt.run(&id, &b).code(), 1);
}

#[test]
#[ignore = "needs root: creates containers"]
fn run_reports_signal_death_as_128_plus_signal() {
    skip_unless_root!();
    let rt = Runtime::under_test();
    let id = unique_id("run-killed");
    let b = bundle(SpecBuilder::new(&id).args(IDLE));
    let running = rt.spawn_run(&id, &b, &[]);
    rt.wait_status(&id, "running", WAIT).unwrap();
    rt.kill(&id, "KILL").assert_success();
    let out = running
        .wait(WAIT)
        .expect("run returns after its container is killed");
    assert_eq!(out.code(), 128 + 9, "{out}");
}

/// `kill` races with the foreground `run` that reaps the container and deletes its state:
/// once the signal is delivered, `kill` must succeed even if the state is gone by the time it
/// would record it (runc does; containerd and Docker treat a failed kill as an error).
#[test]
#[ignore = "needs root: creates containers"]
fn kill_succeeds_when_foreground_run_deletes_state_meanwhile() {
    skip_unless_root!();
    let rt = Runtime::under_test();
    let mut failures = Vec::new();
    for i in 0..20 {
        let id = unique_id(&format!("killrace{i}"));
        let b = bundle(SpecBuilder::new(&id).args(IDLE));
        let running = rt.spawn_run(&id, &b, &[]);
        rt.wait_status(&id, "running", WAIT).unwrap();
        let kill = rt.kill(&id, "KILL");
        let out = running.wait(WAIT).expect("run returns after kill");
        assert_eq!(out.code(), 137, "{out}");
        if !kill.success() {
            failures.push(kill.stderr.trim().to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 20 kills failed: {failures:#?}",
        failures.len()
    );
}

#[test]
#[ignore = "needs root: creates containers"]
fn run_detach_leaves_container_running() {
    skip_unless_root!();
    let rt = Runtime::under_test();
    let id = unique_id("run-detach");
    let b = bundle(SpecBuilder::new(&id).args(IDLE));
    rt.cmd()
        .args(["run", "--detach", "--bundle"])
        .arg(b.path())
        .arg(&id)
        .stdout_to(rt.container_output_path(&id))
        .output()
        .unwrap()
        .assert_success();
    rt.track(&id, b.cgroups_path());
    assert_eq!(rt.state(&id).unwrap().status, "running");
}

#[test]
#[ignore = "needs root: creates containers"]
fn exec_runs_processes_in_a_running_container() {
    skip_unless_root!();
    let id = unique_id("exec");
    let b = bundle(SpecBuilder::new(&id).args(IDLE).hostname("exec-host"));
    let rt = Runtime::under_test();
    start_idle(&rt, &id, &b);

    let out = rt.exec(&id, &["hostname"]);
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout, "exec-host\n", "exec joins the uts namespace");

    let out = rt.exec(&id, &["sh", "-c", "echo partial; exit 7"]);
    assert_eq!(out.code(), 7, "{out}");
    assert_eq!(out.stdout, "partial\n");

    // Same pid namespace as init: init is pid 1 and is `sleep`.
    let out = rt.exec(&id, &["cat", "/proc/1/cmdline"]);
    assert_eq!(out.stdout.replace('\0', " ").trim(), "sleep 300", "{out}");

    let process = b
        .write_process_json(
            "exec-process.json",
            &["sh", "-c", "echo via-process-json; exit 4"],
        )
        .unwrap();
    let out = rt
        .cmd()
        .args(["exec", "--process"])
        .arg(&process)
        .arg(&id)
        .output()
        .unwrap();
    assert_eq!(out.code(), 4, "{out}");
    assert_eq!(out.stdout, "via-process-json\n");

    let out = rt.exec(&id, &["/no/such/binary"]);
    assert_ne!(out.code(), 0, "{out}");
    assert_eq!(
        rt.state(&id).unwrap().status,
        "running",
        "failed exec leaves init alone"
    );
}

#[test]
#[ignore = "needs root: creates containers"]
fn pause_and_resume_are_visible_in_state() {
    skip_unless_root!();
    let id = unique_id("pause");
    let b = bundle(SpecBuilder::new(&id).args(IDLE));
    let rt = Runtime::under_test();
    start_idle(&rt, &id, &b);

    rt.pause(&id).assert_success();
    assert_eq!(rt.state(&id).unwrap().status, "paused");
    let freezer = CgroupMode::detect().freezer_file(&b.cgroups_path().unwrap());
    if let Ok(s) = std::fs::read_to_string(&freezer) {
        assert!(
            s.trim() == "FROZEN" || s.trim() == "1",
            "{}: {s}",
            freezer.display()
        );
    }
    rt.resume(&id).assert_success();
    assert_eq!(rt.state(&id).unwrap().status, "running");
    let out = rt.exec(&id, &["true"]);
    assert_eq!(out.code(), 0, "resumed container accepts exec: {out}");
}

#[test]
#[ignore = "needs root: creates containers and cgroups"]
fn memory_limit_is_applied_to_the_cgroup() {
    skip_unless_root!();
    let id = unique_id("memlimit");
    let limit: i64 = 64 << 20;
    let b = bundle(SpecBuilder::new(&id).args(IDLE).memory_limit(limit));
    let rt = Runtime::under_test();
    rt.create(&id, &b).assert_success();

    let file = CgroupMode::detect().memory_limit_file(&b.cgroups_path().unwrap());
    assert_eq!(
        read_limit(&file),
        Some(limit as u64),
        "{} holds the limit",
        file.display()
    );
    // The init process is in that cgroup.
    let pid = rt.state(&id).unwrap().pid;
    let procs = std::fs::read_to_string(file.with_file_name("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l.trim() == pid.to_string()),
        "init {pid} in cgroup.procs: {procs}"
    );
}

#[test]
#[ignore = "needs root: creates containers and cgroups"]
fn pids_limit_is_applied_and_enforced() {
    skip_unless_root!();
    let id = unique_id("pidslimit");
    let b = bundle(SpecBuilder::new(&id).args(IDLE).pids_limit(8));
    let rt = Runtime::under_test();
    rt.create(&id, &b).assert_success();
    let mode = CgroupMode::detect();
    let cg = b.cgroups_path().unwrap();
    assert_eq!(read_limit(&mode.pids_limit_file(&cg)), Some(8));
    rt.start(&id).assert_success();

    // An exec'd shell forks 20 sleepers; busybox sh gives up at the first failed fork.
    let script = "i=0; while [ $i -lt 20 ]; do sleep 100 </dev/null >/dev/null 2>&1 & i=$((i+1)); done; echo forked-all";
    let out = rt.exec(&id, &["sh", "-c", script]);
    assert!(
        !out.stdout.contains("forked-all"),
        "20 forks under a limit of 8: {out}"
    );
    assert!(
        out.stderr.contains("fork"),
        "the shell saw a failed fork: {out}"
    );
    let n = std::fs::read_to_string(mode.procs_file(&cg))
        .unwrap()
        .lines()
        .count();
    assert!(
        (2..=8).contains(&n),
        "{n} processes in a cgroup limited to 8"
    );
}

#[test]
#[ignore = "needs root: creates containers with seccomp"]
fn seccomp_errno_rule_denies_mkdir() {
    skip_unless_root!();
    let id = unique_id("seccomp");
    let spec = SpecBuilder::new(&id)
        .shell("mkdir /tmp/made && echo created || echo denied; touch /tmp/file && echo touched")
        .seccomp_deny(&["mkdir", "mkdirat"], libc::EPERM);
    let b = bundle(spec);
    let rt = Runtime::under_test();
    let out = rt.run(&id, &b);
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.stdout.contains("denied"), "{out}");
    assert!(
        out.stdout.contains("touched"),
        "other syscalls still work: {out}"
    );
    assert!(out.stderr.contains("Operation not permitted"), "{out}");
    assert!(!b.rootfs().join("tmp/made").exists());
}

#[test]
#[ignore = "needs root: creates containers with a pty"]
fn terminal_container_sends_pty_master_over_console_socket() {
    skip_unless_root!();
    let id = unique_id("tty");
    let spec = SpecBuilder::new(&id)
        .terminal(true)
        .shell("tty; echo hello-from-pty; sleep 1");
    let b = bundle(spec);
    let rt = Runtime::under_test();
    let socket = ConsoleSocket::bind().unwrap();
    let socket_path = socket.path().to_str().unwrap().to_string();
    rt.create_with(&id, &b, &["--console-socket", &socket_path])
        .assert_success();
    let pty = socket
        .receive_master(WAIT)
        .expect("runtime sends the pty master");
    rt.start(&id).assert_success();
    let seen = pty.read_until("hello-from-pty", WAIT).unwrap();
    assert!(
        seen.contains("/dev/pts/"),
        "process's stdio is a pty: {seen:?}"
    );
    assert!(
        seen.contains("hello-from-pty\r\n"),
        "tty line discipline adds CR: {seen:?}"
    );
}

#[test]
#[ignore = "needs root: creates containers"]
fn terminal_requires_console_socket_when_detached() {
    skip_unless_root!();
    let id = unique_id("tty-nosock");
    let b = bundle(SpecBuilder::new(&id).terminal(true).args(["true"]));
    let rt = Runtime::under_test();
    rt.create(&id, &b).assert_clean_failure(1);
    assert!(!rt.list_ids().unwrap().contains(&id));
}

#[test]
#[ignore = "needs root: creates containers"]
fn readonly_rootfs_rejects_writes() {
    skip_unless_root!();
    let id = unique_id("rofs");
    let spec = SpecBuilder::new(&id)
        .readonly_rootfs(true)
        .shell("touch /newfile || echo rejected; echo ok > /dev/shm/x && echo tmpfs-ok");
    let b = bundle(spec);
    let rt = Runtime::under_test();
    let out = rt.run(&id, &b);
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.stdout.contains("rejected"), "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert!(
        out.stdout.contains("tmpfs-ok"),
        "mounts on top stay writable: {out}"
    );
    assert!(!b.rootfs().join("newfile").exists());
}

#[test]
#[ignore = "needs root: creates containers"]
fn hostname_and_environment_and_cwd_are_set() {
    skip_unless_root!();
    let id = unique_id("hostname");
    let spec = SpecBuilder::new(&id)
        .hostname("berth-box")
        .env("GREETING", "hi there")
        .cwd("/tmp")
        .shell("hostname; echo \"$GREETING\"; pwd; id -u");
    let b = bundle(spec);
    let rt = Runtime::under_test();
    let out = rt.run(&id, &b);
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout, "berth-box\nhi there\n/tmp\n0\n");
}

#[test]
#[ignore = "needs root: creates containers"]
fn user_is_applied() {
    skip_unless_root!();
    let id = unique_id("user");
    let b = bundle(SpecBuilder::new(&id).user(1000, 1000).args(["id"]));
    let rt = Runtime::under_test();
    let out = rt.run(&id, &b);
    assert_eq!(out.code(), 0, "{out}");
    assert!(
        out.stdout.starts_with("uid=1000(berth) gid=1000(berth)"),
        "{out}"
    );
}

#[test]
#[ignore = "needs root: creates containers"]
fn masked_and_readonly_paths_are_applied() {
    skip_unless_root!();
    let id = unique_id("masked");
    let script = "echo timer_list=$(wc -c < /proc/timer_list); \
                  echo acpi=$(ls /proc/acpi | wc -l); \
                  echo firmware=$(ls /sys/firmware | wc -l); \
                  grep ' /proc/sys ' /proc/mounts; \
                  echo 1 > /proc/sys/vm/drop_caches || echo sys-ro";
    let b = bundle(SpecBuilder::new(&id).shell(script));
    let rt = Runtime::under_test();
    let out = rt.run(&id, &b);
    assert_eq!(out.code(), 0, "{out}");
    // Which masked paths exist depends on the kernel's config; check those the host has.
    if std::path::Path::new("/proc/timer_list").exists() {
        assert!(
            out.stdout.contains("timer_list=0\n"),
            "/proc/timer_list masked: {out}"
        );
    }
    if std::path::Path::new("/proc/acpi").exists() {
        assert!(out.stdout.contains("acpi=0\n"), "/proc/acpi masked: {out}");
    }
    assert!(
        out.stdout.contains("firmware=0\n"),
        "/sys/firmware masked: {out}"
    );
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains(" /proc/sys "))
        .unwrap_or_else(|| panic!("/proc/sys mounted separately: {out}"));
    assert!(
        line.split_whitespace()
            .nth(3)
            .unwrap()
            .split(',')
            .any(|o| o == "ro"),
        "{line}"
    );
    assert!(out.stdout.contains("sys-ro"), "{out}");
}

fn cap_line(status: &str, name: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{name} in {status}"));
    let hex = line
        .split_whitespace()
        .nth(1)
        .expect("status line has a value");
    u64::from_str_radix(hex, 16).expect("capability mask is hex")
}

#[test]
#[ignore = "needs root: creates containers"]
fn capabilities_follow_the_spec() {
    skip_unless_root!();
    let rt = Runtime::under_test();

    let id = unique_id("caps-default");
    let b = bundle(SpecBuilder::new(&id).args(["cat", "/proc/self/status"]));
    let out = rt.run(&id, &b);
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(cap_line(&out.stdout, "CapEff:"), cap_mask(DEFAULT_CAPS));
    assert_eq!(cap_line(&out.stdout, "CapBnd:"), cap_mask(DEFAULT_CAPS));
    assert_eq!(cap_line(&out.stdout, "CapPrm:"), cap_mask(DEFAULT_CAPS));

    let id = unique_id("caps-custom");
    let caps = [Capability::Kill, Capability::SysAdmin, Capability::NetRaw];
    let b = bundle(
        SpecBuilder::new(&id)
            .capabilities(&caps)
            .args(["cat", "/proc/self/status"]),
    );
    let out = rt.run(&id, &b);
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(cap_line(&out.stdout, "CapEff:"), cap_mask(&caps));
    assert_eq!(cap_line(&out.stdout, "CapBnd:"), cap_mask(&caps));

    // Without CAP_SYS_ADMIN, mount is refused.
    let id = unique_id("caps-nomount");
    let b = bundle(SpecBuilder::new(&id).shell("mount -t tmpfs t /mnt 2>&1 || echo refused"));
    std::fs::create_dir_all(b.rootfs().join("mnt")).unwrap();
    let out = rt.run(&id, &b);
    assert!(out.stdout.contains("refused"), "{out}");
}

#[test]
#[ignore = "needs root: creates containers"]
fn namespaces_isolate_pid_and_network() {
    skip_unless_root!();
    let id = unique_id("ns");
    let b = bundle(SpecBuilder::new(&id).shell("echo pid=$$; ls /sys/class/net | tr '\\n' ' '"));
    let rt = Runtime::under_test();
    let out = rt.run(&id, &b);
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.stdout.contains("pid=1\n"), "{out}");
    assert_eq!(out.stdout.lines().nth(1).unwrap().trim(), "lo", "{out}");
}

// ---- bad input: a clear one-line error, no panic, nothing left behind ----

#[test]
#[ignore = "needs root: runtime state"]
fn missing_bundle_fails_cleanly() {
    skip_unless_root!();
    let rt = Runtime::under_test();
    let id = unique_id("nobundle");
    for verb in ["create", "run"] {
        let out = rt.exec_args(&[verb, "--bundle", "/nonexistent/berth-bundle", &id]);
        out.assert_clean_failure(1);
        assert!(!rt.list_ids().unwrap().contains(&id), "{verb} left state");
    }
}

#[test]
#[ignore = "needs root: runtime state"]
fn invalid_config_fails_cleanly() {
    skip_unless_root!();
    let rt = Runtime::under_test();
    let id = unique_id("badconfig");
    let b = bundle(SpecBuilder::new(&id));
    for bad in ["{not json", "", "{\"ociVersion\": 5}", "[]"] {
        b.write_raw_config(bad).unwrap();
        let out = rt
            .cmd()
            .arg("create")
            .arg("--bundle")
            .arg(b.path())
            .arg(&id)
            .output()
            .unwrap();
        out.assert_clean_failure(1);
        assert!(
            !rt.list_ids().unwrap().contains(&id),
            "config {bad:?} left state"
        );
    }
    // A bundle without config.json at all.
    std::fs::remove_file(b.config_path()).unwrap();
    rt.exec_args(&["create", "--bundle", b.path().to_str().unwrap(), &id])
        .assert_clean_failure(1);
    assert!(!rt.list_ids().unwrap().contains(&id));
    // A spec whose process does not exist: create or start fails, and the failure is reported.
    let id2 = unique_id("badargs");
    let b2 = bundle(SpecBuilder::new(&id2).args(["/no/such/program"]));
    let out = rt.run(&id2, &b2);
    out.assert_clean_failure(1);
    assert!(
        !rt.list_ids().unwrap().contains(&id2),
        "failed run left state"
    );
}

#[test]
#[ignore = "needs root: creates containers"]
fn duplicate_id_is_rejected_and_original_kept() {
    skip_unless_root!();
    let rt = Runtime::under_test();
    let id = unique_id("dup");
    let b = bundle(SpecBuilder::new(&id).args(IDLE));
    rt.create(&id, &b).assert_success();
    let before = rt.state(&id).unwrap();

    let other = bundle(SpecBuilder::new(&id).args(IDLE));
    let out = rt
        .cmd()
        .arg("create")
        .arg("--bundle")
        .arg(other.path())
        .arg(&id)
        .output()
        .unwrap();
    out.assert_clean_failure(1);
    assert!(
        out.stderr.contains("exist"),
        "message says it exists: {out}"
    );
    let after = rt.state(&id).unwrap();
    assert_eq!(before, after, "the original container is untouched");
    assert_eq!(rt.list_ids().unwrap(), vec![id.clone()]);
}

#[test]
#[ignore = "needs root: runtime state"]
fn unknown_id_fails_cleanly_for_every_verb() {
    skip_unless_root!();
    let rt = Runtime::under_test();
    let id = unique_id("ghost");
    for args in [
        vec!["state", &id],
        vec!["start", &id],
        vec!["kill", &id, "KILL"],
        vec!["delete", &id],
        vec!["pause", &id],
        vec!["resume", &id],
        vec!["exec", &id, "true"],
        vec!["ps", &id],
    ] {
        let out = rt.exec_args(&args);
        out.assert_clean_failure(1);
    }
    assert!(rt.list_ids().unwrap().is_empty());
}

#[test]
#[ignore = "needs root: runtime state"]
fn invalid_container_id_is_rejected() {
    skip_unless_root!();
    let rt = Runtime::under_test();
    let id = unique_id("okid");
    let b = bundle(SpecBuilder::new(&id).args(["true"]));
    for bad in ["../escape", "a/b", ".."] {
        rt.exec_args(&["create", "--bundle", b.path().to_str().unwrap(), bad])
            .assert_clean_failure(1);
    }
    assert!(rt.list_ids().unwrap().is_empty());
    assert!(!rt.root().parent().unwrap().join("escape").exists());
}

#[test]
#[ignore = "needs root: creates containers"]
fn list_shows_containers_in_runc_columns() {
    skip_unless_root!();
    let rt = Runtime::under_test();
    let id = unique_id("list");
    let b = bundle(SpecBuilder::new(&id).args(IDLE));
    rt.create(&id, &b).assert_success();
    let out = rt.list();
    out.assert_success();
    let mut lines = out.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[0], id);
    assert_eq!(row[1], rt.state(&id).unwrap().pid.to_string());
    assert_eq!(row[2], "created");
    assert_eq!(row[3], b.path().canonicalize().unwrap().to_str().unwrap());

    let q = rt.exec_args(&["list", "-q"]);
    assert_eq!(q.stdout.trim(), id, "{q}");
}

#[test]
#[ignore = "needs root: creates containers"]
fn ps_lists_container_processes() {
    skip_unless_root!();
    let rt = Runtime::under_test();
    let id = unique_id("ps");
    let b = bundle(SpecBuilder::new(&id).args(IDLE));
    start_idle(&rt, &id, &b);
    let pid = rt.state(&id).unwrap().pid;
    let out = rt.exec_args(&["ps", "--format", "json", &id]);
    out.assert_success();
    let pids: Vec<i64> = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(pids, vec![pid]);
}

// ---- what containerd's and Docker's shims rely on ----

#[test]
#[ignore = "needs root: creates containers"]
fn create_and_exec_write_pid_files() {
    skip_unless_root!();
    let id = unique_id("pidfile");
    let b = bundle(SpecBuilder::new(&id).args(IDLE));
    let rt = Runtime::under_test();
    let pid_file = b.path().join("init.pid");
    rt.create_with(&id, &b, &["--pid-file", pid_file.to_str().unwrap()])
        .assert_success();
    let written = std::fs::read_to_string(&pid_file).expect("create writes --pid-file");
    assert_eq!(written.trim(), rt.state(&id).unwrap().pid.to_string());
    rt.start(&id).assert_success();

    // containerd's exec: `exec --process P --detach --pid-file F ID`.
    let process = b
        .write_process_json("exec.json", &["sleep", "200"])
        .unwrap();
    let exec_pid_file = b.path().join("exec.pid");
    let out = rt
        .cmd()
        .args(["exec", "--process"])
        .arg(&process)
        .args(["--detach", "--pid-file"])
        .arg(&exec_pid_file)
        .arg(&id)
        .output()
        .unwrap();
    out.assert_success();
    let exec_pid = std::fs::read_to_string(&exec_pid_file)
        .expect("exec writes --pid-file")
        .trim()
        .to_string();
    let cmdline = std::fs::read_to_string(format!("/proc/{exec_pid}/cmdline")).unwrap();
    assert_eq!(cmdline.replace('\0', " ").trim(), "sleep 200");
    let ps = rt.exec_args(&["ps", "--format", "json", &id]);
    let pids: Vec<i64> = serde_json::from_str(ps.stdout.trim()).unwrap();
    assert!(pids.contains(&exec_pid.parse().unwrap()), "{ps}");
}

#[test]
#[ignore = "needs root: creates containers and cgroups"]
fn update_changes_the_memory_limit() {
    skip_unless_root!();
    let id = unique_id("update");
    let b = bundle(SpecBuilder::new(&id).args(IDLE).memory_limit(64 << 20));
    let rt = Runtime::under_test();
    start_idle(&rt, &id, &b);
    rt.exec_args(&["update", "--memory", "134217728", &id])
        .assert_success();
    let file = CgroupMode::detect().memory_limit_file(&b.cgroups_path().unwrap());
    assert_eq!(read_limit(&file), Some(128 << 20));
}

#[test]
#[ignore = "needs root: creates containers"]
fn events_stats_prints_one_json_snapshot() {
    skip_unless_root!();
    let id = unique_id("stats");
    let b = bundle(SpecBuilder::new(&id).args(IDLE).memory_limit(64 << 20));
    let rt = Runtime::under_test();
    start_idle(&rt, &id, &b);
    let out = rt.exec_args(&["events", "--stats", &id]);
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("one JSON object");
    assert_eq!(v["type"], "stats", "{out}");
    assert_eq!(v["id"], id.as_str(), "{out}");
    assert!(
        v["data"]["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "{out}"
    );
    assert_eq!(v["data"]["memory"]["usage"]["limit"], 64u64 << 20, "{out}");
    assert!(
        v["data"]["pids"]["current"].as_u64().unwrap_or(0) >= 1,
        "{out}"
    );
}

#[test]
#[ignore = "needs root: runtime state"]
fn log_json_records_the_error_for_the_shim() {
    skip_unless_root!();
    let base = Runtime::under_test();
    let log = base.root().join("runtime-log.json");
    let rt = Runtime::new(base.binary()).with_global_args([
        "--log".to_string(),
        log.to_string_lossy().into_owned(),
        "--log-format".to_string(),
        "json".to_string(),
    ]);
    let out = rt.exec_args(&["state", &unique_id("nolog")]);
    assert_ne!(out.code(), 0, "{out}");
    let text = std::fs::read_to_string(&log).expect("--log file written");
    let last: serde_json::Value = text
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("log lines are JSON"))
        .expect("an error line in the log");
    assert_eq!(last["level"], "error", "{text}");
    assert!(
        last["msg"].as_str().unwrap_or("").contains("not exist"),
        "{text}"
    );
}

/// Docker picks `docker run`'s exit code from the runtime's create error: 127 when it says
/// "executable file not found" (or "no such file or directory"), 126 for "permission denied".
#[test]
#[ignore = "needs root: runtime state"]
fn exec_failures_are_worded_as_runc_words_them() {
    skip_unless_root!();
    let rt = Runtime::under_test();
    for (args, wording) in [
        ("nonexistent", "executable file not found in $PATH"),
        ("/etc/passwd", "permission denied"),
        ("/etc", "permission denied"),
    ] {
        let id = unique_id("execfail");
        let b = bundle(SpecBuilder::new(&id).args([args]));
        let out = rt.create(&id, &b);
        assert_ne!(out.code(), 0, "{args}: {out}");
        assert!(out.stderr.contains(wording), "{args}: {out}");
        assert!(!rt.list_ids().unwrap().contains(&id), "{args} left state");
    }
}
