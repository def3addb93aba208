//! Credentials: Docker's `X-Registry-Auth` header, `~/.docker/config.json`-style files
//! (read, store, remove), and picking the credentials for a registry.

use std::collections::BTreeMap;
use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::reference::normalize_server_address;

/// The key `docker login` uses for Docker Hub in config files.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// Credentials for one registry, in the shape of Docker's `AuthConfig` (the JSON inside
/// `X-Registry-Auth` and the body of `POST /auth`).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthConfig {
    /// User name for basic auth / the token endpoint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// Password.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// `base64(username:password)` as in config files; used when username is empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth: String,
    /// Deprecated by Docker, kept for round trips.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    /// Registry these credentials are for (`127.0.0.1:5000`, `https://index.docker.io/v1/`).
    #[serde(
        default,
        rename = "serveraddress",
        skip_serializing_if = "String::is_empty"
    )]
    pub server_address: String,
    /// OAuth refresh token returned by a previous login (not used by berth's token flow yet).
    #[serde(
        default,
        rename = "identitytoken",
        skip_serializing_if = "String::is_empty"
    )]
    pub identity_token: String,
    /// A bearer token to send to the registry as is.
    #[serde(
        default,
        rename = "registrytoken",
        skip_serializing_if = "String::is_empty"
    )]
    pub registry_token: String,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("server_address", &self.server_address)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl AuthConfig {
    /// Basic credentials for `server_address`.
    pub fn basic(username: &str, password: &str, server_address: &str) -> AuthConfig {
        AuthConfig {
            username: username.into(),
            password: password.into(),
            server_address: server_address.into(),
            ..AuthConfig::default()
        }
    }

    /// `(username, password)`, decoding `auth` when the fields are empty.
    pub fn user_password(&self) -> Option<(String, String)> {
        if !self.username.is_empty() {
            return Some((self.username.clone(), self.password.clone()));
        }
        if self.auth.is_empty() {
            return None;
        }
        let raw = STANDARD.decode(self.auth.trim()).ok()?;
        let s = String::from_utf8(raw).ok()?;
        let (u, p) = s.split_once(':')?;
        Some((u.to_string(), p.to_string()))
    }

    /// Whether these credentials carry nothing (anonymous access).
    pub fn is_empty(&self) -> bool {
        self.user_password().is_none() && self.registry_token.is_empty()
    }

    /// The distribution client's form of these credentials.
    pub(crate) fn to_oci(&self) -> oci_client::secrets::RegistryAuth {
        use oci_client::secrets::RegistryAuth;
        if !self.registry_token.is_empty() {
            return RegistryAuth::Bearer(self.registry_token.clone());
        }
        match self.user_password() {
            Some((u, p)) => RegistryAuth::Basic(u, p),
            None => RegistryAuth::Anonymous,
        }
    }
}

/// Decodes Docker's `X-Registry-Auth` header: base64url (padded or not; docker clients send
/// either) of an [`AuthConfig`] JSON. An empty header, or `{}`, means anonymous.
pub fn decode_registry_auth(header: &str) -> Result<AuthConfig> {
    let header = header.trim();
    if header.is_empty() {
        return Ok(AuthConfig::default());
    }
    let raw = URL_SAFE
        .decode(header)
        .or_else(|_| URL_SAFE_NO_PAD.decode(header))
        .or_else(|_| STANDARD.decode(header))
        .map_err(|e| Error::InvalidArgument(format!("invalid X-Registry-Auth header: {e}")))?;
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(AuthConfig::default());
    }
    serde_json::from_slice(&raw)
        .map_err(|e| Error::InvalidArgument(format!("invalid X-Registry-Auth header: {e}")))
}

/// Encodes credentials as Docker clients send them in `X-Registry-Auth` (base64url JSON).
pub fn encode_registry_auth(auth: &AuthConfig) -> String {
    let json = serde_json::to_vec(auth).expect("AuthConfig serializes");
    URL_SAFE.encode(json)
}

/// A `~/.docker/config.json`-style file. Keys berth does not use are kept as they were.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DockerConfigFile {
    /// Per registry key (`127.0.0.1:5000`, `https://index.docker.io/v1/`): `{"auth": ...}`.
    #[serde(default)]
    pub auths: BTreeMap<String, AuthConfig>,
    /// A credential helper for every registry (not run by berth: a warning is logged).
    #[serde(
        default,
        rename = "credsStore",
        skip_serializing_if = "Option::is_none"
    )]
    pub creds_store: Option<String>,
    /// Per-registry credential helpers (not run by berth).
    #[serde(
        default,
        rename = "credHelpers",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub cred_helpers: BTreeMap<String, String>,
    /// Everything else in the file (`psFormat`, `proxies`, ...), written back untouched.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl DockerConfigFile {
    /// Reads `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<DockerConfigFile> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(DockerConfigFile::default())
            }
            Err(e) => return Err(Error::io("read", path, e)),
        };
        if data.iter().all(u8::is_ascii_whitespace) {
            return Ok(DockerConfigFile::default());
        }
        let file: DockerConfigFile = serde_json::from_slice(&data)
            .map_err(|e| Error::InvalidArgument(format!("parse {}: {e}", path.display())))?;
        if let Some(helper) = &file.creds_store {
            tracing::warn!(
                helper,
                "credsStore is not supported; using the auths in the file"
            );
        }
        Ok(file)
    }

    /// Writes the file crash-safely (temp file, fsync, rename), mode 0600 like docker.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("config file serializes");
        crate::fsutil::write_atomic(path, &json, 0o600)
    }

    /// The credentials stored for `registry` (a domain like `127.0.0.1:5000` or `docker.io`).
    /// Keys are matched after normalizing them as docker does (scheme and path dropped).
    pub fn credentials_for(&self, registry: &str) -> Option<AuthConfig> {
        let want = normalize_server_address(registry);
        if let Some(helper) = self.cred_helpers.get(&want) {
            tracing::warn!(helper, registry, "credHelpers are not supported; ignoring");
        }
        self.auths
            .iter()
            .find(|(key, _)| normalize_server_address(key) == want)
            .and_then(|(key, a)| {
                let (u, p) = a.user_password()?;
                let mut out = AuthConfig::basic(&u, &p, key);
                out.identity_token = a.identity_token.clone();
                Some(out)
            })
    }

    /// Stores credentials as `docker login` does: `auths[<server>] = {"auth": base64(u:p)}`.
    pub fn store(&mut self, auth: &AuthConfig) {
        let key = normalize_server_address(&auth.server_address);
        let (u, p) = auth.user_password().unwrap_or_default();
        let entry = AuthConfig {
            auth: STANDARD.encode(format!("{u}:{p}")),
            identity_token: auth.identity_token.clone(),
            ..AuthConfig::default()
        };
        self.auths.insert(key, entry);
    }

    /// Removes credentials as `docker logout` does; returns whether any were stored.
    pub fn remove(&mut self, server_address: &str) -> bool {
        let want = normalize_server_address(server_address);
        let keys: Vec<String> = self
            .auths
            .keys()
            .filter(|k| normalize_server_address(k) == want)
            .cloned()
            .collect();
        for k in &keys {
            self.auths.remove(k);
        }
        !keys.is_empty()
    }
}

/// `berth login`: stores `auth` in the config file at `path`.
pub fn store_credentials(path: &Path, auth: &AuthConfig) -> Result<()> {
    let mut file = DockerConfigFile::load(path)?;
    file.store(auth);
    file.save(path)
}

/// `berth logout`: removes the credentials for `server_address` from the file at `path`.
/// Returns whether some were stored (docker prints `Not logged in to <server>` otherwise).
pub fn remove_credentials(path: &Path, server_address: &str) -> Result<bool> {
    let mut file = DockerConfigFile::load(path)?;
    let removed = file.remove(server_address);
    if removed {
        file.save(path)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_auth_header_round_trips() {
        let a = AuthConfig::basic("u", "p w", "127.0.0.1:5000");
        let h = encode_registry_auth(&a);
        assert!(!h.contains('+') && !h.contains('/'), "{h}");
        assert_eq!(decode_registry_auth(&h).unwrap(), a);
        // docker CLI's form (unpadded url-safe), with extra fields.
        let raw = r#"{"username":"x","password":"y","serveraddress":"r:1","identitytoken":"t"}"#;
        let h = URL_SAFE_NO_PAD.encode(raw);
        let d = decode_registry_auth(&h).unwrap();
        assert_eq!(d.user_password(), Some(("x".into(), "y".into())));
        assert_eq!(d.identity_token, "t");
        assert!(decode_registry_auth("").unwrap().is_empty());
        assert!(decode_registry_auth(&URL_SAFE.encode("{}"))
            .unwrap()
            .is_empty());
        let e = decode_registry_auth("!!!").unwrap_err();
        assert_eq!(e.kind().http_status(), 400);
    }

    #[test]
    fn config_file_store_lookup_remove() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"aHViOnB3"}},"psFormat":"x","credsStore":"desktop"}"#,
        )
        .unwrap();
        store_credentials(
            &path,
            &AuthConfig::basic("me", "secret", "http://127.0.0.1:5000/"),
        )
        .unwrap();
        let f = DockerConfigFile::load(&path).unwrap();
        assert_eq!(f.auths["127.0.0.1:5000"].auth, STANDARD.encode("me:secret"));
        assert_eq!(f.other["psFormat"], "x", "other keys kept");
        let c = f.credentials_for("127.0.0.1:5000").unwrap();
        assert_eq!(c.user_password(), Some(("me".into(), "secret".into())));
        let hub = f.credentials_for("docker.io").unwrap();
        assert_eq!(hub.user_password(), Some(("hub".into(), "pw".into())));
        assert!(f.credentials_for("other:1").is_none());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        assert!(remove_credentials(&path, "127.0.0.1:5000").unwrap());
        assert!(!remove_credentials(&path, "127.0.0.1:5000").unwrap());
        assert!(DockerConfigFile::load(&path)
            .unwrap()
            .credentials_for("127.0.0.1:5000")
            .is_none());
        assert!(DockerConfigFile::load(&dir.path().join("none"))
            .unwrap()
            .auths
            .is_empty());
    }
}
