//! Links, addresses and routes through rtnetlink, on the host or inside a container's network
//! namespace: the bridge driver's plumbing (a Linux bridge with the gateway addresses, a veth
//! pair per endpoint, the container's end renamed to `eth0` with its address and default
//! route), as netavark does it.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::Path;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

/// Netlink errors, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("no link named {0}")]
    NoLink(String),
}

type Result<T> = std::result::Result<T, NetlinkError>;

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let what = what.into();
    move |source| NetlinkError::Netlink { what, source }
}

/// Whether a netlink error is the kernel's EEXIST (an address or route already there).
fn exists(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.code.map(|c| c.get()) == Some(-libc::EEXIST))
}

/// A netlink connection bound to one network namespace.
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// A connection in the calling process's namespace (needs a tokio runtime).
    pub fn host() -> Result<Netlink> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| NetlinkError::Io {
            what: "open a netlink socket".into(),
            source,
        })?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// A connection in the network namespace at `ns` (`/proc/<pid>/ns/net`): the socket is
    /// opened on a thread of its own that joined that namespace (a netlink socket stays in
    /// the namespace it was made in), then served on the caller's runtime.
    pub fn in_namespace(ns: &Path) -> Result<Netlink> {
        let file = std::fs::File::open(ns).map_err(|source| NetlinkError::Io {
            what: format!("open {}", ns.display()),
            source,
        })?;
        let rt = tokio::runtime::Handle::current();
        let made = std::thread::spawn(move || -> io::Result<_> {
            // The socket registers with the caller's runtime as it is made.
            let _rt = rt.enter();
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
            rtnetlink::new_connection()
        })
        .join()
        .map_err(|_| NetlinkError::Io {
            what: "join the netlink thread".into(),
            source: io::Error::other("panicked"),
        })?;
        let (conn, handle, _) = made.map_err(|source| NetlinkError::Io {
            what: format!("open a netlink socket in {}", ns.display()),
            source,
        })?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// The link `name`, if there is one.
    async fn link(&self, name: &str) -> Result<Option<LinkMessage>> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(m) => Ok(m),
            Err(rtnetlink::Error::NetlinkError(m))
                if m.code.map(|c| c.get()) == Some(-libc::ENODEV) =>
            {
                Ok(None)
            }
            Err(e) => Err(nl(format!("look up link {name}"))(e)),
        }
    }

    /// The index of the link `name`, if there is one.
    pub async fn index(&self, name: &str) -> Result<Option<u32>> {
        Ok(self.link(name).await?.map(|m| m.header.index))
    }

    async fn must_index(&self, name: &str) -> Result<u32> {
        self.index(name)
            .await?
            .ok_or_else(|| NetlinkError::NoLink(name.to_string()))
    }

    /// The bridge `name`, made (and brought up) when missing; its index.
    pub async fn ensure_bridge(&self, name: &str, mtu: Option<u32>) -> Result<u32> {
        if self.index(name).await?.is_none() {
            let mut b = LinkBridge::new(name);
            if let Some(m) = mtu {
                b = b.mtu(m);
            }
            self.add(b.build(), &format!("create bridge {name}"))
                .await?;
        }
        let index = self.must_index(name).await?;
        self.set_up(index).await?;
        Ok(index)
    }

    /// Brings a link up.
    pub async fn set_up(&self, index: u32) -> Result<()> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl(format!("set link {index} up")))
    }

    /// Adds `ip/prefix` to a link (already there is fine).
    pub async fn add_address(&self, index: u32, ip: IpAddr, prefix: u8) -> Result<()> {
        let mut req = self.handle.address().add(index, ip, prefix);
        if ip.is_ipv6() {
            // No duplicate address detection: the address is usable at once (as dockerd).
            use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match req.execute().await {
            Err(e) if !exists(&e) => Err(nl(format!("add {ip}/{prefix} to link {index}"))(e)),
            _ => Ok(()),
        }
    }

    /// A veth pair in one request: `host` attached to the bridge `bridge` and up, `peer` made
    /// directly inside the namespace at `ns` (with `mac`), so nothing moves between
    /// namespaces (a move costs the kernel an RCU grace period).
    pub async fn add_veth(
        &self,
        host: &str,
        peer: &str,
        bridge: u32,
        mtu: Option<u32>,
        mac: Option<[u8; 6]>,
        ns: &Path,
    ) -> Result<()> {
        use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkInfo};
        use std::os::fd::AsRawFd;
        let ns_file = std::fs::File::open(ns).map_err(|source| NetlinkError::Io {
            what: format!("open {}", ns.display()),
            source,
        })?;
        let mut v = LinkVeth::new(host, peer).controller(bridge).up();
        if let Some(m) = mtu {
            v = v.mtu(m);
        }
        let mut msg = v.build();
        for attr in msg.attributes.iter_mut() {
            let LinkAttribute::LinkInfo(infos) = attr else {
                continue;
            };
            for info in infos.iter_mut() {
                if let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) = info {
                    p.attributes
                        .push(LinkAttribute::NetNsFd(ns_file.as_raw_fd()));
                    if let Some(m) = mtu {
                        p.attributes.push(LinkAttribute::Mtu(m));
                    }
                    if let Some(mac) = mac {
                        p.attributes.push(LinkAttribute::Address(mac.to_vec()));
                    }
                }
            }
        }
        self.add(msg, &format!("create veth pair {host}/{peer}"))
            .await
    }

    async fn add(&self, msg: LinkMessage, what: &str) -> Result<()> {
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(nl(what))
    }

    async fn set(&self, msg: LinkMessage, what: &str) -> Result<()> {
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(nl(format!("set link {what}")))
    }

    /// Inside a container's namespace: the link `from` renamed to `to`, given `mac` and `ips` (with
    /// their prefix lengths) and brought up with the loopback; a default route through
    /// `gateway` when one is given.
    pub async fn configure_endpoint(
        &self,
        from: &str,
        to: &str,
        mac: Option<[u8; 6]>,
        ips: &[(IpAddr, u8)],
        gateways: &[IpAddr],
    ) -> Result<()> {
        let index = self.must_index(from).await?;
        if from != to {
            self.set(
                LinkUnspec::new_with_index(index)
                    .name(to.to_string())
                    .build(),
                from,
            )
            .await?;
        }
        if let Some(mac) = mac {
            self.set(
                LinkUnspec::new_with_index(index)
                    .address(mac.to_vec())
                    .build(),
                to,
            )
            .await?;
        }
        for (ip, prefix) in ips {
            self.add_address(index, *ip, *prefix).await?;
        }
        self.set_up(index).await?;
        if let Some(lo) = self.index("lo").await? {
            self.set_up(lo).await?;
        }
        for gw in gateways {
            let route = RouteMessageBuilder::<IpAddr>::new()
                .gateway(*gw)
                .map_err(|e| NetlinkError::Io {
                    what: format!("default route via {gw}"),
                    source: io::Error::other(e.to_string()),
                })?
                .output_interface(index)
                .build();
            match self.handle.route().add(route).execute().await {
                Err(e) if !exists(&e) => {
                    return Err(nl(format!("add the default route via {gw}"))(e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Deletes the link `name` (a missing one is fine; a veth takes its peer with it).
    pub async fn delete(&self, name: &str) -> Result<()> {
        let Some(index) = self.index(name).await? else {
            return Ok(());
        };
        let mut links = self.handle.link();
        match links.del(index).execute().await {
            Err(rtnetlink::Error::NetlinkError(m))
                if m.code.map(|c| c.get()) == Some(-libc::ENODEV) =>
            {
                Ok(())
            }
            r => r.map_err(nl(format!("delete link {name}"))),
        }
    }

    /// The MTU of a link.
    pub async fn mtu(&self, name: &str) -> Result<Option<u32>> {
        Ok(self.link(name).await?.and_then(|m| {
            m.attributes.iter().find_map(|a| match a {
                LinkAttribute::Mtu(v) => Some(*v),
                _ => None,
            })
        }))
    }
}
