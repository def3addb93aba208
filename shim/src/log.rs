//! Container log files: docker json-file and CRI line formats, partial lines, rotation.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use berth_proto::types::v1::{LogFormat, StdStream};

/// Longest line content written as one record; longer lines are split into partial records
/// (docker's json-file and containerd's CRI logger split at 16 KiB as well).
pub const MAX_LINE: usize = 16 * 1024;
/// Rotation size when the request says 0.
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// Files kept when the request says 0 (the live one included).
pub const DEFAULT_MAX_FILES: u32 = 2;

/// Name of a stream as written in log records.
pub fn stream_name(s: StdStream) -> &'static str {
    match s {
        StdStream::Stdout => "stdout",
        StdStream::Stderr => "stderr",
    }
}

/// Appends one record for `content` (without its newline) to `out`.
///
/// `partial` marks content that does not end a line: json-file then omits the `\n` from
/// `log`, CRI writes the `P` tag instead of `F`.
pub fn format_line(
    out: &mut Vec<u8>,
    format: LogFormat,
    stream: StdStream,
    time: &str,
    content: &[u8],
    partial: bool,
) {
    match format {
        LogFormat::Json => {
            #[derive(serde::Serialize)]
            struct Rec<'a> {
                log: &'a str,
                stream: &'a str,
                time: &'a str,
            }
            let mut text = String::from_utf8_lossy(content).into_owned();
            if !partial {
                text.push('\n');
            }
            let rec = Rec {
                log: &text,
                stream: stream_name(stream),
                time,
            };
            // Serializing a struct of strings into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &rec);
            out.push(b'\n');
        }
        LogFormat::Cri => {
            out.extend_from_slice(time.as_bytes());
            out.push(b' ');
            out.extend_from_slice(stream_name(stream).as_bytes());
            out.extend_from_slice(if partial { b" P " } else { b" F " });
            out.extend_from_slice(content);
            out.push(b'\n');
        }
    }
}

/// Decodes one record (without its trailing newline) back to the stream and raw bytes
/// written by the process.
pub fn decode_line(format: LogFormat, line: &[u8]) -> Option<(StdStream, Vec<u8>)> {
    let stream_of = |s: &[u8]| match s {
        b"stdout" => Some(StdStream::Stdout),
        b"stderr" => Some(StdStream::Stderr),
        _ => None,
    };
    match format {
        LogFormat::Json => {
            #[derive(serde::Deserialize)]
            struct Rec {
                log: String,
                stream: String,
            }
            let rec: Rec = serde_json::from_slice(line).ok()?;
            Some((stream_of(rec.stream.as_bytes())?, rec.log.into_bytes()))
        }
        LogFormat::Cri => {
            let mut parts = line.splitn(4, |b| *b == b' ');
            let _time = parts.next()?;
            let stream = stream_of(parts.next()?)?;
            let tag = parts.next()?;
            let mut content = parts.next().unwrap_or_default().to_vec();
            if tag == b"F" {
                content.push(b'\n');
            }
            Some((stream, content))
        }
    }
}

/// The path of rotated file `n` (`<log>.1` is the newest rotated one).
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// The rotated files of `path` that exist, newest first (`<log>.1`, `<log>.2`, ...).
pub fn rotated_paths(path: &Path) -> Vec<PathBuf> {
    (1..)
        .map(|n| rotated_path(path, n))
        .take_while(|p| p.exists())
        .collect()
}

/// One process's log file: line splitting per stream, record formatting, rotation.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    format: LogFormat,
    max_size: u64,
    max_files: u32,
    file: File,
    size: u64,
    /// Bytes of an unfinished line per stream (stdout, stderr).
    pending: [Vec<u8>; 2],
    /// Records formatted but not yet written.
    batch: Vec<u8>,
    /// A copy of every record written since the last [`LogFile::take_tap`], while a log
    /// follower wants them.
    tap: Option<Vec<u8>>,
}

impl LogFile {
    /// Opens (appending to) `path`; 0 for `max_size` / `max_files` means the defaults.
    pub fn open(path: &Path, format: LogFormat, max_size: u64, max_files: u32) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            path: path.to_path_buf(),
            format,
            max_size: if max_size == 0 {
                DEFAULT_MAX_SIZE
            } else {
                max_size
            },
            max_files: if max_files == 0 {
                DEFAULT_MAX_FILES
            } else {
                max_files
            },
            file,
            size,
            pending: [Vec::new(), Vec::new()],
            batch: Vec::new(),
            tap: None,
        })
    }

    /// The live file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The record format.
    pub fn format(&self) -> LogFormat {
        self.format
    }

    /// Starts or stops copying written records aside for [`LogFile::take_tap`].
    pub fn set_tap(&mut self, on: bool) {
        match (on, &self.tap) {
            (true, None) => self.tap = Some(Vec::new()),
            (false, _) => self.tap = None,
            _ => {}
        }
    }

    /// The records written since the last call (`None` when not tapping).
    pub fn take_tap(&mut self) -> Option<Vec<u8>> {
        self.tap.as_mut().map(std::mem::take)
    }

    /// Bytes in the live file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The unfinished line of `stream` not yet in the file.
    pub fn pending(&self, stream: StdStream) -> &[u8] {
        &self.pending[stream as usize]
    }

    /// Logs a chunk of output of `stream`: complete lines become records now, the rest waits
    /// for its newline (or for [`MAX_LINE`] bytes, then it is written as a partial record).
    pub fn write(&mut self, stream: StdStream, mut data: &[u8], time: &str) -> io::Result<()> {
        let s = stream as usize;
        while !data.is_empty() {
            match data.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    if self.pending[s].is_empty() {
                        self.emit_split(stream, &data[..i], time)?;
                    } else {
                        let mut line = std::mem::take(&mut self.pending[s]);
                        line.extend_from_slice(&data[..i]);
                        self.emit_split(stream, &line, time)?;
                        line.clear();
                        // Keep the allocation only if it is small.
                        if line.capacity() <= 4096 {
                            self.pending[s] = line;
                        }
                    }
                    data = &data[i + 1..];
                }
                None => {
                    self.pending[s].extend_from_slice(data);
                    data = &[];
                    while self.pending[s].len() >= MAX_LINE {
                        let rest = self.pending[s].split_off(MAX_LINE);
                        let full = std::mem::replace(&mut self.pending[s], rest);
                        self.record(stream, &full, true, time)?;
                    }
                }
            }
        }
        self.flush_batch()
    }

    /// Writes the unfinished line of `stream` as a partial record (at end of output).
    pub fn finish(&mut self, stream: StdStream, time: &str) -> io::Result<()> {
        let s = stream as usize;
        if !self.pending[s].is_empty() {
            let p = std::mem::take(&mut self.pending[s]);
            self.record(stream, &p, true, time)?;
        }
        self.flush_batch()
    }

    /// Writes a complete line, split into partial records of at most [`MAX_LINE`] bytes.
    fn emit_split(&mut self, stream: StdStream, mut line: &[u8], time: &str) -> io::Result<()> {
        while line.len() > MAX_LINE {
            self.record(stream, &line[..MAX_LINE], true, time)?;
            line = &line[MAX_LINE..];
        }
        self.record(stream, line, false, time)
    }

    fn record(
        &mut self,
        stream: StdStream,
        content: &[u8],
        partial: bool,
        time: &str,
    ) -> io::Result<()> {
        let start = self.batch.len();
        format_line(&mut self.batch, self.format, stream, time, content, partial);
        let len = (self.batch.len() - start) as u64;
        let written = self.size + start as u64;
        if written > 0 && written + len > self.max_size {
            // This record would cross the limit: write what came before, rotate, and start
            // the new file with this record.
            let rec = self.batch.split_off(start);
            self.flush_batch()?;
            self.rotate()?;
            self.batch = rec;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let r = self.file.write_all(&self.batch);
        if let Some(tap) = &mut self.tap {
            tap.extend_from_slice(&self.batch);
        }
        self.size += self.batch.len() as u64;
        self.batch.clear();
        if self.batch.capacity() > 64 * 1024 {
            self.batch.shrink_to(8 * 1024);
        }
        r
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.max_files <= 1 {
            self.file.set_len(0)?;
        } else {
            for n in (1..self.max_files - 1).rev() {
                match fs::rename(rotated_path(&self.path, n), rotated_path(&self.path, n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            fs::rename(&self.path, rotated_path(&self.path, 1))?;
            self.file = open_append(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "2026-01-02T03:04:05.000000006Z";

    fn line(format: LogFormat, stream: StdStream, content: &str, partial: bool) -> String {
        let mut v = Vec::new();
        format_line(&mut v, format, stream, T, content.as_bytes(), partial);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn json_file_lines_look_like_dockers() {
        assert_eq!(
            line(LogFormat::Json, StdStream::Stdout, "hello \"x\"", false),
            "{\"log\":\"hello \\\"x\\\"\\n\",\"stream\":\"stdout\",\"time\":\"2026-01-02T03:04:05.000000006Z\"}\n"
        );
        assert_eq!(
            line(LogFormat::Json, StdStream::Stderr, "part", true),
            "{\"log\":\"part\",\"stream\":\"stderr\",\"time\":\"2026-01-02T03:04:05.000000006Z\"}\n"
        );
    }

    #[test]
    fn cri_lines_look_like_kubelets() {
        assert_eq!(
            line(LogFormat::Cri, StdStream::Stdout, "hello", false),
            "2026-01-02T03:04:05.000000006Z stdout F hello\n"
        );
        assert_eq!(
            line(LogFormat::Cri, StdStream::Stderr, "par", true),
            "2026-01-02T03:04:05.000000006Z stderr P par\n"
        );
    }

    #[test]
    fn records_decode_back_to_raw_bytes() {
        for f in [LogFormat::Json, LogFormat::Cri] {
            for (content, partial) in [("a b c", false), ("x y", true), ("", false)] {
                let l = line(f, StdStream::Stderr, content, partial);
                let (s, raw) = decode_line(f, l.trim_end_matches('\n').as_bytes()).unwrap();
                assert_eq!(s, StdStream::Stderr);
                let want = if partial {
                    content.to_string()
                } else {
                    format!("{content}\n")
                };
                assert_eq!(String::from_utf8(raw).unwrap(), want, "{f:?} {l}");
            }
        }
        assert!(decode_line(LogFormat::Json, b"garbage").is_none());
    }

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn chunks_are_split_at_newlines_and_joined_across_writes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let mut l = LogFile::open(&p, LogFormat::Cri, 0, 0).unwrap();
        l.write(StdStream::Stdout, b"one\ntw", T).unwrap();
        assert_eq!(l.pending(StdStream::Stdout), b"tw");
        l.write(StdStream::Stderr, b"err\n", T).unwrap();
        l.write(StdStream::Stdout, b"o\nthree", T).unwrap();
        l.finish(StdStream::Stdout, T).unwrap();
        let lines: Vec<String> = read(&p)
            .lines()
            .map(|l| l.split_once(' ').unwrap().1.to_string())
            .collect();
        assert_eq!(
            lines,
            [
                "stdout F one",
                "stderr F err",
                "stdout F two",
                "stdout P three"
            ]
        );
    }

    #[test]
    fn long_lines_become_partial_records() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let mut l = LogFile::open(&p, LogFormat::Cri, 0, 0).unwrap();
        let long = "x".repeat(MAX_LINE * 2 + 5);
        l.write(StdStream::Stdout, long.as_bytes(), T).unwrap();
        // Two full-size partial records are out; 5 bytes wait for more.
        assert_eq!(read(&p).lines().count(), 2);
        assert_eq!(l.pending(StdStream::Stdout).len(), 5);
        l.write(StdStream::Stdout, b"\n", T).unwrap();
        let text = read(&p);
        let tags: Vec<&str> = text.lines().map(|l| l.split(' ').nth(2).unwrap()).collect();
        assert_eq!(tags, ["P", "P", "F"]);
        // A long line in one chunk is split the same way.
        let mut l = LogFile::open(&dir.path().join("j.log"), LogFormat::Json, 0, 0).unwrap();
        l.write(StdStream::Stdout, format!("{long}\n").as_bytes(), T)
            .unwrap();
        let text = read(&dir.path().join("j.log"));
        let decoded: Vec<u8> = text
            .lines()
            .flat_map(|x| decode_line(LogFormat::Json, x.as_bytes()).unwrap().1)
            .collect();
        assert_eq!(text.lines().count(), 3);
        assert_eq!(decoded, format!("{long}\n").into_bytes());
    }

    #[test]
    fn rotation_keeps_max_files_and_never_exceeds_max_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.log");
        let mut l = LogFile::open(&p, LogFormat::Cri, 200, 3).unwrap();
        for i in 0..100 {
            l.write(StdStream::Stdout, format!("line {i}\n").as_bytes(), T)
                .unwrap();
        }
        assert!(p.exists());
        assert!(rotated_path(&p, 1).exists());
        assert!(rotated_path(&p, 2).exists());
        assert!(!rotated_path(&p, 3).exists());
        for f in [p.clone(), rotated_path(&p, 1), rotated_path(&p, 2)] {
            let len = fs::metadata(&f).unwrap().len();
            assert!(len > 0 && len <= 200, "{} is {len} bytes", f.display());
        }
        assert!(read(&p).contains("line 99"));
        assert_eq!(l.size(), fs::metadata(&p).unwrap().len());
        // Lines stay in order across files.
        let all = format!(
            "{}{}{}",
            read(&rotated_path(&p, 2)),
            read(&rotated_path(&p, 1)),
            read(&p)
        );
        let nums: Vec<u32> = all
            .lines()
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
    }

    #[test]
    fn one_file_means_truncate_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.log");
        let mut l = LogFile::open(&p, LogFormat::Json, 300, 1).unwrap();
        for i in 0..50 {
            l.write(StdStream::Stdout, format!("n{i}\n").as_bytes(), T)
                .unwrap();
        }
        assert!(!rotated_path(&p, 1).exists());
        let len = fs::metadata(&p).unwrap().len();
        assert!(len <= 300);
        assert!(read(&p).contains("n49"));
        assert!(!read(&p).contains("\"n0\\n\""));
    }
}
