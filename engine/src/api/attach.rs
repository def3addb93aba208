//! Hijacked streams (attach, exec start): the upgrade, stdin modes and detach keys, and the pump from the supervisor's Attach stream with Docker's framing.

use super::*;

/// Where a hijacked stream's output goes, and where its stdin comes from.
pub(crate) type Sink = mpsc::Sender<Bytes>;

/// Upgrades the connection (101, `Upgrade: tcp`) when the client asks, else answers 200 with
/// a streamed body (no stdin then); `run` gets the output sink and the client's stdin.
pub(crate) fn hijack<F, Fut>(mut req: Request, tty: bool, run: F) -> Response
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
pub(crate) struct StdinMode {
    close_at_eof: bool,
    detach_keys: Vec<u8>,
}

impl StdinMode {
    pub(crate) fn new(close_at_eof: bool, detach_keys: Option<&str>) -> ApiResult<StdinMode> {
        let keys = detach_keys
            .filter(|k| !k.is_empty())
            .unwrap_or(crate::api::detach::DEFAULT_KEYS);
        Ok(StdinMode {
            close_at_eof,
            detach_keys: crate::api::detach::parse_keys(keys)?,
        })
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn pump(
    e: &Engine,
    id: &str,
    exec_id: &str,
    tty: bool,
    streams: (bool, bool, bool),
    replay: bool,
    mode: StdinMode,
    sink: &Sink,
    stdin: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
    opened: impl FnOnce(),
) -> ApiResult<bool> {
    let (stdin_on, stdout_on, stderr_on) = streams;
    // With neither output asked for, stdout is still subscribed (and dropped): the attach
    // then lives until the process ends or the client detaches, as in dockerd.
    let keep_alive = !stdout_on && !stderr_on;
    let (req_tx, req_rx) = mpsc::channel::<types::AttachRequest>(16);
    req_tx
        .send(types::AttachRequest {
            msg: Some(types::attach_request::Msg::Open(types::AttachOpen {
                namespace: e.sup.namespace.clone(),
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                stdin: stdin_on,
                stdout: stdout_on || keep_alive,
                stderr: stderr_on,
                replay,
                log_records: false,
            })),
        })
        .await
        .map_err(|_| ApiError::internal("attach: channel closed"))?;
    // The shim subscribes this attach before the call returns: from here on no output can
    // be missed.
    let attached = e.sup.tasks().attach(ReceiverStream::new(req_rx)).await;
    opened();
    let mut out = attached?.into_inner();
    // Fired when stdin ends the attach (detach keys, or EOF where stdin is not closed).
    let (end_tx, mut end_rx) = tokio::sync::oneshot::channel::<()>();
    if let (true, Some(mut rd)) = (stdin_on, stdin) {
        let tx = req_tx.clone();
        tokio::spawn(async move {
            let mut proxy = crate::api::detach::EscapeProxy::new(if tty {
                mode.detach_keys
            } else {
                Vec::new()
            });
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
    let mut detached = false;
    loop {
        let chunk = tokio::select! {
            m = out.message() => match m {
                Ok(Some(chunk)) => chunk,
                _ => break,
            },
            Ok(()) = &mut end_rx => {
                detached = true;
                break;
            }
        };
        let stream = if chunk.stream == types::StdStream::Stderr as i32 {
            2
        } else {
            1
        };
        if (stream == 1 && !stdout_on) || (stream == 2 && !stderr_on) {
            continue;
        }
        let b = if tty {
            Bytes::from(chunk.data)
        } else {
            logs::frame(stream, &chunk.data)
        };
        if sink.send(b).await.is_err() {
            break;
        }
        e.attach_progress(id);
    }
    drop(req_tx);
    Ok(detached)
}

pub(crate) async fn container_attach(
    State(e): S,
    Path(id): Path<String>,
    Query(q): Q,
    req: Request,
) -> ApiResult<Response> {
    let rec = e.find(&id)?;
    let tty = rec.tty();
    let streams = (qbool(&q, "stdin"), qbool(&q, "stdout"), qbool(&q, "stderr"));
    let logs = qbool(&q, "logs");
    let stream = qbool_or(&q, "stream", true);
    let mode = StdinMode::new(
        rec.config["StdinOnce"].as_bool().unwrap_or(false),
        q.get("detachKeys").map(String::as_str),
    )?;
    e.attach_started(&rec.id);
    e.emit_container(&rec, "attach", &[]);
    let id = rec.id.clone();
    // Attached before the start (docker run, start -a): the start waits until this attach is
    // subscribed at the shim before the process runs, so every byte comes live, none through
    // the log (whose JSON cannot carry binary output).
    let before_start = !rec.running() && stream;
    if before_start {
        e.attach_pending(&id, true);
    }
    Ok(hijack(req, tty, move |sink, stdin| async move {
        if before_start {
            let exits = rec.exits;
            let ran = e
                .wait_for(&id, None, |r| r.running() || r.exits > exits)
                .await
                .is_some_and(|r| r.running());
            if !ran {
                e.attach_pending(&id, false);
            }
        }
        if stream {
            let opened = || {
                if before_start {
                    e.attach_pending(&id, false);
                }
            };
            let r = pump(&e, &id, "", tty, streams, logs, mode, &sink, stdin, opened).await;
            if let Err(err) = r {
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
