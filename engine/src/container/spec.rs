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

pub(crate) fn cap_name(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// The capabilities this kernel knows (those of [`ALL_CAPS`] up to `cap_last_cap`).
fn host_caps() -> Vec<String> {
    let last = super::options::HostFacts::get().cap_last as usize;
    ALL_CAPS
        .iter()
        .take(last + 1)
        .map(|s| s.to_string())
        .collect()
}

/// The capability set from Docker's defaults, `CapAdd` and `CapDrop`; `--privileged` has
/// every capability the host has.
pub fn capabilities(host_config: &Value) -> Vec<String> {
    if host_config["Privileged"].as_bool().unwrap_or(false) {
        return host_caps();
    }
    let list = |k: &str| -> Vec<String> {
        host_config[k]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).map(cap_name).collect())
            .unwrap_or_default()
    };
    let add = list("CapAdd");
    let drop = list("CapDrop");
    let mut caps: Vec<String> = if drop.iter().any(|c| c == "CAP_ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
    };
    caps.retain(|c| !drop.contains(c));
    if add.iter().any(|c| c == "CAP_ALL") {
        // All but those dropped, as dockerd's TweakCapabilities.
        caps = host_caps();
        caps.retain(|c| !drop.contains(c));
    } else {
        caps.extend(add.into_iter().filter(|a| ALL_CAPS.contains(&a.as_str())));
    }
    caps.sort();
    caps.dedup();
    caps
}

/// `RLIMIT_...` for a Docker ulimit name (`nofile`).
pub fn rlimit_name(name: &str) -> Option<String> {
    const NAMES: &[&str] = &[
        "as",
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ];
    NAMES
        .contains(&name)
        .then(|| format!("RLIMIT_{}", name.to_ascii_uppercase()))
}

/// A `--device-cgroup-rule` (`c 1:3 rwm`, `b *:* r`) as an OCI device rule.
pub fn parse_device_rule(rule: &str) -> Option<Value> {
    let mut it = rule.split_whitespace();
    let kind = it.next()?;
    let nums = it.next()?;
    let access = it.next()?;
    if it.next().is_some()
        || !["a", "b", "c"].contains(&kind)
        || access.is_empty()
        || !access.chars().all(|c| "rwm".contains(c))
    {
        return None;
    }
    let (maj, min) = nums.split_once(':')?;
    let num = |s: &str| -> Option<Value> {
        if s == "*" {
            Some(Value::Null)
        } else {
            s.parse::<i64>().ok().map(|n| json!(n))
        }
    };
    let mut r = json!({"allow": true, "type": kind, "access": access});
    let (maj, min) = (num(maj)?, num(min)?);
    if !maj.is_null() {
        r["major"] = maj;
    }
    if !min.is_null() {
        r["minor"] = min;
    }
    Some(r)
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
    /// Namespaces joined (`network`, `/proc/<pid>/ns/net`), for `container:` modes; empty
    /// at create.
    pub joins: Vec<(&'static str, String)>,
}

/// Docker's masked and read-only paths of an unprivileged container.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The `--security-opt`s of a container, parsed.
#[derive(Debug, Default)]
pub(crate) struct SecurityOpts {
    pub no_new_privs: bool,
    pub seccomp: Option<String>,
    pub unconfined_paths: bool,
    pub writable_cgroups: Option<bool>,
}

/// The `SecurityOpt`s of HostConfig `h` (`key=value` or the legacy `key:value`).
pub(crate) fn security_opts(h: &Value) -> SecurityOpts {
    let mut o = SecurityOpts::default();
    for opt in h["SecurityOpt"].as_array().into_iter().flatten() {
        let opt = opt.as_str().unwrap_or_default();
        let (k, v) = opt
            .split_once('=')
            .or_else(|| opt.split_once(':'))
            .unwrap_or((opt, ""));
        match k {
            "no-new-privileges" => o.no_new_privs = v.is_empty() || v == "true",
            "seccomp" => o.seccomp = Some(v.to_string()),
            "systempaths" => o.unconfined_paths = v == "unconfined",
            "writable-cgroups" => o.writable_cgroups = Some(v == "true"),
            _ => {}
        }
    }
    o
}

/// A device node of the host: (type, major, minor, mode).
fn device_of(path: &Path) -> std::io::Result<Option<(&'static str, u64, u64, u32)>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = std::fs::metadata(path)?;
    let ft = md.file_type();
    let kind = if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else {
        return Ok(None);
    };
    let rdev = md.rdev();
    Ok(Some((
        kind,
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev),
        md.mode() & 0o7777,
    )))
}

/// The device nodes under `dir` (for `--device /dev/dir` and `--privileged`), with their
/// path relative to `dir`.
fn devices_under(dir: &Path, top: bool, out: &mut Vec<(std::path::PathBuf, Value)>) {
    const SKIP_DIRS: &[&str] = &["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        let name = e.file_name().to_string_lossy().into_owned();
        if ft.is_dir() {
            if !(top && SKIP_DIRS.contains(&name.as_str())) {
                devices_under(&path, false, out);
            }
            continue;
        }
        // Links (/dev/stdin, /dev/core...) are made by the runtime, not copied.
        if ft.is_symlink() || (top && name == "console") {
            continue;
        }
        if let Ok(Some((kind, major, minor, mode))) = device_of(&path) {
            out.push((
                path.clone(),
                json!({"type": kind, "major": major, "minor": minor, "fileMode": mode,
                       "uid": 0, "gid": 0}),
            ));
        }
    }
}

/// The devices of `--device HOST[:CONTAINER[:PERMS]]` (one node, or every node under a
/// directory) and their cgroup rules.
fn user_devices(
    h: &Value,
    devices: &mut Vec<Value>,
    rules: &mut Vec<Value>,
) -> Result<(), ApiError> {
    for d in h["Devices"].as_array().into_iter().flatten() {
        let host = d["PathOnHost"].as_str().unwrap_or_default();
        let ctr = d["PathInContainer"]
            .as_str()
            .filter(|p| !p.is_empty())
            .unwrap_or(host);
        let perms = d["CgroupPermissions"]
            .as_str()
            .filter(|p| !p.is_empty())
            .unwrap_or("rwm");
        let gather_err = |e: std::io::Error| {
            ApiError::bad_request(format!(
                "error gathering device information while adding custom device {host:?}: {}",
                crate::error::io_words(&e)
            ))
        };
        let md = std::fs::metadata(host).map_err(gather_err)?;
        let mut found = Vec::new();
        if md.is_dir() {
            devices_under(Path::new(host), false, &mut found);
            for (p, _) in found.iter_mut() {
                let rel = p.strip_prefix(host).unwrap_or(p).to_path_buf();
                *p = Path::new(ctr).join(rel);
            }
        } else {
            let Some((kind, major, minor, mode)) =
                device_of(Path::new(host)).map_err(gather_err)?
            else {
                return Err(ApiError::bad_request(format!(
                    "error gathering device information while adding custom device {host:?}: not a device node"
                )));
            };
            found.push((
                Path::new(ctr).to_path_buf(),
                json!({"type": kind, "major": major, "minor": minor, "fileMode": mode,
                       "uid": 0, "gid": 0}),
            ));
        }
        for (path, mut dev) in found {
            rules.push(
                json!({"allow": true, "type": dev["type"], "major": dev["major"],
                              "minor": dev["minor"], "access": perms}),
            );
            dev["path"] = json!(path.to_string_lossy());
            devices.retain(|x| x["path"] != dev["path"]);
            devices.push(dev);
        }
    }
    for r in h["DeviceCgroupRules"].as_array().into_iter().flatten() {
        if let Some(rule) = parse_device_rule(r.as_str().unwrap_or_default()) {
            rules.push(rule);
        }
    }
    Ok(())
}

/// Block I/O devices of a throttle or weight list as OCI entries (`rate` or `weight`).
fn blkio_devices(list: &Value, key: &str, field: &str) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    for d in list.as_array().into_iter().flatten() {
        let path = d["Path"].as_str().unwrap_or_default();
        let md = std::fs::metadata(path).map_err(|e| {
            ApiError::bad_request(format!("stat {path}: {}", crate::error::io_words(&e)))
        })?;
        use std::os::unix::fs::MetadataExt;
        let rdev = md.rdev();
        out.push(json!({
            "major": nix::sys::stat::major(rdev),
            "minor": nix::sys::stat::minor(rdev),
            field: d[key],
        }));
    }
    Ok(out)
}

/// The container's own mounts: `-v` binds, `--mount` (bind, tmpfs), `--tmpfs`, and its
/// volumes (resolved at create: named, anonymous, image-declared, `--volumes-from`).
fn user_mounts(h: &Value, volumes: &[crate::volume::VolumeMount]) -> Result<Vec<Value>, ApiError> {
    let mut out: Vec<Value> = Vec::new();
    let push = |m: Value, out: &mut Vec<Value>| -> Result<(), ApiError> {
        let dst = m["destination"].as_str().unwrap_or_default().to_string();
        if out.iter().any(|x| x["destination"] == dst.as_str()) {
            return Err(ApiError::bad_request(format!(
                "Duplicate mount point: {dst}"
            )));
        }
        out.push(m);
        Ok(())
    };
    for b in h["Binds"].as_array().into_iter().flatten() {
        let s = b.as_str().unwrap_or_default();
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() < 2 || parts.len() > 3 || !parts[1].starts_with('/') {
            return Err(ApiError::bad_request(format!(
                "invalid volume specification: '{s}'"
            )));
        }
        if !parts[0].starts_with('/') {
            // A named volume: among `volumes`.
            continue;
        }
        let mut ro = false;
        let mut propagation = "rprivate";
        for o in parts.get(2).map(|o| o.split(',')).into_iter().flatten() {
            match o {
                "ro" => ro = true,
                "rw" | "z" | "Z" | "nocopy" | "" => {}
                "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => {
                    propagation = o
                }
                _ => return Err(ApiError::bad_request(format!("invalid mode: {}", parts[2]))),
            }
        }
        if !Path::new(parts[0]).exists() {
            std::fs::create_dir_all(parts[0]).map_err(|e| {
                ApiError::bad_request(format!(
                    "invalid mount config: bind source path does not exist: {}: {e}",
                    parts[0]
                ))
            })?;
        }
        push(
            mount(
                parts[1],
                "bind",
                parts[0],
                &["rbind", propagation, if ro { "ro" } else { "rw" }],
            ),
            &mut out,
        )?;
    }
    for m in h["Mounts"].as_array().into_iter().flatten() {
        let kind = m["Type"].as_str().unwrap_or_default();
        let target = m["Target"].as_str().unwrap_or_default();
        let invalid = |why: String| {
            ApiError::bad_request(format!("invalid mount config for type {kind:?}: {why}"))
        };
        if target.is_empty() {
            return Err(invalid("field Target must not be empty".into()));
        }
        if !target.starts_with('/') {
            return Err(invalid(format!(
                "invalid mount path: '{target}' mount path must be absolute"
            )));
        }
        let ro = m["ReadOnly"].as_bool().unwrap_or(false);
        match kind {
            "bind" => {
                let src = m["Source"].as_str().unwrap_or_default();
                if src.is_empty() {
                    return Err(invalid("field Source must not be empty".into()));
                }
                let opts = &m["BindOptions"];
                if !Path::new(src).exists() {
                    if opts["CreateMountpoint"].as_bool() == Some(true) {
                        std::fs::create_dir_all(src)?;
                    } else {
                        return Err(invalid(format!("bind source path does not exist: {src}")));
                    }
                }
                let rec = if opts["NonRecursive"].as_bool() == Some(true) {
                    "bind"
                } else {
                    "rbind"
                };
                let prop = opts["Propagation"]
                    .as_str()
                    .filter(|p| !p.is_empty())
                    .unwrap_or("rprivate");
                push(
                    mount(
                        target,
                        "bind",
                        src,
                        &[rec, prop, if ro { "ro" } else { "rw" }],
                    ),
                    &mut out,
                )?;
            }
            "tmpfs" => {
                if m["Source"].as_str().is_some_and(|s| !s.is_empty()) {
                    return Err(invalid("field Source must not be specified".into()));
                }
                let mut o: Vec<String> = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
                if ro {
                    o.push("ro".into());
                }
                let t = &m["TmpfsOptions"];
                if let Some(size) = t["SizeBytes"].as_i64().filter(|s| *s > 0) {
                    o.push(format!("size={}k", (size + 1023) / 1024));
                }
                if let Some(mode) = t["Mode"].as_u64().filter(|m| *m > 0) {
                    o.push(format!("mode={:o}", mode & 0o7777));
                }
                for extra in t["Options"].as_array().into_iter().flatten() {
                    let words: Vec<&str> = extra
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|w| w.as_str())
                        .collect();
                    match words.as_slice() {
                        [flag] => o.push(flag.to_string()),
                        [k, v] => o.push(format!("{k}={v}")),
                        _ => {}
                    }
                }
                let o: Vec<&str> = o.iter().map(String::as_str).collect();
                push(mount(target, "tmpfs", "tmpfs", &o), &mut out)?;
            }
            // Among `volumes`.
            "volume" => {}
            _ => {
                return Err(ApiError::bad_request(format!(
                    "mount type unknown: {kind:?}"
                )))
            }
        }
    }
    for v in volumes {
        push(
            mount(
                &v.destination,
                "bind",
                &v.source,
                &["rbind", "rprivate", if v.rw { "rw" } else { "ro" }],
            ),
            &mut out,
        )?;
    }
    if let Some(t) = h["Tmpfs"].as_object() {
        for (dst, opts) in t {
            let mut o = vec!["nosuid", "nodev", "noexec"];
            let extra = opts.as_str().unwrap_or_default();
            o.extend(extra.split(',').filter(|x| !x.is_empty()));
            push(mount(dst, "tmpfs", "tmpfs", &o), &mut out)?;
        }
    }
    // Parents before children, as dockerd sorts them.
    out.sort_by_key(|m| {
        m["destination"]
            .as_str()
            .unwrap_or_default()
            .trim_end_matches('/')
            .matches('/')
            .count()
    });
    Ok(out)
}

/// The OCI runtime spec of a container, as Docker builds it.
pub fn build_spec(rec: &Record, files: &SpecFiles<'_>) -> Result<Value, ApiError> {
    let c = &rec.config;
    let h = &rec.host_config;
    let privileged = h["Privileged"].as_bool().unwrap_or(false);
    let sec = security_opts(h);
    let mut args: Vec<String> = Vec::new();
    if h["Init"].as_bool().unwrap_or(false) {
        if files.init.is_none() {
            return Err(ApiError::bad_request(
                "--init needs docker-init or tini-static on the host",
            ));
        }
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
    let net_mode = h["NetworkMode"].as_str().unwrap_or("default");
    // On the host's network a container shares the host's UTS namespace too, unless it was
    // given a hostname of its own (`-h`), which dockerd sets in a namespace of its own.
    // The host's name is read only for containers on its network or in its UTS namespace.
    let uts_host = h["UTSMode"].as_str() == Some("host")
        || (net_mode == "host"
            && c["Hostname"].as_str().unwrap_or_default() == super::options::host_name());
    let hostname = if uts_host {
        super::options::host_name()
    } else {
        c["Hostname"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or(rec.short_id())
            .to_string()
    };
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={hostname}"));
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
        let name = u["Name"].as_str().unwrap_or_default();
        let name = rlimit_name(name)
            .ok_or_else(|| ApiError::bad_request(format!("invalid ulimit type: {name}")))?;
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
        "oomScoreAdj": h["OomScoreAdj"].as_i64().unwrap_or(0),
    });
    // Off unless asked for, as in Docker (setuid binaries work). The key is left out rather
    // than set false: libcontainer 0.7 loads seccomp before dropping capabilities only when
    // it is absent, and after (which the kernel refuses without no_new_privs) when present.
    if sec.no_new_privs {
        process["noNewPrivileges"] = json!(true);
    }

    // ---- namespaces ------------------------------------------------------------------------
    let joined = |kind: &str| {
        files
            .joins
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, p)| p.clone())
    };
    let mut namespaces = vec![json!({"type": "mount"})];
    let mut ns = |kind: &'static str, mode: &str| {
        if mode == "host" {
            return;
        }
        match joined(kind) {
            Some(path) => namespaces.push(json!({"type": kind, "path": path})),
            None => namespaces.push(json!({"type": kind})),
        }
    };
    ns("pid", h["PidMode"].as_str().unwrap_or_default());
    let ipc_mode = h["IpcMode"].as_str().unwrap_or_default();
    ns("ipc", ipc_mode);
    ns("uts", if uts_host { "host" } else { "" });
    ns("network", net_mode);
    if h["CgroupnsMode"].as_str() == Some("private") {
        ns("cgroup", "");
    }

    // ---- mounts ----------------------------------------------------------------------------
    let sys_rw = if privileged { "rw" } else { "ro" };
    let cgroup_rw = match sec.writable_cgroups {
        Some(true) => "rw",
        Some(false) => "ro",
        None => sys_rw,
    };
    let shm_size = h["ShmSize"]
        .as_i64()
        .filter(|s| *s > 0)
        .unwrap_or(64 * 1024 * 1024);
    let shm_opt = format!("size={shm_size}");
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
            &["nosuid", "noexec", "nodev", sys_rw],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", cgroup_rw],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
    ];
    match ipc_mode {
        "none" => {}
        "host" => mounts.push(mount(
            "/dev/shm",
            "bind",
            "/dev/shm",
            &["rbind", "rprivate", "rw"],
        )),
        _ => mounts.push(mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm_opt],
        )),
    }
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
    if let Some(init) = files.init.filter(|_| h["Init"].as_bool() == Some(true)) {
        bind(init, "/sbin/docker-init", true);
    }
    // The container's own mounts replace defaults at the same place (`--tmpfs /dev/shm`).
    let own = user_mounts(h, &rec.volumes)?;
    mounts.retain(|m| !own.iter().any(|o| o["destination"] == m["destination"]));
    mounts.extend(own);

    // ---- devices and resources ---------------------------------------------------------------
    let mut devices: Vec<Value> = Vec::new();
    let mut rules: Vec<Value> = Vec::new();
    if privileged {
        let mut found = Vec::new();
        devices_under(Path::new("/dev"), true, &mut found);
        const DEFAULT: &[&str] = &[
            "/dev/null",
            "/dev/zero",
            "/dev/full",
            "/dev/random",
            "/dev/urandom",
            "/dev/tty",
            "/dev/ptmx",
        ];
        for (path, mut dev) in found {
            let p = path.to_string_lossy().into_owned();
            if DEFAULT.contains(&p.as_str()) {
                continue;
            }
            dev["path"] = json!(p);
            devices.push(dev);
        }
        rules.push(json!({"allow": true, "access": "rwm"}));
    } else {
        // Docker's defaults: mknod of any node, then the standard devices.
        rules.push(json!({"allow": false, "access": "rwm"}));
        rules.push(json!({"allow": true, "type": "c", "access": "m"}));
        rules.push(json!({"allow": true, "type": "b", "access": "m"}));
        for (kind, major, minor) in [
            ("c", Some(1), Some(3)),
            ("c", Some(1), Some(5)),
            ("c", Some(1), Some(7)),
            ("c", Some(1), Some(8)),
            ("c", Some(1), Some(9)),
            ("c", Some(5), Some(0)),
            ("c", Some(5), Some(1)),
            ("c", Some(5), Some(2)),
            ("c", Some(136), None),
        ] {
            let mut r = json!({"allow": true, "type": kind, "major": major, "access": "rwm"});
            if let Some(m) = minor {
                r["minor"] = json!(m);
            }
            rules.push(r);
        }
    }
    user_devices(h, &mut devices, &mut rules)?;
    let mut resources = json!({"devices": rules});
    let mut memory = serde_json::Map::new();
    let pos = |k: &str| h[k].as_i64().filter(|v| *v > 0);
    if let Some(m) = pos("Memory") {
        memory.insert("limit".into(), json!(m));
    }
    if let Some(m) = pos("MemoryReservation") {
        memory.insert("reservation".into(), json!(m));
    }
    if let Some(s) = h["MemorySwap"].as_i64().filter(|s| *s != 0) {
        if pos("Memory").is_some() {
            memory.insert("swap".into(), json!(s));
        }
    }
    if let Some(s) = h["MemorySwappiness"].as_i64().filter(|s| *s >= 0) {
        memory.insert("swappiness".into(), json!(s));
    }
    if h["OomKillDisable"].as_bool() == Some(true) {
        memory.insert("disableOOMKiller".into(), json!(true));
    }
    if !memory.is_empty() {
        resources["memory"] = Value::Object(memory);
    }
    let mut cpu = serde_json::Map::new();
    if let Some(n) = pos("NanoCpus") {
        cpu.insert("period".into(), json!(100_000u64));
        cpu.insert("quota".into(), json!(n / 10_000));
    }
    if let Some(p) = pos("CpuPeriod") {
        cpu.insert("period".into(), json!(p));
    }
    if let Some(q) = h["CpuQuota"].as_i64().filter(|q| *q != 0) {
        cpu.insert("quota".into(), json!(q));
    }
    if let Some(s) = pos("CpuShares") {
        cpu.insert("shares".into(), json!(s));
    }
    if let Some(p) = pos("CpuRealtimePeriod") {
        cpu.insert("realtimePeriod".into(), json!(p));
    }
    if let Some(r) = pos("CpuRealtimeRuntime") {
        cpu.insert("realtimeRuntime".into(), json!(r));
    }
    for (k, o) in [("CpusetCpus", "cpus"), ("CpusetMems", "mems")] {
        if let Some(v) = h[k].as_str().filter(|v| !v.is_empty()) {
            cpu.insert(o.into(), json!(v));
        }
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = h["PidsLimit"].as_i64().filter(|p| *p != 0) {
        resources["pids"] = json!({"limit": if p < 0 { -1 } else { p }});
    }
    let mut blkio = serde_json::Map::new();
    if let Some(w) = pos("BlkioWeight") {
        blkio.insert("weight".into(), json!(w));
    }
    for (k, o, field, src) in [
        ("BlkioWeightDevice", "weightDevice", "weight", "Weight"),
        (
            "BlkioDeviceReadBps",
            "throttleReadBpsDevice",
            "rate",
            "Rate",
        ),
        (
            "BlkioDeviceWriteBps",
            "throttleWriteBpsDevice",
            "rate",
            "Rate",
        ),
        (
            "BlkioDeviceReadIOps",
            "throttleReadIOPSDevice",
            "rate",
            "Rate",
        ),
        (
            "BlkioDeviceWriteIOps",
            "throttleWriteIOPSDevice",
            "rate",
            "Rate",
        ),
    ] {
        let list = blkio_devices(&h[k], src, field)?;
        if !list.is_empty() {
            blkio.insert(o.into(), json!(list));
        }
    }
    if !blkio.is_empty() {
        resources["blockIO"] = Value::Object(blkio);
    }
    let parent = h["CgroupParent"]
        .as_str()
        .filter(|p| !p.is_empty())
        .unwrap_or("/berth");
    let parent = format!("/{}", parent.trim_matches('/'));
    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": format!("{}/{}", parent.trim_end_matches('/'), rec.id),
    });
    if !devices.is_empty() {
        linux["devices"] = json!(devices);
    }
    if let Some(s) = h["Sysctls"].as_object().filter(|s| !s.is_empty()) {
        linux["sysctl"] = Value::Object(s.clone());
    }
    if !privileged && !sec.unconfined_paths {
        let list = |k: &str, default: &[&str]| match h[k].as_array() {
            Some(a) => json!(a),
            None => json!(default),
        };
        linux["maskedPaths"] = list("MaskedPaths", MASKED_PATHS);
        linux["readonlyPaths"] = list("ReadonlyPaths", READONLY_PATHS);
    }
    if !privileged {
        match sec.seccomp.as_deref() {
            Some("unconfined") => {}
            None | Some("builtin") | Some("") => {
                linux["seccomp"] = super::seccomp::default_profile(&caps)
            }
            Some(text) => {
                linux["seccomp"] = super::seccomp::from_docker_profile(text, &caps)
                    .map_err(ApiError::bad_request)?
            }
        }
    }
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": "rootfs", "readonly": h["ReadonlyRootfs"].as_bool().unwrap_or(false)},
        "mounts": mounts,
        "linux": linux,
    });
    if !uts_host {
        spec["hostname"] = json!(hostname);
        if let Some(d) = c["Domainname"].as_str().filter(|d| !d.is_empty()) {
            spec["domainname"] = json!(d);
        }
    }
    if let Some(a) = h["Annotations"].as_object().filter(|a| !a.is_empty()) {
        spec["annotations"] = Value::Object(a.clone());
    }
    Ok(spec)
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
        assert_eq!(capabilities(&json!({"Privileged": true})), host_caps());
        let all_but = capabilities(&json!({"CapAdd": ["ALL"], "CapDrop": ["MKNOD"]}));
        assert!(!all_but.contains(&"CAP_MKNOD".to_string()));
        assert!(all_but.contains(&"CAP_SYS_ADMIN".to_string()));
        assert_eq!(
            capabilities(&json!({"CapDrop": ["ALL"], "CapAdd": ["KILL"]})),
            vec!["CAP_KILL".to_string()]
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
