//! Exec endpoints: create, start, resize, inspect.

use super::*;

pub(crate) fn new_exec_id() -> String {
    crate::container::new_id()
}

pub(crate) async fn exec_create(
    State(e): S,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let mut body = parse_body(&body)?;
    // Go decodes field names case-insensitively (docker-py sends `detachKeys`).
    super::containers::canonical_keys(
        &mut body,
        &[
            "User",
            "Privileged",
            "Tty",
            "ConsoleSize",
            "AttachStdin",
            "AttachStderr",
            "AttachStdout",
            "Detach",
            "DetachKeys",
            "Env",
            "WorkingDir",
            "Cmd",
        ],
    );
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

pub(crate) fn get_exec(e: &Engine, id: &str) -> ApiResult<Exec> {
    e.execs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
}

pub(crate) fn set_exec(e: &Engine, id: &str, f: impl FnOnce(&mut Exec)) {
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
pub(crate) fn exec_process(e: &Engine, rec: &Record, cfg: &Value) -> ApiResult<Value> {
    // The exec's user (its own -u, else the container's), resolved in the container's files
    // (read through its layers, nothing written): uid, gid, groups and HOME.
    let spec_user = cfg["User"]
        .as_str()
        .filter(|u| !u.is_empty())
        .or_else(|| rec.config["User"].as_str())
        .unwrap_or("");
    let layers = e.images.rootfs_layers(&rec.image_id, &rec.id)?;
    let user = crate::container::resolve_user(&layers, rec, spec_user)?;
    let owned = e.spec_files(rec);
    let mut files = owned.as_spec();
    files.user = Some(&user);
    // The exec's process runs as given, without the container's init in front.
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
    Ok(p)
}

pub(crate) async fn exec_start(
    State(e): S,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<Response> {
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
    // The process gets a terminal by the exec's config; the stream is raw only when the start
    // asks for Tty, else framed, as dockerd (`exec_start(socket=True)` of a tty exec reads
    // 8-byte headers in docker-py).
    let tty = ex.config["Tty"].as_bool().unwrap_or(false);
    let raw = opts["Tty"].as_bool().unwrap_or(false);
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
        // The exec's process record goes in the background: the client's stream (and
        // `docker exec`) need not wait for it.
        tokio::spawn(async move {
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
        });
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
    Ok(hijack(req, raw, move |sink, stdin| async move {
        // The stream stays open until the exit code is recorded: clients read it from
        // GET /exec/{id}/json as soon as the stream ends (docker exec's exit status). A
        // detach (the detach keys) closes it at once, the process running on.
        let hold = sink.clone();
        let (tx, mut rx) = tokio::sync::oneshot::channel::<bool>();
        let e3 = e2.clone();
        let xid = id.clone();
        let pumper = tokio::spawn(async move {
            let r = pump(
                &e3,
                &cid,
                &xid,
                raw,
                streams,
                true,
                mode,
                &sink,
                stdin,
                || {},
            )
            .await;
            let _ = tx.send(r.unwrap_or(false));
        });
        let mut waiter = tokio::spawn(start_and_wait(e2));
        tokio::select! {
            _ = &mut waiter => {
                let _ = tokio::time::timeout(Duration::from_secs(5), &mut rx).await;
            }
            detached = &mut rx => {
                if !detached.unwrap_or(false) {
                    let _ = tokio::time::timeout(Duration::from_secs(5), &mut waiter).await;
                }
            }
        }
        pumper.abort();
        drop(hold);
    }))
}

pub(crate) async fn exec_resize(
    State(e): S,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    let ex = get_exec(&e, &id)?;
    resize_pty(&e, &ex.container_id, &id, &q).await?;
    Ok(StatusCode::OK.into_response())
}

pub(crate) async fn exec_inspect(State(e): S, Path(id): Path<String>) -> ApiResult<Response> {
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
