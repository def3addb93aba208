//! `cp`: copy files between a container and the local filesystem through the archive API
//! (`GET`/`PUT /containers/{id}/archive`), with docker's naming rules.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::Method;

use super::StatusError;
use crate::client::{empty, q, Client};
use crate::format::human_size;

/// `berth cp`
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Suppress progress output during copy
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// CONTAINER:SRC_PATH or SRC_PATH (- for a tar on stdin)
    pub src: String,
    /// CONTAINER:DEST_PATH or DEST_PATH (- for a tar on stdout)
    pub dest: String,
}

/// Splits docker's `container:path`; a path that is absolute or starts with `.` is local.
pub fn split_cp_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') || arg.starts_with('.') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() && !c.contains('/') => (Some(c), p),
        _ => (None, arg),
    }
}

/// `berth cp`
pub async fn cp(client: &Client, args: CpArgs) -> Result<i32> {
    let (src_ctr, src) = split_cp_arg(&args.src);
    let (dst_ctr, dst) = split_cp_arg(&args.dest);
    let progress = !args.quiet && std::io::stderr().is_terminal();
    match (src_ctr, dst_ctr) {
        (Some(c), None) => copy_from(client, c, src, dst, progress).await,
        (None, Some(c)) => copy_to(client, src, c, dst, progress).await,
        (Some(_), Some(_)) => Err(StatusError::exit(
            1,
            "copying between containers is not supported",
        )),
        (None, None) => Err(StatusError::exit(
            1,
            "must specify at least one container source",
        )),
    }
}

async fn copy_from(
    client: &Client,
    ctr: &str,
    src: &str,
    dst: &str,
    progress: bool,
) -> Result<i32> {
    let resp = client
        .request(
            Method::GET,
            &format!("/containers/{}/archive?path={}", q(ctr), q(src)),
            empty(),
            None,
        )
        .await?;
    let tar = resp.into_body().collect().await?.to_bytes();
    if dst == "-" {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(&tar).context("write archive")?;
        return Ok(0);
    }
    let dst_path = PathBuf::from(dst);
    let len = tar.len();
    let target = dst_path.clone();
    tokio::task::spawn_blocking(move || extract(&tar, &target))
        .await
        .context("extract archive")??;
    if progress {
        eprintln!(
            "Successfully copied {} to {}",
            human_size(len as f64),
            dst_path.display()
        );
    }
    Ok(0)
}

/// Extracts a container archive to `dst`: into it when it is a directory, else as `dst` (the
/// archive's top-level name replaced by dst's file name), as docker does.
fn extract(tar_bytes: &[u8], dst: &Path) -> Result<()> {
    let (dir, rename) = if dst.is_dir() {
        (dst.to_path_buf(), None)
    } else {
        let parent = dst
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            bail!("no such directory: {}", parent.display());
        }
        let name = dst
            .file_name()
            .ok_or_else(|| anyhow!("invalid destination {}", dst.display()))?;
        (parent.to_path_buf(), Some(PathBuf::from(name)))
    };
    let mut ar = tar::Archive::new(tar_bytes);
    ar.set_preserve_permissions(true);
    for entry in ar.entries().context("read archive")? {
        let mut entry = entry.context("read archive")?;
        let path = entry.path().context("archive path")?.into_owned();
        let rel = match &rename {
            Some(new) => {
                let mut comps = path.components();
                comps.next();
                let rest = comps.as_path();
                if rest.as_os_str().is_empty() {
                    new.clone()
                } else {
                    new.join(rest)
                }
            }
            None => path,
        };
        let out = dir.join(&rel);
        if !out.starts_with(&dir) || rel.components().any(|c| c.as_os_str() == "..") {
            bail!("archive entry escapes the destination: {}", rel.display());
        }
        if let Some(p) = out.parent() {
            std::fs::create_dir_all(p).with_context(|| format!("create {}", p.display()))?;
        }
        entry
            .unpack(&out)
            .with_context(|| format!("extract {}", out.display()))?;
    }
    Ok(())
}

async fn copy_to(client: &Client, src: &str, ctr: &str, dst: &str, progress: bool) -> Result<i32> {
    let (tar, put_dir) = if src == "-" {
        let mut buf = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut buf)
            .await
            .context("read archive from stdin")?;
        (buf, dst.to_string())
    } else {
        let src_path = PathBuf::from(src);
        std::fs::symlink_metadata(&src_path).map_err(|e| {
            anyhow!(
                "lstat {}: {}",
                src_path.display(),
                super::image::go_io_error(&e)
            )
        })?;
        // Into an existing directory: keep the source's name; otherwise it becomes dst.
        let dst_is_dir = match client
            .request(
                Method::HEAD,
                &format!("/containers/{}/archive?path={}", q(ctr), q(dst)),
                empty(),
                None,
            )
            .await
        {
            Ok(resp) => resp
                .headers()
                .get("x-docker-container-path-stat")
                .and_then(|v| v.to_str().ok())
                .and_then(decode_stat)
                .is_some_and(|mode| mode & (1 << 31) != 0),
            Err(e) if crate::client::is_not_found(&e) => false,
            Err(e) => return Err(e),
        };
        let (name, put_dir) = if dst_is_dir || dst.ends_with('/') {
            let name = src_path
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."));
            (name, dst.to_string())
        } else {
            let d = Path::new(dst);
            let name = d
                .file_name()
                .map(PathBuf::from)
                .ok_or_else(|| anyhow!("invalid destination {dst}"))?;
            let parent = d
                .parent()
                .map(|p| p.display().to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/".into());
            (name, parent)
        };
        let tar = tokio::task::spawn_blocking(move || pack(&src_path, &name))
            .await
            .context("pack archive")??;
        (tar, put_dir)
    };
    let len = tar.len();
    let body = Full::new(Bytes::from(tar)).map_err(|e| match e {}).boxed();
    client
        .request(
            Method::PUT,
            &format!(
                "/containers/{}/archive?path={}&noOverwriteDirNonDir=true",
                q(ctr),
                q(&put_dir)
            ),
            body,
            Some("application/x-tar"),
        )
        .await?;
    if progress {
        eprintln!(
            "Successfully copied {} to {ctr}:{dst}",
            human_size(len as f64)
        );
    }
    Ok(0)
}

/// The mode bits of docker's `X-Docker-Container-Path-Stat` (base64 JSON).
fn decode_stat(header: &str) -> Option<u64> {
    let bytes = base64_decode(header)?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["mode"].as_u64()
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()) {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A tar of `src` (file or directory tree) whose top-level entry is named `name`.
fn pack(src: &Path, name: &Path) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let meta = std::fs::symlink_metadata(src).with_context(|| format!("stat {}", src.display()))?;
    if meta.is_dir() {
        b.append_dir_all(name, src)
            .with_context(|| format!("archive {}", src.display()))?;
    } else {
        b.append_path_with_name(src, name)
            .with_context(|| format!("archive {}", src.display()))?;
    }
    b.into_inner().context("finish archive")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp_args_split_like_docker() {
        assert_eq!(split_cp_arg("c1:/etc/passwd"), (Some("c1"), "/etc/passwd"));
        assert_eq!(split_cp_arg("/tmp/x:y"), (None, "/tmp/x:y"));
        assert_eq!(split_cp_arg("./a:b"), (None, "./a:b"));
        assert_eq!(split_cp_arg("local"), (None, "local"));
        assert_eq!(split_cp_arg("-"), (None, "-"));
    }

    #[test]
    fn stat_headers_decode() {
        // {"name":"tmp","size":4096,"mode":2147484159}
        let h = "eyJuYW1lIjoidG1wIiwic2l6ZSI6NDA5NiwibW9kZSI6MjE0NzQ4NDE1OX0=";
        assert_eq!(decode_stat(h), Some(2_147_484_159));
    }

    #[test]
    fn archives_extract_into_dirs_or_as_the_new_name() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("d")).unwrap();
        std::fs::write(src.path().join("d/f"), "x").unwrap();
        let tar = pack(&src.path().join("d"), Path::new("d")).unwrap();
        let out = tempfile::tempdir().unwrap();
        extract(&tar, out.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.path().join("d/f")).unwrap(),
            "x"
        );
        extract(&tar, &out.path().join("renamed")).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.path().join("renamed/f")).unwrap(),
            "x"
        );
        let file = pack(&src.path().join("d/f"), Path::new("f")).unwrap();
        extract(&file, &out.path().join("g")).unwrap();
        assert_eq!(std::fs::read_to_string(out.path().join("g")).unwrap(), "x");
    }
}
