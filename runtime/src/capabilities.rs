//! Drop requested capabilities that the host's bounding set cannot grant.
//!
//! Docker's `--privileged` asks for every capability; where the host's bounding set
//! lacks one (CAP_SYS_RESOURCE on our hosts) runc fails with "unable to apply caps".
//! berth grants what it can and logs a warning naming what it dropped.

use std::collections::BTreeSet;

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, Process};

/// Kernel number of a capability (linux/capability.h).
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

/// The name a capability has in config.json (`CAP_SYS_ADMIN`).
pub fn cap_name(cap: Capability) -> String {
    serde_json::to_value(cap)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{cap:?}"))
}

/// Parse the `CapBnd:` line of a /proc/<pid>/status text.
pub fn parse_cap_bnd(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// Our own bounding set, or `None` when it cannot be read (then nothing is filtered).
pub fn host_bounding_set() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(parse_cap_bnd)
}

fn filter_set(set: &mut Option<Capabilities>, bounding: u64, dropped: &mut BTreeSet<String>) {
    if let Some(caps) = set {
        caps.retain(|cap| {
            let n = cap_number(*cap);
            let ok = n < 64 && bounding & (1u64 << n) != 0;
            if !ok {
                dropped.insert(cap_name(*cap));
            }
            ok
        });
    }
}

/// Remove from every capability set of `caps` what `bounding` lacks; returns the
/// dropped names, sorted.
pub fn filter_capabilities(caps: &mut LinuxCapabilities, bounding: u64) -> Vec<String> {
    let mut dropped = BTreeSet::new();
    let mut b = caps.bounding().clone();
    let mut e = caps.effective().clone();
    let mut i = caps.inheritable().clone();
    let mut p = caps.permitted().clone();
    let mut a = caps.ambient().clone();
    for set in [&mut b, &mut e, &mut i, &mut p, &mut a] {
        filter_set(set, bounding, &mut dropped);
    }
    caps.set_bounding(b)
        .set_effective(e)
        .set_inheritable(i)
        .set_permitted(p)
        .set_ambient(a);
    dropped.into_iter().collect()
}

/// [`filter_capabilities`] on a process, if it has capabilities.
pub fn filter_process(process: &mut Process, bounding: u64) -> Vec<String> {
    match process.capabilities().clone() {
        Some(mut caps) => {
            let dropped = filter_capabilities(&mut caps, bounding);
            if !dropped.is_empty() {
                process.set_capabilities(Some(caps));
            }
            dropped
        }
        None => Vec::new(),
    }
}

/// Filter a process with the host's bounding set and warn about what was dropped.
pub fn filter_process_for_host(process: &mut Process, container_id: &str) -> bool {
    let Some(bounding) = host_bounding_set() else {
        return false;
    };
    let dropped = filter_process(process, bounding);
    if dropped.is_empty() {
        return false;
    }
    tracing::warn!(
        container_id,
        dropped = dropped.join(","),
        "the host's capability bounding set cannot grant requested capabilities; dropping them"
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str =
        "Name:\tx\nCapInh:\t0000000000000000\nCapBnd:\t000001fffeffffff\nCapAmb:\t0\n";

    #[test]
    fn parses_cap_bnd() {
        assert_eq!(parse_cap_bnd(STATUS), Some(0x000001fffeffffff));
        assert_eq!(parse_cap_bnd("nothing"), None);
    }

    #[test]
    fn privileged_request_loses_only_what_host_lacks() {
        let all: Capabilities = [
            Capability::Chown,
            Capability::SysAdmin,
            Capability::SysResource,
            Capability::CheckpointRestore,
        ]
        .into_iter()
        .collect();
        let mut caps = LinuxCapabilities::default();
        caps.set_bounding(Some(all.clone()))
            .set_effective(Some(all.clone()))
            .set_permitted(Some(all.clone()))
            .set_inheritable(None)
            .set_ambient(Some(all));
        let bounding = parse_cap_bnd(STATUS).expect("bnd");
        let dropped = filter_capabilities(&mut caps, bounding);
        assert_eq!(dropped, vec!["CAP_SYS_RESOURCE".to_string()]);
        let eff = caps.effective().as_ref().expect("effective");
        assert!(eff.contains(&Capability::SysAdmin));
        assert!(eff.contains(&Capability::CheckpointRestore));
        assert!(!eff.contains(&Capability::SysResource));
        assert!(caps.inheritable().is_none());
    }

    #[test]
    fn nothing_dropped_with_full_bounding_set() {
        let mut caps = LinuxCapabilities::default();
        assert!(filter_capabilities(&mut caps, u64::MAX).is_empty());
    }

    #[test]
    fn cap_names_match_config_json() {
        assert_eq!(cap_name(Capability::SysResource), "CAP_SYS_RESOURCE");
        assert_eq!(cap_number(Capability::CheckpointRestore), 40);
    }
}
