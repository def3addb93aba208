//! The terminal: raw mode for `-it`, the window size for resizes, and detach-key sequences.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use anyhow::{anyhow, bail, Result};
use nix::sys::termios::{self, SetArg, Termios};

/// docker's default detach sequence.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// Parses docker's detach-keys syntax (`ctrl-p,ctrl-q`, `a,ctrl-@`) into bytes.
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for key in s.split(',') {
        let key = key.trim();
        if key.len() > 1 {
            let lower = key.to_ascii_lowercase();
            let Some(rest) = lower.strip_prefix("ctrl-") else {
                bail!("Unknown character: '{key}'");
            };
            let c = match rest.as_bytes() {
                [c @ b'a'..=b'z'] => c - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => bail!("Unknown character: '{key}'"),
            };
            out.push(c);
        } else if let Some(&b) = key.as_bytes().first() {
            out.push(b);
        } else {
            bail!("Unknown character: '{key}'");
        }
    }
    Ok(out)
}

/// Watches a byte stream for the detach sequence, holding back a partial match until it either
/// completes (detach) or breaks (the held bytes are passed on), as docker's escape proxy does.
#[derive(Debug, Default)]
pub struct EscapeProxy {
    keys: Vec<u8>,
    matched: usize,
}

impl EscapeProxy {
    /// A proxy for this sequence (empty: never detaches).
    pub fn new(keys: Vec<u8>) -> Self {
        EscapeProxy { keys, matched: 0 }
    }

    /// Feeds input; returns the bytes to forward and whether the sequence completed.
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        if self.keys.is_empty() {
            out.extend_from_slice(input);
            return (out, false);
        }
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return (out, true);
                }
            } else {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b == self.keys[0] {
                    self.matched = 1;
                } else {
                    out.push(b);
                }
            }
        }
        (out, false)
    }
}

/// Puts stdin into raw mode until dropped.
#[derive(Debug)]
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode on stdin, if stdin is a terminal.
    pub fn enable() -> Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = termios::tcgetattr(stdin.as_fd()).map_err(|e| anyhow!("get termios: {e}"))?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        // Keep output post-processing so messages printed after detach line up.
        raw.output_flags |= termios::OutputFlags::OPOST;
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
            .map_err(|e| anyhow!("set raw mode: {e}"))?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// The terminal size (rows, columns) of stdout, or of stdin.
pub fn size() -> Option<(u16, u16)> {
    for fd in [libc::STDOUT_FILENO, libc::STDIN_FILENO] {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize into the struct we own; fd is a standard fd.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
        if rc == 0 && ws.ws_row > 0 && ws.ws_col > 0 {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

/// Whether stdin is a terminal.
pub fn stdin_is_tty() -> bool {
    std::io::stdin().is_terminal()
}

/// Whether stdout is a terminal.
pub fn stdout_is_tty() -> bool {
    std::io::stdout().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_like_docker() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys("a,ctrl-@").unwrap(), vec![b'a', 0]);
        assert_eq!(
            parse_detach_keys("ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_").unwrap(),
            vec![27, 28, 29, 30, 31]
        );
        assert_eq!(parse_detach_keys("CTRL-A").unwrap(), vec![1]);
        assert!(parse_detach_keys("ctrl-1").is_err());
        assert!(parse_detach_keys("shift-a").is_err());
        assert!(parse_detach_keys("").is_err());
    }

    #[test]
    fn escape_proxy_holds_partial_matches() {
        let mut p = EscapeProxy::new(vec![16, 17]);
        assert_eq!(p.feed(b"ab"), (b"ab".to_vec(), false));
        assert_eq!(p.feed(&[16]), (vec![], false));
        assert_eq!(p.feed(b"x"), (vec![16, b'x'], false));
        assert_eq!(p.feed(&[16, 16]), (vec![16], false));
        assert_eq!(p.feed(&[17, b'z']), (vec![], true));
        let mut none = EscapeProxy::new(vec![]);
        assert_eq!(none.feed(&[16, 17]), (vec![16, 17], false));
    }
}
