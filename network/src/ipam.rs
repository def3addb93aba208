//! Address management: the subnet of a network (given, or picked from the default pools so
//! that it overlaps no other network and no route already on the host) and the addresses of
//! its endpoints (the gateway, static `--ip` requests, the next free one).
//!
//! Nothing here is stored: a network keeps its subnet, gateway and range in its own record,
//! and the addresses in use are those of its endpoints, so after a crash the allocator is
//! rebuilt from what exists and no address leaks.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};

/// IPAM errors, in dockerd's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("Pool overlaps with other one on this address space")]
    Overlap,
    #[error("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")]
    NoPool,
    #[error("invalid subnet {0}: it must be a network address with a prefix length")]
    InvalidSubnet(String),
    #[error("invalid ip-range {0}: it must be a network within the subnet {1}")]
    InvalidRange(String, String),
    #[error("invalid gateway {0}: it is not in the subnet {1}")]
    InvalidGateway(String, String),
    #[error("Address already in use")]
    InUse,
    #[error("no available IPv{0} addresses on this network's address pools")]
    Exhausted(u8),
    #[error("invalid address {0}: it is not in the network's subnet {1}")]
    OutOfSubnet(String, String),
}

/// Docker's default address pools: 172.17.0.0/16 to 172.31.0.0/16, then 192.168.0.0/16 cut
/// in /20s.
pub fn default_pools() -> Vec<(Ipv4Net, u8)> {
    let mut pools = Vec::new();
    for b in 17..=31u8 {
        if let Ok(n) = Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16) {
            pools.push((n, 16));
        }
    }
    if let Ok(n) = Ipv4Net::new(Ipv4Addr::new(192, 168, 0, 0), 16) {
        pools.push((n, 20));
    }
    pools
}

/// Parses a subnet (`10.1.0.0/24`), which must be the network address itself, as dockerd
/// requires.
pub fn parse_subnet(s: &str) -> Result<IpNet, IpamError> {
    let net: IpNet = s
        .trim()
        .parse()
        .map_err(|_| IpamError::InvalidSubnet(s.to_string()))?;
    if net.network() != net.addr() {
        return Err(IpamError::InvalidSubnet(s.to_string()));
    }
    Ok(net)
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first subnet of `pools` that overlaps none of `in_use` (other networks' subnets) and
/// none of `routes` (the host's routes, the default route excepted).
pub fn pick_subnet(
    pools: &[(Ipv4Net, u8)],
    in_use: &[IpNet],
    routes: &[IpNet],
) -> Result<IpNet, IpamError> {
    let taken: Vec<&IpNet> = in_use
        .iter()
        .chain(routes.iter().filter(|r| r.prefix_len() > 0))
        .collect();
    for (base, size) in pools {
        let Ok(candidates) = base.subnets(*size) else {
            continue;
        };
        for c in candidates {
            let c = IpNet::V4(c);
            if !taken.iter().any(|t| overlaps(t, &c)) {
                return Ok(c);
            }
        }
    }
    Err(IpamError::NoPool)
}

/// Checks a requested subnet against the other networks' subnets.
pub fn check_subnet(subnet: &IpNet, in_use: &[IpNet]) -> Result<(), IpamError> {
    if in_use.iter().any(|u| overlaps(u, subnet)) {
        return Err(IpamError::Overlap);
    }
    Ok(())
}

/// The host routes' destinations from `/proc/net/route` and `/proc/net/ipv6_route` texts.
pub fn parse_routes(v4: &str, v6: &str) -> Vec<IpNet> {
    let mut out = Vec::new();
    for line in v4.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Ok(dest), Ok(mask)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16))
        else {
            continue;
        };
        // The kernel prints the network-order words as native integers: their native bytes
        // are the address.
        let dest = Ipv4Addr::from(dest.to_ne_bytes());
        if let Ok(n) = Ipv4Net::new(dest, mask.count_ones() as u8) {
            out.push(IpNet::V4(n.trunc()));
        }
    }
    for line in v6.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 2 || f[0].len() != 32 {
            continue;
        }
        let (Ok(dest), Ok(len)) = (u128::from_str_radix(f[0], 16), u8::from_str_radix(f[1], 16))
        else {
            continue;
        };
        if let Ok(n) = ipnet::Ipv6Net::new(Ipv6Addr::from(dest), len) {
            out.push(IpNet::V6(n.trunc()));
        }
    }
    out
}

/// The host's routes now.
pub fn host_routes() -> Vec<IpNet> {
    let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    parse_routes(&v4, &v6)
}

/// The addresses of one subnet of a network.
#[derive(Debug, Clone)]
pub struct Allocator {
    subnet: IpNet,
    /// Where dynamic addresses come from (`--ip-range`; the subnet by default).
    range: IpNet,
    gateway: IpAddr,
    used: BTreeSet<IpAddr>,
    /// The last address handed out: the next search starts after it, so a released address
    /// is not reused at once (as dockerd).
    last: Option<IpAddr>,
}

impl Allocator {
    /// An allocator for `subnet` with `gateway` (its first host address by default) and
    /// `range`; the gateway counts as used.
    pub fn new(
        subnet: IpNet,
        gateway: Option<IpAddr>,
        range: Option<IpNet>,
    ) -> Result<Allocator, IpamError> {
        let range = match range {
            Some(r)
                if !(subnet.contains(&r.network()) && r.prefix_len() >= subnet.prefix_len()) =>
            {
                return Err(IpamError::InvalidRange(r.to_string(), subnet.to_string()))
            }
            Some(r) => r,
            None => subnet,
        };
        let gateway = match gateway {
            Some(g) if !subnet.contains(&g) => {
                return Err(IpamError::InvalidGateway(g.to_string(), subnet.to_string()))
            }
            Some(g) => g,
            None => first_host(&subnet).ok_or(IpamError::Exhausted(version(&subnet)))?,
        };
        let mut used = BTreeSet::new();
        used.insert(gateway);
        Ok(Allocator {
            subnet,
            range,
            gateway,
            used,
            last: None,
        })
    }

    pub fn subnet(&self) -> IpNet {
        self.subnet
    }

    pub fn gateway(&self) -> IpAddr {
        self.gateway
    }

    /// Marks an address as used (an existing endpoint, when the allocator is rebuilt).
    pub fn reserve(&mut self, ip: IpAddr) -> Result<(), IpamError> {
        if !self.usable(&self.subnet, ip) {
            return Err(IpamError::OutOfSubnet(
                ip.to_string(),
                self.subnet.to_string(),
            ));
        }
        if !self.used.insert(ip) {
            return Err(IpamError::InUse);
        }
        Ok(())
    }

    /// A static address when `requested`, else the next free one of the range.
    pub fn allocate(&mut self, requested: Option<IpAddr>) -> Result<IpAddr, IpamError> {
        if let Some(ip) = requested {
            self.reserve(ip)?;
            return Ok(ip);
        }
        let start = self.last.map(next).unwrap_or_else(|| self.range.network());
        let mut ip = start;
        loop {
            if !self.range.contains(&ip) {
                ip = self.range.network();
            }
            if self.usable(&self.range, ip) && !self.used.contains(&ip) {
                self.used.insert(ip);
                self.last = Some(ip);
                return Ok(ip);
            }
            ip = next(ip);
            if !self.range.contains(&ip) {
                ip = self.range.network();
            }
            if ip == start {
                return Err(IpamError::Exhausted(version(&self.subnet)));
            }
        }
    }

    /// Returns an address to the pool.
    pub fn release(&mut self, ip: IpAddr) {
        if ip != self.gateway {
            self.used.remove(&ip);
        }
    }

    /// Whether `ip` is in the subnet and neither its network nor (IPv4) its broadcast
    /// address.
    fn usable(&self, within: &IpNet, ip: IpAddr) -> bool {
        if !within.contains(&ip) || !self.subnet.contains(&ip) || ip == self.subnet.network() {
            return false;
        }
        match self.subnet {
            IpNet::V4(n) if n.prefix_len() < 31 => ip != IpAddr::V4(n.broadcast()),
            _ => true,
        }
    }
}

fn version(n: &IpNet) -> u8 {
    match n {
        IpNet::V4(_) => 4,
        IpNet::V6(_) => 6,
    }
}

fn next(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(1))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(1))),
    }
}

fn first_host(n: &IpNet) -> Option<IpAddr> {
    let ip = next(n.network());
    n.contains(&ip).then_some(ip)
}

/// A host-wide lock held while a subnet is chosen and its bridge made, so two daemons on one
/// host (or two test daemons) never take the same subnet; released when dropped.
pub fn pool_lock() -> std::io::Result<std::fs::File> {
    let dir = std::path::Path::new("/run/lock");
    std::fs::create_dir_all(dir)?;
    let f = std::fs::File::create(dir.join("berth-network.lock"))?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own; it is released when the file closes.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_pools_skip_networks_and_host_routes() {
        let pools = default_pools();
        assert_eq!(pick_subnet(&pools, &[], &[]).unwrap(), net("172.17.0.0/16"));
        // docker0 on 172.17 and a route on 172.18.5.0/24: the next free /16.
        let routes = [net("0.0.0.0/0"), net("172.17.0.0/16"), net("172.18.5.0/24")];
        assert_eq!(
            pick_subnet(&pools, &[], &routes).unwrap(),
            net("172.19.0.0/16")
        );
        let in_use = [net("172.19.0.0/16")];
        assert_eq!(
            pick_subnet(&pools, &in_use, &routes).unwrap(),
            net("172.20.0.0/16")
        );
        // All of 172.16/12 taken: 192.168.0.0/20, then the next /20.
        let wide = [net("172.16.0.0/12")];
        assert_eq!(
            pick_subnet(&pools, &wide, &[]).unwrap(),
            net("192.168.0.0/20")
        );
        let more = [net("172.16.0.0/12"), net("192.168.0.0/20")];
        assert_eq!(
            pick_subnet(&pools, &more, &[]).unwrap(),
            net("192.168.16.0/20")
        );
        let all = [net("172.16.0.0/12"), net("192.168.0.0/16")];
        assert_eq!(pick_subnet(&pools, &all, &[]), Err(IpamError::NoPool));
        assert_eq!(
            check_subnet(&net("10.1.2.0/24"), &[net("10.1.0.0/16")]),
            Err(IpamError::Overlap)
        );
        assert!(check_subnet(&net("10.2.0.0/24"), &[net("10.1.0.0/16")]).is_ok());
    }

    #[test]
    fn host_routes_parse_from_proc() {
        let v4 =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                  eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                  docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let v6 = "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n";
        let r = parse_routes(v4, v6);
        assert!(r.contains(&net("0.0.0.0/0")));
        assert!(r.contains(&net("10.0.0.0/24")));
        assert!(r.contains(&net("172.17.0.0/16")));
        assert!(r.contains(&net("fd00::/64")));
    }

    #[test]
    fn addresses_come_in_order_and_are_not_reused_at_once() {
        let mut a = Allocator::new(net("10.9.0.0/29"), None, None).unwrap();
        assert_eq!(a.gateway(), ip("10.9.0.1"));
        assert_eq!(a.allocate(None).unwrap(), ip("10.9.0.2"));
        assert_eq!(a.allocate(None).unwrap(), ip("10.9.0.3"));
        a.release(ip("10.9.0.2"));
        assert_eq!(a.allocate(None).unwrap(), ip("10.9.0.4"));
        assert_eq!(a.allocate(Some(ip("10.9.0.6"))).unwrap(), ip("10.9.0.6"));
        assert_eq!(a.allocate(Some(ip("10.9.0.6"))), Err(IpamError::InUse));
        assert_eq!(a.allocate(None).unwrap(), ip("10.9.0.5"));
        // .7 is the broadcast address; .2 is free again.
        assert_eq!(a.allocate(None).unwrap(), ip("10.9.0.2"));
        assert_eq!(a.allocate(None), Err(IpamError::Exhausted(4)));
        assert!(matches!(
            a.allocate(Some(ip("10.8.0.9"))),
            Err(IpamError::OutOfSubnet(..))
        ));
    }

    #[test]
    fn ranges_gateways_and_ipv6() {
        let mut a = Allocator::new(
            net("10.7.0.0/24"),
            Some(ip("10.7.0.254")),
            Some(net("10.7.0.128/25")),
        )
        .unwrap();
        // The range's own first address is a host address of the subnet (as dockerd hands
        // it out).
        assert_eq!(a.allocate(None).unwrap(), ip("10.7.0.128"));
        // A static address may be outside the range, within the subnet.
        assert_eq!(a.allocate(Some(ip("10.7.0.5"))).unwrap(), ip("10.7.0.5"));
        assert!(matches!(
            Allocator::new(net("10.7.0.0/24"), Some(ip("10.8.0.1")), None),
            Err(IpamError::InvalidGateway(..))
        ));
        assert!(matches!(
            Allocator::new(net("10.7.0.0/24"), None, Some(net("10.6.0.0/25"))),
            Err(IpamError::InvalidRange(..))
        ));
        let mut v6 = Allocator::new(net("fd00:1::/64"), None, None).unwrap();
        assert_eq!(v6.gateway(), ip("fd00:1::1"));
        assert_eq!(v6.allocate(None).unwrap(), ip("fd00:1::2"));
        assert!(parse_subnet("10.1.2.3/24").is_err());
        assert_eq!(parse_subnet("10.1.2.0/24").unwrap(), net("10.1.2.0/24"));
    }
}
