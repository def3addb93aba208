//! The child subreaper: owns every `waitpid` in the shim and fans exits out by pid.
//!
//! The shim is `PR_SET_CHILD_SUBREAPER`, so the container's init and exec processes are
//! re-parented to it when the runtime command that made them exits. One SIGCHLD-driven loop
//! calls `waitpid(-1)`; anything that wants an exit status (a runtime command the shim spawned,
//! the init, an exec) subscribes by pid instead of waiting itself, so the global reaper can
//! never steal a status (the race containerd's reaper solves the same way). An exit that
//! arrives before anyone subscribed (the init exiting before its pid file was read) is kept as
//! unclaimed and handed to the first subscriber for that pid.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

use crate::exit::{from_wait_status, Exit};

/// How many unclaimed exits are remembered (oldest dropped first).
const MAX_UNCLAIMED: usize = 128;

/// Reaps every child of the shim and delivers each exit to whoever subscribed to its pid.
#[derive(Debug, Default)]
pub struct Reaper {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    waiters: HashMap<i32, oneshot::Sender<Exit>>,
    unclaimed: VecDeque<Exit>,
}

impl State {
    fn subscribe(&mut self, pid: i32) -> oneshot::Receiver<Exit> {
        let (tx, rx) = oneshot::channel();
        if let Some(i) = self.unclaimed.iter().position(|e| e.pid as i32 == pid) {
            if let Some(exit) = self.unclaimed.remove(i) {
                let _ = tx.send(exit);
                return rx;
            }
        }
        self.waiters.insert(pid, tx);
        rx
    }

    fn deliver(&mut self, exit: Exit) {
        match self.waiters.remove(&(exit.pid as i32)) {
            Some(tx) => {
                let _ = tx.send(exit);
            }
            None => {
                if self.unclaimed.len() >= MAX_UNCLAIMED {
                    self.unclaimed.pop_front();
                }
                self.unclaimed.push_back(exit);
            }
        }
    }
}

impl Reaper {
    /// A reaper with no subscribers; call [`Reaper::start`] inside the tokio runtime.
    pub fn new() -> Arc<Reaper> {
        Arc::new(Reaper::default())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the maps inconsistent; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Installs the SIGCHLD handler and runs the reaping loop as a task.
    pub fn start(self: &Arc<Self>) -> io::Result<()> {
        let mut sigchld = signal(SignalKind::child())?;
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                me.reap();
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        });
        Ok(())
    }

    /// Reaps every child that has exited so far (never blocks).
    pub fn reap(&self) {
        loop {
            match waitpid(
                Pid::from_raw(-1),
                Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL),
            ) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(ws) => {
                    if let Some((pid, status)) = from_wait_status(ws) {
                        tracing::debug!(pid, status, "reaped");
                        self.lock().deliver(Exit {
                            pid: pid as u32,
                            status,
                            at: SystemTime::now(),
                        });
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
    }

    /// Spawns `cmd` and subscribes to its exit atomically, so the exit cannot be missed.
    ///
    /// Never call `wait` on the returned child: its status belongs to the reaper.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<(Child, oneshot::Receiver<Exit>)> {
        let mut state = self.lock();
        let child = cmd.spawn()?;
        let rx = state.subscribe(child.id() as i32);
        Ok((child, rx))
    }

    /// The exit of `pid`, delivered once; at once if it already exited unclaimed.
    pub fn subscribe(&self, pid: u32) -> oneshot::Receiver<Exit> {
        self.lock().subscribe(pid as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(pid: u32, status: u32) -> Exit {
        Exit {
            pid,
            status,
            at: SystemTime::now(),
        }
    }

    #[test]
    fn exit_before_subscribe_is_kept_for_the_subscriber() {
        let mut s = State::default();
        s.deliver(exit(10, 3));
        let mut rx = s.subscribe(10);
        assert_eq!(rx.try_recv().unwrap().status, 3);
        assert!(s.unclaimed.is_empty());
    }

    #[test]
    fn subscriber_gets_later_exit_and_unclaimed_is_bounded() {
        let mut s = State::default();
        let mut rx = s.subscribe(11);
        assert!(rx.try_recv().is_err());
        s.deliver(exit(11, 137));
        assert_eq!(rx.try_recv().unwrap().status, 137);
        for pid in 0..(MAX_UNCLAIMED as u32 + 10) {
            s.deliver(exit(1000 + pid, 0));
        }
        assert_eq!(s.unclaimed.len(), MAX_UNCLAIMED);
    }

    #[tokio::test]
    async fn spawned_command_status_comes_from_the_reaper() {
        let reaper = Reaper::new();
        reaper.start().unwrap();
        let (_child, rx) = reaper
            .spawn(Command::new("sh").args(["-c", "exit 7"]))
            .unwrap();
        let e = tokio::time::timeout(std::time::Duration::from_secs(10), rx)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.status, 7);
    }
}
