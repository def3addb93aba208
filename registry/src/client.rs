//! The distribution client for one operation: which hosts to talk to (mirrors, then the
//! registry), over which scheme (insecure registries), and Docker's wording of its errors.

use std::net::IpAddr;
use std::sync::Once;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};

use crate::error::Error;
use crate::reference::{Reference, DEFAULT_DOMAIN};
use crate::RegistryConfig;

/// One place to fetch from: a mirror or the registry itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `host[:port]` requests go to.
    pub host: String,
    /// Whether it is a mirror (pull only; errors there fall through to the next endpoint).
    pub mirror: bool,
}

impl RegistryConfig {
    /// Mirrors configured for `domain` (Docker's `registry-mirrors` apply to Docker Hub), then
    /// the registry itself.
    pub(crate) fn pull_endpoints(&self, r: &Reference) -> Vec<Endpoint> {
        let mut out = Vec::new();
        let mut mirrors: Vec<&String> = self.mirrors.get(&r.domain).into_iter().flatten().collect();
        if r.domain == DEFAULT_DOMAIN {
            mirrors.extend(self.registry_mirrors.iter());
        }
        for m in mirrors {
            out.push(Endpoint {
                host: url_host(m),
                mirror: true,
            });
        }
        out.push(Endpoint {
            host: r.registry_host(),
            mirror: false,
        });
        out
    }

    /// Whether `host` is spoken to over plain HTTP: listed in `insecure-registries` (as
    /// `host[:port]`, or a CIDR holding its IP), a mirror given with `http://`, or loopback
    /// (Docker treats 127.0.0.0/8 and ::1 as insecure without configuration).
    pub(crate) fn is_insecure(&self, host: &str) -> bool {
        let bare = host_without_port(host);
        if self
            .insecure_registries
            .iter()
            .any(|i| i == host || i == bare || url_host(i) == host)
        {
            return true;
        }
        let all_mirrors = self
            .registry_mirrors
            .iter()
            .chain(self.mirrors.values().flatten());
        if all_mirrors
            .filter(|m| m.starts_with("http://"))
            .any(|m| url_host(m) == host)
        {
            return true;
        }
        let ip: Option<IpAddr> = bare.trim_matches(['[', ']']).parse().ok();
        match ip {
            Some(ip) => {
                ip.is_loopback()
                    || self
                        .insecure_registries
                        .iter()
                        .any(|c| cidr_contains(c, ip))
            }
            None => bare == "localhost",
        }
    }

    /// How to reach `host`: HTTPS, or for an insecure registry HTTPS without certificate
    /// verification when it speaks TLS and plain HTTP otherwise (Docker's order); a mirror
    /// given as `http://` is HTTP.
    pub(crate) async fn transport(&self, host: &str) -> Transport {
        let all_mirrors = self
            .registry_mirrors
            .iter()
            .chain(self.mirrors.values().flatten());
        if all_mirrors
            .filter(|m| m.starts_with("http://"))
            .any(|m| url_host(m) == host)
        {
            return Transport::Http;
        }
        if !self.is_insecure(host) {
            return Transport::Https;
        }
        ensure_tls_provider();
        let probe = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(5))
            .build();
        let speaks_tls = match probe {
            Ok(c) => c.get(format!("https://{host}/v2/")).send().await.is_ok(),
            Err(_) => false,
        };
        tracing::debug!(host, speaks_tls, "insecure registry");
        if speaks_tls {
            Transport::HttpsSkipVerify
        } else {
            Transport::Http
        }
    }

    /// A distribution client for talking to `host` over `transport`.
    pub(crate) fn oci_client(&self, host: &str, transport: Transport) -> oci_client::Client {
        ensure_tls_provider();
        let protocol = match transport {
            Transport::Http => ClientProtocol::HttpsExcept(vec![host.to_string()]),
            Transport::Https | Transport::HttpsSkipVerify => ClientProtocol::Https,
        };
        oci_client::Client::new(ClientConfig {
            protocol,
            accept_invalid_certificates: transport == Transport::HttpsSkipVerify,
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(60)),
            max_concurrent_download: self.max_concurrent_downloads.max(1),
            max_concurrent_upload: self.max_concurrent_uploads.max(1),
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        })
    }
}

/// How a host is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// TLS with verified certificates.
    Https,
    /// TLS without certificate verification (insecure registries that speak TLS).
    HttpsSkipVerify,
    /// Plain HTTP (insecure registries that do not speak TLS, `http://` mirrors).
    Http,
}

impl Transport {
    pub(crate) fn scheme(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Https | Transport::HttpsSkipVerify => "https",
        }
    }
}

/// Installs ring as rustls' provider once: reqwest is built without a default one (ring builds
/// with cargo alone, no cmake).
pub fn ensure_tls_provider() {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// `host[:port]` of a mirror URL (`https://mirror.example.com/` → `mirror.example.com`).
fn url_host(url: &str) -> String {
    let s = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    s.split('/').next().unwrap_or(s).to_string()
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn cidr_contains(cidr: &str, ip: IpAddr) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

/// Turns a distribution error on a pull into Docker's message (moby's `translatePullError`).
pub(crate) fn pull_error(r: &Reference, context: &str, e: OciDistributionError) -> Error {
    match &e {
        OciDistributionError::RegistryError { envelope, .. } => {
            if let Some(first) = envelope.errors.first() {
                let cause = format!("{}: {}", code_text(&first.code), first.message);
                match first.code {
                    OciErrorCode::ManifestUnknown => {
                        return Error::NotFound(format!(
                            "manifest for {} not found: {cause}",
                            r.familiar_string()
                        ))
                    }
                    OciErrorCode::NameUnknown => {
                        return Error::NotFound(format!(
                            "repository {} not found: {cause}",
                            r.familiar_name()
                        ))
                    }
                    OciErrorCode::Denied | OciErrorCode::Unauthorized => {
                        return Error::NotFound(format!(
                            "pull access denied for {}, repository does not exist or may require 'docker login': {cause}",
                            r.familiar_name()
                        ))
                    }
                    _ => {}
                }
            }
        }
        OciDistributionError::UnauthorizedError { .. } => {
            return Error::NotFound(format!(
                "pull access denied for {}, repository does not exist or may require 'docker login': unauthorized: authentication required",
                r.familiar_name()
            ))
        }
        OciDistributionError::AuthenticationFailure(reason) => {
            return Error::Unauthorized(format!("unauthorized: {}", reason.trim()))
        }
        OciDistributionError::ServerError { code: 404, .. } => {
            return Error::NotFound(format!(
                "manifest for {} not found: manifest unknown: manifest unknown",
                r.familiar_string()
            ))
        }
        _ => {}
    }
    Error::registry(context.to_string(), e)
}

/// Turns a distribution error on a push into Docker's message.
pub(crate) fn push_error(r: &Reference, context: &str, e: OciDistributionError) -> Error {
    match &e {
        OciDistributionError::RegistryError { envelope, .. } => {
            if let Some(first) = envelope.errors.first() {
                let cause = format!("{}: {}", code_text(&first.code), first.message);
                if matches!(
                    first.code,
                    OciErrorCode::Denied | OciErrorCode::Unauthorized
                ) {
                    return Error::Unauthorized(cause);
                }
            }
        }
        OciDistributionError::UnauthorizedError { .. } => {
            return Error::Unauthorized(format!(
                "push access denied for {}: unauthorized: authentication required",
                r.familiar_name()
            ))
        }
        OciDistributionError::AuthenticationFailure(reason) => {
            return Error::Unauthorized(format!("unauthorized: {}", reason.trim()))
        }
        _ => {}
    }
    Error::registry(context.to_string(), e)
}

/// Docker's text for an error code: `MANIFEST_UNKNOWN` → `manifest unknown`.
fn code_text(code: &OciErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{code:?}"))
        .replace('_', " ")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_client::errors::{OciEnvelope, OciError};

    #[test]
    fn endpoints_mirrors_first_and_insecure_rules() {
        let mut c = RegistryConfig {
            registry_mirrors: vec!["https://hub-mirror.example.com".into()],
            ..RegistryConfig::default()
        };
        c.mirrors.insert(
            "127.0.0.1:5000".into(),
            vec!["http://10.1.2.3:5001/".into()],
        );
        c.insecure_registries = vec!["reg.example.com:5000".into(), "10.0.0.0/8".into()];
        let hub = Reference::parse("busybox").unwrap();
        let eps = c.pull_endpoints(&hub);
        assert_eq!(eps[0].host, "hub-mirror.example.com");
        assert!(eps[0].mirror);
        assert_eq!(eps[1].host, "registry-1.docker.io");
        let local = Reference::parse("127.0.0.1:5000/x").unwrap();
        let eps = c.pull_endpoints(&local);
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].host, "10.1.2.3:5001");
        assert!(c.is_insecure("127.0.0.1:5000"), "loopback");
        assert!(c.is_insecure("localhost:5000"));
        assert!(c.is_insecure("reg.example.com:5000"));
        assert!(c.is_insecure("10.9.9.9:443"), "cidr");
        assert!(!c.is_insecure("reg.example.com:5001"));
        assert!(!c.is_insecure("registry-1.docker.io"));
        assert!(!c.is_insecure("hub-mirror.example.com"));
    }

    #[test]
    fn pull_errors_read_like_docker() {
        let r = Reference::parse("127.0.0.1:5000/x:nope").unwrap();
        let env = |code| OciDistributionError::RegistryError {
            envelope: OciEnvelope {
                errors: vec![OciError {
                    code,
                    message: "manifest unknown".into(),
                    detail: serde_json::Value::Null,
                }],
            },
            url: "u".into(),
        };
        let e = pull_error(&r, "c", env(OciErrorCode::ManifestUnknown));
        assert_eq!(
            e.to_string(),
            "manifest for 127.0.0.1:5000/x:nope not found: manifest unknown: manifest unknown"
        );
        assert_eq!(e.kind().http_status(), 404);
        let hub = Reference::parse("nosuch/repo").unwrap();
        let e = pull_error(&hub, "c", env(OciErrorCode::Denied));
        assert!(e.to_string().starts_with(
            "pull access denied for nosuch/repo, repository does not exist or may require 'docker login'"
        ));
    }
}
