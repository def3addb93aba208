//! Exit statuses: wait-status mapping and the crash-safe `*.exit` records in the state dir.

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use nix::sys::wait::WaitStatus;
use serde::{Deserialize, Serialize};

/// Exit status reported when nothing was recorded (as containerd: SIGKILL).
pub const UNKNOWN_EXIT_STATUS: u32 = 137;

/// How and when a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The pid that exited.
    pub pid: u32,
    /// The exit code, or 128+N for death by signal N.
    pub status: u32,
    /// When the shim reaped it.
    pub at: SystemTime,
}

impl Exit {
    /// The record written to disk for this exit.
    pub fn record(&self) -> ExitRecord {
        ExitRecord {
            pid: self.pid,
            exit_status: self.status,
            exited_at: rfc3339(self.at),
        }
    }
}

/// The pid and exit status of a wait status, if it is a termination (exit or signal).
pub fn from_wait_status(ws: WaitStatus) -> Option<(i32, u32)> {
    match ws {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), (code & 0xff) as u32)),
        WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), 128 + sig as u32)),
        _ => None,
    }
}

/// RFC 3339 with nanoseconds, UTC (`2026-01-02T03:04:05.123456789Z`).
pub fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// `<state-dir>/init.exit` and `<state-dir>/exec-<id>.exit`: what the supervisor reads after a
/// restart or after the shim is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The pid that exited.
    pub pid: u32,
    /// The exit code, or 128+N for death by signal N.
    pub exit_status: u32,
    /// RFC 3339 time of the exit.
    pub exited_at: String,
}

/// File name of the exit record of the init (empty `exec_id`) or of an exec.
pub fn record_name(exec_id: &str) -> String {
    if exec_id.is_empty() {
        "init.exit".to_string()
    } else {
        format!("exec-{exec_id}.exit")
    }
}

/// Writes `data` to `path` crash-safely: temp file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    {
        let mut f = fs::File::create(tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(tmp, path)?;
    if let Some(dir) = path.parent() {
        // Best effort: the rename is what matters; a dir fsync failure is not worth failing on.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Writes the exit record of `exec_id` into `state_dir`.
pub fn write_record(state_dir: &Path, exec_id: &str, exit: &Exit) -> io::Result<()> {
    let json = serde_json::to_vec(&exit.record()).map_err(io::Error::other)?;
    write_atomic(&state_dir.join(record_name(exec_id)), &json)
}

/// Reads the exit record of `exec_id` from `state_dir`, if there is one.
pub fn read_record(state_dir: &Path, exec_id: &str) -> Option<ExitRecord> {
    let data = fs::read(state_dir.join(record_name(exec_id))).ok()?;
    serde_json::from_slice(&data).ok()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use nix::sys::signal::Signal;
    use nix::unistd::Pid;

    use super::*;

    #[test]
    fn exit_codes_and_signals_map_like_a_shell() {
        let pid = Pid::from_raw(42);
        assert_eq!(from_wait_status(WaitStatus::Exited(pid, 0)), Some((42, 0)));
        assert_eq!(from_wait_status(WaitStatus::Exited(pid, 3)), Some((42, 3)));
        assert_eq!(
            from_wait_status(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            Some((42, 137))
        );
        assert_eq!(
            from_wait_status(WaitStatus::Signaled(pid, Signal::SIGTERM, true)),
            Some((42, 143))
        );
        assert_eq!(from_wait_status(WaitStatus::StillAlive), None);
        assert_eq!(
            from_wait_status(WaitStatus::Stopped(pid, Signal::SIGSTOP)),
            None
        );
    }

    #[test]
    fn records_round_trip_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        let exit = Exit {
            pid: 7,
            status: 143,
            at: UNIX_EPOCH + Duration::new(1_700_000_000, 5),
        };
        write_record(dir.path(), "", &exit).unwrap();
        write_record(dir.path(), "e1", &exit).unwrap();
        let r = read_record(dir.path(), "").unwrap();
        assert_eq!(r.exit_status, 143);
        assert_eq!(r.exited_at, "2023-11-14T22:13:20.000000005Z");
        assert!(dir.path().join("exec-e1.exit").exists());
        assert!(!dir.path().join("init.exit.tmp").exists());
        let raw = fs::read_to_string(dir.path().join("init.exit")).unwrap();
        assert_eq!(
            raw,
            r#"{"pid":7,"exit_status":143,"exited_at":"2023-11-14T22:13:20.000000005Z"}"#
        );
    }
}
