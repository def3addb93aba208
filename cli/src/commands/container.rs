//! Container verbs besides run/create/start/attach/exec: `ps`, `logs`, `stop`, `kill`, `rm`,
//! `inspect`, `top`, `stats`, `wait`, `pause`, `unpause`, `rename`, `restart`, `container prune`.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Value};

use super::{confirm, for_each, StatusError};
use crate::client::{empty, is_not_found, q, Client};
use crate::format::{
    self, ago, bytes_size, created_at, filters_json, human_size, indent_json, short_id, Format,
    Template,
};
use crate::stream::demux;

/// `berth ps`
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long, default_value_t = -1, allow_hyphen_values = true)]
    pub last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Display total file sizes
    #[arg(short = 's', long)]
    pub size: bool,
}

const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
];

/// docker's `Ellipsis`: cut to `max` characters with the last one replaced by "…".
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Ports as docker's `DisplayablePorts` prints them ("0.0.0.0:8080->80/tcp, 443/tcp").
pub fn display_ports(ports: &Value) -> String {
    let mut out = Vec::new();
    for p in ports.as_array().into_iter().flatten() {
        let private = p["PrivatePort"].as_i64().unwrap_or(0);
        let typ = p["Type"].as_str().unwrap_or("tcp");
        match p["PublicPort"].as_i64() {
            Some(public) if public != 0 => {
                let ip = p["IP"].as_str().unwrap_or("");
                let ip = if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.to_string()
                };
                out.push(format!("{ip}:{public}->{private}/{typ}"));
            }
            _ => out.push(format!("{private}/{typ}")),
        }
    }
    out.join(", ")
}

/// The template context docker gives one container in `ps` (every value a string).
pub fn ps_context(c: &Value, trunc: bool, size: bool) -> Value {
    let id = c["Id"].as_str().unwrap_or("");
    let names: Vec<String> = c["Names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|n| n.trim_start_matches('/').to_string())
        .filter(|n| !n.contains('/'))
        .collect();
    let command = c["Command"].as_str().unwrap_or("");
    let command = if trunc {
        ellipsis(command, 20)
    } else {
        command.to_string()
    };
    let mut image = c["Image"].as_str().unwrap_or("").to_string();
    if trunc && image.starts_with("sha256:") {
        image = short_id(&image);
    }
    let created = c["Created"].as_i64().unwrap_or(0);
    let mut labels: Vec<String> = c["Labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    labels.sort();
    let mounts: Vec<String> = c["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let n = m["Name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .or(m["Source"].as_str())
                .unwrap_or("");
            if trunc {
                ellipsis(n, 15)
            } else {
                n.to_string()
            }
        })
        .collect();
    let local_volumes = c["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["Driver"].as_str() == Some("local"))
        .count();
    let mut networks: Vec<String> = c["NetworkSettings"]["Networks"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    networks.sort();
    let size_str = if size || c.get("SizeRw").is_some() {
        let rw = c["SizeRw"].as_f64().unwrap_or(0.0);
        let root = c["SizeRootFs"].as_f64().unwrap_or(0.0);
        if root > 0.0 {
            format!("{} (virtual {})", human_size(rw), human_size(root))
        } else {
            human_size(rw)
        }
    } else {
        "0B".to_string()
    };
    json!({
        "ID": if trunc { short_id(id) } else { id.to_string() },
        "Image": image,
        "Command": format!("{:?}", command),
        "CreatedAt": created_at(created),
        "RunningFor": ago(created),
        "Ports": display_ports(&c["Ports"]),
        "State": c["State"].as_str().unwrap_or(""),
        "Status": c["Status"].as_str().unwrap_or(""),
        "Size": size_str,
        "Names": names.join(","),
        "Labels": labels.join(","),
        "Mounts": mounts.join(","),
        "Networks": networks.join(","),
        "Platform": null,
        "LocalVolumes": local_volumes.to_string(),
    })
}

/// `berth ps`
pub async fn ps(client: &Client, args: PsArgs) -> Result<i32> {
    let mut query = vec![];
    if args.all {
        query.push("all=1".to_string());
    }
    let limit = if args.latest { 1 } else { args.last };
    if limit > 0 {
        query.push(format!("limit={limit}"));
    }
    let format = Format::parse(args.format.as_deref());
    let wants_size =
        args.size || matches!(&format, Format::Table(t) | Format::Raw(t) if t.contains(".Size"));
    if wants_size {
        query.push("size=1".into());
    }
    let filters = filters_json(&args.filter).map_err(|e| {
        StatusError::exit(
            125,
            format!(
                "{e}\n\nUsage:  berth ps [OPTIONS]\n\nRun 'berth ps --help' for more information"
            ),
        )
    })?;
    if let Some(f) = filters {
        query.push(format!("filters={}", q(&f)));
    }
    let list = client
        .get(&format!("/containers/json?{}", query.join("&")))
        .await?;
    let items = list.as_array().cloned().unwrap_or_default();
    if args.quiet {
        let mut out = String::new();
        for c in &items {
            let id = c["Id"].as_str().unwrap_or("");
            out.push_str(&if args.no_trunc {
                id.to_string()
            } else {
                short_id(id)
            });
            out.push('\n');
        }
        print!("{out}");
        return Ok(0);
    }
    let ctxs: Vec<Value> = items
        .iter()
        .map(|c| ps_context(c, !args.no_trunc, wants_size))
        .collect();
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    let mut header = vec![
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ];
    if args.size {
        header.push("SIZE");
    }
    let with_size = args.size;
    format::print_objects(
        &format,
        &ctxs,
        &header,
        |c| {
            let mut row = vec![
                s(c, "ID"),
                s(c, "Image"),
                s(c, "Command"),
                s(c, "RunningFor"),
                s(c, "Status"),
                s(c, "Ports"),
                s(c, "Names"),
            ];
            if with_size {
                row.push(s(c, "Size"));
            }
            row
        },
        PS_HEADERS,
    )?;
    Ok(0)
}

/// `berth logs`
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Show extra details provided to logs
    #[arg(long)]
    pub details: bool,
    /// Follow log output
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Show logs since timestamp or relative (e.g. 42m for 42 minutes)
    #[arg(long)]
    pub since: Option<String>,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Show logs before a timestamp or relative (e.g. 42m for 42 minutes)
    #[arg(long)]
    pub until: Option<String>,
    /// Container
    pub container: String,
}

/// Turns docker's `--since`/`--until` values into what the API takes (unix seconds).
pub fn time_param(s: &str) -> String {
    let s = s.trim();
    let units = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];
    for (suffix, mult) in units {
        if let Some(n) = s.strip_suffix(suffix) {
            if let Ok(v) = n.parse::<f64>() {
                let t = chrono::Utc::now().timestamp() as f64 - v * mult;
                return format!("{}", t as i64);
            }
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return t.timestamp().to_string();
    }
    s.to_string()
}

/// `berth logs`
pub async fn logs(client: &Client, args: LogsArgs) -> Result<i32> {
    let info = client
        .get(&format!("/containers/{}/json", q(&args.container)))
        .await?;
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let id = info["Id"].as_str().unwrap_or(&args.container).to_string();
    let mut query = format!(
        "stdout=1&stderr=1&follow={}&timestamps={}&details={}&tail={}",
        args.follow as u8,
        args.timestamps as u8,
        args.details as u8,
        q(&args.tail)
    );
    if let Some(s) = &args.since {
        query.push_str(&format!("&since={}", q(&time_param(s))));
    }
    if let Some(u) = &args.until {
        query.push_str(&format!("&until={}", q(&time_param(u))));
    }
    let resp = client
        .request(
            Method::GET,
            &format!("/containers/{id}/logs?{query}"),
            empty(),
            None,
        )
        .await?;
    let body = resp.into_body().into_data_stream();
    let reader = tokio_util_reader(body);
    if tty {
        let mut reader = reader;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            use tokio::io::AsyncReadExt;
            let n = reader.read(&mut buf).await.context("read logs")?;
            if n == 0 {
                break;
            }
            let mut out = std::io::stdout().lock();
            out.write_all(&buf[..n])?;
            out.flush()?;
        }
    } else {
        demux(reader, |stream, data| {
            if stream >= 2 {
                let mut e = std::io::stderr().lock();
                e.write_all(data)?;
                e.flush()
            } else {
                let mut o = std::io::stdout().lock();
                o.write_all(data)?;
                o.flush()
            }
        })
        .await?;
    }
    Ok(0)
}

/// A response body as an `AsyncRead`.
pub fn tokio_util_reader<S>(body: S) -> std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, hyper::Error>> + Send + 'static,
{
    let stream = body.map(|r| r.map_err(std::io::Error::other));
    Box::pin(StreamReader::new(Box::pin(stream)))
}

/// Minimal stream-of-bytes reader (tokio-util's `StreamReader` without the dependency).
struct StreamReader {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send>>,
    chunk: bytes::Bytes,
}

impl StreamReader {
    fn new(
        stream: std::pin::Pin<
            Box<dyn futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send>,
        >,
    ) -> Self {
        StreamReader {
            stream,
            chunk: bytes::Bytes::new(),
        }
    }
}

impl tokio::io::AsyncRead for StreamReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        loop {
            if !self.chunk.is_empty() {
                let n = self.chunk.len().min(buf.remaining());
                let part = self.chunk.split_to(n);
                buf.put_slice(&part);
                return Poll::Ready(Ok(()));
            }
            match self.stream.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(b))) => self.chunk = b,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// `berth stop` / `berth restart`
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Signal to send to the container
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", visible_alias = "timeout")]
    pub time: Option<i64>,
    /// Containers
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `berth stop` (verb "stop") and `berth restart` (verb "restart")
pub async fn stop(client: &Client, args: StopArgs, verb: &str) -> Result<i32> {
    let mut params = vec![];
    if let Some(t) = args.time {
        params.push(format!("t={t}"));
    }
    if let Some(s) = &args.signal {
        params.push(format!("signal={}", q(s)));
    }
    let query = if params.is_empty() {
        String::new()
    } else {
        format!("?{}", params.join("&"))
    };
    for_each(&args.containers, true, |c| {
        let path = format!("/containers/{}/{verb}{query}", q(&c));
        async move { client.post(&path).await.map(|_| ()) }
    })
    .await
}

/// `berth kill`
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long, default_value = "KILL")]
    pub signal: String,
    /// Containers
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `berth kill`
pub async fn kill(client: &Client, args: KillArgs) -> Result<i32> {
    let sig = q(&args.signal);
    for_each(&args.containers, true, |c| {
        let path = format!("/containers/{}/kill?signal={sig}", q(&c));
        async move { client.post(&path).await.map(|_| ()) }
    })
    .await
}

/// `berth rm`
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove the specified link
    #[arg(short = 'l', long)]
    pub link: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Containers
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `berth rm`
pub async fn rm(client: &Client, args: RmArgs) -> Result<i32> {
    let query = format!(
        "force={}&v={}&link={}",
        args.force as u8, args.volumes as u8, args.link as u8
    );
    let mut failed = false;
    for c in &args.containers {
        let path = format!("/containers/{}?{query}", q(c.trim_start_matches('/')));
        match client.call(Method::DELETE, &path, None).await {
            Ok(_) => println!("{c}"),
            // docker rm -f: a container that is already gone is reported, but not a failure.
            Err(e) if args.force && is_not_found(&e) => eprintln!("{e:#}"),
            Err(e) => {
                eprintln!("{e:#}");
                failed = true;
            }
        }
    }
    Ok(failed as i32)
}

/// `berth pause` / `unpause`
#[derive(Debug, Args)]
pub struct ContainersArgs {
    /// Containers
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Posts `/containers/{c}/{verb}` for each container (pause, unpause).
pub async fn simple(client: &Client, args: ContainersArgs, verb: &str) -> Result<i32> {
    for_each(&args.containers, true, |c| {
        let path = format!("/containers/{}/{verb}", q(&c));
        async move { client.post(&path).await.map(|_| ()) }
    })
    .await
}

/// `berth wait`
pub async fn wait(client: &Client, args: ContainersArgs) -> Result<i32> {
    let mut failed = false;
    for c in &args.containers {
        match client.post(&format!("/containers/{}/wait", q(c))).await {
            Ok(v) => println!("{}", v["StatusCode"].as_i64().unwrap_or(0)),
            Err(e) => {
                eprintln!("{e:#}");
                failed = true;
            }
        }
    }
    Ok(failed as i32)
}

/// `berth rename`
#[derive(Debug, Args)]
pub struct RenameArgs {
    /// Container
    pub container: String,
    /// New name
    pub new_name: String,
}

/// `berth rename`
pub async fn rename(client: &Client, args: RenameArgs) -> Result<i32> {
    let new = args.new_name.trim();
    if new.is_empty() || args.container.trim().is_empty() {
        return Err(StatusError::exit(
            1,
            "Error: Neither old nor new names may be empty",
        ));
    }
    client
        .post(&format!(
            "/containers/{}/rename?name={}",
            q(&args.container),
            q(new)
        ))
        .await
        .map_err(|e| {
            StatusError::exit(
                1,
                format!(
                    "{e:#}\nError: failed to rename container named {}",
                    args.container
                ),
            )
        })?;
    Ok(0)
}

/// `berth top`
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Container
    pub container: String,
    /// ps options
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

/// `berth top`
pub async fn top(client: &Client, args: TopArgs) -> Result<i32> {
    let mut path = format!("/containers/{}/top", q(&args.container));
    if !args.ps_args.is_empty() {
        path.push_str(&format!("?ps_args={}", q(&args.ps_args.join(" "))));
    }
    let v = client.get(&path).await?;
    let mut lines = Vec::new();
    let titles: Vec<&str> = v["Titles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    lines.push(titles.join("\t"));
    for p in v["Processes"].as_array().into_iter().flatten() {
        let cells: Vec<&str> = p
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        lines.push(cells.join("\t"));
    }
    // docker's top uses tabwriter with a minimum width of 20 (Go's minwidth includes padding).
    let mut tw = tabwriter::TabWriter::new(Vec::new())
        .minwidth(20 - 3)
        .padding(3);
    for l in &lines {
        writeln!(tw, "{l}")?;
    }
    tw.flush()?;
    print!(
        "{}",
        String::from_utf8_lossy(&tw.into_inner().unwrap_or_default())
    );
    Ok(0)
}

/// `berth inspect` / `container inspect` / `image inspect`
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Display total file sizes if the type is container
    #[arg(short = 's', long)]
    pub size: bool,
    /// Return JSON for specified type
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Objects
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `berth inspect`; `kind` forces "container" or "image".
pub async fn inspect(client: &Client, args: InspectArgs, kind: Option<&str>) -> Result<i32> {
    let kind = kind.or(args.kind.as_deref());
    let tmpl = match args.format.as_deref() {
        Some(f) if f != "json" => Some(Template::parse(f)?),
        _ => None,
    };
    let mut raws = Vec::new();
    let mut errors = Vec::new();
    for name in &args.names {
        let mut found = None;
        let mut last_err = None;
        if kind.is_none() || kind == Some("container") {
            let size = if args.size { "?size=1" } else { "" };
            match client
                .get_raw(&format!("/containers/{}/json{size}", q(name)))
                .await
            {
                Ok(b) => found = Some(b),
                Err(e) if is_not_found(&e) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        if found.is_none() && (kind.is_none() || kind == Some("image")) {
            match client.get_raw(&format!("/images/{}/json", q(name))).await {
                Ok(b) => found = Some(b),
                Err(e) if is_not_found(&e) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        match found {
            Some(b) => raws.push(String::from_utf8_lossy(&b).trim().to_string()),
            None => {
                // `inspect` names the object; `container/image inspect` print the daemon's words.
                let msg = match (kind, last_err) {
                    (Some(_), Some(e)) => format!("{e:#}"),
                    _ => format!("Error: No such object: {name}"),
                };
                errors.push(msg);
            }
        }
    }
    let mut out = String::new();
    match tmpl {
        Some(t) => {
            for r in &raws {
                out.push_str(&t.render_raw(r.as_bytes())?);
                out.push('\n');
            }
        }
        None => {
            out = indent_json(&format!("[{}]", raws.join(",")));
            out.push('\n');
        }
    }
    print!("{out}");
    if errors.is_empty() {
        Ok(0)
    } else {
        Err(StatusError::exit(1, errors.join("\n")))
    }
}

/// `berth stats`
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Containers
    pub containers: Vec<String>,
}

const STATS_HEADERS: &[(&str, &str)] = &[
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

/// The `stats` row of one stats sample, as docker computes it on Linux.
pub fn stats_context(container: &str, s: &Value, trunc: bool) -> Value {
    let id = s["id"].as_str().unwrap_or(container);
    let name = s["name"].as_str().unwrap_or("").trim_start_matches('/');
    let cpu = &s["cpu_stats"];
    let pre = &s["precpu_stats"];
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let cpu_delta = f(&cpu["cpu_usage"]["total_usage"]) - f(&pre["cpu_usage"]["total_usage"]);
    let sys_delta = f(&cpu["system_cpu_usage"]) - f(&pre["system_cpu_usage"]);
    let mut online = f(&cpu["online_cpus"]);
    if online == 0.0 {
        online = cpu["cpu_usage"]["percpu_usage"]
            .as_array()
            .map(|a| a.len() as f64)
            .unwrap_or(0.0);
    }
    let cpu_perc = if sys_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / sys_delta * online * 100.0
    } else {
        0.0
    };
    let mem = &s["memory_stats"];
    let usage = f(&mem["usage"]);
    let st = &mem["stats"];
    let cache = if let Some(v) = st["total_inactive_file"].as_f64().filter(|v| *v < usage) {
        v
    } else {
        st["inactive_file"]
            .as_f64()
            .filter(|v| *v < usage)
            .unwrap_or(0.0)
    };
    let used = usage - cache;
    let limit = f(&mem["limit"]);
    let mem_perc = if limit > 0.0 {
        used / limit * 100.0
    } else {
        0.0
    };
    let (mut rx, mut tx) = (0.0, 0.0);
    for (_, n) in s["networks"].as_object().into_iter().flatten() {
        rx += f(&n["rx_bytes"]);
        tx += f(&n["tx_bytes"]);
    }
    let (mut rd, mut wr) = (0.0, 0.0);
    for e in s["blkio_stats"]["io_service_bytes_recursive"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match e["op"].as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => rd += f(&e["value"]),
            Some("write") => wr += f(&e["value"]),
            _ => {}
        }
    }
    let pids = s["pids_stats"]["current"].as_u64().unwrap_or(0);
    json!({
        "Container": container,
        "ID": if trunc { short_id(id) } else { id.to_string() },
        "Name": if name.is_empty() { "--".to_string() } else { name.to_string() },
        "CPUPerc": format!("{cpu_perc:.2}%"),
        "MemUsage": format!("{} / {}", bytes_size(used), bytes_size(limit)),
        "MemPerc": format!("{mem_perc:.2}%"),
        "NetIO": format!("{} / {}", human_size(rx), human_size(tx)),
        "BlockIO": format!("{} / {}", human_size(rd), human_size(wr)),
        "PIDs": pids.to_string(),
    })
}

/// `berth stats`
pub async fn stats(client: &Client, args: StatsArgs) -> Result<i32> {
    let format = Format::parse(args.format.as_deref());
    if !args.no_stream {
        return stats_stream(client, &args, &format).await;
    }
    let names: Vec<String> = if args.containers.is_empty() {
        running_ids(client, args.all).await?
    } else {
        args.containers.clone()
    };
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let samples = futures_util::future::join_all(names.iter().map(|n| async move {
        (
            n.clone(),
            client
                .get(&format!("/containers/{}/stats?stream=0", q(n)))
                .await,
        )
    }))
    .await;
    for (name, r) in samples {
        match r {
            Ok(s) => rows.push(stats_context(&name, &s, !args.no_trunc)),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() && !args.containers.is_empty() {
        return Err(StatusError::exit(1, errors.join("\n")));
    }
    print_stats(&format, &rows)?;
    Ok(0)
}

async fn running_ids(client: &Client, all: bool) -> Result<Vec<String>> {
    let list = client
        .get(&format!("/containers/json?all={}", all as u8))
        .await?;
    Ok(list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["Id"].as_str().map(str::to_string))
        .collect())
}

fn print_stats(format: &Format, rows: &[Value]) -> Result<()> {
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    format::print_objects(
        format,
        rows,
        &[
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "BLOCK I/O",
            "PIDS",
        ],
        |c| {
            [
                "ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs",
            ]
            .iter()
            .map(|k| s(c, k))
            .collect()
        },
        STATS_HEADERS,
    )
}

/// Live `stats`: one `stream=1` request per container feeding the latest sample into a
/// table that is redrawn every half second (containers come and go with `ps` when none are
/// named), as docker does.
async fn stats_stream(client: &Client, args: &StatsArgs, format: &Format) -> Result<i32> {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    type Rows = Arc<Mutex<BTreeMap<String, Value>>>;
    let rows: Rows = Arc::new(Mutex::new(BTreeMap::new()));
    let mut watching: BTreeMap<String, tokio::task::JoinHandle<()>> = BTreeMap::new();
    let trunc = !args.no_trunc;
    loop {
        let names = if args.containers.is_empty() {
            running_ids(client, args.all).await?
        } else {
            args.containers.clone()
        };
        watching.retain(|name, task| {
            let keep = names.contains(name) && !task.is_finished();
            if !keep {
                task.abort();
                if let Ok(mut r) = rows.lock() {
                    r.remove(name);
                }
            }
            keep
        });
        for name in &names {
            if watching.contains_key(name) {
                continue;
            }
            let (client, rows, key) = (client.clone(), rows.clone(), name.clone());
            let task = tokio::spawn(async move {
                let path = format!("/containers/{}/stats?stream=1", q(&key));
                let Ok(resp) = client.request(Method::GET, &path, empty(), None).await else {
                    return;
                };
                let mut samples = super::image::message_lines(resp);
                while let Some(Ok(s)) = samples.next().await {
                    if let Ok(mut r) = rows.lock() {
                        r.insert(key.clone(), stats_context(&key, &s, trunc));
                    }
                }
            });
            watching.insert(name.clone(), task);
        }
        let snapshot: Vec<Value> = rows
            .lock()
            .map(|r| names.iter().filter_map(|n| r.get(n).cloned()).collect())
            .unwrap_or_default();
        print!("\x1b[2J\x1b[H");
        print_stats(format, &snapshot)?;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// `berth container prune`
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// `berth container prune`
pub async fn prune(client: &Client, args: PruneArgs) -> Result<i32> {
    if !args.force
        && !confirm(
            "WARNING! This will remove all stopped containers.\nAre you sure you want to continue?",
        )
    {
        return Ok(0);
    }
    let (deleted, space) = prune_containers(client, &args.filter).await?;
    if !deleted.is_empty() {
        println!("Deleted Containers:\n{}\n", deleted.join("\n"));
    }
    println!(
        "Total reclaimed space: {}",
        crate::format::human_size4(space)
    );
    Ok(0)
}

/// Calls `/containers/prune`; returns the deleted ids and reclaimed bytes.
pub async fn prune_containers(client: &Client, filter: &[String]) -> Result<(Vec<String>, f64)> {
    let path = match filters_json(filter)? {
        Some(f) => format!("/containers/prune?filters={}", q(&f)),
        None => "/containers/prune".to_string(),
    };
    let v = client.post(&path).await?;
    let deleted = v["ContainersDeleted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    Ok((deleted, v["SpaceReclaimed"].as_f64().unwrap_or(0.0)))
}

/// `berth port`
#[derive(Debug, Args)]
pub struct PortArgs {
    /// Container
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    pub port: Option<String>,
}

/// `berth port`: "80/tcp -> 0.0.0.0:8080" lines, or the host addresses of one port.
pub async fn port(client: &Client, args: PortArgs) -> Result<i32> {
    let info = client
        .get(&format!("/containers/{}/json", q(&args.container)))
        .await?;
    let ports = info["NetworkSettings"]["Ports"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut keys: Vec<&String> = ports.keys().collect();
    keys.sort();
    let addr = |b: &Value| {
        let ip = b["HostIp"].as_str().unwrap_or("");
        let ip = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        format!("{ip}:{}", b["HostPort"].as_str().unwrap_or(""))
    };
    if let Some(want) = &args.port {
        let key = if want.contains('/') {
            want.clone()
        } else {
            format!("{want}/tcp")
        };
        let bindings = ports.get(&key).and_then(Value::as_array);
        match bindings {
            Some(b) if !b.is_empty() => {
                for x in b {
                    println!("{}", addr(x));
                }
                Ok(0)
            }
            _ => Err(StatusError::exit(
                1,
                format!(
                    "Error: No public port '{want}' published for {}",
                    args.container
                ),
            )),
        }
    } else {
        for k in keys {
            for b in ports[k].as_array().into_iter().flatten() {
                println!("{k} -> {}", addr(b));
            }
        }
        Ok(0)
    }
}

/// `berth diff`
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Container
    pub container: String,
}

/// `berth diff`: "C /etc", "A /tmp/x", "D /y".
pub async fn diff(client: &Client, args: DiffArgs) -> Result<i32> {
    let v = client
        .get(&format!("/containers/{}/changes", q(&args.container)))
        .await?;
    // In the daemon's order, as docker prints them.
    for c in v.as_array().into_iter().flatten() {
        let kind = match c["Kind"].as_i64() {
            Some(0) => "C",
            Some(1) => "A",
            Some(2) => "D",
            _ => "?",
        };
        println!("{kind} {}", c["Path"].as_str().unwrap_or(""));
    }
    Ok(0)
}

/// `berth export`
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    pub output: Option<std::path::PathBuf>,
    /// Container
    pub container: String,
}

/// `berth export`: the container's filesystem as a tar archive.
pub async fn export(client: &Client, args: ExportArgs) -> Result<i32> {
    use std::io::IsTerminal;
    if args.output.is_none() && std::io::stdout().is_terminal() {
        return Err(StatusError::exit(
            1,
            "cowardly refusing to save to a terminal. Use the -o flag or redirect",
        ));
    }
    let resp = client
        .request(
            Method::GET,
            &format!("/containers/{}/export", q(&args.container)),
            empty(),
            None,
        )
        .await?;
    let mut body = resp.into_body();
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("create {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame.context("read archive")?.data_ref() {
            out.write_all(d).context("write archive")?;
        }
    }
    out.flush().context("write archive")?;
    Ok(0)
}

/// `berth commit`
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short = 'a', long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short = 'p', long, default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub pause: bool,
    /// Container
    pub container: String,
    /// REPOSITORY[:TAG]
    pub reference: Option<String>,
}

/// `berth commit`: prints the new image's id.
pub async fn commit(client: &Client, args: CommitArgs) -> Result<i32> {
    let mut query = vec![
        format!("container={}", q(&args.container)),
        format!("pause={}", args.pause as u8),
    ];
    if let Some(r) = &args.reference {
        let (repo, tag) = super::image::split_ref(r);
        query.push(format!("repo={}&tag={}", q(&repo), q(&tag)));
    }
    if let Some(a) = &args.author {
        query.push(format!("author={}", q(a)));
    }
    if let Some(m) = &args.message {
        query.push(format!("comment={}", q(m)));
    }
    for c in &args.change {
        query.push(format!("changes={}", q(c)));
    }
    let v = client
        .call(
            Method::POST,
            &format!("/commit?{}", query.join("&")),
            Some(&json!({})),
        )
        .await?;
    println!("{}", v["Id"].as_str().unwrap_or(""));
    Ok(0)
}

/// `berth update`
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// Memory limit
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    /// Containers
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// The `POST /containers/{id}/update` body for these flags.
pub fn update_body(args: &UpdateArgs) -> Result<Value> {
    let mut b = serde_json::Map::new();
    if let Some(c) = &args.cpus {
        b.insert("NanoCpus".into(), json!(format::parse_cpus(c)?));
    }
    if let Some(c) = args.cpu_shares {
        b.insert("CpuShares".into(), json!(c));
    }
    if let Some(m) = &args.memory {
        b.insert("Memory".into(), json!(format::parse_ram(m)?));
    }
    if let Some(m) = &args.memory_reservation {
        b.insert("MemoryReservation".into(), json!(format::parse_ram(m)?));
    }
    if let Some(m) = &args.memory_swap {
        let v = if m.trim() == "-1" {
            -1
        } else {
            format::parse_ram(m)?
        };
        b.insert("MemorySwap".into(), json!(v));
    }
    if let Some(p) = args.pids_limit {
        b.insert("PidsLimit".into(), json!(p));
    }
    if let Some(r) = &args.restart {
        let (name, count) = match r.split_once(':') {
            Some((n, c)) => (n, c.parse::<i64>().unwrap_or(0)),
            None => (r.as_str(), 0),
        };
        b.insert(
            "RestartPolicy".into(),
            json!({"Name": name, "MaximumRetryCount": count}),
        );
    }
    if b.is_empty() {
        anyhow::bail!("you must provide one or more flags when using this command");
    }
    Ok(Value::Object(b))
}

/// `berth update`
pub async fn update(client: &Client, args: UpdateArgs) -> Result<i32> {
    let body = update_body(&args).map_err(|e| StatusError::exit(125, format!("{e:#}")))?;
    let mut failed = false;
    for c in &args.containers {
        match client
            .call(
                Method::POST,
                &format!("/containers/{}/update", q(c)),
                Some(&body),
            )
            .await
        {
            Ok(v) => {
                for w in v["Warnings"].as_array().into_iter().flatten() {
                    eprintln!("{}", w.as_str().unwrap_or(""));
                }
                println!("{c}");
            }
            Err(e) => {
                eprintln!("{e:#}");
                failed = true;
            }
        }
    }
    Ok(failed as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_context_formats_like_docker() {
        let now = chrono::Utc::now().timestamp();
        let c = json!({
            "Id": "8a19af6c7c68aaaabbbbccccddddeeeeffff0000111122223333444455556666",
            "Names": ["/web"],
            "Image": "busybox",
            "Command": "sh -c 'sleep 1000000000'",
            "Created": now - 150,
            "Ports": [{"PrivatePort": 80, "PublicPort": 8080, "IP": "0.0.0.0", "Type": "tcp"},
                      {"PrivatePort": 443, "Type": "tcp"}],
            "Labels": {"b": "2", "a": "1"},
            "State": "running",
            "Status": "Up 2 minutes",
            "NetworkSettings": {"Networks": {"none": {}}},
            "Mounts": []
        });
        let v = ps_context(&c, true, false);
        assert_eq!(v["ID"], "8a19af6c7c68");
        assert_eq!(v["Names"], "web");
        assert_eq!(v["Command"], "\"sh -c 'sleep 100000…\"");
        assert_eq!(v["RunningFor"], "2 minutes ago");
        assert_eq!(v["Ports"], "0.0.0.0:8080->80/tcp, 443/tcp");
        assert_eq!(v["Labels"], "a=1,b=2");
        assert_eq!(v["Networks"], "none");
        assert_eq!(v["Status"], "Up 2 minutes");
        assert_eq!(v["Size"], "0B");
        let full = ps_context(&c, false, false);
        assert_eq!(full["Command"], "\"sh -c 'sleep 1000000000'\"");
    }

    #[test]
    fn stats_are_computed_like_docker() {
        let s = json!({
            "id": "0123456789abcdef", "name": "/web",
            "cpu_stats": {"cpu_usage": {"total_usage": 2_000_000u64}, "system_cpu_usage": 100_000_000u64, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000u64}, "system_cpu_usage": 90_000_000u64},
            "memory_stats": {"usage": 10_485_760u64, "limit": 67_108_864u64, "stats": {"total_inactive_file": 2_097_152u64}},
            "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 648}},
            "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 4096}, {"op": "Write", "value": 0}]},
            "pids_stats": {"current": 3}
        });
        let v = stats_context("web", &s, true);
        assert_eq!(v["ID"], "0123456789ab");
        assert_eq!(v["Name"], "web");
        assert_eq!(v["CPUPerc"], "20.00%");
        assert_eq!(v["MemUsage"], "8MiB / 64MiB");
        assert_eq!(v["MemPerc"], "12.50%");
        assert_eq!(v["NetIO"], "1.5kB / 648B");
        assert_eq!(v["BlockIO"], "4.1kB / 0B");
        assert_eq!(v["PIDs"], "3");
    }

    #[test]
    fn update_flags_become_the_update_body() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Wrap {
            #[command(flatten)]
            u: UpdateArgs,
        }
        let a = Wrap::try_parse_from([
            "update",
            "--memory",
            "128m",
            "--cpus",
            "1.5",
            "--pids-limit",
            "-1",
            "--restart",
            "on-failure:2",
            "c1",
        ])
        .unwrap()
        .u;
        assert_eq!(
            update_body(&a).unwrap(),
            json!({"Memory": 128 << 20, "NanoCpus": 1_500_000_000, "PidsLimit": -1,
                   "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}})
        );
        let none = Wrap::try_parse_from(["update", "c1"]).unwrap().u;
        assert!(update_body(&none).is_err());
    }

    #[test]
    fn ellipsis_counts_characters() {
        assert_eq!(ellipsis("short", 20), "short");
        assert_eq!(ellipsis("abcdefghij", 5), "abcd…");
    }

    #[test]
    fn relative_times_become_unix_seconds() {
        let now = chrono::Utc::now().timestamp();
        let t: i64 = time_param("10m").parse().unwrap();
        assert!((now - 600 - t).abs() <= 1);
        assert_eq!(time_param("1700000000"), "1700000000");
        assert_eq!(time_param("2024-01-01T00:00:00Z"), "1704067200");
    }
}
