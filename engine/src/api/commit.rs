//! A container's filesystem as a whole: `GET /containers/{id}/changes` (docker diff),
//! `GET /containers/{id}/export` and `POST /commit`.

use super::*;
use crate::container::archive::ArchiveError;

fn io_error(e: ArchiveError) -> ApiError {
    match e {
        ArchiveError::NotFound => ApiError::internal("a path vanished while it was read"),
        ArchiveError::Invalid(m) => ApiError::bad_request(m),
        ArchiveError::Io(e) => ApiError::internal(crate::error::io_words(&e)),
    }
}

/// `GET /containers/{id}/changes`: what the container added (1), changed (0) and deleted (2)
/// over its image, from its writable layer.
pub(crate) async fn container_changes(State(e): S, Path(id): Path<String>) -> ApiResult<Response> {
    let rec = e.find(&id)?;
    let e2 = e.clone();
    let changes = blocking(move || {
        let layers = e2.images.image_layers(&rec.image_id, &rec.id)?;
        let upper = e2.images.rootfs_upper(&rec.id);
        let root = crate::container::archive::Root::open(&upper)
            .map_err(|x| ApiError::internal(format!("open the container's layer: {x}")))?;
        root.changes(&|p| layers.lookup(p).is_some())
            .map_err(io_error)
    })
    .await?;
    let list: Vec<Value> = changes
        .into_iter()
        .map(|(p, k)| json!({"Path": p, "Kind": k}))
        .collect();
    Ok(ok_json(Value::Array(list)))
}

/// `GET /containers/{id}/export`: the container's filesystem (image and changes, without
/// its mounts) as a tar stream.
pub(crate) async fn container_export(State(e): S, Path(id): Path<String>) -> ApiResult<Response> {
    let rec = e.find(&id)?;
    let (e2, r2) = (e.clone(), rec.clone());
    let lease = blocking(move || e2.lease_rootfs_view(&r2)).await?;
    e.emit_container_id(&rec.id, "export", &[]);
    let body = blocking_body(move |w| {
        if let Err(err) = lease.root.tar_contents(w) {
            tracing::warn!(error = ?err, "export failed");
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(body)
        .unwrap_or_default())
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`: a new image of the
/// container's image plus its writable layer, with its config (and the body's over it).
pub(crate) async fn commit(State(e): S, Query(q): Q, req: Request) -> ApiResult<Response> {
    let changes = query_values(req.uri(), "changes")
        .into_iter()
        .flat_map(|c| c.lines().map(str::to_string).collect::<Vec<_>>())
        .filter(|c| !c.trim().is_empty())
        .collect::<Vec<_>>();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .map_err(|x| ApiError::bad_request(x.to_string()))?;
    let overrides: Value = if body.iter().all(|b| b.is_ascii_whitespace()) {
        Value::Null
    } else {
        parse_body(&body)?
    };
    let key = q
        .get("container")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad_request("No container name or ID supplied"))?;
    let rec = e.find(key)?;
    let repo = q.get("repo").cloned().unwrap_or_default();
    let tag = q.get("tag").cloned().unwrap_or_default();
    let reference = match (repo.is_empty(), tag.is_empty()) {
        (true, _) => None,
        (false, true) => Some(repo),
        (false, false) => Some(format!("{repo}:{tag}")),
    };
    let pause = q.get("pause").is_none_or(|p| p != "0" && p != "false");
    let mut config = rec.config.clone();
    if let Some(o) = overrides.as_object() {
        for (k, v) in o {
            if !v.is_null() {
                config[k] = v.clone();
            }
        }
    }
    config["Image"] = json!(rec.image_id);
    let created_by = config["Cmd"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let paused = pause && rec.state.status == "running";
    if paused {
        e.pause(&rec.id).await?;
    }
    let opts = berth_image::CommitOptions {
        parent: rec.image_id.clone(),
        reference,
        config,
        changes,
        comment: q.get("comment").cloned().unwrap_or_default(),
        author: q.get("author").cloned().unwrap_or_default(),
        created_by,
        container: rec.id.clone(),
    };
    let upper = e.images.rootfs_upper(&rec.id);
    let store = e.images.clone();
    let made = blocking(move || {
        let root = crate::container::archive::Root::open(&upper)
            .map_err(|x| ApiError::internal(format!("open the container's layer: {x}")))?;
        let (img, written) = crate::build::tar_layer_piped(root, |r| store.commit(r, &opts))?;
        let img = img?;
        // The layer streams through a pipe: a writer that failed midway may have left a
        // tar that reads as whole but is short. Such an image is taken back.
        if let Err(err) = written {
            let _ = store.remove(&img.id, true, false, &|_| false);
            return Err(io_error(err));
        }
        Ok(img)
    })
    .await;
    if paused {
        let _ = e.resume(&rec.id).await;
    }
    let img = made?;
    e.emit_container_id(
        &rec.id,
        "commit",
        &[
            ("comment", q.get("comment").cloned().unwrap_or_default()),
            ("imageID", img.id.clone()),
        ],
    );
    Ok(json_resp(StatusCode::CREATED, json!({"Id": img.id})))
}
