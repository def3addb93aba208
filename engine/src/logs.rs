//! Reading containers' json-file logs (written by their shims) for `/containers/{id}/logs`,
//! and Docker's stream framing.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};

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

/// New complete lines of the live file from `offset` (starting over when it was rotated).
pub fn read_from(live: &Path, offset: &mut u64, filter: &Filter) -> Vec<Entry> {
    let mut out = Vec::new();
    let Ok(mut file) = std::fs::File::open(live) else {
        return out;
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len < *offset {
        *offset = 0; // rotated
    }
    if file.seek(SeekFrom::Start(*offset)).is_err() {
        return out;
    }
    let mut r = BufReader::new(file);
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !line.ends_with('\n') {
                    break;
                }
                *offset += n as u64;
                if let Some(e) = parse_line(line.trim_end()) {
                    if filter.wants(&e) {
                        out.push(e);
                    }
                }
            }
        }
    }
    out
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
        let mut off = end;
        assert!(read_from(&p, &mut off, &all).is_empty());
    }
}
