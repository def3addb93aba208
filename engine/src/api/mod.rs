//! The Docker Engine API (v1.45, clients down to 1.24): the HTTP edge of berthd.
//!
//! One module per Docker object; each handler turns a request into typed arguments, calls
//! the engine's services, and shapes the answer. `server.rs` listens, `version.rs` strips and
//! checks `/v1.NN/`, `attach.rs` holds the hijacked streams and their framing.

mod archive;
mod attach;
mod build;
mod commit;
mod containers;
pub mod detach;
mod events;
mod exec;
mod images;
pub mod listen;
pub mod models;
mod networks;
pub mod registry;
mod server;
mod system;
pub mod version;
mod volumes;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::Router;
use berth_proto::supervisor::v1 as pb;
use berth_proto::types::v1 as types;
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::container::Record;
use crate::error::{ApiError, ApiResult};
use crate::logs::{self, Filter};
use crate::{parse_signal, Engine, Exec};

use self::archive::*;
use self::attach::*;
use self::commit::*;
use self::containers::*;
pub(crate) use self::exec::exec_process;
use self::exec::*;
use self::images::*;
pub use self::server::serve;
use self::system::*;
use self::version::strip_version;
pub use self::version::{API_VERSION, MIN_API_VERSION};

type S = State<Arc<Engine>>;

/// Docker's 404 for a path it does not serve, answered after the request's body is read: a
/// client still sending it would otherwise see the connection close (a broken pipe) instead
/// of the answer.
async fn unknown_endpoint(req: Request) -> ApiError {
    let mut body = req.into_body().into_data_stream();
    while let Some(Ok(_)) = body.next().await {}
    ApiError::not_found("page not found")
}
type Q = Query<HashMap<String, String>>;

fn common_headers(h: &mut HeaderMap) {
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert(
        header::SERVER,
        HeaderValue::from_static(concat!("berth/", env!("CARGO_PKG_VERSION"))),
    );
}

/// The router of every endpoint.
pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/_ping", get(ping).head(ping))
        .route("/version", get(version))
        .route("/info", get(info))
        .route("/system/df", get(system_df))
        .route("/build", post(self::build::build))
        .route("/build/prune", post(self::build::build_prune))
        .route("/events", get(self::events::events))
        .route("/swarm/leave", post(self::system::swarm_leave))
        .route("/swarm/init", post(self::system::swarm_refused))
        .route("/swarm/join", post(self::system::swarm_refused))
        .route("/swarm", any(self::system::not_a_manager))
        .route("/swarm/{*rest}", any(self::system::not_a_manager))
        .route("/services", any(self::system::not_a_manager))
        .route("/services/{*rest}", any(self::system::not_a_manager))
        .route("/nodes", any(self::system::not_a_manager))
        .route("/nodes/{*rest}", any(self::system::not_a_manager))
        .route("/tasks", any(self::system::not_a_manager))
        .route("/tasks/{*rest}", any(self::system::not_a_manager))
        .route("/secrets", any(self::system::not_a_manager))
        .route("/secrets/{*rest}", any(self::system::not_a_manager))
        .route("/configs", any(self::system::not_a_manager))
        .route("/configs/{*rest}", any(self::system::not_a_manager))
        .route("/containers/create", post(container_create))
        .route("/containers/json", get(container_list))
        .route("/containers/prune", post(container_prune))
        .route("/containers/{id}/json", get(container_inspect))
        .route("/containers/{id}/start", post(container_start))
        .route("/containers/{id}/stop", post(container_stop))
        .route("/containers/{id}/restart", post(container_restart))
        .route("/containers/{id}/kill", post(container_kill))
        .route("/containers/{id}/pause", post(container_pause))
        .route("/containers/{id}/unpause", post(container_unpause))
        .route("/containers/{id}/wait", post(container_wait))
        .route("/containers/{id}/rename", post(container_rename))
        .route("/containers/{id}/resize", post(container_resize))
        .route("/containers/{id}/attach", post(container_attach))
        .route("/containers/{id}/logs", get(container_logs))
        .route("/containers/{id}/changes", get(container_changes))
        .route("/containers/{id}/export", get(container_export))
        .route("/containers/{id}/update", post(container_update))
        .route("/commit", post(commit))
        .route(
            "/containers/{id}/archive",
            get(archive_get).head(archive_head).put(archive_put),
        )
        .route("/containers/{id}/top", get(container_top))
        .route("/containers/{id}/stats", get(container_stats))
        .route("/containers/{id}/exec", post(exec_create))
        .route("/containers/{id}", delete(container_remove))
        .route("/containers/{id}/{alias}", delete(container_remove_link))
        .route("/exec/{id}/start", post(exec_start))
        .route("/exec/{id}/resize", post(exec_resize))
        .route("/exec/{id}/json", get(exec_inspect))
        .route("/networks", get(self::networks::network_list))
        .route("/networks/create", post(self::networks::network_create))
        .route("/networks/prune", post(self::networks::network_prune))
        .route(
            "/networks/{id}",
            get(self::networks::network_inspect).delete(self::networks::network_remove),
        )
        .route(
            "/networks/{id}/connect",
            post(self::networks::network_connect),
        )
        .route(
            "/networks/{id}/disconnect",
            post(self::networks::network_disconnect),
        )
        .route("/volumes", get(self::volumes::volume_list))
        .route("/volumes/create", post(self::volumes::volume_create))
        .route("/volumes/prune", post(self::volumes::volume_prune))
        .route(
            "/volumes/{name}",
            get(self::volumes::volume_inspect).delete(self::volumes::volume_remove),
        )
        .route("/images/json", get(image_list))
        .route("/images/create", post(image_create))
        .route("/images/load", post(image_load))
        .route("/images/get", get(image_save))
        .route("/images/prune", post(image_prune))
        .route("/auth", post(self::registry::auth))
        .route("/distribution/{*rest}", get(self::registry::distribution))
        .route(
            "/images/{*rest}",
            get(image_get_dispatch)
                .post(image_post_dispatch)
                .delete(image_remove),
        )
        .fallback(unknown_endpoint)
        .with_state(engine)
}

fn json_resp(status: StatusCode, v: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn ok_json(v: Value) -> Response {
    json_resp(StatusCode::OK, v)
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// A boolean as Go's `strconv.ParseBool` reads it (docker-py sends `True`).
fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" | "yes" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" | "no" => Some(false),
        _ => None,
    }
}

/// A boolean query parameter; false when absent or not a boolean.
fn qbool(q: &HashMap<String, String>, k: &str) -> bool {
    qbool_or(q, k, false)
}

/// A boolean query parameter, `default` when absent or empty.
fn qbool_or(q: &HashMap<String, String>, k: &str, default: bool) -> bool {
    match q.get(k).map(String::as_str) {
        None | Some("") => default,
        Some(v) => go_bool(v).unwrap_or(false),
    }
}

fn parse_body(body: &Bytes) -> ApiResult<Value> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

/// The `label` (every `key` or `key=value` present) and `label!` (none of them) filters of a
/// prune or list, against an object's labels.
fn label_filters_keep(
    labels: &std::collections::BTreeMap<String, String>,
    f: &HashMap<String, Vec<String>>,
) -> bool {
    let has = |w: &String| match w.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(w),
    };
    f.get("label").is_none_or(|l| l.iter().all(has))
        && !f.get("label!").is_some_and(|l| l.iter().any(has))
}

/// Docker's filters query (`{"label":["a=b"]}` or the legacy `{"label":{"a=b":true}}`).
fn filters(q: &HashMap<String, String>) -> ApiResult<HashMap<String, Vec<String>>> {
    let Some(raw) = q.get("filters").filter(|s| !s.is_empty()) else {
        return Ok(HashMap::new());
    };
    let v: Value = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid filter: {e}")))?;
    let mut out = HashMap::new();
    for (k, val) in v.as_object().into_iter().flatten() {
        let list: Vec<String> = match val {
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            Value::Object(m) => m.keys().cloned().collect(),
            _ => Vec::new(),
        };
        out.insert(k.clone(), list);
    }
    Ok(out)
}
