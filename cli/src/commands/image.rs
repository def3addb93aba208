//! Image verbs: `images`, `image rm/tag/history/prune/save/load/import/pull`, and docker's
//! JSON-message progress display used by load, import and pull.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use clap::Args;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Method;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use super::container::ellipsis;
use super::{confirm, StatusError};
use crate::client::{empty, q, Body, Client};
use crate::format::{self, ago, filters_json, human_size, short_id, Format};

/// `berth images`
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Repository[:tag]
    pub reference: Option<String>,
}

const IMAGE_HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Containers", "CONTAINERS"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "VIRTUAL SIZE"),
];

/// One row per repo:tag of each image, as docker's image formatter expands them.
pub fn image_rows(images: &[Value], trunc: bool) -> Vec<Value> {
    let mut rows = Vec::new();
    for img in images {
        let id = img["Id"].as_str().unwrap_or("");
        let id = if trunc { short_id(id) } else { id.to_string() };
        let created = img["Created"].as_i64().unwrap_or(0);
        let size = human_size(img["Size"].as_f64().unwrap_or(0.0));
        // VirtualSize and SharedSize use go-units' default precision (4), Size 3.
        let virtual_size = crate::format::human_size4(img["Size"].as_f64().unwrap_or(0.0));
        let mut tags: Vec<(String, String)> = img["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|t| *t != "<none>:<none>")
            .map(|t| match t.rsplit_once(':') {
                Some((r, tag)) if !tag.contains('/') => (r.to_string(), tag.to_string()),
                _ => (t.to_string(), "<none>".to_string()),
            })
            .collect();
        let digests: HashMap<String, String> = img["RepoDigests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter_map(|d| d.split_once('@'))
            .map(|(r, d)| (r.to_string(), d.to_string()))
            .collect();
        if tags.is_empty() {
            let repo = digests.keys().next().cloned();
            tags.push((
                repo.unwrap_or_else(|| "<none>".into()),
                "<none>".to_string(),
            ));
        }
        for (repo, tag) in tags {
            let digest = digests
                .get(&repo)
                .cloned()
                .unwrap_or_else(|| "<none>".into());
            rows.push(json!({
                "ID": id,
                "Repository": repo,
                "Tag": tag,
                "Digest": digest,
                "CreatedSince": ago(created),
                "CreatedAt": format::created_at(created),
                "Size": size,
                "Containers": match img["Containers"].as_i64() { Some(n) if n >= 0 => n.to_string(), _ => "N/A".into() },
                "SharedSize": match img["SharedSize"].as_f64() { Some(n) if n >= 0.0 => crate::format::human_size4(n), _ => "N/A".into() },
                "UniqueSize": "N/A",
                "VirtualSize": virtual_size,
            }));
        }
    }
    rows
}

/// `berth images`
pub async fn images(client: &Client, args: ImagesArgs) -> Result<i32> {
    let mut filters = args.filter.clone();
    if let Some(r) = &args.reference {
        filters.push(format!("reference={r}"));
    }
    let mut query = format!("all={}", args.all as u8);
    if let Some(f) = filters_json(&filters)? {
        query.push_str(&format!("&filters={}", q(&f)));
    }
    let list = client.get(&format!("/images/json?{query}")).await?;
    let items = list.as_array().cloned().unwrap_or_default();
    if args.quiet {
        let mut seen = Vec::new();
        for img in &items {
            let id = img["Id"].as_str().unwrap_or("");
            let id = if args.no_trunc {
                id.to_string()
            } else {
                short_id(id)
            };
            if !seen.contains(&id) {
                println!("{id}");
                seen.push(id);
            }
        }
        return Ok(0);
    }
    let rows = image_rows(&items, !args.no_trunc);
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    let digests = args.digests;
    let header: Vec<&str> = if digests {
        vec!["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"]
    } else {
        vec!["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    };
    format::print_objects(
        &Format::parse(args.format.as_deref()),
        &rows,
        &header,
        |r| {
            let mut row = vec![s(r, "Repository"), s(r, "Tag")];
            if digests {
                row.push(s(r, "Digest"));
            }
            row.extend([s(r, "ID"), s(r, "CreatedSince"), s(r, "Size")]);
            row
        },
        IMAGE_HEADERS,
    )?;
    Ok(0)
}

/// `berth rmi` / `image rm`
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Do not delete untagged parents
    #[arg(long = "no-prune")]
    pub no_prune: bool,
    /// Images
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// `berth rmi`
pub async fn rmi(client: &Client, args: RmiArgs) -> Result<i32> {
    let mut failed = false;
    for img in &args.images {
        let path = format!(
            "/images/{}?force={}&noprune={}",
            q(img),
            args.force as u8,
            args.no_prune as u8
        );
        match client.call(Method::DELETE, &path, None).await {
            Ok(v) => {
                for item in v.as_array().into_iter().flatten() {
                    if let Some(u) = item["Untagged"].as_str() {
                        println!("Untagged: {u}");
                    }
                    if let Some(d) = item["Deleted"].as_str() {
                        println!("Deleted: {d}");
                    }
                }
            }
            // docker rmi -f: an image that is already gone is reported, but not a failure.
            Err(e) if args.force && crate::client::is_not_found(&e) => eprintln!("{e:#}"),
            Err(e) => {
                eprintln!("{e:#}");
                failed = true;
            }
        }
    }
    Ok(failed as i32)
}

/// `berth tag`
#[derive(Debug, Args)]
pub struct TagArgs {
    /// Source image
    pub source: String,
    /// Target image
    pub target: String,
}

/// Splits `repo[:tag]` (a port in the registry host is not a tag).
pub fn split_ref(r: &str) -> (String, String) {
    let (name, _) = r.split_once('@').unwrap_or((r, ""));
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.rsplit_once(':') {
        Some((_, tag)) => (
            name[..name.len() - tag.len() - 1].to_string(),
            tag.to_string(),
        ),
        None => (name.to_string(), "latest".to_string()),
    }
}

/// `berth tag`
pub async fn tag(client: &Client, args: TagArgs) -> Result<i32> {
    let (repo, tag) = split_ref(&args.target);
    client
        .post(&format!(
            "/images/{}/tag?repo={}&tag={}",
            q(&args.source),
            q(&repo),
            q(&tag)
        ))
        .await?;
    Ok(0)
}

/// `berth history`
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub human: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Image
    pub image: String,
}

/// `berth history`
pub async fn history(client: &Client, args: HistoryArgs) -> Result<i32> {
    let v = client
        .get(&format!("/images/{}/history", q(&args.image)))
        .await?;
    let items = v.as_array().cloned().unwrap_or_default();
    let trunc = !args.no_trunc;
    let rows: Vec<Value> = items
        .iter()
        .map(|h| {
            let id = h["Id"].as_str().unwrap_or("");
            let id = if id.is_empty() || id == "<missing>" {
                "<missing>".to_string()
            } else if trunc {
                short_id(id)
            } else {
                id.to_string()
            };
            let created = h["Created"].as_i64().unwrap_or(0);
            let by = h["CreatedBy"].as_str().unwrap_or("").replace('\t', " ");
            let size = h["Size"].as_f64().unwrap_or(0.0);
            json!({
                "ID": id,
                "CreatedSince": if args.human { ago(created) } else { format::created_at(created) },
                "CreatedAt": format::created_at(created),
                "CreatedBy": if trunc { ellipsis(&by, 45) } else { by },
                "Size": if args.human { human_size(size) } else { format!("{size}") },
                "Comment": h["Comment"].as_str().unwrap_or(""),
            })
        })
        .collect();
    if args.quiet {
        for r in &rows {
            println!("{}", r["ID"].as_str().unwrap_or(""));
        }
        return Ok(0);
    }
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    format::print_objects(
        &Format::parse(args.format.as_deref()),
        &rows,
        &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
        |r| {
            ["ID", "CreatedSince", "CreatedBy", "Size", "Comment"]
                .iter()
                .map(|k| s(r, k))
                .collect()
        },
        &[
            ("ID", "IMAGE"),
            ("CreatedSince", "CREATED"),
            ("CreatedAt", "CREATED AT"),
            ("CreatedBy", "CREATED BY"),
            ("Size", "SIZE"),
            ("Comment", "COMMENT"),
        ],
    )?;
    Ok(0)
}

/// `berth image prune`
#[derive(Debug, Args)]
pub struct ImagePruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// `berth image prune`
pub async fn image_prune(client: &Client, args: ImagePruneArgs) -> Result<i32> {
    let warning = if args.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !args.force && !confirm(&format!("{warning}\nAre you sure you want to continue?")) {
        return Ok(0);
    }
    let (lines, space) = prune_images(client, args.all, &args.filter).await?;
    if !lines.is_empty() {
        println!("Deleted Images:\n{}\n", lines.join("\n"));
    }
    println!(
        "Total reclaimed space: {}",
        crate::format::human_size4(space)
    );
    Ok(0)
}

/// Calls `/images/prune`; returns docker's "untagged: x" / "deleted: y" lines and the space.
pub async fn prune_images(
    client: &Client,
    all: bool,
    filter: &[String],
) -> Result<(Vec<String>, f64)> {
    let mut filter = filter.to_vec();
    filter.push(format!("dangling={}", !all));
    let f = filters_json(&filter)?.unwrap_or_default();
    let v = client
        .post(&format!("/images/prune?filters={}", q(&f)))
        .await?;
    let mut lines = Vec::new();
    for item in v["ImagesDeleted"].as_array().into_iter().flatten() {
        if let Some(u) = item["Untagged"].as_str() {
            lines.push(format!("untagged: {u}"));
        }
        if let Some(d) = item["Deleted"].as_str() {
            lines.push(format!("deleted: {d}"));
        }
    }
    Ok((lines, v["SpaceReclaimed"].as_f64().unwrap_or(0.0)))
}

/// `berth save`
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Images
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// `berth save`
pub async fn save(client: &Client, args: SaveArgs) -> Result<i32> {
    if args.output.is_none() && std::io::stdout().is_terminal() {
        return Err(StatusError::exit(
            1,
            "cowardly refusing to save to a terminal. Use the -o flag or redirect",
        ));
    }
    let names: Vec<String> = args
        .images
        .iter()
        .map(|n| format!("names={}", q(n)))
        .collect();
    let resp = client
        .request(
            Method::GET,
            &format!("/images/get?{}", names.join("&")),
            empty(),
            None,
        )
        .await?;
    let mut body = resp.into_body();
    let (mut out, tmp): (Box<dyn Write>, Option<(PathBuf, PathBuf)>) = match &args.output {
        Some(path) => {
            // Like docker, write next to the target and rename when complete.
            let tmp = path.with_file_name(format!(
                ".{}.berth-save.tmp",
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ));
            let f = std::fs::File::create(&tmp)
                .with_context(|| format!("failed to save image: create {}", path.display()))?;
            (
                Box::new(std::io::BufWriter::new(f)),
                Some((tmp, path.clone())),
            )
        }
        None => (Box::new(std::io::stdout().lock()), None),
    };
    while let Some(frame) = body.frame().await {
        let frame = frame.context("read image archive")?;
        if let Some(data) = frame.data_ref() {
            out.write_all(data).context("write image archive")?;
        }
    }
    out.flush().context("write image archive")?;
    drop(out);
    if let Some((tmp, path)) = tmp {
        std::fs::rename(&tmp, &path).with_context(|| format!("rename to {}", path.display()))?;
    }
    Ok(0)
}

/// Streams a file or stdin as a request body.
fn file_body(path: Option<PathBuf>) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::spawn(async move {
        let mut reader: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match path {
            Some(p) => match tokio::fs::File::open(&p).await {
                Ok(f) => Box::new(f),
                Err(e) => {
                    let _ = tx
                        .send(Err(std::io::Error::new(
                            e.kind(),
                            format!("open {}: {e}", p.display()),
                        )))
                        .await;
                    return;
                }
            },
            None => Box::new(tokio::io::stdin()),
        };
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => {
                    if tx
                        .send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item.map(Frame::data), rx))
    });
    BodyExt::boxed(StreamBody::new(stream))
}

/// An I/O error in Go's words ("no such file or directory"), as docker prints them.
pub fn go_io_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s,
            }
        }
    }
}

/// `berth load`
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short = 'i', long)]
    pub input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `berth load`
pub async fn load(client: &Client, args: LoadArgs) -> Result<i32> {
    if args.input.is_none() && std::io::stdin().is_terminal() {
        return Err(StatusError::exit(
            1,
            "requested load from stdin, but stdin is empty",
        ));
    }
    if let Some(p) = &args.input {
        std::fs::metadata(p).map_err(|e| anyhow!("open {}: {}", p.display(), go_io_error(&e)))?;
    }
    // Docker asks for quiet output (no progress bars) when stdout is not a terminal.
    let quiet = args.quiet || !std::io::stdout().is_terminal();
    let resp = client
        .request(
            Method::POST,
            &format!("/images/load?quiet={}", quiet as u8),
            file_body(args.input.clone()),
            Some("application/x-tar"),
        )
        .await?;
    display_messages(resp).await?;
    Ok(0)
}

/// `berth import`
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// File, URL or - (stdin)
    pub source: String,
    /// Repository[:tag]
    pub reference: Option<String>,
}

/// `berth import`
pub async fn import(client: &Client, args: ImportArgs) -> Result<i32> {
    let mut query = vec![];
    let (body, src) = if args.source == "-" {
        (file_body(None), "-".to_string())
    } else if args.source.contains("://") {
        (empty(), args.source.clone())
    } else {
        let p = PathBuf::from(&args.source);
        std::fs::metadata(&p).map_err(|e| anyhow!("open {}: {}", p.display(), go_io_error(&e)))?;
        (file_body(Some(p)), "-".to_string())
    };
    query.push(format!("fromSrc={}", q(&src)));
    if let Some(r) = &args.reference {
        let (repo, tag) = split_ref(r);
        query.push(format!("repo={}&tag={}", q(&repo), q(&tag)));
    }
    if let Some(m) = &args.message {
        query.push(format!("message={}", q(m)));
    }
    for c in &args.change {
        query.push(format!("changes={}", q(c)));
    }
    if let Some(p) = &args.platform {
        query.push(format!("platform={}", q(p)));
    }
    let resp = client
        .request(
            Method::POST,
            &format!("/images/create?{}", query.join("&")),
            body,
            Some("application/x-tar"),
        )
        .await?;
    display_messages(resp).await?;
    Ok(0)
}

/// `berth pull`
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Image
    pub image: String,
}

/// Pulls an image, showing progress as docker does.
pub async fn pull(client: &Client, image: &str, quiet: bool) -> Result<()> {
    pull_platform(client, image, quiet, None).await
}

/// Pulls an image for `platform` (`os/arch[/variant]`; the daemon's own when `None`).
pub async fn pull_platform(
    client: &Client,
    image: &str,
    quiet: bool,
    platform: Option<&str>,
) -> Result<()> {
    let (repo, tag) = if image.contains('@') {
        let (r, d) = image.split_once('@').unwrap_or((image, ""));
        (r.to_string(), d.to_string())
    } else {
        split_ref(image)
    };
    let mut path = format!("/images/create?fromImage={}&tag={}", q(&repo), q(&tag));
    if let Some(p) = platform.filter(|p| !p.is_empty()) {
        path.push_str(&format!("&platform={}", q(p)));
    }
    let resp = client.request(Method::POST, &path, empty(), None).await?;
    if quiet {
        collect_messages(resp).await?;
    } else {
        display_messages(resp).await?;
    }
    Ok(())
}

/// `berth pull`
pub async fn pull_cmd(client: &Client, args: PullArgs) -> Result<i32> {
    pull_platform(client, &args.image, args.quiet, args.platform.as_deref()).await?;
    // docker ends a pull with the fully qualified reference.
    println!("{}", full_reference(&args.image));
    Ok(0)
}

/// A reference as docker spells it in full: `busybox` is `docker.io/library/busybox:latest`.
pub fn full_reference(image: &str) -> String {
    let with_tag = crate::commands::run::with_default_tag(image);
    let first = with_tag.split('/').next().unwrap_or("");
    let has_registry = with_tag.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        with_tag
    } else if with_tag.contains('/') {
        format!("docker.io/{with_tag}")
    } else {
        format!("docker.io/library/{with_tag}")
    }
}

/// `berth push`
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Push all tags of an image to the repository
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// NAME[:TAG]
    pub image: String,
}

/// `berth push`: progress as docker shows it; the daemon's stream error ends with exit 1.
pub async fn push(client: &Client, args: PushArgs) -> Result<i32> {
    let (repo, tag) = split_ref(&args.image);
    let query = if args.all_tags || (!args.image.contains(':') && args.image.contains('@')) {
        String::new()
    } else {
        format!("?tag={}", q(&tag))
    };
    let resp = client
        .request(
            Method::POST,
            &format!("/images/{}/push{query}", q(&repo)),
            empty(),
            None,
        )
        .await?;
    if args.quiet {
        collect_messages(resp).await?;
        println!("{}", args.image);
    } else {
        display_messages(resp).await?;
    }
    Ok(0)
}

/// An error reported inside a JSON-message stream.
#[derive(Debug)]
struct StreamError(String);

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StreamError {}

async fn collect_messages(resp: hyper::Response<hyper::body::Incoming>) -> Result<()> {
    let mut lines = message_lines(resp);
    while let Some(msg) = lines.next().await {
        let msg = msg?;
        if let Some(e) = message_error(&msg) {
            return Err(StreamError(e).into());
        }
    }
    Ok(())
}

fn message_error(msg: &Value) -> Option<String> {
    msg["errorDetail"]["message"]
        .as_str()
        .or(msg["error"].as_str())
        .map(str::to_string)
}

/// The JSON values of a streamed body (newline-separated or back to back).
pub fn message_lines(
    resp: hyper::Response<hyper::body::Incoming>,
) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Value>> + Send>> {
    let body = resp.into_body().into_data_stream();
    let stream = futures_util::stream::unfold(
        (body, Vec::<u8>::new(), false),
        |(mut body, mut buf, done)| async move {
            loop {
                // A message ends at a newline, or at the end of a JSON value (some servers
                // send objects back to back); try to cut one off the buffer.
                let trimmed = buf
                    .iter()
                    .position(|b| !b.is_ascii_whitespace())
                    .unwrap_or(buf.len());
                buf.drain(..trimmed);
                if !buf.is_empty() {
                    let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
                    match it.next() {
                        Some(Ok(v)) => {
                            let used = it.byte_offset();
                            buf.drain(..used);
                            return Some((Ok(v), (body, buf, done)));
                        }
                        Some(Err(e)) if !e.is_eof() => {
                            buf.clear();
                            return Some((
                                Err(anyhow!("decode progress message: {e}")),
                                (body, buf, true),
                            ));
                        }
                        _ => {}
                    }
                }
                if done {
                    return None;
                }
                match body.next().await {
                    Some(Ok(b)) => buf.extend_from_slice(&b),
                    Some(Err(e)) => {
                        return Some((Err(anyhow!("read progress: {e}")), (body, buf, true)))
                    }
                    None => {
                        if buf.is_empty() {
                            return None;
                        }
                        return Some((
                            Err(anyhow!("truncated progress message")),
                            (body, Vec::new(), true),
                        ));
                    }
                }
            }
        },
    );
    Box::pin(stream)
}

/// docker's `DisplayJSONMessagesStream`: `stream` text as is, `status` lines (with an id
/// prefix), progress bars redrawn in place on a terminal; an `error` ends with that error.
pub async fn display_messages(resp: hyper::Response<hyper::body::Incoming>) -> Result<()> {
    let tty = std::io::stdout().is_terminal();
    let mut lines = message_lines(resp);
    // Line index of each id on a terminal, for moving the cursor back to redraw progress.
    let mut ids: Vec<String> = Vec::new();
    let mut out = std::io::stdout();
    while let Some(msg) = lines.next().await {
        let msg = msg?;
        if let Some(e) = message_error(&msg) {
            return Err(StreamError(e).into());
        }
        if let Some(s) = msg["stream"].as_str() {
            write!(out, "{s}")?;
            out.flush()?;
            continue;
        }
        let status = msg["status"].as_str().unwrap_or("");
        // `aux` messages (push digests, load/build ids) are for programs, not for the screen.
        if msg.get("aux").is_some() || (status.is_empty() && msg["progress"].is_null()) {
            continue;
        }
        let id = msg["id"].as_str().unwrap_or("");
        let progress = msg["progress"].as_str().unwrap_or("");
        let text = if id.is_empty() {
            format!("{status} {progress}")
        } else {
            format!("{id}: {status} {progress}")
        };
        let text = text.trim_end();
        if tty && !id.is_empty() {
            let pos = match ids.iter().position(|i| i == id) {
                Some(p) => p,
                None => {
                    ids.push(id.to_string());
                    writeln!(out)?;
                    ids.len() - 1
                }
            };
            let up = ids.len() - pos;
            write!(out, "\x1b[{up}A\r\x1b[2K{text}\x1b[{up}B\r")?;
        } else if !progress.is_empty() && !tty {
            // Without a terminal docker prints no progress bars.
            continue;
        } else {
            writeln!(out, "{text}")?;
        }
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_repo_and_tag() {
        assert_eq!(split_ref("busybox"), ("busybox".into(), "latest".into()));
        assert_eq!(split_ref("busybox:1.36"), ("busybox".into(), "1.36".into()));
        assert_eq!(
            split_ref("localhost:5000/x/y"),
            ("localhost:5000/x/y".into(), "latest".into())
        );
        assert_eq!(
            split_ref("localhost:5000/x:v1"),
            ("localhost:5000/x".into(), "v1".into())
        );
    }

    #[test]
    fn references_are_spelled_in_full() {
        assert_eq!(
            full_reference("busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(full_reference("me/app:1"), "docker.io/me/app:1");
        assert_eq!(
            full_reference("localhost:5000/x"),
            "localhost:5000/x:latest"
        );
        assert_eq!(full_reference("reg.example/x:2"), "reg.example/x:2");
    }

    #[test]
    fn images_expand_to_one_row_per_tag() {
        let now = chrono::Utc::now().timestamp();
        let imgs = vec![
            json!({"Id": "sha256:f9ada7ec67299b2ac9c36cd303c37fc4", "RepoTags": ["busybox:latest", "bb:1"],
                   "Created": now - 5, "Size": 1_980_000}),
            json!({"Id": "sha256:0123456789abcdef", "RepoTags": null, "Created": now, "Size": 10}),
        ];
        let rows = image_rows(&imgs, true);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0]["Repository"], "busybox");
        assert_eq!(rows[0]["Tag"], "latest");
        assert_eq!(rows[0]["ID"], "f9ada7ec6729");
        assert_eq!(rows[0]["Size"], "1.98MB");
        assert_eq!(rows[0]["CreatedSince"], "5 seconds ago");
        assert_eq!(rows[1]["Repository"], "bb");
        assert_eq!(rows[2]["Repository"], "<none>");
        assert_eq!(rows[2]["Tag"], "<none>");
    }
}
