//! Keeps VmRSS honest: unmaps clean code pages the shim touched once (startup, a burst of
//! RPCs) so its resident set is what it uses while it waits, not what it ever ran.
//!
//! Code pages are file-backed and shared with every other shim through the page cache; the
//! kernel maps them in 64 KiB "fault-around" runs, so one RPC leaves megabytes of a big gRPC
//! binary counted in each shim's RSS. `MADV_DONTNEED` on a private, never-written
//! executable mapping only drops this process's page-table entries: the pages stay in the page
//! cache and the next use is a minor fault. Mappings with any private dirty or anonymous page
//! (text relocations, breakpoints) are left alone, since dropping them would lose data.

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Quiet time after activity before trimming.
const DEBOUNCE: Duration = Duration::from_secs(2);

/// Parses `/proc/self/smaps` text into the executable, clean, file-backed ranges.
fn clean_text_ranges(smaps: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    let mut clean = true;
    let mut resident = false;
    let mut flush = |cur: Option<(usize, usize)>, clean: bool, resident: bool| {
        if let (Some(r), true, true) = (cur, clean, resident) {
            out.push(r);
        }
    };
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-') {
            if let (Ok(s), Ok(e)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) {
                flush(current.take(), clean, resident);
                let perms = fields.next().unwrap_or("");
                let path = fields.nth(3).unwrap_or("");
                clean = true;
                resident = false;
                if perms == "r-xp" && path.starts_with('/') {
                    current = Some((s, e - s));
                }
                continue;
            }
        }
        let kb = || {
            fields
                .clone()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1)
        };
        match first {
            "Rss:" => resident = kb() > 0,
            "Private_Dirty:" | "Anonymous:" if kb() > 0 => clean = false,
            _ => {}
        }
    }
    flush(current.take(), clean, resident);
    out
}

/// Unmaps the clean code pages of this process; returns how many bytes of ranges it trimmed.
pub fn trim_text() -> usize {
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let mut total = 0;
    for (start, len) in clean_text_ranges(&smaps) {
        // SAFETY: the range is a whole private, read-only, never-written file mapping of this
        // process (checked above): MADV_DONTNEED only drops page-table entries, and the next
        // access faults the identical file content back in.
        let r = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        if r == 0 {
            total += len;
        }
    }
    total
}

/// Gives free heap pages back to the kernel (a burst of output to an attacher leaves freed
/// buffers behind that glibc would otherwise keep resident).
pub fn trim_heap() {
    // SAFETY: malloc_trim only walks glibc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// After each [`Notify`] poke, waits until there has been no poke for [`DEBOUNCE`], then
/// runs [`trim_text`] and [`trim_heap`]. Idle shims do not wake up.
pub fn spawn_trimmer(activity: Arc<Notify>) {
    tokio::spawn(async move {
        loop {
            while tokio::time::timeout(DEBOUNCE, activity.notified())
                .await
                .is_ok()
            {}
            trim_heap();
            let trimmed = trim_text();
            tracing::trace!(trimmed, "trimmed code pages");
            activity.notified().await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_resident_executable_file_mappings_are_trimmed() {
        let smaps = "\
55d0a0000000-55d0a0100000 r--p 00000000 08:01 123 /usr/bin/berth-shim
Rss:                 100 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
55d0a0100000-55d0a0400000 r-xp 00100000 08:01 123 /usr/bin/berth-shim
Rss:                2000 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
7f0000000000-7f0000010000 r-xp 00000000 08:01 9 /usr/lib/libc.so.6
Rss:                  64 kB
Private_Dirty:         4 kB
Anonymous:             4 kB
7f0000020000-7f0000030000 r-xp 00000000 08:01 9 /usr/lib/libm.so.6
Rss:                   0 kB
Private_Dirty:         0 kB
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
Rss:                   8 kB
Private_Dirty:         0 kB
";
        assert_eq!(
            clean_text_ranges(smaps),
            [(0x55d0a0100000, 0x300000)],
            "rodata, dirty text, non-resident text and the vdso are kept"
        );
    }

    #[test]
    fn trimming_our_own_text_is_harmless() {
        assert!(trim_text() > 0);
        // Still running: code faults back in.
        assert_eq!(format!("{}", 40 + 2), "42");
    }
}
