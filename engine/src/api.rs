//! The Docker Engine API (v1.45, clients down to 1.24): routes, version negotiation, and the
//! translation of each endpoint to `Engine` calls.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
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

pub const API_VERSION: &str = "1.45";
pub const MIN_API_VERSION: &str = "1.24";

type S = State<Arc<Engine>>;
type Q = Query<HashMap<String, String>>;

fn version_tuple(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Strips `/v1.NN` from the path, refusing versions outside what we serve (Docker's messages).
fn strip_version(uri: &Uri) -> Result<Option<Uri>, ApiError> {
    let path = uri.path();
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok(None);
    };
    let (ver, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let Some(v) = version_tuple(ver) else {
        return Ok(None);
    };
    let max = version_tuple(API_VERSION).unwrap_or((1, 45));
    let min = version_tuple(MIN_API_VERSION).unwrap_or((1, 24));
    if v > max {
        return Err(ApiError::bad_request(format!(
            "client version {ver} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    if v < min {
        return Err(ApiError::bad_request(format!(
            "client version {ver} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    let pq = match uri.query() {
        Some(q) => format!("{tail}?{q}"),
        None => tail.to_string(),
    };
    Ok(pq.parse().ok())
}

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
        .route("/events", get(crate::events_api::events))
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
        .route("/containers/{id}/top", get(container_top))
        .route("/containers/{id}/stats", get(container_stats))
        .route("/containers/{id}/exec", post(exec_create))
        .route("/containers/{id}", delete(container_remove))
        .route("/exec/{id}/start", post(exec_start))
        .route("/exec/{id}/resize", post(exec_resize))
        .route("/exec/{id}/json", get(exec_inspect))
        .route("/images/json", get(image_list))
        .route("/images/create", post(image_create))
        .route("/images/load", post(image_load))
        .route("/images/get", get(image_save))
        .route("/images/prune", post(image_prune))
        .route("/auth", post(crate::registry_api::auth))
        .route(
            "/distribution/{*rest}",
            get(crate::registry_api::distribution),
        )
        .route(
            "/images/{*rest}",
            get(image_get_dispatch)
                .post(image_post_dispatch)
                .delete(image_remove),
        )
        .fallback(|| async { ApiError::not_found("page not found") })
        .with_state(engine)
}

/// Serves the API on every `-H` address until SIGTERM/SIGINT.
pub async fn serve(engine: Arc<Engine>, hosts: &[String]) -> anyhow::Result<()> {
    let tls = engine.config.tls.clone();
    let app = router(engine);
    let svc = tower::service_fn(move |mut req: Request| {
        let app = app.clone();
        async move {
            let mut resp = match strip_version(req.uri()) {
                Err(e) => e.into_response(),
                Ok(new) => {
                    if let Some(u) = new {
                        *req.uri_mut() = u;
                    }
                    use tower::ServiceExt;
                    match app.oneshot(req).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    }
                }
            };
            common_headers(resp.headers_mut());
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let mut tasks = Vec::new();
    for h in hosts {
        if let Some(path) = h.strip_prefix("unix://") {
            let path = std::path::PathBuf::from(path);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            // A stale socket from a killed daemon.
            if std::os::unix::net::UnixStream::connect(&path).is_err() {
                let _ = std::fs::remove_file(&path);
            }
            let listener = tokio::net::UnixListener::bind(&path)
                .map_err(|e| anyhow::anyhow!("listen on {h}: {e}"))?;
            tracing::info!(address = %h, "API listening");
            let svc = svc.clone();
            tasks.push(tokio::spawn(async move {
                let make = axum::ServiceExt::<Request>::into_make_service(svc);
                let _ = axum::serve(listener, make).await;
            }));
        } else if h.starts_with("fd://") {
            let listeners = systemd_listeners()?;
            for l in listeners {
                let svc = svc.clone();
                tasks.push(tokio::spawn(async move {
                    let make = axum::ServiceExt::<Request>::into_make_service(svc);
                    let _ = axum::serve(l, make).await;
                }));
            }
        } else if h.starts_with("tcp://") {
            let listener = crate::listen::bind(h, tls.as_ref()).await?;
            tasks.push(tokio::spawn(crate::listen::serve(listener, svc.clone())));
        } else {
            anyhow::bail!(
                "unsupported -H {h}: berthd listens on unix://, fd:// and tcp:// (with TLS)"
            );
        }
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down; containers keep running");
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// Unix listeners passed by systemd socket activation (LISTEN_PID, LISTEN_FDS).
fn systemd_listeners() -> anyhow::Result<Vec<tokio::net::UnixListener>> {
    let pid: u32 = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let n: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    if pid != std::process::id() || n < 1 {
        anyhow::bail!("-H fd:// needs sockets from systemd (LISTEN_FDS); none were passed");
    }
    let mut out = Vec::new();
    for fd in 3..3 + n {
        use std::os::fd::FromRawFd;
        // SAFETY: systemd hands us these descriptors, open and ours, starting at 3.
        let std_l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
        std_l.set_nonblocking(true)?;
        out.push(tokio::net::UnixListener::from_std(std_l)?);
    }
    Ok(out)
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

fn qbool(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k)
        .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True" | "yes"))
}

fn parse_body(body: &Bytes) -> ApiResult<Value> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
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

// ---- system --------------------------------------------------------------------------------

async fn ping() -> Response {
    let mut r = (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"),
        ],
        "OK",
    )
        .into_response();
    r.headers_mut()
        .insert("Builder-Version", HeaderValue::from_static("1"));
    r
}

fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

async fn version() -> Response {
    let v = env!("CARGO_PKG_VERSION");
    ok_json(json!({
        "Platform": {"Name": "berth"},
        "Components": [{"Name": "Engine", "Version": v, "Details": {
            "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
            "Arch": crate::host_arch(), "KernelVersion": kernel_version(), "GitCommit": "",
            "GoVersion": "", "BuildTime": "", "Experimental": "false"}}],
        "Version": v,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "n/a (Rust)",
        "Os": "linux",
        "Arch": crate::host_arch(),
        "KernelVersion": kernel_version(),
        "BuildTime": "",
    }))
}

fn cgroup_version() -> &'static str {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

async fn info(State(e): S) -> Response {
    let list = e.list();
    let running = list.iter().filter(|r| r.state.status == "running").count();
    let paused = list.iter().filter(|r| r.state.status == "paused").count();
    let images = e.images.list().map(|l| l.len()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|n| n.parse::<u64>().ok())
                })
        })
        .unwrap_or(0)
        * 1024;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    ok_json(json!({
        "ID": "berth",
        "Containers": list.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": list.len() - running - paused,
        "Images": images,
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
        "Plugins": {"Volume": [], "Network": ["host", "none"], "Authorization": null, "Log": ["json-file"]},
        "MemoryLimit": true, "SwapLimit": false, "CpuCfsPeriod": true, "CpuCfsQuota": true,
        "CPUShares": true, "CPUSet": true, "PidsLimit": true, "IPv4Forwarding": true,
        "Debug": false, "NFd": 0, "OomKillDisable": false, "NGoroutines": 0,
        "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(),
        "NEventsListener": 0,
        "KernelVersion": kernel_version(),
        "OperatingSystem": "berth",
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": crate::registry_api::registry_info(e.registry.config()),
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem,
        "DockerRootDir": e.config.data_root,
        "Name": host,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": {"berth-runtime": {"path": "berth-runtime"}},
        "DefaultRuntime": "berth-runtime",
        "Swarm": {"LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "docker-init",
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""},
        "InitCommit": {"ID": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Warnings": null,
    }))
}

async fn system_df(State(e): S) -> ApiResult<Response> {
    let du = e.images.disk_usage()?;
    let images: Vec<Value> = e
        .images
        .list()?
        .iter()
        .map(|i| {
            let n = e.list().iter().filter(|r| r.image_id == i.id).count();
            image_summary(i, n as i64)
        })
        .collect();
    let containers: Vec<Value> = e
        .list()
        .iter()
        .map(|r| {
            let mut s = container_summary(r);
            let rw = du
                .containers
                .iter()
                .find(|(c, _)| c == &r.id)
                .map(|x| x.1)
                .unwrap_or(0);
            s["SizeRw"] = json!(rw);
            s
        })
        .collect();
    // Unpacked layers, plus what berth keeps beside them: the layers' original blobs (for
    // pushes and saves) and partial downloads.
    let kept = crate::registry::dir_size(&e.images.root().join("blobs/sha256"))
        + e.registry.downloads_size();
    Ok(ok_json(json!({
        "LayersSize": du.layers_size + kept,
        "Images": images,
        "Containers": containers,
        "Volumes": [],
        "BuildCache": [],
    })))
}

// ---- containers ----------------------------------------------------------------------------

async fn container_create(State(e): S, Query(q): Q, body: Bytes) -> ApiResult<Response> {
    let body = parse_body(&body)?;
    if !body.is_object() {
        return Err(ApiError::bad_request("invalid JSON: expected an object"));
    }
    check_create_types(&body)?;
    let e2 = e.clone();
    let name = q.get("name").cloned();
    let rec = tokio::task::spawn_blocking(move || e2.create(name.as_deref(), body))
        .await
        .map_err(|x| ApiError::internal(x.to_string()))??;
    Ok(json_resp(
        StatusCode::CREATED,
        json!({"Id": rec.id, "Warnings": []}),
    ))
}

/// dockerd decodes the create body into typed structs, so a value of the wrong JSON type is a
/// 400 "invalid JSON" there; berth keeps the body as JSON, so the typed fields are checked here.
fn check_create_types(body: &Value) -> ApiResult<()> {
    const HOST_INTS: &[&str] = &[
        "Memory",
        "MemorySwap",
        "MemoryReservation",
        "NanoCpus",
        "CpuShares",
        "CpuPeriod",
        "CpuQuota",
        "PidsLimit",
        "ShmSize",
        "OomScoreAdj",
        "BlkioWeight",
    ];
    const HOST_BOOLS: &[&str] = &["Privileged", "ReadonlyRootfs", "AutoRemove", "Init"];
    const HOST_STRINGS: &[&str] = &["NetworkMode", "IpcMode", "PidMode", "CgroupParent"];
    const STRINGS: &[&str] = &["Image", "User", "WorkingDir", "Hostname", "StopSignal"];
    let go_type = |v: &Value| match v {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "null",
    };
    let fits = |v: &Value, want: &str| match want {
        "int64" => v.is_i64() || v.is_u64(),
        "bool" => v.is_boolean(),
        "string" => v.is_string(),
        _ => v.is_object(),
    };
    let hc = &body["HostConfig"];
    let checks: [(&[&str], &str, &str, &Value); 6] = [
        (
            &["HostConfig"],
            "container.HostConfig",
            "ContainerConfigWrapper",
            body,
        ),
        (HOST_INTS, "int64", "HostConfig.HostConfig", hc),
        (HOST_BOOLS, "bool", "HostConfig.HostConfig", hc),
        (HOST_STRINGS, "string", "HostConfig.HostConfig", hc),
        (CONFIG_BOOLS, "bool", "ContainerConfigWrapper.Config", body),
        (STRINGS, "string", "ContainerConfigWrapper.Config", body),
    ];
    for (fields, want, scope, obj) in checks {
        for f in fields {
            let v = &obj[*f];
            if !v.is_null() && !fits(v, want) {
                return Err(ApiError::bad_request(format!(
                    "invalid JSON: json: cannot unmarshal {} into Go struct field {scope}.{f} of type {want}",
                    go_type(v)
                )));
            }
        }
    }
    Ok(())
}

fn human_since(rfc: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(rfc) else {
        return String::new();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".into(),
        s if s < 172800 => format!("{} hours", s / 3600),
        s => format!("{} days", s / 86400),
    }
}

fn status_text(r: &Record) -> String {
    match r.state.status.as_str() {
        "running" => format!("Up {}", human_since(&r.state.started_at)),
        "paused" => format!("Up {} (Paused)", human_since(&r.state.started_at)),
        "exited" => format!(
            "Exited ({}) {} ago",
            r.state.exit_code,
            human_since(&r.state.finished_at)
        ),
        "removing" => "Removal In Progress".into(),
        "created" => "Created".into(),
        other => other.to_string(),
    }
}

fn unix(rfc: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc)
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

fn container_summary(r: &Record) -> Value {
    let cmd = std::iter::once(r.path.clone())
        .chain(r.args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    json!({
        "Id": r.id,
        "Names": [r.name],
        "Image": r.image,
        "ImageID": r.image_id,
        "Command": cmd,
        "Created": unix(&r.created),
        "Ports": [],
        "Labels": r.labels(),
        "State": r.state.status,
        "Status": status_text(r),
        "HostConfig": {"NetworkMode": r.host_config["NetworkMode"]},
        "NetworkSettings": {"Networks": networks(&r.host_config)},
        "Mounts": mount_points(&r.host_config),
    })
}

/// `NetworkSettings.Networks`: the container's one network (its network mode; `default` is
/// `bridge`, as dockerd names it) with dockerd's endpoint fields, empty while berth has no
/// bridge (the container then has a private loopback-only namespace).
fn networks(host_config: &Value) -> Value {
    let mode = match host_config["NetworkMode"].as_str() {
        None | Some("") | Some("default") => "bridge",
        Some(m) => m,
    };
    json!({ mode: {
        "IPAMConfig": null, "Links": null, "Aliases": null, "MacAddress": "", "DriverOpts": null,
        "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
        "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": null,
    }})
}

/// Docker's `MountPoint`s for the container's host-path binds (`src:dst[:opts]`).
fn mount_points(host_config: &Value) -> Value {
    let binds = host_config["Binds"].as_array().into_iter().flatten();
    let points = binds.filter_map(Value::as_str).filter_map(|b| {
        let mut parts = b.splitn(3, ':');
        let (src, dst) = (parts.next()?, parts.next()?);
        let mode = parts.next().unwrap_or_default();
        let opts: Vec<&str> = mode.split(',').collect();
        let propagation = opts
            .iter()
            .find(|o| o.ends_with("private") || o.ends_with("shared") || o.ends_with("slave"))
            .copied()
            .unwrap_or("rprivate");
        Some(json!({
            "Type": "bind",
            "Source": src,
            "Destination": dst,
            "Mode": mode,
            "RW": !opts.contains(&"ro"),
            "Propagation": propagation,
        }))
    });
    Value::Array(points.collect())
}

async fn container_list(State(e): S, Query(q): Q) -> ApiResult<Response> {
    let all = qbool(&q, "all");
    let f = filters(&q)?;
    let mut out = Vec::new();
    for r in e.list() {
        if !all && !r.running() && !f.contains_key("status") {
            continue;
        }
        let keep = f.iter().all(|(k, vals)| {
            let matches = |v: &String| match k.as_str() {
                "status" => r.state.status == *v,
                "id" => r.id.starts_with(v.as_str()),
                "name" => r
                    .name
                    .trim_start_matches('/')
                    .contains(v.trim_start_matches('/')),
                "label" => {
                    let labels = r.labels();
                    match v.split_once('=') {
                        Some((k, val)) => labels.get(k).is_some_and(|x| x == val),
                        None => labels.contains_key(v),
                    }
                }
                "ancestor" => {
                    r.image == *v
                        || r.image_id == *v
                        || e.images.get(v).is_ok_and(|i| i.id == r.image_id)
                }
                "exited" => r.state.status == "exited" && r.state.exit_code.to_string() == *v,
                _ => true,
            };
            // As dockerd: every label filter must match; other keys match any of their values.
            if k == "label" {
                vals.iter().all(matches)
            } else {
                vals.iter().any(matches)
            }
        });
        if keep {
            out.push(container_summary(&r));
        }
    }
    if let Some(n) = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        out.truncate(n);
    }
    Ok(ok_json(Value::Array(out)))
}

fn inspect_json(e: &Engine, r: &Record) -> Value {
    let dir = e.container_dir(&r.id);
    let upper = e.images.rootfs_upper(&r.id);
    let mut config = r.config.clone();
    for &k in CONFIG_BOOLS {
        if config[k].is_null() {
            config[k] = json!(false);
        }
    }
    json!({
        "Id": r.id,
        "Created": r.created,
        "Path": r.path,
        "Args": r.args,
        "State": {
            "Status": r.state.status,
            "Running": r.running(),
            "Paused": r.state.status == "paused",
            "Restarting": false,
            "OOMKilled": r.state.oom_killed,
            "Dead": r.state.status == "dead",
            "Pid": r.state.pid,
            "ExitCode": r.state.exit_code,
            "Error": r.state.error,
            "StartedAt": r.state.started_at,
            "FinishedAt": r.state.finished_at,
        },
        "Image": r.image_id,
        "ResolvConfPath": dir.join("resolv.conf"),
        "HostnamePath": dir.join("hostname"),
        "HostsPath": dir.join("hosts"),
        "LogPath": r.log_path,
        "Name": r.name,
        "RestartCount": r.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": null,
        "HostConfig": host_config_inspect(&r.host_config),
        "GraphDriver": {"Name": "overlay2", "Data": {"UpperDir": upper}},
        "Mounts": mount_points(&r.host_config),
        "Config": config,
        "NetworkSettings": {"Bridge": "", "SandboxID": "", "Ports": {}, "Networks": networks(&r.host_config), "IPAddress": "", "Gateway": "", "MacAddress": ""},
    })
}

/// Config fields that are booleans in dockerd's typed struct: checked at create, printed as
/// `false` by inspect when the client left them out.
const CONFIG_BOOLS: &[&str] = &[
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
];

/// The stored HostConfig with dockerd's zero values filled in: dockerd inspects a typed
/// struct, so every field prints (`{{.HostConfig.Memory}}` is `0`, not `<no value>`), whatever
/// the client sent at create.
fn host_config_inspect(stored: &Value) -> Value {
    let mut hc = json!({
        "Binds": null, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
        "NetworkMode": "bridge", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": false, "VolumeDriver": "", "VolumesFrom": null, "ConsoleSize": [0, 0],
        "CapAdd": null, "CapDrop": null, "CgroupnsMode": "private", "Dns": [], "DnsOptions": [],
        "DnsSearch": [], "ExtraHosts": null, "GroupAdd": null, "IpcMode": "private", "Cgroup": "",
        "Links": null, "OomScoreAdj": 0, "PidMode": "", "Privileged": false, "PublishAllPorts": false,
        "ReadonlyRootfs": false, "SecurityOpt": null, "UTSMode": "", "UsernsMode": "",
        "ShmSize": 67108864, "Runtime": "runc", "Isolation": "", "CpuShares": 0, "Memory": 0,
        "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [],
        "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": [],
        "DeviceCgroupRules": null, "DeviceRequests": null, "MemoryReservation": 0, "MemorySwap": 0,
        "MemorySwappiness": null, "OomKillDisable": null, "PidsLimit": null, "Ulimits": [],
        "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
    });
    if let (Some(out), Some(given)) = (hc.as_object_mut(), stored.as_object()) {
        for (k, v) in given {
            // A null the client sent does not hide a zero value dockerd would print.
            if !v.is_null() || !out.contains_key(k) {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    hc
}

async fn container_inspect(State(e): S, Path(id): Path<String>) -> ApiResult<Response> {
    let r = e.find(&id)?;
    Ok(ok_json(inspect_json(&e, &r)))
}

async fn container_start(State(e): S, Path(id): Path<String>) -> ApiResult<Response> {
    if e.start(&id).await? {
        Ok(no_content())
    } else {
        Ok(StatusCode::NOT_MODIFIED.into_response())
    }
}

async fn container_stop(State(e): S, Path(id): Path<String>, Query(q): Q) -> ApiResult<Response> {
    let t = q.get("t").and_then(|t| t.parse().ok());
    if e.stop(&id, t, q.get("signal").map(String::as_str)).await? {
        Ok(no_content())
    } else {
        Ok(StatusCode::NOT_MODIFIED.into_response())
    }
}

async fn container_restart(
    State(e): S,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    let t = q.get("t").and_then(|t| t.parse().ok());
    e.stop(&id, t, q.get("signal").map(String::as_str)).await?;
    let rec = e.find(&id)?;
    e.wait_for(&rec.id, Some(Duration::from_secs(5)), |r| !r.running())
        .await;
    // As dockerd: RestartCount counts restarts by the restart policy, not `docker restart`.
    e.start(&id).await?;
    e.emit_container_id(&id, "restart", &[]);
    Ok(no_content())
}

async fn container_kill(State(e): S, Path(id): Path<String>, Query(q): Q) -> ApiResult<Response> {
    let s = q.get("signal").map(String::as_str).unwrap_or("SIGKILL");
    let sig =
        parse_signal(s).ok_or_else(|| ApiError::bad_request(format!("Invalid signal: {s}")))?;
    e.kill(&id, sig).await?;
    Ok(no_content())
}

async fn container_pause(State(e): S, Path(id): Path<String>) -> ApiResult<Response> {
    e.pause(&id).await?;
    Ok(no_content())
}

async fn container_unpause(State(e): S, Path(id): Path<String>) -> ApiResult<Response> {
    e.resume(&id).await?;
    Ok(no_content())
}

async fn container_wait(State(e): S, Path(id): Path<String>, Query(q): Q) -> ApiResult<Response> {
    let rec = e.find(&id)?;
    let cond = q
        .get("condition")
        .cloned()
        .unwrap_or_else(|| "not-running".into());
    if !["not-running", "next-exit", "removed", ""].contains(&cond.as_str()) {
        return Err(ApiError::bad_request(format!(
            "invalid condition: \"{cond}\""
        )));
    }
    // Headers go out at once (the docker CLI starts the container only after it got them);
    // the status follows when the condition is met.
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(async move {
        let exits = rec.exits;
        let code = match cond.as_str() {
            "next-exit" => e
                .wait_for(&rec.id, None, |r| r.exits > exits)
                .await
                .map(|r| r.state.exit_code),
            "removed" => {
                let mut last = rec.state.exit_code;
                let mut rx = e.subscribe();
                while let Ok(r) = e.find(&rec.id) {
                    last = r.state.exit_code;
                    tokio::select! {
                        c = rx.changed() => if c.is_err() { break },
                        _ = tx.closed() => return,
                    }
                }
                Some(last)
            }
            _ => e
                .wait_for(&rec.id, None, |r| !r.running())
                .await
                .map(|r| r.state.exit_code),
        };
        let code = code.unwrap_or(rec.state.exit_code);
        let body = json!({"StatusCode": code, "Error": null}).to_string();
        let _ = tx.send(Ok(Bytes::from(format!("{body}\n")))).await;
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .unwrap_or_default())
}

async fn container_rename(State(e): S, Path(id): Path<String>, Query(q): Q) -> ApiResult<Response> {
    let name = q.get("name").cloned().unwrap_or_default();
    if !crate::container::valid_name(&name) {
        return Err(ApiError::bad_request(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    let full = format!("/{}", name.trim_start_matches('/'));
    let rec = e.find(&id)?;
    if let Some(other) = e
        .list()
        .into_iter()
        .find(|r| r.name == full && r.id != rec.id)
    {
        return Err(ApiError::conflict(format!(
            "Conflict. The container name \"{full}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
            other.id
        )));
    }
    e.update(&rec.id, |r| r.name = full)?;
    e.emit_container_id(&rec.id, "rename", &[("oldName", rec.name.clone())]);
    Ok(no_content())
}

async fn resize_pty(
    e: &Engine,
    id: &str,
    exec_id: &str,
    q: &HashMap<String, String>,
) -> ApiResult<()> {
    let h = q.get("h").and_then(|v| v.parse().ok()).unwrap_or(0);
    let w = q.get("w").and_then(|v| v.parse().ok()).unwrap_or(0);
    e.sup
        .tasks()
        .resize_pty(pb::ResizePtyRequest {
            namespace: e.sup.namespace.clone(),
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            width: w,
            height: h,
        })
        .await?;
    Ok(())
}

async fn container_resize(State(e): S, Path(id): Path<String>, Query(q): Q) -> ApiResult<Response> {
    let rec = e.find(&id)?;
    if !rec.running() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            rec.id
        )));
    }
    resize_pty(&e, &rec.id, "", &q).await?;
    let hw = |k: &str| q.get(k).cloned().unwrap_or_default();
    e.emit_container(&rec, "resize", &[("height", hw("h")), ("width", hw("w"))]);
    Ok(StatusCode::OK.into_response())
}

async fn container_remove(State(e): S, Path(id): Path<String>, Query(q): Q) -> ApiResult<Response> {
    e.remove(&id, qbool(&q, "force")).await?;
    Ok(no_content())
}

async fn container_prune(State(e): S) -> ApiResult<Response> {
    let mut deleted = Vec::new();
    for r in e.list() {
        if !r.running() && e.remove(&r.id, false).await.is_ok() {
            deleted.push(r.id);
        }
    }
    Ok(ok_json(
        json!({"ContainersDeleted": deleted, "SpaceReclaimed": 0}),
    ))
}

async fn container_top(State(e): S, Path(id): Path<String>, Query(q): Q) -> ApiResult<Response> {
    let rec = e.find(&id)?;
    if !rec.running() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            rec.id
        )));
    }
    let pids: Vec<u32> = e
        .sup
        .tasks()
        .list_pids(pb::ListPidsRequest {
            namespace: e.sup.namespace.clone(),
            container_id: rec.id.clone(),
        })
        .await?
        .into_inner()
        .processes
        .iter()
        .map(|p| p.pid)
        .collect();
    let args = q.get("ps_args").cloned().unwrap_or_else(|| "-ef".into());
    let out = tokio::process::Command::new("ps")
        .args(args.split_whitespace())
        .output()
        .await
        .map_err(|x| ApiError::internal(format!("ps: {x}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let titles: Vec<&str> = header.split_whitespace().collect();
    let pid_col = titles
        .iter()
        .position(|t| *t == "PID")
        .ok_or_else(|| ApiError::internal("Couldn't find PID field in ps output"))?;
    let mut procs = Vec::new();
    for l in lines {
        let fields: Vec<&str> = l.split_whitespace().collect();
        let Some(pid) = fields.get(pid_col).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pids.contains(&pid) {
            let n = titles.len();
            let mut row: Vec<String> = fields[..n - 1.min(n)]
                .iter()
                .map(|s| s.to_string())
                .collect();
            row.truncate(n - 1);
            row.push(fields[(n - 1).min(fields.len())..].join(" "));
            procs.push(row);
        }
    }
    e.emit_container(&rec, "top", &[]);
    Ok(ok_json(json!({"Titles": titles, "Processes": procs})))
}

fn system_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    // USER_HZ is 100 on Linux.
    ticks * 10_000_000
}

async fn sample_stats(e: &Engine, r: &Record) -> ApiResult<Value> {
    let s = e
        .sup
        .tasks()
        .stats(pb::StatsRequest {
            namespace: e.sup.namespace.clone(),
            container_id: r.id.clone(),
        })
        .await?
        .into_inner()
        .stats
        .unwrap_or_default();
    let cpu = s.cpu.unwrap_or_default();
    let mem = s.memory.unwrap_or_default();
    let pids = s.pids.unwrap_or_default();
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    Ok(json!({
        "read": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "name": r.name,
        "id": r.id,
        "pids_stats": {"current": pids.current, "limit": pids.limit},
        "cpu_stats": {
            "cpu_usage": {"total_usage": cpu.usage_total_ns, "percpu_usage": cpu.per_cpu_ns,
                          "usage_in_kernelmode": cpu.usage_kernel_ns, "usage_in_usermode": cpu.usage_user_ns},
            "system_cpu_usage": system_cpu_ns(),
            "online_cpus": ncpu,
            "throttling_data": {"periods": cpu.throttling_periods, "throttled_periods": cpu.throttled_periods, "throttled_time": cpu.throttled_time_ns},
        },
        "memory_stats": {"usage": mem.usage, "max_usage": mem.max_usage, "limit": if mem.limit == 0 || mem.limit > (1 << 62) { 0 } else { mem.limit }, "stats": mem.raw, "failcnt": mem.failcnt},
        "blkio_stats": {},
        "networks": {},
    }))
}

async fn container_stats(State(e): S, Path(id): Path<String>, Query(q): Q) -> ApiResult<Response> {
    let rec = e.find(&id)?;
    let stream = q.get("stream").is_none_or(|v| v == "1" || v == "true");
    let zero = json!({"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 0, "online_cpus": 0});
    if !rec.running() {
        let v = json!({"read": "0001-01-01T00:00:00Z", "name": rec.name, "id": rec.id,
            "cpu_stats": zero.clone(), "precpu_stats": zero, "memory_stats": {}, "pids_stats": {}});
        return Ok(ok_json(v));
    }
    if !stream {
        let one_shot = qbool(&q, "one-shot");
        let first = sample_stats(&e, &rec).await?;
        let mut v = if one_shot {
            first.clone()
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            sample_stats(&e, &rec).await?
        };
        v["precpu_stats"] = if one_shot {
            zero
        } else {
            first["cpu_stats"].clone()
        };
        return Ok(ok_json(v));
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    tokio::spawn(async move {
        let mut pre = zero;
        while let Ok(rec) = e.find(&rec.id) {
            if !rec.running() {
                break;
            }
            let Ok(mut v) = sample_stats(&e, &rec).await else {
                break;
            };
            v["precpu_stats"] = pre.clone();
            pre = v["cpu_stats"].clone();
            if tx.send(Ok(Bytes::from(format!("{v}\n")))).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .unwrap_or_default())
}

async fn container_logs(State(e): S, Path(id): Path<String>, Query(q): Q) -> ApiResult<Response> {
    let rec = e.find(&id)?;
    let mut f = Filter {
        stdout: qbool(&q, "stdout"),
        stderr: qbool(&q, "stderr"),
        since: q
            .get("since")
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| *s > 0.0),
        until: q
            .get("until")
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| *s > 0.0),
        tail: q.get("tail").and_then(|t| t.parse::<usize>().ok()),
        timestamps: qbool(&q, "timestamps"),
    };
    if !f.stdout && !f.stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let follow = qbool(&q, "follow");
    let tty = rec.tty();
    let ctype = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let path = rec.log_path.clone();
    tokio::spawn(async move {
        let (entries, mut offset) = {
            let f2 = f.clone();
            let p = path.clone();
            tokio::task::spawn_blocking(move || logs::read_all(&p, &f2))
                .await
                .unwrap_or_default()
        };
        for en in &entries {
            if tx.send(Ok(f.render(en, tty))).await.is_err() {
                return;
            }
        }
        if !follow {
            return;
        }
        f.tail = None;
        let mut rx = e.subscribe();
        loop {
            for en in logs::read_from(&path, &mut offset, &f) {
                if tx.send(Ok(f.render(&en, tty))).await.is_err() {
                    return;
                }
            }
            let running = e.find(&rec.id).is_ok_and(|r| r.running());
            if !running {
                // Last lines written before the exit.
                for en in logs::read_from(&path, &mut offset, &f) {
                    let _ = tx.send(Ok(f.render(&en, tty))).await;
                }
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = rx.changed() => {}
                _ = tx.closed() => return,
            }
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, ctype)
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .unwrap_or_default())
}

// ---- attach / exec: hijacked streams -------------------------------------------------------

/// Where a hijacked stream's output goes, and where its stdin comes from.
type Sink = mpsc::Sender<Bytes>;

/// Upgrades the connection (101, `Upgrade: tcp`) when the client asks, else answers 200 with
/// a streamed body (no stdin then); `run` gets the output sink and the client's stdin.
fn hijack<F, Fut>(mut req: Request, tty: bool, run: F) -> Response
where
    F: FnOnce(Sink, Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let ctype = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    let wants_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.to_str().unwrap_or_default().eq_ignore_ascii_case("tcp"));
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    if wants_upgrade {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let io = TokioIo::new(upgraded);
            let (rd, mut wr) = tokio::io::split(io);
            let writer = tokio::spawn(async move {
                while let Some(b) = rx.recv().await {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                    let _ = wr.flush().await;
                }
                let _ = wr.shutdown().await;
            });
            run(tx, Some(Box::new(rd))).await;
            let _ = writer.await;
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "tcp")
            .header(header::CONTENT_TYPE, ctype)
            .body(Body::empty())
            .unwrap_or_default();
    }
    tokio::spawn(run(tx, None));
    let stream = ReceiverStream::new(rx).map(Ok::<_, std::io::Error>);
    Response::builder()
        .header(header::CONTENT_TYPE, ctype)
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

/// Pumps a supervisor Attach stream of `exec_id` (empty: init) to `sink`, and `stdin` to it.
#[allow(clippy::too_many_arguments)]
/// What an attach does with the client's stdin, as dockerd's `container/stream/attach.go`:
/// without a TTY, EOF closes the container's stdin when `close_at_eof` (StdinOnce, execs);
/// otherwise EOF, or the detach keys on a TTY, end the attach and leave the process running.
#[derive(Debug, Clone)]
struct StdinMode {
    close_at_eof: bool,
    detach_keys: Vec<u8>,
}

impl StdinMode {
    fn new(close_at_eof: bool, detach_keys: Option<&str>) -> ApiResult<StdinMode> {
        let keys = detach_keys
            .filter(|k| !k.is_empty())
            .unwrap_or(crate::detach::DEFAULT_KEYS);
        Ok(StdinMode {
            close_at_eof,
            detach_keys: crate::detach::parse_keys(keys)?,
        })
    }
}

#[allow(clippy::too_many_arguments)]
async fn pump(
    e: &Engine,
    id: &str,
    exec_id: &str,
    tty: bool,
    streams: (bool, bool, bool),
    replay: bool,
    mode: StdinMode,
    sink: &Sink,
    stdin: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
) -> ApiResult<()> {
    let (stdin_on, stdout_on, stderr_on) = streams;
    let (req_tx, req_rx) = mpsc::channel::<types::AttachRequest>(16);
    req_tx
        .send(types::AttachRequest {
            msg: Some(types::attach_request::Msg::Open(types::AttachOpen {
                namespace: e.sup.namespace.clone(),
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                stdin: stdin_on,
                stdout: stdout_on,
                stderr: stderr_on,
                replay,
            })),
        })
        .await
        .map_err(|_| ApiError::internal("attach: channel closed"))?;
    let mut out = e
        .sup
        .tasks()
        .attach(ReceiverStream::new(req_rx))
        .await?
        .into_inner();
    // Fired when stdin ends the attach (detach keys, or EOF where stdin is not closed).
    let (end_tx, mut end_rx) = tokio::sync::oneshot::channel::<()>();
    if let (true, Some(mut rd)) = (stdin_on, stdin) {
        let tx = req_tx.clone();
        tokio::spawn(async move {
            let mut proxy =
                crate::detach::EscapeProxy::new(if tty { mode.detach_keys } else { Vec::new() });
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        if mode.close_at_eof && !tty {
                            let _ = tx
                                .send(types::AttachRequest {
                                    msg: Some(types::attach_request::Msg::CloseStdin(true)),
                                })
                                .await;
                        } else {
                            // What was read before EOF goes out before the attach ends
                            // (ending it drops the request stream with what is queued).
                            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
                            while tx.capacity() < tx.max_capacity()
                                && tokio::time::Instant::now() < deadline
                            {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            let _ = end_tx.send(());
                            return;
                        }
                        break;
                    }
                    Ok(n) => {
                        let (data, detached) = proxy.feed(&buf[..n]);
                        if !data.is_empty() {
                            let msg = types::AttachRequest {
                                msg: Some(types::attach_request::Msg::Stdin(data)),
                            };
                            if tx.send(msg).await.is_err() {
                                break;
                            }
                        }
                        if detached {
                            let _ = end_tx.send(());
                            return;
                        }
                    }
                }
            }
            // Keep the request stream open until the output ends.
            tx.closed().await;
        });
    }
    loop {
        let chunk = tokio::select! {
            m = out.message() => match m {
                Ok(Some(chunk)) => chunk,
                _ => break,
            },
            Ok(()) = &mut end_rx => break,
        };
        let stream = if chunk.stream == types::StdStream::Stderr as i32 {
            2
        } else {
            1
        };
        let b = if tty {
            Bytes::from(chunk.data)
        } else {
            logs::frame(stream, &chunk.data)
        };
        if sink.send(b).await.is_err() {
            break;
        }
    }
    drop(req_tx);
    Ok(())
}

async fn container_attach(
    State(e): S,
    Path(id): Path<String>,
    Query(q): Q,
    req: Request,
) -> ApiResult<Response> {
    let rec = e.find(&id)?;
    let tty = rec.tty();
    let streams = (qbool(&q, "stdin"), qbool(&q, "stdout"), qbool(&q, "stderr"));
    let logs = qbool(&q, "logs");
    let stream = q.get("stream").is_none_or(|v| v == "1" || v == "true");
    let mode = StdinMode::new(
        rec.config["StdinOnce"].as_bool().unwrap_or(false),
        q.get("detachKeys").map(String::as_str),
    )?;
    e.attach_started(&rec.id);
    e.emit_container(&rec, "attach", &[]);
    let id = rec.id.clone();
    Ok(hijack(req, tty, move |sink, stdin| async move {
        // Before start: wait for the task, and replay so nothing written meanwhile is lost.
        let mut replay = logs;
        if !rec.running() && stream {
            replay = true;
            let exits = rec.exits;
            e.wait_for(&id, None, |r| r.running() || r.exits > exits)
                .await;
        }
        if stream {
            if let Err(err) = pump(&e, &id, "", tty, streams, replay, mode, &sink, stdin).await {
                tracing::debug!(container = %id, error = %err, "attach ended");
            }
        } else if logs {
            // logs=1 without stream: what the container wrote so far, from its log, as dockerd.
            let f = logs::Filter {
                stdout: streams.1,
                stderr: streams.2,
                ..Default::default()
            };
            let path = rec.log_path.clone();
            let f2 = f.clone();
            let (entries, _) = tokio::task::spawn_blocking(move || logs::read_all(&path, &f2))
                .await
                .unwrap_or_default();
            for en in &entries {
                if sink.send(f.render(en, tty)).await.is_err() {
                    break;
                }
            }
        }
        e.attach_ended(&id);
    }))
}

fn new_exec_id() -> String {
    crate::container::new_id()
}

async fn exec_create(State(e): S, Path(id): Path<String>, body: Bytes) -> ApiResult<Response> {
    let body = parse_body(&body)?;
    let rec = e.find(&id)?;
    if !rec.running() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            rec.id
        )));
    }
    if rec.state.status == "paused" {
        return Err(ApiError::conflict(format!(
            "Container {} is paused, unpause the container before exec",
            rec.id
        )));
    }
    if body["Cmd"].as_array().is_none_or(|a| a.is_empty()) {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    let ex = Exec {
        id: new_exec_id(),
        container_id: rec.id.clone(),
        config: body,
        running: false,
        exit_code: None,
        pid: 0,
    };
    let id = ex.id.clone();
    e.execs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone(), ex);
    e.emit_exec_event(&id, "exec_create");
    Ok(json_resp(StatusCode::CREATED, json!({"Id": id})))
}

fn get_exec(e: &Engine, id: &str) -> ApiResult<Exec> {
    e.execs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
}

fn set_exec(e: &Engine, id: &str, f: impl FnOnce(&mut Exec)) {
    if let Some(x) = e
        .execs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(id)
    {
        f(x);
    }
}

/// The exec's process spec: the container's process with the exec's overrides.
fn exec_process(e: &Engine, rec: &Record, cfg: &Value) -> ApiResult<Value> {
    let dir = e.container_dir(&rec.id);
    let files = crate::container::SpecFiles {
        hosts: &dir.join("hosts"),
        hostname: &dir.join("hostname"),
        resolv: &dir.join("resolv.conf"),
        init: None,
    };
    let mut r2 = rec.clone();
    r2.host_config["Init"] = json!(false);
    let spec = crate::container::build_spec(&r2, &files)?;
    let mut p = spec["process"].clone();
    p["args"] = cfg["Cmd"].clone();
    p["terminal"] = json!(cfg["Tty"].as_bool().unwrap_or(false));
    if let Some(env) = cfg["Env"].as_array() {
        if let Some(base) = p["env"].as_array_mut() {
            base.extend(env.iter().cloned());
        }
    }
    if let Some(w) = cfg["WorkingDir"].as_str().filter(|w| !w.is_empty()) {
        p["cwd"] = json!(w);
    }
    if let Some(u) = cfg["User"].as_str().filter(|u| !u.is_empty()) {
        let (user, group) = u.split_once(':').unwrap_or((u, ""));
        let uid: u32 = user.parse().unwrap_or(0);
        let gid: u32 = group.parse().unwrap_or(uid);
        p["user"] = json!({"uid": uid, "gid": gid});
    }
    Ok(p)
}

async fn exec_start(State(e): S, Path(id): Path<String>, req: Request) -> ApiResult<Response> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|x| ApiError::bad_request(x.to_string()))?;
    let opts = parse_body(&bytes)?;
    let req = Request::from_parts(parts, Body::empty());
    let ex = get_exec(&e, &id)?;
    if ex.running || ex.exit_code.is_some() {
        return Err(ApiError::conflict(format!(
            "Error: Exec command {id} has already run"
        )));
    }
    let rec = e.find(&ex.container_id)?;
    if !rec.running() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            rec.id
        )));
    }
    let tty = ex.config["Tty"].as_bool().unwrap_or(false) || opts["Tty"].as_bool().unwrap_or(false);
    let stdin_on = ex.config["AttachStdin"].as_bool().unwrap_or(false);
    let process = exec_process(&e, &rec, &ex.config)?;
    e.sup
        .tasks()
        .exec(pb::ExecTaskRequest {
            namespace: e.sup.namespace.clone(),
            container_id: rec.id.clone(),
            exec_id: id.clone(),
            spec: serde_json::to_vec(&process).map_err(|x| ApiError::internal(x.to_string()))?,
            io: Some(types::Io {
                stdin: stdin_on,
                terminal: tty,
                log_path: e
                    .container_dir(&rec.id)
                    .join(format!("exec-{}.log", &id[..12]))
                    .to_string_lossy()
                    .into_owned(),
                log_max_size: 1 << 20,
                log_max_files: 1,
                ..Default::default()
            }),
        })
        .await
        .map_err(|s| {
            let m = s.message().to_string();
            if m.contains("executable file not found") || m.contains("no such file") {
                ApiError::bad_request(format!("OCI runtime exec failed: {m}"))
            } else {
                ApiError::from(s)
            }
        })?;
    set_exec(&e, &id, |x| x.running = true);
    e.emit_exec_event(&id, "exec_start");
    let detach = opts["Detach"].as_bool().unwrap_or(false);
    let e2 = e.clone();
    let cid = rec.id.clone();
    let xid = id.clone();
    let start_and_wait = move |e: Arc<Engine>| async move {
        let started = e
            .sup
            .tasks()
            .start(pb::StartTaskRequest {
                namespace: e.sup.namespace.clone(),
                container_id: cid.clone(),
                exec_id: xid.clone(),
            })
            .await;
        match started {
            Ok(r) => set_exec(&e, &xid, |x| x.pid = r.into_inner().pid),
            Err(s) => {
                let m = s.message().to_string();
                let code = if m.contains("not found") || m.contains("no such file") {
                    127
                } else {
                    126
                };
                set_exec(&e, &xid, |x| {
                    x.running = false;
                    x.exit_code = Some(code);
                });
                return;
            }
        }
        let status = e
            .sup
            .tasks()
            .wait(pb::WaitTaskRequest {
                namespace: e.sup.namespace.clone(),
                container_id: cid.clone(),
                exec_id: xid.clone(),
            })
            .await
            .map(|r| r.into_inner().exit_status as i64)
            .unwrap_or(126);
        set_exec(&e, &xid, |x| {
            x.running = false;
            x.exit_code = Some(status);
        });
        e.emit_exec_event(&xid, "exec_die");
        let _ = e
            .sup
            .tasks()
            .delete(pb::DeleteTaskRequest {
                namespace: e.sup.namespace.clone(),
                container_id: cid,
                exec_id: xid,
                force: false,
            })
            .await;
    };
    if detach {
        tokio::spawn(start_and_wait(e2));
        return Ok(StatusCode::OK.into_response());
    }
    let streams = (
        stdin_on,
        ex.config["AttachStdout"].as_bool().unwrap_or(true),
        ex.config["AttachStderr"].as_bool().unwrap_or(true),
    );
    let cid = rec.id.clone();
    let mode = StdinMode::new(true, ex.config["DetachKeys"].as_str())?;
    Ok(hijack(req, tty, move |sink, stdin| async move {
        // The stream stays open until the exit code is recorded: clients read it from
        // GET /exec/{id}/json as soon as the stream ends (docker exec's exit status).
        let hold = sink.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let e3 = e2.clone();
        let xid = id.clone();
        let pumper = tokio::spawn(async move {
            let r = pump(&e3, &cid, &xid, tty, streams, true, mode, &sink, stdin).await;
            let _ = tx.send(());
            r
        });
        start_and_wait(e2).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        pumper.abort();
        drop(hold);
    }))
}

async fn exec_resize(State(e): S, Path(id): Path<String>, Query(q): Q) -> ApiResult<Response> {
    let ex = get_exec(&e, &id)?;
    resize_pty(&e, &ex.container_id, &id, &q).await?;
    Ok(StatusCode::OK.into_response())
}

async fn exec_inspect(State(e): S, Path(id): Path<String>) -> ApiResult<Response> {
    let ex = get_exec(&e, &id)?;
    Ok(ok_json(json!({
        "ID": ex.id,
        "Running": ex.running,
        "ExitCode": ex.exit_code,
        "ProcessConfig": {
            "tty": ex.config["Tty"].as_bool().unwrap_or(false),
            "entrypoint": ex.config["Cmd"][0],
            "arguments": ex.config["Cmd"].as_array().map(|a| a[1..].to_vec()).unwrap_or_default(),
            "privileged": false,
            "user": ex.config["User"],
        },
        "OpenStdin": ex.config["AttachStdin"].as_bool().unwrap_or(false),
        "OpenStdout": true,
        "OpenStderr": true,
        "CanRemove": false,
        "ContainerID": ex.container_id,
        "DetachKeys": "",
        "Pid": ex.pid,
    })))
}

// ---- images --------------------------------------------------------------------------------

fn image_summary(i: &berth_image::Image, containers: i64) -> Value {
    json!({
        "Id": i.id,
        "ParentId": i.parent,
        "RepoTags": i.repo_tags,
        "RepoDigests": i.repo_digests,
        "Created": i.config.created().as_deref().map(unix).unwrap_or(0),
        "Size": i.size,
        "SharedSize": -1,
        "VirtualSize": i.size,
        "Labels": i.raw_config["config"]["Labels"],
        "Containers": containers,
    })
}

async fn image_list(State(e): S, Query(q): Q) -> ApiResult<Response> {
    let f = filters(&q)?;
    let refs = f.get("reference").cloned().unwrap_or_default();
    let mut out = Vec::new();
    for mut i in e.images.list()? {
        let keep = f.iter().all(|(k, vals)| {
            vals.iter().any(|v| match k.as_str() {
                "dangling" => (v == "true") == i.repo_tags.is_empty(),
                "reference" => i.repo_tags.iter().any(|t| reference_matches(v, t)),
                "label" => {
                    let l = &i.raw_config["config"]["Labels"];
                    match v.split_once('=') {
                        Some((k, val)) => l[k] == val,
                        None => !l[v.as_str()].is_null(),
                    }
                }
                _ => true,
            })
        });
        if !keep {
            continue;
        }
        // As dockerd: with a reference filter, an image lists only the tags that matched.
        if !refs.is_empty() {
            i.repo_tags
                .retain(|t| refs.iter().any(|r| reference_matches(r, t)));
        }
        out.push(image_summary(&i, -1));
    }
    Ok(ok_json(Value::Array(out)))
}

/// Docker's reference filter (`reference.FamiliarMatch`): the pattern is matched, with `*`
/// wildcards, against `name:tag` and, when it names no tag, against the name alone.
fn reference_matches(pattern: &str, tag: &str) -> bool {
    let name = match tag.rfind(':') {
        Some(i) if !tag[i..].contains('/') => &tag[..i],
        _ => tag,
    };
    [tag, name]
        .iter()
        .any(|s| pattern == *s || glob(pattern, s))
}

/// `*` wildcards as in Docker's reference filter (path.Match: `*` stays within a path element).
fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, tail)) => {
            let Some(rest) = s.strip_prefix(head) else {
                return false;
            };
            // `*` takes any run of non-`/` characters, then the rest must match the tail.
            let stop = rest.find('/').unwrap_or(rest.len());
            (0..=stop).any(|n| glob(tail, &rest[n..]))
        }
    }
}

fn image_inspect_json(i: &berth_image::Image) -> Value {
    let c = &i.raw_config;
    json!({
        "Id": i.id,
        "RepoTags": i.repo_tags,
        "RepoDigests": i.repo_digests,
        "Parent": i.parent,
        "Comment": c["comment"].as_str().unwrap_or_default(),
        "Created": c["created"],
        "DockerVersion": c["docker_version"].as_str().unwrap_or_default(),
        "Author": c["author"].as_str().unwrap_or_default(),
        "Config": c["config"],
        "Architecture": c["architecture"],
        "Variant": c["variant"],
        "Os": c["os"],
        "Size": i.size,
        "VirtualSize": i.size,
        "GraphDriver": {"Name": "overlay2", "Data": null},
        "RootFS": {"Type": "layers", "Layers": i.diff_ids},
        "Metadata": {"LastTagTime": i.added},
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|x| ApiError::internal(x.to_string()))?
}

/// A request body as a blocking reader (for the image store), fed by a task.
fn body_reader(body: Body) -> impl std::io::Read + Send + 'static {
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Bytes>>(16);
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let item = chunk.map_err(std::io::Error::other);
            let stop = item.is_err();
            let tx = tx.clone();
            if tokio::task::spawn_blocking(move || tx.send(item))
                .await
                .map_or(true, |r| r.is_err())
                || stop
            {
                break;
            }
        }
    });
    ChannelReader {
        rx,
        buf: Bytes::new(),
    }
}

struct ChannelReader {
    rx: std::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    buf: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.recv() {
                Ok(Ok(b)) => self.buf = b,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        Ok(n)
    }
}

async fn image_create(State(e): S, Query(q): Q, req: Request) -> ApiResult<Response> {
    if q.get("fromImage").is_some_and(|s| !s.is_empty()) {
        return crate::registry_api::image_pull(e, &q, req.headers()).await;
    }
    let src = q.get("fromSrc").cloned().unwrap_or_default();
    if src != "-" {
        return Err(ApiError::bad_request(
            "only imports from the request body (fromSrc=-) are supported",
        ));
    }
    let repo = q.get("repo").cloned().unwrap_or_default();
    let tag = q.get("tag").cloned().unwrap_or_default();
    let reference = match (repo.is_empty(), tag.is_empty()) {
        (true, _) => None,
        (false, true) => Some(repo),
        (false, false) => Some(format!("{repo}:{tag}")),
    };
    let changes: Vec<String> = q
        .iter()
        .filter(|(k, _)| k.as_str() == "changes")
        .map(|(_, v)| v.clone())
        .collect();
    let opts = berth_image::ImportOptions {
        reference,
        changes,
        message: q.get("message").cloned().unwrap_or_default(),
        os: String::new(),
        architecture: String::new(),
    };
    let reader = body_reader(req.into_body());
    let store = e.images.clone();
    let img = blocking(move || Ok(store.import(reader, &opts)?)).await?;
    e.emit_image_event("import", &img.id, &img.id);
    Ok(ok_json(json!({"status": img.id})))
}

async fn image_load(State(e): S, Query(q): Q, req: Request) -> ApiResult<Response> {
    let reader = body_reader(req.into_body());
    let store = e.images.clone();
    let loaded = blocking(move || Ok(store.load(reader)?)).await?;
    let quiet = qbool(&q, "quiet");
    let mut out = String::new();
    for l in loaded {
        e.emit_image_event("load", &l.id, &l.id);
        if l.repo_tags.is_empty() {
            out.push_str(&json!({"stream": format!("Loaded image ID: {}\n", l.id)}).to_string());
        }
        for t in l.repo_tags {
            out.push_str(&json!({"stream": format!("Loaded image: {t}\n")}).to_string());
        }
        out.push('\n');
    }
    let _ = quiet;
    Ok(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

fn save_response(e: &Engine, names: Vec<String>) -> ApiResult<Response> {
    for n in &names {
        e.images.get(n)?;
    }
    for n in &names {
        e.emit_image_event("save", &e.images.get(n)?.id, n);
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let store = e.images.clone();
    tokio::task::spawn_blocking(move || {
        let w = ChannelWriter { tx };
        if let Err(err) = store.save(&names, w) {
            tracing::warn!(error = %err, "image save failed");
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .unwrap_or_default())
}

struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn image_save(State(e): S, uri: Uri) -> ApiResult<Response> {
    let names: Vec<String> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "names")
        .map(|(_, v)| percent_decode(v))
        .collect();
    save_response(&e, names)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn image_get_dispatch(State(e): S, Path(rest): Path<String>) -> ApiResult<Response> {
    if let Some(name) = rest.strip_suffix("/json") {
        let i = e.images.get(name)?;
        return Ok(ok_json(image_inspect_json(&i)));
    }
    if let Some(name) = rest.strip_suffix("/history") {
        let h = e.images.history(name)?;
        let out: Vec<Value> = h
            .iter()
            .map(|x| json!({"Id": x.id, "Created": x.created, "CreatedBy": x.created_by, "Tags": x.tags, "Size": x.size, "Comment": x.comment}))
            .collect();
        return Ok(ok_json(Value::Array(out)));
    }
    if let Some(name) = rest.strip_suffix("/get") {
        return save_response(&e, vec![name.to_string()]);
    }
    Err(ApiError::not_found("page not found"))
}

async fn image_post_dispatch(
    State(e): S,
    Path(rest): Path<String>,
    Query(q): Q,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if let Some(name) = rest.strip_suffix("/tag") {
        let repo = q.get("repo").cloned().unwrap_or_default();
        let tag = q.get("tag").cloned().unwrap_or_default();
        let target = if tag.is_empty() {
            repo
        } else {
            format!("{repo}:{tag}")
        };
        e.images.tag(name, &target)?;
        e.emit_image_event("tag", &e.images.get(&target)?.id, &target);
        return Ok(StatusCode::CREATED.into_response());
    }
    if let Some(name) = rest.strip_suffix("/push") {
        return crate::registry_api::image_push(e, name, &q, &headers).await;
    }
    Err(ApiError::not_found("page not found"))
}

async fn image_remove(State(e): S, Path(name): Path<String>, Query(q): Q) -> ApiResult<Response> {
    let force = qbool(&q, "force");
    let noprune = qbool(&q, "noprune");
    let image_id = e.images.get(&name).map(|i| i.id).unwrap_or_default();
    let e2 = e.clone();
    let removed = blocking(move || {
        Ok(e2
            .images
            .remove(&name, force, noprune, &|id| e2.image_in_use(id))?)
    })
    .await?;
    e.emit_image_removals(&image_id, &removed);
    Ok(ok_json(Value::Array(
        removed.iter().map(removed_json).collect(),
    )))
}

fn removed_json(r: &berth_image::Removed) -> Value {
    match r {
        berth_image::Removed::Untagged(t) => json!({"Untagged": t}),
        berth_image::Removed::Deleted(d) => json!({"Deleted": d}),
    }
}

async fn image_prune(State(e): S, Query(q): Q) -> ApiResult<Response> {
    let f = filters(&q)?;
    let all = f
        .get("dangling")
        .is_some_and(|v| v.iter().any(|x| x == "false"));
    let e2 = e.clone();
    let (report, partials) = blocking(move || {
        let report = e2.images.prune(all, &|id| e2.image_in_use(id))?;
        // Partial downloads kept for resuming pulls belong to no image: a prune drops them.
        Ok((report, e2.registry.clean_downloads()))
    })
    .await?;
    e.emit_image_removals("", &report.removed);
    Ok(ok_json(json!({
        "ImagesDeleted": report.removed.iter().map(removed_json).collect::<Vec<_>>(),
        "SpaceReclaimed": report.space_reclaimed + partials,
    })))
}

#[allow(dead_code)]
fn method_name(m: &Method) -> &str {
    m.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefix_is_stripped_and_checked() {
        let u: Uri = "/v1.45/containers/json?all=1".parse().unwrap();
        assert_eq!(
            strip_version(&u).unwrap().unwrap().to_string(),
            "/containers/json?all=1"
        );
        let u: Uri = "/v1.99/info".parse().unwrap();
        assert!(strip_version(&u).unwrap_err().message.contains("too new"));
        let u: Uri = "/v1.12/info".parse().unwrap();
        assert!(strip_version(&u).unwrap_err().message.contains("too old"));
        let u: Uri = "/info".parse().unwrap();
        assert!(strip_version(&u).unwrap().is_none());
    }

    #[test]
    fn filters_accept_both_shapes_and_globs() {
        let mut q = HashMap::new();
        q.insert(
            "filters".into(),
            r#"{"label":["a=b"],"status":{"running":true}}"#.into(),
        );
        let f = filters(&q).unwrap();
        assert_eq!(f["label"], vec!["a=b"]);
        assert_eq!(f["status"], vec!["running"]);
        assert!(glob("bu*", "busybox:latest"));
        assert!(!glob("x*", "busybox:latest"));
        assert!(!glob("a*", "a/b:c"));
        assert!(reference_matches("busybox", "busybox:latest"));
        assert!(reference_matches("busybox:latest", "busybox:latest"));
        assert!(!reference_matches("busybox:v1", "busybox:latest"));
        assert!(reference_matches(
            "localhost:5000/app",
            "localhost:5000/app:v1"
        ));
        assert!(reference_matches("x/*:v1", "x/tag:v1"));
        assert!(!reference_matches("x/*:v1", "x/busybox:latest"));
        assert_eq!(percent_decode("a%2Fb%3Ac"), "a/b:c");
    }
}
