//! HTTP side of `GET /events`: Docker's streaming events endpoint over [`crate::events`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::Response;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::error::{ApiError, ApiResult};
use crate::events::{now_nanos, parse_time, EventFilter, Message};
use crate::Engine;

fn line(m: &Message) -> Bytes {
    let mut v = serde_json::to_vec(m).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// `GET /events?since=&until=&filters=`: buffered events from `since` (until `until`), then
/// live ones until `until` passes or the client goes away. With an `until` in the past only
/// the buffered events are sent, as dockerd does.
pub async fn events(
    State(e): State<Arc<Engine>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let now = now_nanos();
    let time = |k: &str| -> ApiResult<Option<i64>> {
        match q.get(k).map(|s| s.trim()).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => parse_time(s, now).map(Some).map_err(ApiError::bad_request),
        }
    };
    let since = time("since")?;
    let until = time("until")?;
    if let (Some(s), Some(u)) = (since, until) {
        if u < s {
            return Err(ApiError::bad_request(format!(
                "`since` time ({}) cannot be after `until` time ({})",
                q.get("since").map(String::as_str).unwrap_or_default(),
                q.get("until").map(String::as_str).unwrap_or_default()
            )));
        }
    }
    let filter = EventFilter::parse(q.get("filters").map(String::as_str).unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    let (past, mut rx) = e.events.subscribe(since, until);
    let (tx, out) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        for m in past.iter().filter(|m| filter.matches(m)) {
            if tx.send(Ok(line(m))).await.is_err() {
                return;
            }
        }
        let deadline = match until {
            Some(u) if u <= now_nanos() => return,
            Some(u) => {
                let left = Duration::from_nanos((u - now_nanos()).max(0) as u64);
                Some(tokio::time::Instant::now() + left)
            }
            None => None,
        };
        let expired = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        loop {
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(m) => {
                        if until.is_some_and(|u| m.time_nano > u) {
                            return;
                        }
                        if filter.matches(&m) && tx.send(Ok(line(&m))).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "events subscriber too slow; dropped");
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = &mut expired => return,
                _ = tx.closed() => return,
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(ReceiverStream::new(out)))
        .map_err(|err| ApiError::internal(err.to_string()))
}
