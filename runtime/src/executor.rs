//! The workload executor: restores a clean signal state, then execs like libcontainer's.
//!
//! The container's first process is a clone of this runtime, so it inherits our signal
//! mask and dispositions. Foreground `run` and `exec` block every signal before the
//! container is built (so no SIGCHLD can be lost, see `foreground`), and Rust ignores
//! SIGPIPE at startup; neither may leak into the container, where `yes | head` must
//! still end and `kill` must still work. runc's init starts with a clean slate too.

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

/// Executor that resets signals before handing over to libcontainer's default.
#[derive(Clone, Debug, Default)]
pub struct CleanSignalExecutor;

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
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}
