//! `features`: runc's features JSON (what this runtime and build support).

use anyhow::Result;
use serde_json::{json, Value};

use crate::capabilities::cap_name;

/// The features document.
pub fn features_json() -> Value {
    use oci_spec::runtime::Capability::*;
    let caps = [
        Chown,
        DacOverride,
        DacReadSearch,
        Fowner,
        Fsetid,
        Kill,
        Setgid,
        Setuid,
        Setpcap,
        LinuxImmutable,
        NetBindService,
        NetBroadcast,
        NetAdmin,
        NetRaw,
        IpcLock,
        IpcOwner,
        SysModule,
        SysRawio,
        SysChroot,
        SysPtrace,
        SysPacct,
        SysAdmin,
        SysBoot,
        SysNice,
        SysResource,
        SysTime,
        SysTtyConfig,
        Mknod,
        Lease,
        AuditWrite,
        AuditControl,
        Setfcap,
        MacOverride,
        MacAdmin,
        Syslog,
        WakeAlarm,
        BlockSuspend,
        AuditRead,
        Perfmon,
        Bpf,
        CheckpointRestore,
    ];
    let caps: Vec<String> = caps.into_iter().map(cap_name).collect();
    let mount_options = libcontainer::syscall::linux::MountOption::known_options();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": oci_spec::runtime::VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": mount_options,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                            "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG",
                            "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE",
                              "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32",
                          "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
            },
            "apparmor": {"enabled": true},
            "selinux": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "io.github.berth.runtime.version": env!("CARGO_PKG_VERSION"),
            "io.github.youki.libcontainer.version": "0.7.0"
        }
    })
}

/// `berth-runtime features`.
pub fn features() -> Result<()> {
    crate::write_stdout(&format!(
        "{}\n",
        serde_json::to_string_pretty(&features_json())?
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_has_runc_keys() {
        let f = features_json();
        assert_eq!(f["ociVersionMin"], "1.0.0");
        assert!(f["linux"]["capabilities"]
            .as_array()
            .expect("caps")
            .contains(&json!("CAP_SYS_ADMIN")));
        assert_eq!(f["linux"]["cgroup"]["v1"], true);
        assert!(f["mountOptions"].as_array().is_some_and(|a| !a.is_empty()));
    }
}
