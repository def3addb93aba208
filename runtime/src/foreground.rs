//! Foreground waiting: reap the container's process, forward signals, bridge a pty.
//!
//! Signals are blocked *before* the container is built, so a SIGCHLD from a process
//! that exits at once stays pending until `sigwait` takes it (youki 0.7 blocks only
//! after start and can hang forever). The container's process gets a clean mask from
//! [`crate::executor::CleanSignalExecutor`].

use std::fs::File;
use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::termios::{self, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::signals::signal_exit_code;

/// Signals stay blocked while this lives; dropping restores the previous mask.
#[derive(Debug)]
pub struct BlockedSignals {
    previous: SigSet,
}

/// Block every signal in this (single) thread; threads spawned later inherit it.
pub fn block_all_signals() -> Result<BlockedSignals> {
    let mut previous = SigSet::empty();
    nix::sys::signal::sigprocmask(
        SigmaskHow::SIG_BLOCK,
        Some(&SigSet::all()),
        Some(&mut previous),
    )
    .context("block signals")?;
    Ok(BlockedSignals { previous })
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.previous), None);
    }
}

/// Exit code of a wait status of `pid`, if it ended.
pub fn exit_code(status: WaitStatus) -> Option<u8> {
    match status {
        WaitStatus::Exited(_, code) => Some((code & 0xff) as u8),
        WaitStatus::Signaled(_, sig, _) => Some(signal_exit_code(sig)),
        _ => None,
    }
}

/// Wait for `pid` (our child) to end, forwarding every other signal to it.
/// Requires [`block_all_signals`] to be in effect. Returns the shell-style exit code.
pub fn wait_forwarding(pid: Pid, tty: Option<&TtyBridge>) -> Result<u8> {
    let set = SigSet::all();
    loop {
        // Reap first: the child may have exited before we got here.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(status) => {
                    if status.pid() == Some(pid) {
                        if let Some(code) = exit_code(status) {
                            tracing::debug!(pid = pid.as_raw(), code, "container process exited");
                            return Ok(code);
                        }
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => bail!("process {pid} is not our child"),
                Err(e) => return Err(e).context("waitpid"),
            }
        }
        let signal = set.wait().context("sigwait")?;
        match signal {
            Signal::SIGCHLD => {}
            Signal::SIGWINCH => {
                if let Some(tty) = tty {
                    tty.resize();
                }
            }
            other => {
                tracing::debug!(signal = ?other, pid = pid.as_raw(), "forwarding signal");
                if let Err(e) = kill(pid, other) {
                    tracing::debug!(error = %e, "forward signal");
                }
            }
        }
    }
}

/// A unix socket that receives the container's pty master (the console socket), and
/// the copy loops between our stdio and that master once it arrives.
#[derive(Debug)]
pub struct TtyBridge {
    path: PathBuf,
    listener: UnixListener,
    master: Option<File>,
    saved: Option<Termios>,
    output: Option<JoinHandle<()>>,
}

impl TtyBridge {
    /// Listen on a fresh socket under `dir`.
    pub fn listen(dir: &Path, id: &str) -> Result<TtyBridge> {
        let path = dir.join(format!(".console-{id}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("bind console socket {}", path.display()))?;
        Ok(TtyBridge {
            path,
            listener,
            master: None,
            saved: None,
            output: None,
        })
    }

    /// The socket path to give libcontainer.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Receive the master (the container has connected by the time build returns) and
    /// start copying stdin→pty and pty→stdout.
    pub fn start(&mut self) -> Result<()> {
        self.listener.set_nonblocking(true)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let (stream, _) = loop {
            match self.listener.accept() {
                Ok(s) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        bail!("the container did not send its console");
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e).context("accept console connection"),
            }
        };
        stream.set_nonblocking(false)?;
        let master = recv_fd(stream.as_raw_fd())?;
        let master = File::from(master);
        let _ = std::fs::remove_file(&self.path);

        // Raw mode on our terminal so keystrokes (^C included) reach the container's tty.
        if let Ok(saved) = termios::tcgetattr(std::io::stdin()) {
            let mut raw = saved.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &raw);
            self.saved = Some(saved);
        }
        self.master = Some(master.try_clone()?);
        self.resize();

        let mut to_pty = master.try_clone()?;
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 8192];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to_pty.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let mut from_pty = master;
        self.output = Some(std::thread::spawn(move || {
            let mut stdout = std::io::stdout();
            let mut buf = [0u8; 8192];
            loop {
                match from_pty.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if stdout.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        let _ = stdout.flush();
                    }
                }
            }
        }));
        Ok(())
    }

    /// Copy our terminal's window size onto the container's pty.
    pub fn resize(&self) {
        let Some(master) = &self.master else { return };
        let mut ws: libc::winsize = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ/TIOCSWINSZ read/write one winsize struct we own.
        unsafe {
            if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
                libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
            }
        }
    }

    /// Wait (briefly) for the remaining output, then restore our terminal.
    pub fn finish(mut self) {
        if let Some(out) = self.output.take() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !out.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        self.restore();
    }

    fn restore(&mut self) {
        if let Some(saved) = self.saved.take() {
            let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &saved);
        }
    }
}

impl Drop for TtyBridge {
    fn drop(&mut self) {
        self.restore();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Receive one file descriptor sent with SCM_RIGHTS.
fn recv_fd(sock: RawFd) -> Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
        .context("receive console fd")?;
    for c in msg.cmsgs().context("read console message")? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us via SCM_RIGHTS.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    bail!("console message carried no file descriptor")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        let pid = Pid::from_raw(1);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 3)), Some(3));
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            Some(137)
        );
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }
}
