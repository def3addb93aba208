//! Unique, runtime-valid container ids so parallel tests never collide.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A container id unique across threads and processes: `<prefix>-<pid>-<n>-<nanos>`.
///
/// Only characters that runc accepts in ids (`[A-Za-z0-9_.+-]`) are kept from `prefix`; the
/// result stays short enough for cgroup and socket paths.
pub fn unique_id(prefix: &str) -> String {
    let clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.+-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(24)
        .collect();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{clean}-{}-{n}-{:x}", std::process::id(), nanos & 0xfffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_sanitized() {
        let a = unique_id("my test/1");
        let b = unique_id("my test/1");
        assert_ne!(a, b);
        assert!(a.starts_with("my-test-1-"), "{a}");
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c)));
    }
}
