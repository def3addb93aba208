//! `events`: runc's `{"type":"stats","id":..,"data":{..}}` objects from cgroup stats.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use libcgroups::common::CgroupManager;
use libcgroups::stats::{BlkioDeviceStat, MemoryData, Stats};
use libcontainer::container::ContainerStatus;
use serde_json::{json, Map, Value};

use crate::cli::{EventsArgs, GlobalOpts};
use crate::commands::cgroup_manager;
use crate::state::load;

/// Parse a Go-style duration (`5s`, `500ms`, `1m`, `1h`, plain seconds).
pub fn parse_interval(raw: &str) -> Result<Duration> {
    let s = raw.trim();
    let (num, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow!("invalid interval {raw:?}"))?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("invalid interval {raw:?}"),
    };
    if secs <= 0.0 {
        bail!("duration interval must be greater than 0");
    }
    Ok(Duration::from_secs_f64(secs))
}

fn nonzero(map: &mut Map<String, Value>, key: &str, v: u64) {
    if v != 0 {
        map.insert(key.into(), json!(v));
    }
}

fn memory_entry(d: &MemoryData) -> Value {
    let mut m = Map::new();
    m.insert("limit".into(), json!(d.limit));
    nonzero(&mut m, "usage", d.usage);
    nonzero(&mut m, "max", d.max_usage);
    m.insert("failcnt".into(), json!(d.fail_count));
    Value::Object(m)
}

fn blkio_entries(entries: &[BlkioDeviceStat]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| {
                let mut m = Map::new();
                nonzero(&mut m, "major", e.major);
                nonzero(&mut m, "minor", e.minor);
                if let Some(op) = &e.op_type {
                    m.insert("op".into(), json!(op));
                }
                nonzero(&mut m, "value", e.value);
                Value::Object(m)
            })
            .collect(),
    )
}

/// Convert libcgroups stats into runc's `types.Stats` JSON shape.
pub fn runc_stats(stats: &Stats) -> Value {
    let u = &stats.cpu.usage;
    let mut usage = Map::new();
    nonzero(&mut usage, "total", u.usage_total);
    if !u.per_core_usage_total.is_empty() {
        usage.insert("percpu".into(), json!(u.per_core_usage_total));
    }
    if !u.per_core_usage_kernel.is_empty() {
        usage.insert("percpu_kernel".into(), json!(u.per_core_usage_kernel));
    }
    if !u.per_core_usage_user.is_empty() {
        usage.insert("percpu_user".into(), json!(u.per_core_usage_user));
    }
    usage.insert("kernel".into(), json!(u.usage_kernel));
    usage.insert("user".into(), json!(u.usage_user));
    let t = &stats.cpu.throttling;
    let mut throttling = Map::new();
    nonzero(&mut throttling, "periods", t.periods);
    nonzero(&mut throttling, "throttledPeriods", t.throttled_periods);
    nonzero(&mut throttling, "throttledTime", t.throttled_time);

    let mem = &stats.memory;
    let mut memory = Map::new();
    nonzero(&mut memory, "cache", mem.cache);
    memory.insert("usage".into(), memory_entry(&mem.memory));
    memory.insert("swap".into(), memory_entry(&mem.memswap));
    memory.insert("kernel".into(), memory_entry(&mem.kernel));
    memory.insert("kernelTCP".into(), memory_entry(&mem.kernel_tcp));
    if !mem.stats.is_empty() {
        let raw: BTreeMap<_, _> = mem.stats.iter().collect();
        memory.insert("raw".into(), json!(raw));
    }

    let mut pids = Map::new();
    nonzero(&mut pids, "current", stats.pids.current);
    nonzero(&mut pids, "limit", stats.pids.limit);

    let b = &stats.blkio;
    let mut blkio = Map::new();
    for (key, list) in [
        ("ioServiceBytesRecursive", &b.service_bytes),
        ("ioServicedRecursive", &b.serviced),
        ("ioQueueRecursive", &b.queued),
        ("ioServiceTimeRecursive", &b.service_time),
        ("ioWaitTimeRecursive", &b.wait_time),
        ("ioMergedRecursive", &b.merged),
        ("ioTimeRecursive", &b.time),
        ("sectorsRecursive", &b.sectors),
    ] {
        if !list.is_empty() {
            blkio.insert(key.into(), blkio_entries(list));
        }
    }

    let hugetlb: BTreeMap<_, _> = stats
        .hugetlb
        .iter()
        .map(|(size, h)| {
            let mut m = Map::new();
            nonzero(&mut m, "usage", h.usage);
            nonzero(&mut m, "max", h.max_usage);
            m.insert("failcnt".into(), json!(h.fail_count));
            (size.clone(), Value::Object(m))
        })
        .collect();

    json!({
        "cpu": {"usage": usage, "throttling": throttling},
        "cpuset": {"cpu_exclusive": 0, "mem_hardwall": 0, "mem_exclusive": 0,
                   "memory_migrate": 0, "memory_spread_page": 0, "memory_spread_slab": 0,
                   "memory_pressure": 0, "sched_load_balance": 0, "sched_relax_domain_level": 0},
        "memory": memory,
        "pids": pids,
        "blkio": blkio,
        "hugetlb": hugetlb,
        "intel_rdt": {},
        "network_interfaces": null,
    })
}

/// One runc event line.
pub fn stats_event(id: &str, stats: &Stats) -> Value {
    json!({"type": "stats", "id": id, "data": runc_stats(stats)})
}

/// `berth-runtime events [--stats] [--interval 5s] <id>`.
pub fn events(global: &GlobalOpts, args: EventsArgs) -> Result<()> {
    let interval = parse_interval(&args.interval)?;
    let id = &args.container_id;
    let (mut container, _) = load(&global.root, id)?;
    if container.status() == ContainerStatus::Stopped {
        bail!("container with id {id} is not running");
    }
    let manager = cgroup_manager(&container)?;
    loop {
        let stats = manager
            .stats()
            .with_context(|| format!("read stats of container {id}"))?;
        crate::write_stdout(&format!("{}\n", stats_event(id, &stats)))?;
        if args.stats {
            return Ok(());
        }
        std::thread::sleep(interval);
        container.refresh_status()?;
        if container.status() == ContainerStatus::Stopped {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("5s").expect("5s"), Duration::from_secs(5));
        assert_eq!(
            parse_interval("500ms").expect("ms"),
            Duration::from_millis(500)
        );
        assert_eq!(parse_interval("2").expect("plain"), Duration::from_secs(2));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("fast").is_err());
    }

    #[test]
    fn stats_event_has_runc_shape() {
        let mut stats = Stats::default();
        stats.pids.current = 3;
        stats.memory.memory.usage = 4096;
        stats.memory.memory.limit = 1 << 20;
        stats.cpu.usage.usage_total = 10;
        let ev = stats_event("c1", &stats);
        assert_eq!(ev["type"], "stats");
        assert_eq!(ev["id"], "c1");
        assert_eq!(ev["data"]["pids"]["current"], 3);
        assert_eq!(ev["data"]["memory"]["usage"]["usage"], 4096);
        assert_eq!(ev["data"]["memory"]["usage"]["limit"], 1 << 20);
        assert_eq!(ev["data"]["cpu"]["usage"]["total"], 10);
        assert!(ev["data"]["blkio"].is_object());
    }
}
