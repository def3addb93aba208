//! Terminals: the `--console-socket` listener and the pty master the runtime sends over it.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::UnixListener;

/// How long the shim waits for the runtime to connect and send the pty master.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A listening console socket, removed when dropped.
#[derive(Debug)]
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Listens on `path` (replacing a stale file).
    pub fn bind(path: &Path) -> io::Result<Self> {
        let _ = std::fs::remove_file(path);
        Ok(ConsoleSocket {
            listener: UnixListener::bind(path)?,
            path: path.to_path_buf(),
        })
    }

    /// The socket path to pass as `--console-socket`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts the runtime's connection and receives the pty master (`SCM_RIGHTS`).
    ///
    /// Call it after the runtime command exited: its connection and message wait in the
    /// socket's backlog.
    pub async fn receive(&self) -> io::Result<OwnedFd> {
        let fut = async {
            let (stream, _) = self.listener.accept().await?;
            loop {
                stream.readable().await?;
                match stream.try_io(Interest::READABLE, || recv_fd(stream.as_raw_fd())) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => return r,
                }
            }
        };
        tokio::time::timeout(RECEIVE_TIMEOUT, fut)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no pty master received"))?
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn recv_fd(sock: RawFd) -> io::Result<OwnedFd> {
    let mut buf = [0u8; 512];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(io::Error::from)?;
    let mut fds = Vec::new();
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(r) = c {
            fds.extend(r);
        }
    }
    let mut fds = fds.into_iter();
    let first = fds.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "console socket message carried no fd",
        )
    })?;
    for extra in fds {
        // SAFETY: the kernel just installed this fd for us and nothing else owns it.
        drop(unsafe { OwnedFd::from_raw_fd(extra) });
    }
    // SAFETY: as above; `first` is a fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(first) })
}

/// A pty master, readable and writable without blocking the runtime.
#[derive(Debug)]
pub struct Pty {
    fd: AsyncFd<OwnedFd>,
}

impl Pty {
    /// Wraps a received master fd (it is switched to non-blocking).
    pub fn new(fd: OwnedFd) -> io::Result<Pty> {
        let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).map_err(io::Error::from)?;
        let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
        // SAFETY: `fd` is an open OwnedFd moved into the AsyncFd, which owns it until drop,
        // and an OwnedFd's raw fd never changes.
        let fd = unsafe { AsyncFd::register(fd) }?;
        Ok(Pty { fd })
    }

    /// Reads output; `Ok(0)` once every slave fd is closed (the kernel's EIO).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| {
                nix::unistd::read(fd.get_ref().as_raw_fd(), buf).map_err(io::Error::from)
            }) {
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `data` (the process's input).
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| {
                nix::unistd::write(fd.get_ref().as_fd(), data).map_err(io::Error::from)
            }) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Sets the window size (TIOCSWINSZ); the foreground process gets SIGWINCH.
    pub fn resize(&self, width: u16, height: u16) -> io::Result<()> {
        let ws = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one `winsize` from the valid pointer; the fd is ours.
        let r = unsafe { libc::ioctl(self.fd.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
