//! `POST /build` (the classic builder's API, as `docker build` without buildx, docker-py's
//! `images.build` and compose use it) and `POST /build/prune`.

use std::collections::BTreeMap;

use berth_builder::{BuildError, BuildOptions, Message, Output};

use super::*;
use crate::build::EngineBackend;

fn int_param(q: &HashMap<String, String>, k: &str) -> ApiResult<i64> {
    match q.get(k).filter(|v| !v.is_empty()) {
        None => Ok(0),
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid value for {k}: {v}"))),
    }
}

fn json_param(q: &HashMap<String, String>, k: &str) -> ApiResult<Value> {
    match q.get(k).filter(|v| !v.is_empty()) {
        None => Ok(Value::Null),
        Some(v) => {
            serde_json::from_str(v).map_err(|e| ApiError::bad_request(format!("invalid {k}: {e}")))
        }
    }
}

/// The HostConfig of RUN containers from the build's parameters.
fn run_host_config(q: &HashMap<String, String>, extra_hosts: Vec<String>) -> ApiResult<Value> {
    let network = match q.get("networkmode").map(String::as_str) {
        None | Some("") | Some("default") => "default".to_string(),
        Some(n) => n.to_string(),
    };
    let extra_hosts: Vec<String> = extra_hosts
        .iter()
        .flat_map(|h| h.split(','))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    Ok(json!({
        "NetworkMode": network,
        "Memory": int_param(q, "memory")?,
        "MemorySwap": int_param(q, "memswap")?,
        "CpuShares": int_param(q, "cpushares")?,
        "CpuPeriod": int_param(q, "cpuperiod")?,
        "CpuQuota": int_param(q, "cpuquota")?,
        "CpusetCpus": q.get("cpusetcpus").cloned().unwrap_or_default(),
        "CpusetMems": q.get("cpusetmems").cloned().unwrap_or_default(),
        "ShmSize": int_param(q, "shmsize")?,
        "CgroupParent": q.get("cgroupparent").cloned().unwrap_or_default(),
        "Ulimits": json_param(q, "ulimits")?,
        "ExtraHosts": extra_hosts,
    }))
}

/// One line of the build's JSON stream.
fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push_str("\r\n");
    Bytes::from(s)
}

fn message_json(m: &Message) -> Value {
    match m {
        Message::Stream(s) => json!({"stream": s}),
        // dockerd colours a RUN's standard error red.
        Message::Stderr(s) => json!({"stream": format!("\u{1b}[91m{s}\u{1b}[0m")}),
        Message::Aux(id) => json!({"aux": {"ID": id}}),
        Message::Raw(v) => v.clone(),
    }
}

fn error_json(e: &BuildError) -> Value {
    let msg = e.to_string();
    let mut detail = json!({"message": msg});
    if let Some(c) = e.code() {
        detail["code"] = json!(c);
    }
    json!({"errorDetail": detail, "error": msg})
}

/// `POST /build`: the body is the context (a tar, plain or compressed, or a bare
/// Dockerfile); the answer is the build's JSON stream.
pub(crate) async fn build(State(e): S, Query(q): Q, req: Request) -> ApiResult<Response> {
    if qbool_or(&q, "squash", false) {
        return Err(ApiError::bad_request(
            "squash is only supported with experimental mode",
        ));
    }
    if q.get("version").is_some_and(|v| v == "2") {
        return Err(ApiError::bad_request(
            "BuildKit is not supported by berthd: build with the classic builder (DOCKER_BUILDKIT=0 or version=1)",
        ));
    }
    if let Some(r) = q.get("remote").filter(|r| !r.is_empty()) {
        return Err(ApiError::bad_request(format!(
            "error downloading remote context {r}: berthd builds only from a context sent in the request body"
        )));
    }
    if q.get("outputs")
        .is_some_and(|o| !o.is_empty() && o != "null" && o != "[]")
    {
        return Err(ApiError::bad_request(
            "build outputs (--output) are only supported with BuildKit",
        ));
    }
    if q.get("isolation")
        .is_some_and(|i| !i.is_empty() && i != "default")
    {
        return Err(ApiError::bad_request(format!(
            "Isolation {} is not supported on linux",
            q["isolation"]
        )));
    }
    let tags = query_values(req.uri(), "t");
    for t in &tags {
        berth_registry::Reference::parse(t)
            .map_err(|x| ApiError::internal(format!("invalid reference format: {x}")))
            .and_then(|r| {
                if r.digest.is_some() {
                    Err(ApiError::bad_request(format!(
                        "invalid tag {t:?}: a tag cannot hold a digest"
                    )))
                } else {
                    Ok(())
                }
            })?;
    }
    let mut build_args: BTreeMap<String, Option<String>> = BTreeMap::new();
    if let Value::Object(m) = json_param(&q, "buildargs")? {
        for (k, v) in m {
            build_args.insert(k, v.as_str().map(str::to_string));
        }
    }
    let labels: BTreeMap<String, String> = crate::string_map(&json_param(&q, "labels")?)
        .into_iter()
        .collect();
    let cache_from: Vec<String> = match json_param(&q, "cachefrom")? {
        Value::Array(a) => a
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    // `extrahosts` comes once with commas (the docker CLI) or once per host (docker-py).
    let host_config = run_host_config(&q, query_values(req.uri(), "extrahosts"))?;
    let auths: HashMap<String, berth_registry::AuthConfig> = req
        .headers()
        .get("X-Registry-Config")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE
                .decode(s.trim())
                .or_else(|_| base64::engine::general_purpose::STANDARD.decode(s.trim()))
                .ok()
        })
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let quiet = qbool_or(&q, "q", false);
    // The first `dockerfile` wins, as Go's FormValue (docker-py sends a second one holding
    // the Dockerfile's text when the file lies outside the context).
    let dockerfile_name = query_values(req.uri(), "dockerfile")
        .into_iter()
        .next()
        .unwrap_or_default();
    // The context, unpacked into a private directory.
    let scratch = e
        .config
        .data_root
        .join("build")
        .join(crate::container::new_id());
    let ctx = scratch.join("context");
    std::fs::create_dir_all(&ctx)?;
    let reader = body_reader(req.into_body());
    let (ctx2, name2) = (ctx.clone(), dockerfile_name.clone());
    let prepared = blocking(move || {
        berth_builder::context::unpack(reader, &ctx2)
            .and_then(|d| Ok((berth_builder::context::prepare(&ctx2, &name2)?, d)))
            .map_err(|x| ApiError::internal(x.to_string()))
    })
    .await;
    let (prepared, digests) = match prepared {
        Ok(p) => p,
        Err(err) => {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(err);
        }
    };
    let opts = BuildOptions {
        dockerfile: prepared.dockerfile,
        context: ctx,
        tags,
        target: q.get("target").cloned().filter(|t| !t.is_empty()),
        build_args,
        labels,
        no_cache: qbool_or(&q, "nocache", false),
        pull: qbool_or(&q, "pull", false),
        cache_from,
        rm: qbool_or(&q, "rm", true),
        force_rm: qbool_or(&q, "forcerm", false),
        platform: q.get("platform").cloned().filter(|p| !p.is_empty()),
        host_arch: crate::host_arch().to_string(),
        digests: std::sync::Arc::new(digests),
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    {
        let e = e.clone();
        let scratch = scratch.clone();
        tokio::spawn(async move {
            let backend = EngineBackend::new(e, host_config, auths, scratch.clone());
            let out = Output(tx);
            let r = berth_builder::build(&backend, &opts, &out).await;
            drop(out);
            drop(backend);
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&scratch)).await;
            let _ = done_tx.send(r);
        });
    }
    type Done =
        futures_util::future::BoxFuture<'static, berth_builder::Result<berth_builder::Built>>;
    let mut done: Done = Box::pin(async move {
        done_rx.await.unwrap_or_else(|_| {
            Err(BuildError::Backend(
                "the build ended without a result".into(),
            ))
        })
    });
    // A request the builder refuses (a Dockerfile that does not parse, an unknown target)
    // is an HTTP error; anything later is the stream's last line. Until the first message
    // it is not known which: a build that ends before saying anything is waited for.
    let first = rx.recv().await;
    if first.is_none() {
        let result = done.await;
        if let Err(err) = &result {
            if err.is_request() {
                let status = match err {
                    BuildError::Context(_) => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::BAD_REQUEST,
                };
                return Err(ApiError::new(status, err.to_string()));
            }
        }
        done = Box::pin(std::future::ready(result));
    }
    struct St {
        first: Option<Message>,
        rx: mpsc::UnboundedReceiver<Message>,
        done: Option<Done>,
        quiet: bool,
    }
    let st = St {
        first,
        rx,
        done: Some(done),
        quiet,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            let m = match st.first.take() {
                Some(m) => Some(m),
                None => st.rx.recv().await,
            };
            match m {
                Some(m) => {
                    if st.quiet {
                        continue;
                    }
                    return Some((Ok::<_, std::io::Error>(line(&message_json(&m))), st));
                }
                None => {
                    let done = st.done.take()?;
                    return match done.await {
                        Ok(built) if st.quiet => {
                            Some((Ok(line(&json!({"stream": format!("{}\n", built.id)}))), st))
                        }
                        Ok(_) => None,
                        Err(err) => Some((Ok(line(&error_json(&err))), st)),
                    };
                }
            }
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_default())
}

/// Whether an image is build cache: untagged, made by a build step.
pub(crate) fn is_build_cache(i: &berth_image::Image) -> bool {
    i.cache_key.is_some() && i.repo_tags.is_empty()
}

/// The size of an image's own layer (0 for a config-only step).
fn own_size(i: &berth_image::Image, all: &[berth_image::Image]) -> u64 {
    let parent = all.iter().find(|p| p.id == i.parent);
    let (parent_layers, parent_size) = parent.map(|p| (p.diff_ids.len(), p.size)).unwrap_or((0, 0));
    if i.diff_ids.len() > parent_layers {
        i.size.saturating_sub(parent_size)
    } else {
        0
    }
}

/// `system df`'s `BuildCache` entries.
pub(crate) fn build_cache_json(e: &Engine) -> ApiResult<Vec<Value>> {
    let all = e.images.list()?;
    Ok(all
        .iter()
        .filter(|i| is_build_cache(i))
        .map(|i| {
            let in_use = e.image_in_use(&i.id);
            let desc = i.raw_config["history"]
                .as_array()
                .and_then(|h| h.last())
                .and_then(|h| h["created_by"].as_str())
                .unwrap_or_default()
                .to_string();
            json!({
                "ID": i.id.trim_start_matches("sha256:"),
                "Parent": i.parent.trim_start_matches("sha256:"),
                "Parents": [i.parent.trim_start_matches("sha256:")],
                "Type": "regular",
                "Description": desc,
                "InUse": in_use,
                "Shared": all.iter().any(|c| c.parent == i.id),
                "Size": own_size(i, &all),
                "CreatedAt": i.config.created().clone().unwrap_or_default(),
                "LastUsedAt": Value::Null,
                "UsageCount": 0,
            })
        })
        .collect())
}

/// `POST /build/prune` (`docker builder prune`, `docker system prune`): removes the build
/// cache no container uses.
pub(crate) async fn build_prune(State(e): S, Query(q): Q) -> ApiResult<Response> {
    let f = super::filters(&q)?;
    // `until` is honoured; the BuildKit record filters have nothing to match here.
    if let Some(k) = f.keys().find(|k| k.as_str() != "until") {
        return Err(ApiError::bad_request(format!(
            "Invalid filter '{k}': berthd's build cache (intermediate images) takes only until"
        )));
    }
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let until: Vec<i64> = f
        .get("until")
        .into_iter()
        .flatten()
        .map(|v| crate::events::parse_time(v, now).map_err(ApiError::bad_request))
        .collect::<ApiResult<_>>()?;
    let e2 = e.clone();
    let (deleted, freed) = blocking(move || {
        let all = e2.images.list()?;
        let mut deleted = Vec::new();
        let mut freed = 0u64;
        for i in all.iter().filter(|i| is_build_cache(i)) {
            let created = i
                .config
                .created()
                .as_deref()
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                .and_then(|t| t.timestamp_nanos_opt())
                .unwrap_or(0);
            if e2.image_in_use(&i.id) || until.iter().any(|u| created >= *u) {
                continue;
            }
            let size = own_size(i, &all);
            if e2.images.remove(&i.id, true, true, &|_| false).is_ok() {
                deleted.push(i.id.trim_start_matches("sha256:").to_string());
                freed += size;
            }
        }
        Ok((deleted, freed))
    })
    .await?;
    Ok(ok_json(json!({
        "CachesDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) },
        "SpaceReclaimed": freed,
    })))
}
