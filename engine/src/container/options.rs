//! The create options of a container checked as dockerd checks them: each option of
//! HostConfig either takes effect (see `spec.rs`), is refused with dockerd's error, or, where
//! dockerd does so on a host without the cgroup file, is discarded with dockerd's warning.

use std::path::Path;
use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::error::ApiError;

/// What the host offers, read once.
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub ncpus: usize,
    pub cpus: Vec<u32>,
    pub mems: Vec<u32>,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    /// cgroup v2 only (no v1 controllers).
    pub unified: bool,
    pub swap: bool,
    pub swappiness: bool,
    pub oom_kill_disable: bool,
    pub blkio_weight: bool,
    pub blkio_weight_device: bool,
    pub blkio_throttle: bool,
    pub cpu_rt: bool,
    /// The highest capability number the kernel knows.
    pub cap_last: u32,
}

fn exists(p: &str) -> bool {
    Path::new(p).exists()
}

impl HostFacts {
    pub fn get() -> &'static HostFacts {
        static FACTS: OnceLock<HostFacts> = OnceLock::new();
        FACTS.get_or_init(HostFacts::read)
    }

    fn read() -> HostFacts {
        let unified =
            !exists("/sys/fs/cgroup/memory") && exists("/sys/fs/cgroup/cgroup.controllers");
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
        };
        let cpuset_cpus = read("/sys/fs/cgroup/cpuset/cpuset.cpus")
            .or_else(|| read("/sys/fs/cgroup/cpuset.cpus.effective"))
            .or_else(|| read("/sys/devices/system/cpu/online"))
            .unwrap_or_else(|| "0".into());
        let cpuset_mems = read("/sys/fs/cgroup/cpuset/cpuset.mems")
            .or_else(|| read("/sys/fs/cgroup/cpuset.mems.effective"))
            .or_else(|| read("/sys/devices/system/node/online"))
            .unwrap_or_else(|| "0".into());
        let ncpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let v2_swap = unified && exists("/proc/swaps");
        HostFacts {
            ncpus,
            cpus: parse_set(&cpuset_cpus).unwrap_or_default(),
            mems: parse_set(&cpuset_mems).unwrap_or_default(),
            cpuset_cpus,
            cpuset_mems,
            unified,
            swap: exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes") || v2_swap,
            swappiness: exists("/sys/fs/cgroup/memory/memory.swappiness"),
            oom_kill_disable: exists("/sys/fs/cgroup/memory/memory.oom_control"),
            blkio_weight: exists("/sys/fs/cgroup/blkio/blkio.weight")
                || exists("/sys/fs/cgroup/blkio/blkio.bfq.weight")
                || (unified && exists("/sys/fs/cgroup/io.weight")),
            blkio_weight_device: exists("/sys/fs/cgroup/blkio/blkio.weight_device")
                || exists("/sys/fs/cgroup/blkio/blkio.bfq.weight_device"),
            blkio_throttle: exists("/sys/fs/cgroup/blkio/blkio.throttle.read_bps_device")
                || unified,
            cpu_rt: exists("/sys/fs/cgroup/cpu/cpu.rt_runtime_us"),
            cap_last: read("/proc/sys/kernel/cap_last_cap")
                .and_then(|s| s.parse().ok())
                .unwrap_or(40),
        }
    }
}

/// A cpuset list (`0-3,5`) as numbers; `None` when malformed.
pub fn parse_set(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if a > b {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

fn bad<T>(m: String) -> Result<T, ApiError> {
    Err(ApiError::bad_request(m))
}

/// The host's name (for containers in its UTS namespace or on its network).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn i64_of(h: &Value, k: &str) -> i64 {
    h[k].as_i64().unwrap_or(0)
}

fn nonempty(h: &Value, k: &str) -> bool {
    match &h[k] {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Number(n) => n.as_f64().unwrap_or(0.0) != 0.0,
        Value::Bool(b) => *b,
    }
}

/// The `sysctl`s a container may set: those of namespaces it owns (runc's rule, as dockerd).
pub fn check_sysctl(
    key: &str,
    host_net: bool,
    host_ipc: bool,
    host_uts: bool,
) -> Result<(), String> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        if host_ipc {
            return Err(format!("sysctl {key:?} not allowed in host ipc namespace"));
        }
        return Ok(());
    }
    if key.starts_with("net.") {
        if host_net {
            return Err(format!(
                "sysctl {key:?} not allowed in host network namespace"
            ));
        }
        return Ok(());
    }
    if key == "kernel.domainname" || key == "kernel.hostname" {
        if host_uts {
            return Err(format!("sysctl {key:?} not allowed in host UTS namespace"));
        }
        return Ok(());
    }
    Err(format!(
        "sysctl {key:?} is not in a separate kernel namespace"
    ))
}

/// A namespace mode: "", `host`, `private`, `shareable`, `none`, `container:<name>`.
pub fn container_ref(mode: &str) -> Option<&str> {
    mode.strip_prefix("container:")
}

/// The log drivers berth has, and the options of its json-file driver.
const LOG_DRIVERS: &[&str] = &["json-file", "none"];
const JSON_FILE_OPTS: &[&str] = &[
    "max-size",
    "max-file",
    "compress",
    "labels",
    "labels-regex",
    "env",
    "env-regex",
    "tag",
];

/// Checks HostConfig (and the Config fields tied to it) as dockerd's create does. Options the
/// host cannot honour, where dockerd discards them with a warning, are removed from `h` and
/// the warnings returned.
pub fn check(h: &mut Value, c: &Value, runtimes: &[&str]) -> Result<Vec<String>, ApiError> {
    let f = HostFacts::get();
    let mut warnings = Vec::new();
    if !h.is_object() {
        *h = json!({});
    }

    // ---- the runtime, isolation, storage -------------------------------------------
    let rt = h["Runtime"].as_str().unwrap_or_default();
    if !rt.is_empty() && !runtimes.contains(&rt) {
        return bad(format!("Unknown runtime specified {rt}"));
    }
    let iso = h["Isolation"].as_str().unwrap_or_default();
    if !iso.is_empty() && iso != "default" {
        return bad(format!(
            "Invalid isolation: {iso:?} - linux only supports 'default'"
        ));
    }
    if nonempty(h, "StorageOpt") {
        return bad(
            "--storage-opt is supported only for overlay over xfs with 'pquota' mount option"
                .into(),
        );
    }
    match h["UsernsMode"].as_str().unwrap_or_default() {
        "" | "host" => {}
        m => {
            return bad(format!(
                "invalid USER mode: {m} (berthd runs without user namespace remapping)"
            ))
        }
    }
    if nonempty(h, "Cgroup") {
        return bad("--cgroup container:<name> is not supported".into());
    }
    match h["CgroupnsMode"].as_str().unwrap_or_default() {
        "" | "host" | "private" => {}
        m => return bad(format!("invalid cgroup namespace mode: {m}")),
    }
    if nonempty(h, "DeviceRequests") {
        return bad("could not select device driver \"\" with capabilities: [[gpu]]".into());
    }
    if i64_of(h, "IOMaximumBandwidth") != 0 || i64_of(h, "IOMaximumIOps") != 0 {
        return bad(
            "Invalid QoS settings: linux does not support Maximum IO Bandwidth or Maximum IO IOps"
                .into(),
        );
    }
    if i64_of(h, "CpuPercent") > 0 {
        warnings.push("linux does not support CPU percent. Percent discarded.".into());
        h["CpuPercent"] = json!(0);
    }
    if i64_of(h, "CpuCount") > 0 {
        warnings.push("linux does not support CPU count. Count discarded.".into());
        h["CpuCount"] = json!(0);
    }

    // ---- restart policy -----------------------------------------------------------------
    let policy = h["RestartPolicy"]["Name"].as_str().unwrap_or_default();
    let retries = h["RestartPolicy"]["MaximumRetryCount"]
        .as_i64()
        .unwrap_or(0);
    match policy {
        "" | "no" | "always" | "unless-stopped" | "on-failure" => {}
        p => {
            return bad(format!(
                "invalid restart policy: unknown policy '{p}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
            ))
        }
    }
    if retries < 0 {
        return bad("invalid restart policy: maximum retry count cannot be negative".into());
    }
    if retries > 0 && policy != "on-failure" {
        return bad(
            "invalid restart policy: maximum retry count can only be used with 'on-failure'".into(),
        );
    }
    if h["AutoRemove"].as_bool() == Some(true) && !matches!(policy, "" | "no") {
        return bad("can't create 'AutoRemove' container with restart policy".into());
    }

    // ---- log driver --------------------------------------------------------------------
    let driver = h["LogConfig"]["Type"].as_str().unwrap_or_default();
    if !driver.is_empty() && !LOG_DRIVERS.contains(&driver) {
        return bad(format!(
            "error looking up logging plugin {driver}: plugin {driver:?} not found"
        ));
    }
    if let Some(opts) = h["LogConfig"]["Config"].as_object() {
        let d = if driver.is_empty() {
            "json-file"
        } else {
            driver
        };
        for (k, v) in opts {
            if d == "none" || !JSON_FILE_OPTS.contains(&k.as_str()) {
                return bad(format!("unknown log opt '{k}' for {d} log driver"));
            }
            let v = v.as_str().unwrap_or_default();
            if k == "max-size" && super::parse_size(v).is_none() {
                return bad(format!("invalid size: '{v}'"));
            }
            if k == "max-file" && v.parse::<u32>().map_or(true, |n| n < 1) {
                return bad("max-file cannot be less than 1".into());
            }
            if k == "compress" && v != "true" && v != "false" {
                return bad(format!("error parsing compress log option: {v}"));
            }
        }
    }

    // ---- memory ------------------------------------------------------------------------
    let memory = i64_of(h, "Memory");
    if memory != 0 && memory < 6 * 1024 * 1024 {
        return bad("Minimum memory limit allowed is 6MB".into());
    }
    let reservation = i64_of(h, "MemoryReservation");
    if reservation != 0 && reservation < 6 * 1024 * 1024 {
        return bad("Minimum memory reservation allowed is 6MB".into());
    }
    if memory > 0 && reservation > 0 && memory < reservation {
        return bad(
            "Minimum memory limit can not be less than memory reservation limit, see usage".into(),
        );
    }
    let swap = i64_of(h, "MemorySwap");
    if swap > 0 && memory <= 0 {
        return bad(
            "You should always set the Memory limit when using Memoryswap limit, see usage".into(),
        );
    }
    if swap > 0 && swap < memory {
        return bad(
            "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
        );
    }
    if memory > 0 && swap != 0 && !f.swap {
        warnings.push("Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.".into());
        h["MemorySwap"] = json!(-1);
    }
    if let Some(s) = h["MemorySwappiness"].as_i64() {
        if s != -1 && !(0..=100).contains(&s) {
            return bad(format!(
                "Invalid value: {s}, valid memory swappiness range is 0-100"
            ));
        }
        if s != -1 && !f.swappiness {
            warnings.push("Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. Memory swappiness discarded.".into());
            h["MemorySwappiness"] = Value::Null;
        }
    }
    if i64_of(h, "KernelMemory") != 0 {
        warnings.push("Specifying a kernel memory limit is deprecated and will be removed in a future release.".into());
        warnings.push("Your kernel does not support kernel memory limit capabilities or the cgroup is not mounted. Limitation discarded.".into());
        h["KernelMemory"] = json!(0);
    }
    if i64_of(h, "KernelMemoryTCP") != 0 {
        warnings.push("Your kernel does not support kernel memory TCP limit capabilities or the cgroup is not mounted. Limitation discarded.".into());
        h["KernelMemoryTCP"] = json!(0);
    }
    if h["OomKillDisable"].as_bool() == Some(true) {
        if !f.oom_kill_disable {
            warnings.push(
                "Your kernel does not support OomKillDisable. OomKillDisable discarded.".into(),
            );
            h["OomKillDisable"] = json!(false);
        } else if memory == 0 {
            warnings.push("OOM killer is disabled for the container, but no memory limit is set, this can result in the system running out of resources.".into());
        }
    }
    let adj = i64_of(h, "OomScoreAdj");
    if !(-1000..=1000).contains(&adj) {
        return bad(format!(
            "Invalid value {adj}, range for oom score adj is [-1000, 1000]"
        ));
    }
    if i64_of(h, "ShmSize") < 0 {
        return bad("SHM size can not be less than 0".into());
    }

    // ---- cpu ---------------------------------------------------------------------------
    let nano = i64_of(h, "NanoCpus");
    let period = i64_of(h, "CpuPeriod");
    let quota = i64_of(h, "CpuQuota");
    if nano > 0 && period > 0 {
        return bad("Conflicting options: Nano CPUs and CPU Period cannot both be set".into());
    }
    if nano > 0 && quota > 0 {
        return bad("Conflicting options: Nano CPUs and CPU Quota cannot both be set".into());
    }
    if nano < 0 || nano > f.ncpus as i64 * 1_000_000_000 {
        return bad(format!(
            "Range of CPUs is from 0.01 to {}.00, as there are only {} CPUs available",
            f.ncpus, f.ncpus
        ));
    }
    if period != 0 && !(1000..=1_000_000).contains(&period) {
        return bad(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
                .into(),
        );
    }
    if quota > 0 && quota < 1000 {
        return bad("CPU cfs quota can not be less than 1ms (i.e. 1000)".into());
    }
    if i64_of(h, "CpuShares") < 0 {
        return bad("CPU shares can not be less than 0".into());
    }
    let rt_period = i64_of(h, "CpuRealtimePeriod");
    let rt_runtime = i64_of(h, "CpuRealtimeRuntime");
    if (rt_period != 0 || rt_runtime != 0) && !f.cpu_rt {
        return bad("Your kernel does not support cgroup cpu real-time period".into());
    }
    if rt_period != 0 && rt_runtime != 0 && rt_runtime > rt_period {
        return bad("cpu-rt-runtime cannot be higher than cpu-rt-period".into());
    }
    if let Some(cpus) = h["CpusetCpus"].as_str().filter(|s| !s.is_empty()) {
        let Some(want) = parse_set(cpus) else {
            return bad(format!("Invalid value {cpus} for cpuset cpus"));
        };
        if want.iter().any(|c| !f.cpus.contains(c)) {
            return bad(format!(
                "Requested CPUs are not available - requested {cpus}, available: {}",
                f.cpuset_cpus
            ));
        }
    }
    if let Some(mems) = h["CpusetMems"].as_str().filter(|s| !s.is_empty()) {
        let Some(want) = parse_set(mems) else {
            return bad(format!("Invalid value {mems} for cpuset mems"));
        };
        if want.iter().any(|c| !f.mems.contains(c)) {
            return bad(format!(
                "Requested memory nodes are not available - requested {mems}, available: {}",
                f.cpuset_mems
            ));
        }
    }

    // ---- block io ----------------------------------------------------------------------
    let weight = i64_of(h, "BlkioWeight");
    if weight > 0 && !(10..=1000).contains(&weight) {
        return bad("Range of blkio weight is from 10 to 1000".into());
    }
    if weight > 0 && !f.blkio_weight {
        warnings.push("Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.".into());
        h["BlkioWeight"] = json!(0);
    }
    if nonempty(h, "BlkioWeightDevice") && !f.blkio_weight_device {
        warnings.push("Your kernel does not support Block I/O weight_device or the cgroup is not mounted. Weight-device discarded.".into());
        h["BlkioWeightDevice"] = json!([]);
    }
    for k in [
        "BlkioWeightDevice",
        "BlkioDeviceReadBps",
        "BlkioDeviceWriteBps",
        "BlkioDeviceReadIOps",
        "BlkioDeviceWriteIOps",
    ] {
        for d in h[k].as_array().cloned().unwrap_or_default() {
            let path = d["Path"].as_str().unwrap_or_default();
            if let Err(e) = std::fs::metadata(path) {
                return bad(format!("stat {path}: {}", crate::error::io_words(&e)));
            }
        }
        if k != "BlkioWeightDevice" && nonempty(h, k) && !f.blkio_throttle {
            warnings.push(format!(
                "Your kernel does not support {k}. Throttling discarded."
            ));
            h[k] = json!([]);
        }
    }

    // ---- pids, ulimits, sysctls ---------------------------------------------------------
    for u in h["Ulimits"].as_array().cloned().unwrap_or_default() {
        let name = u["Name"].as_str().unwrap_or_default();
        if super::rlimit_name(name).is_none() {
            return bad(format!("invalid ulimit type: {name}"));
        }
        let (soft, hard) = (
            u["Soft"].as_i64().unwrap_or(0),
            u["Hard"].as_i64().unwrap_or(0),
        );
        if soft > hard && hard >= 0 {
            return bad(format!(
                "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            ));
        }
    }
    let net = h["NetworkMode"].as_str().unwrap_or_default();
    let host_net = net == "host" || net.starts_with("container:");
    if net == "host"
        && (nonempty(h, "PortBindings") || h["PublishAllPorts"].as_bool() == Some(true))
    {
        warnings.push("Published ports are discarded when using host network mode".into());
    }
    let ipc = h["IpcMode"].as_str().unwrap_or_default();
    let host_ipc = ipc == "host" || ipc.starts_with("container:");
    let uts = h["UTSMode"].as_str().unwrap_or_default();
    if let Some(s) = h["Sysctls"].as_object() {
        for k in s.keys() {
            check_sysctl(k, host_net, host_ipc, uts == "host" || net == "host").or_else(bad)?;
        }
    }

    // ---- namespaces --------------------------------------------------------------------
    match ipc {
        "" | "host" | "private" | "shareable" | "none" => {}
        m if m.starts_with("container:") && m.len() > 10 => {}
        m => return bad(format!("invalid IPC mode: {m}")),
    }
    match h["PidMode"].as_str().unwrap_or_default() {
        "" | "host" => {}
        m if m.starts_with("container:") && m.len() > 10 => {}
        m => return bad(format!("invalid PID mode: {m}")),
    }
    match uts {
        "" | "host" => {}
        _ => return bad("invalid UTS mode".into()),
    }
    let hostname = c["Hostname"].as_str().unwrap_or_default();
    if uts == "host" && !hostname.is_empty() {
        return bad("conflicting options: hostname and the UTS mode".into());
    }
    if net.starts_with("container:") {
        if !hostname.is_empty() {
            return bad("conflicting options: hostname and the network mode".into());
        }
        for k in ["Dns", "DnsSearch", "DnsOptions", "ExtraHosts"] {
            if nonempty(h, k) {
                return bad(format!(
                    "conflicting options: {} and the network mode",
                    match k {
                        "Dns" => "dns",
                        "DnsSearch" => "dns search",
                        "DnsOptions" => "dns options",
                        _ => "custom host-to-IP mapping",
                    }
                ));
            }
        }
        if nonempty(h, "PortBindings") || h["PublishAllPorts"].as_bool() == Some(true) {
            return bad(
                "conflicting options: port publishing and the container type network mode".into(),
            );
        }
        if nonempty(c, "MacAddress") {
            return bad("conflicting options: mac-address and the network mode".into());
        }
    }
    for e in h["ExtraHosts"].as_array().into_iter().flatten() {
        let e = e.as_str().unwrap_or_default();
        let ok = e
            .split_once(':')
            .or_else(|| e.split_once('='))
            .is_some_and(|(n, a)| {
                !n.is_empty() && (a == "host-gateway" || a.parse::<std::net::IpAddr>().is_ok())
            });
        if !ok {
            return bad(format!("invalid IP address in add-host: {e:?}"));
        }
    }
    for d in h["Dns"].as_array().into_iter().flatten() {
        let d = d.as_str().unwrap_or_default();
        if d.parse::<std::net::IpAddr>().is_err() {
            return bad(format!("{d} is not an ip address"));
        }
    }

    // ---- security ------------------------------------------------------------------------
    for cap in ["CapAdd", "CapDrop"] {
        for c in h[cap].as_array().into_iter().flatten() {
            let name = super::cap_name(c.as_str().unwrap_or_default());
            if name != "CAP_ALL" && !super::ALL_CAPS.contains(&name.as_str()) {
                return bad(format!("invalid {cap}: unknown capability: {name:?}"));
            }
        }
    }
    for o in h["SecurityOpt"].as_array().cloned().unwrap_or_default() {
        let o = o.as_str().unwrap_or_default();
        let (k, v) = o
            .split_once('=')
            .or_else(|| o.split_once(':'))
            .unwrap_or((o, ""));
        match k {
            "no-new-privileges" if o == "no-new-privileges" => {}
            "no-new-privileges" if v == "true" || v == "false" => {}
            "no-new-privileges" => return bad(format!("invalid --security-opt 2: {o:?}")),
            // As dockerd on a host without SELinux or AppArmor: accepted, nothing to apply.
            "label" | "apparmor" => {}
            "seccomp" if v == "unconfined" || v == "builtin" => {}
            "seccomp" => {
                super::seccomp::from_docker_profile(v, &[]).or_else(bad)?;
            }
            "systempaths" if v == "unconfined" => {}
            "writable-cgroups" if v == "true" || v == "false" => {}
            _ => return bad(format!("invalid --security-opt 2: {o:?}")),
        }
    }

    // ---- mounts and devices ------------------------------------------------------------------
    for d in h["Devices"].as_array().into_iter().flatten() {
        let path = d["PathOnHost"].as_str().unwrap_or_default();
        if let Err(e) = std::fs::metadata(path) {
            return bad(format!(
                "error gathering device information while adding custom device {path:?}: {}",
                crate::error::io_words(&e)
            ));
        }
    }
    for r in h["DeviceCgroupRules"].as_array().into_iter().flatten() {
        let r = r.as_str().unwrap_or_default();
        if super::parse_device_rule(r).is_none() {
            return bad(format!("invalid device cgroup rule format: '{r}'"));
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(h: Value) -> String {
        let mut h = h;
        check(&mut h, &json!({}), &["runc"]).unwrap_err().message
    }

    #[test]
    fn sets_parse() {
        assert_eq!(parse_set("0-2,5"), Some(vec![0, 1, 2, 5]));
        assert_eq!(parse_set("3-1"), None);
        assert_eq!(parse_set("x"), None);
    }

    #[test]
    fn dockerd_refusals() {
        let n = HostFacts::get().ncpus;
        assert_eq!(
            err(json!({"NanoCpus": 999_000_000_000i64})),
            format!("Range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available")
        );
        assert_eq!(
            err(json!({"Memory": 1024})),
            "Minimum memory limit allowed is 6MB"
        );
        assert_eq!(
            err(json!({"Runtime": "foo"})),
            "Unknown runtime specified foo"
        );
        assert_eq!(
            err(json!({"OomScoreAdj": 2000})),
            "Invalid value 2000, range for oom score adj is [-1000, 1000]"
        );
        assert_eq!(
            err(json!({"Sysctls": {"vm.swappiness": "1"}})),
            "sysctl \"vm.swappiness\" is not in a separate kernel namespace"
        );
        assert_eq!(
            err(json!({"NetworkMode": "host", "Sysctls": {"net.ipv4.ip_forward": "1"}})),
            "sysctl \"net.ipv4.ip_forward\" not allowed in host network namespace"
        );
        assert_eq!(
            err(json!({"SecurityOpt": ["foo"]})),
            "invalid --security-opt 2: \"foo\""
        );
        assert_eq!(
            err(json!({"CapAdd": ["FOO"]})),
            "invalid CapAdd: unknown capability: \"CAP_FOO\""
        );
        assert!(err(json!({"LogConfig": {"Type": "foo"}})).contains("plugin \"foo\" not found"));
        assert!(err(json!({"StorageOpt": {"size": "1G"}})).starts_with("--storage-opt"));
        let mut ok = json!({"Sysctls": {"kernel.shmmax": "1", "net.core.somaxconn": "10"}});
        assert!(check(&mut ok, &json!({}), &[]).is_ok());
    }
}
