//! Issue 12, networks, with the real docker CLI against a real berthd: published ports
//! reached from the host (127.0.0.1 and its own address) and from another container, names
//! and aliases on user networks (and not across them), isolation, `--internal`, connect and
//! disconnect while running, container mode, `--link`, `-P`, IPv6, dockerd's errors, and a
//! published port that outlives `kill -9` of berthd. Traffic stays on loopback and on the
//! tests' own bridges; every bridge, rule and namespace made is gone at the end.
//!
//! Run: `cargo build --workspace --bins`, then
//! `sudo -E cargo test -p berth-tests --test network -- --include-ignored`.

use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::cli::{CliEnv, IMAGE};
use berth_tests::{skip_unless_root, unique_id};

fn start() -> Option<CliEnv> {
    if !std::path::Path::new("/usr/sbin/nft").exists() {
        eprintln!("skipping: nft missing (apt-get install nftables)");
        return None;
    }
    berth_tests::cli::start_for_docker()
}

fn ok(env: &CliEnv, args: &[&str]) -> String {
    env.docker_ok(args)
}

#[track_caller]
fn fails(env: &CliEnv, args: &[&str], message: &str) {
    env.docker_fails(args, message)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// GET `url` with curl (3 s bound), retried for up to 10 s until it answers. (In
/// containers, busybox's wget runs under `timeout`: its own `-T` crashes on some connections.)
fn fetch(url: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("curl")
            .args(["-s", "-m", "3", url])
            .output()
            .ok()?;
        if out.status.success() {
            return Some(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The host's first global IPv4 address outside berth's bridges.
fn host_address() -> Option<String> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let mut w = l.split_whitespace();
        let dev = w.nth(1)?;
        if dev.starts_with("bt") || dev.starts_with("berth") || dev.starts_with("docker") {
            return None;
        }
        let addr = w.nth(1)?;
        Some(addr.split('/').next()?.to_string())
    })
}

/// An httpd container serving `body` at /, with `opts`; its name.
fn httpd(env: &CliEnv, opts: &[&str], body: &str) -> String {
    let name = unique_id("web");
    let mut args = vec!["run", "-d", "--name", &name];
    args.extend_from_slice(opts);
    let script =
        format!("mkdir /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www");
    args.extend([IMAGE, "sh", "-c", &script]);
    ok(env, &args);
    name
}

/// GET `url` from a new container on the default bridge (busybox wget, bounded by
/// `timeout`).
fn wget_from_container(env: &CliEnv, url: &str) -> String {
    ok(
        env,
        &[
            "run", "--rm", IMAGE, "timeout", "5", "wget", "-q", "-O", "-", url,
        ],
    )
}

/// An httpd container (with `opts`) published on a free host port and fetched through
/// 127.0.0.1: its name and the port.
fn published_httpd(env: &CliEnv, opts: &[&str], body: &str) -> (String, u16) {
    let port = free_port();
    let publish = format!("{port}:80");
    let mut all = vec!["-p", &publish];
    all.extend_from_slice(opts);
    let web = httpd(env, &all, body);
    assert_eq!(
        fetch(&format!("http://127.0.0.1:{port}/")).as_deref(),
        Some(format!("{body}\n").as_str())
    );
    (web, port)
}

/// The test daemon's nftables table (each has one of its own).
fn nft_table(env: &CliEnv) -> String {
    let table = env
        .daemon_flag("--nft-table")
        .unwrap_or_else(|| "berth".into());
    let out = Command::new("nft")
        .args(["list", "table", "inet", &table])
        .output()
        .expect("nft list table");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs root: makes bridges, namespaces and nftables rules"]
fn published_ports_reach_the_container_from_the_host_and_other_containers() {
    skip_unless_root!();
    let Some(env) = start() else { return };
    // From the host: loopback and its own address, with no proxy process.
    let (web, port) = published_httpd(&env, &[], "hello-berth");
    let host = host_address();
    if let Some(h) = &host {
        assert_eq!(
            fetch(&format!("http://{h}:{port}/")).as_deref(),
            Some("hello-berth\n")
        );
        // From another container, through the host's address (hairpin).
        let got = wget_from_container(&env, &format!("http://{h}:{port}/"));
        assert_eq!(got, "hello-berth\n");
    }
    let ruleset = nft_table(&env);
    assert!(
        ruleset.contains(&format!("dport {port} dnat ip to")),
        "{ruleset}"
    );

    // docker port, ps, inspect.
    let p = ok(&env, &["port", &web]);
    assert_eq!(p.trim(), format!("80/tcp -> 0.0.0.0:{port}"));
    let ps = ok(
        &env,
        &[
            "ps",
            "--filter",
            &format!("name={web}"),
            "--format",
            "{{.Ports}}",
        ],
    );
    assert_eq!(ps.trim(), format!("0.0.0.0:{port}->80/tcp"));
    let ip = ok(&env, &["inspect", "-f", "{{.NetworkSettings.IPAddress}} {{.NetworkSettings.Networks.bridge.IPAddress}} {{.NetworkSettings.MacAddress}}", &web]);
    let f: Vec<&str> = ip.split_whitespace().collect();
    assert_eq!(f.len(), 3, "{ip}");
    assert_eq!(f[0], f[1]);
    let octets: Vec<u8> = f[0].split('.').map(|o| o.parse().unwrap()).collect();
    assert_eq!(
        f[2],
        format!(
            "02:42:{:02x}:{:02x}:{:02x}:{:02x}",
            octets[0], octets[1], octets[2], octets[3]
        )
    );
    // Container to container on the default bridge, by address.
    let got = wget_from_container(&env, &format!("http://{}/", f[0]));
    assert_eq!(got, "hello-berth\n");
    // Its /etc/hosts has its address.
    let hosts = ok(&env, &["exec", &web, "cat", "/etc/hosts"]);
    assert!(hosts.lines().any(|l| l.starts_with(f[0])), "{hosts}");

    // The same host port again: dockerd's error, and nothing half made.
    let other = unique_id("clash");
    fails(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &other,
            "-p",
            &format!("{port}:80"),
            IMAGE,
            "sleep",
            "30",
        ],
        "port is already allocated",
    );
    let state = ok(
        &env,
        &[
            "inspect",
            "-f",
            "{{.State.Status}} {{.NetworkSettings.SandboxKey}}",
            &other,
        ],
    );
    assert_eq!(state.trim(), "created", "{state}");
    ok(&env, &["rm", "-f", &other]);

    // On the host's network, dockerd's warning.
    let out = env.docker_output(&[
        "run",
        "--rm",
        "--network",
        "host",
        "-p",
        "9:80",
        IMAGE,
        "true",
    ]);
    assert_eq!(out.code(), 0, "{out}");
    assert!(
        out.stderr
            .contains("WARNING: Published ports are discarded when using host network mode"),
        "{out}"
    );

    // -p ip::ctr (a free port), -P with the exposed ports, udp.
    let pp = unique_id("pp");
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &pp,
            "-p",
            "127.0.0.1::80",
            "-P",
            "--expose",
            "7000",
            "--expose",
            "7001/udp",
            IMAGE,
            "sleep",
            "300",
        ],
    );
    let ports = ok(&env, &["port", &pp]);
    assert!(ports.contains("80/tcp -> 127.0.0.1:"), "{ports}");
    assert!(ports.contains("7000/tcp -> 0.0.0.0:"), "{ports}");
    assert!(ports.contains("7001/udp -> 0.0.0.0:"), "{ports}");

    // Removal takes the rules, the veth and the namespace away.
    ok(&env, &["rm", "-f", &web, &pp]);
    let ruleset = nft_table(&env);
    assert!(!ruleset.contains(&format!("dport {port} ")), "{ruleset}");
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    let sandbox_dir = env.dir().join("exec/netns");
    let left = std::fs::read_dir(&sandbox_dir)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "namespaces left in {}", sandbox_dir.display());
    let _ = links;
}

#[test]
#[ignore = "needs root: makes bridges, namespaces and nftables rules"]
fn user_networks_resolve_names_isolate_and_connect_live() {
    skip_unless_root!();
    let Some(env) = start() else { return };
    let since = chrono_now();
    let n1 = unique_id("n1");
    let n2 = unique_id("n2");
    ok(&env, &["network", "create", "--label", "team=a", &n1]);
    ok(
        &env,
        &[
            "network",
            "create",
            "--internal",
            "--subnet",
            "10.231.7.0/24",
            "--gateway",
            "10.231.7.254",
            &n2,
        ],
    );
    let ls = ok(
        &env,
        &[
            "network",
            "ls",
            "--filter",
            "label=team=a",
            "--format",
            "{{.Name}}",
        ],
    );
    assert_eq!(ls.trim(), n1);
    let ls = ok(
        &env,
        &["network", "ls", "--format", "{{.Name}} {{.Driver}}"],
    );
    for want in ["bridge bridge", "host host", "none null"] {
        assert!(ls.contains(want), "{ls}");
    }
    let ipam = ok(
        &env,
        &[
            "network",
            "inspect",
            "-f",
            "{{json .IPAM.Config}} {{.Internal}}",
            &n2,
        ],
    );
    assert_eq!(
        ipam.trim(),
        r#"[{"Subnet":"10.231.7.0/24","Gateway":"10.231.7.254"}] true"#
    );

    // Two servers under one alias, a client resolving names, aliases (round robin) and the
    // `name.network` form.
    let a = unique_id("a");
    let b = unique_id("b");
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &a,
            "--network",
            &n1,
            "--network-alias",
            "svc",
            IMAGE,
            "sleep",
            "300",
        ],
    );
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &b,
            "--network",
            &n1,
            "--network-alias",
            "svc",
            IMAGE,
            "sleep",
            "300",
        ],
    );
    let ip_a = ok(
        &env,
        &[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{n1}\").IPAddress}}}}"),
            &a,
        ],
    );
    let ip_b = ok(
        &env,
        &[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{n1}\").IPAddress}}}}"),
            &b,
        ],
    );
    let out = ok(
        &env,
        &["run", "--rm", "--network", &n1, IMAGE, "sh", "-c", &format!("cat /etc/resolv.conf; nslookup {a}; nslookup svc; nslookup {b}.{n1}; ping -c1 -W2 {a} >/dev/null && echo PING-OK")],
    );
    assert!(out.contains("nameserver 127.0.0.11"), "{out}");
    assert!(
        out.contains(ip_a.trim()) && out.contains(ip_b.trim()),
        "{out}"
    );
    assert!(out.contains("PING-OK"), "{out}");

    // Not across networks: a container on the default bridge neither resolves nor reaches them.
    let out = ok(
        &env,
        &["run", "--rm", IMAGE, "sh", "-c", &format!("nslookup {a} 127.0.0.11 2>&1; ping -c1 -W1 {} >/dev/null 2>&1 && echo REACHED || echo ISOLATED", ip_a.trim())],
    );
    assert!(out.contains("ISOLATED"), "{out}");
    assert!(!out.contains(&format!("Address: {}", ip_a.trim())), "{out}");

    // --internal: a static address, no default route, no way out.
    let c = unique_id("c");
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &c,
            "--network",
            &n2,
            "--ip",
            "10.231.7.9",
            IMAGE,
            "sleep",
            "300",
        ],
    );
    let out = ok(
        &env,
        &["exec", &c, "sh", "-c", "ip -4 addr show eth0; ip route"],
    );
    assert!(out.contains("inet 10.231.7.9/24"), "{out}");
    assert!(!out.contains("default"), "{out}");
    if let Some(h) = host_address() {
        let out = env.docker_output(&["exec", &c, "ping", "-c1", "-W1", &h]);
        assert_ne!(out.code(), 0, "internal network reached the host: {out}");
    }

    // connect (with an alias) and disconnect while running.
    ok(&env, &["network", "connect", "--alias", "bridged", &n2, &a]);
    let out = ok(
        &env,
        &[
            "exec",
            &c,
            "sh",
            "-c",
            "nslookup bridged; ping -c1 -W2 bridged >/dev/null && echo PING-OK",
        ],
    );
    assert!(out.contains("10.231.7."), "{out}");
    assert!(out.contains("PING-OK"), "{out}");
    let ifaces = ok(&env, &["exec", &a, "ip", "-o", "link"]);
    assert!(ifaces.contains("eth1"), "{ifaces}");
    // /etc/hosts: its address on each network, with its aliases there.
    let hosts = ok(&env, &["exec", &a, "cat", "/etc/hosts"]);
    assert!(
        hosts
            .lines()
            .any(|l| l.starts_with("10.231.7.") && l.ends_with(" bridged")),
        "{hosts}"
    );
    assert!(
        hosts
            .lines()
            .any(|l| l.starts_with(ip_a.trim()) && l.ends_with(" svc")),
        "{hosts}"
    );
    let insp = ok(
        &env,
        &["network", "inspect", "-f", "{{len .Containers}}", &n2],
    );
    assert_eq!(insp.trim(), "2");
    fails(
        &env,
        &["network", "connect", &n2, &a],
        "already exists in network",
    );
    ok(&env, &["network", "disconnect", &n2, &a]);
    let ifaces = ok(&env, &["exec", &a, "ip", "-o", "link"]);
    assert!(!ifaces.contains("eth1"), "{ifaces}");

    // Container mode shares the namespace (same address); --link on the default bridge.
    let out = ok(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            &format!("container:{a}"),
            IMAGE,
            "ip",
            "-4",
            "-o",
            "addr",
            "show",
            "eth0",
        ],
    );
    assert!(out.contains(ip_a.trim()), "{out}");
    let d = unique_id("d");
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &d,
            "--mac-address",
            "02:42:de:ad:be:ef",
            IMAGE,
            "sleep",
            "300",
        ],
    );
    let link = ok(&env, &["exec", &d, "ip", "link", "show", "eth0"]);
    assert!(link.contains("link/ether 02:42:de:ad:be:ef"), "{link}");
    // Started on the default bridge, connected to a user network: names from then on.
    ok(&env, &["network", "connect", &n1, &d]);
    let out = ok(
        &env,
        &[
            "exec",
            &d,
            "sh",
            "-c",
            &format!("cat /etc/resolv.conf; nslookup {a}"),
        ],
    );
    assert!(out.contains("nameserver 127.0.0.11"), "{out}");
    assert!(out.contains(ip_a.trim()), "{out}");
    let out = ok(
        &env,
        &[
            "run",
            "--rm",
            "--link",
            &format!("{d}:dbalias"),
            IMAGE,
            "sh",
            "-c",
            "grep dbalias /etc/hosts && ping -c1 -W2 dbalias >/dev/null && echo PING-OK",
        ],
    );
    assert!(out.contains("PING-OK"), "{out}");

    // dockerd's errors.
    fails(
        &env,
        &[
            "network",
            "create",
            "--subnet",
            "10.231.7.0/25",
            &unique_id("x"),
        ],
        "Pool overlaps with other one on this address space",
    );
    fails(&env, &["network", "create", &n1], "already exists");
    fails(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            &n2,
            "--ip",
            "10.99.99.9",
            IMAGE,
            "true",
        ],
        "does not belong to any of this network's subnets",
    );
    fails(
        &env,
        &[
            "run",
            "--rm",
            "--pull",
            "never",
            "--network",
            "nope-net",
            IMAGE,
            "true",
        ],
        "network nope-net not found",
    );
    fails(
        &env,
        &["run", "--rm", "--ip", "172.17.0.99", IMAGE, "true"],
        "user specified IP address is supported on user defined networks only",
    );
    fails(&env, &["network", "rm", &n1], "has active endpoints");
    fails(
        &env,
        &["network", "rm", "bridge"],
        "pre-defined network and cannot be removed",
    );

    // Gone without a trace: bridges, rules.
    let bridge1 = format!(
        "berth{}",
        &ok(&env, &["network", "inspect", "-f", "{{.Id}}", &n1]).trim()[..10]
    );
    ok(&env, &["rm", "-f", &a, &b, &c, &d]);
    ok(&env, &["network", "rm", &n1, &n2]);
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains(&bridge1));
    assert!(!nft_table(&env).contains(&bridge1));
    let pruned = ok(&env, &["network", "prune", "-f"]);
    assert!(!pruned.contains("bridge"), "{pruned}");
    // docker system prune takes networks too, and answers success.
    let x = unique_id("sp");
    ok(&env, &["network", "create", &x]);
    let pruned = ok(&env, &["system", "prune", "-f"]);
    assert!(pruned.contains(&x), "{pruned}");

    // Docker's network events for all of it.
    std::thread::sleep(Duration::from_millis(1100));
    let events = ok(
        &env,
        &[
            "events",
            "--since",
            &since,
            "--until",
            "0s",
            "--filter",
            &format!("network={n2}"),
            "--format",
            "{{.Type}} {{.Action}}",
        ],
    );
    for want in [
        "network create",
        "network connect",
        "network disconnect",
        "network destroy",
    ] {
        assert!(events.contains(want), "{want}: {events}");
    }
}

/// Now as a unix timestamp, for `docker events --since`.
fn chrono_now() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs().to_string())
        .unwrap_or_default()
}

#[test]
#[ignore = "needs root: makes bridges, namespaces and nftables rules"]
fn ipv6_user_network() {
    skip_unless_root!();
    let Some(env) = start() else { return };
    let n = unique_id("v6");
    ok(
        &env,
        &[
            "network",
            "create",
            "--ipv6",
            "--subnet",
            "fd00:b3:7::/64",
            &n,
        ],
    );
    let a = unique_id("v6a");
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &a,
            "--network",
            &n,
            IMAGE,
            "sleep",
            "300",
        ],
    );
    let ip6 = ok(
        &env,
        &[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{n}\").GlobalIPv6Address}}}}"),
            &a,
        ],
    );
    assert!(ip6.trim().starts_with("fd00:b3:7::"), "{ip6}");
    let out = ok(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            &n,
            IMAGE,
            "sh",
            "-c",
            &format!("nslookup -type=AAAA {a}; ping6 -c1 -W2 {a} >/dev/null && echo PING6-OK"),
        ],
    );
    assert!(out.contains(ip6.trim()), "{out}");
    assert!(out.contains("PING6-OK"), "{out}");
    ok(&env, &["rm", "-f", &a]);
    ok(&env, &["network", "rm", &n]);
}

#[test]
#[ignore = "needs root: makes bridges, namespaces and nftables rules"]
fn published_port_outlives_kill_9_of_berthd_and_the_supervisor() {
    skip_unless_root!();
    let Some(mut env) = start() else { return };
    let n = unique_id("kn");
    ok(&env, &["network", "create", &n]);
    let (web, port) = published_httpd(&env, &["--network", &n], "still-here");
    let peer = unique_id("peer");
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            &peer,
            "--network",
            &n,
            IMAGE,
            "sleep",
            "300",
        ],
    );

    env.kill_daemon().expect("kill -9 berthd");
    assert_eq!(env.kill_supervisor(), 1, "kill -9 of the supervisor");
    assert_eq!(
        fetch(&format!("http://127.0.0.1:{port}/")).as_deref(),
        Some("still-here\n"),
        "published port died with berthd and the supervisor"
    );
    env.restart_daemon().expect("start berthd again");
    assert_eq!(
        fetch(&format!("http://127.0.0.1:{port}/")).as_deref(),
        Some("still-here\n")
    );
    // The embedded DNS is back too.
    let out = ok(
        &env,
        &[
            "exec",
            &peer,
            "sh",
            "-c",
            &format!("timeout 5 wget -q -O - http://{web}/"),
        ],
    );
    assert_eq!(out, "still-here\n");

    ok(&env, &["rm", "-f", &web, &peer]);
    ok(&env, &["network", "rm", &n]);
    assert!(!nft_table(&env).contains(&format!("dport {port} ")));
}

/// A one-record DNS server on `addr` (UDP): every A question is answered with `answer`.
fn tiny_dns(addr: &str, answer: [u8; 4]) -> std::net::UdpSocket {
    let sock = std::net::UdpSocket::bind(addr).expect("bind the test DNS server");
    let s = sock.try_clone().expect("clone socket");
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            // The question ends after its name's zero byte, type and class.
            let mut i = 12;
            while i < n && buf[i] != 0 {
                i += buf[i] as usize + 1;
            }
            let qend = (i + 5).min(n);
            let qtype = u16::from_be_bytes([buf[i + 1], buf[i + 2]]);
            let mut out = buf[..qend].to_vec();
            out[2] = 0x81;
            out[3] = 0x80;
            out[6..12].copy_from_slice(&[0, (qtype == 1) as u8, 0, 0, 0, 0]);
            if qtype == 1 {
                out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                out.extend_from_slice(&answer);
            }
            let _ = s.send_to(&out, from);
        }
    });
    sock
}

#[test]
#[ignore = "needs root: makes bridges, namespaces and nftables rules"]
fn embedded_dns_forwards_other_names_to_the_upstream() {
    skip_unless_root!();
    let Some(env) = start() else { return };
    // An upstream on a loopback address of the host: berthd forwards from the host's side.
    let upstream = format!("127.0.{}.53", 100 + std::process::id() % 100);
    let _dns = tiny_dns(&format!("{upstream}:53"), [10, 1, 2, 3]);
    let n = unique_id("fw");
    ok(&env, &["network", "create", &n]);
    let out = ok(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            &n,
            "--dns",
            &upstream,
            IMAGE,
            "nslookup",
            "outside.example",
        ],
    );
    assert!(out.contains("10.1.2.3"), "{out}");
    ok(&env, &["network", "rm", &n]);
}

#[test]
#[ignore = "needs root: makes bridges, namespaces and iptables chains"]
fn iptables_backend_publishes_ports_and_cleans_up() {
    skip_unless_root!();
    if berth_tests::cli::docker_cli().is_none()
        || !std::path::Path::new("/usr/sbin/iptables-legacy").exists()
    {
        eprintln!("skipping: needs the docker CLI and iptables-legacy");
        return;
    }
    // The fallback for kernels without nf_tables, forced here.
    let Some(env) = CliEnv::start_with_daemon_args(&["--firewall-backend", "iptables"]) else {
        return;
    };
    let prefix = env
        .daemon_flag("--nft-table")
        .expect("the daemon's table name");
    let chains = || {
        let out = Command::new("iptables-legacy-save")
            .output()
            .expect("iptables-legacy-save");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (web, port) = published_httpd(&env, &[], "via-iptables");
    let saved = chains();
    assert!(
        saved.contains(&format!(
            "-A {prefix}-PORTS -p tcp -m tcp --dport {port} -j DNAT"
        )),
        "{saved}"
    );
    assert!(
        saved.contains(&format!("-A PREROUTING -j {prefix}-PRE")),
        "{saved}"
    );
    // Nothing in nftables.
    assert!(!Command::new("nft")
        .args(["list", "table", "inet", &prefix])
        .output()
        .expect("nft")
        .status
        .success());
    ok(&env, &["rm", "-f", &web]);
    assert!(!chains().contains(&format!("--dport {port} ")));
    drop(env);
    // The chains go with the daemon's network state (as a test daemon's table does).
    assert!(!chains().contains(&format!("{prefix}-")), "{}", chains());
}

#[test]
#[ignore = "needs root: makes bridges, namespaces and nftables rules"]
fn berth_cli_publishes_ports_and_names_containers() {
    skip_unless_root!();
    let Some(env) = start() else { return };
    let n = unique_id("cli");
    env.ok(&["network", "create", "--subnet", "10.233.4.0/24", &n]);
    let port = free_port();
    let web = unique_id("cliweb");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &web,
        "--network",
        &n,
        "--network-alias",
        "site",
        "--ip",
        "10.233.4.9",
        "-p",
        &format!("{port}:80"),
        IMAGE,
        "sh",
        "-c",
        "mkdir /w && echo from-berth > /w/index.html && exec httpd -f -p 80 -h /w",
    ]);
    assert_eq!(
        env.ok(&["port", &web]).trim(),
        format!("80/tcp -> 0.0.0.0:{port}")
    );
    assert_eq!(
        fetch(&format!("http://127.0.0.1:{port}/")).as_deref(),
        Some("from-berth\n")
    );
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        &n,
        IMAGE,
        "timeout",
        "5",
        "wget",
        "-q",
        "-O",
        "-",
        "http://site/",
    ]);
    assert_eq!(out, "from-berth\n");
    let ip = env.ok(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{n}\").IPAddress}}}}"),
        &web,
    ]);
    assert_eq!(ip.trim(), "10.233.4.9");
    env.ok(&["rm", "-f", &web]);
    env.ok(&["network", "rm", &n]);
}
