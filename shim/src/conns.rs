//! Client connections counted while open, so a shim that was asked to shut down can wait
//! until its clients have taken every byte of the output it still sends (the HTTP/2 frames
//! queued for a reader are lost if the process goes first).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tokio::sync::watch;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::Connected;

/// How many connections are open.
#[derive(Debug, Clone)]
pub struct Conns(Arc<watch::Sender<usize>>);

impl Conns {
    /// No connection yet.
    pub fn new() -> Conns {
        Conns(Arc::new(watch::channel(0).0))
    }

    /// Counts every connection `incoming` accepts until it is closed.
    pub fn count<S>(&self, incoming: S) -> impl Stream<Item = io::Result<Counted>>
    where
        S: Stream<Item = io::Result<UnixStream>>,
    {
        let conns = self.clone();
        incoming.map(move |r| {
            r.map(|stream| {
                conns.0.send_modify(|n| *n += 1);
                Counted {
                    stream,
                    conns: conns.clone(),
                }
            })
        })
    }

    /// Waits until no connection is open, at most `grace`.
    pub async fn closed(&self, grace: Duration) {
        let mut rx = self.0.subscribe();
        let _ = tokio::time::timeout(grace, rx.wait_for(|n| *n == 0)).await;
    }
}

impl Default for Conns {
    fn default() -> Self {
        Conns::new()
    }
}

/// An accepted connection, uncounted when dropped.
#[derive(Debug)]
pub struct Counted {
    stream: UnixStream,
    conns: Conns,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.conns.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Connected for Counted {
    type ConnectInfo = <UnixStream as Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
