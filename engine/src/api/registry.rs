//! HTTP side of the registry endpoints: `/images/create?fromImage=` (pull),
//! `/images/{name}/push`, `/auth`, `/distribution/{name}/json`, and `/info`'s `RegistryConfig`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_registry::{decode_registry_auth, docker_error_json, AuthConfig, RegistryConfig};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::registry::{Msg, ProgressStream};
use crate::Engine;

impl From<berth_registry::Error> for ApiError {
    fn from(e: berth_registry::Error) -> Self {
        let status = StatusCode::from_u16(e.kind().http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, e.to_string())
    }
}

/// Credentials from `X-Registry-Auth` (anonymous when absent or `{}`).
fn registry_auth(headers: &HeaderMap) -> ApiResult<AuthConfig> {
    match headers.get("X-Registry-Auth") {
        None => Ok(AuthConfig::default()),
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| ApiError::bad_request("invalid X-Registry-Auth header"))?;
            Ok(decode_registry_auth(s)?)
        }
    }
}

/// Docker's progress stream: one JSON message per line; a failure after the start is the
/// `{"errorDetail":…,"error":…}` line (the status is 200 by then).
fn stream_response(s: ProgressStream) -> Response {
    let head = futures_util::stream::iter(
        s.head
            .into_iter()
            .map(|v| Ok::<_, std::io::Error>(line(&v))),
    );
    let rest = futures_util::stream::unfold(Some(s.rest), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await? {
            Msg::Progress(v) => Some((Ok(line(&v)), Some(rx))),
            Msg::Done(Ok(())) => None,
            Msg::Done(Err(m)) => Some((Ok(line(&docker_error_json(&m))), None)),
        }
    });
    use futures_util::StreamExt;
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(head.chain(rest)))
        .unwrap_or_default()
}

fn line(v: &Value) -> Bytes {
    Bytes::from(format!("{v}\r\n"))
}

/// `POST /images/create?fromImage=…&tag=…&platform=…`.
pub async fn image_pull(
    e: Arc<Engine>,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let auth = registry_auth(headers)?;
    let from = q.get("fromImage").map(String::as_str).unwrap_or_default();
    let tag = q.get("tag").map(String::as_str).unwrap_or_default();
    let platform = q.get("platform").map(String::as_str).unwrap_or_default();
    let events = e.clone();
    let s = e
        .registry
        .pull(from, tag, platform, auth, move |ev| {
            events.emit_image_event(ev.action, &ev.image, &ev.name)
        })
        .await?;
    Ok(stream_response(s))
}

/// `POST /images/{name}/push?tag=…`.
pub async fn image_push(
    e: Arc<Engine>,
    name: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let auth = registry_auth(headers)?;
    let tag = q.get("tag").map(String::as_str).unwrap_or_default();
    let events = e.clone();
    let s = e
        .registry
        .push(&e.images, name, tag, auth, move |ev| {
            events.emit_image_event(ev.action, &ev.image, &ev.name)
        })
        .await?;
    Ok(stream_response(s))
}

/// `POST /auth`: checks credentials with the registry; the daemon keeps none.
pub async fn auth(State(e): State<Arc<Engine>>, body: Bytes) -> ApiResult<Response> {
    let auth: AuthConfig = if body.is_empty() {
        AuthConfig::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|err| ApiError::bad_request(format!("invalid JSON: {err}")))?
    };
    let res = e.registry.login(&auth).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        res.to_docker_json().to_string(),
    )
        .into_response())
}

/// `GET /distribution/{name}/json`.
pub async fn distribution(
    State(e): State<Arc<Engine>>,
    Path(rest): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Some(name) = rest.strip_suffix("/json") else {
        return Err(ApiError::not_found("page not found"));
    };
    let auth = registry_auth(&headers)?;
    let d = e.registry.inspect(name, &auth).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        d.to_docker_json().to_string(),
    )
        .into_response())
}

/// `/info`'s `RegistryConfig`, as dockerd reports it: insecure CIDRs (loopback always),
/// one `IndexConfigs` entry per named registry (Docker Hub, insecure hosts, mirrored hosts)
/// and Docker Hub's mirrors.
pub fn registry_info(c: &RegistryConfig) -> Value {
    let mut cidrs = vec!["::1/128".to_string(), "127.0.0.0/8".to_string()];
    let mut insecure_hosts = Vec::new();
    for r in &c.insecure_registries {
        let is_cidr = r
            .split_once('/')
            .is_some_and(|(ip, bits)| ip.parse::<IpAddr>().is_ok() && bits.parse::<u8>().is_ok());
        if is_cidr {
            if !cidrs.contains(r) {
                cidrs.push(r.clone());
            }
        } else {
            insecure_hosts.push(r.clone());
        }
    }
    let hub_mirrors: Vec<String> = c.registry_mirrors.iter().map(|m| slash(m)).collect();
    let mut index = serde_json::Map::new();
    index.insert(
        "docker.io".into(),
        json!({"Name": "docker.io", "Mirrors": hub_mirrors, "Secure": true, "Official": true}),
    );
    for h in &insecure_hosts {
        index.insert(
            h.clone(),
            json!({"Name": h, "Mirrors": c.mirrors.get(h).cloned().unwrap_or_default(), "Secure": false, "Official": false}),
        );
    }
    for (h, m) in &c.mirrors {
        if h == "docker.io" || index.contains_key(h) {
            continue;
        }
        index.insert(
            h.clone(),
            json!({"Name": h, "Mirrors": m, "Secure": true, "Official": false}),
        );
    }
    json!({
        "AllowNondistributableArtifactsCIDRs": null,
        "AllowNondistributableArtifactsHostnames": null,
        "InsecureRegistryCIDRs": cidrs,
        "IndexConfigs": index,
        "Mirrors": hub_mirrors,
    })
}

/// Mirrors as Docker prints them: with a trailing slash.
fn slash(m: &str) -> String {
    if m.ends_with('/') {
        m.to_string()
    } else {
        format!("{m}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_lists_insecure_registries_and_mirrors() {
        let c: RegistryConfig = serde_json::from_value(json!({
            "insecure-registries": ["myreg:5000", "10.0.0.0/8"],
            "registry-mirrors": ["https://mirror.example.com"],
            "mirrors": {"quay.io": ["http://10.1.2.3:5000"]},
        }))
        .unwrap();
        let v = registry_info(&c);
        assert_eq!(
            v["InsecureRegistryCIDRs"],
            json!(["::1/128", "127.0.0.0/8", "10.0.0.0/8"])
        );
        assert_eq!(v["Mirrors"], json!(["https://mirror.example.com/"]));
        assert_eq!(v["IndexConfigs"]["myreg:5000"]["Secure"], false);
        assert_eq!(v["IndexConfigs"]["docker.io"]["Official"], true);
        assert_eq!(
            v["IndexConfigs"]["quay.io"]["Mirrors"],
            json!(["http://10.1.2.3:5000"])
        );
    }

    #[test]
    fn registry_errors_keep_their_status() {
        let e: ApiError = berth_registry::Error::NotFound("manifest unknown".into()).into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e: ApiError = berth_registry::Error::Unauthorized("no".into()).into();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        let e: ApiError =
            berth_registry::Error::InvalidReference("invalid reference format".into()).into();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let mut h = HeaderMap::new();
        h.insert("X-Registry-Auth", "!!!".parse().unwrap());
        assert_eq!(
            registry_auth(&h).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}
