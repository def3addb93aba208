//! `docker cp`: `HEAD`, `GET` and `PUT /containers/{id}/archive` (the filesystem work is in
//! `container/archive.rs`, every path resolved inside the container's root).

use base64::Engine as _;

use super::*;
use crate::container::archive::ArchiveError;

fn archive_error(e: ArchiveError, path: &str, rec: &Record) -> ApiError {
    match e {
        ArchiveError::NotFound => ApiError::not_found(format!(
            "Could not find the file {path} in container {}",
            rec.name.trim_start_matches('/')
        )),
        ArchiveError::Invalid(m) => ApiError::bad_request(m),
        ArchiveError::Io(e) => ApiError::internal(crate::error::io_words(&e)),
    }
}

fn path_param(q: &HashMap<String, String>) -> ApiResult<String> {
    q.get("path")
        .filter(|p| !p.is_empty())
        .cloned()
        .ok_or_else(|| ApiError::bad_request("path is required"))
}

fn stat_header(st: &crate::container::archive::PathStat) -> HeaderValue {
    let text = st.to_json();
    HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(text))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `HEAD /containers/{id}/archive`: the path's stat in `X-Docker-Container-Path-Stat`.
pub(crate) async fn archive_head(
    State(e): S,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    let rec = e.find(&id)?;
    let path = path_param(&q)?;
    let (e2, r2, p2) = (e.clone(), rec.clone(), path.clone());
    let st = blocking(move || {
        let lease = e2.lease_rootfs_with_volumes(&r2)?;
        lease.root.stat(&p2).map_err(|x| archive_error(x, &p2, &r2))
    })
    .await?;
    Ok(Response::builder()
        .header("X-Docker-Container-Path-Stat", stat_header(&st))
        .body(Body::empty())
        .unwrap_or_default())
}

/// `GET /containers/{id}/archive`: a tar of the path, streamed as it is read.
pub(crate) async fn archive_get(
    State(e): S,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    let rec = e.find(&id)?;
    let path = path_param(&q)?;
    let (e2, r2, p2) = (e.clone(), rec.clone(), path.clone());
    let (lease, st) = blocking(move || {
        let lease = e2.lease_rootfs_with_volumes(&r2)?;
        let st = lease
            .root
            .stat(&p2)
            .map_err(|x| archive_error(x, &p2, &r2))?;
        Ok((lease, st))
    })
    .await?;
    e.emit_container_id(&rec.id, "archive-path", &[]);
    let body = blocking_body(move |w| {
        if let Err(err) = lease.root.tar_to(&path, w) {
            tracing::warn!(path = %path, error = ?err, "archive of a container path failed");
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-tar")
        .header("X-Docker-Container-Path-Stat", stat_header(&st))
        .body(body)
        .unwrap_or_default())
}

/// `PUT /containers/{id}/archive`: extracts the tar body into the directory `path`.
pub(crate) async fn archive_put(
    State(e): S,
    Path(id): Path<String>,
    Query(q): Q,
    req: Request,
) -> ApiResult<Response> {
    let rec = e.find(&id)?;
    let path = path_param(&q)?;
    if rec.host_config["ReadonlyRootfs"].as_bool() == Some(true) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "container rootfs is marked read-only",
        ));
    }
    let flag = |k: &str| qbool(&q, k);
    let (copy_owner, no_overwrite) = (flag("copyUIDGID"), flag("noOverwriteDirNonDir"));
    let reader = body_reader(req.into_body());
    let (e2, r2) = (e.clone(), rec.clone());
    blocking(move || {
        let lease = e2.lease_rootfs_with_volumes(&r2)?;
        lease
            .root
            .extract(&path, reader, copy_owner, no_overwrite)
            .map_err(|x| archive_error(x, &path, &r2))
    })
    .await?;
    e.emit_container_id(&rec.id, "extract-to-dir", &[]);
    Ok(StatusCode::OK.into_response())
}
