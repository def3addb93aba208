//! Converts the runtime's `events --stats` JSON (runc's shape) into `types::v1::Stats`.

use std::collections::HashMap;
use std::time::SystemTime;

use berth_proto::types::v1::{BlkioStats, CpuStats, MemoryStats, PidsStats, Stats};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Event {
    #[serde(rename = "type")]
    typ: String,
    data: Data,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Data {
    cpu: Cpu,
    memory: Memory,
    pids: Pids,
    blkio: Blkio,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Cpu {
    usage: CpuUsage,
    throttling: Throttling,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CpuUsage {
    total: u64,
    percpu: Vec<u64>,
    kernel: u64,
    user: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Throttling {
    periods: u64,
    throttled_periods: u64,
    throttled_time: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Memory {
    cache: u64,
    usage: MemoryEntry,
    swap: MemoryEntry,
    raw: HashMap<String, u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MemoryEntry {
    limit: u64,
    usage: u64,
    max: u64,
    failcnt: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Pids {
    current: u64,
    limit: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Blkio {
    io_service_bytes_recursive: Vec<BlkioEntry>,
    io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BlkioEntry {
    op: String,
    value: u64,
}

fn sum_op(entries: &[BlkioEntry], op: &str) -> u64 {
    entries
        .iter()
        .filter(|e| e.op.eq_ignore_ascii_case(op))
        .map(|e| e.value)
        .sum()
}

/// Parses the first `"type":"stats"` line of `events --stats` output.
pub fn parse(output: &[u8]) -> Result<Stats, String> {
    let event = output
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(serde_json::from_slice::<Event>)
        .find(|e| e.as_ref().map_or(true, |e| e.typ == "stats"))
        .ok_or_else(|| "runtime printed no stats".to_string())?
        .map_err(|e| format!("parse runtime stats: {e}"))?;
    Ok(convert(event.data))
}

fn convert(d: Data) -> Stats {
    let raw = d.memory.raw;
    // cgroup v1 names the anonymous memory `rss`, v2 `anon`; `limit` of "no limit" is the
    // max u64 on v2 and a huge page-aligned number on v1: reported as is.
    let rss = raw
        .get("total_rss")
        .or_else(|| raw.get("rss"))
        .or_else(|| raw.get("anon"))
        .copied()
        .unwrap_or(0);
    Stats {
        read: Some(SystemTime::now().into()),
        cpu: Some(CpuStats {
            usage_total_ns: d.cpu.usage.total,
            usage_user_ns: d.cpu.usage.user,
            usage_kernel_ns: d.cpu.usage.kernel,
            per_cpu_ns: d.cpu.usage.percpu,
            throttling_periods: d.cpu.throttling.periods,
            throttled_periods: d.cpu.throttling.throttled_periods,
            throttled_time_ns: d.cpu.throttling.throttled_time,
        }),
        memory: Some(MemoryStats {
            usage: d.memory.usage.usage,
            max_usage: d.memory.usage.max,
            limit: d.memory.usage.limit,
            cache: d.memory.cache,
            rss,
            swap_usage: d.memory.swap.usage,
            failcnt: d.memory.usage.failcnt,
            raw,
        }),
        pids: Some(PidsStats {
            current: d.pids.current,
            limit: d.pids.limit,
        }),
        blkio: Some(BlkioStats {
            read_bytes: sum_op(&d.blkio.io_service_bytes_recursive, "read"),
            write_bytes: sum_op(&d.blkio.io_service_bytes_recursive, "write"),
            read_ops: sum_op(&d.blkio.io_serviced_recursive, "read"),
            write_ops: sum_op(&d.blkio.io_serviced_recursive, "write"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Trimmed from `runc events --stats` on a cgroup v1 host.
    const RUNC_V1: &str = r#"{"type":"stats","id":"c1","data":{"cpu":{"usage":{"total":52071354,"percpu":[30000000,22071354],"percpu_kernel":[1,2],"kernel":20000000,"user":30000000},"throttling":{"periods":10,"throttledPeriods":2,"throttledTime":12345}},"cpuset":{"cpus":[0,1]},"memory":{"cache":4096,"usage":{"limit":67108864,"usage":1200128,"max":2000000,"failcnt":3},"swap":{"limit":9223372036854771712,"usage":1200128,"failcnt":0},"kernel":{"limit":0,"usage":0,"max":0,"failcnt":0},"kernelTCP":{"limit":0,"failcnt":0},"raw":{"cache":4096,"rss":106496,"total_rss":106496,"pgfault":1000}},"pids":{"current":2,"limit":100},"blkio":{"ioServiceBytesRecursive":[{"major":8,"minor":0,"op":"Read","value":4096},{"major":8,"minor":0,"op":"Write","value":8192},{"major":8,"minor":16,"op":"Read","value":100},{"major":8,"minor":0,"op":"Total","value":12288}],"ioServicedRecursive":[{"major":8,"minor":0,"op":"Read","value":1},{"major":8,"minor":0,"op":"Write","value":2}]},"hugetlb":{},"intel_rdt":{},"network_interfaces":null}}
"#;

    #[test]
    fn runc_stats_convert_field_by_field() {
        let s = parse(RUNC_V1.as_bytes()).unwrap();
        let cpu = s.cpu.unwrap();
        assert_eq!(cpu.usage_total_ns, 52071354);
        assert_eq!(cpu.per_cpu_ns, [30000000, 22071354]);
        assert_eq!(cpu.usage_kernel_ns, 20000000);
        assert_eq!(cpu.usage_user_ns, 30000000);
        assert_eq!(
            (
                cpu.throttling_periods,
                cpu.throttled_periods,
                cpu.throttled_time_ns
            ),
            (10, 2, 12345)
        );
        let m = s.memory.unwrap();
        assert_eq!(
            (m.usage, m.max_usage, m.limit, m.failcnt),
            (1200128, 2000000, 67108864, 3)
        );
        assert_eq!((m.cache, m.rss, m.swap_usage), (4096, 106496, 1200128));
        assert_eq!(m.raw["pgfault"], 1000);
        let p = s.pids.unwrap();
        assert_eq!((p.current, p.limit), (2, 100));
        let b = s.blkio.unwrap();
        assert_eq!(
            (b.read_bytes, b.write_bytes, b.read_ops, b.write_ops),
            (4196, 8192, 1, 2)
        );
        assert!(s.read.is_some());
    }

    #[test]
    fn sparse_v2_stats_and_bad_output() {
        let v2 = r#"{"type":"stats","id":"c","data":{"cpu":{"usage":{"total":5,"kernel":1,"user":4}},"memory":{"usage":{"usage":10,"limit":18446744073709551615},"raw":{"anon":7}},"pids":{"current":1}}}"#;
        let s = parse(v2.as_bytes()).unwrap();
        assert_eq!(s.memory.as_ref().unwrap().rss, 7);
        assert_eq!(s.memory.as_ref().unwrap().limit, u64::MAX);
        assert_eq!(s.pids.unwrap().limit, 0);
        assert!(parse(b"").is_err());
        assert!(parse(b"not json\n").is_err());
    }
}
