//! Networks and endpoints: create, remove, prune, connect, disconnect; a container's
//! namespace and veth pairs at start, gone at exit; published ports and the firewall table;
//! the embedded DNS; what is restored when berthd starts again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use berth_network::dns::{DnsServer, Names};
use berth_network::firewall::{BridgeRules, PortMap, Proto, Ruleset};
use berth_network::ipam::{self, Allocator, IpamError};
use berth_network::netlink::Netlink;
use berth_network::netns;
use serde_json::Value;

use super::{Endpoint, IpamConf, Network, PortBinding};
use crate::container::Record;
use crate::error::{ApiError, ApiResult};
use crate::Engine;

/// A port published by a running container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Published {
    pub proto: String,
    /// As given ("" for every address).
    pub host_ip: String,
    pub host_port: u16,
    pub ctr_port: u16,
    pub ctr_ip: IpAddr,
}

/// The network service's live state.
#[derive(Default)]
pub struct NetState {
    /// By id.
    pub nets: BTreeMap<String, Network>,
    /// By network id: one allocator per subnet.
    allocators: HashMap<String, Vec<Allocator>>,
    /// Embedded DNS servers by container id.
    dns: HashMap<String, DnsServer>,
    host: Option<Netlink>,
}

impl std::fmt::Debug for NetState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetState")
            .field("nets", &self.nets.len())
            .finish()
    }
}

/// A network create request (`POST /networks/create`), already decoded.
#[derive(Debug, Default)]
pub struct CreateRequest {
    pub name: String,
    pub driver: String,
    pub internal: bool,
    pub attachable: bool,
    pub enable_ipv6: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub ipam_driver: String,
    pub ipam_options: BTreeMap<String, String>,
    pub ipam: Vec<IpamConf>,
}

fn ipam_error(e: IpamError) -> ApiError {
    match e {
        IpamError::Overlap => ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "Pool overlaps with other one on this address space",
        ),
        IpamError::InUse | IpamError::Exhausted(_) => ApiError::internal(e.to_string()),
        other => ApiError::bad_request(other.to_string()),
    }
}

fn forbidden(m: impl Into<String>) -> ApiError {
    ApiError::new(axum::http::StatusCode::FORBIDDEN, m)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e.to_string())
}

/// The network a container's NetworkMode names (`default` is the bridge).
pub fn mode_network(mode: &str) -> Option<&str> {
    match mode {
        "" | "default" | "bridge" => Some("bridge"),
        "host" | "none" => None,
        m if m.starts_with("container:") => None,
        m => Some(m),
    }
}

/// The order a container's networks are set up in: its NetworkMode's first (it gives the
/// default route and publishes the ports), then the others by name.
fn ordered(rec: &Record) -> Vec<String> {
    let primary = mode_network(rec.host_config["NetworkMode"].as_str().unwrap_or_default());
    let mut names: Vec<String> = Vec::new();
    if let Some(p) = primary {
        if let Some((k, _)) = rec
            .endpoints
            .iter()
            .find(|(k, ep)| k.as_str() == p || ep.network_id == p)
        {
            names.push(k.clone());
        }
    }
    for k in rec.endpoints.keys() {
        if !names.contains(k) {
            names.push(k.clone());
        }
    }
    names
}

impl Engine {
    /// The `--link` targets of `rec` on a network they share: (alias, target, address).
    pub(crate) fn linked(&self, rec: &Record) -> Vec<(String, Record, IpAddr)> {
        let mut out = Vec::new();
        for link in strs(&rec.host_config["Links"]) {
            let (target, alias) = split_link(&link);
            let Ok(other) = self.find(target) else {
                continue;
            };
            let ip = other
                .endpoints
                .values()
                .find(|e| rec.endpoints.values().any(|m| m.network_id == e.network_id))
                .and_then(|e| e.ip);
            if let Some(ip) = ip {
                out.push((alias.to_string(), other, ip));
            }
        }
        out
    }

    /// The legacy link variables dockerd sets in a linking container: `ALIAS_NAME`, for
    /// each exposed port `ALIAS_PORT_80_TCP` (and its `_ADDR`, `_PORT`, `_PROTO`),
    /// `ALIAS_PORT` (the first), and `ALIAS_ENV_K` for the target's environment.
    pub(crate) fn link_env(&self, rec: &Record) -> Vec<String> {
        let mut env = Vec::new();
        for (alias, other, ip) in self.linked(rec) {
            let a = alias.to_uppercase().replace('-', "_");
            env.push(format!(
                "{a}_NAME=/{}/{alias}",
                rec.name.trim_start_matches('/')
            ));
            let mut ports: Vec<(u16, String)> = other.config["ExposedPorts"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.keys())
                .filter_map(|k| {
                    let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
                    Some((p.parse().ok()?, proto.to_string()))
                })
                .collect();
            ports.sort();
            if let Some((p, proto)) = ports.first() {
                env.push(format!("{a}_PORT={proto}://{ip}:{p}"));
            }
            for (p, proto) in &ports {
                let key = format!("{a}_PORT_{p}_{}", proto.to_uppercase());
                env.push(format!("{key}={proto}://{ip}:{p}"));
                env.push(format!("{key}_ADDR={ip}"));
                env.push(format!("{key}_PORT={p}"));
                env.push(format!("{key}_PROTO={proto}"));
            }
            for v in strs(&other.config["Env"]) {
                if let Some((k, val)) = v.split_once('=') {
                    if k != "HOME" && k != "PATH" {
                        env.push(format!("{a}_ENV_{k}={val}"));
                    }
                }
            }
        }
        env
    }
}

impl Engine {
    fn net(&self) -> std::sync::MutexGuard<'_, NetState> {
        self.net.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn network_dir(&self) -> PathBuf {
        self.config.data_root.join("network")
    }

    fn sandbox_path(&self, id: &str) -> PathBuf {
        self.config
            .exec_root
            .join("netns")
            .join(&id[..12.min(id.len())])
    }

    fn host_netlink(&self) -> ApiResult<Netlink> {
        let mut st = self.net();
        if let Some(h) = &st.host {
            return Ok(h.clone());
        }
        let h = Netlink::host().map_err(internal)?;
        st.host = Some(h.clone());
        Ok(h)
    }

    fn save_network(&self, n: &Network) -> ApiResult<()> {
        crate::container::save_json(&self.network_dir(), &format!("{}.json", n.id), n)
            .map_err(internal)
    }

    /// Every network.
    pub fn networks(&self) -> Vec<Network> {
        self.net().nets.values().cloned().collect()
    }

    /// A network by full id, name, or unique id prefix.
    pub fn network_find(&self, key: &str) -> ApiResult<Network> {
        let st = self.net();
        if let Some(n) = st.nets.get(key) {
            return Ok(n.clone());
        }
        if let Some(n) = st.nets.values().find(|n| n.name == key) {
            return Ok(n.clone());
        }
        let matches: Vec<&Network> = st.nets.values().filter(|n| n.id.starts_with(key)).collect();
        match matches.as_slice() {
            [one] if !key.is_empty() => Ok((*one).clone()),
            [] | [_] => Err(ApiError::not_found(format!("network {key} not found"))),
            many => Err(ApiError::bad_request(format!(
                "network {key} is ambiguous ({} matches found based on ID prefix)",
                many.len()
            ))),
        }
    }

    /// The running containers with an endpoint on `net_id`.
    pub fn network_containers(&self, net_id: &str) -> Vec<(Record, String)> {
        let mut out = Vec::new();
        for r in self.list() {
            for (name, ep) in &r.endpoints {
                if r.running() && ep.network_id == net_id && !ep.endpoint_id.is_empty() {
                    out.push((r.clone(), name.clone()));
                }
            }
        }
        out
    }

    fn in_use_subnets(&self, except: Option<&str>) -> Vec<ipnet::IpNet> {
        self.net()
            .nets
            .values()
            .filter(|n| Some(n.id.as_str()) != except)
            .flat_map(|n| n.subnets())
            .collect()
    }

    fn allocators_for(n: &Network) -> ApiResult<Vec<Allocator>> {
        n.ipam
            .iter()
            .map(|c| {
                let subnet = ipam::parse_subnet(&c.subnet).map_err(ipam_error)?;
                let gateway = Network::gateway_of(c);
                let range = if c.ip_range.is_empty() {
                    None
                } else {
                    Some(ipam::parse_subnet(&c.ip_range).map_err(ipam_error)?)
                };
                let mut a = Allocator::new(subnet, gateway, range).map_err(ipam_error)?;
                // Auxiliary addresses are never handed out.
                for ip in c.aux.values().filter_map(|ip| ip.parse().ok()) {
                    let _ = a.reserve(ip);
                }
                Ok(a)
            })
            .collect()
    }

    /// Makes (or finds) the bridge of `n` with its gateway addresses, and the sysctls it
    /// needs: forwarding, and route_localnet for published ports on 127.0.0.1.
    async fn bridge_up(&self, n: &Network) -> ApiResult<u32> {
        let host = self.host_netlink()?;
        let index = host
            .ensure_bridge(&n.bridge, n.mtu)
            .await
            .map_err(internal)?;
        for c in &n.ipam {
            let (Ok(net), Some(gw)) = (c.subnet.parse::<ipnet::IpNet>(), Network::gateway_of(c))
            else {
                continue;
            };
            host.add_address(index, gw, net.prefix_len())
                .await
                .map_err(internal)?;
        }
        let _ = netns::sysctl("net/ipv4/ip_forward", "1");
        let _ = netns::sysctl(&format!("net/ipv4/conf/{}/route_localnet", n.bridge), "1");
        if n.enable_ipv6 {
            let _ = netns::sysctl(&format!("net/ipv6/conf/{}/disable_ipv6", n.bridge), "0");
            let _ = netns::sysctl("net/ipv6/conf/all/forwarding", "1");
        }
        Ok(index)
    }

    /// Loads the networks, makes the predefined ones, rebuilds the address pools from the
    /// records of running containers and brings the bridges up (at berthd start).
    pub async fn networks_init(&self) {
        let mut nets = super::load_all(&self.network_dir());
        for (name, driver) in [("bridge", "bridge"), ("host", "host"), ("none", "null")] {
            if nets.iter().any(|n| n.name == name) {
                continue;
            }
            let mut n = Network {
                id: crate::container::new_id(),
                name: name.into(),
                created: crate::now(),
                driver: driver.into(),
                internal: false,
                attachable: false,
                enable_ipv6: false,
                labels: BTreeMap::new(),
                options: BTreeMap::new(),
                ipam_options: BTreeMap::new(),
                ipam: Vec::new(),
                bridge: String::new(),
                mtu: None,
            };
            let mut _lock = None;
            if name == "bridge" {
                n.bridge = self.config.bridge.clone();
                match &self.config.bip {
                    // --bip: the gateway's address with the subnet's length.
                    Some(bip) => match bip.parse::<ipnet::IpNet>() {
                        Ok(net) => n.ipam.push(IpamConf {
                            subnet: net.trunc().to_string(),
                            gateway: net.addr().to_string(),
                            ip_range: String::new(),
                            ..Default::default()
                        }),
                        Err(e) => {
                            tracing::warn!(bip = %bip, error = %e, "invalid --bip");
                            continue;
                        }
                    },
                    None => {
                        _lock = ipam::pool_lock().ok();
                        let in_use: Vec<ipnet::IpNet> =
                            nets.iter().flat_map(|n| n.subnets()).collect();
                        let routes = ipam::host_routes();
                        match ipam::pick_subnet(&ipam::default_pools(), &in_use, &routes) {
                            Ok(subnet) => n.ipam.push(IpamConf {
                                subnet: subnet.to_string(),
                                gateway: String::new(),
                                ip_range: String::new(),
                                ..Default::default()
                            }),
                            Err(e) => {
                                tracing::warn!(error = %e, "no subnet for the default bridge");
                                continue;
                            }
                        }
                    }
                }
                for (k, v) in [
                    ("com.docker.network.bridge.default_bridge", "true"),
                    ("com.docker.network.bridge.enable_icc", "true"),
                    ("com.docker.network.bridge.enable_ip_masquerade", "true"),
                    ("com.docker.network.bridge.host_binding_ipv4", "0.0.0.0"),
                    ("com.docker.network.bridge.name", &self.config.bridge),
                    ("com.docker.network.driver.mtu", "1500"),
                ] {
                    n.options.insert(k.into(), v.to_string());
                }
                // Made while the pool is locked, so the next daemon sees its route.
                if let Err(e) = self.bridge_up(&n).await {
                    tracing::warn!(error = %e, "bring the default bridge up");
                }
            }
            if let Err(e) = self.save_network(&n) {
                tracing::warn!(error = %e, network = name, "save predefined network");
            }
            nets.push(n);
        }
        let records = self.list();
        {
            let mut st = self.net();
            for n in &nets {
                match Self::allocators_for(n) {
                    Ok(mut allocs) => {
                        for r in records.iter().filter(|r| r.running()) {
                            for ep in r.endpoints.values().filter(|e| e.network_id == n.id) {
                                for ip in [ep.ip, ep.ip6].into_iter().flatten() {
                                    if let Some(a) =
                                        allocs.iter_mut().find(|a| a.subnet().contains(&ip))
                                    {
                                        let _ = a.reserve(ip);
                                    }
                                }
                            }
                        }
                        st.allocators.insert(n.id.clone(), allocs);
                    }
                    Err(e) => tracing::warn!(network = %n.name, error = %e, "address pool"),
                }
                st.nets.insert(n.id.clone(), n.clone());
            }
        }
        for n in nets.iter().filter(|n| n.is_bridge()) {
            if let Err(e) = self.bridge_up(n).await {
                tracing::warn!(network = %n.name, error = %e, "bring the bridge up");
            }
        }
    }

    /// After reconcile: DNS servers for running containers again, the namespaces, links and
    /// addresses of containers that no longer run removed, the firewall table rebuilt.
    pub async fn networks_restore(self: &Arc<Self>) {
        let mut live = BTreeSet::new();
        for r in self.list() {
            if r.running() && !r.sandbox.is_empty() {
                live.insert(PathBuf::from(&r.sandbox));
                self.start_dns(&r);
            } else if !r.sandbox.is_empty() || r.endpoints.values().any(|e| !e.veth.is_empty()) {
                self.endpoints_down(&r.id).await;
            }
        }
        for ns in netns::list(&self.config.exec_root.join("netns")) {
            if !live.contains(&ns) {
                let _ = netns::remove(&ns);
            }
        }
        if let Err(e) = self.firewall_sync().await {
            tracing::warn!(error = %e, "restore the firewall table");
        }
    }

    /// Replaces berth's nftables table with the rules of the networks and published ports.
    pub async fn firewall_sync(&self) -> ApiResult<()> {
        let _op = self.net_op.lock().await;
        let mut rs = Ruleset::default();
        for n in self.networks().iter().filter(|n| n.is_bridge()) {
            rs.bridges.push(BridgeRules {
                bridge: n.bridge.clone(),
                subnets: n.subnets(),
                internal: n.internal,
                masquerade: n.masquerade(),
                icc: n.icc(),
            });
        }
        // Published while starting, cleared at exit.
        for r in self.list() {
            for p in &r.published {
                let host_ip = p.host_ip.parse::<IpAddr>().ok();
                rs.ports.push(PortMap {
                    proto: Proto::parse(&p.proto).unwrap_or(Proto::Tcp),
                    host_ip,
                    host_port: p.host_port,
                    ctr_ip: p.ctr_ip,
                    ctr_port: p.ctr_port,
                });
            }
        }
        self.config
            .firewall
            .apply(&self.config.nft_table, &rs)
            .await
            .map_err(internal)
    }

    // ---- networks ------------------------------------------------------------------------

    /// `POST /networks/create`.
    pub async fn network_create(&self, req: CreateRequest) -> ApiResult<Network> {
        if req.name.is_empty() {
            return Err(ApiError::bad_request("network name cannot be empty"));
        }
        let driver = if req.driver.is_empty() {
            "bridge".to_string()
        } else {
            req.driver.clone()
        };
        match driver.as_str() {
            "bridge" => {}
            "host" | "null" => {
                return Err(forbidden(format!(
                    "only one instance of \"{driver}\" network is allowed"
                )))
            }
            other => return Err(ApiError::not_found(format!("plugin \"{other}\" not found"))),
        }
        if !req.ipam_driver.is_empty() && req.ipam_driver != "default" {
            return Err(ApiError::not_found(format!(
                "plugin \"{}\" not found",
                req.ipam_driver
            )));
        }
        if self.net().nets.values().any(|n| n.name == req.name) {
            return Err(ApiError::conflict(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        let mtu = match req.options.get("com.docker.network.driver.mtu") {
            Some(m) => Some(
                m.parse::<u32>()
                    .ok()
                    .filter(|m| *m >= 68)
                    .ok_or_else(|| ApiError::bad_request(format!("invalid MTU number: {m}")))?,
            ),
            None => None,
        };
        for key in [
            "com.docker.network.bridge.enable_icc",
            "com.docker.network.bridge.enable_ip_masquerade",
        ] {
            if let Some(v) = req.options.get(key) {
                if v.parse::<bool>().is_err() {
                    return Err(ApiError::bad_request(format!(
                        "failed to parse {key} value: {v}"
                    )));
                }
            }
        }
        let id = crate::container::new_id();
        let bridge = match req.options.get("com.docker.network.bridge.name") {
            Some(b) => {
                if b.is_empty() || b.len() > 15 || b.contains('/') || b.contains(' ') {
                    return Err(ApiError::bad_request(format!("invalid bridge name: {b}")));
                }
                if self.net().nets.values().any(|n| &n.bridge == b) {
                    return Err(forbidden(format!(
                        "cannot create network {id} ({b}): conflicts with network that has the same bridge name"
                    )));
                }
                b.clone()
            }
            None => format!("berth{}", &id[..10]),
        };
        // Subnets: as given (not overlapping another network), else one from the default
        // pool that overlaps neither another network nor a route of the host.
        let mut ipam_conf: Vec<IpamConf> = Vec::new();
        // Held until the bridge (and its route) exists.
        let _lock = ipam::pool_lock().map_err(internal)?;
        let in_use = self.in_use_subnets(None);
        for c in &req.ipam {
            if c.subnet.is_empty() {
                if !c.ip_range.is_empty() || !c.gateway.is_empty() {
                    return Err(ApiError::bad_request(
                        "ip-range and gateway need a subnet (--subnet)",
                    ));
                }
                continue;
            }
            let net = ipam::parse_subnet(&c.subnet).map_err(ipam_error)?;
            ipam::check_subnet(&net, &in_use).map_err(ipam_error)?;
            if ipam_conf
                .iter()
                .filter_map(|o| o.subnet.parse::<ipnet::IpNet>().ok())
                .any(|o| o.contains(&net.network()) || net.contains(&o.network()))
            {
                return Err(ipam_error(IpamError::Overlap));
            }
            if net.network().is_ipv6() && !req.enable_ipv6 {
                return Err(forbidden(
                    "non-IPv6 network must not have an IPv6 subnet (use --ipv6)",
                ));
            }
            for (name, ip) in &c.aux {
                let ok = ip
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| net.contains(&a));
                if !ok {
                    return Err(ApiError::bad_request(format!(
                        "invalid auxiliary address {name}: {ip} is not in {net}"
                    )));
                }
            }
            ipam_conf.push(IpamConf {
                subnet: net.to_string(),
                gateway: c.gateway.clone(),
                ip_range: c.ip_range.clone(),
                aux: c.aux.clone(),
            });
        }
        if !ipam_conf.iter().any(|c| {
            c.subnet
                .parse::<ipnet::IpNet>()
                .is_ok_and(|n| n.network().is_ipv4())
        }) {
            let subnet = ipam::pick_subnet(&ipam::default_pools(), &in_use, &ipam::host_routes())
                .map_err(|_| {
                    ApiError::bad_request(
                        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network",
                    )
                })?;
            let gateway = ipam::Allocator::new(subnet, None, None)
                .map(|a| a.gateway().to_string())
                .unwrap_or_default();
            ipam_conf.insert(
                0,
                IpamConf {
                    subnet: subnet.to_string(),
                    gateway,
                    ip_range: String::new(),
                    ..Default::default()
                },
            );
        }
        if req.enable_ipv6
            && !ipam_conf.iter().any(|c| {
                c.subnet
                    .parse::<ipnet::IpNet>()
                    .is_ok_and(|n| n.network().is_ipv6())
            })
        {
            return Err(ApiError::bad_request(
                "could not find an available, non-overlapping IPv6 address pool among the defaults to assign to the network (give --subnet with --ipv6)",
            ));
        }
        let n = Network {
            id: id.clone(),
            name: req.name.clone(),
            created: crate::now(),
            driver,
            internal: req.internal,
            attachable: req.attachable,
            enable_ipv6: req.enable_ipv6,
            labels: req.labels,
            options: req.options,
            ipam_options: req.ipam_options,
            ipam: ipam_conf,
            bridge,
            mtu,
        };
        let allocs = Self::allocators_for(&n)?;
        // The bridge first: a network on record always has its interface.
        if let Err(e) = self.bridge_up(&n).await {
            let _ = self.host_netlink()?.delete(&n.bridge).await;
            return Err(e);
        }
        if let Err(e) = self.save_network(&n) {
            let _ = self.host_netlink()?.delete(&n.bridge).await;
            return Err(e);
        }
        {
            let mut st = self.net();
            st.allocators.insert(n.id.clone(), allocs);
            st.nets.insert(n.id.clone(), n.clone());
        }
        if let Err(e) = self.firewall_sync().await {
            tracing::warn!(error = %e, "firewall after network create");
        }
        self.emit_network(&n, "create", None);
        Ok(n)
    }

    /// `DELETE /networks/{id}`.
    pub async fn network_remove(&self, key: &str) -> ApiResult<()> {
        let n = self.network_find(key)?;
        if n.is_predefined() {
            return Err(forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        if !self.network_containers(&n.id).is_empty() {
            return Err(forbidden(format!(
                "error while removing network: network {} id {} has active endpoints",
                n.name, n.id
            )));
        }
        if n.is_bridge() {
            self.host_netlink()?
                .delete(&n.bridge)
                .await
                .map_err(internal)?;
        }
        match std::fs::remove_file(self.network_dir().join(format!("{}.json", n.id))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(internal(e)),
            _ => {}
        }
        {
            let mut st = self.net();
            st.nets.remove(&n.id);
            st.allocators.remove(&n.id);
        }
        if let Err(e) = self.firewall_sync().await {
            tracing::warn!(error = %e, "firewall after network remove");
        }
        self.emit_network(&n, "destroy", None);
        Ok(())
    }

    /// `network connect`: records the endpoint; a running container gets it at once.
    pub async fn network_connect(
        self: &Arc<Self>,
        key: &str,
        container: &str,
        config: &Value,
    ) -> ApiResult<()> {
        let n = self.network_find(key)?;
        let rec = self.find(container)?;
        let mode = rec.host_config["NetworkMode"].as_str().unwrap_or_default();
        if !n.is_bridge()
            || mode == "host"
            || crate::container::options::container_ref(mode).is_some()
        {
            return Err(forbidden(
                "container sharing network namespace with another container or host cannot be connected to any other network",
            ));
        }
        if mode == "none" {
            return Err(forbidden(
                "container cannot be disconnected from host network or connected to host network",
            ));
        }
        if rec.endpoints.values().any(|e| e.network_id == n.id) {
            return Err(forbidden(format!(
                "endpoint with name {} already exists in network {}",
                rec.name.trim_start_matches('/'),
                n.name
            )));
        }
        let ep = endpoint_config(&n, config)?;
        self.update(&rec.id, |r| {
            r.endpoints.insert(n.name.clone(), ep.clone());
        })?;
        if rec.running() && !rec.sandbox.is_empty() {
            if let Err(e) = self.endpoint_attach(&rec.id, &n.name).await {
                let _ = self.update(&rec.id, |r| {
                    r.endpoints.remove(&n.name);
                });
                return Err(e);
            }
            // Its address, durable (the pool is rebuilt from records after a crash).
            let now = self.update(&rec.id, |_| {})?;
            // Its first user network: the embedded DNS from now on (refresh_hosts rewrites
            // resolv.conf to it).
            if !self.net().dns.contains_key(&rec.id) {
                self.start_dns(&now);
            }
            self.refresh_hosts(&rec.id);
            self.emit_network(&n, "connect", Some(&rec.id));
        }
        Ok(())
    }

    /// `network disconnect`.
    pub async fn network_disconnect(
        &self,
        key: &str,
        container: &str,
        _force: bool,
    ) -> ApiResult<()> {
        let n = self.network_find(key)?;
        let rec = self.find(container)?;
        let Some((name, ep)) = rec
            .endpoints
            .iter()
            .find(|(_, e)| e.network_id == n.id)
            .map(|(k, e)| (k.clone(), e.clone()))
        else {
            return Err(ApiError::internal(format!(
                "container {} is not connected to network {}",
                rec.id, n.name
            )));
        };
        let running = !ep.veth.is_empty();
        if running {
            self.endpoint_detach(&rec.id, &name, false).await;
        }
        self.update(&rec.id, |r| {
            r.endpoints.remove(&name);
            r.published
                .retain(|p| Some(p.ctr_ip) != ep.ip && Some(p.ctr_ip) != ep.ip6);
        })?;
        if running {
            self.refresh_hosts(&rec.id);
            if let Err(e) = self.firewall_sync().await {
                tracing::warn!(error = %e, "firewall after disconnect");
            }
            self.emit_network(&n, "disconnect", Some(&rec.id));
        }
        Ok(())
    }

    /// Docker's network events.
    fn emit_network(&self, n: &Network, action: &str, container: Option<&str>) {
        let mut attributes = BTreeMap::new();
        attributes.insert("name".to_string(), n.name.clone());
        attributes.insert("type".to_string(), n.driver.clone());
        if let Some(c) = container {
            attributes.insert("container".to_string(), c.to_string());
        }
        self.events.publish(crate::events::Message::new(
            "network",
            action,
            crate::events::Actor {
                id: n.id.clone(),
                attributes,
            },
        ));
    }

    // ---- endpoints -----------------------------------------------------------------------

    /// At start: the container's namespace with an interface on each of its networks, its
    /// published ports and its DNS server. Returns the namespace to join (`None` for the
    /// host's, none, or another container's).
    pub(crate) async fn endpoints_up(self: &Arc<Self>, rec: &Record) -> ApiResult<Option<PathBuf>> {
        let mode = rec.host_config["NetworkMode"].as_str().unwrap_or_default();
        if mode_network(mode).is_none() {
            return Ok(None);
        }
        // Every network must still exist.
        for (name, ep) in &rec.endpoints {
            let found = self
                .network_find(&ep.network_id)
                .or_else(|_| self.network_find(name));
            if found.is_err() {
                return Err(ApiError::not_found(format!("network {name} not found")));
            }
        }
        // --link on the default bridge: to running containers on it, as dockerd checks.
        if rec.endpoints.contains_key("bridge") {
            for link in strs(&rec.host_config["Links"]) {
                let (target, alias) = split_link(&link);
                let other = self.find(target)?;
                if !other.running() {
                    return Err(ApiError::bad_request(format!(
                        "Cannot link to a non running container: {} AS {}/{alias}",
                        other.name, rec.name
                    )));
                }
                if !other.endpoints.contains_key("bridge") {
                    return Err(ApiError::bad_request(format!(
                        "Cannot link to {}, as it does not belong to the default network",
                        other.name
                    )));
                }
            }
        }
        let sandbox = self.sandbox_path(&rec.id);
        netns::create(&sandbox).map_err(|e| internal(format!("create network namespace: {e}")))?;
        self.update(&rec.id, |r| {
            r.sandbox = sandbox.to_string_lossy().into_owned()
        })?;
        let result = async {
            for name in ordered(rec) {
                self.endpoint_attach(&rec.id, &name).await?;
            }
            self.publish_ports(&rec.id).await
        }
        .await;
        if let Err(e) = result {
            self.endpoints_down(&rec.id).await;
            return Err(e);
        }
        let rec = self.find(&rec.id)?;
        self.start_dns(&rec);
        for ep in rec.endpoints.values() {
            if let Ok(n) = self.network_find(&ep.network_id) {
                self.emit_network(&n, "connect", Some(&rec.id));
            }
        }
        Ok(Some(sandbox))
    }

    /// Brings up the endpoint of `id` on the network it knows as `name`, in its namespace.
    async fn endpoint_attach(&self, id: &str, name: &str) -> ApiResult<()> {
        let rec = self.find(id)?;
        let Some(ep) = rec.endpoints.get(name).cloned() else {
            return Ok(());
        };
        let n = self
            .network_find(&ep.network_id)
            .or_else(|_| self.network_find(name))
            .map_err(|_| ApiError::not_found(format!("network {name} not found")))?;
        let sandbox = PathBuf::from(&rec.sandbox);
        // Addresses.
        let (ip4, ip6) = {
            let mut st = self.net();
            let allocs = st
                .allocators
                .get_mut(&n.id)
                .ok_or_else(|| internal(format!("no address pool for network {}", n.name)))?;
            let want4 = ep.ipv4_config.parse::<IpAddr>().ok();
            let want6 = ep.ipv6_config.parse::<IpAddr>().ok();
            let mut got4 = None;
            let mut got6 = None;
            let mut err = None;
            for a in allocs.iter_mut() {
                let v4 = a.subnet().network().is_ipv4();
                let want = if v4 { want4 } else { want6 };
                if want.is_some_and(|w| !a.subnet().contains(&w)) {
                    continue;
                }
                if (v4 && got4.is_some()) || (!v4 && (got6.is_some() || !n.enable_ipv6)) {
                    continue;
                }
                match a.allocate(want) {
                    Ok(ip) if v4 => got4 = Some((ip, a.subnet().prefix_len(), a.gateway())),
                    Ok(ip) => got6 = Some((ip, a.subnet().prefix_len(), a.gateway())),
                    Err(e) => err = Some(e),
                }
            }
            let release = |allocs: &mut Vec<Allocator>, got: Option<(IpAddr, u8, IpAddr)>| {
                if let Some((ip, _, _)) = got {
                    release_in(allocs, ip);
                }
            };
            let bad_static =
                |w: Option<IpAddr>, got: Option<(IpAddr, u8, IpAddr)>| w.is_some() && got.is_none();
            if let Some(e) = err.filter(|_| got4.is_none()) {
                release(allocs, got6);
                return Err(match e {
                    IpamError::InUse => forbidden("Address already in use"),
                    other => ipam_error(other),
                });
            }
            if bad_static(want4, got4) || bad_static(want6, got6) {
                release(allocs, got4);
                release(allocs, got6);
                let w = if bad_static(want4, got4) {
                    want4
                } else {
                    want6
                };
                return Err(ApiError::bad_request(format!(
                    "Invalid address {}: It does not belong to any of this network's subnets",
                    w.map(|w| w.to_string()).unwrap_or_default()
                )));
            }
            (got4, got6)
        };
        let endpoint_id = crate::container::new_id();
        let veth = format!("vb{}", &endpoint_id[..12]);
        let link_local = ep.link_local.clone();
        let mac = if ep.mac_config.is_empty() {
            super::mac_for(ip4.map(|x| x.0))
        } else {
            ep.mac_config.clone()
        };
        let ifname = {
            let used: BTreeSet<String> = rec
                .endpoints
                .values()
                .map(|e| e.ifname.clone())
                .filter(|i| !i.is_empty())
                .collect();
            (0..)
                .map(|i| format!("eth{i}"))
                .find(|n| !used.contains(n))
                .unwrap_or_default()
        };
        // Only the first network with a gateway gives the default route (not internal ones).
        let has_route = rec
            .endpoints
            .values()
            .any(|e| e.gateway.is_some() || e.gateway6.is_some());
        let gateways: Vec<IpAddr> = if n.internal || has_route {
            Vec::new()
        } else {
            [ip4.map(|x| x.2), ip6.map(|x| x.2)]
                .into_iter()
                .flatten()
                .collect()
        };
        // Noted before the links are made (durable with the container's running state; after a
        // crash the namespace, and the veth in it, are found by name and removed).
        self.update_live(id, |r| {
            if let Some(e) = r.endpoints.get_mut(name) {
                e.network_id = n.id.clone();
                e.endpoint_id = endpoint_id.clone();
                e.ip = ip4.map(|x| x.0);
                e.prefix = ip4.map(|x| x.1).unwrap_or(0);
                e.gateway = gateways.iter().find(|g| g.is_ipv4()).copied();
                e.ip6 = ip6.map(|x| x.0);
                e.prefix6 = ip6.map(|x| x.1).unwrap_or(0);
                e.gateway6 = gateways.iter().find(|g| g.is_ipv6()).copied();
                e.mac = mac.clone();
                e.veth = veth.clone();
                e.ifname = ifname.clone();
            }
        })?;
        let plumbing = async {
            let host = self.host_netlink()?;
            // Made with its network; remade only if someone deleted it.
            let bridge = match host.index(&n.bridge).await.map_err(internal)? {
                Some(i) => i,
                None => self.bridge_up(&n).await?,
            };
            // The container's end is made in its namespace under its final name.
            host.add_veth(
                &veth,
                &ifname,
                bridge,
                n.mtu,
                super::parse_mac(&mac),
                &sandbox,
            )
            .await
            .map_err(internal)?;
            let inner = Netlink::in_namespace(&sandbox).map_err(internal)?;
            let mut ips: Vec<(IpAddr, u8)> = [ip4, ip6]
                .into_iter()
                .flatten()
                .map(|x| (x.0, x.1))
                .collect();
            // Link-local addresses asked for, in their scope's prefix.
            for l in &link_local {
                if let Ok(ip) = l.parse::<IpAddr>() {
                    ips.push((ip, if ip.is_ipv4() { 16 } else { 64 }));
                }
            }
            inner
                .configure_endpoint(&ifname, &ifname, None, &ips, &gateways)
                .await
                .map_err(internal)?;
            Ok::<_, ApiError>(())
        };
        if let Err(e) = plumbing.await {
            self.endpoint_detach(id, name, false).await;
            return Err(e);
        }
        Ok(())
    }

    /// Takes the endpoint of `id` on `name` down: its veth pair (unless `with_namespace`: the
    /// kernel deletes it with the namespace, without a wait here), its addresses back to the
    /// pool.
    async fn endpoint_detach(&self, id: &str, name: &str, with_namespace: bool) {
        let Ok(rec) = self.find(id) else { return };
        let Some(ep) = rec.endpoints.get(name).cloned() else {
            return;
        };
        if !ep.veth.is_empty() && !with_namespace {
            if let Ok(host) = self.host_netlink() {
                if let Err(e) = host.delete(&ep.veth).await {
                    tracing::warn!(container_id = %id, error = %e, "delete veth");
                }
            }
        }
        {
            let mut st = self.net();
            if let Some(allocs) = st.allocators.get_mut(&ep.network_id) {
                for ip in [ep.ip, ep.ip6].into_iter().flatten() {
                    release_in(allocs, ip);
                }
            }
        }
        let _ = self.update_live(id, |r| {
            if let Some(e) = r.endpoints.get_mut(name) {
                e.clear_runtime();
            }
        });
    }

    /// At exit or removal: the DNS server, the endpoints, the published ports and the
    /// namespace go.
    pub(crate) async fn endpoints_down(&self, id: &str) {
        let _serial = self.endpoints_op.lock().await;
        let dns = self.net().dns.remove(id);
        if let Some(d) = dns {
            d.stop();
        }
        let Ok(rec) = self.find(id) else { return };
        let had_ports = !rec.published.is_empty();
        let mut events = Vec::new();
        for (name, ep) in &rec.endpoints {
            if !ep.veth.is_empty() || !ep.endpoint_id.is_empty() {
                events.push(ep.network_id.clone());
                self.endpoint_detach(id, name, !rec.sandbox.is_empty())
                    .await;
            }
        }
        if !rec.sandbox.is_empty() {
            if let Err(e) = netns::remove(Path::new(&rec.sandbox)) {
                tracing::warn!(container_id = %id, error = %e, "remove network namespace");
            }
        }
        let _ = self.update_live(id, |r| {
            r.sandbox.clear();
            r.published.clear();
        });
        if had_ports {
            if let Err(e) = self.firewall_sync().await {
                tracing::warn!(error = %e, "firewall after container exit");
            }
        }
        for net in events {
            if let Ok(n) = self.network_find(&net) {
                self.emit_network(&n, "disconnect", Some(id));
            }
        }
    }

    /// Chooses host ports for the container's bindings and adds them to the firewall.
    async fn publish_ports(&self, id: &str) -> ApiResult<()> {
        let rec = self.find(id)?;
        let bindings =
            super::parse_bindings(&rec.host_config, &rec.config).map_err(ApiError::bad_request)?;
        if bindings.is_empty() {
            return Ok(());
        }
        // To the address on the first network that reaches beyond its bridge.
        let target = ordered(&rec).into_iter().find_map(|name| {
            let ep = rec.endpoints.get(&name)?;
            let n = self.network_find(&ep.network_id).ok()?;
            (!n.internal).then_some((ep.ip, ep.ip6))
        });
        let Some((ip4, ip6)) = target else {
            return Ok(());
        };
        let taken: Vec<Published> = self
            .list()
            .into_iter()
            .filter(|r| r.id != rec.id && r.running())
            .flat_map(|r| r.published)
            .collect();
        let mut mine: Vec<Published> = Vec::new();
        for b in &bindings {
            let host_ip: Option<IpAddr> = b.host_ip.parse().ok();
            let ctr_ip = match host_ip {
                Some(IpAddr::V6(_)) => ip6,
                _ => ip4,
            };
            let Some(ctr_ip) = ctr_ip else { continue };
            let port = choose_port(b, &taken, &mine).map_err(|m| {
                ApiError::internal(format!(
                    "driver failed programming external connectivity on endpoint {} ({}): {m}",
                    rec.name.trim_start_matches('/'),
                    rec.endpoints
                        .values()
                        .next()
                        .map(|e| e.endpoint_id.clone())
                        .unwrap_or_default()
                ))
            })?;
            mine.push(Published {
                proto: b.proto.as_str().into(),
                host_ip: b.host_ip.clone(),
                host_port: port,
                ctr_port: b.ctr_port,
                ctr_ip,
            });
        }
        self.update_live(id, |r| r.published = mine)?;
        self.firewall_sync().await
    }

    /// The embedded DNS server of a container on a user network.
    fn start_dns(self: &Arc<Self>, rec: &Record) {
        if rec.sandbox.is_empty() || !self.uses_embedded_dns(rec) {
            return;
        }
        let names = Arc::new(ContainerNames {
            engine: Arc::downgrade(self),
            id: rec.id.clone(),
        });
        match DnsServer::start(Path::new(&rec.sandbox), names) {
            Ok(s) => {
                self.net().dns.insert(rec.id.clone(), s);
            }
            Err(e) => tracing::warn!(container_id = %rec.id, error = %e, "embedded DNS"),
        }
    }

    /// Whether the container is on a user-defined network (its resolver is then 127.0.0.11).
    pub(crate) fn uses_embedded_dns(&self, rec: &Record) -> bool {
        rec.endpoints.iter().any(|(name, ep)| {
            self.network_find(&ep.network_id)
                .or_else(|_| self.network_find(name))
                .is_ok_and(|n| !n.is_default_bridge())
        })
    }

    /// Rewrites /etc/hosts of a running container after a connect or disconnect.
    fn refresh_hosts(&self, id: &str) {
        if let Ok(rec) = self.find(id) {
            if let Err(e) = self.write_net_files(&rec) {
                tracing::warn!(container_id = %id, error = %e, "rewrite hosts");
            }
        }
    }

    /// The hosts and resolv.conf of a container with endpoints: its addresses, `--link`s on
    /// the default bridge, `--add-host`s; the embedded resolver on user networks.
    pub(crate) fn write_net_files(&self, rec: &Record) -> ApiResult<()> {
        let dir = self.container_dir(&rec.id);
        // Its addresses on each network, with its aliases there.
        let mut addresses: Vec<(IpAddr, &[String])> = Vec::new();
        for name in ordered(rec) {
            let ep = &rec.endpoints[&name];
            for ip in [ep.ip, ep.ip6].into_iter().flatten() {
                addresses.push((ip, &ep.aliases));
            }
        }
        // --link on the default bridge: the target's address under the alias, its id and name.
        let mut links = Vec::new();
        for (alias, other, ip) in self.linked(rec) {
            let oname = other.name.trim_start_matches('/');
            links.push(if alias == oname {
                format!("{ip}\t{alias} {}", other.short_id())
            } else {
                format!("{ip}\t{alias} {} {oname}", other.short_id())
            });
        }
        let hosts = crate::container::hosts_file(rec, &addresses, &links);
        std::fs::write(dir.join("hosts"), hosts)?;
        if self.uses_embedded_dns(rec) {
            let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let search = strs(&rec.host_config["DnsSearch"]);
            let mut out = String::new();
            let searches: Vec<String> = if search.is_empty() {
                host.lines()
                    .filter_map(|l| l.trim().strip_prefix("search "))
                    .flat_map(|s| s.split_whitespace().map(str::to_string))
                    .collect()
            } else {
                search.into_iter().filter(|s| s != ".").collect()
            };
            if !searches.is_empty() {
                out.push_str(&format!("search {}\n", searches.join(" ")));
            }
            out.push_str("nameserver 127.0.0.11\n");
            let mut opts = vec!["ndots:0".to_string()];
            for o in strs(&rec.host_config["DnsOptions"]) {
                if o.starts_with("ndots:") {
                    opts.retain(|x| !x.starts_with("ndots:"));
                }
                opts.push(o);
            }
            out.push_str(&format!("options {}\n", opts.join(" ")));
            std::fs::write(dir.join("resolv.conf"), out)?;
        }
        Ok(())
    }
}

/// `NetworkSettings.Ports`: every exposed or published port, with its host bindings.
pub fn ports_of(rec: &Record) -> BTreeMap<String, Value> {
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    if !rec.running() {
        return out;
    }
    if let Some(exposed) = rec.config["ExposedPorts"].as_object() {
        for k in exposed.keys() {
            let key = if k.contains('/') {
                k.clone()
            } else {
                format!("{k}/tcp")
            };
            out.insert(key, Value::Null);
        }
    }
    for p in &rec.published {
        let key = format!("{}/{}", p.ctr_port, p.proto);
        let entry = out.entry(key).or_insert(Value::Null);
        if entry.is_null() {
            *entry = Value::Array(Vec::new());
        }
        let host_ip = if p.host_ip.is_empty() {
            if p.ctr_ip.is_ipv4() { "0.0.0.0" } else { "::" }.to_string()
        } else {
            p.host_ip.clone()
        };
        if let Some(a) = entry.as_array_mut() {
            a.push(serde_json::json!({"HostIp": host_ip, "HostPort": p.host_port.to_string()}));
        }
    }
    out
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// Gives `ip` back to the pool of the subnet that holds it.
fn release_in(allocs: &mut [Allocator], ip: IpAddr) {
    if let Some(a) = allocs.iter_mut().find(|a| a.subnet().contains(&ip)) {
        a.release(ip);
    }
}

/// `name:alias` (or `name`) of `--link`, without leading slashes.
pub fn split_link(link: &str) -> (&str, &str) {
    let (t, a) = link.split_once(':').unwrap_or((link, link));
    let a = a.rsplit('/').next().unwrap_or(a);
    (t.trim_start_matches('/'), a)
}

/// A host port for `b`: the one asked for (free of other containers' and of the host's
/// listeners), or the first free one of its range or of the ephemeral range.
fn choose_port(b: &PortBinding, taken: &[Published], mine: &[Published]) -> Result<u16, String> {
    let clash = |port: u16| {
        taken.iter().chain(mine.iter()).any(|p| {
            p.proto == b.proto.as_str()
                && p.host_port == port
                && (p.host_ip.is_empty() || b.host_ip.is_empty() || p.host_ip == b.host_ip)
        })
    };
    let bind_ip: IpAddr = b
        .host_ip
        .parse()
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let free_on_host = |port: u16| -> std::io::Result<()> {
        let addr = SocketAddr::new(bind_ip, port);
        match b.proto {
            Proto::Udp => std::net::UdpSocket::bind(addr).map(|_| ()),
            _ => std::net::TcpListener::bind(addr).map(|_| ()),
        }
    };
    let shown = if b.host_ip.is_empty() {
        "0.0.0.0"
    } else {
        &b.host_ip
    };
    let (lo, hi) = b.host_ports;
    if lo != 0 && lo == hi {
        if clash(lo) {
            return Err(format!(
                "Bind for {shown}:{lo} failed: port is already allocated"
            ));
        }
        if let Err(e) = free_on_host(lo) {
            let fam = if bind_ip.is_ipv4() { "4" } else { "6" };
            return Err(format!(
                "Error starting userland proxy: listen {}{fam} {shown}:{lo}: bind: {}",
                b.proto.as_str(),
                crate::error::io_words(&e)
            ));
        }
        return Ok(lo);
    }
    let (lo, hi) = if lo == 0 { ephemeral_range() } else { (lo, hi) };
    (lo..=hi)
        .find(|p| !clash(*p) && free_on_host(*p).is_ok())
        .ok_or_else(|| format!("Bind for {shown}:{lo}-{hi} failed: port is already allocated"))
}

/// The kernel's ephemeral port range (where dockerd takes free ports from).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>());
            Some((it.next()?.ok()?, it.next()?.ok()?))
        })
        .unwrap_or((32768, 60999))
}

/// The endpoint of `config` (`EndpointsConfig[name]`, or `network connect`'s
/// `EndpointConfig`) on `n`, checked as dockerd does.
pub fn endpoint_config(n: &Network, config: &Value) -> ApiResult<Endpoint> {
    let aliases = strs(&config["Aliases"]);
    let links = strs(&config["Links"]);
    let ipv4 = config["IPAMConfig"]["IPv4Address"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let ipv6 = config["IPAMConfig"]["IPv6Address"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mac = config["MacAddress"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if n.is_default_bridge() || !n.is_bridge() {
        if !ipv4.is_empty() || !ipv6.is_empty() {
            return Err(ApiError::bad_request(
                "user specified IP address is supported on user defined networks only",
            ));
        }
        if !aliases.is_empty() {
            return Err(ApiError::bad_request(
                "network-scoped alias is supported only for containers in user defined networks",
            ));
        }
    }
    for (s, v6) in [(&ipv4, false), (&ipv6, true)] {
        if s.is_empty() {
            continue;
        }
        match s.parse::<IpAddr>() {
            Ok(ip) if ip.is_ipv6() == v6 => {}
            _ => {
                return Err(ApiError::bad_request(format!(
                    "invalid IPv{} address: {s}",
                    if v6 { 6 } else { 4 }
                )))
            }
        }
        let ip: IpAddr = s
            .parse()
            .map_err(|_| ApiError::bad_request("invalid address"))?;
        if !n.subnets().iter().any(|net| net.contains(&ip)) {
            return Err(ApiError::bad_request(format!(
                "Invalid address {s}: It does not belong to any of this network's subnets"
            )));
        }
    }
    if !mac.is_empty() && super::parse_mac(&mac).is_none() {
        return Err(ApiError::bad_request(format!("invalid MAC address: {mac}")));
    }
    let link_local = strs(&config["IPAMConfig"]["LinkLocalIPs"]);
    for l in &link_local {
        let ok = match l.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => a.is_link_local(),
            Ok(IpAddr::V6(a)) => (a.segments()[0] & 0xffc0) == 0xfe80,
            Err(_) => false,
        };
        if !ok {
            return Err(ApiError::bad_request(format!(
                "invalid link-local IP address: {l}"
            )));
        }
    }
    let driver_opts = config["DriverOpts"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    Ok(Endpoint {
        network_id: n.id.clone(),
        aliases,
        links,
        ipv4_config: ipv4,
        ipv6_config: ipv6,
        mac_config: mac,
        link_local,
        driver_opts,
        ..Default::default()
    })
}

/// What the embedded DNS of one container answers: the names of the running containers on
/// its user networks (their names, short ids and aliases), and its own `--link` aliases.
struct ContainerNames {
    engine: Weak<Engine>,
    id: String,
}

impl Names for ContainerNames {
    fn lookup(&self, name: &str) -> Option<Vec<IpAddr>> {
        let engine = self.engine.upgrade()?;
        let user_nets: BTreeSet<String> = engine
            .net()
            .nets
            .values()
            .filter(|n| n.is_bridge() && !n.is_default_bridge())
            .map(|n| n.id.clone())
            .collect();
        // Under the records' lock, without copying them: this runs at every query.
        engine.with_records(|map| {
            let me = map.get(&self.id)?;
            let my_links = strs(&me.host_config["Links"]);
            let mut found = false;
            let mut out = Vec::new();
            for (net_name, ep) in &me.endpoints {
                if !user_nets.contains(&ep.network_id) {
                    continue;
                }
                // `name.network` is the name on that network.
                let short = name
                    .strip_suffix(&format!(".{}", net_name.to_ascii_lowercase()))
                    .unwrap_or(name);
                let mut target = short;
                for link in ep.links.iter().chain(my_links.iter()) {
                    let (t, alias) = split_link(link);
                    if alias.eq_ignore_ascii_case(short) {
                        target = t;
                    }
                }
                for r in map.values().filter(|r| r.running()) {
                    let Some(other) = r.endpoints.values().find(|e| e.network_id == ep.network_id)
                    else {
                        continue;
                    };
                    let named = r.name.trim_start_matches('/').eq_ignore_ascii_case(target)
                        || r.short_id().eq_ignore_ascii_case(target)
                        || other.aliases.iter().any(|a| a.eq_ignore_ascii_case(target));
                    if !named {
                        continue;
                    }
                    for ip in [other.ip, other.ip6].into_iter().flatten() {
                        found = true;
                        if !out.contains(&ip) {
                            out.push(ip);
                        }
                    }
                }
            }
            found.then_some(out)
        })
    }

    fn reverse(&self, ip: IpAddr) -> Option<String> {
        let engine = self.engine.upgrade()?;
        // As lookup: under the records' lock, without copies.
        engine.with_records(|map| {
            let me = map.get(&self.id)?;
            for (net_name, ep) in &me.endpoints {
                let owner = map.values().filter(|r| r.running()).find(|r| {
                    r.endpoints.values().any(|o| {
                        o.network_id == ep.network_id && (o.ip == Some(ip) || o.ip6 == Some(ip))
                    })
                });
                if let Some(r) = owner {
                    return Some(format!("{}.{net_name}", r.name.trim_start_matches('/')));
                }
            }
            None
        })
    }

    fn upstreams(&self) -> Vec<SocketAddr> {
        let Some(engine) = self.engine.upgrade() else {
            return Vec::new();
        };
        let dns = engine
            .find(&self.id)
            .map(|r| strs(&r.host_config["Dns"]))
            .unwrap_or_default();
        if !dns.is_empty() {
            return dns
                .iter()
                .filter_map(|d| d.parse::<IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, 53))
                .collect();
        }
        berth_network::dns::upstreams_of(
            &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        )
    }
}
