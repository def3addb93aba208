//! Container endpoints: create, list, inspect, lifecycle, wait, top, stats, logs.

use super::*;

/// Config's fields as dockerd spells them.
const CONFIG_FIELDS: &[&str] = &[
    "Hostname",
    "Domainname",
    "User",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "ExposedPorts",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Env",
    "Cmd",
    "Healthcheck",
    "ArgsEscaped",
    "Image",
    "Volumes",
    "WorkingDir",
    "Entrypoint",
    "NetworkDisabled",
    "MacAddress",
    "OnBuild",
    "Labels",
    "StopSignal",
    "StopTimeout",
    "Shell",
    "HostConfig",
    "NetworkingConfig",
];

/// HostConfig's fields as dockerd spells them, besides the [`UPDATABLE`] ones.
const HOST_CONFIG_FIELDS: &[&str] = &[
    "Binds",
    "ContainerIDFile",
    "LogConfig",
    "NetworkMode",
    "PortBindings",
    "AutoRemove",
    "VolumeDriver",
    "VolumesFrom",
    "ConsoleSize",
    "Annotations",
    "CapAdd",
    "CapDrop",
    "CgroupnsMode",
    "Dns",
    "DnsOptions",
    "DnsSearch",
    "ExtraHosts",
    "GroupAdd",
    "IpcMode",
    "Cgroup",
    "Links",
    "OomScoreAdj",
    "PidMode",
    "Privileged",
    "PublishAllPorts",
    "ReadonlyRootfs",
    "SecurityOpt",
    "StorageOpt",
    "Tmpfs",
    "UTSMode",
    "UsernsMode",
    "ShmSize",
    "Sysctls",
    "Runtime",
    "Isolation",
    "DeviceRequests",
    "Mounts",
    "MaskedPaths",
    "ReadonlyPaths",
    "Init",
];

/// Renames fields to dockerd's spelling: Go decodes JSON field names case-insensitively, and
/// clients rely on it (docker-py sends `CPURealtimePeriod`).
pub(crate) fn canonical_keys(v: &mut Value, fields: &[&str]) {
    let Some(o) = v.as_object_mut() else { return };
    let renames: Vec<(String, &str)> = o
        .keys()
        .filter_map(|k| {
            fields
                .iter()
                .find(|f| f.eq_ignore_ascii_case(k) && **f != k.as_str())
                .map(|f| (k.clone(), *f))
        })
        .collect();
    for (from, to) in renames {
        if let Some(val) = o.remove(&from) {
            o.entry(to.to_string()).or_insert(val);
        }
    }
}

pub(crate) async fn container_create(State(e): S, Query(q): Q, body: Bytes) -> ApiResult<Response> {
    let mut body = parse_body(&body)?;
    if !body.is_object() {
        return Err(ApiError::bad_request("invalid JSON: expected an object"));
    }
    canonical_keys(&mut body, CONFIG_FIELDS);
    canonical_keys(
        &mut body["HostConfig"],
        &[HOST_CONFIG_FIELDS, UPDATABLE].concat(),
    );
    // docker-py's `create_container(runtime=)` puts Runtime beside Config's fields.
    if let Some(rt) = body
        .as_object_mut()
        .and_then(|o| o.remove("Runtime"))
        .filter(|r| r.as_str().is_some_and(|r| !r.is_empty()))
    {
        if body["HostConfig"].is_null() {
            body["HostConfig"] = json!({});
        }
        if body["HostConfig"]["Runtime"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
        {
            body["HostConfig"]["Runtime"] = rt;
        }
    }
    // Typed as dockerd decodes it: a mistyped field is Go's 400 "invalid JSON".
    super::models::CreateBody::decode(&body)?;
    let e2 = e.clone();
    let name = q.get("name").cloned();
    let (rec, warnings) = tokio::task::spawn_blocking(move || e2.create(name.as_deref(), body))
        .await
        .map_err(|x| ApiError::internal(x.to_string()))??;
    Ok(json_resp(
        StatusCode::CREATED,
        json!({"Id": rec.id, "Warnings": warnings}),
    ))
}

pub(crate) fn human_since(rfc: &str) -> String {
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

pub(crate) fn status_text(r: &Record) -> String {
    match r.state.status.as_str() {
        "running" => format!(
            "Up {}{}",
            human_since(&r.state.started_at),
            crate::container::health::ps_suffix(r)
        ),
        "paused" => format!("Up {} (Paused)", human_since(&r.state.started_at)),
        "exited" => format!(
            "Exited ({}) {} ago",
            r.state.exit_code,
            human_since(&r.state.finished_at)
        ),
        "restarting" => format!(
            "Restarting ({}) {} ago",
            r.state.exit_code,
            human_since(&r.state.finished_at)
        ),
        "removing" => "Removal In Progress".into(),
        "created" => "Created".into(),
        other => other.to_string(),
    }
}

pub(crate) fn unix(rfc: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc)
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

pub(crate) fn container_summary(r: &Record) -> Value {
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
        "Ports": super::networks::summary_ports(r),
        "Labels": r.labels(),
        "State": r.state.status,
        "Status": status_text(r),
        "HostConfig": {"NetworkMode": r.host_config["NetworkMode"]},
        "NetworkSettings": {"Networks": super::networks::container_networks(r)},
        "Mounts": mount_points(r),
    })
}

/// Docker's `MountPoint`s for the container's host-path binds (`src:dst[:opts]`).
pub(crate) fn mount_points(r: &Record) -> Value {
    let host_config = &r.host_config;
    let binds = host_config["Binds"].as_array().into_iter().flatten();
    let points = binds.filter_map(Value::as_str).filter_map(|b| {
        let mut parts = b.splitn(3, ':');
        let (src, dst) = (parts.next()?, parts.next()?);
        // Named volumes are among the container's volumes below.
        if !src.starts_with('/') {
            return None;
        }
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
    // --mount binds and tmpfs (volumes are among the container's volumes below).
    let mounts = host_config["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let dst = m["Target"].as_str()?;
            match m["Type"].as_str()? {
                "bind" => Some(json!({
                    "Type": "bind",
                    "Source": m["Source"],
                    "Destination": dst,
                    "Mode": "",
                    "RW": m["ReadOnly"].as_bool() != Some(true),
                    "Propagation": m["BindOptions"]["Propagation"]
                        .as_str()
                        .filter(|p| !p.is_empty())
                        .unwrap_or("rprivate"),
                })),
                "tmpfs" => Some(json!({
                    "Type": "tmpfs", "Source": "", "Destination": dst, "Mode": "",
                    "RW": m["ReadOnly"].as_bool() != Some(true), "Propagation": "",
                })),
                _ => None,
            }
        });
    let volumes = r.volumes.iter().map(|v| {
        if v.name.is_empty() {
            json!({
                "Type": "bind", "Source": v.source, "Destination": v.destination,
                "Mode": v.mode, "RW": v.rw, "Propagation": "rprivate",
            })
        } else {
            json!({
                "Type": "volume", "Name": v.name, "Source": v.source,
                "Destination": v.destination, "Driver": "local", "Mode": v.mode,
                "RW": v.rw, "Propagation": "",
            })
        }
    });
    Value::Array(points.chain(mounts).chain(volumes).collect())
}

/// Container states a `status` filter may name.
const STATUSES: &[&str] = &[
    "created",
    "restarting",
    "running",
    "removing",
    "paused",
    "exited",
    "dead",
];

/// A `publish` or `expose` filter value: `80`, `80/udp`, `8000-8080/tcp`.
fn port_filter(key: &str, v: &str) -> ApiResult<(u16, u16, String)> {
    let (ports, proto) = v.split_once('/').unwrap_or((v, "tcp"));
    let num = |p: &str| {
        p.parse::<u16>().map_err(|_| {
            ApiError::bad_request(format!(
                "error while looking up for {key} {v}: strconv.ParseUint: parsing {p:?}: invalid syntax"
            ))
        })
    };
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let n = num(ports)?;
            (n, n)
        }
    };
    Ok((lo, hi, proto.to_ascii_lowercase()))
}

pub(crate) async fn container_list(State(e): S, Query(q): Q) -> ApiResult<Response> {
    let all = qbool(&q, "all");
    let f = filters(&q)?;
    for v in f.get("health").into_iter().flatten() {
        if !["starting", "healthy", "unhealthy", "none"].contains(&v.as_str()) {
            return Err(ApiError::bad_request(format!(
                "Unrecognised filter value for health: {v}"
            )));
        }
    }
    const KEYS: &[&str] = &[
        "status", "exited", "label", "name", "id", "ancestor", "before", "since", "volume",
        "network", "publish", "expose", "health", "is-task",
    ];
    for (k, vals) in &f {
        if !KEYS.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!("Invalid filter '{k}'")));
        }
        for v in vals {
            match k.as_str() {
                "status" if !STATUSES.contains(&v.as_str()) => {
                    return Err(ApiError::bad_request(format!(
                        "Invalid filter 'status={v}'"
                    )))
                }
                "exited" if v.parse::<i64>().is_err() => {
                    return Err(ApiError::bad_request(format!(
                        "strconv.Atoi: parsing {v:?}: invalid syntax"
                    )))
                }
                "publish" | "expose" => {
                    port_filter(k, v)?;
                }
                _ => {}
            }
        }
    }
    // before= and since=: the creation time of the container named.
    let created_of = |key: &str| -> ApiResult<String> {
        e.find(key)
            .map(|r| r.created)
            .map_err(|_| ApiError::not_found(format!("no such container {key}")))
    };
    let before: Vec<String> = f
        .get("before")
        .into_iter()
        .flatten()
        .map(|v| created_of(v))
        .collect::<ApiResult<_>>()?;
    let since: Vec<String> = f
        .get("since")
        .into_iter()
        .flatten()
        .map(|v| created_of(v))
        .collect::<ApiResult<_>>()?;
    let mut out = Vec::new();
    for r in e.list() {
        // As dockerd: only a status filter lists stopped containers without `all`.
        if !all && !r.running() && !r.restarting() && !f.contains_key("status") {
            continue;
        }
        if before.iter().any(|b| r.created >= *b) || since.iter().any(|s| r.created <= *s) {
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
                "volume" => {
                    r.volumes
                        .iter()
                        .any(|m| m.name == *v || m.destination == *v)
                        || r.host_config["Binds"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|b| {
                                let b = b.as_str().unwrap_or_default();
                                b.split(':').take(2).any(|p| p == v)
                            })
                }
                "network" => r
                    .endpoints
                    .iter()
                    .any(|(name, ep)| name == v || ep.network_id.starts_with(v.as_str())),
                "health" => {
                    let h = r.state.health.as_ref().and_then(|h| h["Status"].as_str());
                    match v.as_str() {
                        "none" => h.is_none(),
                        want => h == Some(want),
                    }
                }
                // As dockerd 20.10: the host port of a binding.
                "publish" => port_filter(k, v).is_ok_and(|(lo, hi, proto)| {
                    r.published
                        .iter()
                        .any(|p| p.proto == proto && (lo..=hi).contains(&p.host_port))
                }),
                "expose" => port_filter(k, v).is_ok_and(|(lo, hi, proto)| {
                    r.config["ExposedPorts"]
                        .as_object()
                        .into_iter()
                        .flat_map(|m| m.keys())
                        .any(|key| {
                            let (port, pr) = key.split_once('/').unwrap_or((key, "tcp"));
                            pr == proto && port.parse::<u16>().is_ok_and(|n| (lo..=hi).contains(&n))
                        })
                }),
                // No swarm: no container is a task.
                "is-task" => v != "true" && v != "1",
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
    // `size=1` (`docker ps -s`): the writable layer, and that plus the image.
    if qbool(&q, "size") {
        for c in out.iter_mut() {
            let id = c["Id"].as_str().unwrap_or_default().to_string();
            let upper = e.images.rootfs_upper(&id);
            let rw = blocking(move || Ok(crate::registry::dir_size(&upper))).await?;
            let image = e
                .find(&id)
                .ok()
                .and_then(|r| e.images.get(&r.image_id).ok())
                .map(|i| i.size)
                .unwrap_or(0);
            c["SizeRw"] = json!(rw);
            c["SizeRootFs"] = json!(rw + image);
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

pub(crate) fn inspect_json(e: &Engine, r: &Record) -> Value {
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
            "Running": r.running() || r.restarting(),
            "Paused": r.state.status == "paused",
            "Restarting": r.restarting(),
            "OOMKilled": r.state.oom_killed,
            "Dead": r.state.status == "dead",
            "Pid": r.state.pid,
            "ExitCode": r.state.exit_code,
            "Error": r.state.error,
            "StartedAt": r.state.started_at,
            "FinishedAt": r.state.finished_at,
            "Health": r.state.health,
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
        "Mounts": mount_points(r),
        "Config": config,
        "NetworkSettings": super::networks::network_settings(r),
    })
}

/// Config fields that are booleans in dockerd's typed struct: checked at create, printed as
/// `false` by inspect when the client left them out.
pub(crate) const CONFIG_BOOLS: &[&str] = &[
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
];

/// The stored HostConfig with dockerd's zero values filled in: dockerd inspects a typed
/// struct, so every field prints (`{{.HostConfig.Memory}}` is `0`, not `<no value>`), whatever
/// the client sent at create. Runtime names the runtime that runs the container (berthd's
/// default is berth-runtime; `runc` is runc itself).
pub(crate) fn host_config_inspect(stored: &Value) -> Value {
    let mut hc = json!({
        "Binds": null, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
        "NetworkMode": "bridge", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": false, "VolumeDriver": "", "VolumesFrom": null, "ConsoleSize": [0, 0],
        "CapAdd": null, "CapDrop": null, "CgroupnsMode": "private", "Dns": [], "DnsOptions": [],
        "DnsSearch": [], "ExtraHosts": null, "GroupAdd": null, "IpcMode": "private", "Cgroup": "",
        "Links": null, "OomScoreAdj": 0, "PidMode": "", "Privileged": false, "PublishAllPorts": false,
        "ReadonlyRootfs": false, "SecurityOpt": null, "UTSMode": "", "UsernsMode": "",
        "ShmSize": 67108864, "Runtime": "berth-runtime", "Isolation": "", "CpuShares": 0, "Memory": 0,
        "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [],
        "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": [],
        "DeviceCgroupRules": null, "DeviceRequests": null, "MemoryReservation": 0, "MemorySwap": 0,
        "MemorySwappiness": null, "OomKillDisable": null, "PidsLimit": null, "Ulimits": [],
        "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
    });
    // dockerd's default cgroup namespace: the host's on cgroup v1 and hybrid hosts, a private
    // one on cgroup v2 (what create stores; older records lack it).
    if crate::container::options::HostFacts::get().unified {
        hc["CgroupnsMode"] = json!("private");
    } else {
        hc["CgroupnsMode"] = json!("host");
    }
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

pub(crate) async fn container_inspect(
    State(e): S,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    let r = e.find(&id)?;
    let mut v = inspect_json(&e, &r);
    // `size=1` (`docker inspect -s`): the writable layer, and that plus the image.
    if qbool(&q, "size") {
        let upper = e.images.rootfs_upper(&r.id);
        let rw = blocking(move || Ok(crate::registry::dir_size(&upper))).await?;
        let image = e.images.get(&r.image_id).map(|i| i.size).unwrap_or(0);
        v["SizeRw"] = json!(rw);
        v["SizeRootFs"] = json!(rw + image);
    }
    Ok(ok_json(v))
}

pub(crate) async fn container_start(State(e): S, Path(id): Path<String>) -> ApiResult<Response> {
    if e.start(&id).await? {
        Ok(no_content())
    } else {
        Ok(StatusCode::NOT_MODIFIED.into_response())
    }
}

pub(crate) async fn container_stop(
    State(e): S,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    let t = q.get("t").and_then(|t| t.parse().ok());
    if e.stop(&id, t, q.get("signal").map(String::as_str)).await? {
        Ok(no_content())
    } else {
        Ok(StatusCode::NOT_MODIFIED.into_response())
    }
}

pub(crate) async fn container_restart(
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

pub(crate) async fn container_kill(
    State(e): S,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    let s = q.get("signal").map(String::as_str).unwrap_or("SIGKILL");
    let sig =
        parse_signal(s).ok_or_else(|| ApiError::bad_request(format!("Invalid signal: {s}")))?;
    e.kill(&id, sig).await?;
    Ok(no_content())
}

pub(crate) async fn container_pause(State(e): S, Path(id): Path<String>) -> ApiResult<Response> {
    e.pause(&id).await?;
    Ok(no_content())
}

pub(crate) async fn container_unpause(State(e): S, Path(id): Path<String>) -> ApiResult<Response> {
    e.resume(&id).await?;
    Ok(no_content())
}

pub(crate) async fn container_wait(
    State(e): S,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
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
        let ended = match cond.as_str() {
            "next-exit" => e.wait_for(&rec.id, None, |r| r.exits > exits).await,
            "removed" => {
                let mut last = rec.clone();
                let mut rx = e.subscribe();
                while let Ok(r) = e.find(&rec.id) {
                    last = r;
                    tokio::select! {
                        c = rx.changed() => if c.is_err() { break },
                        _ = tx.closed() => return,
                    }
                }
                // The exit and the removal can come together: the code is kept a moment.
                if let Some(code) = e.removed_exit_code(&rec.id) {
                    last.state.exit_code = code;
                }
                Some(last)
            }
            _ => e.wait_for(&rec.id, None, |r| !r.running()).await,
        };
        // A failed start ends the wait too (it counts as an exit); its reason went to the
        // start call, so Error stays null, as dockerd answers (the docker CLI would print it).
        // Removed meanwhile (`--rm`): the exit code kept for a moment after the removal.
        let last = ended.unwrap_or_else(|| {
            let mut r = rec.clone();
            if let Some(code) = e.removed_exit_code(&rec.id) {
                r.state.exit_code = code;
            }
            r
        });
        let body = json!({"StatusCode": last.state.exit_code, "Error": null}).to_string();
        let _ = tx.send(Ok(Bytes::from(format!("{body}\n")))).await;
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .unwrap_or_default())
}

pub(crate) async fn container_rename(
    State(e): S,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
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

pub(crate) async fn resize_pty(
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

pub(crate) async fn container_resize(
    State(e): S,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
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

/// `DELETE /containers/{name}/{alias}?link=1`: removes a legacy link (the link's name is
/// the linking container's name and the alias), as `docker rm --link`.
pub(crate) async fn container_remove_link(
    State(e): S,
    Path((name, alias)): Path<(String, String)>,
    Query(q): Q,
) -> ApiResult<Response> {
    let full = format!("{name}/{alias}");
    if !qbool(&q, "link") {
        return Err(ApiError::no_such_container(&full));
    }
    let rec = e.find(&name)?;
    let links: Vec<String> = rec.host_config["Links"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l.as_str().map(str::to_string))
        .collect();
    let kept: Vec<String> = links
        .iter()
        .filter(|l| crate::network::split_link(l).1.trim_start_matches('/') != alias)
        .cloned()
        .collect();
    if kept.len() == links.len() {
        return Err(ApiError::not_found(format!(
            "Could not find container for entity id /{full}"
        )));
    }
    e.update(&rec.id, |r| {
        r.host_config["Links"] = if kept.is_empty() {
            Value::Null
        } else {
            json!(kept)
        };
    })?;
    Ok(no_content())
}

pub(crate) async fn container_remove(
    State(e): S,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    e.remove_with_volumes(&id, qbool(&q, "force"), qbool(&q, "v"))
        .await?;
    Ok(no_content())
}

/// `POST /containers/prune?filters=`: stopped containers (`until`, `label`, `label!`), with
/// the space their writable layers held.
pub(crate) async fn container_prune(State(e): S, Query(q): Q) -> ApiResult<Response> {
    let f = filters(&q)?;
    for k in f.keys() {
        if !["until", "label", "label!"].contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!("Invalid filter '{k}'")));
        }
    }
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let until: Vec<i64> = f
        .get("until")
        .into_iter()
        .flatten()
        .map(|v| crate::events::parse_time(v, now).map_err(ApiError::bad_request))
        .collect::<ApiResult<_>>()?;
    let mut deleted = Vec::new();
    let mut reclaimed = 0u64;
    for r in e.list() {
        if r.running() || r.restarting() {
            continue;
        }
        let created = chrono::DateTime::parse_from_rfc3339(&r.created)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .unwrap_or(0);
        if until.iter().any(|u| created >= *u) || !label_filters_keep(&r.labels(), &f) {
            continue;
        }
        let upper = e.images.rootfs_upper(&r.id);
        let size = blocking(move || Ok(crate::registry::dir_size(&upper))).await?;
        if e.remove(&r.id, false).await.is_ok() {
            deleted.push(r.id);
            reclaimed += size;
        }
    }
    Ok(ok_json(json!({
        "ContainersDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) },
        "SpaceReclaimed": reclaimed,
    })))
}

pub(crate) async fn container_top(
    State(e): S,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
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

pub(crate) fn system_cpu_ns() -> u64 {
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

pub(crate) async fn sample_stats(e: &Engine, r: &Record) -> ApiResult<Value> {
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

pub(crate) async fn container_stats(
    State(e): S,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    let rec = e.find(&id)?;
    let stream = qbool_or(&q, "stream", true);
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

pub(crate) async fn container_logs(
    State(e): S,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    let rec = e.find(&id)?;
    if rec.host_config["LogConfig"]["Type"].as_str() == Some("none") {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "configured logging driver does not support reading",
        ));
    }
    let f = Filter {
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
    // A follower counts as an attached client: the exit path lets it drain before the
    // shim, which spools what it has not read yet, goes away. It registers before it looks
    // at the state: the exit path marks the exit before it counts attached clients, so
    // either this sees the exit (and reads the files) or the exit path sees the follower.
    let following = follow && {
        e.attach_started(&rec.id);
        let running = e.find(&rec.id).is_ok_and(|r| r.running());
        if !running {
            e.attach_ended(&rec.id);
        }
        running
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        if following {
            let progress = || e.attach_progress(&rec.id);
            let followed = logs::follow(&e.sup, &rec.id, &f, tty, &tx, progress).await;
            e.attach_ended(&rec.id);
            match followed {
                Ok(true) => return,
                // No task any more: what it wrote is all in the files.
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(container_id = %rec.id, error = %err, "logs follow ended");
                    return;
                }
            }
        }
        let path = rec.log_path.clone();
        let f2 = f.clone();
        let entries = tokio::task::spawn_blocking(move || logs::read_all(&path, &f2).0)
            .await
            .unwrap_or_default();
        for en in &entries {
            if tx.send(Ok(f.render(en, tty))).await.is_err() {
                return;
            }
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, ctype)
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .unwrap_or_default())
}

/// The HostConfig fields `POST /containers/{id}/update` changes (dockerd's Resources and
/// RestartPolicy).
const UPDATABLE: &[&str] = &[
    "CpuShares",
    "Memory",
    "CgroupParent",
    "BlkioWeight",
    "BlkioWeightDevice",
    "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps",
    "CpuPeriod",
    "CpuQuota",
    "CpuRealtimePeriod",
    "CpuRealtimeRuntime",
    "CpusetCpus",
    "CpusetMems",
    "Devices",
    "DeviceCgroupRules",
    "KernelMemory",
    "KernelMemoryTCP",
    "MemoryReservation",
    "MemorySwap",
    "MemorySwappiness",
    "NanoCpus",
    "OomKillDisable",
    "PidsLimit",
    "Ulimits",
    "CpuCount",
    "CpuPercent",
    "IOMaximumIOps",
    "IOMaximumBandwidth",
    "RestartPolicy",
];

/// `POST /containers/{id}/update`: resources and the restart policy, applied to the running
/// container's cgroups at once.
pub(crate) async fn container_update(
    State(e): S,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let mut body = parse_body(&body)?;
    canonical_keys(&mut body, UPDATABLE);
    let rec = e.find(&id)?;
    let mut hc = rec.host_config.clone();
    for k in UPDATABLE {
        let v = &body[*k];
        let set = match v {
            Value::Null => false,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            // An empty RestartPolicy name leaves the policy as it is.
            Value::Object(o) => {
                !(o.is_empty()
                    || (*k == "RestartPolicy" && o["Name"].as_str().unwrap_or_default().is_empty()))
            }
            Value::Bool(b) => *b,
        };
        if set {
            hc[*k] = v.clone();
        }
    }
    for k in ["CgroupParent", "Devices", "DeviceCgroupRules", "Ulimits"] {
        if hc[k] != rec.host_config[k] {
            return Err(ApiError::bad_request(format!(
                "{k} cannot be changed by an update; re-create the container"
            )));
        }
    }
    if rec.auto_remove()
        && body["RestartPolicy"]["Name"]
            .as_str()
            .is_some_and(|n| !n.is_empty() && n != "no")
    {
        return Err(ApiError::bad_request(
            "Restart policy cannot be updated because AutoRemove is enabled for the container",
        ));
    }
    // As dockerd: a new memory limit above the recorded swap limit needs the swap too.
    let memory = body["Memory"].as_i64().unwrap_or(0);
    let old_swap = rec.host_config["MemorySwap"].as_i64().unwrap_or(0);
    if memory > 0
        && body["MemorySwap"].as_i64().unwrap_or(0) == 0
        && old_swap > 0
        && memory > old_swap
    {
        return Err(ApiError::bad_request(
            "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time",
        ));
    }
    let names = e.runtime_names();
    // The create-time checks of Config (hostname and modes) do not apply to an update.
    let warnings = crate::container::options::check(&mut hc, &json!({}), &names)?;
    if rec.running() {
        let mut updated = rec.clone();
        updated.host_config = hc.clone();
        let files = e.spec_files(&rec);
        let spec = crate::container::build_spec(&updated, &files.as_spec())?;
        let all = &spec["linux"]["resources"];
        let mut resources = serde_json::Map::new();
        for k in ["memory", "cpu", "pids", "blockIO"] {
            if !all[k].is_null() {
                resources.insert(k.into(), all[k].clone());
            }
        }
        e.sup
            .tasks()
            .update(pb::UpdateTaskRequest {
                namespace: e.sup.namespace.clone(),
                container_id: rec.id.clone(),
                resources: serde_json::to_vec(&Value::Object(resources))
                    .map_err(|x| ApiError::internal(x.to_string()))?,
            })
            .await
            .map_err(|s| {
                ApiError::internal(format!(
                    "Cannot update container {}: {}",
                    rec.id,
                    s.message()
                ))
            })?;
    }
    e.update(&rec.id, |r| r.host_config = hc)?;
    e.emit_container_id(&rec.id, "update", &[]);
    Ok(ok_json(json!({"Warnings": warnings})))
}
