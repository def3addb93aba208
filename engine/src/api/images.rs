//! Image endpoints: list, inspect, pull and import, load, save, tag, push, history, remove, prune.

use super::*;

pub(crate) fn image_summary(i: &berth_image::Image, containers: i64) -> Value {
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

pub(crate) async fn image_list(State(e): S, Query(q): Q) -> ApiResult<Response> {
    let f = filters(&q)?;
    for (k, vals) in &f {
        if !["dangling", "label", "before", "since", "reference", "until"].contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!("Invalid filter '{k}'")));
        }
        if k == "dangling" {
            if let Some(v) = vals
                .iter()
                .find(|v| !["true", "false", "1", "0"].contains(&v.as_str()))
            {
                return Err(ApiError::bad_request(format!(
                    "Invalid filter 'dangling={v}'"
                )));
            }
        }
    }
    let created = |i: &berth_image::Image| i.config.created().as_deref().map(unix).unwrap_or(0);
    // before= and since=: the creation time of the image named (dockerd's 404 when none).
    let mut bounds: Vec<(bool, i64)> = Vec::new();
    for (k, before) in [("before", true), ("since", false)] {
        for v in f.get(k).into_iter().flatten() {
            let img = e.images.get(v)?;
            bounds.push((before, created(&img)));
        }
    }
    let until: Vec<i64> = f
        .get("until")
        .into_iter()
        .flatten()
        .map(|v| {
            let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
            crate::events::parse_time(v, now)
                .map(|ns| ns / 1_000_000_000)
                .map_err(ApiError::bad_request)
        })
        .collect::<ApiResult<_>>()?;
    let refs = f.get("reference").cloned().unwrap_or_default();
    let mut out = Vec::new();
    let list = e.images.list()?;
    // Intermediate images (untagged, under another image) show only with `all`, and are
    // not dangling, as in dockerd.
    let parents: std::collections::HashSet<String> =
        list.iter().map(|i| i.parent.clone()).collect();
    let all = qbool(&q, "all");
    for mut i in list {
        let intermediate = i.repo_tags.is_empty() && parents.contains(&i.id);
        if intermediate && !all {
            continue;
        }
        let c = created(&i);
        if bounds
            .iter()
            .any(|(before, t)| if *before { c >= *t } else { c <= *t })
            || until.iter().any(|t| c > *t)
        {
            continue;
        }
        let keep = f.iter().all(|(k, vals)| {
            vals.iter().any(|v| match k.as_str() {
                "dangling" => go_bool(v) == Some(i.repo_tags.is_empty() && !intermediate),
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
pub(crate) fn reference_matches(pattern: &str, tag: &str) -> bool {
    let name = match tag.rfind(':') {
        Some(i) if !tag[i..].contains('/') => &tag[..i],
        _ => tag,
    };
    [tag, name]
        .iter()
        .any(|s| pattern == *s || glob(pattern, s))
}

/// `*` wildcards as in Docker's reference filter (path.Match: `*` stays within a path element).
pub(crate) fn glob(pattern: &str, s: &str) -> bool {
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

pub(crate) fn image_inspect_json(i: &berth_image::Image) -> Value {
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

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|x| ApiError::internal(x.to_string()))?
}

/// A request body as a blocking reader (for the image store), fed by a task.
pub(crate) fn body_reader(body: Body) -> impl std::io::Read + Send + 'static {
    use futures_util::FutureExt;
    /// Chunks already received are joined up to this size before the reader is woken: one
    /// wake-up per 1 MiB instead of one per socket read.
    const BATCH: usize = 1 << 20;
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(16);
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let mut item = chunk.map_err(std::io::Error::other);
            let mut ended = false;
            if let Ok(first) = &item {
                let mut joined: Option<bytes::BytesMut> = None;
                while joined.as_ref().map_or(first.len(), |j| j.len()) < BATCH {
                    match stream.next().now_or_never() {
                        Some(Some(Ok(more))) => {
                            joined
                                .get_or_insert_with(|| bytes::BytesMut::from(&first[..]))
                                .extend_from_slice(&more);
                        }
                        Some(Some(Err(e))) => {
                            item = Err(std::io::Error::other(e));
                            break;
                        }
                        Some(None) => {
                            ended = true;
                            break;
                        }
                        None => break,
                    }
                }
                if let (Some(j), Ok(_)) = (joined, &item) {
                    item = Ok(j.freeze());
                }
            }
            let stop = item.is_err() || ended;
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    ChannelReader {
        rx,
        buf: Bytes::new(),
    }
}

/// Read from blocking code only (`blocking_recv`).
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    buf: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        Ok(n)
    }
}

pub(crate) async fn image_create(State(e): S, Query(q): Q, req: Request) -> ApiResult<Response> {
    if q.get("fromImage").is_some_and(|s| !s.is_empty()) {
        return super::registry::image_pull(e, &q, req.headers()).await;
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
    // `changes` repeats (one per --change): the map of the query keeps only the last.
    let changes = query_values(req.uri(), "changes");
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

/// Every value of a repeated query parameter, decoded (`+` is a space, as Go encodes).
pub(crate) fn query_values(uri: &Uri, key: &str) -> Vec<String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .filter(|(k, _)| percent_decode(k) == key)
        .map(|(_, v)| percent_decode(v))
        .collect()
}

pub(crate) async fn image_load(State(e): S, Query(q): Q, req: Request) -> ApiResult<Response> {
    let reader = body_reader(req.into_body());
    let store = e.images.clone();
    let loaded = match blocking(move || Ok(store.load(reader)?)).await {
        Ok(l) => l,
        // As dockerd: the answer has begun (200) and the failure is its JSON message, which
        // clients raise as a load error (docker-py's ImageLoadError, the CLI's message).
        Err(err) => {
            let mut line = berth_registry::docker_error_json(&err.message).to_string();
            line.push('\n');
            return Ok(([(header::CONTENT_TYPE, "application/json")], line).into_response());
        }
    };
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

pub(crate) fn save_response(e: &Engine, names: Vec<String>) -> ApiResult<Response> {
    for n in &names {
        e.images.get(n)?;
    }
    for n in &names {
        e.emit_image_event("save", &e.images.get(n)?.id, n);
    }
    let store = e.images.clone();
    let body = blocking_body(move |w| {
        if let Err(err) = store.save(&names, w) {
            tracing::warn!(error = %err, "image save failed");
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(body)
        .unwrap_or_default())
}

pub(crate) struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
}

/// A response body that `write` produces on a blocking thread (the tar streams of save, cp
/// and export), through a 256 KiB buffer; a client that goes away ends the writes.
pub(crate) fn blocking_body(
    write: impl FnOnce(std::io::BufWriter<ChannelWriter>) + Send + 'static,
) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    tokio::task::spawn_blocking(move || {
        write(std::io::BufWriter::with_capacity(
            256 * 1024,
            ChannelWriter { tx },
        ))
    });
    Body::from_stream(ReceiverStream::new(rx))
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

pub(crate) async fn image_save(State(e): S, uri: Uri) -> ApiResult<Response> {
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

pub(crate) fn percent_decode(s: &str) -> String {
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

pub(crate) async fn image_get_dispatch(
    State(e): S,
    Path(rest): Path<String>,
) -> ApiResult<Response> {
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

pub(crate) async fn image_post_dispatch(
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
        return super::registry::image_push(e, name, &q, &headers).await;
    }
    Err(ApiError::not_found("page not found"))
}

pub(crate) async fn image_remove(
    State(e): S,
    Path(name): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    // A container removed a moment ago (`run --rm`, then `rmi`) still holds its image until
    // its background cleanup ends: dockerd's DELETE returned after it.
    e.removals_settled(std::time::Duration::from_secs(10)).await;
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

pub(crate) fn removed_json(r: &berth_image::Removed) -> Value {
    match r {
        berth_image::Removed::Untagged(t) => json!({"Untagged": t}),
        berth_image::Removed::Deleted(d) => json!({"Deleted": d}),
    }
}

pub(crate) async fn image_prune(State(e): S, Query(q): Q) -> ApiResult<Response> {
    e.removals_settled(std::time::Duration::from_secs(10)).await;
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let u: Uri = "/images/create?fromSrc=-&changes=CMD+%5B%22echo%22%5D&changes=ENV+A%3D1+2"
            .parse()
            .unwrap();
        assert_eq!(
            query_values(&u, "changes"),
            vec!["CMD [\"echo\"]".to_string(), "ENV A=1 2".to_string()]
        );
    }
}
