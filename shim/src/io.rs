//! A process's stdio held by the shim: output pumps into the log and live attachers, stdin.
//!
//! Output is read by the shim as soon as it is produced, written to the log file, and
//! broadcast to attachers only when there are some (a slow attacher lags and is dropped), so
//! a container never blocks on an absent or slow reader.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use berth_proto::types::v1::StdStream;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::AbortHandle;

use crate::console::Pty;
use crate::exit::rfc3339;
use crate::log::LogFile;

/// Size of each read from a process's output.
const READ_BUF: usize = 8 * 1024;
/// Chunks an attacher may fall behind before it is dropped.
const LIVE_CAPACITY: usize = 64;
/// Stdin chunks queued before senders wait.
const STDIN_QUEUE: usize = 4;

/// A piece of output of one stream.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Which stream it came from.
    pub stream: StdStream,
    /// The bytes, as the process wrote them.
    pub data: Bytes,
}

/// Where a process's output goes: its log file and any live attachers.
#[derive(Debug)]
pub struct Output {
    state: Mutex<OutState>,
    closed: watch::Sender<bool>,
}

#[derive(Debug)]
struct OutState {
    log: LogFile,
    log_failed: bool,
    live: Option<broadcast::Sender<Chunk>>,
    open_streams: u8,
}

/// What a new attacher gets: the log so far (if asked) and the live output from then on.
#[derive(Debug)]
pub struct Subscription {
    /// The current log file and how much of it was written when subscribing.
    pub replay: Option<(File, u64)>,
    /// Unfinished lines not yet in the log, per stream, part of the replay.
    pub pending: Vec<Chunk>,
    /// Live output; `None` when the output is already closed.
    pub live: Option<broadcast::Receiver<Chunk>>,
}

impl Output {
    /// An output writing to `log`, open until its streams are finished or it is closed.
    pub fn new(log: LogFile) -> Arc<Output> {
        Arc::new(Output {
            state: Mutex::new(OutState {
                log,
                log_failed: false,
                live: None,
                open_streams: 0,
            }),
            closed: watch::channel(false).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, OutState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The log file's path.
    pub fn log_path(&self) -> std::path::PathBuf {
        self.lock().log.path().to_path_buf()
    }

    /// The log's record format.
    pub fn log_format(&self) -> berth_proto::types::v1::LogFormat {
        self.lock().log.format()
    }

    /// Logs and broadcasts a chunk of `stream`.
    pub fn write(&self, stream: StdStream, data: &[u8]) {
        let time = rfc3339(SystemTime::now());
        let mut st = self.lock();
        if let Err(e) = st.log.write(stream, data, &time) {
            if !st.log_failed {
                tracing::warn!(error = %e, path = %st.log.path().display(), "write log");
                st.log_failed = true;
            }
        }
        if let Some(live) = &st.live {
            if live.receiver_count() > 0 {
                let _ = live.send(Chunk {
                    stream,
                    data: Bytes::copy_from_slice(data),
                });
            }
        }
    }

    fn stream_opened(&self) {
        self.lock().open_streams += 1;
    }

    fn stream_finished(&self, stream: StdStream) {
        let time = rfc3339(SystemTime::now());
        let mut st = self.lock();
        let _ = st.log.finish(stream, &time);
        st.open_streams = st.open_streams.saturating_sub(1);
        if st.open_streams == 0 {
            drop(st);
            self.close();
        }
    }

    /// Ends live output: attachers see the end of the stream, waiters of [`Output::closed`]
    /// wake up.
    pub fn close(&self) {
        self.lock().live = None;
        self.closed.send_replace(true);
    }

    /// Waits until every stream reached EOF (the process and its children closed them).
    pub async fn closed(&self) {
        let mut rx = self.closed.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Subscribes to live output; with `replay`, also returns the log so far, without gap or
    /// overlap with the live part (both are taken under the same lock the writer holds).
    pub fn subscribe(&self, replay: bool) -> Subscription {
        let mut st = self.lock();
        let closed = *self.closed.borrow();
        let live = if closed {
            None
        } else {
            Some(
                st.live
                    .get_or_insert_with(|| broadcast::channel(LIVE_CAPACITY).0)
                    .subscribe(),
            )
        };
        let mut sub = Subscription {
            replay: None,
            pending: Vec::new(),
            live,
        };
        if replay {
            sub.replay = File::open(st.log.path()).ok().map(|f| (f, st.log.size()));
            for stream in [StdStream::Stdout, StdStream::Stderr] {
                let p = st.log.pending(stream);
                if !p.is_empty() {
                    sub.pending.push(Chunk {
                        stream,
                        data: Bytes::copy_from_slice(p),
                    });
                }
            }
        }
        sub
    }
}

/// Starts the task copying a pipe's read end into `output` as `stream`.
pub fn pump_pipe(output: &Arc<Output>, stream: StdStream, fd: OwnedFd) -> io::Result<()> {
    let mut rx = pipe::Receiver::from_owned_fd(fd)?;
    output.stream_opened();
    let output = Arc::clone(output);
    tokio::spawn(async move {
        let mut buf = vec![0u8; READ_BUF];
        loop {
            match rx.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => output.write(stream, &buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        output.stream_finished(stream);
    });
    Ok(())
}

/// Starts the task copying a pty's output into `output` (as stdout: a terminal merges both).
pub fn pump_pty(output: &Arc<Output>, pty: Arc<Pty>) {
    output.stream_opened();
    let output = Arc::clone(output);
    tokio::spawn(async move {
        let mut buf = vec![0u8; READ_BUF];
        loop {
            match pty.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => output.write(StdStream::Stdout, &buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        output.stream_finished(StdStream::Stdout);
    });
}

enum StdinMsg {
    Data(Vec<u8>),
    Close,
}

/// Where stdin bytes are written.
#[derive(Debug)]
pub enum StdinSink {
    /// The write end of the process's stdin pipe.
    Pipe(OwnedFd),
    /// The pty master (closing sends EOT, ^D, as a terminal would).
    Pty(Arc<Pty>),
}

/// The process's stdin: one writer task fed by the stdin FIFO and by attachers.
///
/// It exists from the moment the process is registered, so clients can attach (or open the
/// FIFO) before Start; what they send is queued until the process's stdin is connected.
#[derive(Debug)]
pub struct Stdin {
    tx: mpsc::Sender<StdinMsg>,
    rx: Mutex<Option<mpsc::Receiver<StdinMsg>>>,
    fifo: Option<AbortHandle>,
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for StdinMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StdinMsg::Data(d) => write!(f, "Data({} bytes)", d.len()),
            StdinMsg::Close => write!(f, "Close"),
        }
    }
}

impl Stdin {
    /// A stdin fed by attachers and, if given, by the FIFO at `fifo` (read from now on).
    pub fn open(fifo: Option<&Path>) -> io::Result<Stdin> {
        let (tx, rx) = mpsc::channel::<StdinMsg>(STDIN_QUEUE);
        let fifo_task = match fifo {
            Some(path) => {
                // Read-write, so opening never blocks and writers coming and going never
                // make it look closed; EOF is only ever sent by CloseIO.
                let mut r = pipe::OpenOptions::new()
                    .read_write(true)
                    .open_receiver(path)?;
                let tx = tx.clone();
                Some(
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 4096];
                        while let Ok(n) = r.read(&mut buf).await {
                            if n == 0 || tx.send(StdinMsg::Data(buf[..n].to_vec())).await.is_err() {
                                break;
                            }
                        }
                    })
                    .abort_handle(),
                )
            }
            None => None,
        };
        Ok(Stdin {
            tx,
            rx: Mutex::new(Some(rx)),
            fifo: fifo_task,
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Starts writing into `sink` (the process's stdin pipe or pty), queued bytes first.
    pub fn connect(&self, sink: StdinSink) -> io::Result<()> {
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(mut rx) = rx else {
            return Err(io::Error::other("stdin already connected"));
        };
        match sink {
            StdinSink::Pipe(fd) => {
                let mut w = pipe::Sender::from_owned_fd(fd)?;
                tokio::spawn(async move {
                    while let Some(StdinMsg::Data(d)) = rx.recv().await {
                        if w.write_all(&d).await.is_err() {
                            break;
                        }
                    }
                    // Dropping `w` closes the pipe: the process reads EOF.
                });
            }
            StdinSink::Pty(pty) => {
                tokio::spawn(async move {
                    while let Some(m) = rx.recv().await {
                        let data = match &m {
                            StdinMsg::Data(d) => &d[..],
                            StdinMsg::Close => &[4u8][..],
                        };
                        if pty.write_all(data).await.is_err() || matches!(m, StdinMsg::Close) {
                            break;
                        }
                    }
                });
            }
        }
        Ok(())
    }

    /// A handle that forwards bytes to this stdin (for an attacher).
    pub fn writer(&self) -> StdinWriter {
        StdinWriter {
            tx: self.tx.clone(),
        }
    }

    /// Closes stdin: queued bytes are written, then the process reads EOF. Only the first call
    /// counts.
    pub fn close(&self) {
        if self.closed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if let Some(f) = &self.fifo {
            f.abort();
        }
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(StdinMsg::Close).await;
        });
    }
}

impl Drop for Stdin {
    fn drop(&mut self) {
        if let Some(f) = &self.fifo {
            f.abort();
        }
    }
}

/// Sends bytes to a process's stdin.
#[derive(Debug, Clone)]
pub struct StdinWriter {
    tx: mpsc::Sender<StdinMsg>,
}

impl StdinWriter {
    /// Queues `data`; waits while the process is not reading. False once stdin is closed.
    pub async fn write(&self, data: Vec<u8>) -> bool {
        self.tx.send(StdinMsg::Data(data)).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use berth_proto::types::v1::LogFormat;

    use super::*;

    #[tokio::test]
    async fn replay_and_live_have_no_gap_or_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::open(&dir.path().join("o.log"), LogFormat::Json, 0, 0).unwrap();
        let out = Output::new(log);
        out.write(StdStream::Stdout, b"one\ntw");
        let mut sub = out.subscribe(true);
        out.write(StdStream::Stdout, b"o\n");
        let (f, len) = sub.replay.take().unwrap();
        let mut text = String::new();
        f.take(len).read_to_string(&mut text).unwrap();
        let logged: Vec<u8> = text
            .lines()
            .flat_map(|l| {
                crate::log::decode_line(LogFormat::Json, l.as_bytes())
                    .unwrap()
                    .1
            })
            .collect();
        assert_eq!(logged, b"one\n");
        assert_eq!(&sub.pending[0].data[..], b"tw");
        let live = sub.live.as_mut().unwrap().recv().await.unwrap();
        assert_eq!(&live.data[..], b"o\n");
        out.close();
        assert!(sub.live.unwrap().recv().await.is_err());
        assert!(out.subscribe(false).live.is_none());
    }

    #[tokio::test]
    async fn pipe_output_reaches_the_log_and_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.log");
        let out = Output::new(LogFile::open(&path, LogFormat::Cri, 0, 0).unwrap());
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        pump_pipe(&out, StdStream::Stderr, r).unwrap();
        nix::unistd::write(&w, b"boom\n").unwrap();
        drop(w);
        tokio::time::timeout(std::time::Duration::from_secs(5), out.closed())
            .await
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with(" stderr F boom\n"), "{text}");
    }
}
