//! Detach keys on attached stdin (`detachKeys`, default `ctrl-p,ctrl-q`), as dockerd applies
//! them for TTY attaches and execs (`container/stream/attach.go`, `copyEscapable`).
//!
//! The CLI crate has its own copy for the client side: crates of different binaries do not
//! link each other (ARCHITECTURE.md), and the docker CLI relies on the daemon doing this.

use crate::error::ApiError;

/// dockerd's default detach sequence.
pub const DEFAULT_KEYS: &str = "ctrl-p,ctrl-q";

/// Parses docker's detach-keys syntax (`ctrl-p,ctrl-q`, `a,ctrl-@`) into bytes.
pub fn parse_keys(s: &str) -> Result<Vec<u8>, ApiError> {
    let bad = |key: &str| {
        ApiError::bad_request(format!(
            "Invalid detach keys ({s}) provided: Unknown character: '{key}'"
        ))
    };
    let mut out = Vec::new();
    for key in s.split(',') {
        let key = key.trim();
        match key.as_bytes() {
            [b] => out.push(*b),
            _ => {
                let lower = key.to_ascii_lowercase();
                let rest = lower.strip_prefix("ctrl-").ok_or_else(|| bad(key))?;
                out.push(match rest.as_bytes() {
                    [c @ b'a'..=b'z'] => c - b'a' + 1,
                    [b'@'] => 0,
                    [b'['] => 27,
                    [b'\\'] => 28,
                    [b']'] => 29,
                    [b'^'] => 30,
                    [b'_'] => 31,
                    _ => return Err(bad(key)),
                });
            }
        }
    }
    Ok(out)
}

/// Watches stdin for the detach sequence, holding back a partial match until it completes
/// (detach) or breaks (the held bytes go on to the container).
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

    /// Feeds input; returns the bytes for the container and whether the sequence completed.
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        if self.keys.is_empty() {
            return (input.to_vec(), false);
        }
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
            } else {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = usize::from(b == self.keys[0]);
                if self.matched == 0 {
                    out.push(b);
                }
            }
        }
        (out, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_like_docker() {
        assert_eq!(parse_keys(DEFAULT_KEYS).unwrap(), vec![16, 17]);
        assert_eq!(parse_keys("a,ctrl-@").unwrap(), vec![b'a', 0]);
        assert!(parse_keys("ctrl-1").is_err());
        assert!(parse_keys("").is_err());
    }

    #[test]
    fn proxy_holds_partial_matches_and_detaches() {
        let mut p = EscapeProxy::new(vec![16, 17]);
        assert_eq!(p.feed(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(p.feed(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(p.feed(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(p.feed(b"\x11rest"), (Vec::new(), true));
    }
}
