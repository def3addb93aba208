//! `exec`: run a command in a running container; exits with the command's exit code.

use anyhow::{anyhow, Result};
use clap::Args;
use hyper::Method;
use serde_json::{json, Value};

use super::run::expand_env;
use super::StatusError;
use crate::client::{q, Client};
use crate::stream::{self, Ended, StreamOpts};
use crate::tty;

/// `berth exec`
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// CONTAINER COMMAND [ARG...]: flags after the container belong to the command
    #[arg(value_name = "CONTAINER", required = true, num_args = 2.., trailing_var_arg = true,
          allow_hyphen_values = true)]
    pub args: Vec<String>,
}

impl ExecArgs {
    /// The container.
    pub fn container(&self) -> &str {
        &self.args[0]
    }

    /// The command.
    pub fn command(&self) -> &[String] {
        &self.args[1..]
    }
}

/// The `POST /containers/{id}/exec` body for these flags.
pub fn exec_config(args: &ExecArgs) -> Value {
    let mut v = json!({
        "User": args.user.clone().unwrap_or_default(),
        "Privileged": args.privileged,
        "Tty": args.tty,
        "AttachStdin": args.interactive && !args.detach,
        "AttachStdout": !args.detach,
        "AttachStderr": !args.detach,
        "Cmd": args.command(),
    });
    if !args.env.is_empty() {
        v["Env"] = json!(expand_env(&args.env));
    }
    if let Some(w) = &args.workdir {
        v["WorkingDir"] = json!(w);
    }
    if let Some(k) = &args.detach_keys {
        v["DetachKeys"] = json!(k);
    }
    v
}

/// `berth exec`
pub async fn exec(client: &Client, args: ExecArgs) -> Result<i32> {
    if let Some(flag) = args.container().strip_prefix('-') {
        return Err(StatusError::exit(
            125,
            format!("unknown flag: -{flag}\n\nUsage:  berth exec [OPTIONS] CONTAINER COMMAND [ARG...]\n\nRun 'berth exec --help' for more information"),
        ));
    }
    if args.tty && args.interactive && !args.detach && !tty::stdin_is_tty() {
        return Err(StatusError::exit(1, "the input device is not a TTY"));
    }
    let keys = tty::parse_detach_keys(
        args.detach_keys
            .as_deref()
            .unwrap_or(tty::DEFAULT_DETACH_KEYS),
    )?;
    let resp = client
        .call(
            Method::POST,
            &format!("/containers/{}/exec", q(args.container())),
            Some(&exec_config(&args)),
        )
        .await?;
    let exec_id = resp
        .get("Id")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("daemon answered exec create without an Id"))?
        .to_string();
    let start = json!({"Detach": args.detach, "Tty": args.tty});
    if args.detach {
        client
            .call(
                Method::POST,
                &format!("/exec/{exec_id}/start"),
                Some(&start),
            )
            .await?;
        return Ok(0);
    }
    let hijacked = client
        .hijack(&format!("/exec/{exec_id}/start"), Some(&start))
        .await?;
    let raw = if args.tty && args.interactive {
        tty::RawMode::enable()?
    } else {
        None
    };
    let resize = if args.tty && tty::stdout_is_tty() {
        Some(stream::monitor_resize(
            client.clone(),
            format!("/exec/{exec_id}/resize"),
        ))
    } else {
        None
    };
    let opts = StreamOpts {
        tty: args.tty,
        stdin: args.interactive,
        detach_keys: if args.interactive { keys } else { Vec::new() },
    };
    let ended = stream::pump(hijacked, &opts).await;
    drop(raw);
    if let Some(r) = resize {
        r.abort();
    }
    if ended? == Ended::Detached {
        return Ok(0);
    }
    // The exit code is recorded a moment after the stream closes; poll briefly.
    for _ in 0..100 {
        let info = client.get(&format!("/exec/{exec_id}/json")).await?;
        if !info["Running"].as_bool().unwrap_or(false) {
            return Ok(info["ExitCode"].as_i64().unwrap_or(0) as i32);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        exec: ExecArgs,
    }

    #[test]
    fn exec_flags_become_the_exec_body() {
        let a = Wrap::try_parse_from([
            "exec", "-i", "-e", "A=1", "-w", "/tmp", "-u", "nobody", "c1", "sh", "-c", "id -u",
        ])
        .unwrap()
        .exec;
        let b = exec_config(&a);
        assert_eq!(a.container(), "c1");
        assert_eq!(b["Cmd"], json!(["sh", "-c", "id -u"]));
        assert_eq!(b["AttachStdin"], true);
        assert_eq!(b["AttachStdout"], true);
        assert_eq!(b["Tty"], false);
        assert_eq!(b["Env"], json!(["A=1"]));
        assert_eq!(b["WorkingDir"], "/tmp");
        assert_eq!(b["User"], "nobody");
        let d = Wrap::try_parse_from(["exec", "-d", "c1", "true"])
            .unwrap()
            .exec;
        assert_eq!(exec_config(&d)["AttachStdout"], false);
    }
}
