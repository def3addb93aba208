//! The container's seccomp filter for `exec`, compiled once per container.
//!
//! libseccomp needs several milliseconds to turn an allow-list such as Docker's (hundreds of
//! rules, two architectures) into BPF. The container's init pays that once, inside
//! libcontainer; an exec would pay it every time. So the first exec compiles the filter on the
//! host side into `<state>/exec-seccomp.bpf` (written whole, then renamed), and every exec
//! loads the program from there right before execve (see `executor.rs`).
//!
//! The rules are read as libcontainer reads them (after the bundle's adaptation, see
//! `bundle.rs`: a `SCMP_CMP_MASKED_EQ` carries its mask in `valueTwo`), so the program is
//! the one libcontainer would build for the init. A profile this does not handle (a notify
//! action) yields `None`, and the executor compiles it through libcontainer instead.

use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::str::FromStr;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

const CACHE: &str = "exec-seccomp.bpf";

/// The name serde gives an OCI enum value (`SCMP_ARCH_X86_64`).
fn spec_name<T: serde::Serialize>(v: &T) -> Option<String> {
    serde_json::to_value(v).ok()?.as_str().map(str::to_string)
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Option<ScmpAction> {
    let errno = errno.map(|e| e as i32).unwrap_or(libc::EPERM);
    Some(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(u16::try_from(errno).ok()?),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        _ => return None,
    })
}

fn compare(
    op: LinuxSeccompOperator,
    value: u64,
    value_two: Option<u64>,
    index: u32,
) -> ScmpArgCompare {
    let op = match op {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value_two.unwrap_or(0)),
    };
    ScmpArgCompare::new(index, op, value)
}

/// Builds the filter context of `profile`; `None` for what only libcontainer handles.
fn context(profile: &LinuxSeccomp) -> Option<ScmpFilterContext> {
    if profile.flags().as_ref().is_some_and(|f| !f.is_empty()) || profile.listener_path().is_some()
    {
        return None;
    }
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).ok()?;
    for arch in profile.architectures().iter().flatten() {
        let arch = ScmpArch::from_str(&spec_name(arch)?).ok()?;
        ctx.add_arch(arch).ok()?;
    }
    ctx.set_ctl_nnp(false).ok()?;
    for rule in profile.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue;
        }
        for name in rule.names() {
            // A name this kernel's libseccomp does not know is left out, as libcontainer does.
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let cmps: Vec<ScmpArgCompare> = rule
                .args()
                .iter()
                .flatten()
                .map(|a| compare(a.op(), a.value(), a.value_two(), a.index() as u32))
                .collect();
            if cmps.is_empty() {
                ctx.add_rule(act, nr).ok()?;
                continue;
            }
            let mut indexes: Vec<usize> = rule.args().iter().flatten().map(|a| a.index()).collect();
            indexes.sort_unstable();
            let repeated = indexes.windows(2).any(|w| w[0] == w[1]);
            if repeated {
                // One argument compared twice: one rule per comparison (libseccomp allows
                // each argument once per rule), as runc and libcontainer do.
                for c in &cmps {
                    ctx.add_rule_conditional(act, nr, std::slice::from_ref(c))
                        .ok()?;
                }
            } else {
                ctx.add_rule_conditional(act, nr, &cmps).ok()?;
            }
        }
    }
    Some(ctx)
}

/// The exec filter of the container whose state dir is `state`: from the cache, else
/// compiled and cached. `None` when the profile needs libcontainer's own loader.
pub fn exec_filter(state: &Path, profile: &LinuxSeccomp) -> io::Result<Option<Vec<u8>>> {
    let cache = state.join(CACHE);
    let mut bytes = Vec::new();
    if fs::File::open(&cache)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .is_ok()
        && !bytes.is_empty()
        && bytes.len().is_multiple_of(8)
    {
        return Ok(Some(bytes));
    }
    let Some(ctx) = context(profile) else {
        return Ok(None);
    };
    let tmp = state.join(format!(".{CACHE}.{}", std::process::id()));
    {
        let f = fs::File::create(&tmp)?;
        ctx.export_bpf(&f).map_err(io::Error::other)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &cache)?;
    let bytes = fs::read(&cache)?;
    if bytes.is_empty() || !bytes.len().is_multiple_of(8) {
        return Err(io::Error::other("libseccomp exported a malformed filter"));
    }
    Ok(Some(bytes))
}

/// Loads a BPF program (as libseccomp exports it: `struct sock_filter`s in host order) as
/// the calling thread's seccomp filter. Needs CAP_SYS_ADMIN or no_new_privs.
pub fn load(bpf: &[u8]) -> io::Result<()> {
    let mut filters: Vec<libc::sock_filter> = bpf
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let len = u16::try_from(filters.len()).map_err(|_| io::Error::other("filter too long"))?;
    let prog = libc::sock_fprog {
        len,
        filter: filters.as_mut_ptr(),
    };
    // SAFETY: prog points at `len` filters that live until the call returns; the kernel copies
    // the program.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &prog as *const libc::sock_fprog as libc::c_ulong,
            0,
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_compiles_once_and_is_read_back() {
        let profile: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [
                {"names": ["read", "write", "no_such_call"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "valueTwo": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        }))
        .unwrap();
        let dir = std::env::temp_dir().join(format!("berth-exec-filter-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let first = exec_filter(&dir, &profile).unwrap().unwrap();
        assert!(!first.is_empty() && first.len().is_multiple_of(8));
        assert!(dir.join(CACHE).exists());
        let second = exec_filter(&dir, &profile).unwrap().unwrap();
        assert_eq!(first, second);
        let notify: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }))
        .unwrap();
        let other = dir.join("other");
        fs::create_dir_all(&other).unwrap();
        assert!(exec_filter(&other, &notify).unwrap().is_none());
        fs::remove_dir_all(&dir).unwrap();
    }
}
