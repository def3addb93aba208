//! The workload executor: restores a clean signal state, then execs like libcontainer's.
//!
//! The container's first process is a clone of this runtime, so it inherits our signal
//! mask and dispositions. Foreground `run` and `exec` block every signal before the
//! container is built (so no SIGCHLD can be lost, see `foreground`), and Rust ignores
//! SIGPIPE at startup; neither may leak into the container, where `yes | head` must
//! still end and `kill` must still work. runc's init starts with a clean slate too.

use libcontainer::oci_spec::runtime::{LinuxSeccomp, Spec};
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

/// Executor that resets signals before handing over to libcontainer's default; for an exec,
/// it also loads the container's seccomp filter (see [`ExecSeccomp`]).
#[derive(Clone, Debug, Default)]
pub struct CleanSignalExecutor {
    /// The container's filter, for an exec (the init's is loaded by libcontainer).
    pub exec_seccomp: Option<ExecSeccomp>,
}

/// The container's seccomp filter for an exec'd process. libcontainer 0.7 runs an exec
/// without it (its tenant builder drops `linux.seccomp`); runc loads it before dropping the
/// capabilities. Here the exec's process is given CAP_SYS_ADMIN and CAP_SETPCAP besides its
/// own, the filter is loaded right before execve (CAP_SYS_ADMIN lets it load without
/// no_new_privs, so setuid programs keep working as under Docker), then the added
/// capabilities are dropped again from every set.
#[derive(Clone, Debug)]
pub struct ExecSeccomp {
    /// The container's `linux.seccomp`.
    pub profile: LinuxSeccomp,
    /// The same filter compiled to BPF (`exec_filter.rs`); `None`: compiled here through
    /// libcontainer.
    pub bpf: Option<Vec<u8>>,
    /// Capability numbers added for the load, dropped after it (CAP_SETPCAP last).
    pub added: Vec<u32>,
    /// The process's own effective set, restored after.
    pub effective: u64,
    /// The process's own permitted set.
    pub permitted: u64,
    /// The process's own inheritable set.
    pub inheritable: u64,
}

const CAP_SETPCAP: u32 = 8;

impl ExecSeccomp {
    fn apply(&self) -> Result<(), ExecutorError> {
        libcontainer::seccomp::initialize_seccomp(&self.profile).map_err(|e| {
            ExecutorError::Other(format!("load the container's seccomp filter: {e}"))
        })?;
        let mut added = self.added.clone();
        added.sort_by_key(|c| *c == CAP_SETPCAP);
        for cap in added {
            // SAFETY: prctl with integer arguments only.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if r != 0 {
                return Err(ExecutorError::Other(format!(
                    "drop capability {cap} from the bounding set: {}",
                    std::io::Error::last_os_error()
                )));
            }
        }
        set_caps(self.effective, self.permitted, self.inheritable)
            .map_err(|e| ExecutorError::Other(format!("restore the capabilities: {e}")))
    }
}

/// capset(2) of the three sets (version 3: 64 bits in two words).
fn set_caps(effective: u64, permitted: u64, inheritable: u64) -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let word = |v: u64, i: u32| (v >> (32 * i)) as u32;
    let data = [0u32, 1].map(|i| Data {
        effective: word(effective, i),
        permitted: word(permitted, i),
        inheritable: word(inheritable, i),
    });
    // SAFETY: a version-3 header and two data words, as capset(2) reads them.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Reset every catchable signal to its default action and unblock all signals.
pub fn reset_signals() {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for signal in Signal::iterator() {
        if matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL is always sound; no handler code is involved.
        let _ = unsafe { sigaction(signal, &default) };
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

impl Executor for CleanSignalExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        reset_signals();
        if let Some(s) = &self.exec_seccomp {
            s.apply()?;
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}
