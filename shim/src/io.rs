//! A process's stdio held by the shim: output pumps into the log and live readers, stdin.
//!
//! Output is read by the shim as soon as it is produced and written to the log file. Live
//! readers come in two kinds, and neither ever loses a byte:
//! - attachers get the decoded output through a bounded queue; when one falls behind, the
//!   pump waits for it, so the process blocks on its write as it would under dockerd (whose
//!   attach copies block the same way). A container with no attacher never blocks.
//! - log followers (`docker logs -f`) get the log's records, every file of the rotation and
//!   then each record as it is written. A follower never slows the process: what it has not
//!   taken yet waits in memory up to [`FOLLOW_MEMORY`], then in an unlinked spill file beside
//!   the log, so rotation can never open a gap in what it reads.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use berth_proto::types::v1::StdStream;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::AbortHandle;

use crate::console::Pty;
use crate::exit::rfc3339;
use crate::log::LogFile;

/// Size of each read from a process's output.
const READ_BUF: usize = 8 * 1024;
/// Chunks queued for an attacher before the pump waits for it.
const ATTACH_QUEUE: usize = 64;
/// Bytes of records a log follower may be behind in memory before they go to its spill file.
pub const FOLLOW_MEMORY: usize = 4 * 1024 * 1024;
/// Bytes a follower may be behind in all; past it, the follow ends with an error (a reader
/// that stopped reading must not fill the disk).
pub const FOLLOW_SPILL_LIMIT: u64 = 4 * 1024 * 1024 * 1024;
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

/// Where a process's output goes: its log file, its attachers and its log followers.
#[derive(Debug)]
pub struct Output {
    state: Mutex<OutState>,
    closed: watch::Sender<bool>,
}

#[derive(Debug)]
struct OutState {
    log: LogFile,
    log_failed: bool,
    attachers: Vec<mpsc::Sender<Chunk>>,
    followers: Vec<Arc<Spool>>,
    open_streams: u8,
    closed: bool,
}

/// What a new attacher gets: the log so far (if asked) and the live output from then on.
#[derive(Debug)]
pub struct Subscription {
    /// The current log file and how much of it was written when subscribing.
    pub replay: Option<(File, u64)>,
    /// Unfinished lines not yet in the log, per stream, part of the replay.
    pub pending: Vec<Chunk>,
    /// Live output; `None` when the output is already closed.
    pub live: Option<mpsc::Receiver<Chunk>>,
}

/// What a new log follower gets: every log file as it stood (oldest first, each with the
/// length to read), then every record written from then on.
#[derive(Debug)]
pub struct Follow {
    /// Open files and their lengths: rotated ones whole, the live one up to its size then.
    pub files: Vec<(File, u64)>,
    /// Records written after the snapshot; `None` when the output is already closed.
    pub live: Option<Arc<Spool>>,
}

impl Output {
    /// An output writing to `log`, open until its streams are finished or it is closed.
    pub fn new(log: LogFile) -> Arc<Output> {
        Arc::new(Output {
            state: Mutex::new(OutState {
                log,
                log_failed: false,
                attachers: Vec::new(),
                followers: Vec::new(),
                open_streams: 0,
                closed: false,
            }),
            closed: watch::channel(false).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, OutState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The log file's path.
    pub fn log_path(&self) -> PathBuf {
        self.lock().log.path().to_path_buf()
    }

    /// The log's record format.
    pub fn log_format(&self) -> berth_proto::types::v1::LogFormat {
        self.lock().log.format()
    }

    /// Logs a chunk of `stream` and hands it to every live reader; waits while an attacher's
    /// queue is full (backpressure), never for a follower.
    pub async fn write(&self, stream: StdStream, data: &[u8]) {
        // The log write and the choice of readers happen under one lock, so a reader that
        // subscribes with a replay sees each chunk once: in the replay or live.
        let attachers = {
            let time = rfc3339(SystemTime::now());
            let mut st = self.lock();
            if let Err(e) = st.log.write(stream, data, &time) {
                if !st.log_failed {
                    tracing::warn!(error = %e, path = %st.log.path().display(), "write log");
                    st.log_failed = true;
                }
            }
            st.feed_followers();
            st.attachers.retain(|a| !a.is_closed());
            st.attachers.clone()
        };
        if attachers.is_empty() {
            return; // the usual case: no copy of the chunk
        }
        let chunk = Chunk {
            stream,
            data: Bytes::copy_from_slice(data),
        };
        for a in attachers {
            // An attacher that left makes the send fail; it is dropped at the next write.
            let _ = a.send(chunk.clone()).await;
        }
    }

    fn stream_opened(&self) {
        self.lock().open_streams += 1;
    }

    fn stream_finished(&self, stream: StdStream) {
        let time = rfc3339(SystemTime::now());
        let mut st = self.lock();
        let _ = st.log.finish(stream, &time);
        st.feed_followers();
        st.open_streams = st.open_streams.saturating_sub(1);
        if st.open_streams == 0 {
            drop(st);
            self.close();
        }
    }

    /// Ends live output: readers get what is queued and then the end of the stream, waiters
    /// of [`Output::closed`] wake up.
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        st.attachers.clear();
        for f in st.followers.drain(..) {
            f.close(None);
        }
        st.log.set_tap(false);
        drop(st);
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
        let live = if st.closed {
            None
        } else {
            let (tx, rx) = mpsc::channel(ATTACH_QUEUE);
            st.attachers.push(tx);
            Some(rx)
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

    /// Follows the log: every file of the rotation as it is now, then each record written.
    /// The files are opened under the writer's lock, so a rotation later cannot take one
    /// away, and the records after the snapshot go to the follower's spool.
    pub fn follow(&self) -> Follow {
        let mut st = self.lock();
        let mut files = Vec::new();
        for p in crate::log::rotated_paths(st.log.path()).into_iter().rev() {
            if let Ok(f) = File::open(&p) {
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                files.push((f, len));
            }
        }
        if let Ok(f) = File::open(st.log.path()) {
            files.push((f, st.log.size()));
        }
        let live = if st.closed {
            None
        } else {
            let dir = st.log.path().parent().map(Path::to_path_buf);
            let spool = Arc::new(Spool::new(dir));
            st.followers.push(Arc::clone(&spool));
            st.log.set_tap(true);
            Some(spool)
        };
        Follow { files, live }
    }
}

impl OutState {
    /// Hands the records the log just wrote to every follower.
    fn feed_followers(&mut self) {
        let Some(records) = self.log.take_tap() else {
            return;
        };
        if records.is_empty() {
            return;
        }
        let records = Bytes::from(records);
        self.followers.retain(|f| f.push(&records));
        if self.followers.is_empty() {
            self.log.set_tap(false);
        }
    }
}

/// A follower's queue: memory first, then an unlinked spill file, read back in order.
#[derive(Debug)]
pub struct Spool {
    state: Mutex<SpoolState>,
    ready: Notify,
    dir: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct SpoolState {
    memory: VecDeque<Bytes>,
    memory_bytes: usize,
    spill: Option<Spill>,
    /// The reader went away: writers drop this spool.
    gone: bool,
    /// No more records; `Some(msg)` when the follow was ended by an error.
    closed: Option<Option<String>>,
}

#[derive(Debug)]
struct Spill {
    file: File,
    written: u64,
    read: u64,
}

/// What the reader of a spool gets next.
#[derive(Debug)]
pub enum Spooled {
    /// Records, in the order written.
    Data(Bytes),
    /// The output ended; the message says why when it ended early.
    End(Option<String>),
}

impl Spool {
    fn new(dir: Option<PathBuf>) -> Spool {
        Spool {
            state: Mutex::new(SpoolState::default()),
            ready: Notify::new(),
            dir,
        }
    }

    fn lock(&self) -> MutexGuard<'_, SpoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues records; false when the reader is gone or the spool had to be closed.
    fn push(&self, data: &Bytes) -> bool {
        let mut st = self.lock();
        if st.gone || st.closed.is_some() {
            return false;
        }
        if st.spill.is_none() && st.memory_bytes + data.len() <= FOLLOW_MEMORY {
            st.memory_bytes += data.len();
            st.memory.push_back(data.clone());
        } else if let Err(msg) = st.spill_write(self.dir.as_deref(), data) {
            tracing::warn!(error = %msg, "log follower ended");
            st.closed = Some(Some(msg));
            drop(st);
            self.ready.notify_one();
            return false;
        }
        drop(st);
        self.ready.notify_one();
        true
    }

    fn close(&self, why: Option<String>) {
        let mut st = self.lock();
        if st.closed.is_none() {
            st.closed = Some(why);
        }
        drop(st);
        self.ready.notify_one();
    }

    /// The reader leaves: writers stop feeding this spool.
    pub fn leave(&self) {
        let mut st = self.lock();
        st.gone = true;
        st.memory.clear();
        st.spill = None;
    }

    /// The next records, waiting for them; the end once everything queued was taken.
    pub async fn next(&self) -> Spooled {
        loop {
            {
                let mut st = self.lock();
                if let Some(b) = st.memory.pop_front() {
                    st.memory_bytes -= b.len();
                    return Spooled::Data(b);
                }
                if let Some(spill) = &mut st.spill {
                    let want = (spill.written - spill.read).min(256 * 1024) as usize;
                    let mut buf = vec![0u8; want];
                    match spill.file.read_exact_at(&mut buf, spill.read) {
                        Ok(()) => {
                            spill.read += want as u64;
                            if spill.read == spill.written {
                                st.spill = None; // caught up: back to memory
                            }
                            return Spooled::Data(Bytes::from(buf));
                        }
                        Err(e) => {
                            st.spill = None;
                            st.closed = Some(Some(format!("read log follower spill: {e}")));
                        }
                    }
                }
                if let Some(why) = &st.closed {
                    return Spooled::End(why.clone());
                }
            }
            self.ready.notified().await;
        }
    }
}

impl SpoolState {
    fn spill_write(&mut self, dir: Option<&Path>, data: &[u8]) -> Result<(), String> {
        if self.spill.is_none() {
            let file = match dir {
                Some(d) => tempfile::tempfile_in(d),
                None => tempfile::tempfile(),
            }
            .map_err(|e| format!("create log follower spill: {e}"))?;
            self.spill = Some(Spill {
                file,
                written: 0,
                read: 0,
            });
        }
        let spill = self.spill.as_mut().expect("spill was just created");
        if spill.written - spill.read + data.len() as u64 > FOLLOW_SPILL_LIMIT {
            return Err(format!(
                "log follower fell {FOLLOW_SPILL_LIMIT} bytes behind: follow ended"
            ));
        }
        spill
            .file
            .write_all_at(data, spill.written)
            .map_err(|e| format!("write log follower spill: {e}"))?;
        spill.written += data.len() as u64;
        Ok(())
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
                Ok(n) => output.write(stream, &buf[..n]).await,
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
                Ok(n) => output.write(StdStream::Stdout, &buf[..n]).await,
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
        out.write(StdStream::Stdout, b"one\ntw").await;
        let mut sub = out.subscribe(true);
        out.write(StdStream::Stdout, b"o\n").await;
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
        assert!(sub.live.unwrap().recv().await.is_none());
        assert!(out.subscribe(false).live.is_none());
    }

    #[tokio::test]
    async fn a_slow_attacher_holds_the_writer_back_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::open(&dir.path().join("a.log"), LogFormat::Json, 0, 0).unwrap();
        let out = Output::new(log);
        let mut sub = out.subscribe(false);
        let writer = {
            let out = Arc::clone(&out);
            tokio::spawn(async move {
                for i in 0..(ATTACH_QUEUE * 4) {
                    out.write(StdStream::Stdout, format!("{i}\n").as_bytes())
                        .await;
                }
                out.close();
            })
        };
        // The writer cannot get further ahead than the queue.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!writer.is_finished());
        let mut live = sub.live.take().unwrap();
        let mut got = Vec::new();
        while let Some(c) = live.recv().await {
            got.extend_from_slice(&c.data);
        }
        let want: String = (0..ATTACH_QUEUE * 4).map(|i| format!("{i}\n")).collect();
        assert_eq!(String::from_utf8(got).unwrap(), want);
        writer.await.unwrap();
    }

    /// Reads a follow to its end: (replayed bytes, live bytes).
    async fn drain(follow: Follow) -> (Vec<u8>, Vec<u8>) {
        let mut replayed = Vec::new();
        for (f, len) in follow.files {
            f.take(len).read_to_end(&mut replayed).unwrap();
        }
        let mut live = Vec::new();
        if let Some(spool) = follow.live {
            loop {
                match spool.next().await {
                    Spooled::Data(b) => live.extend_from_slice(&b),
                    Spooled::End(why) => {
                        assert!(why.is_none(), "{why:?}");
                        break;
                    }
                }
            }
        }
        (replayed, live)
    }

    #[tokio::test]
    async fn a_follower_far_behind_many_rotations_gets_every_record_once() {
        let dir = tempfile::tempdir().unwrap();
        // 4 KiB files, two kept: the writer rotates hundreds of times while the follower
        // reads nothing, and its records go past memory into the spill file.
        let log = LogFile::open(&dir.path().join("f.log"), LogFormat::Json, 4096, 2).unwrap();
        let out = Output::new(log);
        out.write(StdStream::Stdout, b"before\n").await;
        let follow = out.follow();
        let line = vec![b'x'; 1000];
        let n = FOLLOW_MEMORY / 1000 + 2000;
        for _ in 0..n {
            let mut l = line.clone();
            l.push(b'\n');
            out.write(StdStream::Stdout, &l).await;
        }
        out.write(StdStream::Stderr, b"last").await;
        out.stream_opened();
        out.stream_finished(StdStream::Stderr);
        let (replayed, live) = drain(follow).await;
        let decode = |b: &[u8]| -> Vec<Vec<u8>> {
            b.split(|c| *c == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| crate::log::decode_line(LogFormat::Json, l).unwrap().1)
                .collect()
        };
        assert_eq!(decode(&replayed), vec![b"before\n".to_vec()]);
        let lines = decode(&live);
        assert_eq!(lines.len(), n + 1);
        assert!(lines[..n].iter().all(|l| l.len() == 1001));
        assert_eq!(lines[n], b"last");
        assert!(crate::log::rotated_paths(&dir.path().join("f.log")).len() <= 1);
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
