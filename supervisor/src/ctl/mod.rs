//! `berth-supervisor ctl`: a small client of the supervisor API, for people and for
//! orchestrator authors reading how the API is driven.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use berth_proto::supervisor::v1 as pb;
use berth_proto::supervisor::v1::containers_client::ContainersClient;
use berth_proto::supervisor::v1::events_client::EventsClient;
use berth_proto::supervisor::v1::namespaces_client::NamespacesClient;
use berth_proto::supervisor::v1::tasks_client::TasksClient;
use berth_proto::supervisor::v1::version_client::VersionClient;
use berth_proto::types::v1 as types;
use clap::{Args, Subcommand};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Code;

use crate::uds;

/// Flags and command of `ctl`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The supervisor's socket.
    #[arg(
        long,
        env = "BERTH_SUPERVISOR_ADDRESS",
        default_value = "/run/berth/supervisor.sock"
    )]
    address: PathBuf,
    /// Namespace to work in.
    #[arg(short, long, env = "BERTH_NAMESPACE", default_value = "default")]
    namespace: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Client and server versions.
    Version,
    /// Namespaces.
    #[command(subcommand)]
    Ns(NsCmd),
    /// Create a container from a bundle's config.json (its rootfs is used in place).
    Create {
        /// Bundle directory with config.json and the rootfs.
        #[arg(long)]
        bundle: PathBuf,
        /// Runtime binary (path or name) [default: the supervisor's].
        #[arg(long)]
        runtime: Option<String>,
        /// Container id.
        id: String,
    },
    /// Create and start the container's task.
    Start {
        /// Container id.
        id: String,
    },
    /// Create a container, run it to completion (showing its output), exit with its status.
    Run {
        /// Bundle directory with config.json and the rootfs.
        #[arg(long)]
        bundle: PathBuf,
        /// Runtime binary (path or name) [default: the supervisor's].
        #[arg(long)]
        runtime: Option<String>,
        /// Delete the task and the container afterwards.
        #[arg(long)]
        rm: bool,
        /// Container id.
        id: String,
    },
    /// List containers and their tasks.
    Ls,
    /// Processes of a container.
    Ps {
        /// Container id.
        id: String,
    },
    /// Run a command in a running container; exits with its status.
    Exec {
        /// Exec id [default: generated].
        #[arg(long)]
        exec_id: Option<String>,
        /// Container id.
        id: String,
        /// The command.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Signal a container's init (or every process with --all).
    Kill {
        /// Every process of the container.
        #[arg(long)]
        all: bool,
        /// Container id.
        id: String,
        /// Signal name or number [default: TERM].
        signal: Option<String>,
    },
    /// Wait for the init to exit; prints and exits with its status.
    Wait {
        /// Container id.
        id: String,
    },
    /// Print the init's output (its log file).
    Logs {
        /// Container id.
        id: String,
    },
    /// Print events as they happen (of the namespace, or of all with --all-namespaces).
    Events {
        /// Every namespace.
        #[arg(long)]
        all_namespaces: bool,
        /// Only topics starting with these.
        #[arg(long)]
        topic: Vec<String>,
    },
    /// Delete a container's task (if any) and the container.
    Delete {
        /// Kill a running task first.
        #[arg(short, long)]
        force: bool,
        /// Container id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum NsCmd {
    /// List namespaces.
    Ls,
    /// Create a namespace.
    Create {
        /// Name.
        name: String,
    },
    /// Remove an empty namespace.
    Rm {
        /// Name.
        name: String,
    },
}

/// Exit status the command asks for (a container's status for run/exec/wait).
struct Exit(u8);

/// Runs a ctl command; errors print `berth-supervisor ctl: <message>` and exit 1.
pub async fn main(args: CtlArgs) -> ExitCode {
    match dispatch(args).await {
        Ok(Exit(code)) => ExitCode::from(code),
        Err(e) => {
            match e.downcast_ref::<tonic::Status>() {
                Some(s) => eprintln!("berth-supervisor ctl: {} ({:?})", s.message(), s.code()),
                None => eprintln!("berth-supervisor ctl: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

struct Client {
    ns: String,
    channel: Channel,
}

impl Client {
    fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }
    fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }
}

fn status_code(status: u32) -> Exit {
    Exit(u8::try_from(status).unwrap_or(255))
}

async fn dispatch(args: CtlArgs) -> Result<Exit> {
    let channel = uds::connect(&args.address, Duration::from_secs(5))
        .await
        .with_context(|| format!("connect to {}", args.address.display()))?;
    let c = Client {
        ns: args.namespace,
        channel,
    };
    let ns = c.ns.clone();
    match args.cmd {
        Cmd::Version => {
            let v = VersionClient::new(c.channel.clone())
                .version(())
                .await?
                .into_inner();
            println!("client: {}", env!("CARGO_PKG_VERSION"));
            println!("server: {} (revision {})", v.version, v.revision);
        }
        Cmd::Ns(cmd) => {
            let mut nc = NamespacesClient::new(c.channel.clone());
            match cmd {
                NsCmd::Ls => {
                    for n in nc
                        .list(pb::ListNamespacesRequest {})
                        .await?
                        .into_inner()
                        .namespaces
                    {
                        println!("{}", n.name);
                    }
                }
                NsCmd::Create { name } => {
                    nc.create(pb::CreateNamespaceRequest {
                        name,
                        labels: Default::default(),
                    })
                    .await?;
                }
                NsCmd::Rm { name } => {
                    nc.remove(pb::RemoveNamespaceRequest { name }).await?;
                }
            }
        }
        Cmd::Create {
            bundle,
            runtime,
            id,
        } => create_container(&c, &bundle, runtime, &id).await?,
        Cmd::Start { id } => {
            let pid = create_and_start(&c, &id).await?;
            println!("{pid}");
        }
        Cmd::Run {
            bundle,
            runtime,
            rm,
            id,
        } => {
            create_container(&c, &bundle, runtime, &id).await?;
            c.tasks()
                .create(pb::CreateTaskRequest {
                    namespace: ns.clone(),
                    container_id: id.clone(),
                    io: None,
                })
                .await?;
            let output = attach(&c, &id, "").await;
            start(&c, &id, "").await?;
            let status = wait(&c, &id, "").await?;
            finish_output(output).await;
            if rm {
                delete(&c, &id, false).await?;
            }
            return Ok(status_code(status));
        }
        Cmd::Ls => {
            let list = c
                .containers()
                .list(pb::ListContainersRequest {
                    namespace: ns.clone(),
                    label_filter: Default::default(),
                })
                .await?
                .into_inner()
                .containers;
            let tasks = c
                .tasks()
                .list(pb::ListTasksRequest { namespace: ns })
                .await?
                .into_inner()
                .tasks;
            println!("{:<40} {:<10} {:>8}  IMAGE", "ID", "STATUS", "PID");
            for ct in list {
                let t = tasks.iter().find(|t| t.container_id == ct.id);
                let (status, pid) = match t {
                    Some(t) => (status_name(t.status, t.exit_status), t.pid.to_string()),
                    None => ("-".to_string(), "-".to_string()),
                };
                println!("{:<40} {:<10} {:>8}  {}", ct.id, status, pid, ct.image);
            }
        }
        Cmd::Ps { id } => {
            let pids = c
                .tasks()
                .list_pids(pb::ListPidsRequest {
                    namespace: ns,
                    container_id: id,
                })
                .await?
                .into_inner()
                .processes;
            println!("{:>8}  EXEC", "PID");
            for p in pids {
                println!("{:>8}  {}", p.pid, p.exec_id);
            }
        }
        Cmd::Exec { exec_id, id, cmd } => {
            let exec_id = exec_id.unwrap_or_else(|| format!("exec-{}", std::process::id()));
            let container = c
                .containers()
                .get(pb::GetContainerRequest {
                    namespace: ns.clone(),
                    id: id.clone(),
                })
                .await?
                .into_inner()
                .container
                .ok_or_else(|| anyhow!("no container in response"))?;
            let spec: serde_json::Value =
                serde_json::from_slice(&container.spec).context("parse container spec")?;
            let mut process = spec
                .get("process")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"cwd": "/"}));
            process["args"] = serde_json::json!(cmd);
            process["terminal"] = serde_json::json!(false);
            c.tasks()
                .exec(pb::ExecTaskRequest {
                    namespace: ns.clone(),
                    container_id: id.clone(),
                    exec_id: exec_id.clone(),
                    spec: serde_json::to_vec(&process)?,
                    io: None,
                })
                .await?;
            let output = attach(&c, &id, &exec_id).await;
            start(&c, &id, &exec_id).await?;
            let status = wait(&c, &id, &exec_id).await?;
            finish_output(output).await;
            c.tasks()
                .delete(pb::DeleteTaskRequest {
                    namespace: ns,
                    container_id: id,
                    exec_id,
                    force: false,
                })
                .await?;
            return Ok(status_code(status));
        }
        Cmd::Kill { all, id, signal } => {
            let signal = parse_signal(signal.as_deref().unwrap_or("TERM"))?;
            c.tasks()
                .kill(pb::KillTaskRequest {
                    namespace: ns,
                    container_id: id,
                    exec_id: String::new(),
                    signal,
                    all,
                })
                .await?;
        }
        Cmd::Wait { id } => {
            let status = wait(&c, &id, "").await?;
            println!("{status}");
            return Ok(status_code(status));
        }
        Cmd::Logs { id } => {
            let st = c
                .tasks()
                .get(pb::GetTaskRequest {
                    namespace: ns,
                    container_id: id.clone(),
                    exec_id: String::new(),
                })
                .await?
                .into_inner()
                .process
                .ok_or_else(|| anyhow!("no process state in response"))?;
            if st.log_path.is_empty() {
                bail!("task {id} has no log file");
            }
            let data = std::fs::read(&st.log_path)
                .with_context(|| format!("read log file {}", st.log_path))?;
            print_log(&data)?;
        }
        Cmd::Events {
            all_namespaces,
            topic,
        } => {
            let mut stream = EventsClient::new(c.channel.clone())
                .subscribe(pb::SubscribeRequest {
                    namespace: if all_namespaces { String::new() } else { ns },
                    topics: topic,
                })
                .await?
                .into_inner();
            while let Some(e) = stream.message().await? {
                let ts = uds::from_timestamp(e.timestamp.as_ref());
                let mut line = format!(
                    "{} {} {} {}",
                    ts.to_rfc3339(),
                    e.namespace,
                    e.topic,
                    e.container_id
                );
                if !e.exec_id.is_empty() {
                    line.push_str(&format!(" exec_id={}", e.exec_id));
                }
                if e.pid != 0 {
                    line.push_str(&format!(" pid={}", e.pid));
                }
                if e.topic == "/tasks/exit" || e.topic == "/tasks/delete" {
                    line.push_str(&format!(" exit_status={}", e.exit_status));
                }
                println!("{line}");
                std::io::stdout().flush().ok();
            }
        }
        Cmd::Delete { force, id } => delete(&c, &id, force).await?,
    }
    Ok(Exit(0))
}

fn status_name(status: i32, exit_status: u32) -> String {
    match types::Status::try_from(status).unwrap_or(types::Status::Unknown) {
        types::Status::Created => "created".into(),
        types::Status::Running => "running".into(),
        types::Status::Stopped => format!("stopped({exit_status})"),
        types::Status::Paused => "paused".into(),
        types::Status::Pausing => "pausing".into(),
        types::Status::Unknown => "unknown".into(),
    }
}

/// A signal by name ("TERM", "SIGKILL") or number.
fn parse_signal(s: &str) -> Result<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(n);
    }
    let name = s.to_ascii_uppercase();
    let name = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32 as u32)
        .map_err(|_| anyhow!("unknown signal {s:?}"))
}

async fn create_container(
    c: &Client,
    bundle: &Path,
    runtime: Option<String>,
    id: &str,
) -> Result<()> {
    let bundle = bundle
        .canonicalize()
        .with_context(|| format!("bundle {}", bundle.display()))?;
    let config = bundle.join("config.json");
    let data = std::fs::read(&config).with_context(|| format!("read {}", config.display()))?;
    let mut spec: serde_json::Value =
        serde_json::from_slice(&data).with_context(|| format!("parse {}", config.display()))?;
    // The supervisor runs the container from its own bundle dir, so a relative root.path
    // (the usual "rootfs") becomes absolute here.
    let root = spec
        .get("root")
        .and_then(|r| r.get("path"))
        .and_then(|p| p.as_str())
        .unwrap_or("rootfs")
        .to_string();
    let abs = if Path::new(&root).is_absolute() {
        PathBuf::from(root)
    } else {
        bundle.join(root)
    };
    if let Some(obj) = spec.as_object_mut() {
        let r = obj.entry("root").or_insert_with(|| serde_json::json!({}));
        r["path"] = serde_json::json!(abs.to_string_lossy());
    }
    c.containers()
        .create(pb::CreateContainerRequest {
            namespace: c.ns.clone(),
            container: Some(pb::Container {
                id: id.to_string(),
                runtime: Some(pb::Runtime {
                    binary: runtime.unwrap_or_default(),
                    root: String::new(),
                    systemd_cgroup: false,
                }),
                spec: serde_json::to_vec(&spec)?,
                ..Default::default()
            }),
        })
        .await?;
    Ok(())
}

async fn create_and_start(c: &Client, id: &str) -> Result<u32> {
    c.tasks()
        .create(pb::CreateTaskRequest {
            namespace: c.ns.clone(),
            container_id: id.to_string(),
            io: None,
        })
        .await?;
    start(c, id, "").await
}

async fn start(c: &Client, id: &str, exec_id: &str) -> Result<u32> {
    Ok(c.tasks()
        .start(pb::StartTaskRequest {
            namespace: c.ns.clone(),
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
        })
        .await?
        .into_inner()
        .pid)
}

async fn wait(c: &Client, id: &str, exec_id: &str) -> Result<u32> {
    Ok(c.tasks()
        .wait(pb::WaitTaskRequest {
            namespace: c.ns.clone(),
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
        })
        .await?
        .into_inner()
        .exit_status)
}

async fn delete(c: &Client, id: &str, force: bool) -> Result<()> {
    match c
        .tasks()
        .delete(pb::DeleteTaskRequest {
            namespace: c.ns.clone(),
            container_id: id.to_string(),
            exec_id: String::new(),
            force,
        })
        .await
    {
        Ok(_) => {}
        Err(s) if s.code() == Code::NotFound && s.message().starts_with("no task") => {}
        Err(s) => return Err(s.into()),
    }
    c.containers()
        .delete(pb::DeleteContainerRequest {
            namespace: c.ns.clone(),
            id: id.to_string(),
        })
        .await?;
    Ok(())
}

/// A live attach copying a process's output to ours, and the sender keeping its stdin open.
type Output = Option<(JoinHandle<()>, mpsc::Sender<types::AttachRequest>)>;

/// Attaches to a process's output (with replay, so nothing before Start is lost). Best
/// effort: without it, `logs` still has the output.
async fn attach(c: &Client, id: &str, exec_id: &str) -> Output {
    let (tx, rx) = mpsc::channel(4);
    let open = types::AttachRequest {
        msg: Some(types::attach_request::Msg::Open(types::AttachOpen {
            namespace: c.ns.clone(),
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            stdin: false,
            stdout: true,
            stderr: true,
            replay: true,
            log_records: false,
        })),
    };
    tx.send(open).await.ok()?;
    let mut stream = match c.tasks().attach(ReceiverStream::new(rx)).await {
        Ok(s) => s.into_inner(),
        Err(s) => {
            eprintln!("berth-supervisor ctl: attach: {}", s.message());
            return None;
        }
    };
    let copy = tokio::spawn(async move {
        while let Ok(Some(chunk)) = stream.message().await {
            if chunk.stream == types::StdStream::Stderr as i32 {
                let _ = std::io::stderr().write_all(&chunk.data);
            } else {
                let mut out = std::io::stdout();
                let _ = out.write_all(&chunk.data);
                let _ = out.flush();
            }
        }
    });
    Some((copy, tx))
}

/// Lets the output drain after the process exited (bounded).
async fn finish_output(output: Output) {
    if let Some((copy, tx)) = output {
        drop(tx);
        let _ = tokio::time::timeout(Duration::from_secs(5), copy).await;
    }
}

/// Prints a log file: json-file lines are decoded to their text, other lines as they are.
fn print_log(data: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(v) if v.get("log").and_then(|l| l.as_str()).is_some() => {
                out.write_all(v["log"].as_str().unwrap_or_default().as_bytes())?;
            }
            _ => {
                out.write_all(line)?;
                out.write_all(b"\n")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert!(parse_signal("NOPE").is_err());
    }
}
