//! `version`, `info`, `events`, `system df` and `system prune`.

use std::io::Write;

use anyhow::Result;
use clap::Args;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Value};

use super::confirm;
use crate::client::{empty, q, Client};
use crate::format::{bytes_size, filters_json, human_size4 as human_size, Template};

/// `--format` for version and info.
#[derive(Debug, Args)]
pub struct FormatArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

fn client_version(client: &Client) -> Value {
    json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": client.version(),
        "DefaultAPIVersion": crate::client::API_VERSION,
        "GoVersion": "n/a (rust)",
        "GitCommit": "",
        "BuildTime": "",
        "Os": std::env::consts::OS,
        "Arch": go_arch(),
        "Context": "default",
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// An RFC 3339 time as Go's `time.ANSIC` ("Thu May  7 21:09:36 2026"), as docker shows
/// the build time; other text is kept.
fn ansic_time(t: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|t| t.format("%a %b %e %H:%M:%S %Y").to_string())
        .unwrap_or_else(|_| t.to_string())
}

/// `berth version`
pub async fn version(client: &Client, args: FormatArgs) -> Result<i32> {
    let cv = client_version(client);
    let server = client.get("/version").await;
    if let Some(f) = &args.format {
        let t = Template::parse(f)?;
        let mut v = json!({"Client": cv, "Server": server.as_ref().ok()});
        // docker's Go structs call the "ApiVersion" key APIVersion; offer that name when asked
        // (only then, so `{{json .Client}}` stays as docker prints it).
        if f.contains("APIVersion") {
            for side in ["Client", "Server"] {
                if let Some(o) = v[side].as_object_mut() {
                    if let Some(a) = o.get("ApiVersion").cloned() {
                        o.insert("APIVersion".into(), a);
                    }
                }
            }
            println!("{}", t.render(&v)?);
        } else {
            // Keep docker's field order for `{{json .}}`: the client's as docker prints it,
            // the server's as the daemon sent it.
            let client_keys = [
                "Version",
                "ApiVersion",
                "DefaultAPIVersion",
                "GitCommit",
                "GoVersion",
                "Os",
                "Arch",
                "BuildTime",
                "Context",
            ];
            let client_json: Vec<String> = client_keys
                .iter()
                .map(|k| format!("{}:{}", Value::from(*k), cv[*k]))
                .collect();
            let server_json = match &server {
                Ok(_) => String::from_utf8_lossy(&client.get_raw("/version").await?).into_owned(),
                Err(_) => "null".to_string(),
            };
            let raw = format!(
                "{{\"Client\":{{{}}},\"Server\":{}}}",
                client_json.join(","),
                server_json.trim()
            );
            println!("{}", t.render_raw(raw.as_bytes())?);
        }
        return server.map(|_| 0);
    }
    let mut out = String::new();
    let api = if client.version() != crate::client::API_VERSION {
        format!(
            "{} (downgraded from {})",
            client.version(),
            crate::client::API_VERSION
        )
    } else {
        client.version().to_string()
    };
    out.push_str("Client:\n");
    for (k, v) in [
        ("Version", s(&cv, "Version").to_string()),
        ("API version", api),
        ("OS/Arch", format!("{}/{}", s(&cv, "Os"), s(&cv, "Arch"))),
        ("Context", "default".to_string()),
    ] {
        out.push_str(&format!(" {:<19}{v}\n", format!("{k}:")));
    }
    print!("{out}");
    let sv = server?;
    let mut out = String::from("\nServer:\n");
    out.push_str(" Engine:\n");
    let api = format!(
        "{} (minimum version {})",
        s(&sv, "ApiVersion"),
        s(&sv, "MinAPIVersion")
    );
    for (k, v) in [
        ("Version", s(&sv, "Version").to_string()),
        ("API version", api),
        ("Go version", s(&sv, "GoVersion").to_string()),
        ("Git commit", s(&sv, "GitCommit").to_string()),
        ("Built", ansic_time(s(&sv, "BuildTime"))),
        ("OS/Arch", format!("{}/{}", s(&sv, "Os"), s(&sv, "Arch"))),
        (
            "Experimental",
            sv["Experimental"].as_bool().unwrap_or(false).to_string(),
        ),
    ] {
        out.push_str(&format!("  {:<18}{v}\n", format!("{k}:")));
    }
    for c in sv["Components"].as_array().into_iter().flatten() {
        let name = s(c, "Name");
        if name == "Engine" {
            continue;
        }
        out.push_str(&format!(" {name}:\n"));
        out.push_str(&format!("  {:<18}{}\n", "Version:", s(c, "Version")));
        let mut details: Vec<(&String, &Value)> =
            c["Details"].as_object().into_iter().flatten().collect();
        details.sort_by_key(|(k, _)| k.as_str());
        for (k, v) in details {
            out.push_str(&format!(
                "  {:<18}{}\n",
                format!("{k}:"),
                v.as_str().unwrap_or("")
            ));
        }
    }
    print!("{out}");
    Ok(0)
}

/// `berth info`
pub async fn info(client: &Client, args: FormatArgs, debug: bool) -> Result<i32> {
    if let Some(f) = &args.format {
        let t = Template::parse(f)?;
        let raw = client.get_raw("/info").await?;
        println!("{}", t.render_raw(&raw)?);
        return Ok(0);
    }
    let info = client.get("/info").await;
    let mut out = String::new();
    out.push_str("Client:\n");
    out.push_str(&format!(" Version:    {}\n", env!("CARGO_PKG_VERSION")));
    out.push_str(" Context:    default\n");
    out.push_str(&format!(" Debug Mode: {debug}\n\n"));
    print!("{out}");
    let i = info?;
    let n = |k: &str| i[k].as_i64().unwrap_or(0);
    let mut out = String::from("Server:\n");
    out.push_str(&format!(" Containers: {}\n", n("Containers")));
    out.push_str(&format!("  Running: {}\n", n("ContainersRunning")));
    out.push_str(&format!("  Paused: {}\n", n("ContainersPaused")));
    out.push_str(&format!("  Stopped: {}\n", n("ContainersStopped")));
    out.push_str(&format!(" Images: {}\n", n("Images")));
    out.push_str(&format!(" Server Version: {}\n", s(&i, "ServerVersion")));
    out.push_str(&format!(" Storage Driver: {}\n", s(&i, "Driver")));
    for pair in i["DriverStatus"].as_array().into_iter().flatten() {
        if let Some([k, v]) = pair.as_array().map(Vec::as_slice) {
            out.push_str(&format!(
                "  {}: {}\n",
                k.as_str().unwrap_or(""),
                v.as_str().unwrap_or("")
            ));
        }
    }
    out.push_str(&format!(" Logging Driver: {}\n", s(&i, "LoggingDriver")));
    out.push_str(&format!(" Cgroup Driver: {}\n", s(&i, "CgroupDriver")));
    out.push_str(&format!(" Cgroup Version: {}\n", s(&i, "CgroupVersion")));
    let plugin = |k: &str| -> Vec<String> {
        i["Plugins"][k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    if i["Plugins"].is_object() {
        out.push_str(" Plugins:\n");
        for (k, title) in [
            ("Volume", "Volume"),
            ("Network", "Network"),
            ("Authorization", "Authorization"),
            ("Log", "Log"),
        ] {
            let p = plugin(k);
            if !p.is_empty() {
                out.push_str(&format!("  {title}: {}\n", p.join(" ")));
            }
        }
    }
    let swarm = i["Swarm"]["LocalNodeState"].as_str().unwrap_or("inactive");
    out.push_str(&format!(
        " Swarm: {}\n",
        if swarm.is_empty() { "inactive" } else { swarm }
    ));
    let mut runtimes: Vec<&String> = i["Runtimes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
        .collect();
    runtimes.sort();
    if !runtimes.is_empty() {
        out.push_str(&format!(
            " Runtimes: {}\n",
            runtimes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    out.push_str(&format!(" Default Runtime: {}\n", s(&i, "DefaultRuntime")));
    if !s(&i, "InitBinary").is_empty() {
        out.push_str(&format!(" Init Binary: {}\n", s(&i, "InitBinary")));
    }
    for (k, title) in [
        ("ContainerdCommit", "containerd"),
        ("RuncCommit", "runc"),
        ("InitCommit", "init"),
    ] {
        if i[k].is_object() {
            out.push_str(&format!(" {title} version: {}\n", s(&i[k], "ID")));
        }
    }
    let sec: Vec<&str> = i["SecurityOptions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !sec.is_empty() {
        out.push_str(" Security Options:\n");
        for o in sec {
            let name = o
                .split(',')
                .find_map(|kv| kv.strip_prefix("name="))
                .unwrap_or(o);
            out.push_str(&format!("  {name}\n"));
            if let Some(profile) = o.split(',').find_map(|kv| kv.strip_prefix("profile=")) {
                out.push_str(&format!("   Profile: {profile}\n"));
            }
        }
    }
    out.push_str(&format!(" Kernel Version: {}\n", s(&i, "KernelVersion")));
    out.push_str(&format!(
        " Operating System: {}\n",
        s(&i, "OperatingSystem")
    ));
    out.push_str(&format!(" OSType: {}\n", s(&i, "OSType")));
    out.push_str(&format!(" Architecture: {}\n", s(&i, "Architecture")));
    out.push_str(&format!(" CPUs: {}\n", n("NCPU")));
    out.push_str(&format!(
        " Total Memory: {}\n",
        bytes_size(i["MemTotal"].as_f64().unwrap_or(0.0))
    ));
    out.push_str(&format!(" Name: {}\n", s(&i, "Name")));
    out.push_str(&format!(" ID: {}\n", s(&i, "ID")));
    out.push_str(&format!(" Docker Root Dir: {}\n", s(&i, "DockerRootDir")));
    out.push_str(&format!(
        " Debug Mode: {}\n",
        i["Debug"].as_bool().unwrap_or(false)
    ));
    out.push_str(&format!(
        " Experimental: {}\n",
        i["ExperimentalBuild"].as_bool().unwrap_or(false)
    ));
    let insecure: Vec<&str> = i["RegistryConfig"]["InsecureRegistryCIDRs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .chain(
            i["RegistryConfig"]["IndexConfigs"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, c)| c["Secure"].as_bool() == Some(false))
                .filter_map(|(_, c)| c["Name"].as_str()),
        )
        .collect();
    if !insecure.is_empty() {
        out.push_str(" Insecure Registries:\n");
        for r in insecure {
            out.push_str(&format!("  {r}\n"));
        }
    }
    let mirrors: Vec<&str> = i["RegistryConfig"]["Mirrors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !mirrors.is_empty() {
        out.push_str(" Registry Mirrors:\n");
        for m in mirrors {
            out.push_str(&format!("  {m}\n"));
        }
    }
    out.push_str(&format!(
        " Live Restore Enabled: {}\n\n",
        i["LiveRestoreEnabled"].as_bool().unwrap_or(false)
    ));
    print!("{out}");
    for w in i["Warnings"].as_array().into_iter().flatten() {
        if let Some(w) = w.as_str() {
            eprintln!("{w}");
        }
    }
    Ok(0)
}

/// `berth events`
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Show all events created since timestamp
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    pub until: Option<String>,
}

/// One event as docker prints it: `<time> <type> <action> <id> (k=v, ...)`.
pub fn event_line(e: &Value) -> String {
    let nanos = e["timeNano"]
        .as_i64()
        .unwrap_or_else(|| e["time"].as_i64().unwrap_or(0) * 1_000_000_000);
    let t = chrono::DateTime::from_timestamp(nanos / 1_000_000_000, (nanos % 1_000_000_000) as u32)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%dT%H:%M:%S%.9f%:z")
                .to_string()
                .replace("+00:00", "Z")
        })
        .unwrap_or_default();
    let typ = e["Type"].as_str().unwrap_or("");
    let action = e["Action"].as_str().unwrap_or("");
    let id = e["Actor"]["ID"].as_str().unwrap_or("");
    let mut attrs: Vec<(String, String)> = e["Actor"]["Attributes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        .collect();
    attrs.sort();
    let mut line = format!("{t} {typ} {action} {id}");
    if !attrs.is_empty() {
        let a: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        line.push_str(&format!(" ({})", a.join(", ")));
    }
    line
}

/// Docker runs event templates on its Go struct, whose field names differ from the JSON keys
/// for a few fields (`status` is `.Status`, `id` is `.ID`, ...): add those names.
fn go_event_fields(mut e: Value) -> Value {
    if let Some(o) = e.as_object_mut() {
        for (json_key, go_name) in [
            ("status", "Status"),
            ("id", "ID"),
            ("from", "From"),
            ("scope", "Scope"),
            ("time", "Time"),
            ("timeNano", "TimeNano"),
        ] {
            if let Some(v) = o.get(json_key).cloned() {
                o.insert(go_name.to_string(), v);
            }
        }
    }
    e
}

/// `berth events`
pub async fn events(client: &Client, args: EventsArgs) -> Result<i32> {
    let mut query = vec![];
    if let Some(s) = &args.since {
        query.push(format!("since={}", q(&super::container::time_param(s))));
    }
    if let Some(u) = &args.until {
        query.push(format!("until={}", q(&super::container::time_param(u))));
    }
    if let Some(f) = filters_json(&args.filter)? {
        query.push(format!("filters={}", q(&f)));
    }
    let raw_json = matches!(
        args.format.as_deref().map(str::trim),
        Some("json") | Some("{{json .}}")
    );
    let tmpl = match args.format.as_deref() {
        Some("json") => Some(Template::parse("{{json .}}")?),
        Some(f) => Some(Template::parse(f)?),
        None => None,
    };
    let resp = client
        .request(
            Method::GET,
            &format!("/events?{}", query.join("&")),
            empty(),
            None,
        )
        .await?;
    let mut body = resp.into_body().into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut out = std::io::stdout();
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk?);
        loop {
            let start = buf
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(buf.len());
            buf.drain(..start);
            let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
            match it.next() {
                Some(Ok(e)) => {
                    let used = it.byte_offset();
                    let raw: Vec<u8> = buf.drain(..used).collect();
                    let line = match &tmpl {
                        // The daemon's own JSON keeps docker's field order.
                        Some(_) if raw_json => String::from_utf8_lossy(&raw).trim().to_string(),
                        Some(t) => t.render(&go_event_fields(e))?,
                        None => event_line(&e),
                    };
                    writeln!(out, "{line}")?;
                    out.flush()?;
                }
                _ => break,
            }
        }
    }
    Ok(0)
}

/// `berth system df`
#[derive(Debug, Args)]
pub struct DfArgs {
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Show detailed information on space usage
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

fn reclaim(total: f64, reclaimable: f64) -> String {
    if total > 0.0 {
        format!(
            "{} ({}%)",
            human_size(reclaimable),
            (reclaimable * 100.0 / total) as i64
        )
    } else {
        human_size(reclaimable)
    }
}

/// `berth system df`
pub async fn df(client: &Client, args: DfArgs) -> Result<i32> {
    let v = client.get("/system/df").await?;
    let f = |x: &Value| x.as_f64().unwrap_or(0.0);
    let images = v["Images"].as_array().cloned().unwrap_or_default();
    let containers = v["Containers"].as_array().cloned().unwrap_or_default();
    let volumes = v["Volumes"].as_array().cloned().unwrap_or_default();
    let cache = v["BuildCache"].as_array().cloned().unwrap_or_default();
    let img_size = f(&v["LayersSize"]);
    let img_active = images
        .iter()
        .filter(|i| i["Containers"].as_i64().unwrap_or(0) > 0)
        .count();
    let img_used: f64 = images
        .iter()
        .filter(|i| i["Containers"].as_i64().unwrap_or(0) > 0)
        .map(|i| f(&i["Size"]) - f(&i["SharedSize"]).max(0.0))
        .sum();
    let ctr_size: f64 = containers.iter().map(|c| f(&c["SizeRw"])).sum();
    let ctr_active = containers
        .iter()
        .filter(|c| matches!(c["State"].as_str(), Some("running") | Some("paused")))
        .count();
    let ctr_reclaim: f64 = containers
        .iter()
        .filter(|c| !matches!(c["State"].as_str(), Some("running") | Some("paused")))
        .map(|c| f(&c["SizeRw"]))
        .sum();
    let vol_size: f64 = volumes
        .iter()
        .map(|x| f(&x["UsageData"]["Size"]).max(0.0))
        .sum();
    let vol_active = volumes
        .iter()
        .filter(|x| x["UsageData"]["RefCount"].as_i64().unwrap_or(0) > 0)
        .count();
    let vol_reclaim: f64 = volumes
        .iter()
        .filter(|x| x["UsageData"]["RefCount"].as_i64().unwrap_or(0) == 0)
        .map(|x| f(&x["UsageData"]["Size"]).max(0.0))
        .sum();
    let cache_size: f64 = cache.iter().map(|c| f(&c["Size"])).sum();
    let cache_active = cache
        .iter()
        .filter(|c| c["InUse"].as_bool().unwrap_or(false))
        .count();
    let rows = vec![
        json!({"Type": "Images", "TotalCount": images.len().to_string(), "Active": img_active.to_string(),
               "Size": human_size(img_size), "Reclaimable": reclaim(img_size, (img_size - img_used).max(0.0))}),
        json!({"Type": "Containers", "TotalCount": containers.len().to_string(), "Active": ctr_active.to_string(),
               "Size": human_size(ctr_size), "Reclaimable": reclaim(ctr_size, ctr_reclaim)}),
        json!({"Type": "Local Volumes", "TotalCount": volumes.len().to_string(), "Active": vol_active.to_string(),
               "Size": human_size(vol_size), "Reclaimable": reclaim(vol_size, vol_reclaim)}),
        json!({"Type": "Build Cache", "TotalCount": cache.len().to_string(), "Active": cache_active.to_string(),
               "Size": human_size(cache_size), "Reclaimable": human_size(cache_size)}),
    ];
    let g = |r: &Value, k: &str| r[k].as_str().unwrap_or("").to_string();
    crate::format::print_objects(
        &crate::format::Format::parse(args.format.as_deref()),
        &rows,
        &["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        |r| {
            ["Type", "TotalCount", "Active", "Size", "Reclaimable"]
                .iter()
                .map(|k| g(r, k))
                .collect()
        },
        &[
            ("Type", "TYPE"),
            ("TotalCount", "TOTAL"),
            ("Active", "ACTIVE"),
            ("Size", "SIZE"),
            ("Reclaimable", "RECLAIMABLE"),
        ],
    )?;
    Ok(0)
}

/// `berth system prune`
#[derive(Debug, Args)]
pub struct SystemPruneArgs {
    /// Remove all unused images not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Provide filter values (e.g. "label=<key>=<value>")
    #[arg(long = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    pub volumes: bool,
}

/// `berth system prune`
pub async fn prune(client: &Client, args: SystemPruneArgs) -> Result<i32> {
    if !args.force {
        let mut w = String::from("WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n");
        if args.volumes {
            w.push_str("  - all anonymous volumes not used by at least one container\n");
        }
        if args.all {
            w.push_str("  - all images without at least one container associated to them\n");
        } else {
            w.push_str("  - all dangling images\n");
        }
        w.push_str("  - unused build cache\n\nAre you sure you want to continue?");
        if !confirm(&w) {
            return Ok(0);
        }
    }
    let mut space = 0.0;
    let (ctrs, s1) = super::container::prune_containers(client, &args.filter).await?;
    space += s1;
    if !ctrs.is_empty() {
        println!("Deleted Containers:\n{}\n", ctrs.join("\n"));
    }
    // Networks and build cache: best effort; older or smaller daemons may lack them.
    if let Ok(v) = client.post("/networks/prune").await {
        let nets: Vec<&str> = v["NetworksDeleted"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !nets.is_empty() {
            println!("Deleted Networks:\n{}\n", nets.join("\n"));
        }
    }
    if args.volumes {
        if let Ok(v) = client.post("/volumes/prune").await {
            let vols: Vec<&str> = v["VolumesDeleted"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !vols.is_empty() {
                println!("Deleted Volumes:\n{}\n", vols.join("\n"));
            }
            space += v["SpaceReclaimed"].as_f64().unwrap_or(0.0);
        }
    }
    let (imgs, s2) = super::image::prune_images(client, args.all, &args.filter).await?;
    space += s2;
    if !imgs.is_empty() {
        println!("Deleted Images:\n{}\n", imgs.join("\n"));
    }
    if let Ok(v) = client
        .call(
            Method::POST,
            &format!("/build/prune?all={}", args.all as u8),
            None,
        )
        .await
    {
        space += v["SpaceReclaimed"].as_f64().unwrap_or(0.0);
    }
    println!("Total reclaimed space: {}", human_size(space));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_print_like_docker() {
        let e = json!({"Type": "container", "Action": "start", "Actor": {"ID": "abc",
            "Attributes": {"name": "web", "image": "busybox"}}, "time": 1700000000, "timeNano": 1700000000123456789i64});
        let line = event_line(&e);
        assert!(
            line.ends_with(" container start abc (image=busybox, name=web)"),
            "{line}"
        );
        assert!(line.contains(".123456789"), "{line}");
    }

    #[test]
    fn reclaimable_shows_a_percentage() {
        assert_eq!(reclaim(2000.0, 1000.0), "1kB (50%)");
        assert_eq!(reclaim(1_984_000.0, 0.0), "0B (0%)");
        assert_eq!(reclaim(0.0, 0.0), "0B");
    }
}
