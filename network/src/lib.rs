//! berth's container networking, in the manner of netavark and aardvark-dns: IPAM, the
//! bridge driver's netlink plumbing, network namespaces of their own, the nftables table
//! (masquerade, isolation, published ports by DNAT; iptables chains where the kernel has no
//! nf_tables) and the embedded DNS server (see README.md).

pub mod dns;
pub mod firewall;
pub mod ipam;
pub mod iptables;
pub mod netlink;
pub mod netns;

pub use ipam::{Allocator, IpamError};
