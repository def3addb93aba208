//! The Engine API client: `-H` parsing, connections (unix, tcp, TLS), version negotiation,
//! JSON requests, streamed bodies and hijacked attach/exec connections.

use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// The socket berthd listens on by default.
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

/// The newest API version this client speaks; lower when the server is older.
pub const API_VERSION: &str = "1.45";

/// Where the daemon is, from `-H`, `BERTH_HOST` or `DOCKER_HOST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// `unix:///path/to.sock`
    Unix(PathBuf),
    /// `tcp://host:port`
    Tcp {
        /// host name or address, without brackets for IPv6
        host: String,
        /// port (2375 plain, 2376 with TLS when not given)
        port: u16,
    },
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Unix(p) => write!(f, "unix://{}", p.display()),
            Host::Tcp { host, port } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            Host::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
        }
    }
}

/// Parses a docker-style host: `unix:///p`, `tcp://h:p`, `h:p`, `:p`, `/path.sock`.
pub fn parse_host(s: &str, tls: bool) -> Result<Host> {
    let s = s.trim();
    let default_port = if tls { 2376 } else { 2375 };
    if s.is_empty() {
        return parse_host(DEFAULT_HOST, tls);
    }
    if let Some(path) = s.strip_prefix("unix://") {
        if path.is_empty() {
            bail!("invalid bind address ({s}): empty socket path");
        }
        return Ok(Host::Unix(PathBuf::from(path)));
    }
    if s.starts_with('/') {
        return Ok(Host::Unix(PathBuf::from(s)));
    }
    let rest = if let Some(r) = s.strip_prefix("tcp://") {
        r
    } else if let Some((scheme, _)) = s.split_once("://") {
        bail!("invalid bind address ({s}): unsupported protocol '{scheme}'");
    } else {
        s
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') {
        bail!("invalid bind address ({s}): should not contain a path element");
    }
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, after) = r
            .split_once(']')
            .ok_or_else(|| anyhow!("invalid bind address ({s})"))?;
        (h.to_string(), after.strip_prefix(':').unwrap_or(""))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None => (rest.to_string(), ""),
        }
    };
    let port = if port.is_empty() {
        default_port
    } else {
        port.parse()
            .map_err(|_| anyhow!("invalid bind address ({s}): invalid port '{port}'"))?
    };
    let host = if host.is_empty() {
        "127.0.0.1".to_string()
    } else {
        host
    };
    Ok(Host::Tcp { host, port })
}

/// TLS settings from `--tls`, `--tlsverify`, `--tlscacert`, `--tlscert`, `--tlskey`.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Use TLS.
    pub tls: bool,
    /// Use TLS and verify the server against the CA.
    pub verify: bool,
    /// CA certificate (PEM).
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM).
    pub cert: Option<PathBuf>,
    /// Client key (PEM).
    pub key: Option<PathBuf>,
}

/// A bidirectional byte stream to the daemon.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A request body.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// An empty body.
pub fn empty() -> Body {
    Full::new(Bytes::new()).map_err(|e| match e {}).boxed()
}

/// A JSON body.
pub fn json_body(v: &Value) -> Body {
    Full::new(Bytes::from(v.to_string()))
        .map_err(|e| match e {})
        .boxed()
}

/// An error the daemon answered with: printed as docker prints it.
#[derive(Debug)]
pub struct DaemonError {
    /// HTTP status.
    pub status: StatusCode,
    /// The `message` of the error body.
    pub message: String,
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error response from daemon: {}", self.message)
    }
}

impl std::error::Error for DaemonError {}

/// Whether `err` is the daemon saying an object does not exist.
pub fn is_not_found(err: &anyhow::Error) -> bool {
    err.downcast_ref::<DaemonError>()
        .is_some_and(|e| e.status == StatusCode::NOT_FOUND)
}

/// A client for one daemon.
#[derive(Debug, Clone)]
pub struct Client {
    host: Host,
    tls: Option<Arc<rustls::ClientConfig>>,
    version: String,
    debug: bool,
}

impl Client {
    /// A client for `host`; no connection is made until the first request.
    pub fn new(host: Host, tls: &TlsOptions) -> Result<Client> {
        let tls = if tls.tls || tls.verify {
            Some(Arc::new(tls_config(tls)?))
        } else {
            None
        };
        Ok(Client {
            host,
            tls,
            version: API_VERSION.to_string(),
            debug: false,
        })
    }

    /// With `-D`/`--log-level debug`: print each request and its status on stderr.
    pub fn set_debug(&mut self, debug: bool) {
        self.debug = debug;
    }

    /// The API version in use (after [`Client::negotiate`]).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Asks `/_ping` for the daemon's API version and uses the lower of it and ours.
    pub async fn negotiate(&mut self) -> Result<()> {
        let resp = self
            .send(Method::GET, "/_ping".into(), empty(), None)
            .await?;
        if let Some(v) = resp
            .headers()
            .get("api-version")
            .and_then(|v| v.to_str().ok())
        {
            if version_less(v, API_VERSION) {
                self.version = v.to_string();
            }
        }
        Ok(())
    }

    async fn connect(&self) -> Result<Box<dyn Io>> {
        let res: std::io::Result<Box<dyn Io>> = match &self.host {
            Host::Unix(path) => UnixStream::connect(path)
                .await
                .map(|s| Box::new(s) as Box<dyn Io>),
            Host::Tcp { host, port } => match TcpStream::connect((host.as_str(), *port)).await {
                Err(e) => Err(e),
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    match &self.tls {
                        None => Ok(Box::new(tcp)),
                        Some(cfg) => {
                            let name = rustls_pki_types::ServerName::try_from(host.clone())
                                .context("tls server name")?;
                            tokio_rustls::TlsConnector::from(cfg.clone())
                                .connect(name, tcp)
                                .await
                                .map(|s| Box::new(s) as Box<dyn Io>)
                        }
                    }
                }
            },
        };
        res.map_err(|e| {
            anyhow!(
                "Cannot connect to the berth daemon at {}. Is the berth daemon running? ({e})",
                self.host
            )
        })
    }

    fn uri(&self, path: &str) -> String {
        format!("/v{}{}", self.version, path)
    }

    fn host_header(&self) -> String {
        match &self.host {
            Host::Unix(_) => "api.moby.localhost".to_string(),
            Host::Tcp { host, port } => format!("{host}:{port}"),
        }
    }

    async fn send(
        &self,
        method: Method,
        uri: String,
        body: Body,
        content_type: Option<&str>,
    ) -> Result<Response<Incoming>> {
        let io = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .context("http handshake")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let auth = registry_auth_for(&uri);
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("Host", self.host_header())
            .header("User-Agent", concat!("berth/", env!("CARGO_PKG_VERSION")));
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        // docker sends registry credentials (or an empty "{}") with every pull and push.
        if let Some(auth) = auth {
            req = req.header("X-Registry-Auth", auth);
        }
        let req = req.body(body).context("build request")?;
        sender.send_request(req).await.context("send request")
    }

    /// Sends a request and returns the response if it is a success, else the daemon's error.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Body,
        content_type: Option<&str>,
    ) -> Result<Response<Incoming>> {
        let uri = self.uri(path);
        let shown = self.debug.then(|| format!("{method} {uri}"));
        let resp = self.send(method, uri, body, content_type).await?;
        if let Some(req) = shown {
            eprintln!("DEBU[berth] {req} -> {}", resp.status());
        }
        if resp.status().is_success() || resp.status() == StatusCode::NOT_MODIFIED {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Err(DaemonError {
            status,
            message: error_message(&bytes),
        }
        .into())
    }

    /// Sends a request with an optional JSON body and decodes the JSON answer (`null` if empty).
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let (b, ct) = match body {
            Some(v) => (json_body(v), Some("application/json")),
            None => (empty(), None),
        };
        let resp = self.request(method, path, b, ct).await?;
        let bytes = resp
            .into_body()
            .collect()
            .await
            .context("read response")?
            .to_bytes();
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).context("decode daemon response")
    }

    /// `GET path` decoded as JSON.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, None).await
    }

    /// `GET path` as raw bytes (for `inspect`, which prints the daemon's JSON as it came).
    pub async fn get_raw(&self, path: &str) -> Result<Bytes> {
        let resp = self.request(Method::GET, path, empty(), None).await?;
        Ok(resp
            .into_body()
            .collect()
            .await
            .context("read response")?
            .to_bytes())
    }

    /// `POST path` with no body, ignoring the answer.
    pub async fn post(&self, path: &str) -> Result<Value> {
        self.call(Method::POST, path, None).await
    }

    /// Opens a hijacked connection (attach, exec start): the request is written by hand with
    /// `Upgrade: tcp`, and after the response head the socket carries the raw stream both ways.
    pub async fn hijack(&self, path: &str, body: Option<&Value>) -> Result<Hijacked> {
        let mut io = self.connect().await?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: berth/{}\r\nConnection: Upgrade\r\n\
             Upgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.uri(path),
            self.host_header(),
            env!("CARGO_PKG_VERSION"),
            body.len()
        );
        io.write_all(head.as_bytes())
            .await
            .context("send request")?;
        io.write_all(body.as_bytes())
            .await
            .context("send request")?;
        io.flush().await.context("send request")?;
        let mut buf = Vec::with_capacity(1024);
        let end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = io.read(&mut chunk).await.context("read response")?;
            if n == 0 {
                bail!("daemon closed the connection before answering");
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let rest = buf[end..].to_vec();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("malformed response from daemon"))?;
        if self.debug {
            eprintln!("DEBU[berth] POST {} (hijack) -> {status}", self.uri(path));
        }
        if status == 101 || (200..300).contains(&status) {
            return Ok(Hijacked { io, pending: rest });
        }
        let body = read_error_body(&head, rest, &mut io).await;
        Err(DaemonError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: error_message(&body),
        }
        .into())
    }
}

/// The read side of a stream.
pub type BoxReader = Pin<Box<dyn AsyncRead + Send>>;

/// The `X-Registry-Auth` header for a pull (`/images/create?fromImage=`) or push
/// (`/images/{name}/push`): credentials for the image's registry from docker's config file
/// (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, `auths.<registry>.auth`), else
/// `{}`, base64url-encoded as docker does. None for other requests.
fn registry_auth_for(uri: &str) -> Option<String> {
    let image = if let Some(i) = uri.find("/images/create?") {
        let query = &uri[i + "/images/create?".len()..];
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix("fromImage="))
            .and_then(percent_decode)?
    } else if let Some(i) = uri.find("/images/") {
        let rest = &uri[i + "/images/".len()..];
        let (name, tail) = rest.split_once("/push")?;
        if !(tail.is_empty() || tail.starts_with('?')) {
            return None;
        }
        percent_decode(name)?
    } else {
        return None;
    };
    let first = image.split('/').next().unwrap_or("");
    let registry = if image.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost")
    {
        first.to_string()
    } else {
        "https://index.docker.io/v1/".to_string()
    };
    let config_dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| cert_dir_home().join(".docker"));
    let creds = std::fs::read(config_dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|c| c["auths"][&registry]["auth"].as_str().map(str::to_string))
        .and_then(|a: String| base64_decode(&a))
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        });
    let json = match creds {
        Some((user, pass)) => serde_json::json!({
            "username": user, "password": pass, "serveraddress": registry,
        })
        .to_string(),
        None => "{}".to_string(),
    };
    Some(base64url(json.as_bytes()))
}

fn cert_dir_home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()) {
        let c = match c {
            b'-' => b'+',
            b'_' => b'/',
            c => c,
        };
        acc = (acc << 6) | B64.iter().position(|a| *a == c)? as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// URL-safe base64 with padding, as Go's `base64.URLEncoding`.
fn base64url(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let v = (chunk[0] as u32) << 16
            | (chunk.get(1).copied().unwrap_or(0) as u32) << 8
            | chunk.get(2).copied().unwrap_or(0) as u32;
        for i in 0..4 {
            if i <= n {
                let c = B64[((v >> (18 - 6 * i)) & 63) as usize];
                out.push(match c {
                    b'+' => '-',
                    b'/' => '_',
                    c => c as char,
                });
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A hijacked connection and the bytes already read past the response head.
pub struct Hijacked {
    /// The connection.
    pub io: Box<dyn Io>,
    /// Stream bytes that arrived with the response head.
    pub pending: Vec<u8>,
}

impl fmt::Debug for Hijacked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hijacked")
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Hijacked {
    /// Splits into a reader (starting with the pending bytes) and a writer.
    pub fn split(self) -> (BoxReader, tokio::io::WriteHalf<Box<dyn Io>>) {
        let (r, w) = tokio::io::split(self.io);
        let reader = std::io::Cursor::new(self.pending).chain(r);
        (Box::pin(reader), w)
    }
}

async fn read_error_body(head: &str, mut body: Vec<u8>, io: &mut Box<dyn Io>) -> Vec<u8> {
    let lower = head.to_ascii_lowercase();
    let len = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = lower.contains("transfer-encoding: chunked");
    let deadline = tokio::time::sleep(std::time::Duration::from_secs(5));
    tokio::pin!(deadline);
    loop {
        if let Some(n) = len {
            if body.len() >= n {
                body.truncate(n);
                return body;
            }
        } else if chunked && find(&body, b"0\r\n\r\n").is_some() {
            return dechunk(&body);
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::select! {
            r = io.read(&mut chunk) => r.unwrap_or(0),
            _ = &mut deadline => 0,
        };
        if n == 0 {
            return if chunked { dechunk(&body) } else { body };
        }
        body.extend_from_slice(&chunk[..n]);
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = find(b, b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < i + 2 + size {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[(i + 4 + size).min(b.len())..];
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The `message` of a Docker error body, or the body itself.
pub fn error_message(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => match v.get("message").and_then(Value::as_str) {
            Some(m) => m.to_string(),
            None => String::from_utf8_lossy(body).trim().to_string(),
        },
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    }
}

/// Whether API version `a` is lower than `b` ("1.41" < "1.45").
pub fn version_less(a: &str, b: &str) -> bool {
    let parse = |s: &str| -> Vec<u32> { s.split('.').filter_map(|p| p.parse().ok()).collect() };
    parse(a) < parse(b)
}

/// Percent-encodes a query value.
pub fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn tls_config(opts: &TlsOptions) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("tls protocol versions")?;
    let dir = cert_dir();
    let pick = |given: &Option<PathBuf>, name: &str| -> Option<PathBuf> {
        given
            .clone()
            .or_else(|| Some(dir.join(name)).filter(|p| p.is_file()))
    };
    let builder = if opts.verify {
        let ca = pick(&opts.ca, "ca.pem")
            .ok_or_else(|| anyhow!("--tlsverify needs a CA certificate (--tlscacert)"))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in read_certs(&ca)? {
            roots
                .add(cert)
                .with_context(|| format!("add CA certificate from {}", ca.display()))?;
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    };
    let cert = pick(&opts.cert, "cert.pem");
    let key = pick(&opts.key, "key.pem");
    match (cert, key) {
        (Some(cert), Some(key)) => {
            let certs = read_certs(&cert)?;
            let key = {
                use rustls_pki_types::pem::PemObject;
                rustls_pki_types::PrivateKeyDer::from_pem_file(&key)
                    .map_err(|e| anyhow!("read key {}: {e}", key.display()))?
            };
            builder
                .with_client_auth_cert(certs, key)
                .context("client certificate")
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

fn cert_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("DOCKER_CERT_PATH") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".docker")
}

fn read_certs(path: &Path) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| anyhow!("read certificates {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("read certificates {}: {e}", path.display()))
}

/// `--tls` without `--tlsverify`: encrypt, but accept any server certificate (as docker does).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_like_docker() {
        assert_eq!(
            parse_host("unix:///run/berth/berth.sock", false).unwrap(),
            Host::Unix("/run/berth/berth.sock".into())
        );
        assert_eq!(
            parse_host("", false).unwrap(),
            Host::Unix("/run/berth/berth.sock".into())
        );
        assert_eq!(
            parse_host("tcp://127.0.0.1:2375", false).unwrap(),
            Host::Tcp {
                host: "127.0.0.1".into(),
                port: 2375
            }
        );
        assert_eq!(
            parse_host("tcp://localhost", true).unwrap(),
            Host::Tcp {
                host: "localhost".into(),
                port: 2376
            }
        );
        assert_eq!(
            parse_host(":4243", false).unwrap(),
            Host::Tcp {
                host: "127.0.0.1".into(),
                port: 4243
            }
        );
        assert_eq!(
            parse_host("tcp://[::1]:2375", false).unwrap(),
            Host::Tcp {
                host: "::1".into(),
                port: 2375
            }
        );
        assert_eq!(
            parse_host("tcp://[::1]:2375", false).unwrap().to_string(),
            "tcp://[::1]:2375"
        );
        assert!(parse_host("ssh://me@host", false).is_err());
        assert!(parse_host("tcp://host:port", false).is_err());
        assert!(parse_host("tcp://host:1/path", false).is_err());
    }

    #[test]
    fn compares_api_versions() {
        assert!(version_less("1.41", "1.45"));
        assert!(version_less("1.9", "1.10"));
        assert!(!version_less("1.45", "1.45"));
        assert!(!version_less("1.46", "1.45"));
    }

    #[test]
    fn error_messages_come_from_the_json_body() {
        assert_eq!(
            error_message(br#"{"message":"No such container: x"}"#),
            "No such container: x"
        );
        assert_eq!(error_message(b"plain text\n"), "plain text");
        assert_eq!(dechunk(b"5\r\nhello\r\n0\r\n\r\n"), b"hello");
    }

    /// A one-shot fake daemon on a unix socket: answers each connection with `respond`, which
    /// gets the request head and the connection.
    async fn fake_daemon<F, Fut>(respond: F) -> (Client, std::path::PathBuf)
    where
        F: Fn(String, UnixStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "berth-cli-fake-{}-{}.sock",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let respond = Arc::new(respond);
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let respond = respond.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut b = [0u8; 1];
                    while find(&head, b"\r\n\r\n").is_none() {
                        if conn.read(&mut b).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(b[0]);
                    }
                    respond(String::from_utf8_lossy(&head).into_owned(), conn).await;
                });
            }
        });
        let client = Client::new(Host::Unix(path.clone()), &TlsOptions::default()).unwrap();
        (client, path)
    }

    #[tokio::test]
    async fn negotiates_down_and_maps_errors() {
        let (mut client, path) = fake_daemon(|head, mut conn| async move {
            let resp = if head.starts_with("GET /_ping ") {
                "HTTP/1.1 200 OK\r\nAPI-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK".to_string()
            } else if head.starts_with("GET /v1.41/containers/x/json ") {
                let body = r#"{"message":"No such container: x"}"#;
                format!(
                    "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            } else {
                format!("HTTP/1.1 500 Oops\r\nContent-Length: {}\r\n\r\n{head}", head.len())
            };
            let _ = conn.write_all(resp.as_bytes()).await;
        })
        .await;
        client.negotiate().await.unwrap();
        assert_eq!(client.version(), "1.41");
        let err = client.get("/containers/x/json").await.unwrap_err();
        assert!(is_not_found(&err));
        assert_eq!(
            err.to_string(),
            "Error response from daemon: No such container: x"
        );
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn hijacked_streams_half_close_and_keep_reading() {
        // The fake daemon upgrades, reads stdin to EOF, then answers with what it got: that
        // only works if our side shuts down its write half and still reads.
        let (client, path) = fake_daemon(|head, mut conn| async move {
            assert!(head.contains("Upgrade: tcp"), "{head}");
            conn.write_all(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
                .await
                .unwrap();
            let mut got = Vec::new();
            conn.read_to_end(&mut got).await.unwrap();
            conn.write_all(&got).await.unwrap();
            conn.write_all(b" done").await.unwrap();
        })
        .await;
        let h = client
            .hijack("/containers/c/attach?stream=1&stdin=1", None)
            .await
            .unwrap();
        let (mut r, mut w) = h.split();
        w.write_all(b"input").await.unwrap();
        w.shutdown().await.unwrap();
        let mut out = String::new();
        r.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "input done");
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn hijack_errors_carry_the_daemon_message() {
        let (client, path) = fake_daemon(|_, mut conn| async move {
            let body = r#"{"message":"container c is not running"}"#;
            let resp = format!(
                "HTTP/1.1 409 Conflict\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes()).await;
        })
        .await;
        let err = client.hijack("/exec/e/start", None).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "Error response from daemon: container c is not running"
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn pulls_and_pushes_carry_registry_auth() {
        std::env::set_var("DOCKER_CONFIG", "/nonexistent-berth-test-config");
        assert_eq!(base64url(b"{}"), "e30=");
        assert_eq!(
            registry_auth_for("/v1.45/images/create?fromImage=busybox&tag=latest").as_deref(),
            Some("e30=")
        );
        assert_eq!(
            registry_auth_for("/v1.45/images/localhost%3A5000%2Fx/push?tag=1").as_deref(),
            Some("e30=")
        );
        assert_eq!(registry_auth_for("/v1.45/images/json"), None);
        assert_eq!(registry_auth_for("/v1.45/images/x/json"), None);
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(percent_decode("a%2Fb").unwrap(), "a/b");
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(q("a b/{\"x\"}"), "a%20b%2F%7B%22x%22%7D");
    }
}
