//! `login`: checks credentials against a registry (`/v2/` with basic auth, or the token
//! endpoint its bearer challenge names), as `docker login` / `POST /auth` do.

use std::time::Duration;

use crate::auth::{AuthConfig, DOCKER_HUB_AUTH_KEY};
use crate::error::{Error, Result};
use crate::reference::{normalize_server_address, registry_host};
use crate::Registry;

/// What a successful login answers (`POST /auth`: `{"Status","IdentityToken"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginResult {
    /// `Login Succeeded`.
    pub status: String,
    /// A refresh token from the token endpoint, when it gave one (else empty).
    pub identity_token: String,
}

impl LoginResult {
    /// The body of `POST /auth`: `{"Status":"Login Succeeded","IdentityToken":""}`.
    pub fn to_docker_json(&self) -> serde_json::Value {
        serde_json::json!({"Status": self.status, "IdentityToken": self.identity_token})
    }
}

impl Registry {
    /// Checks `auth` against the registry named by `auth.server_address` (Docker Hub when
    /// empty). Wrong credentials give [`Error::Unauthorized`] with Docker's text.
    pub async fn login(&self, auth: &AuthConfig) -> Result<LoginResult> {
        let server = normalize_server_address(&auth.server_address);
        let host = if server == DOCKER_HUB_AUTH_KEY {
            registry_host("docker.io")
        } else {
            server
        };
        let transport = self.config.transport(&host).await;
        let url = format!("{}://{host}/v2/", transport.scheme());
        crate::client::ensure_tls_provider();
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(transport == crate::client::Transport::HttpsSkipVerify)
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Http {
                context: "build http client".into(),
                source: e,
            })?;
        let http_err = |e| Error::Http {
            context: format!("Get \"{url}\""),
            source: e,
        };
        let (user, password) = auth.user_password().unwrap_or_default();
        let resp = http.get(&url).send().await.map_err(http_err)?;
        if resp.status().is_success() {
            return Ok(succeeded(String::new()));
        }
        if resp.status().as_u16() != 401 {
            return Err(Error::Unauthorized(format!(
                "login attempt to {url} failed with status: {}",
                status_text(resp.status())
            )));
        }
        let challenge = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let (scheme, params) = parse_challenge(&challenge);
        if scheme.eq_ignore_ascii_case("bearer") {
            let realm = params
                .iter()
                .find(|(k, _)| k == "realm")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            // offline_token asks for a refresh token, which `docker login` keeps as the
            // identity token (Docker's token handler does the same).
            let mut query: Vec<(&str, String)> = vec![
                ("account", user.clone()),
                ("client_id", "berth".into()),
                ("offline_token", "true".into()),
            ];
            if let Some((_, s)) = params.iter().find(|(k, _)| k == "service") {
                query.push(("service", s.clone()));
            }
            let mut req = http.get(&realm).query(&query);
            if !user.is_empty() {
                req = req.basic_auth(&user, Some(&password));
            }
            let resp = req.send().await.map_err(|e| Error::Http {
                context: format!("Get \"{realm}\""),
                source: e,
            })?;
            if !resp.status().is_success() {
                return Err(Error::Unauthorized(format!(
                    "Get \"{url}\": unauthorized: incorrect username or password"
                )));
            }
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let refresh = body["refresh_token"].as_str().unwrap_or("").to_string();
            return Ok(succeeded(refresh));
        }
        let resp = http
            .get(&url)
            .basic_auth(&user, Some(&password))
            .send()
            .await
            .map_err(http_err)?;
        if resp.status().is_success() {
            Ok(succeeded(String::new()))
        } else {
            Err(Error::Unauthorized(format!(
                "login attempt to {url} failed with status: {}",
                status_text(resp.status())
            )))
        }
    }
}

impl Registry {
    /// The credentials to hand the distribution client for `host`: as given, or, when they
    /// carry an identity token (a refresh token from an earlier login), an access token for
    /// `scope` fetched from the registry's token endpoint with the OAuth2 refresh grant.
    pub(crate) async fn oci_auth(
        &self,
        auth: &AuthConfig,
        host: &str,
        transport: crate::client::Transport,
        scope: &str,
    ) -> Result<oci_client::secrets::RegistryAuth> {
        if auth.identity_token.is_empty() {
            return Ok(auth.to_oci());
        }
        crate::client::ensure_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .danger_accept_invalid_certs(transport == crate::client::Transport::HttpsSkipVerify)
            .build()
            .map_err(|e| Error::Http {
                context: "build http client".into(),
                source: e,
            })?;
        let url = format!("{}://{host}/v2/", transport.scheme());
        let resp = http.get(&url).send().await.map_err(|e| Error::Http {
            context: format!("Get \"{url}\""),
            source: e,
        })?;
        let challenge = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let (scheme, params) = parse_challenge(&challenge);
        if !scheme.eq_ignore_ascii_case("bearer") {
            // No token endpoint: the identity token cannot be used; fall back to the rest.
            return Ok(auth.to_oci());
        }
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let realm = get("realm");
        let form = [
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", auth.identity_token.clone()),
            ("service", get("service")),
            ("scope", scope.to_string()),
            ("client_id", "berth".to_string()),
        ];
        let resp = http
            .post(&realm)
            .form(&form)
            .send()
            .await
            .map_err(|e| Error::Http {
                context: format!("Post \"{realm}\""),
                source: e,
            })?;
        if !resp.status().is_success() {
            return Err(Error::Unauthorized(format!(
                "Post \"{realm}\": unauthorized: identity token refused ({})",
                status_text(resp.status())
            )));
        }
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let token = body["access_token"]
            .as_str()
            .or_else(|| body["token"].as_str())
            .unwrap_or("")
            .to_string();
        if token.is_empty() {
            return Err(Error::Unauthorized(format!(
                "Post \"{realm}\": no access token in the answer"
            )));
        }
        Ok(oci_client::secrets::RegistryAuth::Bearer(token))
    }
}

fn succeeded(identity_token: String) -> LoginResult {
    LoginResult {
        status: "Login Succeeded".into(),
        identity_token,
    }
}

fn status_text(s: reqwest::StatusCode) -> String {
    format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or(""))
        .trim()
        .to_string()
}

/// `Bearer realm="https://x/token",service="reg"` → (`Bearer`, [(realm, ...), (service, ...)]).
pub(crate) fn parse_challenge(header: &str) -> (String, Vec<(String, String)>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = Vec::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let Some((key, after)) = s.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim().to_lowercase();
        let after = after.trim_start();
        let (value, rest) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (q[..end].to_string(), &q[end + 1..]),
                None => (q.to_string(), ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (after[..end].trim().to_string(), &after[end..]),
                None => (after.trim().to_string(), ""),
            }
        };
        params.push((key, value));
        s = rest.trim_start_matches([',', ' ']);
    }
    (scheme.to_string(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="http://127.0.0.1:1/token",service="berth-test",scope="repository:x:pull""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(p[0], ("realm".into(), "http://127.0.0.1:1/token".into()));
        assert_eq!(p[1], ("service".into(), "berth-test".into()));
        assert_eq!(p[2].1, "repository:x:pull");
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(s, "Basic");
        assert_eq!(p[0].1, "Registry Realm");
    }
}
