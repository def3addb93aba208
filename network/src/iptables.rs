//! The firewall on hosts whose kernel has no nf_tables: the same rules as `firewall.rs`, in
//! iptables chains of the daemon's own (`NAME-PRE`, `NAME-OUT`, `NAME-PORTS`, `NAME-POST` in
//! `nat`, `NAME-FWD` in `filter`), refilled whole by one `iptables-restore --noflush` per
//! family; the built-in chains only get one jump each into them. Nothing else is touched.

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use crate::firewall::{FirewallError, Ruleset};

/// The iptables programs: `iptables-legacy` where present (nf_tables is what is missing).
fn programs(v6: bool) -> (&'static str, &'static str) {
    let legacy = std::path::Path::new("/usr/sbin/iptables-legacy").exists();
    match (v6, legacy) {
        (false, true) => ("iptables-legacy", "iptables-legacy-restore"),
        (true, true) => ("ip6tables-legacy", "ip6tables-legacy-restore"),
        (false, false) => ("iptables", "iptables-restore"),
        (true, false) => ("ip6tables", "ip6tables-restore"),
    }
}

/// Chain names for the daemon's table name (iptables allows 28 characters).
fn chain(name: &str, suffix: &str) -> String {
    let base: String = name.chars().take(28 - suffix.len() - 1).collect();
    format!("{base}-{suffix}")
}

/// The `iptables-restore` script of one family.
pub fn script(name: &str, rs: &Ruleset, v6: bool) -> String {
    let fam = |ip: &IpAddr| ip.is_ipv6() == v6;
    let (pre, out, ports, post, fwd) = (
        chain(name, "PRE"),
        chain(name, "OUT"),
        chain(name, "PORTS"),
        chain(name, "POST"),
        chain(name, "FWD"),
    );
    let mut s = String::from("*nat\n");
    for c in [&pre, &out, &ports, &post] {
        s.push_str(&format!(":{c} - [0:0]\n"));
    }
    s.push_str(&format!(
        "-A {pre} -m addrtype --dst-type LOCAL -j {ports}\n"
    ));
    s.push_str(&format!(
        "-A {out} -m addrtype --dst-type LOCAL -j {ports}\n"
    ));
    for p in rs.ports.iter().filter(|p| fam(&p.ctr_ip)) {
        let dst = match p.host_ip {
            Some(ip) if !ip.is_unspecified() && fam(&ip) => format!("-d {ip} "),
            Some(ip) if !ip.is_unspecified() => continue,
            _ => String::new(),
        };
        let to = if v6 {
            format!("[{}]:{}", p.ctr_ip, p.ctr_port)
        } else {
            format!("{}:{}", p.ctr_ip, p.ctr_port)
        };
        s.push_str(&format!(
            "-A {ports} {dst}-p {proto} -m {proto} --dport {port} -j DNAT --to-destination {to}\n",
            proto = p.proto.as_str(),
            port = p.host_port,
        ));
    }
    for br in &rs.bridges {
        let b = &br.bridge;
        if !v6 {
            s.push_str(&format!("-A {post} -o {b} -s 127.0.0.0/8 -j MASQUERADE\n"));
        }
        s.push_str(&format!(
            "-A {post} -o {b} -i {b} -m conntrack --ctstate DNAT -j MASQUERADE\n"
        ));
        if br.masquerade && !br.internal {
            for net in br.subnets.iter().filter(|n| fam(&n.network())) {
                s.push_str(&format!("-A {post} -s {net} ! -o {b} -j MASQUERADE\n"));
            }
        }
    }
    s.push_str("COMMIT\n*filter\n");
    s.push_str(&format!(":{fwd} - [0:0]\n"));
    for br in &rs.bridges {
        let b = &br.bridge;
        if br.internal {
            s.push_str(&format!("-A {fwd} -i {b} ! -o {b} -j DROP\n"));
            s.push_str(&format!("-A {fwd} -o {b} ! -i {b} -j DROP\n"));
        }
        if !br.icc {
            s.push_str(&format!("-A {fwd} -i {b} -o {b} -j DROP\n"));
        }
    }
    s.push_str(&format!(
        "-A {fwd} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
    ));
    s.push_str(&format!("-A {fwd} -m conntrack --ctstate DNAT -j ACCEPT\n"));
    for a in &rs.bridges {
        for b in rs.bridges.iter().filter(|b| b.bridge != a.bridge) {
            s.push_str(&format!(
                "-A {fwd} -i {} -o {} -j DROP\n",
                a.bridge, b.bridge
            ));
        }
    }
    s.push_str("COMMIT\n");
    s
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), FirewallError> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| FirewallError::Nft(format!("{program}: {e}")))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|e| FirewallError::Nft(format!("{program}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| FirewallError::Nft(format!("{program}: {e}")))?;
    if !out.status.success() {
        return Err(FirewallError::Nft(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The built-in chains that jump into the daemon's: (table, chain, suffix of ours).
const JUMPS: [(&str, &str, &str); 4] = [
    ("nat", "PREROUTING", "PRE"),
    ("nat", "OUTPUT", "OUT"),
    ("nat", "POSTROUTING", "POST"),
    ("filter", "FORWARD", "FWD"),
];

/// The jumps from the built-in chains into the daemon's, added once.
fn ensure_jumps(name: &str, v6: bool) -> Result<(), FirewallError> {
    let (ipt, _) = programs(v6);
    for (table, builtin, suffix) in JUMPS {
        let target = chain(name, suffix);
        let jump = ["-t", table, "-C", builtin, "-j", &target];
        if run(ipt, &jump, None).is_err() {
            run(ipt, &["-t", table, "-I", builtin, "-j", &target], None)?;
        }
    }
    Ok(())
}

/// Refills the daemon's chains with `rs` (both families; IPv6 where ip6tables works).
pub fn apply(name: &str, rs: &Ruleset) -> Result<(), FirewallError> {
    for v6 in [false, true] {
        let (_, restore) = programs(v6);
        let r = run(restore, &["--noflush"], Some(&script(name, rs, v6)))
            .and_then(|()| ensure_jumps(name, v6));
        match r {
            Err(e) if v6 => tracing::debug!(error = %e, "ip6tables: IPv6 rules left out"),
            other => other?,
        }
    }
    Ok(())
}

/// Removes the daemon's chains and the jumps into them.
pub fn remove(name: &str) {
    for v6 in [false, true] {
        let (ipt, _) = programs(v6);
        for (table, builtin, suffix) in JUMPS {
            let target = chain(name, suffix);
            let _ = run(ipt, &["-t", table, "-D", builtin, "-j", &target], None);
        }
        for (table, suffix) in [
            ("nat", "PRE"),
            ("nat", "OUT"),
            ("nat", "PORTS"),
            ("nat", "POST"),
            ("filter", "FWD"),
        ] {
            let c = chain(name, suffix);
            let _ = run(ipt, &["-t", table, "-F", &c], None);
            let _ = run(ipt, &["-t", table, "-X", &c], None);
        }
    }
}

/// Whether this kernel has nf_tables (else berth falls back to iptables).
pub fn kernel_has_nftables() -> bool {
    // Listing works on a kernel with nf_tables, even with no table at all.
    Command::new("nft")
        .args(["list", "tables"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_has_dnat_masquerade_and_isolation() {
        let rs = crate::firewall::sample_ruleset("br1", Some("127.0.0.1"));
        let s = script("berth", &rs, false);
        assert!(s.contains("-A berth-PORTS -d 127.0.0.1 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80"), "{s}");
        assert!(
            s.contains("-A berth-POST -s 172.17.0.0/16 ! -o berth0 -j MASQUERADE"),
            "{s}"
        );
        assert!(!s.contains("-s 10.9.0.0/24"), "{s}");
        assert!(s.contains("-A berth-FWD -i br1 ! -o br1 -j DROP"), "{s}");
        assert!(s.contains("-A berth-FWD -i berth0 -o br1 -j DROP"), "{s}");
        let s6 = script("berth", &rs, true);
        assert!(!s6.contains("DNAT --to"), "{s6}");
        assert_eq!(
            chain("a-very-long-daemon-table-name-here", "PORTS").len(),
            28
        );
    }
}
