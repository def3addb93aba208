//! `build`: sends a build context (a directory filtered by `.dockerignore`, a tar or a
//! Dockerfile on stdin) to `POST /build` and shows the builder's output as docker's classic
//! builder does.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::Args;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use serde_json::Value;

use super::StatusError;
use crate::client::{q, Client};

/// `berth build`
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Set build-time variables
    #[arg(long = "build-arg")]
    pub build_arg: Vec<String>,
    /// Name of the Dockerfile (default: PATH/Dockerfile)
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Always remove intermediate containers
    #[arg(long = "force-rm")]
    pub force_rm: bool,
    /// Set metadata for an image
    #[arg(long)]
    pub label: Vec<String>,
    /// Set the networking mode for the RUN instructions during build
    #[arg(long)]
    pub network: Option<String>,
    /// Do not use cache when building the image
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pub pull: bool,
    /// Suppress the build output and print image ID on success
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Remove intermediate containers after a successful build
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub rm: bool,
    /// Name and optionally a tag in the "name:tag" format
    #[arg(short = 't', long = "tag")]
    pub tag: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// PATH | URL | -
    pub context: String,
}

use berth_builder::ignore::ignored;

/// A tar of the context directory without what `.dockerignore` excludes (the Dockerfile and
/// `.dockerignore` are always sent, as docker does).
fn tar_context(dir: &Path, dockerfile: &str) -> Result<Vec<u8>> {
    let patterns = berth_builder::ignore::read_patterns(
        &std::fs::read_to_string(dir.join(".dockerignore")).unwrap_or_default(),
    );
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = dir.join(&rel);
        let mut entries: Vec<_> = std::fs::read_dir(&full)
            .with_context(|| format!("read {}", full.display()))?
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("read {}", full.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let r = rel.join(e.file_name());
            let name = r.to_string_lossy().replace('\\', "/");
            let keep = name == dockerfile || name == ".dockerignore";
            if !keep && ignored(&patterns, &name) {
                continue;
            }
            let ft = e.file_type()?;
            if ft.is_dir() {
                b.append_dir(&r, e.path())
                    .with_context(|| format!("archive {name}"))?;
                stack.push(r);
            } else {
                b.append_path_with_name(e.path(), &r)
                    .with_context(|| format!("archive {name}"))?;
            }
        }
    }
    b.into_inner().context("finish build context")
}

fn is_tar(data: &[u8]) -> bool {
    data.len() > 262 && &data[257..262] == b"ustar"
}

fn single_file_tar(name: &str, data: &[u8]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, name, data)
        .context("archive Dockerfile")?;
    b.into_inner().context("finish build context")
}

fn kv_json(items: &[String]) -> String {
    let m: BTreeMap<&str, &str> = items
        .iter()
        .map(|s| s.split_once('=').unwrap_or((s.as_str(), "")))
        .collect();
    serde_json::to_string(&m).unwrap_or_else(|_| "{}".into())
}

/// `berth build`
pub async fn build(client: &Client, args: BuildArgs) -> Result<i32> {
    let mut dockerfile = "Dockerfile".to_string();
    let context = if args.context == "-" {
        let mut data = Vec::new();
        std::io::stdin()
            .read_to_end(&mut data)
            .context("read build context from stdin")?;
        if is_tar(&data) {
            data
        } else {
            single_file_tar("Dockerfile", &data)?
        }
    } else if args.context.contains("://") {
        Vec::new()
    } else {
        let dir = PathBuf::from(&args.context);
        if !dir.is_dir() {
            bail!(
                "unable to prepare context: path \"{}\" not found",
                args.context
            );
        }
        if let Some(f) = &args.file {
            let abs = if f.is_absolute() {
                f.clone()
            } else {
                std::env::current_dir()?.join(f)
            };
            let ctx_abs = std::fs::canonicalize(&dir)?;
            let file_abs = std::fs::canonicalize(&abs)
                .map_err(|e| anyhow!("unable to prepare context: {}: {e}", f.display()))?;
            dockerfile = file_abs
                .strip_prefix(&ctx_abs)
                .map_err(|_| {
                    anyhow!(
                        "the Dockerfile ({}) must be within the build context ({})",
                        f.display(),
                        args.context
                    )
                })?
                .to_string_lossy()
                .into_owned();
        }
        let df = dockerfile.clone();
        tokio::task::spawn_blocking(move || tar_context(&dir, &df))
            .await
            .context("pack build context")??
    };
    let mut query = vec![format!("dockerfile={}", q(&dockerfile))];
    if args.context.contains("://") {
        query.push(format!("remote={}", q(&args.context)));
    }
    for t in &args.tag {
        query.push(format!("t={}", q(t)));
    }
    if !args.build_arg.is_empty() {
        let expanded = super::run::expand_env(&args.build_arg);
        query.push(format!("buildargs={}", q(&kv_json(&expanded))));
    }
    if !args.label.is_empty() {
        query.push(format!("labels={}", q(&kv_json(&args.label))));
    }
    for (flag, key) in [
        (args.no_cache, "nocache"),
        (args.pull, "pull"),
        (args.quiet, "q"),
        (args.force_rm, "forcerm"),
    ] {
        if flag {
            query.push(format!("{key}=1"));
        }
    }
    query.push(format!("rm={}", args.rm as u8));
    for (v, key) in [
        (&args.target, "target"),
        (&args.network, "networkmode"),
        (&args.platform, "platform"),
    ] {
        if let Some(v) = v {
            query.push(format!("{key}={}", q(v)));
        }
    }
    let body = Full::new(Bytes::from(context))
        .map_err(|e| match e {})
        .boxed();
    let resp = client
        .request(
            Method::POST,
            &format!("/build?{}", query.join("&")),
            body,
            Some("application/x-tar"),
        )
        .await?;
    let mut messages = super::image::message_lines(resp);
    let mut image_id = None;
    let mut quiet_text = String::new();
    let mut out = std::io::stdout();
    while let Some(msg) = messages.next().await {
        let msg: Value = msg?;
        if let Some(e) = msg["errorDetail"]["message"]
            .as_str()
            .or(msg["error"].as_str())
        {
            // docker exits with the failing step's code when the builder reports one.
            let code = msg["errorDetail"]["code"]
                .as_i64()
                .filter(|c| *c != 0)
                .unwrap_or(1);
            return Err(StatusError::exit(code as i32, e.to_string()));
        }
        if let Some(id) = msg["aux"]["ID"].as_str() {
            image_id = Some(id.to_string());
        }
        if args.quiet {
            if let Some(s) = msg["stream"].as_str() {
                quiet_text.push_str(s);
            }
            continue;
        }
        if let Some(s) = msg["stream"].as_str() {
            use std::io::Write;
            write!(out, "{s}")?;
            out.flush()?;
        } else if let Some(s) = msg["status"].as_str() {
            println!("{s}");
        }
    }
    if args.quiet {
        match image_id {
            Some(id) => println!("{id}"),
            None => print!("{quiet_text}"),
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_leave_out_ignored_files_but_keep_the_dockerfile() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM busybox\n").unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "secret\nDockerfile\n").unwrap();
        std::fs::write(dir.path().join("secret"), "x").unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/a"), "a").unwrap();
        let tar = tar_context(dir.path(), "Dockerfile").unwrap();
        let mut ar = tar::Archive::new(&tar[..]);
        let mut names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, [".dockerignore", "Dockerfile", "src", "src/a"]);
        assert!(is_tar(&tar));
        assert!(!is_tar(b"FROM busybox\n"));
    }
}
