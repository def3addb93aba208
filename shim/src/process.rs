//! One process of the task (the container's init or an exec): lifecycle, stdio, exit.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use berth_proto::types::v1::{Io, LogFormat, ProcessState, Status, StdStream};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use tokio::sync::watch;

use crate::console::{ConsoleSocket, Pty};
use crate::error::{Result, ShimError};
use crate::exit::Exit;
use crate::io::{pump_pipe, pump_pty, Output, Stdin, StdinSink, StdinWriter};
use crate::log::LogFile;
use crate::runtime::PassStdio;

/// Where a process is in its life; [`Phase::transition`] refuses illegal moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Created by the runtime (init) or registered (exec), not started.
    Created,
    /// Started and not yet exited.
    Running,
    /// Frozen (init only).
    Paused,
    /// Exited; the status is recorded.
    Stopped,
    /// Removed with Delete.
    Deleted,
}

impl Phase {
    /// The phase after moving to `to`, or an error naming the illegal move.
    pub fn transition(self, to: Phase) -> Result<Phase> {
        use Phase::*;
        let ok = matches!(
            (self, to),
            (Created, Running)
                | (Created, Stopped)
                | (Created, Deleted)
                | (Running, Paused)
                | (Paused, Running)
                | (Running, Stopped)
                | (Paused, Stopped)
                | (Stopped, Deleted)
        );
        if ok {
            Ok(to)
        } else {
            Err(ShimError::FailedPrecondition(format!(
                "process is {}, cannot become {}",
                self.name(),
                to.name()
            )))
        }
    }

    /// Lowercase name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Created => "created",
            Phase::Running => "running",
            Phase::Paused => "paused",
            Phase::Stopped => "stopped",
            Phase::Deleted => "deleted",
        }
    }

    fn status(self) -> Status {
        match self {
            Phase::Created => Status::Created,
            Phase::Running => Status::Running,
            Phase::Paused => Status::Paused,
            Phase::Stopped | Phase::Deleted => Status::Stopped,
        }
    }
}

/// A process of the task with its stdio and exit status.
#[derive(Debug)]
pub struct Process {
    /// Empty for the init.
    pub exec_id: String,
    /// It has a pty.
    pub terminal: bool,
    /// Close stdin when the first attacher with stdin leaves.
    pub stdin_once: bool,
    /// The stdin FIFO, when the process has a stdin.
    pub stdin_path: Option<PathBuf>,
    /// Its output: log file and live attachers.
    pub output: Arc<Output>,
    /// An exec's OCI process JSON.
    pub spec: Option<Vec<u8>>,
    inner: Mutex<Inner>,
    exit: watch::Sender<Option<Exit>>,
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    pid: u32,
    stdin: Option<Stdin>,
    pty: Option<Arc<Pty>>,
}

/// Stdio prepared for a runtime command: what to pass it, and what the shim keeps.
#[derive(Debug)]
pub struct PreparedIo {
    /// The fds handed to the runtime command (and so to the process).
    pub pass: PassStdio,
    /// The console socket to pass as `--console-socket`, for a terminal.
    pub console: Option<ConsoleSocket>,
}

/// The base name of a process's files in the state dir: `init` or `exec-<id>`.
pub fn file_stem(exec_id: &str) -> String {
    if exec_id.is_empty() {
        "init".to_string()
    } else {
        format!("exec-{exec_id}")
    }
}

/// Exec ids become file names: keep them to what runc accepts in ids.
pub fn validate_exec_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ShimError::InvalidArgument(format!(
            "invalid exec id {id:?}: use 1-128 of [A-Za-z0-9_.+-], not starting with '.'"
        )))
    }
}

impl Process {
    /// A process with its log opened and its stdin FIFO made (nothing runs yet).
    pub fn new(
        state_dir: &Path,
        exec_id: &str,
        io: &Io,
        spec: Option<Vec<u8>>,
    ) -> Result<Arc<Process>> {
        let stem = file_stem(exec_id);
        let log_path = if io.log_path.is_empty() {
            state_dir.join(format!("{stem}.log"))
        } else {
            PathBuf::from(&io.log_path)
        };
        let format = LogFormat::try_from(io.log_format).unwrap_or(LogFormat::Json);
        let log = LogFile::open(&log_path, format, io.log_max_size, io.log_max_files)
            .map_err(|e| ShimError::io("open log", &log_path, e))?;
        let stdin_path = if io.stdin {
            let p = state_dir.join(format!("{stem}.stdin"));
            let _ = fs::remove_file(&p);
            nix::unistd::mkfifo(&p, Mode::from_bits_truncate(0o600))
                .map_err(|e| ShimError::io("create stdin fifo", &p, e.into()))?;
            Some(p)
        } else {
            None
        };
        let stdin = match &stdin_path {
            Some(p) => {
                Some(Stdin::open(Some(p)).map_err(|e| ShimError::io("open stdin fifo", p, e))?)
            }
            None => None,
        };
        Ok(Arc::new(Process {
            exec_id: exec_id.to_string(),
            terminal: io.terminal,
            stdin_once: io.stdin_once,
            stdin_path,
            output: Output::new(log),
            spec,
            inner: Mutex::new(Inner {
                phase: Phase::Created,
                pid: 0,
                stdin,
                pty: None,
            }),
            exit: watch::channel(None).0,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Current phase.
    pub fn phase(&self) -> Phase {
        self.lock().phase
    }

    /// Pid (0 before the runtime made it).
    pub fn pid(&self) -> u32 {
        self.lock().pid
    }

    /// Moves to `to` if that is legal.
    pub fn transition(&self, to: Phase) -> Result<()> {
        let mut inner = self.lock();
        inner.phase = inner.phase.transition(to)?;
        Ok(())
    }

    /// Records the pid the runtime reported.
    pub fn set_pid(&self, pid: u32) {
        self.lock().pid = pid;
    }

    /// Makes the pipes (or console socket) for the runtime command; for pipes, the output
    /// pumps and stdin writer start at once so nothing the process writes can block it.
    pub fn prepare_io(&self, console_path: &Path) -> Result<PreparedIo> {
        let null = || -> Result<OwnedFd> {
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map(OwnedFd::from)
                .map_err(|e| ShimError::io("open", "/dev/null", e))
        };
        let pipe = || {
            nix::unistd::pipe2(OFlag::O_CLOEXEC)
                .map_err(|e| ShimError::io("create pipe", "", e.into()))
        };
        if self.terminal {
            let console = ConsoleSocket::bind(console_path)
                .map_err(|e| ShimError::io("listen on console socket", console_path, e))?;
            return Ok(PreparedIo {
                pass: PassStdio {
                    stdin: null()?,
                    stdout: null()?,
                    stderr: null()?,
                },
                console: Some(console),
            });
        }
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let stdin = match &self.lock().stdin {
            Some(stdin) => {
                let (in_r, in_w) = pipe()?;
                stdin
                    .connect(StdinSink::Pipe(in_w))
                    .map_err(|e| ShimError::io("connect stdin", "", e))?;
                in_r
            }
            None => null()?,
        };
        pump_pipe(&self.output, StdStream::Stdout, out_r)
            .map_err(|e| ShimError::io("read stdout pipe", "", e))?;
        pump_pipe(&self.output, StdStream::Stderr, err_r)
            .map_err(|e| ShimError::io("read stderr pipe", "", e))?;
        Ok(PreparedIo {
            pass: PassStdio {
                stdin,
                stdout: out_w,
                stderr: err_w,
            },
            console: None,
        })
    }

    /// Takes the pty master received from the runtime: output pump and stdin writer.
    pub fn attach_pty(&self, master: OwnedFd) -> Result<()> {
        let pty = Arc::new(Pty::new(master).map_err(|e| ShimError::io("use pty master", "", e))?);
        pump_pty(&self.output, Arc::clone(&pty));
        let mut inner = self.lock();
        if let Some(stdin) = &inner.stdin {
            stdin
                .connect(StdinSink::Pty(Arc::clone(&pty)))
                .map_err(|e| ShimError::io("connect stdin", "", e))?;
        }
        inner.pty = Some(pty);
        Ok(())
    }

    /// Resizes the pty.
    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        let pty =
            self.lock().pty.clone().ok_or_else(|| {
                ShimError::FailedPrecondition("process has no terminal".to_string())
            })?;
        pty.resize(
            width.min(u16::MAX as u32) as u16,
            height.min(u16::MAX as u32) as u16,
        )
        .map_err(|e| ShimError::io("resize pty", "", e))
    }

    /// A writer to the process's stdin, if it has one still open.
    pub fn stdin_writer(&self) -> Option<StdinWriter> {
        self.lock().stdin.as_ref().map(Stdin::writer)
    }

    /// Closes stdin: what was queued is written first, also when the process starts only
    /// later (an exec's client may send its input and EOF before Start), then the process
    /// reads EOF; later writes are dropped.
    pub fn close_stdin(&self) {
        if let Some(s) = self.lock().stdin.as_ref() {
            s.close();
        }
    }

    /// Records the exit (phase Stopped unless already Deleted) and wakes waiters.
    pub fn set_exited(&self, exit: Exit) {
        {
            let mut inner = self.lock();
            if inner.phase != Phase::Deleted {
                inner.phase = Phase::Stopped;
            }
            if let Some(s) = inner.stdin.take() {
                drop(s);
            }
        }
        self.exit.send_replace(Some(exit));
    }

    /// The exit, once there is one.
    pub fn exit(&self) -> Option<Exit> {
        *self.exit.borrow()
    }

    /// Waits for the exit.
    pub async fn wait(&self) -> Exit {
        let mut rx = self.exit.subscribe();
        loop {
            if let Some(e) = *rx.borrow_and_update() {
                return e;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`; it cannot be gone while we borrow it.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The process's state for State RPCs.
    pub fn state(&self, container_id: &str, bundle: &Path) -> ProcessState {
        let (phase, pid) = {
            let inner = self.lock();
            (inner.phase, inner.pid)
        };
        let exit = self.exit();
        ProcessState {
            container_id: container_id.to_string(),
            exec_id: self.exec_id.clone(),
            pid,
            status: if exit.is_some() {
                Status::Stopped
            } else {
                phase.status()
            } as i32,
            exit_status: exit.map_or(0, |e| e.status),
            exited_at: exit.map(|e| e.at.into()),
            bundle: bundle.display().to_string(),
            stdin_path: self
                .stdin_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            log_path: self.output.log_path().display().to_string(),
            terminal: self.terminal,
        }
    }

    /// Removes the process's stdin FIFO.
    pub fn remove_files(&self) {
        if let Some(p) = &self.stdin_path {
            let _ = fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_moves_are_checked() {
        use Phase::*;
        assert_eq!(Created.transition(Running).unwrap(), Running);
        assert_eq!(Running.transition(Paused).unwrap(), Paused);
        assert_eq!(Paused.transition(Running).unwrap(), Running);
        assert!(Stopped.transition(Running).is_err());
        assert!(Running.transition(Deleted).is_err());
        assert!(Deleted.transition(Created).is_err());
        let e = Running.transition(Created).unwrap_err().to_string();
        assert_eq!(e, "process is running, cannot become created");
    }

    #[test]
    fn exec_ids_are_safe_file_names() {
        assert!(validate_exec_id("abc-123_x.y").is_ok());
        assert!(validate_exec_id(&"a".repeat(64)).is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "sp ace", &"a".repeat(129)] {
            assert!(validate_exec_id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(file_stem(""), "init");
        assert_eq!(file_stem("e1"), "exec-e1");
    }
}
