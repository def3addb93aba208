//! Listening on `-H` addresses (unix, fd://, tcp with TLS) and serving the router.

use super::*;

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
            let listener = crate::api::listen::bind(h, tls.as_ref()).await?;
            tasks.push(tokio::spawn(crate::api::listen::serve(
                listener,
                svc.clone(),
            )));
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
pub(crate) fn systemd_listeners() -> anyhow::Result<Vec<tokio::net::UnixListener>> {
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
