//! berth's nftables table and embedded DNS against the real kernel (root): a namespace of
//! berth's own on a test bridge, a busybox httpd in it published by DNAT and fetched from
//! the host through 127.0.0.1 and the bridge's address, and names answered at 127.0.0.11
//! inside it. The table, links and namespace are removed, also when an assertion fails.
//!
//! Run: `sudo -E cargo test -p berth-network --test firewall -- --include-ignored`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use berth_network::firewall::{self, BridgeRules, PortMap, Proto, Ruleset};
use berth_network::{dns, netlink::Netlink, netns};

struct Cleanup {
    bridge: String,
    /// A table of the test's own (a berthd on the host keeps its `berth`).
    table: String,
    ns: PathBuf,
    httpd: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut c) = self.httpd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        let _ = netns::remove(&self.ns);
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .stderr(Stdio::null())
            .status();
    }
}

struct TestNames;

impl dns::Names for TestNames {
    fn lookup(&self, name: &str) -> Option<Vec<IpAddr>> {
        (name == "web").then(|| vec!["10.99.0.2".parse().unwrap(), "10.99.0.3".parse().unwrap()])
    }
    fn reverse(&self, ip: IpAddr) -> Option<String> {
        (ip.to_string() == "10.99.0.2").then(|| "web".to_string())
    }
    fn upstreams(&self) -> Vec<SocketAddr> {
        Vec::new()
    }
}

fn wget(url: &str) -> Option<String> {
    // curl: busybox 1.35's wget crashes on a connection that was DNATed.
    let out = Command::new("curl")
        .args(["-s", "-m", "3", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: makes an nftables table, a bridge and a network namespace"]
async fn published_port_and_embedded_dns() {
    if !nix::unistd::geteuid().is_root() || !std::path::Path::new("/usr/sbin/nft").exists() {
        eprintln!("skipping: needs root and nft");
        return;
    }
    let tag = std::process::id() % 100_000;
    let dir = std::env::temp_dir().join(format!("berth-fw-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello through dnat\n").unwrap();
    let mut cleanup = Cleanup {
        bridge: format!("brfw{tag}"),
        table: format!("berth_fwtest{tag}"),
        ns: dir.join("ns"),
        httpd: None,
    };
    netns::create(&cleanup.ns).unwrap();
    assert!(netns::is_namespace(&cleanup.ns));
    let host = Netlink::host().unwrap();
    let br = host.ensure_bridge(&cleanup.bridge, None).await.unwrap();
    host.add_address(br, "10.99.0.1".parse().unwrap(), 24)
        .await
        .unwrap();
    host.add_veth(
        &format!("vfw{tag}"),
        &format!("vfp{tag}"),
        br,
        None,
        None,
        &cleanup.ns,
    )
    .await
    .unwrap();
    let inner = Netlink::in_namespace(&cleanup.ns).unwrap();
    inner
        .configure_endpoint(
            &format!("vfp{tag}"),
            "eth0",
            None,
            &[("10.99.0.2".parse().unwrap(), 24)],
            &["10.99.0.1".parse().unwrap()],
        )
        .await
        .unwrap();
    netns::sysctl("net/ipv4/ip_forward", "1").unwrap();
    netns::sysctl(
        &format!("net/ipv4/conf/{}/route_localnet", cleanup.bridge),
        "1",
    )
    .unwrap();
    cleanup.httpd = Some(
        Command::new("nsenter")
            .arg(format!("--net={}", cleanup.ns.display()))
            .args(["/bin/busybox", "httpd", "-f", "-p", "80", "-h"])
            .arg(&www)
            .spawn()
            .unwrap(),
    );
    let port = 20000 + (tag % 20000) as u16;
    firewall::apply(
        &cleanup.table,
        &Ruleset {
            bridges: vec![BridgeRules {
                bridge: cleanup.bridge.clone(),
                subnets: vec!["10.99.0.0/24".parse().unwrap()],
                internal: false,
                masquerade: true,
                icc: true,
            }],
            ports: vec![PortMap {
                proto: Proto::Tcp,
                host_ip: None,
                host_port: port,
                ctr_ip: "10.99.0.2".parse().unwrap(),
                ctr_port: 80,
            }],
        },
    )
    .await
    .unwrap();
    let listed = Command::new("nft")
        .args(["list", "table", "inet", &cleanup.table])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("dnat ip to 10.99.0.2:80"), "{listed}");
    let mut got = None;
    for _ in 0..50 {
        got = wget(&format!("http://127.0.0.1:{port}/"));
        if got.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(got.as_deref(), Some("hello through dnat\n"));
    assert_eq!(
        wget(&format!("http://10.99.0.1:{port}/")).as_deref(),
        Some("hello through dnat\n")
    );

    // DNS at 127.0.0.11 inside the namespace: the names given, the rest refused.
    let server = dns::DnsServer::start(&cleanup.ns, Arc::new(TestNames)).unwrap();
    let ns = cleanup.ns.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .args(["/bin/busybox", "nslookup", "web", "127.0.0.11"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("10.99.0.2") && text.contains("10.99.0.3"),
        "{text}"
    );
    server.stop();

    firewall::remove(&cleanup.table).await.unwrap();
    let tables = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&tables.stdout).contains(&cleanup.table));
    let _ = std::fs::remove_dir_all(&dir);
}
