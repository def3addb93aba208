//! Image references parsed and normalized as Docker does (`busybox` is
//! `docker.io/library/busybox:latest`), with Docker's error texts.

use std::fmt;

use crate::error::{Error, Result};

/// The registry Docker uses when a reference names none.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// Other spellings of [`DEFAULT_DOMAIN`] that are normalized to it.
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// Tag used when a reference has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// A normalized reference: `domain/path[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `127.0.0.1:5000`, `registry.example.com`.
    pub domain: String,
    /// Repository path inside the registry (`library/busybox`, `team/app`).
    pub path: String,
    /// Tag, if the reference had one (see [`Reference::with_default_tag`]).
    pub tag: Option<String>,
    /// `sha256:<hex>`, if the reference had one.
    pub digest: Option<String>,
}

fn invalid() -> Error {
    Error::InvalidReference("invalid reference format".into())
}

impl Reference {
    /// Parses `s` as Docker's `ParseNormalizedNamed`: adds `docker.io` and `library/` where
    /// Docker does. Errors are Docker's (`invalid reference format`, `... must be lowercase`).
    pub fn parse(s: &str) -> Result<Reference> {
        if s.is_empty() {
            return Err(invalid());
        }
        // A 64-hex string alone is an image id, never a repository name.
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidReference(format!(
                "invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
            )));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                check_digest(d)?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // The tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                check_tag(tag)?;
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(invalid());
        }
        let (mut domain, mut path) = split_domain(name);
        if domain == LEGACY_DEFAULT_DOMAIN {
            domain = DEFAULT_DOMAIN.to_string();
        }
        if domain == DEFAULT_DOMAIN && !path.contains('/') {
            path = format!("library/{path}");
        }
        if name.len() > NAME_TOTAL_LENGTH_MAX || domain.len() + 1 + path.len() > 255 {
            return Err(Error::InvalidReference(format!(
                "invalid reference format: repository name (too long) must be less than {NAME_TOTAL_LENGTH_MAX} characters"
            )));
        }
        check_domain(&domain)?;
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(Error::InvalidReference(format!(
                "invalid reference format: repository name ({path}) must be lowercase"
            )));
        }
        for component in path.split('/') {
            check_path_component(component)?;
        }
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The reference with `latest` as tag when it has neither tag nor digest
    /// (`TagNameOnly`).
    pub fn with_default_tag(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_string());
        }
        self
    }

    /// `domain/path`, fully qualified (`docker.io/library/busybox`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository as Docker prints it: `busybox`, `team/app`, `127.0.0.1:5000/x`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix("library/") {
                Some(short) if !short.contains('/') => short.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        }
    }

    /// The whole reference as Docker prints it: `busybox:latest`, `x@sha256:...`.
    pub fn familiar_string(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// The tag or digest a registry request names (`latest` if neither).
    pub fn tag_or_digest(&self) -> String {
        self.digest
            .clone()
            .or_else(|| self.tag.clone())
            .unwrap_or_else(|| DEFAULT_TAG.to_string())
    }

    /// The host to talk to for this reference's registry (`registry-1.docker.io` for Docker
    /// Hub, which is served there rather than at `docker.io`).
    pub fn registry_host(&self) -> String {
        registry_host(&self.domain)
    }

    /// The distribution client's reference for this one, addressed at `host`.
    pub(crate) fn to_oci(&self, host: &str) -> oci_client::Reference {
        match &self.digest {
            Some(d) => oci_client::Reference::with_digest(host.into(), self.path.clone(), d.into()),
            None => oci_client::Reference::with_tag(
                host.into(),
                self.path.clone(),
                self.tag.clone().unwrap_or_else(|| DEFAULT_TAG.into()),
            ),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The host serving registry `domain` (Docker Hub's API is at `registry-1.docker.io`).
pub fn registry_host(domain: &str) -> String {
    if domain == DEFAULT_DOMAIN || domain == LEGACY_DEFAULT_DOMAIN {
        "registry-1.docker.io".to_string()
    } else {
        domain.to_string()
    }
}

/// Normalizes a server address as `docker login` stores it: Docker Hub's keys stay
/// `https://index.docker.io/v1/`; other registries are reduced to `host[:port]`.
pub fn normalize_server_address(address: &str) -> String {
    let trimmed = address.trim();
    if trimmed.is_empty()
        || trimmed.contains("index.docker.io")
        || trimmed.contains("registry-1.docker.io")
        || trimmed == DEFAULT_DOMAIN
    {
        return crate::auth::DOCKER_HUB_AUTH_KEY.to_string();
    }
    let no_scheme = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .unwrap_or(trimmed);
    no_scheme.split('/').next().unwrap_or(no_scheme).to_string()
}

fn split_domain(name: &str) -> (String, String) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    }
}

fn check_digest(d: &str) -> Result<()> {
    let Some((algo, hex)) = d.split_once(':') else {
        return Err(invalid());
    };
    let ok = match algo {
        "sha256" => hex.len() == 64,
        "sha384" => hex.len() == 96,
        "sha512" => hex.len() == 128,
        _ => false,
    } && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if ok {
        Ok(())
    } else {
        Err(invalid())
    }
}

fn check_tag(t: &str) -> Result<()> {
    let b = t.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid())
    }
}

fn check_domain(domain: &str) -> Result<()> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        // [ipv6]:port
        let Some((ip, after)) = rest.split_once(']') else {
            return Err(invalid());
        };
        if ip.is_empty() || !ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(invalid());
        }
        match after.strip_prefix(':') {
            Some(p) => ("", Some(p)),
            None if after.is_empty() => ("", None),
            None => return Err(invalid()),
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
    }
    if !host.is_empty() || !domain.starts_with('[') {
        for label in host.split('.') {
            let b = label.as_bytes();
            let ok = !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-');
            if !ok {
                return Err(invalid());
            }
        }
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn check_path_component(c: &str) -> Result<()> {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return Err(invalid());
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__', or any number of '-'.
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return Err(invalid());
        }
    }
    Ok(())
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn normalizes_like_docker() {
        let r = p("busybox");
        assert_eq!(r.name(), "docker.io/library/busybox");
        assert_eq!(r.tag, None);
        assert_eq!(
            r.clone().with_default_tag().familiar_string(),
            "busybox:latest"
        );
        assert_eq!(
            p("index.docker.io/team/app:v1").name(),
            "docker.io/team/app"
        );
        assert_eq!(p("team/app:v1").familiar_string(), "team/app:v1");
        let r = p("127.0.0.1:5000/x/y:1.0");
        assert_eq!(
            (r.domain.as_str(), r.path.as_str()),
            ("127.0.0.1:5000", "x/y")
        );
        assert_eq!(r.familiar_string(), "127.0.0.1:5000/x/y:1.0");
        assert_eq!(p("localhost/app").domain, "localhost");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = p(&format!("busybox@{d}"));
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.tag_or_digest(), d);
        assert_eq!(p("[::1]:5000/app:t").domain, "[::1]:5000");
        assert_eq!(p("a__b.c-d---e").path, "library/a__b.c-d---e");
    }

    #[test]
    fn refuses_bad_references_with_docker_messages() {
        for bad in [
            "",
            ":latest",
            "busybox:",
            "busybox:-x",
            "bad name",
            "x@sha256:abc",
            "a//b",
            "a/",
            "-a",
            "a..b",
            "host:port/x",
            "UPPER:tag",
        ] {
            let e = Reference::parse(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{bad}");
            assert!(
                e.to_string().starts_with("invalid reference format"),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            Reference::parse("Registry.Example.com/Foo")
                .unwrap_err()
                .to_string(),
            "invalid reference format: repository name (Foo) must be lowercase"
        );
        let e = Reference::parse(&"a".repeat(64)).unwrap_err().to_string();
        assert!(
            e.contains("cannot specify 64-byte hexadecimal strings"),
            "{e}"
        );
    }

    #[test]
    fn server_addresses_normalize_like_docker_login() {
        assert_eq!(
            normalize_server_address("docker.io"),
            "https://index.docker.io/v1/"
        );
        assert_eq!(
            normalize_server_address("http://127.0.0.1:5000/v2/"),
            "127.0.0.1:5000"
        );
        assert_eq!(
            normalize_server_address("reg.example.com"),
            "reg.example.com"
        );
        assert_eq!(registry_host("docker.io"), "registry-1.docker.io");
    }
}
