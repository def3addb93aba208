//! One module per group of docker commands; shared helpers for exit codes and multi-object verbs.

pub mod build;
pub mod container;
pub mod cp;
pub mod exec;
pub mod image;
pub mod login;
pub mod objects;
pub mod run;
pub mod system;

use std::fmt;
use std::future::Future;

use anyhow::Result;

/// An error that ends the command with this exit code; the message (if any) goes to stderr.
#[derive(Debug)]
pub struct StatusError {
    /// Exit code.
    pub code: i32,
    /// What to print (nothing if empty).
    pub message: String,
}

impl StatusError {
    /// An error with a code and message.
    pub fn exit(code: i32, message: impl Into<String>) -> anyhow::Error {
        StatusError {
            code,
            message: message.into(),
        }
        .into()
    }
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StatusError {}

/// Runs `op` for every name, printing the name on success and the error on failure, as docker
/// does for `stop`, `kill`, `rm`, `pause`, ...; exits 1 if any failed.
pub async fn for_each<F, Fut>(names: &[String], print_name: bool, op: F) -> Result<i32>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut failed = false;
    for name in names {
        match op(name.clone()).await {
            Ok(()) => {
                if print_name {
                    println!("{name}");
                }
            }
            Err(e) => {
                eprintln!("{e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// Asks a yes/no question on the terminal; false unless the answer starts with y.
pub fn confirm(question: &str) -> bool {
    use std::io::Write;
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}
