//! System endpoints: ping, version, info, system df.

use super::*;

pub(crate) async fn ping() -> Response {
    let mut r = (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"),
        ],
        "OK",
    )
        .into_response();
    r.headers_mut()
        .insert("Builder-Version", HeaderValue::from_static("1"));
    r
}

pub(crate) fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(crate) async fn version() -> Response {
    let v = env!("CARGO_PKG_VERSION");
    ok_json(json!({
        "Platform": {"Name": "berth"},
        "Components": [{"Name": "Engine", "Version": v, "Details": {
            "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
            "Arch": crate::host_arch(), "KernelVersion": kernel_version(), "GitCommit": "",
            "GoVersion": "", "BuildTime": "", "Experimental": "false"}}],
        "Version": v,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "n/a (Rust)",
        "Os": "linux",
        "Arch": crate::host_arch(),
        "KernelVersion": kernel_version(),
        "BuildTime": "",
    }))
}

pub(crate) fn cgroup_version() -> &'static str {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

pub(crate) async fn info(State(e): S) -> Response {
    let list = e.list();
    let running = list.iter().filter(|r| r.state.status == "running").count();
    let paused = list.iter().filter(|r| r.state.status == "paused").count();
    let images = e.images.list().map(|l| l.len()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|n| n.parse::<u64>().ok())
                })
        })
        .unwrap_or(0)
        * 1024;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    ok_json(json!({
        "ID": "berth",
        "Containers": list.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": list.len() - running - paused,
        "Images": images,
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
        "Plugins": {"Volume": [], "Network": ["host", "none"], "Authorization": null, "Log": ["json-file"]},
        "MemoryLimit": true, "SwapLimit": false, "CpuCfsPeriod": true, "CpuCfsQuota": true,
        "CPUShares": true, "CPUSet": true, "PidsLimit": true, "IPv4Forwarding": true,
        "Debug": false, "NFd": 0, "OomKillDisable": false, "NGoroutines": 0,
        "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(),
        "NEventsListener": 0,
        "KernelVersion": kernel_version(),
        "OperatingSystem": "berth",
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": crate::api::registry::registry_info(e.registry.config()),
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem,
        "DockerRootDir": e.config.data_root,
        "Name": host,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": e.runtime_names().iter().map(|n| (n.to_string(), json!({"path": n}))).collect::<serde_json::Map<_, _>>(),
        "DefaultRuntime": "berth-runtime",
        "Swarm": {"LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "docker-init",
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""},
        "InitCommit": {"ID": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Warnings": null,
    }))
}

pub(crate) async fn system_df(State(e): S) -> ApiResult<Response> {
    let du = e.images.disk_usage()?;
    let images: Vec<Value> = e
        .images
        .list()?
        .iter()
        .filter(|i| !super::build::is_build_cache(i))
        .map(|i| {
            let n = e.list().iter().filter(|r| r.image_id == i.id).count();
            image_summary(i, n as i64)
        })
        .collect();
    let containers: Vec<Value> = e
        .list()
        .iter()
        .map(|r| {
            let mut s = container_summary(r);
            let rw = du
                .containers
                .iter()
                .find(|(c, _)| c == &r.id)
                .map(|x| x.1)
                .unwrap_or(0);
            s["SizeRw"] = json!(rw);
            s
        })
        .collect();
    // Unpacked layers, plus what berth keeps beside them: the layers' original blobs (for
    // pushes and saves) and partial downloads.
    let kept = crate::registry::dir_size(&e.images.root().join("blobs/sha256"))
        + e.registry.downloads_size();
    let volumes: Vec<Value> = e
        .volume_list()
        .iter()
        .map(|v| {
            let mut j = super::volumes::volume_json(&e, v);
            j["UsageData"] = json!({
                "Size": e.volume_size(&v.name),
                "RefCount": e.volume_users(&v.name).len(),
            });
            j
        })
        .collect();
    Ok(ok_json(json!({
        "LayersSize": du.layers_size + kept,
        "Images": images,
        "Containers": containers,
        "Volumes": volumes,
        "BuildCache": super::build::build_cache_json(&e)?,
    })))
}

// ---- swarm -------------------------------------------------------------------------------

/// Swarm objects (services, nodes, tasks, secrets, configs, the swarm itself): berthd is never
/// a swarm manager, and answers as dockerd outside a swarm (503), after reading the body.
pub(crate) async fn not_a_manager(req: Request) -> ApiError {
    let mut body = req.into_body().into_data_stream();
    while let Some(Ok(_)) = body.next().await {}
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.",
    )
}

/// `POST /swarm/leave`: dockerd's answer outside a swarm.
pub(crate) async fn swarm_leave() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "This node is not part of a swarm",
    )
}

/// `POST /swarm/init|join`: swarm mode is not part of berth.
pub(crate) async fn swarm_refused() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "swarm mode is not supported by berthd",
    )
}
