//! berth's netfilter rules: one nftables table of its own, `inet berth`, made from the
//! networks and published ports it is given, and replaced as a whole in one transaction
//! (so a change is atomic and a restart rebuilds exactly what the records say). Nothing of
//! any other table is read or touched.
//!
//! - `nat prerouting` / `nat output`: traffic to one of the host's addresses (`fib daddr type
//!   local`) goes through `ports`, where each published port is a DNAT to its container: in
//!   the kernel, no proxy process. From the host itself this covers 127.0.0.1 too (the
//!   bridges have `route_localnet`, and such traffic is masqueraded to the gateway).
//! - `nat postrouting`: masquerade for what leaves a (non-internal) network's subnet for
//!   another interface; hairpin (a container reaching a published port through the host's
//!   address lands on its own bridge, masqueraded so replies come back the same way).
//! - `filter forward`: internal networks reach nothing beyond their bridge, and nothing
//!   reaches them; networks are isolated from each other except through published ports.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;
use nftables::batch::Batch;
use nftables::expr::{Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression};
use nftables::expr::{Payload, PayloadField, Prefix, CT};
use nftables::schema::{Chain, NfListObject, Rule, Table};
use nftables::stmt::{JumpTarget, Match, Operator, Statement, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

/// The table's default name (family `inet`); each daemon has one of its own.
pub const TABLE: &str = "berth";

/// A bridge network's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeRules {
    pub bridge: String,
    pub subnets: Vec<IpNet>,
    /// No traffic beyond the bridge, either way.
    pub internal: bool,
    /// Masquerade what leaves the subnets (`com.docker.network.bridge.enable_ip_masquerade`).
    pub masquerade: bool,
    /// Containers on the bridge may talk to each other (`enable_icc`).
    pub icc: bool,
}

/// Transport protocols a port can be published for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn parse(s: &str) -> Option<Proto> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" | "" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "sctp" => Some(Proto::Sctp),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// One published port: `host_ip:host_port/proto` (any of the host's addresses when
/// `host_ip` is unspecified) to `ctr_ip:ctr_port` on `bridge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMap {
    pub proto: Proto,
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub ctr_ip: IpAddr,
    pub ctr_port: u16,
}

/// Everything the table holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub bridges: Vec<BridgeRules>,
    pub ports: Vec<PortMap>,
}

/// Which netfilter interface holds the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A table of the daemon's own (the default).
    Nftables,
    /// Chains of the daemon's own (`iptables.rs`), for kernels without nf_tables.
    Iptables,
}

impl Backend {
    /// `nftables`, `iptables`, or (empty) nftables where the kernel has it, else iptables.
    pub fn choose(given: &str) -> Result<Backend, String> {
        match given {
            "nftables" => Ok(Backend::Nftables),
            "iptables" => Ok(Backend::Iptables),
            "" if crate::iptables::kernel_has_nftables() => Ok(Backend::Nftables),
            "" => Ok(Backend::Iptables),
            other => Err(format!(
                "invalid firewall backend {other:?}: nftables or iptables"
            )),
        }
    }

    /// Replaces the daemon's rules (`name`: its table, or its chains' prefix) with `rs`.
    pub async fn apply(self, name: &str, rs: &Ruleset) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables => apply(name, rs).await,
            Backend::Iptables => {
                let (name, rs) = (name.to_string(), rs.clone());
                tokio::task::spawn_blocking(move || crate::iptables::apply(&name, &rs))
                    .await
                    .map_err(|e| FirewallError::Nft(e.to_string()))?
            }
        }
    }
}

/// Firewall errors: the `nft` (or iptables) command's own words.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("nftables: {0}")]
    Nft(String),
}

fn s(v: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(v.into()))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn field(protocol: &'static str, f: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: f.into(),
        },
    )))
}

fn is(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

fn is_not(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::NEQ,
    })
}

fn prefix(net: &IpNet) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s(net.network().to_string())),
        len: net.prefix_len() as u32,
    }))
}

fn family_field(ip: &IpAddr, f: &'static str) -> Expression<'static> {
    match ip {
        IpAddr::V4(_) => field("ip", f),
        IpAddr::V6(_) => field("ip6", f),
    }
}

/// `fib daddr type local`: addressed to the host.
fn to_host() -> Statement<'static> {
    is(
        Expression::Named(NamedExpression::Fib(Fib {
            result: FibResult::Type,
            flags: HashSet::from([FibFlag::Daddr]),
        })),
        s("local"),
    )
}

fn ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: key.into(),
        family: None,
        dir: None,
    }))
}

/// `ct <key> <value>` (a flag test: status dnat, state established).
fn ct_has(key: &'static str, values: &[&'static str]) -> Statement<'static> {
    let right = if values.len() == 1 {
        s(values[0])
    } else {
        Expression::List(values.iter().map(|v| s(*v)).collect())
    };
    Statement::Match(Match {
        left: ct(key),
        right,
        op: Operator::IN,
    })
}

struct Builder {
    batch: Batch<'static>,
    table: String,
}

impl Builder {
    fn chain(&mut self, name: &'static str, hook: Option<(NfChainType, NfHook, i32)>) {
        let mut c = Chain {
            family: NfFamily::INet,
            table: self.table.clone().into(),
            name: name.into(),
            ..Default::default()
        };
        if let Some((t, h, prio)) = hook {
            c._type = Some(t);
            c.hook = Some(h);
            c.prio = Some(prio);
            c.policy = Some(NfChainPolicy::Accept);
        }
        self.batch.add(NfListObject::Chain(c));
    }

    fn rule(&mut self, chain: &'static str, expr: Vec<Statement<'static>>) {
        self.batch.add(NfListObject::Rule(Rule {
            family: NfFamily::INet,
            table: self.table.clone().into(),
            chain: chain.into(),
            expr: expr.into(),
            ..Default::default()
        }));
    }
}

fn table(name: &str) -> NfListObject<'static> {
    NfListObject::Table(Table {
        family: NfFamily::INet,
        name: name.to_string().into(),
        ..Default::default()
    })
}

/// The transaction that replaces the table `name` with `rs` (made first if missing, so its
/// deletion cannot fail).
pub fn build(name: &str, rs: &Ruleset) -> nftables::schema::Nftables<'static> {
    let mut b = Builder {
        batch: Batch::new(),
        table: name.to_string(),
    };
    b.batch.add(table(name));
    b.batch.delete(table(name));
    b.batch.add(table(name));
    // Hook priorities: dstnat -100, filter 0, srcnat 100.
    b.chain(
        "prerouting",
        Some((NfChainType::NAT, NfHook::Prerouting, -100)),
    );
    b.chain("output", Some((NfChainType::NAT, NfHook::Output, -100)));
    b.chain(
        "postrouting",
        Some((NfChainType::NAT, NfHook::Postrouting, 100)),
    );
    b.chain("forward", Some((NfChainType::Filter, NfHook::Forward, 0)));
    b.chain("ports", None);
    for hook in ["prerouting", "output"] {
        b.rule(
            hook,
            vec![
                to_host(),
                Statement::Jump(JumpTarget {
                    target: "ports".into(),
                }),
            ],
        );
    }

    for p in &rs.ports {
        let mut e = Vec::new();
        match p.host_ip {
            Some(ip) if !ip.is_unspecified() => {
                e.push(is(family_field(&ip, "daddr"), s(ip.to_string())))
            }
            // Any host address of the container's family.
            _ => e.push(is(
                meta(MetaKey::Nfproto),
                s(if p.ctr_ip.is_ipv4() { "ipv4" } else { "ipv6" }),
            )),
        }
        if p.host_ip
            .is_some_and(|h| h.is_ipv4() != p.ctr_ip.is_ipv4() && !h.is_unspecified())
        {
            continue;
        }
        e.push(is(meta(MetaKey::L4proto), s(p.proto.as_str())));
        e.push(is(
            field("th", "dport"),
            Expression::Number(p.host_port as u32),
        ));
        e.push(Statement::DNAT(Some(NAT {
            addr: Some(s(p.ctr_ip.to_string())),
            family: Some(if p.ctr_ip.is_ipv4() {
                nftables::stmt::NATFamily::IP
            } else {
                nftables::stmt::NATFamily::IP6
            }),
            port: Some(Expression::Number(p.ctr_port as u32)),
            flags: None,
        })));
        b.rule("ports", e);
    }

    for br in &rs.bridges {
        let name = || s(br.bridge.clone());
        if br.internal {
            b.rule(
                "forward",
                vec![
                    is(meta(MetaKey::Iifname), name()),
                    is_not(meta(MetaKey::Oifname), name()),
                    Statement::Drop(None),
                ],
            );
            b.rule(
                "forward",
                vec![
                    is(meta(MetaKey::Oifname), name()),
                    is_not(meta(MetaKey::Iifname), name()),
                    Statement::Drop(None),
                ],
            );
        }
        if !br.icc {
            b.rule(
                "forward",
                vec![
                    is(meta(MetaKey::Iifname), name()),
                    is(meta(MetaKey::Oifname), name()),
                    Statement::Drop(None),
                ],
            );
        }
        // Host to container through 127.0.0.1 (DNAT in output) and container to itself or
        // its neighbours through the host's address: the source becomes the gateway.
        b.rule(
            "postrouting",
            vec![
                is(meta(MetaKey::Oifname), name()),
                is(
                    field("ip", "saddr"),
                    prefix(&IpNet::V4(ipnet::Ipv4Net::new_assert(
                        std::net::Ipv4Addr::new(127, 0, 0, 0),
                        8,
                    ))),
                ),
                Statement::Masquerade(None),
            ],
        );
        b.rule(
            "postrouting",
            vec![
                is(meta(MetaKey::Oifname), name()),
                is(meta(MetaKey::Iifname), name()),
                ct_has("status", &["dnat"]),
                Statement::Masquerade(None),
            ],
        );
        if br.masquerade && !br.internal {
            for net in &br.subnets {
                b.rule(
                    "postrouting",
                    vec![
                        is(family_field(&net.network(), "saddr"), prefix(net)),
                        is_not(meta(MetaKey::Oifname), name()),
                        Statement::Masquerade(None),
                    ],
                );
            }
        }
    }
    // Replies, then published ports (reachable from every network), then isolation.
    b.rule(
        "forward",
        vec![
            ct_has("state", &["established", "related"]),
            Statement::Accept(None),
        ],
    );
    b.rule(
        "forward",
        vec![ct_has("status", &["dnat"]), Statement::Accept(None)],
    );
    let bridges: Vec<Expression<'static>> =
        rs.bridges.iter().map(|br| s(br.bridge.clone())).collect();
    if bridges.len() > 1 {
        for br in &rs.bridges {
            let others: Vec<_> = rs
                .bridges
                .iter()
                .filter(|o| o.bridge != br.bridge)
                .map(|o| nftables::expr::SetItem::Element(s(o.bridge.clone())))
                .collect();
            b.rule(
                "forward",
                vec![
                    is(meta(MetaKey::Iifname), s(br.bridge.clone())),
                    is(
                        meta(MetaKey::Oifname),
                        Expression::Named(NamedExpression::Set(others)),
                    ),
                    Statement::Drop(None),
                ],
            );
        }
    }
    b.batch.to_nftables()
}

/// Replaces the table `name` with `rs`. Tried again a few times: a transaction of another
/// process (another daemon's table) committed meanwhile makes nft give up with EINTR/EBUSY.
pub async fn apply(name: &str, rs: &Ruleset) -> Result<(), FirewallError> {
    let ruleset = build(name, rs);
    let mut attempt = 0;
    loop {
        match nftables::helper::apply_ruleset_async(&ruleset).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 8 => {
                tracing::debug!(error = %nft_message(e), attempt, "nft transaction: again");
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(10 << attempt.min(5))).await;
            }
            Err(e) => return Err(FirewallError::Nft(nft_message(e))),
        }
    }
}

/// Removes the table `name`.
pub async fn remove(name: &str) -> Result<(), FirewallError> {
    let mut b = Batch::new();
    b.add(table(name));
    b.delete(table(name));
    nftables::helper::apply_ruleset_async(&b.to_nftables())
        .await
        .map_err(|e| FirewallError::Nft(nft_message(e)))
}

fn nft_message(e: nftables::helper::NftablesError) -> String {
    match e {
        nftables::helper::NftablesError::NftFailed { stderr, .. } => stderr.trim().to_string(),
        other => other.to_string(),
    }
}

/// A default bridge, an internal network `internal` and one published port (for tests).
#[cfg(test)]
pub(crate) fn sample_ruleset(internal: &str, host_ip: Option<&str>) -> Ruleset {
    let net = |s: &str| s.parse::<IpNet>().unwrap_or_else(|e| panic!("{s}: {e}"));
    let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|e| panic!("{s}: {e}"));
    Ruleset {
        bridges: vec![
            BridgeRules {
                bridge: "berth0".into(),
                subnets: vec![net("172.17.0.0/16")],
                internal: false,
                masquerade: true,
                icc: true,
            },
            BridgeRules {
                bridge: internal.into(),
                subnets: vec![net("10.9.0.0/24")],
                internal: true,
                masquerade: true,
                icc: true,
            },
        ],
        ports: vec![PortMap {
            proto: Proto::Tcp,
            host_ip: host_ip.map(ip),
            host_port: 8080,
            ctr_ip: ip("172.17.0.2"),
            ctr_port: 80,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_json_names_only_berths_table() {
        let rs = sample_ruleset("br-x", None);
        let json = serde_json::to_value(build(TABLE, &rs)).unwrap();
        let objs = json["nftables"].as_array().unwrap();
        for o in objs {
            let inner = o.as_object().unwrap().values().next().unwrap();
            let inner = inner.as_object().unwrap().values().next().unwrap();
            let t = inner.get("table").or_else(|| inner.get("name")).unwrap();
            if inner.get("table").is_some() {
                assert_eq!(t, "berth");
            }
        }
        let text = json.to_string();
        assert!(text.contains("\"dnat\""), "{text}");
        assert!(text.contains("masquerade"));
        // The internal network gets no masquerade rule of its subnet.
        assert!(!text.contains("10.9.0.0\",\"len\":24}},\"op\":\"==\"}},{\"match\":{\"left\":{\"meta\":{\"key\":\"oifname\"}},\"right\":\"br-x\",\"op\":\"!=\"}},{\"masquerade\""));
    }
}
