//! `volume` and `network`: ls, create, rm, inspect, prune (and network connect/disconnect).

use anyhow::Result;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Map, Value};

use super::{confirm, StatusError};
use crate::client::{q, Client};
use crate::format::{self, filters_json, human_size4, indent_json, short_id, Format, Template};

/// Prints `GET {prefix}/{name}` for each name as docker's `inspect` does (indented JSON array,
/// or the template per object); missing ones are reported and make the exit code 1.
async fn inspect_objects(
    client: &Client,
    prefix: &str,
    names: &[String],
    format: Option<&str>,
) -> Result<i32> {
    let tmpl = match format {
        Some(f) if f != "json" => Some(Template::parse(f)?),
        _ => None,
    };
    let mut raws = Vec::new();
    let mut errors = Vec::new();
    for n in names {
        match client.get_raw(&format!("{prefix}/{}", q(n))).await {
            Ok(b) => raws.push(String::from_utf8_lossy(&b).trim().to_string()),
            Err(e) => errors.push(format!("{e:#}")),
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

fn labels_of(v: &Value) -> String {
    let mut l: Vec<String> = v["Labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    l.sort();
    l.join(",")
}

fn kv_map(items: &[String]) -> Map<String, Value> {
    items
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            (k.to_string(), json!(v))
        })
        .collect()
}

/// `berth volume ...`
#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// Create a volume
    Create(VolumeCreateArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Remove all unused local volumes
    Prune(PruneArgs),
    /// Remove one or more volumes
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

/// `volume create`
#[derive(Debug, Args)]
pub struct VolumeCreateArgs {
    /// Specify volume driver name
    #[arg(short = 'd', long, default_value = "local")]
    pub driver: String,
    /// Set metadata for a volume
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    /// Volume name
    pub name: Option<String>,
}

/// `inspect` of volumes and networks
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Names
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `ls` of volumes and networks
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Provide filter values
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only display names (volumes) or IDs (networks)
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `prune` of volumes and networks
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Provide filter values
    #[arg(long = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// `rm` of volumes and networks
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force the removal
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Names
    #[arg(required = true)]
    pub names: Vec<String>,
}

async fn remove_each(client: &Client, prefix: &str, args: &RmArgs) -> Result<i32> {
    let mut failed = false;
    for n in &args.names {
        let path = format!("{prefix}/{}?force={}", q(n), args.force as u8);
        match client.call(Method::DELETE, &path, None).await {
            Ok(_) => println!("{n}"),
            Err(e) if args.force && crate::client::is_not_found(&e) => {}
            Err(e) => {
                eprintln!("{e:#}");
                failed = true;
            }
        }
    }
    Ok(failed as i32)
}

/// `berth volume ...`
pub async fn volume(client: &Client, cmd: VolumeCmd) -> Result<i32> {
    match cmd {
        VolumeCmd::Create(a) => {
            let mut body = json!({
                "Driver": a.driver,
                "DriverOpts": kv_map(&a.opt),
                "Labels": kv_map(&a.label),
            });
            if let Some(n) = &a.name {
                body["Name"] = json!(n);
            }
            let v = client
                .call(Method::POST, "/volumes/create", Some(&body))
                .await?;
            println!("{}", v["Name"].as_str().unwrap_or(""));
            Ok(0)
        }
        VolumeCmd::Inspect(a) => {
            inspect_objects(client, "/volumes", &a.names, a.format.as_deref()).await
        }
        VolumeCmd::Ls(a) => {
            let path = match filters_json(&a.filter)? {
                Some(f) => format!("/volumes?filters={}", q(&f)),
                None => "/volumes".to_string(),
            };
            let v = client.get(&path).await?;
            let vols = v["Volumes"].as_array().cloned().unwrap_or_default();
            if a.quiet {
                for x in &vols {
                    println!("{}", x["Name"].as_str().unwrap_or(""));
                }
                return Ok(0);
            }
            let rows: Vec<Value> = vols
                .iter()
                .map(|x| {
                    json!({
                        "Name": x["Name"], "Driver": x["Driver"], "Scope": x["Scope"],
                        "Mountpoint": x["Mountpoint"], "Labels": labels_of(x),
                        "Links": "N/A", "Size": "N/A",
                    })
                })
                .collect();
            let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
            format::print_objects(
                &Format::parse(a.format.as_deref()),
                &rows,
                &["DRIVER", "VOLUME NAME"],
                |r| vec![s(r, "Driver"), s(r, "Name")],
                &[
                    ("Name", "VOLUME NAME"),
                    ("Driver", "DRIVER"),
                    ("Scope", "SCOPE"),
                    ("Mountpoint", "MOUNTPOINT"),
                    ("Labels", "LABELS"),
                    ("Links", "LINKS"),
                    ("Size", "SIZE"),
                ],
            )?;
            for w in v["Warnings"].as_array().into_iter().flatten() {
                eprintln!("{}", w.as_str().unwrap_or(""));
            }
            Ok(0)
        }
        VolumeCmd::Prune(a) => {
            if !a.force
                && !confirm("WARNING! This will remove anonymous local volumes not used by at least one container.\nAre you sure you want to continue?")
            {
                return Ok(0);
            }
            let mut filter = a.filter.clone();
            if a.all {
                filter.push("all=true".into());
            }
            let path = match filters_json(&filter)? {
                Some(f) => format!("/volumes/prune?filters={}", q(&f)),
                None => "/volumes/prune".to_string(),
            };
            let v = client.post(&path).await?;
            let deleted: Vec<&str> = v["VolumesDeleted"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !deleted.is_empty() {
                println!("Deleted Volumes:\n{}\n", deleted.join("\n"));
            }
            println!(
                "Total reclaimed space: {}",
                human_size4(v["SpaceReclaimed"].as_f64().unwrap_or(0.0))
            );
            Ok(0)
        }
        VolumeCmd::Rm(a) => remove_each(client, "/volumes", &a).await,
    }
}

/// `berth network ...`
#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Create a network
    Create(NetworkCreateArgs),
    /// Disconnect a container from a network
    Disconnect(ConnectArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// List networks
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Remove one or more networks
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

/// `network connect` / `disconnect`
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container (connect)
    #[arg(long)]
    pub alias: Vec<String>,
    /// Force the container to disconnect from a network (disconnect)
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Network
    pub network: String,
    /// Container
    pub container: String,
}

/// `network create`
#[derive(Debug, Args)]
pub struct NetworkCreateArgs {
    /// Driver to manage the Network
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    pub subnet: Vec<String>,
    /// IPv4 or IPv6 Gateway for the master subnet
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Enable or disable IPv6 networking
    #[arg(long)]
    pub ipv6: bool,
    /// Set metadata on a network
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    /// Network name
    pub name: String,
}

/// `berth network ...`
pub async fn network(client: &Client, cmd: NetworkCmd) -> Result<i32> {
    match cmd {
        NetworkCmd::Connect(a) => {
            let body = json!({"Container": a.container, "EndpointConfig": {"Aliases": a.alias}});
            client
                .call(
                    Method::POST,
                    &format!("/networks/{}/connect", q(&a.network)),
                    Some(&body),
                )
                .await?;
            Ok(0)
        }
        NetworkCmd::Disconnect(a) => {
            let body = json!({"Container": a.container, "Force": a.force});
            client
                .call(
                    Method::POST,
                    &format!("/networks/{}/disconnect", q(&a.network)),
                    Some(&body),
                )
                .await?;
            Ok(0)
        }
        NetworkCmd::Create(a) => {
            let config: Vec<Value> = a
                .subnet
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut c = json!({"Subnet": s});
                    if let Some(g) = a.gateway.get(i) {
                        c["Gateway"] = json!(g);
                    }
                    c
                })
                .collect();
            let body = json!({
                "Name": a.name,
                "Driver": a.driver,
                "Internal": a.internal,
                "EnableIPv6": a.ipv6,
                "Options": kv_map(&a.opt),
                "Labels": kv_map(&a.label),
                "IPAM": {"Driver": "default", "Config": config},
            });
            let v = client
                .call(Method::POST, "/networks/create", Some(&body))
                .await?;
            println!("{}", v["Id"].as_str().unwrap_or(""));
            Ok(0)
        }
        NetworkCmd::Inspect(a) => {
            inspect_objects(client, "/networks", &a.names, a.format.as_deref()).await
        }
        NetworkCmd::Ls(a) => {
            let path = match filters_json(&a.filter)? {
                Some(f) => format!("/networks?filters={}", q(&f)),
                None => "/networks".to_string(),
            };
            let v = client.get(&path).await?;
            let mut nets = v.as_array().cloned().unwrap_or_default();
            nets.sort_by(|x, y| {
                x["Name"]
                    .as_str()
                    .unwrap_or("")
                    .cmp(y["Name"].as_str().unwrap_or(""))
            });
            let trunc = !a.no_trunc;
            let id = |x: &Value| {
                let i = x["Id"].as_str().unwrap_or("");
                if trunc {
                    short_id(i)
                } else {
                    i.to_string()
                }
            };
            if a.quiet {
                for x in &nets {
                    println!("{}", id(x));
                }
                return Ok(0);
            }
            let rows: Vec<Value> = nets
                .iter()
                .map(|x| {
                    json!({
                        "ID": id(x), "Name": x["Name"], "Driver": x["Driver"], "Scope": x["Scope"],
                        "IPv6": x["EnableIPv6"].as_bool().unwrap_or(false).to_string(),
                        "Internal": x["Internal"].as_bool().unwrap_or(false).to_string(),
                        "Labels": labels_of(x), "CreatedAt": x["Created"],
                    })
                })
                .collect();
            let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
            format::print_objects(
                &Format::parse(a.format.as_deref()),
                &rows,
                &["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
                |r| vec![s(r, "ID"), s(r, "Name"), s(r, "Driver"), s(r, "Scope")],
                &[
                    ("ID", "NETWORK ID"),
                    ("Name", "NAME"),
                    ("Driver", "DRIVER"),
                    ("Scope", "SCOPE"),
                    ("IPv6", "IPV6"),
                    ("Internal", "INTERNAL"),
                    ("Labels", "LABELS"),
                    ("CreatedAt", "CREATED AT"),
                ],
            )?;
            Ok(0)
        }
        NetworkCmd::Prune(a) => {
            if !a.force
                && !confirm("WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue?")
            {
                return Ok(0);
            }
            let path = match filters_json(&a.filter)? {
                Some(f) => format!("/networks/prune?filters={}", q(&f)),
                None => "/networks/prune".to_string(),
            };
            let v = client.post(&path).await?;
            let deleted: Vec<&str> = v["NetworksDeleted"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !deleted.is_empty() {
                println!("Deleted Networks:\n{}", deleted.join("\n"));
            }
            Ok(0)
        }
        NetworkCmd::Rm(a) => remove_each(client, "/networks", &a).await,
    }
}
