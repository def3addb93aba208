//! The OCI runtime spec of a container, generated from its Config and HostConfig.

use std::path::Path;

use serde_json::{json, Value};

use super::Record;
use crate::error::ApiError;

/// Docker's default capabilities.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability (for `--privileged` and `--cap-add ALL`).
pub const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

fn cap_name(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// The capability set from Docker's defaults, `CapAdd` and `CapDrop`.
pub fn capabilities(host_config: &Value) -> Vec<String> {
    if host_config["Privileged"].as_bool().unwrap_or(false) {
        return ALL_CAPS.iter().map(|s| s.to_string()).collect();
    }
    let list = |k: &str| -> Vec<String> {
        host_config[k]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).map(cap_name).collect())
            .unwrap_or_default()
    };
    let add = list("CapAdd");
    let drop = list("CapDrop");
    let mut caps: Vec<String> = if add.iter().any(|c| c == "CAP_ALL") {
        ALL_CAPS.iter().map(|s| s.to_string()).collect()
    } else {
        let mut c: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
        c.extend(add.into_iter().filter(|a| ALL_CAPS.contains(&a.as_str())));
        c
    };
    if drop.iter().any(|c| c == "CAP_ALL") {
        caps.clear();
    }
    caps.retain(|c| !drop.contains(c));
    caps.sort();
    caps.dedup();
    caps
}

/// Bytes from Docker's human sizes in log options (`10m`, `1g`, `512k`, `100`).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.trim_end_matches('b');
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .map(|n| (n * mult as f64) as u64)
}

fn mount(dest: &str, kind: &str, source: &str, options: &[&str]) -> Value {
    json!({"destination": dest, "type": kind, "source": source, "options": options})
}

/// Inputs for [`build_spec`] besides the record.
#[derive(Debug)]
pub struct SpecFiles<'a> {
    pub hosts: &'a Path,
    pub hostname: &'a Path,
    pub resolv: &'a Path,
    pub init: Option<&'a Path>,
    /// The user resolved from the rootfs's passwd and group files (at start); `None` at
    /// create, where only the spec's shape is checked.
    pub user: Option<&'a super::ExecUser>,
}

/// The OCI runtime spec of a container, as Docker builds it.
pub fn build_spec(rec: &Record, files: &SpecFiles<'_>) -> Result<Value, ApiError> {
    let c = &rec.config;
    let h = &rec.host_config;
    let privileged = h["Privileged"].as_bool().unwrap_or(false);
    let mut args: Vec<String> = Vec::new();
    if h["Init"].as_bool().unwrap_or(false) {
        let init = files.init.ok_or_else(|| {
            ApiError::bad_request("--init needs docker-init or tini-static on the host")
        })?;
        let _ = init;
        args.push("/sbin/docker-init".into());
        args.push("--".into());
    }
    args.push(rec.path.clone());
    args.extend(rec.args.iter().cloned());
    let mut env: Vec<String> = c["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!(
            "HOSTNAME={}",
            c["Hostname"].as_str().unwrap_or(rec.short_id())
        ));
    }
    if rec.tty() && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let numeric;
    let user = match files.user {
        Some(u) => u,
        None => {
            let (uid, gid) = parse_user(c["User"].as_str().unwrap_or(""));
            numeric = super::ExecUser {
                uid,
                gid,
                additional_gids: Vec::new(),
                home: "/".into(),
            };
            &numeric
        }
    };
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    let caps = capabilities(h);
    // Only what the request asks for: raising a hard limit needs CAP_SYS_RESOURCE, which some
    // hosts' bounding sets lack.
    let mut rlimits: Vec<Value> = Vec::new();
    for u in h["Ulimits"].as_array().into_iter().flatten() {
        let name = format!(
            "RLIMIT_{}",
            u["Name"].as_str().unwrap_or_default().to_ascii_uppercase()
        );
        rlimits.retain(|r| r["type"] != name.as_str());
        rlimits.push(json!({"type": name, "hard": u["Hard"], "soft": u["Soft"]}));
    }
    let mut process = json!({
        "terminal": rec.tty(),
        "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
        "args": args,
        "env": env,
        "cwd": c["WorkingDir"].as_str().filter(|w| !w.is_empty()).unwrap_or("/"),
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": rlimits,
    });
    // Off unless asked for, as in Docker (setuid binaries work). The key is left out rather
    // than set false: libcontainer 0.7 loads seccomp before dropping capabilities only when
    // it is absent, and after (which the kernel refuses without no_new_privs) when present.
    let no_new_privs = h["SecurityOpt"].as_array().into_iter().flatten().any(|o| {
        o.as_str().is_some_and(|s| {
            let v = s.replacen(':', "=", 1);
            v == "no-new-privileges" || v == "no-new-privileges=true"
        })
    });
    if no_new_privs {
        process["noNewPrivileges"] = json!(true);
    }
    if !privileged {
        process["oomScoreAdj"] = json!(0);
    }
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &[
                "nosuid",
                "noexec",
                "nodev",
                if privileged { "rw" } else { "ro" },
            ],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &[
                "nosuid",
                "noexec",
                "nodev",
                "relatime",
                if privileged { "rw" } else { "ro" },
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"],
        ),
    ];
    let mut bind = |src: &Path, dst: &str, ro: bool| {
        mounts.push(mount(
            dst,
            "bind",
            &src.to_string_lossy(),
            &["rbind", "rprivate", if ro { "ro" } else { "rw" }],
        ));
    };
    bind(files.resolv, "/etc/resolv.conf", false);
    bind(files.hostname, "/etc/hostname", false);
    bind(files.hosts, "/etc/hosts", false);
    if let Some(init) = files.init {
        bind(init, "/sbin/docker-init", true);
    }
    for b in h["Binds"].as_array().into_iter().flatten() {
        let s = b.as_str().unwrap_or_default();
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() < 2 || !parts[0].starts_with('/') || !parts[1].starts_with('/') {
            return Err(ApiError::bad_request(format!(
                "invalid volume specification: '{s}' (only host-path binds are supported)"
            )));
        }
        if !Path::new(parts[0]).exists() {
            std::fs::create_dir_all(parts[0]).map_err(|e| {
                ApiError::bad_request(format!(
                    "invalid mount config: bind source path does not exist: {}: {e}",
                    parts[0]
                ))
            })?;
        }
        let ro = parts
            .get(2)
            .is_some_and(|o| o.split(',').any(|x| x == "ro"));
        mounts.push(mount(
            parts[1],
            "bind",
            parts[0],
            &["rbind", "rprivate", if ro { "ro" } else { "rw" }],
        ));
    }
    if let Some(t) = h["Tmpfs"].as_object() {
        for (dst, opts) in t {
            let mut o = vec!["nosuid", "nodev", "noexec"];
            let extra = opts.as_str().unwrap_or_default();
            o.extend(extra.split(',').filter(|x| !x.is_empty()));
            mounts.push(mount(dst, "tmpfs", "tmpfs", &o));
        }
    }
    let net_mode = h["NetworkMode"].as_str().unwrap_or("default");
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if net_mode != "host" {
        namespaces.push(json!({"type": "network"}));
    }
    let mut resources = json!({"devices": [{"allow": privileged, "access": "rwm"}]});
    if !privileged {
        resources["devices"] = json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
            {"allow": true, "type": "c", "major": 136, "access": "rwm"},
        ]);
    }
    if let Some(m) = h["Memory"].as_i64().filter(|m| *m > 0) {
        resources["memory"] = json!({"limit": m});
    }
    let mut cpu = serde_json::Map::new();
    if let Some(n) = h["NanoCpus"].as_i64().filter(|n| *n > 0) {
        cpu.insert("period".into(), json!(100_000u64));
        cpu.insert("quota".into(), json!(n / 10_000));
    }
    if let Some(s) = h["CpuShares"].as_i64().filter(|s| *s > 0) {
        cpu.insert("shares".into(), json!(s));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = h["PidsLimit"].as_i64().filter(|p| *p > 0) {
        resources["pids"] = json!({"limit": p});
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": format!("/berth/{}", rec.id),
    });
    if !privileged {
        linux["maskedPaths"] = json!([
            "/proc/asound",
            "/proc/acpi",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware",
            "/sys/devices/virtual/powercap"
        ]);
        linux["readonlyPaths"] = json!([
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
        ]);
        let unconfined = h["SecurityOpt"].as_array().into_iter().flatten().any(|o| {
            o.as_str()
                .is_some_and(|s| s == "seccomp=unconfined" || s == "seccomp:unconfined")
        });
        if !unconfined {
            linux["seccomp"] = super::seccomp::default_profile(&caps);
        }
    }
    let hostname = c["Hostname"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or(rec.short_id());
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": "rootfs", "readonly": h["ReadonlyRootfs"].as_bool().unwrap_or(false)},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    }))
}

/// `uid[:gid]` numbers, for the create-time check (names resolve at start, see `user.rs`).
fn parse_user(u: &str) -> (u32, u32) {
    let (user, group) = u.split_once(':').unwrap_or((u, ""));
    let uid = user.parse().unwrap_or(0);
    let gid = group.parse().unwrap_or(uid);
    (uid, gid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::valid_name;

    #[test]
    fn caps_follow_docker_add_drop() {
        let c = capabilities(&json!({"CapAdd": ["NET_ADMIN"], "CapDrop": ["chown", "CAP_KILL"]}));
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_CHOWN".to_string()));
        assert!(!c.contains(&"CAP_KILL".to_string()));
        assert_eq!(
            capabilities(&json!({"CapDrop": ["ALL"]})),
            Vec::<String>::new()
        );
        assert_eq!(
            capabilities(&json!({"Privileged": true})).len(),
            ALL_CAPS.len()
        );
    }

    #[test]
    fn sizes_and_names() {
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("512"), Some(512));
        assert!(valid_name("/web-1"));
        assert!(!valid_name("a"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a b"));
        assert_eq!(parse_user("1000:50"), (1000, 50));
        assert_eq!(parse_user(""), (0, 0));
    }
}
