//! The bridge plumbing against the real kernel (root): a bridge with a gateway address, a
//! veth pair into a new network namespace, the container's end as `eth0` with its address
//! and default route, then traffic both ways over it. Everything made is deleted, also when
//! an assertion fails.
//!
//! Run: `sudo -E cargo test -p berth-network --test bridge -- --include-ignored`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command};

use berth_network::ipam::{self, Allocator};
use berth_network::netlink::Netlink;

/// Deletes the test's links and ends its namespace holder, whatever happens.
struct Cleanup {
    links: Vec<String>,
    holder: Child,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for l in &self.links {
            let _ = Command::new("ip").args(["link", "del", l]).status();
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn ping(netns: Option<&str>, target: IpAddr) -> bool {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={ns}")).arg("/bin/busybox");
            c
        }
        None => Command::new("/bin/busybox"),
    };
    cmd.args(["ping", "-c", "1", "-W", "2", &target.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
#[ignore = "needs root: makes a bridge, a veth pair and a network namespace"]
async fn bridge_veth_and_addresses_carry_traffic() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: not root");
        return;
    }
    for tool in ["/bin/busybox", "/usr/bin/nsenter", "/usr/bin/unshare"] {
        if !std::path::Path::new(tool).exists() {
            eprintln!("skipping: {tool} missing");
            return;
        }
    }
    let tag = std::process::id() % 100_000;
    let (bridge, host_end, peer) = (
        format!("bt{tag}br"),
        format!("bt{tag}h"),
        format!("bt{tag}c"),
    );
    // A network namespace held by a sleeping process of ours.
    let holder = Command::new("unshare")
        .args(["-n", "sleep", "60"])
        .spawn()
        .expect("unshare -n sleep");
    let ns = PathBuf::from(format!("/proc/{}/ns/net", holder.id()));
    let _cleanup = Cleanup {
        links: vec![bridge.clone(), host_end.clone()],
        holder,
    };
    for _ in 0..100 {
        if std::fs::read_link(&ns).ok() != std::fs::read_link("/proc/self/ns/net").ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    // A /24 that no route of the host covers.
    let pool = [("10.199.0.0/16".parse().unwrap(), 24)];
    let subnet = ipam::pick_subnet(&pool, &[], &ipam::host_routes()).expect("a free /24");
    let mut alloc = Allocator::new(subnet, None, None).unwrap();
    let gw = alloc.gateway();
    let ip = alloc.allocate(None).unwrap();

    let host = Netlink::host().unwrap();
    let br = host.ensure_bridge(&bridge, Some(1400)).await.unwrap();
    host.add_address(br, gw, subnet.prefix_len()).await.unwrap();
    host.add_address(br, gw, subnet.prefix_len()).await.unwrap();
    host.add_veth(&host_end, &peer, br, Some(1400), None, &ns)
        .await
        .unwrap();
    assert!(host.index(&peer).await.unwrap().is_none(), "the peer moved");
    assert_eq!(host.mtu(&bridge).await.unwrap(), Some(1400));

    let inside = Netlink::in_namespace(&ns).unwrap();
    inside
        .configure_endpoint(&peer, "eth0", None, &[(ip, subnet.prefix_len())], &[gw])
        .await
        .unwrap();
    assert!(inside.index("eth0").await.unwrap().is_some());
    assert_eq!(inside.mtu("eth0").await.unwrap(), Some(1400));

    let ns_str = ns.to_string_lossy().into_owned();
    assert!(ping(Some(&ns_str), gw), "container -> gateway");
    assert!(ping(None, ip), "host -> container");

    host.delete(&host_end).await.unwrap();
    assert!(
        inside.index("eth0").await.unwrap().is_none(),
        "the veth went as a pair"
    );
    host.delete(&bridge).await.unwrap();
    assert!(host.index(&bridge).await.unwrap().is_none());
    host.delete(&bridge).await.unwrap();
}
