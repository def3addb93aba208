//! Self-sealing against CVE-2019-5736: re-execute from a sealed memfd copy of ourselves.
//!
//! A process inside a container can open `/proc/<pid>/exe` of a runtime process that
//! joins it (init before its execve, `exec` tenants) and later write through it to the
//! runtime binary on the host. Running from a sealed, anonymous memfd leaves nothing on
//! disk to write to. Like runc and youki we copy `/proc/self/exe` into a memfd, seal it
//! and `fexecve` it. This costs a copy of the binary per invocation, so only the verbs
//! that put a process of ours into a container (`create`, `run`, `exec`) do it;
//! `state`, `kill`, `delete`, `list` and friends never enter a container.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

/// Errors while sealing.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Reading our own binary failed.
    #[error("seal binary: open /proc/self/exe: {0}")]
    OpenExe(#[source] std::io::Error),
    /// memfd_create failed.
    #[error("seal binary: memfd_create: {0}")]
    Memfd(#[source] nix::Error),
    /// Copying into the memfd failed.
    #[error("seal binary: copy into memfd: {0}")]
    Copy(#[source] std::io::Error),
    /// Adding seals failed.
    #[error("seal binary: add seals: {0}")]
    AddSeals(#[source] nix::Error),
    /// An argument or environment entry held a NUL byte.
    #[error("seal binary: argument contains a NUL byte")]
    Nul,
    /// fexecve failed.
    #[error("seal binary: re-exec from memfd: {0}")]
    Exec(#[source] nix::Error),
}

/// Verbs that place a process of ours inside a container.
const SEALED_VERBS: &[&str] = &["create", "run", "exec"];

/// Global flags that take a separate value, so their value is not mistaken for the verb.
const VALUE_FLAGS: &[&str] = &["--root", "--log", "--log-format", "--criu", "--rootless"];

/// Whether this command line's verb needs the sealed re-exec.
pub fn argv_needs_seal(args: &[OsString]) -> bool {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let Some(arg) = arg.to_str() else {
            return false;
        };
        if arg.starts_with('-') {
            if !arg.contains('=') && VALUE_FLAGS.contains(&arg) {
                iter.next();
            }
            continue;
        }
        return SEALED_VERBS.contains(&arg);
    }
    false
}

fn required_seals() -> SealFlag {
    SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE
}

/// Whether we already run from a sealed memfd.
fn is_sealed(exe: &File) -> bool {
    match fcntl(exe.as_raw_fd(), FcntlArg::F_GET_SEALS) {
        Ok(bits) => SealFlag::from_bits_truncate(bits).contains(required_seals()),
        Err(_) => false,
    }
}

/// Re-execute from a sealed memfd unless already running from one. Returns only when
/// already sealed (or on error).
pub fn ensure_sealed() -> Result<(), SealError> {
    let mut exe = File::open("/proc/self/exe").map_err(SealError::OpenExe)?;
    if is_sealed(&exe) {
        return Ok(());
    }
    let memfd: OwnedFd = memfd_create(
        c"berth-runtime",
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .map_err(SealError::Memfd)?;
    // SAFETY: memfd_create just returned this fd and nothing else owns it.
    let mut mem = unsafe { File::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(memfd)) };
    // std::io::copy uses copy_file_range/sendfile between files: no userspace buffer.
    std::io::copy(&mut exe, &mut mem).map_err(SealError::Copy)?;
    drop(exe);
    fcntl(
        mem.as_fd().as_raw_fd(),
        FcntlArg::F_ADD_SEALS(required_seals()),
    )
    .map_err(SealError::AddSeals)?;

    let argv: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| SealError::Nul)?;
    let envp: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv)
        })
        .collect::<Result<_, _>>()
        .map_err(|_| SealError::Nul)?;
    // The memfd is close-on-exec: fexecve of an ELF binary works with it and the
    // new image does not inherit a stray descriptor.
    let err = nix::unistd::fexecve(mem.as_raw_fd(), &argv, &envp).map_err(SealError::Exec);
    match err {
        Err(e) => Err(e),
        Ok(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<OsString> {
        std::iter::once("berth-runtime")
            .chain(a.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn only_container_entering_verbs_are_sealed() {
        assert!(argv_needs_seal(&argv(&["create", "--bundle", "b", "id"])));
        assert!(argv_needs_seal(&argv(&[
            "--root", "/r", "--log", "l", "run", "id"
        ])));
        assert!(argv_needs_seal(&argv(&[
            "--log-format=json",
            "exec",
            "id",
            "true"
        ])));
        assert!(!argv_needs_seal(&argv(&["--root", "run", "state", "id"])));
        assert!(!argv_needs_seal(&argv(&["kill", "id", "9"])));
        assert!(!argv_needs_seal(&argv(&["--version"])));
        assert!(!argv_needs_seal(&argv(&[])));
    }
}
