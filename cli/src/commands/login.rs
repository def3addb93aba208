//! `login` and `logout`: check credentials with the daemon (`POST /auth`) and keep them in
//! docker's `config.json` (`auths.<server>.auth`), where pulls and pushes find them.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use hyper::Method;
use serde_json::{json, Value};

use super::StatusError;
use crate::client::Client;

/// Docker Hub's server address, the default for login and logout.
pub const DEFAULT_SERVER: &str = "https://index.docker.io/v1/";

/// `berth login`
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password or Personal Access Token (PAT)
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Take the Password or Personal Access Token (PAT) from stdin
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    /// Registry server
    pub server: Option<String>,
}

/// `berth logout`
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry server
    pub server: Option<String>,
}

/// The directory of docker's client config: `$DOCKER_CONFIG`, else `~/.docker`.
pub fn config_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return PathBuf::from(d);
    }
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".docker")
}

fn read_config() -> Value {
    std::fs::read(config_dir().join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| json!({}))
}

/// Writes config.json crash-safely (temp file, fsync, rename), readable by the owner only.
fn write_config(v: &Value) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = config_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let tmp = dir.join(".config.json.berth-tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("write {}", tmp.display()))?;
    let text = serde_json::to_string_pretty(v)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("config.json")).context("save config.json")?;
    Ok(())
}

fn base64(data: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let v = (chunk[0] as u32) << 16
            | (chunk.get(1).copied().unwrap_or(0) as u32) << 8
            | chunk.get(2).copied().unwrap_or(0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn prompt(question: &str) -> Result<String> {
    print!("{question}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn prompt_password() -> Result<String> {
    use nix::sys::termios::{self, LocalFlags, SetArg};
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    let saved = if stdin.is_terminal() {
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(s) = &saved {
            let mut quiet = s.clone();
            quiet.local_flags.remove(LocalFlags::ECHO);
            let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &quiet);
        }
        saved
    } else {
        None
    };
    let answer = prompt("Password: ");
    if let Some(s) = saved {
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &s);
        println!();
    }
    answer
}

/// `berth login`
pub async fn login(client: &Client, args: LoginArgs) -> Result<i32> {
    let server = args
        .server
        .clone()
        .unwrap_or_else(|| DEFAULT_SERVER.to_string());
    if args.password.is_some() && args.password_stdin {
        return Err(StatusError::exit(
            1,
            "--password and --password-stdin are mutually exclusive",
        ));
    }
    let username = match &args.username {
        Some(u) => u.clone(),
        None if args.password_stdin => {
            return Err(StatusError::exit(
                1,
                "Must provide --username with --password-stdin",
            ))
        }
        None => prompt("Username: ")?,
    };
    let password = if args.password_stdin {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        s.trim_end_matches(['\r', '\n']).to_string()
    } else if let Some(p) = &args.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p.clone()
    } else {
        prompt_password()?
    };
    if username.is_empty() || password.is_empty() {
        return Err(StatusError::exit(
            1,
            "Error: Non-null Username and Password Required",
        ));
    }
    let body = json!({"username": username, "password": password, "serveraddress": server});
    let v = client.call(Method::POST, "/auth", Some(&body)).await?;
    let mut config = read_config();
    if !config["auths"].is_object() {
        config["auths"] = json!({});
    }
    config["auths"][&server] = json!({"auth": base64(format!("{username}:{password}").as_bytes())});
    write_config(&config)?;
    let path = config_dir().join("config.json");
    eprintln!(
        "WARNING! Your credentials are stored unencrypted in '{}'.",
        path.display()
    );
    println!(
        "{}",
        v["Status"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("Login Succeeded")
    );
    Ok(0)
}

/// `berth logout`
pub async fn logout(args: LogoutArgs) -> Result<i32> {
    let server = args
        .server
        .clone()
        .unwrap_or_else(|| DEFAULT_SERVER.to_string());
    let mut config = read_config();
    let removed = config["auths"]
        .as_object_mut()
        .and_then(|a| a.remove(&server))
        .is_some();
    if !removed {
        println!("Not logged in to {server}");
        return Ok(0);
    }
    println!("Removing login credentials for {server}");
    write_config(&config).map_err(|e| anyhow!("remove credentials: {e:#}"))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_entries_are_base64_of_user_and_password() {
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"ab"), "YWI=");
    }
}
