//! The default seccomp profile of berthd's containers.
//!
//! Docker's default profile is an allow-list of about 350 syscalls; this one is the equivalent
//! deny-list of what that profile refuses to an unprivileged container (kernel modules, kexec,
//! keyrings, clocks, mount and namespace calls, ptrace and process_vm_*, bpf, perf, swap,
//! reboot...), answered with EPERM as Docker does. Calls Docker allows with CAP_SYS_ADMIN or
//! CAP_SYS_PTRACE are allowed when the container has that capability.

use serde_json::{json, Value};

const DENIED: &[&str] = &[
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
];

const NEED_SYS_ADMIN: &[&str] = &[
    "mount",
    "umount2",
    "unshare",
    "setns",
    "pivot_root",
    "name_to_handle_at",
    "open_by_handle_at",
];

const NEED_SYS_PTRACE: &[&str] = &["ptrace", "process_vm_readv", "process_vm_writev"];

/// The profile for a container with capabilities `caps` (`CAP_...`).
pub fn default_profile(caps: &[String]) -> Value {
    let has = |c: &str| caps.iter().any(|x| x == c);
    let mut names: Vec<&str> = DENIED.to_vec();
    if !has("CAP_SYS_ADMIN") {
        names.extend(NEED_SYS_ADMIN);
    }
    if !has("CAP_SYS_PTRACE") {
        names.extend(NEED_SYS_PTRACE);
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    })
}
