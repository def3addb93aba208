//! `-H tcp://` listeners with TLS (rustls), as dockerd's `--tls` and `--tlsverify`.
//!
//! A tcp host is served only with TLS: with `--tlsverify` every client must present a
//! certificate signed by `--tlscacert` (dockerd's `RequireAndVerifyClientCert`); with `--tls`
//! alone the connection is encrypted and any client is served. A tcp host without either is
//! refused at start, as current dockerd refuses unauthenticated tcp: whoever reaches the API
//! is root on the host. Handshakes run in their own tasks so a slow or silent client never
//! holds up others; the listener hands finished TLS streams to `axum::serve`, which keeps
//! hyper's connection upgrades, so attach and exec hijacks work through TLS as on a socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// dockerd's TLS settings (`--tls`, `--tlsverify`, `--tlscacert`, `--tlscert`, `--tlskey`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsSettings {
    /// Require and verify client certificates against `ca`.
    pub verify: bool,
    /// CA bundle for client certificates (needed with `verify`).
    pub ca: Option<PathBuf>,
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Where dockerd looks for `ca.pem`, `cert.pem`, `key.pem` when a path is not given:
/// `$DOCKER_CERT_PATH`, else `~/.docker`.
pub fn default_cert_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("DOCKER_CERT_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".docker")
}

/// The TLS settings from the flags and daemon.json values (`tls`, `tlsverify` and the three
/// paths), or `None` when TLS is off. `--tlsverify` implies `--tls`, as in dockerd.
pub fn settings(
    tls: bool,
    verify: bool,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Option<TlsSettings> {
    if !tls && !verify {
        return None;
    }
    let dir = default_cert_dir();
    Some(TlsSettings {
        verify,
        ca: ca.or_else(|| verify.then(|| dir.join("ca.pem"))),
        cert: cert.unwrap_or_else(|| dir.join("cert.pem")),
        key: key.unwrap_or_else(|| dir.join("key.pem")),
    })
}

/// [`settings`] from the flags, falling back to daemon.json's `tls`, `tlsverify`,
/// `tlscacert`, `tlscert` and `tlskey` for what the flags do not set.
pub fn from_flags_and_file(
    file: &serde_json::Value,
    (tls, verify): (Option<bool>, Option<bool>),
    (ca, cert, key): (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>),
) -> Option<TlsSettings> {
    let flag = |v: Option<bool>, k: &str| v.or_else(|| file[k].as_bool()).unwrap_or(false);
    let path = |v: Option<PathBuf>, k: &str| v.or_else(|| file[k].as_str().map(PathBuf::from));
    settings(
        flag(tls, "tls"),
        flag(verify, "tlsverify"),
        path(ca, "tlscacert"),
        path(cert, "tlscert"),
        path(key, "tlskey"),
    )
}

/// Checks every `-H` before anything starts: a `tcp://` host needs TLS, and the TLS files must
/// load. Returns the error dockerd users should see.
pub fn check_hosts(hosts: &[String], tls: Option<&TlsSettings>) -> Result<()> {
    for h in hosts {
        if !h.starts_with("tcp://") {
            continue;
        }
        tcp_addr(h)?;
        match tls {
            None => bail!(
                "refusing to serve the API on {h} without TLS: anyone who can reach it would \
                 control this host; use --tlsverify with --tlscacert, --tlscert and --tlskey \
                 (or --tls to encrypt without client certificates), or a unix:// socket"
            ),
            Some(t) => {
                server_config(t)?;
            }
        }
    }
    Ok(())
}

/// The socket address of `tcp://HOST:PORT` (`tcp://:2376` is every interface; the port
/// defaults to 2376, Docker's TLS port).
pub fn tcp_addr(host: &str) -> Result<String> {
    let rest = host
        .strip_prefix("tcp://")
        .ok_or_else(|| anyhow!("not a tcp:// address: {host}"))?;
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') {
        bail!("invalid tcp address {host}: no path allowed");
    }
    let (h, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (addr, tail) = v6
            .split_once(']')
            .ok_or_else(|| anyhow!("invalid tcp address {host}: unclosed ["))?;
        (format!("[{addr}]"), tail.strip_prefix(':').unwrap_or(""))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None => (rest.to_string(), ""),
        }
    };
    let port: u16 = if port.is_empty() {
        2376
    } else {
        port.parse()
            .map_err(|_| anyhow!("invalid tcp address {host}: bad port {port:?}"))?
    };
    let h = if h.is_empty() { "0.0.0.0".into() } else { h };
    Ok(format!("{h}:{port}"))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| anyhow!("read certificates {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("read certificates {}: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("no certificate found in {}", path.display());
    }
    Ok(certs)
}

/// The rustls server configuration (ring as the crypto provider; TLS 1.2 and 1.3).
pub fn server_config(s: &TlsSettings) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("tls protocol versions")?;
    let builder = if s.verify {
        let ca =
            s.ca.as_ref()
                .ok_or_else(|| anyhow!("--tlsverify needs a CA certificate (--tlscacert)"))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in read_certs(ca)? {
            roots
                .add(cert)
                .with_context(|| format!("add CA certificate from {}", ca.display()))?;
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("client certificate verifier")?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let certs = read_certs(&s.cert)?;
    let key = PrivateKeyDer::from_pem_file(&s.key)
        .map_err(|e| anyhow!("read key {}: {e}", s.key.display()))?;
    let mut config = builder
        .with_single_cert(certs, key)
        .with_context(|| format!("server certificate {}", s.cert.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TLS listener for `axum::serve`: accepted connections finish their handshake in their own
/// tasks and arrive here ready.
#[derive(Debug)]
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

/// Binds `tcp://HOST:PORT` and serves TLS on it with `settings`.
pub async fn bind_tls(host: &str, settings: &TlsSettings) -> Result<TlsListener> {
    let config = server_config(settings)?;
    let addr = tcp_addr(host)?;
    let tcp = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("listen on {host}"))?;
    let local = tcp.local_addr()?;
    let acceptor = TlsAcceptor::from(config);
    let (tx, ready) = mpsc::channel(64);
    let acceptor = tokio::spawn(async move {
        loop {
            let (stream, peer) = match tcp.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept on tcp listener");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send((tls, peer)).await;
                    }
                    Ok(Err(e)) => tracing::info!(peer = %peer, error = %e, "tls handshake failed"),
                    Err(_) => tracing::info!(peer = %peer, "tls handshake timed out"),
                }
            });
        }
    });
    Ok(TlsListener {
        ready,
        local,
        acceptor,
    })
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The acceptor only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Binds a `tcp://` host for the API: refused without TLS (see the module doc).
pub async fn bind(h: &str, tls: Option<&TlsSettings>) -> Result<TlsListener> {
    check_hosts(&[h.to_string()], tls)?;
    let settings = tls.ok_or_else(|| anyhow!("refusing to serve the API on {h} without TLS"))?;
    let listener = bind_tls(h, settings).await?;
    tracing::info!(address = %h, verify = settings.verify, "API listening with TLS");
    Ok(listener)
}

/// Serves `svc` on `listener` until the task is aborted.
pub async fn serve<S>(listener: TlsListener, svc: S)
where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let make = axum::ServiceExt::<axum::extract::Request>::into_make_service(svc);
    if let Err(e) = axum::serve(listener, make).await {
        tracing::error!(error = %e, "tcp API listener failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_addresses_as_dockerd_takes_them() {
        assert_eq!(tcp_addr("tcp://127.0.0.1:2376").unwrap(), "127.0.0.1:2376");
        assert_eq!(tcp_addr("tcp://:2377").unwrap(), "0.0.0.0:2377");
        assert_eq!(tcp_addr("tcp://localhost").unwrap(), "localhost:2376");
        assert_eq!(tcp_addr("tcp://[::1]:99").unwrap(), "[::1]:99");
        assert_eq!(tcp_addr("tcp://[::1]").unwrap(), "[::1]:2376");
        assert!(tcp_addr("tcp://1.2.3.4:x").is_err());
        assert!(tcp_addr("tcp://1.2.3.4:70000").is_err());
        assert!(tcp_addr("tcp://1.2.3.4:1/path").is_err());
        assert!(tcp_addr("unix:///x").is_err());
    }

    #[test]
    fn tcp_without_tls_is_refused_and_unix_is_not() {
        let err = check_hosts(&["tcp://127.0.0.1:2375".into()], None).unwrap_err();
        assert!(err.to_string().contains("without TLS"), "{err}");
        check_hosts(&["unix:///run/x.sock".into()], None).unwrap();
    }

    #[test]
    fn tlsverify_implies_tls_and_missing_files_are_reported() {
        assert_eq!(settings(false, false, None, None, None), None);
        let s = settings(false, true, None, Some("/c".into()), Some("/k".into())).unwrap();
        assert!(s.verify);
        assert!(s.ca.is_some(), "a default CA path, as dockerd");
        let s = settings(true, false, None, Some("/c".into()), Some("/k".into())).unwrap();
        assert!(!s.verify && s.ca.is_none());
        // daemon.json's keys, with flags taking precedence.
        let file = serde_json::json!({"tlsverify": true, "tlscacert": "/f/ca.pem",
            "tlscert": "/f/cert.pem", "tlskey": "/f/key.pem"});
        let s = from_flags_and_file(&file, (None, None), (None, Some("/c".into()), None)).unwrap();
        assert!(s.verify);
        assert_eq!(s.ca.as_deref(), Some(Path::new("/f/ca.pem")));
        assert_eq!(s.cert, Path::new("/c"));
        assert_eq!(s.key, Path::new("/f/key.pem"));
        let off = from_flags_and_file(&file, (None, Some(false)), (None, None, None));
        assert_eq!(off, None);
        let missing = TlsSettings {
            verify: true,
            ca: Some("/nonexistent/ca.pem".into()),
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let err = check_hosts(&["tcp://127.0.0.1:1".into()], Some(&missing)).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/ca.pem"),
            "{err:#}"
        );
    }
}
