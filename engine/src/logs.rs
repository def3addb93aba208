//! Reading containers' json-file logs (written by their shims) for `/containers/{id}/logs`:
//! the files, and following a running container through its shim; Docker's stream framing.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use berth_proto::types::v1 as types;
use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::supervisor::Supervisor;

/// Docker's 8-byte header framing: stream (1 stdout, 2 stderr), three zero bytes, BE length.
pub fn frame(stream: u8, data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + data.len());
    b.put_u8(stream);
    b.put_slice(&[0, 0, 0]);
    b.put_u32(data.len() as u32);
    b.put_slice(data);
    b.freeze()
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1 stdout, 2 stderr.
    pub stream: u8,
    pub time: String,
    pub data: Vec<u8>,
}

/// Parses one json-file line.
pub fn parse_line(line: &str) -> Option<Entry> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(Entry {
        stream: if v["stream"] == "stderr" { 2 } else { 1 },
        time: v["time"].as_str().unwrap_or_default().to_string(),
        data: v["log"].as_str().unwrap_or_default().as_bytes().to_vec(),
    })
}

/// The log files of a container, oldest first (`x.log.N` ... `x.log.1`, `x.log`).
pub fn files(live: &Path) -> Vec<PathBuf> {
    let mut rotated = Vec::new();
    for n in 1..100 {
        let p = PathBuf::from(format!("{}.{n}", live.display()));
        if !p.exists() {
            break;
        }
        rotated.push(p);
    }
    rotated.reverse();
    rotated.push(live.to_path_buf());
    rotated
}

/// Which entries a logs request wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub stdout: bool,
    pub stderr: bool,
    /// Unix seconds (fractional); entries at or after it.
    pub since: Option<f64>,
    pub until: Option<f64>,
    /// Only the last N lines (`None`: all).
    pub tail: Option<usize>,
    pub timestamps: bool,
}

impl Filter {
    pub fn wants(&self, e: &Entry) -> bool {
        if (e.stream == 1 && !self.stdout) || (e.stream == 2 && !self.stderr) {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let t = chrono::DateTime::parse_from_rfc3339(&e.time)
                .map(|t| t.timestamp() as f64 + t.timestamp_subsec_nanos() as f64 / 1e9)
                .unwrap_or(0.0);
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t > u) {
                return false;
            }
        }
        true
    }

    /// The bytes to send for an entry (framed unless the container has a TTY).
    pub fn render(&self, e: &Entry, tty: bool) -> Bytes {
        let mut data = Vec::with_capacity(e.data.len() + 32);
        if self.timestamps {
            data.extend_from_slice(e.time.as_bytes());
            data.push(b' ');
        }
        data.extend_from_slice(&e.data);
        if tty {
            Bytes::from(data)
        } else {
            frame(e.stream, &data)
        }
    }
}

/// Every entry in the files that the filter wants, and where the live file ended.
pub fn read_all(live: &Path, filter: &Filter) -> (Vec<Entry>, u64) {
    let mut out = Vec::new();
    let mut end = 0;
    for f in files(live) {
        let Ok(file) = std::fs::File::open(&f) else {
            continue;
        };
        let mut r = BufReader::new(file);
        let mut line = String::new();
        let mut pos = 0u64;
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !line.ends_with('\n') {
                        break; // a line being written: the follower picks it up
                    }
                    pos += n as u64;
                    if let Some(e) = parse_line(line.trim_end()) {
                        if filter.wants(&e) {
                            out.push(e);
                        }
                    }
                }
            }
        }
        if f == live {
            end = pos;
        }
    }
    if let Some(t) = filter.tail {
        let skip = out.len().saturating_sub(t);
        out.drain(..skip);
    }
    (out, end)
}

/// Follows a running container's log through its shim (`AttachOpen.log_records`): every file
/// of the rotation as it stands, then each record as the shim writes it, until the
/// container's output closes. The shim holds the files open and spools what this reader has
/// not taken yet, so no rotation opens a gap, however fast the container writes. `Ok(false)`:
/// the container has no task any more and its files hold everything.
pub async fn follow(
    sup: &Supervisor,
    id: &str,
    filter: &Filter,
    tty: bool,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
    progress: impl Fn(),
) -> Result<bool, tonic::Status> {
    let (req_tx, req_rx) = mpsc::channel(1);
    let open = types::AttachRequest {
        msg: Some(types::attach_request::Msg::Open(types::AttachOpen {
            namespace: sup.namespace.clone(),
            container_id: id.to_string(),
            stdout: true,
            stderr: true,
            log_records: true,
            ..Default::default()
        })),
    };
    if req_tx.send(open).await.is_err() {
        return Err(tonic::Status::internal("attach request channel closed"));
    }
    let mut stream = match sup.tasks().attach(ReceiverStream::new(req_rx)).await {
        Ok(s) => s.into_inner(),
        Err(s) if s.code() == tonic::Code::NotFound => return Ok(false),
        Err(s) => return Err(s),
    };
    // The replay is gathered first when only its last lines are wanted.
    let mut replay: Option<VecDeque<Entry>> = Some(VecDeque::new());
    let mut buf: Vec<u8> = Vec::new();
    let send = |e: &Entry| tx.send(Ok(filter.render(e, tty)));
    while let Some(msg) = stream.message().await? {
        if msg.data.is_empty() {
            for e in replay.take().into_iter().flatten() {
                if send(&e).await.is_err() {
                    return Ok(true);
                }
            }
            continue;
        }
        buf.extend_from_slice(&msg.data);
        let mut start = 0;
        while let Some(n) = buf[start..].iter().position(|b| *b == b'\n') {
            let line = &buf[start..start + n];
            start += n + 1;
            let Some(e) = std::str::from_utf8(line).ok().and_then(parse_line) else {
                continue;
            };
            if !filter.wants(&e) {
                continue;
            }
            match &mut replay {
                Some(r) => {
                    r.push_back(e);
                    if filter.tail.is_some_and(|t| r.len() > t) {
                        r.pop_front();
                    }
                }
                None => {
                    if send(&e).await.is_err() {
                        return Ok(true);
                    }
                }
            }
        }
        buf.drain(..start);
        progress();
    }
    drop(req_tx);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_is_dockers() {
        let f = frame(2, b"hi");
        assert_eq!(&f[..], &[2, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
    }

    #[test]
    fn tail_since_and_streams() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c-json.log");
        std::fs::write(
            &p,
            concat!(
                "{\"log\":\"a\\n\",\"stream\":\"stdout\",\"time\":\"2026-01-01T00:00:01Z\"}\n",
                "{\"log\":\"b\\n\",\"stream\":\"stderr\",\"time\":\"2026-01-01T00:00:02Z\"}\n",
                "{\"log\":\"c\\n\",\"stream\":\"stdout\",\"time\":\"2026-01-01T00:00:03Z\"}\n",
                "{\"log\":\"partial"
            ),
        )
        .unwrap();
        let all = Filter {
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let (e, end) = read_all(&p, &all);
        assert_eq!(e.len(), 3);
        assert!(end > 0);
        let f = Filter {
            tail: Some(1),
            ..all.clone()
        };
        assert_eq!(read_all(&p, &f).0[0].data, b"c\n");
        let f = Filter {
            stderr: false,
            ..all.clone()
        };
        assert_eq!(read_all(&p, &f).0.len(), 2);
        let since = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:02Z")
            .unwrap()
            .timestamp() as f64;
        let f = Filter {
            since: Some(since),
            ..all.clone()
        };
        assert_eq!(read_all(&p, &f).0.len(), 2);
    }
}
