//! Issue 11, the container object complete, with the real docker CLI against a real berthd:
//! each create option checked by its effect inside the container (or refused with dockerd's
//! words), Docker's allow-list seccomp profile by what it refuses and allows.
//!
//! Run: `cargo build --workspace --bins`, then
//! `sudo -E cargo test -p berth-tests --test container -- --include-ignored`.

use std::path::{Path, PathBuf};

use berth_tests::cli::{CliEnv, IMAGE};
use berth_tests::{skip_unless_root, unique_id, Output};

fn start() -> Option<CliEnv> {
    berth_tests::cli::start_for_docker()
}

fn ok(env: &CliEnv, args: &[&str]) -> String {
    env.docker_ok(args)
}

/// `docker run --rm <opts> IMAGE sh -c <script>`, which must succeed; its stdout.
fn run_sh(env: &CliEnv, opts: &[&str], script: &str) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(opts);
    args.extend([IMAGE, "sh", "-c", script]);
    ok(env, &args)
}

/// A `docker run` that must be refused at create with `message` (dockerd's words).
#[track_caller]
fn refused(env: &CliEnv, opts: &[&str], message: &str) {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(opts);
    args.extend([IMAGE, "true"]);
    let out: Output = env.docker_output(&args);
    assert_ne!(out.code(), 0, "{opts:?} was accepted: {out}");
    assert!(
        out.stderr.contains(message),
        "{opts:?}: want {message:?}: {out}"
    );
    assert!(!out.stderr.contains("Unable to find image"), "{out}");
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn options_the_issue_saw_ignored_now_take_effect() {
    skip_unless_root!();
    let Some(env) = start() else { return };

    let out = run_sh(
        &env,
        &["--mount", "type=tmpfs,destination=/m,tmpfs-size=1m"],
        "grep ' /m ' /proc/mounts",
    );
    assert!(
        out.starts_with("tmpfs /m tmpfs rw,nosuid,nodev,noexec"),
        "{out}"
    );
    assert!(out.contains("size=1024k"), "{out}");

    let out = run_sh(
        &env,
        &["--device", "/dev/full:/dev/x"],
        "ls -l /dev/x; echo hi > /dev/x || echo write-failed",
    );
    assert!(out.starts_with("crw"), "{out}");
    assert!(out.contains("1,   7"), "{out}");
    assert!(
        out.contains("write-failed"),
        "/dev/full must answer ENOSPC: {out}"
    );

    // --privileged: the host's devices, every capability it has, no seccomp, no masked
    // paths, /sys read-write.
    use std::os::unix::fs::FileTypeExt;
    let host_devices: Vec<String> = std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_type()
                .is_ok_and(|t| t.is_char_device() || t.is_block_device())
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "console")
        .collect();
    let out = run_sh(
        &env,
        &["--privileged"],
        "echo $(ls /dev); grep -E 'CapEff|Seccomp:' /proc/self/status; grep ' /sys ' /proc/mounts; grep -c ' /proc/keys ' /proc/mounts || true",
    );
    let lines: Vec<&str> = out.lines().collect();
    let inside: Vec<&str> = lines[0].split_whitespace().collect();
    for d in &host_devices {
        assert!(inside.contains(&d.as_str()), "/dev/{d} missing: {out}");
    }
    // Every capability the host has: its bounding set.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim();
    assert!(lines[1].ends_with(bounding), "{out}");
    assert!(lines[2].ends_with("\t0"), "{out}");
    assert!(lines[3].contains(" rw,"), "{out}");
    assert_eq!(lines[4].trim(), "0", "{out}");

    let ncpu = std::thread::available_parallelism().unwrap().get();
    refused(
        &env,
        &["--cpus", "999"],
        &format!(
            "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        ),
    );

    // --network host: the host's UTS namespace and hostname.
    let host_uts = std::fs::read_link("/proc/self/ns/uts").unwrap();
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let out = run_sh(
        &env,
        &["--network", "host"],
        "readlink /proc/self/ns/uts; hostname",
    );
    assert_eq!(
        out,
        format!("{}\n{}", host_uts.display(), host_name),
        "{out}"
    );
    // With a hostname of its own, it gets a UTS namespace of its own (dockerd 20.10's way).
    let out = run_sh(&env, &["--network", "host", "-h", "own-name"], "hostname");
    assert_eq!(out, "own-name\n");

    let out = run_sh(
        &env,
        &[
            "--add-host",
            "db.example:10.1.2.3",
            "--dns",
            "192.0.2.53",
            "--dns-search",
            "corp.example",
            "--dns-option",
            "ndots:3",
            "-h",
            "web",
            "--domainname",
            "example.org",
        ],
        "cat /etc/hosts /etc/resolv.conf; hostname; cat /proc/sys/kernel/domainname",
    );
    assert!(out.contains("10.1.2.3\tdb.example\n"), "{out}");
    assert!(out.contains("web.example.org web\n"), "{out}");
    assert!(out.contains("search corp.example\n"), "{out}");
    assert!(out.contains("nameserver 192.0.2.53\n"), "{out}");
    assert!(
        !out.contains("nameserver 10."),
        "host resolvers replaced: {out}"
    );
    assert!(out.contains("options ndots:3\n"), "{out}");
    assert!(out.ends_with("web\nexample.org\n"), "{out}");

    // --network container:NAME shares that container's network and hostname; a missing
    // one is dockerd's 404 at start, never an image pull.
    let peer = unique_id("opt-peer");
    ok(&env, &["run", "-d", "--name", &peer, IMAGE, "sleep", "600"]);
    let theirs = ok(
        &env,
        &[
            "exec",
            &peer,
            "sh",
            "-c",
            "readlink /proc/self/ns/net; hostname",
        ],
    );
    let net = format!("container:{peer}");
    let mine = run_sh(
        &env,
        &["--network", &net],
        "readlink /proc/self/ns/net; hostname",
    );
    assert_eq!(mine, theirs);
    let ipc = format!("container:{peer}");
    let both = "readlink /proc/self/ns/ipc; readlink /proc/self/ns/pid";
    let mine = run_sh(&env, &["--ipc", &ipc, "--pid", &ipc], both);
    let theirs = ok(&env, &["exec", &peer, "sh", "-c", both]);
    assert_eq!(mine, theirs);
    refused(
        &env,
        &["--network", "container:no-such-peer"],
        "No such container: no-such-peer",
    );
    refused(
        &env,
        &["--ipc", "container:no-such-peer"],
        "No such container: no-such-peer",
    );
    ok(&env, &["rm", "-f", &peer]);
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn host_config_resources_and_modes_reach_the_container() {
    skip_unless_root!();
    let Some(env) = start() else { return };
    let v1 = Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists();
    let script = if v1 {
        "cd /sys/fs/cgroup; cat memory/memory.limit_in_bytes memory/memory.soft_limit_in_bytes \
         cpu/cpu.shares cpu/cpu.cfs_period_us cpu/cpu.cfs_quota_us cpuset/cpuset.cpus pids/pids.max; \
         grep oom_kill_disable memory/memory.oom_control; cat memory/memory.swappiness"
    } else {
        "cd /sys/fs/cgroup; cat memory.max memory.low cpu.weight cpu.max cpuset.cpus pids.max"
    };
    let mut opts = vec![
        "-m",
        "64m",
        "--memory-reservation",
        "32m",
        "--cpu-shares",
        "512",
        "--cpu-period",
        "50000",
        "--cpu-quota",
        "25000",
        "--cpuset-cpus",
        "0",
        "--pids-limit",
        "50",
    ];
    if v1 {
        opts.extend(["--oom-kill-disable", "--memory-swappiness", "10"]);
    }
    let out = run_sh(&env, &opts, script);
    let want = if v1 {
        "67108864\n33554432\n512\n50000\n25000\n0\n50\noom_kill_disable 1\n10\n"
    } else {
        "67108864\n33554432\n20\n25000 50000\n0\n50\n"
    };
    assert_eq!(out, want);

    let out = run_sh(
        &env,
        &[
            "--ulimit",
            "nofile=100:200",
            "--sysctl",
            "kernel.shmmax=12345",
            "--sysctl",
            "net.core.somaxconn=77",
            "--shm-size",
            "8m",
            "--oom-score-adj",
            "300",
            "--group-add",
            "20",
        ],
        "ulimit -n; ulimit -Hn; cat /proc/sys/kernel/shmmax /proc/sys/net/core/somaxconn; \
         df -k /dev/shm | tail -1 | awk '{print $2}'; cat /proc/self/oom_score_adj; id -G",
    );
    assert_eq!(out, "100\n200\n12345\n77\n8192\n300\n0 20\n");

    // Namespace modes.
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    let out = run_sh(&env, &["--ipc", "host"], "readlink /proc/self/ns/ipc");
    assert_eq!(out.trim(), host_ipc.to_string_lossy());
    let out = run_sh(
        &env,
        &["--pid", "host"],
        "readlink /proc/1/exe || true; ps | wc -l",
    );
    assert!(
        out.lines().last().unwrap().trim().parse::<u32>().unwrap() > 5,
        "{out}"
    );
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(run_sh(&env, &["--uts", "host"], "hostname"), host_name);
    let host_cg = std::fs::read_link("/proc/self/ns/cgroup").unwrap();
    let out = run_sh(
        &env,
        &["--cgroupns", "private"],
        "readlink /proc/self/ns/cgroup",
    );
    assert_ne!(out.trim(), host_cg.to_string_lossy());

    // Capabilities, security options, read-only, init, runtime, log driver.
    let out = run_sh(
        &env,
        &["--cap-drop", "ALL", "--cap-add", "KILL"],
        "grep CapEff /proc/self/status",
    );
    assert!(out.ends_with("0000000000000020\n"), "{out}");
    let out = run_sh(
        &env,
        &["--cap-add", "ALL", "--cap-drop", "MKNOD"],
        "grep CapEff /proc/self/status",
    );
    assert!(!out.ends_with("0000000000000020\n"), "{out}");
    let out = run_sh(
        &env,
        &["--security-opt", "no-new-privileges"],
        "grep NoNewPrivs /proc/self/status",
    );
    assert!(out.ends_with("\t1\n"), "{out}");
    let out = run_sh(
        &env,
        &["--security-opt", "systempaths=unconfined"],
        "grep -c ' /proc/keys ' /proc/mounts || true",
    );
    assert_eq!(out.trim(), "0");
    let out = run_sh(&env, &[], "grep -c ' /proc/keys ' /proc/mounts");
    assert_eq!(out.trim(), "1", "masked by default");
    let out = run_sh(
        &env,
        &[
            "--security-opt",
            "label=disable",
            "--security-opt",
            "apparmor=unconfined",
        ],
        "echo fine",
    );
    assert_eq!(out, "fine\n");
    let out = env.docker_output(&["run", "--rm", "--read-only", IMAGE, "touch", "/x"]);
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    let out = run_sh(&env, &["--init"], "cat /proc/1/cmdline | tr '\\0' ' '");
    assert!(out.starts_with("/sbin/docker-init -- "), "{out}");
    if Path::new("/usr/sbin/runc").exists() || Path::new("/usr/bin/runc").exists() {
        assert_eq!(
            run_sh(&env, &["--runtime", "runc"], "echo via runc"),
            "via runc\n"
        );
    }
    let name = unique_id("opt-nolog");
    ok(
        &env,
        &[
            "run",
            "--name",
            &name,
            "--log-driver",
            "none",
            IMAGE,
            "echo",
            "unseen",
        ],
    );
    let out = env.docker_output(&["logs", &name]);
    assert!(
        out.stderr
            .contains("configured logging driver does not support reading"),
        "{out}"
    );
    ok(&env, &["rm", &name]);

    // ConsoleSize: the terminal's first size, before any client resizes it.
    let name = unique_id("opt-console");
    let body = format!(
        r#"{{"Image":"{IMAGE}","Cmd":["sh","-c","sleep 0.3; stty size"],"Tty":true,"HostConfig":{{"ConsoleSize":[33,111]}}}}"#
    );
    let r = berth_tests::http::request(
        &env.socket().unwrap(),
        "POST",
        &format!("/v1.45/containers/create?name={name}"),
        Some(("application/json", body.as_bytes())),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{r:?}");
    let out = ok(&env, &["start", "-a", &name]);
    assert_eq!(out.trim(), "33 111");
    ok(&env, &["rm", &name]);

    // Refused with dockerd's words.
    refused(&env, &["--runtime", "foo"], "Unknown runtime specified foo");
    refused(
        &env,
        &["--storage-opt", "size=1G"],
        "--storage-opt is supported only for overlay over xfs with 'pquota' mount option",
    );
    refused(
        &env,
        &["--log-driver", "foo"],
        "error looking up logging plugin foo: plugin \"foo\" not found",
    );
    refused(&env, &["-m", "1k"], "Minimum memory limit allowed is 6MB");
    refused(
        &env,
        &["--memory-swap", "10m"],
        "You should always set the Memory limit when using Memoryswap limit, see usage",
    );
    refused(
        &env,
        &["--cpuset-cpus", "99"],
        "Requested CPUs are not available - requested 99",
    );
    refused(
        &env,
        &["--cpu-period", "500"],
        "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
    );
    refused(
        &env,
        &["--oom-score-adj", "2000"],
        "Invalid value 2000, range for oom score adj is [-1000, 1000]",
    );
    refused(
        &env,
        &["--device", "/dev/no-such-device"],
        "error gathering device information while adding custom device \"/dev/no-such-device\": no such file or directory",
    );
    refused(
        &env,
        &["--isolation", "hyperv"],
        "Invalid isolation: \"hyperv\" - linux only supports 'default'",
    );
    refused(
        &env,
        &["--uts", "host", "-h", "x"],
        "conflicting options: hostname and the UTS mode",
    );
}

/// Builds `syscalls`, a static helper that tries one system call and prints `NAME=ok` or
/// `NAME=<strerror>`; it is bound into containers read-only.
fn syscall_helper(dir: &Path) -> Option<PathBuf> {
    const SRC: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int child(void *arg) { (void)arg; return 0; }

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *w = argv[i];
        long r = -1;
        errno = 0;
        if (!strcmp(w, "clone-newuts")) {
            char *stack = malloc(1 << 16);
            r = clone(child, stack + (1 << 16), CLONE_NEWUTS | SIGCHLD, NULL);
            if (r > 0) waitpid(r, NULL, 0);
        } else if (!strcmp(w, "clone3")) {
            r = syscall(435, NULL, 0);
            if (r < 0 && errno != ENOSYS && errno != EPERM) r = 0;
        } else if (!strcmp(w, "keyctl")) {
            r = syscall(SYS_keyctl, 0, -3, 0);
        } else if (!strcmp(w, "personality-unsafe")) {
            r = personality(0x0040000);
        } else if (!strcmp(w, "personality-query")) {
            r = personality(0xffffffff);
        } else if (!strcmp(w, "fork")) {
            r = fork();
            if (r == 0) _exit(0);
            if (r > 0) waitpid(r, NULL, 0);
        }
        printf("%s=%s\n", w, r < 0 ? strerror(errno) : "ok");
    }
    return 0;
}
"#;
    let src = dir.join("syscalls.c");
    let bin = dir.join("syscalls");
    std::fs::write(&src, SRC).ok()?;
    let status = std::process::Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .ok()?;
    status.success().then_some(bin)
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn default_seccomp_profile_is_dockers_allow_list() {
    skip_unless_root!();
    let Some(env) = start() else { return };
    let Some(helper) = syscall_helper(env.dir()) else {
        eprintln!("skipping: no gcc with static glibc (apt-get install gcc libc6-dev)");
        return;
    };
    let bind = format!("{}:/t/syscalls:ro", helper.display());
    let calls = "/t/syscalls fork clone-newuts clone3 keyctl personality-unsafe personality-query";
    let denied = "Operation not permitted";

    let out = run_sh(&env, &["-v", &bind], calls);
    assert_eq!(
        out,
        format!(
            "fork=ok\nclone-newuts={denied}\nclone3=Function not implemented\nkeyctl={denied}\n\
             personality-unsafe={denied}\npersonality-query=ok\n"
        )
    );
    let out = run_sh(
        &env,
        &["-v", &bind],
        "unshare -U true 2>/dev/null && echo unshare-ok; mkdir -p /mnt/x; mount -t tmpfs t /mnt/x 2>/dev/null && echo mount-ok; echo done",
    );
    assert_eq!(out, "done\n");

    // An exec runs under the container's filter too, with the container's capabilities and
    // without no_new_privs (setuid programs keep working, as under Docker).
    let name = unique_id("seccomp-exec");
    ok(
        &env,
        &[
            "run", "-d", "--name", &name, "-v", &bind, IMAGE, "sleep", "600",
        ],
    );
    let out = ok(&env, &["exec", &name, "sh", "-c", calls]);
    assert!(
        out.contains(&format!("clone-newuts={denied}\n"))
            && out.contains(&format!("keyctl={denied}\n")),
        "{out}"
    );
    let status = "grep -E '^(CapBnd|CapEff|NoNewPrivs|Seccomp):' /proc/self/status";
    let exec = ok(&env, &["exec", &name, "sh", "-c", status]);
    assert!(
        exec.contains("NoNewPrivs:\t0\n") && exec.contains("Seccomp:\t2\n"),
        "{exec}"
    );
    let caps = |s: &str| {
        s.lines()
            .filter(|l| l.starts_with("Cap"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let init_caps = ok(
        &env,
        &[
            "exec",
            &name,
            "sh",
            "-c",
            "grep -E '^(CapBnd|CapEff):' /proc/1/status",
        ],
    );
    assert_eq!(
        caps(&exec),
        caps(&init_caps),
        "the exec has the container's capabilities"
    );
    ok(&env, &["rm", "-f", &name]);

    // CAP_SYS_ADMIN opens the namespace calls and clone3, as in Docker.
    let out = run_sh(&env, &["-v", &bind, "--cap-add", "SYS_ADMIN"], calls);
    assert!(out.contains("clone-newuts=ok\nclone3=ok\n"), "{out}");
    assert!(out.contains(&format!("keyctl={denied}")), "{out}");
    let out = run_sh(
        &env,
        &["--cap-add", "SYS_ADMIN"],
        "mkdir -p /mnt/x; mount -t tmpfs t /mnt/x && echo mount-ok",
    );
    assert_eq!(out, "mount-ok\n");

    // Unconfined and privileged containers have no filter.
    for opts in [
        vec!["-v", bind.as_str(), "--security-opt", "seccomp=unconfined"],
        vec!["-v", bind.as_str(), "--privileged"],
    ] {
        let out = run_sh(&env, &opts, calls);
        assert!(
            out.contains("keyctl=ok\npersonality-unsafe=ok\n"),
            "{opts:?}: {out}"
        );
    }

    // A profile in Docker's format, as the CLI sends it (the file's text).
    let profile = env.dir().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let out = env.docker_output(&[
        "run",
        "--rm",
        "--security-opt",
        &opt,
        IMAGE,
        "mkdir",
        "/newdir",
    ]);
    assert_ne!(out.code(), 0, "{out}");
    assert!(out.stderr.contains("Permission denied"), "{out}");
    let info = ok(&env, &["info", "--format", "{{json .SecurityOptions}}"]);
    assert!(info.contains("name=seccomp,profile=builtin"), "{info}");
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn docker_cp_both_ways_stays_inside_the_container() {
    skip_unless_root!();
    let Some(env) = start() else { return };
    let dir = env.dir().join("cp");
    std::fs::create_dir_all(dir.join("tree/sub")).unwrap();
    std::fs::write(dir.join("tree/a"), "alpha\n").unwrap();
    std::fs::write(dir.join("tree/sub/b"), vec![7u8; 300_000]).unwrap();
    std::os::unix::fs::symlink("a", dir.join("tree/link")).unwrap();
    std::os::unix::fs::chown(dir.join("tree/a"), Some(1234), Some(2345)).unwrap();
    let tree = dir.join("tree");
    let tree = tree.to_str().unwrap();

    let name = unique_id("cp");
    ok(&env, &["run", "-d", "--name", &name, IMAGE, "sleep", "600"]);
    // Into a running container, then back out.
    ok(&env, &["cp", tree, &format!("{name}:/tmp/")]);
    let out = ok(&env, &["exec", &name, "sh", "-c", "cat /tmp/tree/a; readlink /tmp/tree/link; wc -c < /tmp/tree/sub/b; stat -c %u:%g /tmp/tree/a"]);
    assert_eq!(
        out, "alpha\na\n300000\n0:0\n",
        "without -a root owns the files"
    );
    ok(&env, &["cp", "-a", tree, &format!("{name}:/tmp/owned")]);
    let out = ok(
        &env,
        &["exec", &name, "stat", "-c", "%u:%g", "/tmp/owned/a"],
    );
    assert_eq!(out, "1234:2345\n");
    let back = dir.join("back");
    ok(
        &env,
        &["cp", &format!("{name}:/tmp/tree"), back.to_str().unwrap()],
    );
    assert_eq!(std::fs::read_to_string(back.join("a")).unwrap(), "alpha\n");
    assert_eq!(std::fs::read(back.join("sub/b")).unwrap().len(), 300_000);
    assert_eq!(
        std::fs::read_link(back.join("link")).unwrap(),
        Path::new("a")
    );
    let out = env.docker_output(&[
        "cp",
        &format!("{name}:/no/such/file"),
        back.to_str().unwrap(),
    ]);
    assert!(
        out.stderr
            .contains("Could not find the file /no/such/file in container"),
        "{out}"
    );

    // Symlinks in the container resolve inside it: to `/` and to `../..`.
    ok(
        &env,
        &[
            "exec",
            &name,
            "sh",
            "-c",
            "mkdir -p /esc/in; ln -s / /esc/root; ln -s ../.. /esc/in/up",
        ],
    );
    let marker = unique_id("berth-cp-marker");
    let file = dir.join(&marker);
    std::fs::write(&file, "m").unwrap();
    for dest in ["/esc/root/", "/esc/in/up/"] {
        ok(
            &env,
            &["cp", file.to_str().unwrap(), &format!("{name}:{dest}")],
        );
        assert!(
            !Path::new("/").join(&marker).exists(),
            "{dest} wrote on the host"
        );
    }
    let out = ok(&env, &["exec", &name, "ls", "/"]);
    assert!(
        out.contains(&marker),
        "landed in the container's root: {out}"
    );
    let out = ok(
        &env,
        &["cp", &format!("{name}:/esc/root/etc/hostname"), "-"],
    );
    let inside = ok(&env, &["exec", &name, "cat", "/etc/hostname"]);
    assert!(
        out.contains(inside.trim()),
        "the container's /etc/hostname: {out}"
    );

    // A directory swapped for a symlink to `/` while copies run never leads outside.
    let swap = "mkdir -p /swap/real; i=0; while [ $i -lt 4000 ]; do \
         mv /swap/real /swap/tmp 2>/dev/null; ln -sfn / /swap/real; rm -f /swap/real; \
         mv /swap/tmp /swap/real 2>/dev/null; i=$((i+1)); done";
    ok(&env, &["exec", "-d", &name, "sh", "-c", swap]);
    for _ in 0..40 {
        let _ = env.docker_output(&["cp", file.to_str().unwrap(), &format!("{name}:/swap/real/")]);
        let _ = env.docker_output(&[
            "cp",
            &format!("{name}:/swap/real/"),
            dir.join("swapped-out").to_str().unwrap(),
        ]);
        assert!(
            !Path::new("/").join(&marker).exists(),
            "a swapped symlink led outside"
        );
    }
    ok(&env, &["rm", "-f", &name]);

    // A stopped container, both ways.
    let name = unique_id("cp-stopped");
    ok(&env, &["create", "--name", &name, IMAGE, "cat", "/data/a"]);
    ok(
        &env,
        &["cp", &format!("{tree}/."), &format!("{name}:/data")],
    );
    let out = ok(&env, &["start", "-a", &name]);
    assert_eq!(out, "alpha\n");
    let out = ok(&env, &["cp", &format!("{name}:/data/a"), "-"]);
    assert!(out.contains("alpha"), "{out}");
    ok(&env, &["rm", &name]);
    let leftover = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!leftover.contains("rootfs-lease"), "a cp left its mount");
}

/// Polls `docker inspect -f FORMAT` until it prints `want` (bounded by `secs`).
#[track_caller]
fn wait_inspect(env: &CliEnv, name: &str, format: &str, want: &str, secs: u64) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let got = env.docker_output(&["inspect", "-f", format, name]).stdout;
        if got.trim() == want || std::time::Instant::now() > deadline {
            return got.trim().to_string();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Processes whose command line names a path under `dir` (the test's shims).
fn processes_under(dir: &Path, program: &str) -> Vec<i32> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            args.first()
                .is_some_and(|a| a.ends_with(program.as_bytes()))
                && args
                    .iter()
                    .any(|a| a.windows(dir.len()).any(|w| w == dir.as_bytes()))
        })
        .collect()
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn restart_policies_follow_dockerd() {
    skip_unless_root!();
    let Some(mut env) = start() else { return };

    // on-failure:2: two restarts, then it stays exited; the events are die/start only.
    let name = unique_id("rp-fail");
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--restart",
            "on-failure:2",
            IMAGE,
            "sh",
            "-c",
            "exit 3",
        ],
    );
    let got = wait_inspect(
        &env,
        &name,
        "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}",
        "exited 2 3",
        20,
    );
    assert_eq!(got, "exited 2 3");
    // The CLI's `--until 0s` is the current second, whole: let it pass.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let events = ok(
        &env,
        &[
            "events",
            "--since",
            "60s",
            "--until",
            "0s",
            "--filter",
            &format!("container={name}"),
            "--format",
            "{{.Action}}",
        ],
    );
    assert_eq!(
        events.split_whitespace().collect::<Vec<_>>(),
        ["create", "start", "die", "start", "die", "start", "die"]
    );

    // always: restarting between runs, with the backoff growing; stop and kill end the loop.
    let name = unique_id("rp-always");
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--restart",
            "always",
            IMAGE,
            "sh",
            "-c",
            "exit 5",
        ],
    );
    let got = wait_inspect(
        &env,
        &name,
        "{{.State.Restarting}} {{.State.Running}}",
        "true true",
        10,
    );
    assert_eq!(got, "true true");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let count: u32 = ok(&env, &["inspect", "-f", "{{.RestartCount}}", &name])
        .trim()
        .parse()
        .unwrap();
    // 100, 200, 400, 800 ms...: a handful in two seconds, not hundreds.
    assert!((2..=8).contains(&count), "restart count {count} after 2 s");
    ok(&env, &["stop", &name]);
    let got = wait_inspect(&env, &name, "{{.State.Status}}", "exited", 5);
    assert_eq!(got, "exited");
    let before = ok(&env, &["inspect", "-f", "{{.RestartCount}}", &name]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(
        ok(&env, &["inspect", "-f", "{{.RestartCount}}", &name]),
        before,
        "stop ended the loop"
    );
    ok(&env, &["rm", &name]);

    let name = unique_id("rp-kill");
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--restart",
            "always",
            IMAGE,
            "sleep",
            "600",
        ],
    );
    ok(&env, &["kill", &name]);
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(
        ok(
            &env,
            &[
                "inspect",
                "-f",
                "{{.State.Status}} {{.RestartCount}}",
                &name
            ]
        ),
        "exited 0\n"
    );
    ok(&env, &["restart", &name]);
    assert_eq!(
        ok(&env, &["inspect", "-f", "{{.State.Status}}", &name]),
        "running\n"
    );
    ok(&env, &["rm", "-f", &name]);

    let out = env.docker_output(&["run", "-d", "--restart", "sometimes", IMAGE, "true"]);
    assert!(out.stderr.contains("invalid restart policy"), "{out}");

    // The whole stack stopped and started again: `always` and running `unless-stopped`
    // containers come back; a stopped `unless-stopped` and a policy-less one do not.
    let always = unique_id("rp-boot-always");
    let unless = unique_id("rp-boot-unless");
    let stopped = unique_id("rp-boot-stopped");
    let plain = unique_id("rp-boot-plain");
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &always,
            "--restart",
            "always",
            IMAGE,
            "sleep",
            "600",
        ],
    );
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &unless,
            "--restart",
            "unless-stopped",
            IMAGE,
            "sleep",
            "600",
        ],
    );
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &stopped,
            "--restart",
            "unless-stopped",
            IMAGE,
            "sleep",
            "600",
        ],
    );
    ok(&env, &["stop", "-t", "0", &stopped]);
    ok(
        &env,
        &["run", "-d", "--name", &plain, IMAGE, "sleep", "600"],
    );
    let pids: Vec<i32> = [&always, &unless, &plain]
        .iter()
        .map(|n| {
            ok(&env, &["inspect", "-f", "{{.State.Pid}}", n])
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    env.stop_daemon(std::time::Duration::from_secs(20))
        .expect("stop berthd");
    for pid in processes_under(env.dir(), "berth-shim")
        .into_iter()
        .chain(pids)
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    env.restart_daemon().expect("start berthd again");
    for (n, want) in [
        (&always, "running"),
        (&unless, "running"),
        (&stopped, "exited"),
        (&plain, "exited"),
    ] {
        let got = wait_inspect(&env, n, "{{.State.Status}}", want, 15);
        assert_eq!(got, want, "{n}");
    }
    let out = ok(&env, &["exec", &always, "echo", "back"]);
    assert_eq!(out, "back\n");
    ok(&env, &["rm", "-f", &always, &unless, &stopped, &plain]);
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn health_checks_and_oom_kills_are_reported() {
    skip_unless_root!();
    let Some(mut env) = start() else { return };
    let name = unique_id("hc");
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--health-cmd",
            "test -f /tmp/ok && echo fine",
            "--health-interval",
            "500ms",
            "--health-retries",
            "2",
            // Failures in the start period do not count while the container is starting.
            "--health-start-period",
            "30s",
            IMAGE,
            "sh",
            "-c",
            "sleep 2; touch /tmp/ok; sleep 3; rm /tmp/ok; sleep 600",
        ],
    );
    assert_eq!(
        ok(&env, &["inspect", "-f", "{{.State.Health.Status}}", &name]),
        "starting\n"
    );
    assert_eq!(
        wait_inspect(&env, &name, "{{.State.Health.Status}}", "healthy", 15),
        "healthy"
    );
    let ps = ok(
        &env,
        &[
            "ps",
            "--filter",
            "health=healthy",
            "--format",
            "{{.Names}} {{.Status}}",
        ],
    );
    assert!(
        ps.contains(&format!("{name} Up")) && ps.contains("(healthy)"),
        "{ps}"
    );
    let out = ok(
        &env,
        &[
            "inspect",
            "-f",
            "{{range .State.Health.Log}}{{.Output}}{{end}}",
            &name,
        ],
    );
    assert!(out.contains("fine"), "probe output kept: {out}");
    assert_eq!(
        wait_inspect(
            &env,
            &name,
            "{{.State.Health.Status}} {{.State.Health.FailingStreak}}",
            "unhealthy 2",
            15
        ),
        "unhealthy 2"
    );
    let n: usize = ok(&env, &["inspect", "-f", "{{len .State.Health.Log}}", &name])
        .trim()
        .parse()
        .unwrap();
    assert!(n <= 5, "only the last five results: {n}");

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let events = ok(
        &env,
        &[
            "events",
            "--since",
            "120s",
            "--until",
            "0s",
            "--filter",
            &format!("container={name}"),
            "--filter",
            "event=health_status",
            "--format",
            "{{.Action}}",
        ],
    );
    // Starting until the first success (the failures before it fell in the start period),
    // then failures count again.
    assert_eq!(events, "health_status: healthy\nhealth_status: unhealthy\n");

    // Health checks survive a restart of berthd.
    env.kill_daemon().expect("kill -9 berthd");
    env.restart_daemon().expect("start berthd again");
    assert_eq!(
        ok(&env, &["inspect", "-f", "{{.State.Health.Status}}", &name]),
        "unhealthy\n"
    );
    ok(&env, &["exec", &name, "touch", "/tmp/ok"]);
    assert_eq!(
        wait_inspect(&env, &name, "{{.State.Health.Status}}", "healthy", 15),
        "healthy"
    );
    ok(&env, &["rm", "-f", &name]);

    // An image's HEALTHCHECK, and --no-healthcheck.
    let img = format!("{}:{}", unique_id("hc-img"), "v1");
    let name = unique_id("hc-base");
    ok(&env, &["create", "--name", &name, IMAGE, "true"]);
    ok(
        &env,
        &[
            "commit",
            "--change",
            "HEALTHCHECK --interval=300ms CMD true",
            &name,
            &img,
        ],
    );
    ok(&env, &["rm", &name]);
    let name = unique_id("hc-from-image");
    ok(&env, &["run", "-d", "--name", &name, &img, "sleep", "600"]);
    assert_eq!(
        wait_inspect(&env, &name, "{{.State.Health.Status}}", "healthy", 10),
        "healthy"
    );
    ok(&env, &["rm", "-f", &name]);
    let name = unique_id("hc-none");
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--no-healthcheck",
            &img,
            "sleep",
            "600",
        ],
    );
    assert_eq!(
        ok(&env, &["inspect", "-f", "{{.State.Health}}", &name]),
        "<nil>\n"
    );
    ok(&env, &["rm", "-f", &name]);
    ok(&env, &["rmi", &img]);

    // An OOM kill sets OOMKilled and sends the `oom` event.
    if Path::new("/sys/fs/cgroup/memory/memory.oom_control").exists()
        || Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    {
        let name = unique_id("oom");
        let out = env.docker_output(&[
            "run",
            "--name",
            &name,
            "-m",
            "8m",
            "--memory-swap",
            "8m",
            IMAGE,
            "sh",
            "-c",
            "x=$(head -c 64m /dev/zero | tr '\\0' a); echo survived",
        ]);
        assert_eq!(out.code(), 137, "{out}");
        assert_eq!(
            wait_inspect(&env, &name, "{{.State.OOMKilled}}", "true", 5),
            "true"
        );
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let events = ok(
            &env,
            &[
                "events",
                "--since",
                "60s",
                "--until",
                "0s",
                "--filter",
                &format!("container={name}"),
                "--filter",
                "event=oom",
                "--format",
                "{{.Action}}",
            ],
        );
        // One event per OOM of the cgroup: the kernel may have to kill more than once.
        assert!(
            !events.is_empty() && events.lines().all(|l| l == "oom"),
            "{events}"
        );
        ok(&env, &["rm", &name]);
    }
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn diff_export_commit_and_update_read_back() {
    skip_unless_root!();
    let Some(env) = start() else { return };
    let name = unique_id("dec");
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
            "echo x > /newfile; echo y >> /etc/passwd; rm /bin/ls; mkdir -p /tmp/a/b; sleep 600",
        ],
    );
    let want =
        "C /bin\nD /bin/ls\nC /etc\nC /etc/passwd\nA /newfile\nC /tmp\nA /tmp/a\nA /tmp/a/b\n";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut diff = String::new();
    while std::time::Instant::now() < deadline {
        diff = ok(&env, &["diff", &name]);
        if diff == want {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(diff, want);

    // Export: the image and the changes, no mounts (no /proc contents).
    let tar = env.dir().join("export.tar");
    ok(&env, &["export", "-o", tar.to_str().unwrap(), &name]);
    let listing = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(listing.lines().any(|l| l == "newfile"), "{listing}");
    assert!(listing.lines().any(|l| l == "bin/busybox"), "{listing}");
    assert!(
        !listing.lines().any(|l| l == "bin/ls"),
        "deleted files stay out"
    );
    assert!(
        !listing
            .lines()
            .any(|l| l.starts_with("proc/") && l.len() > 5),
        "no /proc contents"
    );

    // Commit with a message, an author and a change; the image runs.
    let img = format!("{}:v1", unique_id("committed"));
    ok(
        &env,
        &[
            "commit",
            "-m",
            "made by a test",
            "-a",
            "Berth Tests",
            "--change",
            "CMD [\"cat\", \"/newfile\"]",
            &name,
            &img,
        ],
    );
    assert_eq!(ok(&env, &["run", "--rm", &img]), "x\n");
    let out = env.docker_output(&["run", "--rm", &img, "ls", "/"]);
    assert_ne!(out.code(), 0, "/bin/ls was deleted in the commit: {out}");
    assert_eq!(
        ok(
            &env,
            &[
                "image",
                "inspect",
                "-f",
                "{{.Comment}}|{{.Author}}|{{json .Config.Cmd}}",
                &img
            ]
        ),
        "made by a test|Berth Tests|[\"cat\",\"/newfile\"]\n"
    );
    let hist = ok(
        &env,
        &["history", "--no-trunc", "--format", "{{.Comment}}", &img],
    );
    assert!(hist.starts_with("made by a test\n"), "{hist}");
    // --pause (the default) leaves the container running; a stopped container commits too.
    assert_eq!(
        ok(&env, &["inspect", "-f", "{{.State.Status}}", &name]),
        "running\n"
    );

    // Update: applied to the running container's cgroups and read back.
    ok(
        &env,
        &[
            "update",
            "--memory",
            "100m",
            "--memory-swap",
            "200m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "77",
            "--restart",
            "on-failure:3",
            &name,
        ],
    );
    let v1 = Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists();
    let read = if v1 {
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/pids/pids.max"
    } else {
        "cat /sys/fs/cgroup/memory.max; cut -d' ' -f1 /sys/fs/cgroup/cpu.max; cat /sys/fs/cgroup/pids.max"
    };
    assert_eq!(
        ok(&env, &["exec", &name, "sh", "-c", read]),
        "104857600\n50000\n77\n"
    );
    assert_eq!(
        ok(&env, &["inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}", &name]),
        "104857600 209715200 500000000 77 on-failure:3\n"
    );
    // A container in the host's UTS namespace updates too (its hostname is no conflict).
    let uts = unique_id("dec-uts");
    ok(
        &env,
        &[
            "run", "-d", "--name", &uts, "--uts", "host", IMAGE, "sleep", "600",
        ],
    );
    ok(&env, &["update", "--pids-limit", "40", &uts]);
    ok(&env, &["rm", "-f", &uts]);
    let out = env.docker_output(&["update", "--memory", "300m", &name]);
    assert!(
        out.stderr
            .contains("Memory limit should be smaller than already set memoryswap limit"),
        "{out}"
    );
    ok(&env, &["rm", "-f", &name]);
    ok(&env, &["rmi", &img]);
}
