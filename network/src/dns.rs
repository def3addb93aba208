//! The embedded DNS server, as dockerd's and aardvark-dns: inside each container on a user
//! network, 127.0.0.11:53 (UDP and TCP, sockets made in the container's namespace and served
//! by berthd) answers the names of the networks the container is on, and forwards any other
//! name to the upstream resolvers (the host's, or the container's `--dns`).
//!
//! What a name means is the caller's ([`Names`]): it is asked at each query, so connects,
//! disconnects and new containers are seen at once.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo, Server};
use hickory_server::zone_handler::MessageResponseBuilder;

/// The address the server listens on inside a container (dockerd's).
pub const RESOLVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
/// Time to live of the answers for containers (dockerd's).
const TTL: u32 = 600;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(4);

/// What the names of one container's networks mean.
pub trait Names: Send + Sync + 'static {
    /// The addresses of `name` (lower case, no trailing dot) for the container, or `None`
    /// when the name is none of its networks' (then it is forwarded). Several addresses are
    /// answered in a rotating order.
    fn lookup(&self, name: &str) -> Option<Vec<IpAddr>>;
    /// The name of a container address on its networks (for PTR queries).
    fn reverse(&self, ip: IpAddr) -> Option<String>;
    /// Where other names go (port 53 unless given).
    fn upstreams(&self) -> Vec<SocketAddr>;
}

struct Handler {
    names: Arc<dyn Names>,
    turn: std::sync::atomic::AtomicUsize,
}

/// A running server for one container; stops (and closes its sockets, which hold the
/// namespace) when shut down or dropped.
pub struct DnsServer {
    server: Server<Handler>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DnsServer")
    }
}

impl DnsServer {
    /// Binds 127.0.0.11:53 inside the namespace at `ns` (its loopback must be up) and serves
    /// it on the caller's runtime.
    pub fn start(ns: &Path, names: Arc<dyn Names>) -> io::Result<DnsServer> {
        let (udp, tcp) = crate::netns::run_in(ns, || {
            let addr = SocketAddr::from((RESOLVER, 53));
            let udp = std::net::UdpSocket::bind(addr)?;
            udp.set_nonblocking(true)?;
            let tcp = std::net::TcpListener::bind(addr)?;
            tcp.set_nonblocking(true)?;
            Ok((udp, tcp))
        })?;
        let mut server = Server::new(Handler {
            names,
            turn: Default::default(),
        });
        server.register_socket(tokio::net::UdpSocket::from_std(udp)?);
        server.register_listener(
            tokio::net::TcpListener::from_std(tcp)?,
            Duration::from_secs(10),
            64,
        );
        Ok(DnsServer { server })
    }

    pub fn stop(self) {
        self.server.shutdown_token().cancel();
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.server.shutdown_token().cancel();
    }
}

/// Forwards a raw query to the first upstream that answers.
async fn forward(raw: &[u8], upstreams: &[SocketAddr], tcp: bool) -> Option<Vec<u8>> {
    for up in upstreams {
        let answer = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
            if tcp {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut s = tokio::net::TcpStream::connect(up).await?;
                let mut msg = (raw.len() as u16).to_be_bytes().to_vec();
                msg.extend_from_slice(raw);
                s.write_all(&msg).await?;
                let mut len = [0u8; 2];
                s.read_exact(&mut len).await?;
                let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
                s.read_exact(&mut buf).await?;
                Ok::<_, io::Error>(buf)
            } else {
                let bind = if up.is_ipv4() {
                    SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
                } else {
                    SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
                };
                let s = tokio::net::UdpSocket::bind(bind).await?;
                s.connect(up).await?;
                s.send(raw).await?;
                let mut buf = vec![0u8; 65535];
                let n = s.recv(&mut buf).await?;
                buf.truncate(n);
                Ok(buf)
            }
        })
        .await;
        if let Ok(Ok(buf)) = answer {
            return Some(buf);
        }
    }
    None
}

impl Handler {
    /// Answers from the container's networks, or `None` to forward.
    fn local(&self, name: &str, kind: RecordType) -> Option<Vec<Record>> {
        let owner = Name::from_ascii(format!("{name}.")).ok()?;
        if kind == RecordType::PTR {
            let ip = ptr_address(name)?;
            let target = self.names.reverse(ip)?;
            let target = Name::from_ascii(format!("{target}.")).ok()?;
            return Some(vec![Record::from_rdata(
                owner,
                TTL,
                RData::PTR(PTR(target)),
            )]);
        }
        let mut ips = self.names.lookup(name)?;
        if ips.len() > 1 {
            let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % ips.len();
            ips.rotate_left(turn);
        }
        Some(
            ips.into_iter()
                .filter_map(|ip| match (ip, kind) {
                    (IpAddr::V4(v4), RecordType::A) => {
                        Some(Record::from_rdata(owner.clone(), TTL, RData::A(A(v4))))
                    }
                    (IpAddr::V6(v6), RecordType::AAAA) => Some(Record::from_rdata(
                        owner.clone(),
                        TTL,
                        RData::AAAA(AAAA(v6)),
                    )),
                    _ => None,
                })
                .collect(),
        )
    }
}

/// The address of a reverse name (`4.3.2.1.in-addr.arpa` → 1.2.3.4).
fn ptr_address(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let mut parts: Vec<&str> = rest.split('.').collect();
        parts.reverse();
        return parts.join(".").parse().ok();
    }
    let rest = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<&str> = rest.split('.').rev().collect();
    if nibbles.len() != 32 {
        return None;
    }
    let hex: String = nibbles.concat();
    let groups: Vec<String> = hex
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    groups.join(":").parse().ok()
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = true;
        let fail = |meta: Metadata, code: ResponseCode| {
            let mut m = meta;
            m.response_code = code;
            m
        };
        let query = match request.request_info() {
            Ok(info) if request.metadata.op_code == OpCode::Query => info.query.clone(),
            _ => {
                let msg = builder.build_no_records(fail(meta, ResponseCode::NotImp));
                return send(&mut response, msg, request).await;
            }
        };
        let name = query.name().to_string();
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(records) = self.local(&name, query.query_type()) {
            meta.authoritative = true;
            let msg = builder.build(meta, records.iter(), [], [], []);
            return send(&mut response, msg, request).await;
        }
        let tcp = request.protocol() == hickory_server::net::xfer::Protocol::Tcp;
        let upstreams = self.names.upstreams();
        let answer = forward(request.as_slice(), &upstreams, tcp)
            .await
            .and_then(|raw| Message::from_vec(&raw).ok())
            .filter(|m| m.metadata.message_type == MessageType::Response);
        match answer {
            Some(up) => {
                let mut m = up.metadata;
                m.id = request.metadata.id;
                let msg = builder.build(
                    m,
                    up.answers.iter(),
                    up.authorities.iter(),
                    [],
                    up.additionals.iter(),
                );
                send(&mut response, msg, request).await
            }
            None => {
                let msg = builder.build_no_records(fail(meta, ResponseCode::ServFail));
                send(&mut response, msg, request).await
            }
        }
    }
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    msg: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    request: &Request,
) -> ResponseInfo {
    match response.send_response(msg).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "dns: send response");
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            hickory_proto::op::Header {
                metadata,
                counts: Default::default(),
            }
            .into()
        }
    }
}

/// The upstream resolvers of a resolv.conf (loopback ones too: berthd forwards from the
/// host's namespace, where they answer).
pub fn upstreams_of(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(
            ptr_address("2.0.17.172.in-addr.arpa"),
            Some("172.17.0.2".parse().unwrap())
        );
        assert_eq!(
            ptr_address("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(ptr_address("example.com"), None);
    }

    #[test]
    fn upstreams_from_resolv_conf() {
        assert_eq!(
            upstreams_of("# x\nnameserver 10.0.0.1\nnameserver ::1\nsearch a\n"),
            vec!["10.0.0.1:53".parse().unwrap(), "[::1]:53".parse().unwrap()]
        );
    }
}
