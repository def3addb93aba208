//! The network service: Docker's networks (`bridge`, `host`, `none` and user-defined bridge
//! networks) stored under `<data-root>/network/<id>.json`, container endpoints (a namespace
//! of the container's own with a veth pair per network), published ports and the embedded
//! DNS, over the berth-network crate (`service.rs`).

mod ports;
mod service;

pub use ports::{parse_bindings, PortBinding};
pub use service::{
    endpoint_config, mode_network, ports_of, split_link, CreateRequest, NetState, Published,
};

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The default bridge network's interface (dockerd's docker0).
pub const DEFAULT_BRIDGE: &str = "berth0";

/// One subnet of a network, as `IPAM.Config` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct IpamConf {
    pub subnet: String,
    /// As given (dockerd shows a gateway only when it was given or the subnet came from the
    /// default pool); the gateway in use is [`Network::gateway_of`].
    #[serde(default)]
    pub gateway: String,
    #[serde(default)]
    pub ip_range: String,
    /// `AuxiliaryAddresses`: addresses held back from containers (name -> address).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux: BTreeMap<String, String>,
}

/// A network, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub created: String,
    /// bridge, host or null.
    pub driver: String,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub enable_ipv6: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The driver options as given (`-o`).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub ipam_options: BTreeMap<String, String>,
    #[serde(default)]
    pub ipam: Vec<IpamConf>,
    /// The bridge interface (bridge driver only).
    #[serde(default)]
    pub bridge: String,
    #[serde(default)]
    pub mtu: Option<u32>,
}

impl Network {
    /// The default `bridge` network (no DNS, `--link`, no aliases).
    pub fn is_default_bridge(&self) -> bool {
        self.name == "bridge" && self.driver == "bridge"
    }
    pub fn is_bridge(&self) -> bool {
        self.driver == "bridge"
    }
    pub fn is_predefined(&self) -> bool {
        matches!(self.name.as_str(), "bridge" | "host" | "none")
    }
    /// The subnets, parsed.
    pub fn subnets(&self) -> Vec<ipnet::IpNet> {
        self.ipam
            .iter()
            .filter_map(|c| c.subnet.parse().ok())
            .collect()
    }
    /// The gateway of the subnet `c` (given, or its first host address).
    pub fn gateway_of(c: &IpamConf) -> Option<IpAddr> {
        if let Ok(g) = c.gateway.parse() {
            return Some(g);
        }
        let net: ipnet::IpNet = c.subnet.parse().ok()?;
        berth_network::Allocator::new(net, None, None)
            .ok()
            .map(|a| a.gateway())
    }
    /// `com.docker.network.bridge.enable_icc` (true unless "false").
    pub fn icc(&self) -> bool {
        self.option("com.docker.network.bridge.enable_icc") != Some("false")
    }
    pub fn masquerade(&self) -> bool {
        self.option("com.docker.network.bridge.enable_ip_masquerade") != Some("false")
    }
    fn option(&self, key: &str) -> Option<&str> {
        self.options.get(key).map(String::as_str)
    }
}

/// One container's place on one network (`NetworkSettings.Networks[name]`): what was asked
/// for, and while the container runs, what it got.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Endpoint {
    pub network_id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `--link name:alias` (on user networks: names this container alone resolves).
    #[serde(default)]
    pub links: Vec<String>,
    /// IPAMConfig.IPv4Address / IPv6Address as asked.
    #[serde(default)]
    pub ipv4_config: String,
    #[serde(default)]
    pub ipv6_config: String,
    #[serde(default)]
    pub mac_config: String,
    /// `IPAMConfig.LinkLocalIPs`: link-local addresses added to its interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link_local: Vec<String>,
    #[serde(default)]
    pub driver_opts: BTreeMap<String, String>,
    // ---- while running ----
    #[serde(default)]
    pub endpoint_id: String,
    #[serde(default)]
    pub ip: Option<IpAddr>,
    #[serde(default)]
    pub prefix: u8,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    #[serde(default)]
    pub ip6: Option<IpAddr>,
    #[serde(default)]
    pub prefix6: u8,
    #[serde(default)]
    pub gateway6: Option<IpAddr>,
    #[serde(default)]
    pub mac: String,
    /// The host end of the veth pair.
    #[serde(default)]
    pub veth: String,
    #[serde(default)]
    pub ifname: String,
}

impl Endpoint {
    /// Clears what a run gave (the addresses go back to the pool).
    pub fn clear_runtime(&mut self) {
        let keep = Endpoint {
            network_id: std::mem::take(&mut self.network_id),
            aliases: std::mem::take(&mut self.aliases),
            links: std::mem::take(&mut self.links),
            ipv4_config: std::mem::take(&mut self.ipv4_config),
            ipv6_config: std::mem::take(&mut self.ipv6_config),
            mac_config: std::mem::take(&mut self.mac_config),
            driver_opts: std::mem::take(&mut self.driver_opts),
            ..Default::default()
        };
        *self = keep;
    }
}

/// Loads the networks under `dir`.
pub fn load_all(dir: &Path) -> Vec<Network> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        if let Some(n) = std::fs::read(e.path())
            .ok()
            .and_then(|d| serde_json::from_slice::<Network>(&d).ok())
        {
            out.push(n);
        }
    }
    out
}

/// Docker's MAC for an IPv4 address: 02:42 and the address's four bytes.
pub fn mac_for(ip: Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
        }
        _ => {
            let id = crate::container::new_id();
            format!(
                "02:42:{}:{}:{}:{}",
                &id[0..2],
                &id[2..4],
                &id[4..6],
                &id[6..8]
            )
        }
    }
}

/// A MAC address in `aa:bb:cc:dd:ee:ff` form, if valid.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut out = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        out[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_follow_the_address() {
        assert_eq!(
            mac_for(Some("172.17.0.2".parse().unwrap())),
            "02:42:ac:11:00:02"
        );
        assert_eq!(
            parse_mac("02:42:ac:11:00:02"),
            Some([2, 0x42, 0xac, 0x11, 0, 2])
        );
        assert_eq!(parse_mac("02:42:ac:11:00"), None);
        assert_eq!(parse_mac("zz:42:ac:11:00:02"), None);
    }

    #[test]
    fn gateways_default_to_the_first_host() {
        let c = IpamConf {
            subnet: "10.1.2.0/24".into(),
            ..Default::default()
        };
        assert_eq!(Network::gateway_of(&c), Some("10.1.2.1".parse().unwrap()));
        let c = IpamConf {
            subnet: "10.1.2.0/24".into(),
            gateway: "10.1.2.254".into(),
            ..Default::default()
        };
        assert_eq!(Network::gateway_of(&c), Some("10.1.2.254".parse().unwrap()));
    }
}
