//! Self-sealing against CVE-2019-5736: re-execute from a sealed memfd copy of ourselves.
//!
//! A process inside a container can open `/proc/<pid>/exe` of a runtime process that
//! joins it (init before its execve, `exec` tenants) and later write through it to the
//! runtime binary on the host. Running from a sealed, anonymous memfd leaves nothing on
//! disk to write to. Two ways, cheapest first:
//!
//! 1. *Read-only bind* (runc 1.1's `bindfd`, done with the new mount API):
//!    `open_tree(/proc/self/exe, OPEN_TREE_CLONE)` makes a detached bind mount of our
//!    binary, `mount_setattr` makes it read-only, and we `fexecve` that fd. Now
//!    `/proc/self/exe` resolves through a detached, read-only mount that no namespace
//!    can reach: opening it for writing fails with EROFS. Nothing is copied, and unlike
//!    runc's version no mount is ever attached, so no mount event reaches anyone.
//!    Needs CAP_SYS_ADMIN and Linux 5.12.
//! 2. *Sealed memfd* (runc 1.2, youki): copy the binary into a memfd, seal it, `fexecve`.
//!    Costs a copy of the whole binary (about 10 ms for 10 MB here), so it is only the
//!    fallback (no CAP_SYS_ADMIN, binary deleted...).
//!
//! Already running from a read-only mount or a sealed memfd means nothing to do. Only
//! the verbs that put a process of ours into a container (`create`, `run`, `exec`)
//! seal; `state`, `kill`, `delete`, `list` and friends never enter a container.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
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
    /// The read-only bind helper failed.
    #[error("seal binary: read-only bind: {0}")]
    Bind(#[source] nix::Error),
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

/// Whether we already run from a sealed memfd or from a read-only mount.
fn is_sealed(exe: &File) -> bool {
    if let Ok(bits) = fcntl(exe.as_raw_fd(), FcntlArg::F_GET_SEALS) {
        return SealFlag::from_bits_truncate(bits).contains(required_seals());
    }
    nix::sys::statvfs::fstatvfs(exe)
        .map(|st| st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        .unwrap_or(false)
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// Open our binary through a detached, read-only bind mount (see the module docs).
fn ro_bind_fd() -> Result<OwnedFd, SealError> {
    use std::os::fd::FromRawFd;
    // SAFETY: open_tree takes a NUL-terminated path and flags; the returned fd (if
    // any) is ours alone.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c"/proc/self/exe".as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(SealError::Bind(nix::Error::last()));
    }
    // SAFETY: fd was just returned by open_tree and is owned by nobody else.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `size` bytes of `attr`, which lives across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(SealError::Bind(nix::Error::last()));
    }
    Ok(tree)
}

fn exec_fd(fd: RawFd) -> Result<(), SealError> {
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
    // The fd is close-on-exec: fexecve of an ELF binary works with it and the new
    // image does not inherit a stray descriptor.
    match nix::unistd::fexecve(fd, &argv, &envp) {
        Err(e) => Err(SealError::Exec(e)),
        Ok(never) => match never {},
    }
}

/// Re-execute from a protected copy of ourselves unless already running from one.
/// Returns only when already protected (or on error).
pub fn ensure_sealed() -> Result<(), SealError> {
    let mut exe = File::open("/proc/self/exe").map_err(SealError::OpenExe)?;
    if is_sealed(&exe) {
        return Ok(());
    }
    match ro_bind_fd() {
        Ok(fd) => {
            drop(exe);
            return exec_fd(fd.as_raw_fd());
        }
        Err(e) => {
            // Not fatal: fall back to the memfd copy (logging is not set up yet).
            if std::env::var_os("BERTH_RUNTIME_DEBUG_SEAL").is_some() {
                eprintln!("berth-runtime: read-only bind seal failed ({e}); copying to memfd");
            }
        }
    }
    let memfd: OwnedFd = memfd_create(
        c"berth-runtime",
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .map_err(SealError::Memfd)?;
    let mut mem = File::from(memfd);
    // std::io::copy uses copy_file_range/sendfile between files: no userspace buffer.
    std::io::copy(&mut exe, &mut mem).map_err(SealError::Copy)?;
    drop(exe);
    fcntl(
        mem.as_fd().as_raw_fd(),
        FcntlArg::F_ADD_SEALS(required_seals()),
    )
    .map_err(SealError::AddSeals)?;
    exec_fd(mem.as_raw_fd())
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
