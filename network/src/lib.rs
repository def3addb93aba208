//! berth's container networking, in the manner of netavark and aardvark-dns: IPAM now; the
//! bridge driver (netlink), nftables rules, port publishing and the embedded DNS server come
//! with issue 12 (see README.md).

pub mod ipam;
pub mod netlink;

pub use ipam::{Allocator, IpamError};
