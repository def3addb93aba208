//! The receiving end of `--console-socket`: a unix socket on which the runtime sends the
//! container's pty master as an `SCM_RIGHTS` message, and reading/writing that pty.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use tempfile::TempDir;

/// A listening console socket in its own temp dir.
#[derive(Debug)]
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
    _dir: TempDir,
}

impl ConsoleSocket {
    /// Binds a new socket (path is short enough for `sun_path`).
    pub fn bind() -> Result<ConsoleSocket> {
        let dir = tempfile::Builder::new()
            .prefix("berth-console-")
            .tempdir()
            .context("create console socket dir")?;
        let path = dir.path().join("c.sock");
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("bind console socket {}", path.display()))?;
        listener
            .set_nonblocking(true)
            .context("make console socket non-blocking")?;
        Ok(ConsoleSocket {
            listener,
            path,
            _dir: dir,
        })
    }

    /// The socket path to pass as `--console-socket`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts the runtime's connection and receives the pty master, waiting at most `timeout`.
    pub fn receive_master(&self, timeout: Duration) -> Result<Pty> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        bail!("no connection on console socket within {timeout:?}");
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e).context("accept on console socket"),
            }
        };
        wait_readable(stream.as_fd(), deadline).context("wait for the pty master message")?;
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .context("recvmsg on console socket")?;
        for c in msg.cmsgs().context("parse control messages")? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(&fd) = fds.first() {
                    // SAFETY: the kernel just installed this fd in our table for us via
                    // SCM_RIGHTS; nothing else owns it.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    for &extra in &fds[1..] {
                        // SAFETY: as above; we close fds we did not ask for.
                        drop(unsafe { OwnedFd::from_raw_fd(extra) });
                    }
                    return Ok(Pty { fd: owned });
                }
            }
        }
        bail!("console socket message carried no file descriptor")
    }
}

fn wait_readable(fd: std::os::fd::BorrowedFd<'_>, deadline: Instant) -> Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("timed out");
        }
        let ms =
            PollTimeout::try_from(left.min(Duration::from_secs(10))).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) => continue,
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("poll"),
        }
    }
}

/// A pty master received from a runtime.
#[derive(Debug)]
pub struct Pty {
    fd: OwnedFd,
}

impl Pty {
    /// Reads until `needle` appears in the output, the container closes the pty, or `timeout`;
    /// returns everything read. Fails only on timeout without the needle.
    pub fn read_until(&self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            if String::from_utf8_lossy(&out).contains(needle) {
                break;
            }
            if wait_readable(self.fd.as_fd(), deadline).is_err() {
                bail!(
                    "timed out after {timeout:?} waiting for {needle:?} on the pty; got {:?}",
                    String::from_utf8_lossy(&out)
                );
            }
            let mut buf = [0u8; 4096];
            match nix::unistd::read(self.fd.as_raw_fd(), &mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                // EIO: every slave fd is closed (the container exited).
                Err(nix::errno::Errno::EIO) => break,
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
                Err(e) => return Err(e).context("read pty"),
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Writes `bytes` to the container's terminal (its stdin).
    pub fn write_all(&self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            match nix::unistd::write(&self.fd, bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("write pty"),
            }
        }
        Ok(())
    }

    /// The owned master fd.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}
