//! Attached streams: demultiplexing docker's 8-byte frames, copying stdin (with detach keys and
//! a half-close at EOF), terminal resizes and signal forwarding.

use std::io::{Read, Write};

use anyhow::{Context, Result};
use hyper::Method;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::client::{Client, Hijacked};
use crate::tty::EscapeProxy;

/// What to do with a hijacked stream.
#[derive(Debug, Clone, Default)]
pub struct StreamOpts {
    /// The container (or exec) has a TTY: raw bytes, no framing.
    pub tty: bool,
    /// Copy our stdin to the stream.
    pub stdin: bool,
    /// Detach sequence (empty: none).
    pub detach_keys: Vec<u8>,
}

/// How an attached stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The daemon closed the output (the process exited).
    Closed,
    /// The user typed the detach sequence.
    Detached,
}

/// Copies the stream to stdout/stderr and stdin to the stream until the output ends or the
/// user detaches. At stdin EOF the write side is shut down (docker's `CloseWrite`), which
/// closes the container's stdin.
pub async fn pump(h: Hijacked, opts: &StreamOpts) -> Result<Ended> {
    let (reader, mut writer) = h.split();
    let tty = opts.tty;
    let mut output = tokio::spawn(async move { copy_output(reader, tty).await });
    let (detach_tx, mut detach_rx) = mpsc::channel::<()>(1);
    let input = if opts.stdin {
        let keys = opts.detach_keys.clone();
        Some(tokio::spawn(async move {
            let mut rx = stdin_chunks();
            let mut proxy = EscapeProxy::new(keys);
            while let Some(chunk) = rx.recv().await {
                let (fwd, detach) = proxy.feed(&chunk);
                if !fwd.is_empty() && writer.write_all(&fwd).await.is_err() {
                    return;
                }
                let _ = writer.flush().await;
                if detach {
                    let _ = detach_tx.send(()).await;
                    return;
                }
            }
            let _ = writer.shutdown().await;
            // Keep the writer alive so the connection stays half-open for the output.
            std::future::pending::<()>().await;
        }))
    } else {
        drop(detach_tx);
        // Keep the write half open: dropping it would not close the socket, but be explicit.
        Some(tokio::spawn(async move {
            std::future::pending::<()>().await;
            drop(writer);
        }))
    };
    let ended = tokio::select! {
        r = &mut output => {
            r.context("output task")??;
            Ended::Closed
        }
        Some(()) = detach_rx.recv() => {
            output.abort();
            Ended::Detached
        }
    };
    if let Some(i) = input {
        i.abort();
    }
    Ok(ended)
}

/// Reads stdin on a plain thread (a blocking read must not hold the async runtime).
fn stdin_chunks() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

async fn copy_output(
    mut reader: std::pin::Pin<Box<dyn AsyncRead + Send>>,
    tty: bool,
) -> Result<()> {
    if tty {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
                Err(e) => return Err(e).context("read stream"),
            };
            if n == 0 {
                return Ok(());
            }
            let mut out = std::io::stdout().lock();
            out.write_all(&buf[..n]).context("write stdout")?;
            out.flush().context("write stdout")?;
        }
    }
    demux(reader, |stream, data| {
        if stream >= 2 {
            let mut err = std::io::stderr().lock();
            err.write_all(data)?;
            err.flush()
        } else {
            let mut out = std::io::stdout().lock();
            out.write_all(data)?;
            out.flush()
        }
    })
    .await
}

/// Reads docker's multiplexed frames (`[stream, 0, 0, 0, len BE u32]` + payload) and hands each
/// payload to `sink` with its stream number (1 stdout, 2 stderr, 3 the daemon's own error
/// message since API 1.42, printed on stderr like 2).
pub async fn demux<R, F>(mut reader: R, mut sink: F) -> Result<()>
where
    R: AsyncRead + Unpin,
    F: FnMut(u8, &[u8]) -> std::io::Result<()>,
{
    let mut header = [0u8; 8];
    let mut payload = Vec::new();
    loop {
        match reader.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::UnexpectedEof
                    || e.kind() == std::io::ErrorKind::ConnectionReset =>
            {
                return Ok(())
            }
            Err(e) => return Err(e).context("read stream"),
        }
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        payload.resize(len, 0);
        reader
            .read_exact(&mut payload)
            .await
            .context("read stream frame")?;
        sink(header[0], &payload).context("write output")?;
    }
}

/// Tells the daemon the terminal size now and on every SIGWINCH, until the task is aborted.
/// `path` is `/containers/{id}/resize` or `/exec/{id}/resize`.
pub fn monitor_resize(client: Client, path: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let resize = |client: Client, path: String| async move {
            if let Some((h, w)) = crate::tty::size() {
                let _ = client
                    .call(Method::POST, &format!("{path}?h={h}&w={w}"), None)
                    .await;
            }
        };
        resize(client.clone(), path.clone()).await;
        let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        while winch.recv().await.is_some() {
            resize(client.clone(), path.clone()).await;
        }
    })
}

/// Forwards the signals a user sends to `berth` to the container (`--sig-proxy`).
pub fn proxy_signals(client: Client, id: String) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let kinds = [
            (SignalKind::interrupt(), "SIGINT"),
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::hangup(), "SIGHUP"),
            (SignalKind::quit(), "SIGQUIT"),
            (SignalKind::user_defined1(), "SIGUSR1"),
            (SignalKind::user_defined2(), "SIGUSR2"),
        ];
        let (tx, mut rx) = mpsc::channel::<&'static str>(8);
        for (kind, name) in kinds {
            let Ok(mut s) = signal(kind) else { continue };
            let tx = tx.clone();
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    if tx.send(name).await.is_err() {
                        return;
                    }
                }
            });
        }
        while let Some(name) = rx.recv().await {
            let _ = client
                .call(
                    Method::POST,
                    &format!("/containers/{id}/kill?signal={name}"),
                    None,
                )
                .await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn demux_splits_frames_by_stream() {
        let mut data = Vec::new();
        data.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 3]);
        data.extend_from_slice(b"out");
        data.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 4]);
        data.extend_from_slice(b"err\n");
        data.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        let mut got = Vec::new();
        demux(&data[..], |s, d| {
            got.push((s, d.to_vec()));
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(
            got,
            vec![
                (1, b"out".to_vec()),
                (2, b"err\n".to_vec()),
                (1, Vec::new())
            ]
        );
    }

    #[tokio::test]
    async fn demux_fails_on_a_truncated_frame() {
        let data = [1u8, 0, 0, 0, 0, 0, 0, 9, b'x'];
        assert!(demux(&data[..], |_, _| Ok(())).await.is_err());
    }
}
