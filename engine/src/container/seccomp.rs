//! Seccomp profiles in Docker's format (`--security-opt seccomp=PROFILE.json`, and the
//! built-in default), turned into the OCI runtime spec's `linux.seccomp` for a container's
//! capabilities, architecture and kernel.
//!
//! The built-in profile has Docker's semantics: an allow-list whose default answer is EPERM;
//! the calls that need a capability are allowed only with it; `clone` with namespace flags is
//! refused without CAP_SYS_ADMIN and `clone3` answers ENOSYS (so libc falls back to `clone`);
//! `personality` takes only its safe values; `socket(AF_VSOCK)` is refused. A syscall the
//! kernel gains later is refused until it is listed.

use serde::Deserialize;
use serde_json::{json, Value};

/// Calls every container may make (on any architecture that has them).
const ALLOWED: &str = "
    accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
    clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
    clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
    copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
    epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
    exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod
    fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr
    flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate
    ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat
    getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32
    getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority
    getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage
    getsid getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr
    getxattrat inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl
    io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup
    io_submit ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown
    lchown32 lgetxattr link linkat listen listmount listxattr listxattrat llistxattr _llseek
    lremovexattr lseek lsetxattr lstat lstat64 madvise map_shadow_stack membarrier memfd_create
    memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect
    mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
    mq_timedsend_time64 mq_unlink mremap mseal msgctl msgget msgrcv msgsnd msync munlock
    munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open openat openat2
    pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll
    ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
    pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv
    recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr removexattrat rename
    renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask
    rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64
    rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam sched_get_priority_max
    sched_get_priority_min sched_getscheduler sched_rr_get_interval
    sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
    sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
    semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32
    setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
    setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
    setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32
    setxattr setxattrat shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4
    sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statmount
    statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create
    timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64
    timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times
    tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat uretprobe utime utimensat
    utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
";

/// Calls allowed only with a capability, as Docker grants them.
const BY_CAPABILITY: &[(&str, &str)] = &[
    (
        "CAP_SYS_ADMIN",
        "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount
         mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname
         sethostname setns syslog umount umount2 unshare",
    ),
    ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
    ("CAP_SYS_BOOT", "reboot"),
    ("CAP_SYS_CHROOT", "chroot"),
    ("CAP_SYS_MODULE", "delete_module init_module finit_module"),
    ("CAP_SYS_PACCT", "acct"),
    (
        "CAP_SYS_PTRACE",
        "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
    ),
    ("CAP_SYS_RAWIO", "iopl ioperm"),
    (
        "CAP_SYS_TIME",
        "settimeofday stime clock_settime clock_settime64",
    ),
    ("CAP_SYS_TTY_CONFIG", "vhangup"),
    (
        "CAP_SYS_NICE",
        "get_mempolicy mbind set_mempolicy set_mempolicy_home_node",
    ),
    ("CAP_SYSLOG", "syslog"),
    ("CAP_BPF", "bpf"),
    ("CAP_PERFMON", "perf_event_open"),
];

/// Calls of one architecture family (Go's names, as Docker's profiles use them).
const BY_ARCH: &[(&str, &str)] = &[
    ("amd64 x32", "arch_prctl"),
    ("amd64 x32 x86", "modify_ldt"),
    (
        "arm arm64",
        "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
    ),
    ("ppc64le", "sync_file_range2 swapcontext"),
    (
        "s390 s390x",
        "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr",
    ),
    ("riscv64", "riscv_flush_icache"),
];

/// The namespace flags of `clone` (CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER |
/// NEWPID | NEWNET | NEWTIME is 0x7E020080; Docker's mask, without NEWTIME, is 0x7E020000).
const CLONE_NS_FLAGS: u64 = 0x7E02_0000;

/// `personality` values a container may set: PER_LINUX, PER_LINUX32, UNAME26,
/// UNAME26|PER_LINUX32, and the query 0xffffffff.
const PERSONALITY_OK: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The built-in profile, in Docker's format.
pub fn builtin() -> Value {
    let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let mut rules = vec![
        json!({"names": words(ALLOWED), "action": "SCMP_ACT_ALLOW"}),
        json!({"names": ["process_vm_readv", "process_vm_writev", "ptrace"],
               "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}}),
        json!({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]}),
    ];
    for v in PERSONALITY_OK {
        rules.push(json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]}));
    }
    for (arches, names) in BY_ARCH {
        rules.push(json!({"names": words(names), "action": "SCMP_ACT_ALLOW",
                          "includes": {"arches": words(arches)}}));
    }
    for (cap, names) in BY_CAPABILITY {
        rules.push(json!({"names": words(names), "action": "SCMP_ACT_ALLOW",
                          "includes": {"caps": [cap]}}));
    }
    rules.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": CLONE_NS_FLAGS, "op": "SCMP_CMP_MASKED_EQ"}],
        "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}}));
    rules.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 1, "value": CLONE_NS_FLAGS, "op": "SCMP_CMP_MASKED_EQ"}],
        "includes": {"arches": ["s390", "s390x"]}, "excludes": {"caps": ["CAP_SYS_ADMIN"]}}));
    rules.push(
        json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
        "excludes": {"caps": ["CAP_SYS_ADMIN"]}}),
    );
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
            {"architecture": "SCMP_ARCH_S390X", "subArchitectures": ["SCMP_ARCH_S390"]},
            {"architecture": "SCMP_ARCH_PPC64LE", "subArchitectures": ["SCMP_ARCH_PPC64", "SCMP_ARCH_PPC"]},
            {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null},
        ],
        "syscalls": rules,
    })
}

/// The profile for a container with capabilities `caps` (`CAP_...`): the built-in one.
pub fn default_profile(caps: &[String]) -> Value {
    static BUILTIN: std::sync::OnceLock<Profile> = std::sync::OnceLock::new();
    let p = BUILTIN
        .get_or_init(|| serde_json::from_value(builtin()).expect("the built-in profile parses"));
    convert(p, caps).expect("the built-in profile converts")
}

// ---- Docker's profile format ---------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Profile {
    default_action: String,
    default_errno_ret: Option<u32>,
    architectures: Option<Vec<String>>,
    arch_map: Option<Vec<ArchMap>>,
    syscalls: Vec<Syscall>,
    flags: Option<Vec<String>>,
    listener_path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ArchMap {
    architecture: String,
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Syscall {
    name: Option<String>,
    names: Option<Vec<String>>,
    action: String,
    errno_ret: Option<u32>,
    args: Option<Vec<Value>>,
    includes: Filter,
    excludes: Filter,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Filter {
    caps: Option<Vec<String>>,
    arches: Option<Vec<String>>,
    min_kernel: Option<String>,
}

/// This machine's architecture in Go's words and in libseccomp's.
fn native_arch() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
        "x86" => ("386", "SCMP_ARCH_X86"),
        "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
        "arm" => ("arm", "SCMP_ARCH_ARM"),
        "s390x" => ("s390x", "SCMP_ARCH_S390X"),
        "powerpc64" => ("ppc64le", "SCMP_ARCH_PPC64LE"),
        "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
        _ => ("", "SCMP_ARCH_NATIVE"),
    }
}

/// Whether the kernel runs x32 system calls (`CONFIG_X86_X32_ABI`): probed once with an
/// x32 `getpid`. Debian's kernels have it off, and then the x32 half of the filter is left
/// out: it can never match, and it costs libseccomp most of the filter's build time (about
/// 9 of 14 ms for Docker's profile).
fn kernel_has_x32() -> bool {
    static X32: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *X32.get_or_init(|| {
        if std::env::consts::ARCH != "x86_64" {
            return false;
        }
        const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;
        // SAFETY: getpid takes no arguments and changes nothing.
        let r = unsafe { libc::syscall(X32_SYSCALL_BIT | libc::SYS_getpid) };
        r >= 0
    })
}

/// The running kernel's (major, minor).
fn kernel_version() -> (u32, u32) {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    parse_version(&rel).unwrap_or((0, 0))
}

fn parse_version(s: &str) -> Option<(u32, u32)> {
    let mut it = s.trim().split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Converts the profile given as `--security-opt seccomp=<json>` (the CLI sends the file's
/// text, in Docker's format) for a container with `caps`, as dockerd does: rules whose
/// `includes` the container does not meet, or whose `excludes` it meets, are left out.
pub fn from_docker_profile(text: &str, caps: &[String]) -> Result<Value, String> {
    let p: Profile =
        serde_json::from_str(text).map_err(|e| format!("decoding seccomp profile failed: {e}"))?;
    convert(&p, caps)
}

fn convert(p: &Profile, caps: &[String]) -> Result<Value, String> {
    let (go_arch, scmp_arch) = native_arch();
    let kernel = kernel_version();
    if p.architectures.is_some() && p.arch_map.is_some() {
        return Err("'architectures' and 'archMap' were specified in the seccomp profile, use either 'architectures' or 'archMap'".into());
    }
    if p.listener_path.is_some() {
        return Err("seccomp notify listeners are not supported".into());
    }
    let mut arches: Vec<String> = p.architectures.clone().unwrap_or_default();
    for m in p.arch_map.iter().flatten() {
        if m.architecture == scmp_arch {
            arches.push(m.architecture.clone());
            arches.extend(m.sub_architectures.clone().unwrap_or_default());
        }
    }
    if !kernel_has_x32() {
        arches.retain(|a| a != "SCMP_ARCH_X32");
    }
    let has_cap = |list: &Option<Vec<String>>| {
        list.as_ref()
            .is_some_and(|l| l.iter().any(|c| caps.contains(c)))
    };
    let has_arch = |list: &Option<Vec<String>>| {
        list.as_ref()
            .is_some_and(|l| l.iter().any(|a| a == go_arch))
    };
    let kernel_at_least = |v: &Option<String>| -> Result<bool, String> {
        match v {
            None => Ok(true),
            Some(v) => parse_version(v)
                .map(|want| kernel >= want)
                .ok_or_else(|| format!("invalid kernel version: {v}")),
        }
    };
    let check_action = |a: &str| -> Result<(), String> {
        const ACTIONS: &[&str] = &[
            "SCMP_ACT_KILL",
            "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_KILL_THREAD",
            "SCMP_ACT_TRAP",
            "SCMP_ACT_ERRNO",
            "SCMP_ACT_TRACE",
            "SCMP_ACT_ALLOW",
            "SCMP_ACT_LOG",
        ];
        if ACTIONS.contains(&a) {
            Ok(())
        } else {
            Err(format!("invalid seccomp action: {a:?}"))
        }
    };
    check_action(&p.default_action)?;
    let mut out = Vec::new();
    for s in &p.syscalls {
        check_action(&s.action)?;
        let inc = &s.includes;
        if inc.caps.is_some() && !has_cap(&inc.caps) {
            continue;
        }
        if inc.arches.is_some() && !has_arch(&inc.arches) {
            continue;
        }
        if !kernel_at_least(&inc.min_kernel)? {
            continue;
        }
        let exc = &s.excludes;
        if has_cap(&exc.caps) || has_arch(&exc.arches) {
            continue;
        }
        if exc.min_kernel.is_some() && kernel_at_least(&exc.min_kernel)? {
            continue;
        }
        let names: Vec<String> = match (&s.names, &s.name) {
            (Some(n), _) if !n.is_empty() => n.clone(),
            (_, Some(n)) if !n.is_empty() => vec![n.clone()],
            _ => return Err("a syscall rule of the seccomp profile names no syscall".into()),
        };
        let mut rule = json!({"names": names, "action": s.action});
        if let Some(e) = s.errno_ret {
            rule["errnoRet"] = json!(e);
        }
        if let Some(args) = &s.args {
            let mut oci = Vec::new();
            for a in args {
                let op = a["op"].as_str().unwrap_or_default();
                if !op.starts_with("SCMP_CMP_") {
                    return Err(format!("invalid seccomp operator: {op:?}"));
                }
                let mut arg = json!({"index": a["index"], "value": a["value"], "op": op});
                if let Some(v2) = a["valueTwo"].as_u64().filter(|v| *v != 0) {
                    arg["valueTwo"] = json!(v2);
                }
                oci.push(arg);
            }
            rule["args"] = json!(oci);
        }
        out.push(rule);
    }
    let mut profile = json!({
        "defaultAction": p.default_action,
        "architectures": arches,
        "syscalls": out,
    });
    if let Some(e) = p.default_errno_ret {
        profile["defaultErrnoRet"] = json!(e);
    }
    if let Some(f) = &p.flags {
        profile["flags"] = json!(f);
    }
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_allowed(p: &Value) -> Vec<String> {
        p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "SCMP_ACT_ALLOW" && r["args"].is_null())
            .flat_map(|r| r["names"].as_array().unwrap().clone())
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn builtin_is_an_allow_list_that_follows_capabilities() {
        let p = default_profile(&["CAP_CHOWN".into()]);
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(p["defaultErrnoRet"], 1);
        let allowed = names_allowed(&p);
        assert!(allowed.contains(&"read".to_string()));
        assert!(!allowed.contains(&"mount".to_string()));
        assert!(!allowed.contains(&"keyctl".to_string()));
        assert!(!allowed.contains(&"unshare".to_string()));
        let clone3 = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["names"][0] == "clone3")
            .unwrap();
        assert_eq!(clone3["errnoRet"], 38);
        let admin = default_profile(&["CAP_SYS_ADMIN".into()]);
        let allowed = names_allowed(&admin);
        assert!(allowed.contains(&"mount".to_string()));
        assert!(allowed.contains(&"clone".to_string()));
        assert!(!admin.to_string().contains("\"errnoRet\":38"));
        if std::env::consts::ARCH == "x86_64" {
            let mut want = vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"];
            if kernel_has_x32() {
                want.push("SCMP_ARCH_X32");
            }
            assert_eq!(p["architectures"], json!(want));
            assert!(names_allowed(&p).contains(&"arch_prctl".to_string()));
        }
    }

    #[test]
    fn profiles_in_dockers_format_convert() {
        let text = r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"name": "chmod", "action": "SCMP_ACT_ERRNO"},
                         {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                          "includes": {"caps": ["CAP_NOPE"]}}]}"#;
        let p = from_docker_profile(text, &[]).unwrap();
        assert_eq!(p["syscalls"].as_array().unwrap().len(), 1);
        assert_eq!(p["syscalls"][0]["names"], json!(["chmod"]));
        assert!(from_docker_profile("{", &[]).is_err());
        assert!(from_docker_profile(r#"{"defaultAction": "NOPE"}"#, &[]).is_err());
        assert_eq!(parse_version("6.18.44-fc"), Some((6, 18)));
    }
}
