//! Building OCI runtime specs (`config.json`) for test containers.

use std::path::PathBuf;

use anyhow::{Context, Result};
use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompBuilder,
    LinuxSyscallBuilder, Mount, PosixRlimitBuilder, PosixRlimitType, Spec, UserBuilder,
};

/// The cgroup directory, relative to each hierarchy's root, that test containers live under.
pub const CGROUP_PARENT: &str = "/berth-test";

/// Capabilities of `runc spec`'s default process (and of [`SpecBuilder::new`]).
pub const DEFAULT_CAPS: &[Capability] = &[
    Capability::AuditWrite,
    Capability::Kill,
    Capability::NetBindService,
];

/// Paths `runc spec` masks (bind `/dev/null` or an empty read-only tmpfs over them).
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

/// Paths `runc spec` remounts read-only.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Builds a [`Spec`] resembling `runc spec`'s default, for one container.
///
/// Defaults, and how they differ from `runc spec`:
/// - process: `sh`, uid 0, cwd `/`, `PATH` and `TERM=xterm`, **no terminal** (runc's default is a
///   terminal, which needs a console socket), the three [`DEFAULT_CAPS`] in bounding, effective,
///   permitted and ambient sets, `RLIMIT_NOFILE` 1024, `noNewPrivileges`;
/// - root: `rootfs`, **writable** (runc's default is read-only; see [`SpecBuilder::readonly_rootfs`]);
/// - hostname `berth-test`; runc's mounts (proc, dev, devpts, shm, mqueue, sysfs, cgroup);
/// - namespaces pid, network, ipc, uts, mount; devices deny-all; masked and readonly paths;
/// - `linux.cgroupsPath` = `/berth-test/<id>`, so tests never share a cgroup.
#[derive(Debug, Clone)]
pub struct SpecBuilder {
    spec: Spec,
    id: String,
}

impl SpecBuilder {
    /// The default spec for the container `id` (see the type docs).
    pub fn new(id: &str) -> Self {
        let mut spec = Spec::default();
        spec.set_hostname(Some("berth-test".into()));
        if let Some(root) = spec.root_mut() {
            root.set_readonly(Some(false));
        }
        let caps: Capabilities = DEFAULT_CAPS.iter().copied().collect();
        if let Some(p) = spec.process_mut() {
            p.set_terminal(Some(false));
            p.set_args(Some(vec!["sh".into()]));
            p.set_capabilities(Some(cap_sets(caps)));
            p.set_rlimits(Some(vec![PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .hard(1024u64)
                .soft(1024u64)
                .build()
                .expect("static rlimit is valid")]));
        }
        let namespaces = [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Mount,
        ]
        .into_iter()
        .map(|typ| {
            LinuxNamespaceBuilder::default()
                .typ(typ)
                .build()
                .expect("namespace without path is valid")
        })
        .collect::<Vec<_>>();
        let resources = LinuxResourcesBuilder::default()
            .devices(vec![LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .expect("deny-all device rule is valid")])
            .build()
            .expect("resources are valid");
        if let Some(l) = spec.linux_mut() {
            l.set_namespaces(Some(namespaces));
            l.set_resources(Some(resources));
            l.set_masked_paths(Some(
                DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
            ));
            l.set_readonly_paths(Some(
                DEFAULT_READONLY_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ));
            l.set_cgroups_path(Some(PathBuf::from(format!("{CGROUP_PARENT}/{id}"))));
        }
        SpecBuilder {
            spec,
            id: id.to_string(),
        }
    }

    /// The container id this spec was made for.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The process's argv.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let args = args.into_iter().map(Into::into).collect();
        self.process().set_args(Some(args));
        self
    }

    /// Runs `sh -c <script>`.
    pub fn shell(self, script: &str) -> Self {
        self.args(["sh", "-c", script])
    }

    /// Sets (or replaces) one environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        let p = self.process();
        let mut env = p.env().clone().unwrap_or_default();
        let prefix = format!("{key}=");
        env.retain(|e| !e.starts_with(&prefix));
        env.push(format!("{key}={value}"));
        p.set_env(Some(env));
        self
    }

    /// The process's working directory (absolute, inside the container).
    pub fn cwd(mut self, cwd: &str) -> Self {
        self.process().set_cwd(cwd.into());
        self
    }

    /// Whether the process gets a pty (then `create`/`run` need `--console-socket`).
    pub fn terminal(mut self, terminal: bool) -> Self {
        self.process().set_terminal(Some(terminal));
        self
    }

    /// The process's uid and gid.
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        let user = UserBuilder::default()
            .uid(uid)
            .gid(gid)
            .build()
            .expect("user is valid");
        self.process().set_user(user);
        self
    }

    /// The container's hostname (needs the uts namespace, which is in the defaults).
    pub fn hostname(mut self, hostname: &str) -> Self {
        self.spec.set_hostname(Some(hostname.into()));
        self
    }

    /// Overrides `linux.cgroupsPath` (default `/berth-test/<id>`).
    pub fn cgroups_path(mut self, path: &str) -> Self {
        self.linux().set_cgroups_path(Some(path.into()));
        self
    }

    /// Memory limit in bytes (`memory.limit_in_bytes` / `memory.max`).
    pub fn memory_limit(mut self, bytes: i64) -> Self {
        let mem = LinuxMemoryBuilder::default()
            .limit(bytes)
            .build()
            .expect("memory limit is valid");
        self.resources(|r| {
            r.set_memory(Some(mem));
        });
        self
    }

    /// CPU quota: `quota` µs of CPU time per `period` µs.
    pub fn cpu_quota(mut self, quota: i64, period: u64) -> Self {
        let cpu = LinuxCpuBuilder::default()
            .quota(quota)
            .period(period)
            .build()
            .expect("cpu quota is valid");
        self.resources(|r| {
            r.set_cpu(Some(cpu));
        });
        self
    }

    /// Maximum number of tasks in the container's cgroup.
    pub fn pids_limit(mut self, max: i64) -> Self {
        let pids = LinuxPidsBuilder::default()
            .limit(max)
            .build()
            .expect("pids limit is valid");
        self.resources(|r| {
            r.set_pids(Some(pids));
        });
        self
    }

    /// Installs a seccomp profile.
    pub fn seccomp(mut self, seccomp: LinuxSeccomp) -> Self {
        self.linux().set_seccomp(Some(seccomp));
        self
    }

    /// A seccomp profile that allows everything except `syscalls`, which fail with `errno`.
    pub fn seccomp_deny(self, syscalls: &[&str], errno: i32) -> Self {
        let rule = LinuxSyscallBuilder::default()
            .names(syscalls.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(errno as u32)
            .build()
            .expect("syscall rule is valid");
        let seccomp = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(vec![rule])
            .build()
            .expect("seccomp profile is valid");
        self.seccomp(seccomp)
    }

    /// Sets the bounding, effective, permitted and ambient capability sets to exactly `caps`.
    pub fn capabilities(mut self, caps: &[Capability]) -> Self {
        let set: Capabilities = caps.iter().copied().collect();
        self.process().set_capabilities(Some(cap_sets(set)));
        self
    }

    /// Mounts the root filesystem read-only.
    pub fn readonly_rootfs(mut self, readonly: bool) -> Self {
        if let Some(root) = self.spec.root_mut() {
            root.set_readonly(Some(readonly));
        }
        self
    }

    /// Adds a mount after the default ones.
    pub fn mount(mut self, mount: Mount) -> Self {
        let mut mounts = self.spec.mounts().clone().unwrap_or_default();
        mounts.push(mount);
        self.spec.set_mounts(Some(mounts));
        self
    }

    /// Escape hatch: edit the spec directly.
    pub fn with(mut self, edit: impl FnOnce(&mut Spec)) -> Self {
        edit(&mut self.spec);
        self
    }

    /// The finished spec.
    pub fn build(self) -> Spec {
        self.spec
    }

    /// The finished spec as pretty JSON (what goes into `config.json`).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(&self.spec).context("serialize spec")
    }

    fn process(&mut self) -> &mut oci_spec::runtime::Process {
        if self.spec.process().is_none() {
            self.spec.set_process(Some(Default::default()));
        }
        self.spec.process_mut().as_mut().expect("process set above")
    }

    fn linux(&mut self) -> &mut oci_spec::runtime::Linux {
        if self.spec.linux().is_none() {
            self.spec.set_linux(Some(Default::default()));
        }
        self.spec.linux_mut().as_mut().expect("linux set above")
    }

    fn resources(&mut self, edit: impl FnOnce(&mut oci_spec::runtime::LinuxResources)) {
        let linux = self.linux();
        if linux.resources().is_none() {
            linux.set_resources(Some(Default::default()));
        }
        edit(linux.resources_mut().as_mut().expect("resources set above"));
    }
}

/// Bounding, effective, permitted and ambient sets all equal to `caps`; no inheritable set
/// (as `runc spec` writes it).
fn cap_sets(caps: Capabilities) -> LinuxCapabilities {
    // Built by hand: the derived builder starts from `LinuxCapabilities::default()`, whose
    // inheritable set is not empty.
    let mut sets = LinuxCapabilities::default();
    sets.set_bounding(Some(caps.clone()))
        .set_effective(Some(caps.clone()))
        .set_permitted(Some(caps.clone()))
        .set_ambient(Some(caps))
        .set_inheritable(None);
    sets
}

/// The capability bitmask the kernel shows in `/proc/<pid>/status` (`CapEff:` etc.) for `caps`.
pub fn cap_mask(caps: &[Capability]) -> u64 {
    caps.iter()
        .fold(0, |mask, c| mask | (1u64 << cap_number(*c)))
}

/// The kernel's number for a capability (`CAP_KILL` = 5), from `linux/capability.h`.
pub fn cap_number(cap: Capability) -> u32 {
    use Capability::*;
    match cap {
        Chown => 0,
        DacOverride => 1,
        DacReadSearch => 2,
        Fowner => 3,
        Fsetid => 4,
        Kill => 5,
        Setgid => 6,
        Setuid => 7,
        Setpcap => 8,
        LinuxImmutable => 9,
        NetBindService => 10,
        NetBroadcast => 11,
        NetAdmin => 12,
        NetRaw => 13,
        IpcLock => 14,
        IpcOwner => 15,
        SysModule => 16,
        SysRawio => 17,
        SysChroot => 18,
        SysPtrace => 19,
        SysPacct => 20,
        SysAdmin => 21,
        SysBoot => 22,
        SysNice => 23,
        SysResource => 24,
        SysTime => 25,
        SysTtyConfig => 26,
        Mknod => 27,
        Lease => 28,
        AuditWrite => 29,
        AuditControl => 30,
        Setfcap => 31,
        MacOverride => 32,
        MacAdmin => 33,
        Syslog => 34,
        WakeAlarm => 35,
        BlockSuspend => 36,
        AuditRead => 37,
        Perfmon => 38,
        Bpf => 39,
        CheckpointRestore => 40,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn json(b: SpecBuilder) -> Value {
        serde_json::from_str(&b.to_json().unwrap()).unwrap()
    }

    #[test]
    fn defaults_resemble_runc_spec() {
        let v = json(SpecBuilder::new("c1"));
        assert_eq!(v["process"]["args"], serde_json::json!(["sh"]));
        assert_eq!(v["process"]["terminal"], false);
        assert_eq!(v["process"]["noNewPrivileges"], true);
        assert_eq!(v["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
        let mut eff: Vec<&str> = v["process"]["capabilities"]["effective"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        eff.sort();
        assert_eq!(eff, ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        assert!(v["process"]["capabilities"].get("inheritable").is_none());
        assert_eq!(v["root"]["path"], "rootfs");
        assert_eq!(v["root"]["readonly"], false);
        assert_eq!(v["linux"]["cgroupsPath"], "/berth-test/c1");
        let ns: Vec<&str> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "network", "ipc", "uts", "mount"]);
        assert_eq!(v["linux"]["maskedPaths"].as_array().unwrap().len(), 10);
        assert_eq!(v["linux"]["resources"]["devices"][0]["allow"], false);
        let mounts: Vec<&str> = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert!(mounts.contains(&"/proc") && mounts.contains(&"/dev/pts"));
    }

    #[test]
    fn setters_land_in_the_json() {
        let v = json(
            SpecBuilder::new("c2")
                .shell("exit 3")
                .env("FOO", "bar")
                .env("FOO", "baz")
                .cwd("/tmp")
                .terminal(true)
                .hostname("h1")
                .memory_limit(64 << 20)
                .cpu_quota(50_000, 100_000)
                .pids_limit(10)
                .seccomp_deny(&["mkdir", "mkdirat"], libc::EPERM)
                .capabilities(&[Capability::SysAdmin])
                .readonly_rootfs(true)
                .user(1000, 1000),
        );
        assert_eq!(
            v["process"]["args"],
            serde_json::json!(["sh", "-c", "exit 3"])
        );
        let env = v["process"]["env"].as_array().unwrap();
        assert!(env.contains(&Value::from("FOO=baz")) && !env.contains(&Value::from("FOO=bar")));
        assert_eq!(v["process"]["cwd"], "/tmp");
        assert_eq!(v["process"]["terminal"], true);
        assert_eq!(v["process"]["user"]["uid"], 1000);
        assert_eq!(v["hostname"], "h1");
        let r = &v["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], 64 << 20);
        assert_eq!(r["cpu"]["quota"], 50_000);
        assert_eq!(r["pids"]["limit"], 10);
        let sc = &v["linux"]["seccomp"];
        assert_eq!(sc["defaultAction"], "SCMP_ACT_ALLOW");
        assert_eq!(sc["syscalls"][0]["action"], "SCMP_ACT_ERRNO");
        assert_eq!(sc["syscalls"][0]["errnoRet"], 1);
        assert_eq!(
            v["process"]["capabilities"]["bounding"],
            serde_json::json!(["CAP_SYS_ADMIN"])
        );
        assert_eq!(v["root"]["readonly"], true);
    }

    #[test]
    fn cap_mask_matches_kernel_numbers() {
        assert_eq!(cap_mask(DEFAULT_CAPS), 0x2000_0420);
        assert_eq!(cap_mask(&[Capability::SysAdmin]), 1 << 21);
    }
}
