//! Volume endpoints: list, create, inspect, remove, prune.

use super::*;
use crate::volume::Volume;

/// A volume in Docker's JSON.
pub(crate) fn volume_json(e: &Engine, v: &Volume) -> Value {
    json!({
        "CreatedAt": v.created,
        "Driver": v.driver,
        "Labels": if v.labels.is_empty() { Value::Null } else { json!(v.labels) },
        "Mountpoint": e.volume_path(&v.name),
        "Name": v.name,
        "Options": if v.options.is_empty() { Value::Null } else { json!(v.options) },
        "Scope": "local",
    })
}

pub(crate) async fn volume_list(State(e): S, Query(q): Q) -> ApiResult<Response> {
    let f = filters(&q)?;
    for k in f.keys() {
        if !["dangling", "name", "label", "driver"].contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
        }
    }
    let any = |k: &str, pred: &dyn Fn(&str) -> bool| -> bool {
        f.get(k)
            .is_none_or(|vals| vals.is_empty() || vals.iter().any(|v| pred(v)))
    };
    let mut out = Vec::new();
    for v in e.volume_list() {
        let keep = any("name", &|x| v.name.contains(x))
            && any("driver", &|x| v.driver == x)
            && any("dangling", &|x| {
                matches!(x, "true" | "1") == e.volume_users(&v.name).is_empty()
            })
            && label_filters_keep(&v.labels, &f);
        if keep {
            out.push(volume_json(&e, &v));
        }
    }
    Ok(ok_json(json!({"Volumes": out, "Warnings": null})))
}

pub(crate) async fn volume_create(State(e): S, body: Bytes) -> ApiResult<Response> {
    let body = parse_body(&body)?;
    let v = e.volume_create(
        body["Name"].as_str(),
        body["Driver"].as_str().unwrap_or_default(),
        crate::string_map(&body["Labels"]),
        crate::string_map(&body["DriverOpts"]),
    )?;
    Ok(json_resp(StatusCode::CREATED, volume_json(&e, &v)))
}

pub(crate) async fn volume_inspect(State(e): S, Path(name): Path<String>) -> ApiResult<Response> {
    let v = e.volume_get(&name)?;
    Ok(ok_json(volume_json(&e, &v)))
}

pub(crate) async fn volume_remove(
    State(e): S,
    Path(name): Path<String>,
    Query(q): Q,
) -> ApiResult<Response> {
    e.volume_remove(&name, qbool(&q, "force"))?;
    Ok(no_content())
}

/// `POST /volumes/prune`: unused anonymous volumes; with `all=true` named ones too (API 1.42).
pub(crate) async fn volume_prune(State(e): S, Query(q): Q) -> ApiResult<Response> {
    let f = filters(&q)?;
    for k in f.keys() {
        if !["label", "label!", "all"].contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
        }
    }
    let all = f
        .get("all")
        .is_some_and(|v| v.iter().any(|x| matches!(x.as_str(), "true" | "1")));
    let mut deleted = Vec::new();
    let mut reclaimed = 0u64;
    for v in e.volume_list() {
        if !all && !v.anonymous() {
            continue;
        }
        if !e.volume_users(&v.name).is_empty() {
            continue;
        }
        if !label_filters_keep(&v.labels, &f) {
            continue;
        }
        let size = e.volume_size(&v.name);
        if e.volume_remove(&v.name, false).is_ok() {
            reclaimed += size;
            deleted.push(v.name);
        }
    }
    Ok(ok_json(json!({
        "VolumesDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) },
        "SpaceReclaimed": reclaimed,
    })))
}
