//! The container lifecycle over the supervisor: create (record, files, rootfs), start, the
//! exit path, stop, kill, pause, remove, and the reconciliation after a restart.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::supervisor::v1 as pb;
use berth_proto::types::v1 as types;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::{Record, SpecFiles, State};
use crate::error::{ApiError, ApiResult};
use crate::{now, parse_signal, Engine, ZERO_TIME};

/// The container's user for `spec` (`-u` or an exec's `-u`), with its `--group-add`, from
/// the rootfs's own passwd and group files.
pub fn resolve_user(
    layers: &berth_image::rootfs::RootfsLayers,
    rec: &Record,
    spec: &str,
) -> ApiResult<super::ExecUser> {
    let group_add: Vec<String> = rec.host_config["GroupAdd"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str().map(str::to_string))
        .collect();
    let passwd = layers
        .read_file("/etc/passwd")
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let group = layers
        .read_file("/etc/group")
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    super::user::resolve(spec, &group_add, passwd.as_deref(), group.as_deref())
        .map_err(ApiError::bad_request)
}

/// A program on PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_else(|| vec!["/usr/local/bin".into(), "/usr/bin".into(), "/bin".into()])
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A container's resolv.conf, as dockerd writes it: the host's, without its loopback
/// resolvers (Google's public ones when none is left), and `--dns`, `--dns-search` and
/// `--dns-option` each replacing the host's lines of its kind.
fn resolv_conf(host: &str, dns: &[String], search: &[String], options: &[String]) -> String {
    let mut servers = Vec::new();
    let mut searches = Vec::new();
    let mut opts = Vec::new();
    let mut other = Vec::new();
    for l in host.lines() {
        let mut words = l.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(a) = words.next() {
                    if !(a.starts_with("127.") || a == "::1") {
                        servers.push(a.to_string());
                    }
                }
            }
            Some("search") | Some("domain") => searches = words.map(str::to_string).collect(),
            Some("options") => opts.extend(words.map(str::to_string)),
            Some(w) if !w.starts_with('#') && !w.starts_with(';') => other.push(l.to_string()),
            _ => {}
        }
    }
    if !dns.is_empty() {
        servers = dns.to_vec();
    } else if servers.is_empty() {
        servers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
    }
    if !search.is_empty() {
        searches = search
            .iter()
            .filter(|s| s.as_str() != ".")
            .cloned()
            .collect();
    }
    if !options.is_empty() {
        opts = options.to_vec();
    }
    let mut out = String::new();
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !opts.is_empty() {
        out.push_str(&format!("options {}\n", opts.join(" ")));
    }
    for l in other {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// How long the exit path waits for an attached client that reads nothing.
const ATTACH_STALL: Duration = Duration::from_secs(3);

/// The attach streams of one container.
#[derive(Debug, Default, Clone, Copy)]
pub struct Attaches {
    /// Streams open.
    live: usize,
    /// Attaches made before the start, not yet subscribed at the shim.
    pending: usize,
    /// Chunks delivered in all (progress of the drain at exit).
    delivered: u64,
}

/// [`Engine::find`] within the locked map.
fn find_in<'a>(map: &'a HashMap<String, Record>, key: &str) -> ApiResult<&'a Record> {
    if let Some(r) = map.get(key) {
        return Ok(r);
    }
    let name = format!("/{}", key.trim_start_matches('/'));
    if let Some(r) = map.values().find(|r| r.name == name) {
        return Ok(r);
    }
    let mut hits = map
        .values()
        .filter(|r| !key.is_empty() && r.id.starts_with(key));
    match (hits.next(), hits.next()) {
        (Some(r), None) => Ok(r),
        (None, _) => Err(ApiError::no_such_container(key)),
        _ => Err(ApiError::bad_request(format!(
            "multiple IDs found with provided prefix: {key}"
        ))),
    }
}

impl Engine {
    /// Every container record, by id.
    pub fn list(&self) -> Vec<Record> {
        let mut v: Vec<Record> = self.lock().values().cloned().collect();
        v.sort_by(|a, b| b.created.cmp(&a.created));
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
        self.containers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.config.data_root.join("containers").join(id)
    }

    /// A container by full id, name (with or without `/`), or unambiguous id prefix.
    pub fn find(&self, key: &str) -> ApiResult<Record> {
        find_in(&self.lock(), key).cloned()
    }

    /// Stores a record (disk first, then memory) and wakes waiters.
    pub fn put(&self, rec: Record) -> ApiResult<()> {
        crate::container::save(&self.container_dir(&rec.id), &rec)?;
        self.lock().insert(rec.id.clone(), rec);
        self.changes.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Changes a stored record. The read, the change and the write happen under the map's
    /// lock, so concurrent changes (a start recording its pid, the exit of the same run) never
    /// overwrite each other with stale copies.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut Record)) -> ApiResult<Record> {
        let rec = {
            let mut map = self.lock();
            let mut rec = find_in(&map, id)?.clone();
            f(&mut rec);
            crate::container::save(&self.container_dir(&rec.id), &rec)?;
            map.insert(rec.id.clone(), rec.clone());
            rec
        };
        self.notify();
        Ok(rec)
    }

    /// Runs `f` over the records without copying them (the DNS answers from here).
    pub(crate) fn with_records<T>(&self, f: impl FnOnce(&HashMap<String, Record>) -> T) -> T {
        f(&self.lock())
    }

    /// Changes a record in memory only: the change is written with the record's next durable
    /// update (for what a crash may lose because it is found again from the kernel or
    /// redone: a starting container's addresses, saved with its `running` state).
    pub fn update_live(&self, id: &str, f: impl FnOnce(&mut Record)) -> ApiResult<Record> {
        let rec = {
            let mut map = self.lock();
            let key = find_in(&map, id)?.id.clone();
            let rec = map
                .get_mut(&key)
                .ok_or_else(|| ApiError::no_such_container(id))?;
            f(rec);
            rec.clone()
        };
        self.notify();
        Ok(rec)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn notify(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    fn attaches(&self) -> std::sync::MutexGuard<'_, HashMap<String, Attaches>> {
        self.attaches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An attach stream of `id` begins (the exit path waits for it to drain).
    pub fn attach_started(&self, id: &str) {
        self.attaches().entry(id.to_string()).or_default().live += 1;
    }

    /// An attach made before the start is waiting for the task (`true`), or is subscribed at
    /// the shim or gave up (`false`); the start lets the process run when none is waiting.
    pub fn attach_pending(&self, id: &str, waiting: bool) {
        {
            let mut map = self.attaches();
            let a = map.entry(id.to_string()).or_default();
            if waiting {
                a.pending += 1;
            } else {
                a.pending = a.pending.saturating_sub(1);
            }
        }
        if !waiting {
            self.notify();
        }
    }

    /// An attach stream of `id` delivered output to its client.
    pub fn attach_progress(&self, id: &str) {
        if let Some(a) = self.attaches().get_mut(id) {
            a.delivered += 1;
        }
    }

    /// An attach stream of `id` ended.
    pub fn attach_ended(&self, id: &str) {
        {
            let mut map = self.attaches();
            if let Some(a) = map.get_mut(id) {
                a.live = a.live.saturating_sub(1);
                if a.live == 0 {
                    map.remove(id);
                }
            }
        }
        self.notify();
    }

    fn attach_state(&self, id: &str) -> Attaches {
        self.attaches().get(id).copied().unwrap_or_default()
    }

    // ---- create ------------------------------------------------------------------------

    /// `POST /containers/create`.
    /// Returns the record and dockerd's warnings for options the host cannot honour.
    pub fn create(&self, name: Option<&str>, body: Value) -> ApiResult<(Record, Vec<String>)> {
        let image_ref = body["Image"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request("config cannot be empty in order to create a container")
            })?
            .to_string();
        let image = self.images.get(&image_ref)?;
        let id = crate::container::new_id();
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                if !crate::container::valid_name(n) {
                    return Err(ApiError::bad_request(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                format!("/{}", n.trim_start_matches('/'))
            }
            // A generated name never conflicts: on a clash, another draw with a number, as
            // dockerd does.
            None => {
                let map = self.lock();
                let taken = |n: &str| map.values().any(|r| r.name == n);
                let mut name = format!("/{}", crate::container::random_name(&id));
                let mut attempt = 0u32;
                while taken(&name) {
                    attempt += 1;
                    let other = crate::container::new_id();
                    name = format!("/{}{attempt}", crate::container::random_name(&other));
                }
                name
            }
        };
        if let Some(other) = self.lock().values().find(|r| r.name == name) {
            return Err(ApiError::conflict(format!(
                "Conflict. The container name \"{name}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                other.id
            )));
        }
        // Merge the image's defaults into the request's Config.
        let mut config = body.clone();
        if let Some(obj) = config.as_object_mut() {
            obj.remove("HostConfig");
            obj.remove("NetworkingConfig");
        }
        let img = &image.raw_config["config"];
        let given_entry = !config["Entrypoint"].is_null();
        if !given_entry {
            config["Entrypoint"] = img["Entrypoint"].clone();
        }
        if config["Cmd"].is_null() && !given_entry {
            config["Cmd"] = img["Cmd"].clone();
        }
        let mut env: Vec<Value> = img["Env"].as_array().cloned().unwrap_or_default();
        for e in config["Env"].as_array().cloned().unwrap_or_default() {
            let key = e
                .as_str()
                .unwrap_or_default()
                .split('=')
                .next()
                .unwrap_or_default()
                .to_string();
            env.retain(|x| x.as_str().unwrap_or_default().split('=').next() != Some(key.as_str()));
            env.push(e);
        }
        config["Env"] = Value::Array(env);
        for k in ["WorkingDir", "User", "StopSignal"] {
            if config[k].as_str().unwrap_or_default().is_empty() && !img[k].is_null() {
                config[k] = img[k].clone();
            }
        }
        let hc = super::health::merge(&config["Healthcheck"], &img["Healthcheck"]);
        if !hc.is_null() {
            config["Healthcheck"] = hc;
        }
        let mut labels = img["Labels"].as_object().cloned().unwrap_or_default();
        if let Some(l) = config["Labels"].as_object() {
            labels.extend(l.clone());
        }
        config["Labels"] = Value::Object(labels);
        config["Image"] = json!(image_ref);
        let host_net = body["HostConfig"]["NetworkMode"].as_str() == Some("host");
        if config["Hostname"].as_str().unwrap_or_default().is_empty() {
            config["Hostname"] = if host_net {
                json!(super::options::host_name())
            } else {
                json!(&id[..12])
            };
        }
        let mut argv: Vec<String> = Vec::new();
        for k in ["Entrypoint", "Cmd"] {
            match &config[k] {
                Value::Array(a) => {
                    argv.extend(a.iter().filter_map(|v| v.as_str().map(str::to_string)))
                }
                Value::String(s) if !s.is_empty() => argv.push(s.clone()),
                _ => {}
            }
        }
        if argv.is_empty() {
            return Err(ApiError::bad_request("No command specified"));
        }
        let mut host_config = body["HostConfig"].clone();
        if host_config.is_null() {
            host_config = json!({});
        }
        if host_config["NetworkMode"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
        {
            host_config["NetworkMode"] = json!("default");
        }
        let warnings = super::options::check(&mut host_config, &body, &self.runtime_names())?;
        // An empty log driver is the default one, as dockerd fills it in.
        if host_config["LogConfig"]["Type"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
        {
            let config = host_config["LogConfig"]["Config"].clone();
            host_config["LogConfig"] = json!({
                "Type": "json-file",
                "Config": if config.is_object() { config } else { json!({}) },
            });
        }
        // dockerd stores the default masked and read-only paths of an unprivileged container
        // (inspect shows them; a client may pass its own lists instead).
        let unconfined_paths = super::security_opts(&host_config).unconfined_paths;
        if host_config["Privileged"].as_bool() != Some(true) && !unconfined_paths {
            if host_config["MaskedPaths"].is_null() {
                host_config["MaskedPaths"] = json!(super::MASKED_PATHS);
            }
            if host_config["ReadonlyPaths"].is_null() {
                host_config["ReadonlyPaths"] = json!(super::READONLY_PATHS);
            }
        }
        if host_config["CgroupnsMode"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
        {
            // dockerd's default: private on cgroup v2 hosts, the host's elsewhere.
            host_config["CgroupnsMode"] = json!(if super::options::HostFacts::get().unified {
                "private"
            } else {
                "host"
            });
        }
        let endpoints = self.create_endpoints(&host_config, &body)?;
        // The image's exposed ports are the container's too (`-P` publishes them).
        if let Some(img_ports) = img["ExposedPorts"].as_object() {
            let mut ports = config["ExposedPorts"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for (k, v) in img_ports {
                ports.entry(k.clone()).or_insert(v.clone());
            }
            if !ports.is_empty() {
                config["ExposedPorts"] = Value::Object(ports);
            }
        }
        crate::network::parse_bindings(&host_config, &config).map_err(ApiError::bad_request)?;
        // The image's VOLUME paths are the container's too (inspect shows them in
        // Config.Volumes); each gets an anonymous volume unless something is mounted there.
        if let Some(img_vols) = img["Volumes"].as_object().filter(|v| !v.is_empty()) {
            let mut vols = config["Volumes"].as_object().cloned().unwrap_or_default();
            for (k, v) in img_vols {
                vols.entry(k.clone()).or_insert(v.clone());
            }
            config["Volumes"] = Value::Object(vols);
        }
        // `container:<name>` modes name a container that exists (it must run at start).
        for k in ["NetworkMode", "IpcMode", "PidMode"] {
            let Some(name) =
                super::options::container_ref(host_config[k].as_str().unwrap_or_default())
            else {
                continue;
            };
            match self.find(name) {
                // Its hostname and domain come with its network, as in dockerd.
                Ok(other) if k == "NetworkMode" => {
                    config["Hostname"] = other.config["Hostname"].clone();
                    config["Domainname"] = other.config["Domainname"].clone();
                }
                Ok(_) => {}
                // As dockerd: a missing network container fails the start (404), a missing
                // IPC or PID container the create (400).
                Err(_) if k == "NetworkMode" => {}
                Err(e) => return Err(ApiError::bad_request(e.message)),
            }
        }
        // As dockerd: with a memory limit and no swap limit, as much swap as memory.
        let memory = host_config["Memory"].as_i64().unwrap_or(0);
        if memory > 0
            && host_config["MemorySwap"].as_i64().unwrap_or(0) == 0
            && super::options::HostFacts::get().swap
        {
            host_config["MemorySwap"] = json!(memory * 2);
        }
        let driver = host_config["VolumeDriver"].as_str().unwrap_or_default();
        let volumes = self.resolve_volumes(&host_config, &config, &Value::Null)?;
        if !driver.is_empty() && driver != "local" && volumes.iter().any(|v| !v.name.is_empty()) {
            self.remove_anonymous_volumes(&volumes);
            return Err(ApiError::bad_request(format!(
                "error looking up volume plugin {driver}: plugin {driver:?} not found"
            )));
        }
        let dir = self.container_dir(&id);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            self.remove_anonymous_volumes(&volumes);
            return Err(e.into());
        }
        let rec = Record {
            id: id.clone(),
            name,
            created: now(),
            image: image_ref,
            image_id: image.id.clone(),
            path: argv[0].clone(),
            args: argv[1..].to_vec(),
            config,
            host_config,
            state: State {
                status: "created".into(),
                started_at: ZERO_TIME.into(),
                finished_at: ZERO_TIME.into(),
                ..Default::default()
            },
            restart_count: 0,
            log_path: dir.join(format!("{id}-json.log")),
            exits: 0,
            manually_stopped: false,
            restart_backoff_ms: 0,
            endpoints,
            sandbox: String::new(),
            published: Vec::new(),
            volumes,
        };
        // Validate the spec now, so bad binds or options fail at create as in Docker.
        let checked = self.write_files(&rec).and_then(|()| {
            let files = self.spec_files(&rec);
            crate::container::build_spec(&rec, &files.as_spec())?;
            self.images.prepare_rootfs(&image.id, &id)?;
            Ok(())
        });
        if let Err(e) = checked.and_then(|()| self.put(rec.clone())) {
            let _ = self.images.remove_rootfs(&id);
            let _ = std::fs::remove_dir_all(&dir);
            self.remove_anonymous_volumes(&rec.volumes);
            return Err(e);
        }
        self.emit_container(&rec, "create", &[]);
        Ok((rec, warnings))
    }

    /// The endpoints of a new container: its NetworkMode's network and any other of
    /// `NetworkingConfig.EndpointsConfig`, checked as dockerd does.
    fn create_endpoints(
        &self,
        host_config: &Value,
        body: &Value,
    ) -> ApiResult<std::collections::BTreeMap<String, crate::network::Endpoint>> {
        let mut out = std::collections::BTreeMap::new();
        let mode = host_config["NetworkMode"].as_str().unwrap_or_default();
        let configs = body["NetworkingConfig"]["EndpointsConfig"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mac = body["MacAddress"].as_str().unwrap_or_default();
        let Some(primary) = crate::network::mode_network(mode) else {
            if !mac.is_empty() {
                return Err(ApiError::bad_request(
                    "conflicting options: mac-address and the network mode",
                ));
            }
            return Ok(out);
        };
        let n = self.network_find(primary)?;
        // The CLI names the mode's network as the mode does (`default`).
        let is_primary = |k: &str| {
            k == mode
                || k == n.name
                || k == n.id
                || crate::network::mode_network(k) == Some(primary)
        };
        let cfg = configs
            .iter()
            .find(|(k, _)| is_primary(k))
            .map(|(_, v)| v.clone())
            .unwrap_or(Value::Null);
        let mut ep = crate::network::endpoint_config(&n, &cfg)?;
        if ep.mac_config.is_empty() && !mac.is_empty() {
            if crate::network::parse_mac(mac).is_none() {
                return Err(ApiError::bad_request(format!("invalid MAC address: {mac}")));
            }
            ep.mac_config = mac.to_string();
        }
        out.insert(n.name.clone(), ep);
        for (key, cfg) in configs.iter().filter(|(k, _)| !is_primary(k)) {
            let other = self.network_find(key)?;
            if other.id == n.id {
                continue;
            }
            out.insert(
                other.name.clone(),
                crate::network::endpoint_config(&other, cfg)?,
            );
        }
        // --link names a container that exists.
        for link in host_config["Links"].as_array().into_iter().flatten() {
            let (target, _) = crate::network::split_link(link.as_str().unwrap_or_default());
            if self.find(target).is_err() {
                return Err(ApiError::not_found(format!(
                    "could not get container for {target}"
                )));
            }
        }
        Ok(out)
    }

    /// The runtimes a container may name (`--runtime`): berth-runtime, and runc when the
    /// host has it.
    pub fn runtime_names(&self) -> Vec<&'static str> {
        let mut names = vec!["berth-runtime"];
        if which("runc").is_some() {
            names.push("runc");
        }
        names
    }

    fn write_files(&self, rec: &Record) -> ApiResult<()> {
        let dir = self.container_dir(&rec.id);
        let h = &rec.host_config;
        if super::options::container_ref(h["NetworkMode"].as_str().unwrap_or_default()).is_some() {
            // The files of the container whose network it joins are used (spec_files).
            return Ok(());
        }
        let hostname = rec.config["Hostname"].as_str().unwrap_or(rec.short_id());
        std::fs::write(dir.join("hostname"), format!("{hostname}\n"))?;
        let strs = |k: &str| -> Vec<String> {
            h[k].as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        let hosts = if h["NetworkMode"].as_str() == Some("host") {
            let mut hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            if !hosts.ends_with('\n') && !hosts.is_empty() {
                hosts.push('\n');
            }
            push_extra_hosts(&mut hosts, rec);
            hosts
        } else {
            // Its addresses come at start (`write_net_files`).
            hosts_file(rec, &[], &[])
        };
        std::fs::write(dir.join("hosts"), hosts)?;
        std::fs::write(
            dir.join("resolv.conf"),
            resolv_conf(
                &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
                &strs("Dns"),
                &strs("DnsSearch"),
                &strs("DnsOptions"),
            ),
        )?;
        Ok(())
    }

    /// The files a container's spec binds (its own or, on another's network, that one's) and
    /// the host's init binary.
    pub(crate) fn spec_files(&self, rec: &Record) -> OwnedSpecFiles {
        // A container on another's network shares its hosts, resolv.conf and hostname.
        let net = rec.host_config["NetworkMode"].as_str().unwrap_or_default();
        let dir = match super::options::container_ref(net).and_then(|o| self.find(o).ok()) {
            Some(other) => self.container_dir(&other.id),
            None => self.container_dir(&rec.id),
        };
        let init = [
            "/usr/bin/docker-init",
            "/usr/bin/tini-static",
            "/usr/bin/tini",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
        OwnedSpecFiles {
            hosts: dir.join("hosts"),
            hostname: dir.join("hostname"),
            resolv: dir.join("resolv.conf"),
            init,
        }
    }

    // ---- start / exit ------------------------------------------------------------------

    /// `POST /containers/{id}/start`: creates the supervisor container and task, starts it.
    ///
    /// A start that fails leaves the container created, with the runtime's reason in its
    /// State.Error and dockerd's exit code (127 not found, 126 not executable, 128 other);
    /// it counts as an exit, so waiters (wait, attach) end, and an auto-remove container is
    /// removed before the error is answered, as dockerd does.
    pub async fn start(self: &Arc<Self>, key: &str) -> ApiResult<bool> {
        let rec = self.find(key)?;
        if rec.running() {
            return Ok(false);
        }
        if rec.manually_stopped {
            let _ = self.update(&rec.id, |r| r.manually_stopped = false);
        }
        let err = match self.start_task(&rec).await {
            Ok(()) => {
                self.start_health(&rec.id, false);
                return Ok(true);
            }
            Err(err) => err,
        };
        self.endpoints_down(&rec.id).await;
        let msg = err.message.clone();
        let code = if msg.contains("executable file not found")
            || msg.contains("no such file")
            || msg.contains("not found")
        {
            127
        } else if msg.contains("permission denied") || msg.contains("is a directory") {
            126
        } else {
            128
        };
        if let Ok(r) = self.update(&rec.id, |r| {
            r.state.status = "created".into();
            r.state.pid = 0;
            r.state.error = msg.clone();
            r.state.exit_code = code;
            r.state.finished_at = now();
            r.exits += 1;
        }) {
            self.emit_die(&r);
        }
        if rec.auto_remove() {
            if let Err(e) = self.remove(&rec.id, true).await {
                tracing::warn!(container_id = %rec.id, error = %e, "remove after failed start");
            }
        }
        Err(err)
    }

    /// The work of [`Engine::start`]: spec, rootfs, supervisor container and task, Start.
    async fn start_task(self: &Arc<Self>, rec: &Record) -> ApiResult<()> {
        let rec = rec.clone();
        let mount = self.images.prepare_rootfs(&rec.image_id, &rec.id)?;
        let layers = berth_image::rootfs::RootfsLayers::from_mount(&mount);
        let user = resolve_user(&layers, &rec, rec.config["User"].as_str().unwrap_or(""))?;
        // A missing working directory is made, as dockerd does; owned by the container's
        // user so that it can write there.
        let cwd = rec.config["WorkingDir"].as_str().unwrap_or_default();
        if !cwd.is_empty() && cwd != "/" && !layers.is_dir(cwd) {
            let scratch = self.container_dir(&rec.id).join("mnt");
            let (m, c, u, g) = (mount.clone(), cwd.to_string(), user.uid, user.gid);
            tokio::task::spawn_blocking(move || {
                berth_image::rootfs::mkdir_all(&m, &scratch, &c, u, g)
            })
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::bad_request(format!("create working directory {cwd}: {e}")))?;
        }
        self.fill_volumes(&rec)?;
        let files = self.spec_files(&rec);
        let mut files = files.as_spec();
        files.user = Some(&user);
        files.joins = self.namespace_joins(&rec)?;
        // Its network namespace, with an interface on each of its networks (leftovers of an
        // earlier run go first).
        self.endpoints_down(&rec.id).await;
        if let Some(sandbox) = self.endpoints_up(&rec).await? {
            self.write_net_files(&self.find(&rec.id)?)?;
            files
                .joins
                .push(("network", sandbox.to_string_lossy().into_owned()));
        }
        let mut spec = crate::container::build_spec(&rec, &files)?;
        // Legacy links' variables, from the targets as they run now.
        let link_env = self.link_env(&self.find(&rec.id)?);
        if let Some(env) = spec["process"]["env"].as_array_mut() {
            env.extend(link_env.into_iter().map(Value::from));
        }
        let runtime = match rec.host_config["Runtime"].as_str().unwrap_or_default() {
            "runc" => which("runc").map(|p| pb::Runtime {
                binary: p.to_string_lossy().into_owned(),
                ..Default::default()
            }),
            _ => None,
        };
        let ns = self.sup.namespace.clone();
        // Leftovers of an earlier run.
        self.cleanup_task(&rec.id).await;
        let log_cfg = &rec.host_config["LogConfig"]["Config"];
        let max_size = log_cfg["max-size"]
            .as_str()
            .and_then(crate::container::parse_size)
            .unwrap_or(self.config.log_max_size);
        let max_files = log_cfg["max-file"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(self.config.log_max_files);
        self.sup
            .containers()
            .create(pb::CreateContainerRequest {
                namespace: ns.clone(),
                container: Some(pb::Container {
                    id: rec.id.clone(),
                    image: rec.image.clone(),
                    spec: serde_json::to_vec(&spec)
                        .map_err(|e| ApiError::internal(e.to_string()))?,
                    runtime,
                    rootfs: vec![types::Mount {
                        r#type: mount.kind.clone(),
                        source: mount.source.clone(),
                        target: String::new(),
                        options: mount.options.clone(),
                    }],
                    ..Default::default()
                }),
            })
            .await?;
        let open_stdin = rec.config["OpenStdin"].as_bool().unwrap_or(false);
        let created = self
            .sup
            .tasks()
            .create(pb::CreateTaskRequest {
                namespace: ns.clone(),
                container_id: rec.id.clone(),
                io: Some(types::Io {
                    stdin: open_stdin,
                    // As dockerd: on a TTY the end of an attach (detach keys, client gone)
                    // leaves stdin open; only non-TTY StdinOnce closes it.
                    stdin_once: rec.config["StdinOnce"].as_bool().unwrap_or(false) && !rec.tty(),
                    terminal: rec.tty(),
                    // The `none` driver keeps nothing: the shim's own file serves live
                    // readers and goes with the task.
                    log_path: if rec.host_config["LogConfig"]["Type"].as_str() == Some("none") {
                        String::new()
                    } else {
                        rec.log_path.to_string_lossy().into_owned()
                    },
                    log_format: types::LogFormat::Json as i32,
                    log_max_size: max_size,
                    log_max_files: max_files,
                }),
            })
            .await;
        if let Err(e) = created {
            self.cleanup_task(&rec.id).await;
            return Err(ApiError::bad_request(format!(
                "failed to create task for container: {}",
                e.message()
            )));
        }
        // Marked running before Start: an instant exit is then seen as the exit of this run.
        let exits = rec.exits;
        self.update(&rec.id, |r| {
            r.state = State {
                status: "running".into(),
                pid: 0,
                exit_code: 0,
                started_at: now(),
                finished_at: ZERO_TIME.into(),
                oom_killed: false,
                error: String::new(),
                health: None,
            };
        })?;
        self.emit_container_id(&rec.id, "start", &[]);
        // Clients that attached before the start (woken by the state above) subscribe at the
        // shim first; bounded, so a stuck client cannot hold the start.
        let mut changes = self.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.attach_state(&rec.id).pending > 0 {
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                tracing::warn!(container_id = %rec.id, "attached client did not subscribe in time");
                break;
            }
        }
        let started = self
            .sup
            .tasks()
            .start(pb::StartTaskRequest {
                namespace: ns,
                container_id: rec.id.clone(),
                exec_id: String::new(),
            })
            .await;
        match started {
            Ok(r) => {
                let pid = r.into_inner().pid;
                let _ = self.update(&rec.id, |r| {
                    if r.exits == exits && r.running() {
                        r.state.pid = pid;
                    }
                });
                // HostConfig.ConsoleSize ([height, width]): the terminal's first size.
                let size = &rec.host_config["ConsoleSize"];
                let (h, w) = (size[0].as_u64().unwrap_or(0), size[1].as_u64().unwrap_or(0));
                if rec.tty() && h > 0 && w > 0 {
                    let _ = self
                        .sup
                        .tasks()
                        .resize_pty(pb::ResizePtyRequest {
                            namespace: self.sup.namespace.clone(),
                            container_id: rec.id.clone(),
                            exec_id: String::new(),
                            width: w as u32,
                            height: h as u32,
                        })
                        .await;
                }
            }
            Err(e) => {
                self.cleanup_task(&rec.id).await;
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Docker's copy-up: an empty volume mounted where the image has content gets that
    /// content (owners and modes kept) before the container first runs with it; then the
    /// volumes' `mount` events.
    fn fill_volumes(self: &Arc<Self>, rec: &Record) -> ApiResult<()> {
        let empty = |v: &crate::volume::VolumeMount| {
            std::fs::read_dir(&v.source).is_ok_and(|mut d| d.next().is_none())
        };
        for v in rec.volumes.iter().filter(|v| !v.name.is_empty()) {
            self.volume_mount(&v.name)?;
        }
        let todo: Vec<&crate::volume::VolumeMount> = rec
            .volumes
            .iter()
            .filter(|v| !v.nocopy && !v.name.is_empty() && empty(v))
            .collect();
        if !todo.is_empty() {
            let lease = self.lease_rootfs(rec)?;
            for v in todo {
                // Resolved inside the rootfs: a symlink in the image cannot point it outside.
                let Ok(dir) = lease.root.open_dir(&v.destination) else {
                    continue;
                };
                use std::os::fd::AsRawFd;
                let src = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
                crate::volume::copy_up(&src, std::path::Path::new(&v.source)).map_err(|e| {
                    ApiError::internal(format!(
                        "copy the image's {} into volume {}: {e}",
                        v.destination, v.name
                    ))
                })?;
            }
        }
        for v in rec.volumes.iter().filter(|v| !v.name.is_empty()) {
            self.emit_volume(&v.name, "mount", &volume_event_attrs(rec, v));
        }
        Ok(())
    }

    /// The namespaces `rec` joins for its `container:<name>` modes; the other container must
    /// be running, as in dockerd.
    fn namespace_joins(&self, rec: &Record) -> ApiResult<Vec<(&'static str, String)>> {
        let mut joins = Vec::new();
        for (key, kind, file, what) in [
            ("NetworkMode", "network", "net", "network"),
            ("IpcMode", "ipc", "ipc", "IPC"),
            ("PidMode", "pid", "pid", "PID"),
        ] {
            let mode = rec.host_config[key].as_str().unwrap_or_default();
            let Some(name) = super::options::container_ref(mode) else {
                continue;
            };
            let other = self.find(name)?;
            if !other.running() || other.state.pid == 0 {
                return Err(ApiError::conflict(if kind == "ipc" {
                    format!(
                        "can't join IPC of container {}: container {} is not running",
                        other.id, other.id
                    )
                } else {
                    format!(
                        "cannot join {what} of a non running container: {}",
                        other.id
                    )
                }));
            }
            joins.push((kind, format!("/proc/{}/ns/{file}", other.state.pid)));
            if kind == "network" {
                // Its hostname comes with its network, as in dockerd (and so its UTS).
                joins.push(("uts", format!("/proc/{}/ns/uts", other.state.pid)));
            }
        }
        Ok(joins)
    }

    /// Deletes the supervisor task and container of `id` (unmounts its rootfs).
    async fn cleanup_task(&self, id: &str) {
        let ns = self.sup.namespace.clone();
        let _ = self
            .sup
            .tasks()
            .delete(pb::DeleteTaskRequest {
                namespace: ns.clone(),
                container_id: id.to_string(),
                exec_id: String::new(),
                force: true,
            })
            .await;
        let _ = self
            .sup
            .containers()
            .delete(pb::DeleteContainerRequest {
                namespace: ns,
                id: id.to_string(),
            })
            .await;
    }

    /// The init of `id` exited with `status`: record it, clean the task up (after attached
    /// clients drained the output), remove the container if it asked for that.
    pub async fn on_exit(self: &Arc<Self>, id: &str, status: u32) {
        let Ok(rec) = self.update(id, |r| {
            if r.running() {
                r.state.status = "exited".into();
                r.state.exit_code = status as i64;
                r.state.pid = 0;
                r.state.finished_at = now();
                r.exits += 1;
                self.emit_die(r);
            }
        }) else {
            return;
        };
        // Attached clients get every byte before the task (and its shim, which holds the
        // output) goes: wait while they drain, for as long as they make progress. Only a
        // client that stops reading for ATTACH_STALL is left behind. attach_ended notifies,
        // so the `run --rm` path has no polling delay.
        let mut changes = self.subscribe();
        let mut seen = self.attach_state(id);
        let mut idle_since = tokio::time::Instant::now();
        while seen.live > 0 {
            let _ = tokio::time::timeout(Duration::from_millis(200), changes.changed()).await;
            let now = self.attach_state(id);
            if now.delivered != seen.delivered {
                idle_since = tokio::time::Instant::now();
            } else if idle_since.elapsed() >= ATTACH_STALL {
                tracing::warn!(container_id = %id, "attached client stopped reading: cleaning up");
                break;
            }
            seen = now;
        }
        self.endpoints_down(id).await;
        for v in rec.volumes.iter().filter(|v| !v.name.is_empty()) {
            self.volume_unmount_unused(&v.name, &rec.id);
            self.emit_volume(&v.name, "unmount", &[("container", rec.id.clone())]);
        }
        if rec.auto_remove() {
            // The removal cleans the task up too, after the container is gone from the API.
            let _ = self.remove(id, true).await;
        } else {
            self.cleanup_task(id).await;
            self.maybe_restart(id);
        }
    }

    /// Applies the restart policy after an exit: the container waits in `restarting` for
    /// the policy's delay (100 ms, doubling up to a minute, back to 100 ms once a run lasted
    /// 10 s), then starts again, unless a client stopped, killed or removed it meanwhile.
    pub fn maybe_restart(self: &Arc<Self>, id: &str) {
        let Ok(rec) = self.find(id) else { return };
        if rec.running() || rec.restarting() || rec.auto_remove() || !rec.policy_restarts(false) {
            return;
        }
        let ran = match (
            chrono::DateTime::parse_from_rfc3339(&rec.state.started_at),
            chrono::DateTime::parse_from_rfc3339(&rec.state.finished_at),
        ) {
            (Ok(a), Ok(b)) => (b - a).num_milliseconds(),
            _ => 0,
        };
        let mut backoff = if ran >= 10_000 {
            0
        } else {
            rec.restart_backoff_ms
        };
        backoff = match backoff {
            0 => 100,
            b if b < 60_000 => b * 2,
            b => b,
        }
        .min(60_000);
        if self
            .update(id, |r| {
                r.state.status = "restarting".into();
                r.restart_count += 1;
                r.restart_backoff_ms = backoff;
            })
            .is_err()
        {
            return;
        }
        let me = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(backoff)).await;
            match me.find(&id) {
                Ok(r) if r.restarting() && !r.manually_stopped => {}
                _ => return,
            }
            if let Err(e) = me.start(&id).await {
                tracing::warn!(container_id = %id, error = %e, "restart by policy failed");
                me.maybe_restart(&id);
            }
        });
    }

    /// Ends a pending policy restart (stop, kill, remove of a restarting container).
    fn cancel_restart(&self, id: &str) -> bool {
        let mut was = false;
        let _ = self.update(id, |r| {
            r.manually_stopped = true;
            if r.restarting() {
                r.state.status = "exited".into();
                was = true;
            }
        });
        was
    }

    /// Follows the supervisor's events for exits and OOMs, reconnecting when the stream breaks.
    pub async fn watch_events(self: Arc<Self>, ready: tokio::sync::oneshot::Sender<()>) {
        let mut ready = Some(ready);
        loop {
            let sub = self
                .sup
                .events()
                .subscribe(pb::SubscribeRequest {
                    namespace: self.sup.namespace.clone(),
                    topics: vec!["/tasks/exit".into(), "/tasks/oom".into()],
                })
                .await;
            if let Some(r) = ready.take() {
                let _ = r.send(());
            }
            if let Ok(stream) = sub {
                let mut stream = stream.into_inner();
                while let Ok(Some(ev)) = stream.message().await {
                    if !ev.exec_id.is_empty() {
                        continue;
                    }
                    match ev.topic.as_str() {
                        "/tasks/exit" => {
                            let me = self.clone();
                            tokio::spawn(async move {
                                me.on_exit(&ev.container_id, ev.exit_status).await
                            });
                        }
                        "/tasks/oom" => {
                            self.emit_container_id(&ev.container_id, "oom", &[]);
                            let _ = self.update(&ev.container_id, |r| r.state.oom_killed = true);
                        }
                        _ => {}
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// After a restart: containers recorded as running are checked against the supervisor.
    pub async fn reconcile(self: &Arc<Self>) {
        self.finish_interrupted_removals().await;
        for rec in self.list() {
            if rec.state.status == "removing" {
                let _ = self.remove(&rec.id, true).await;
                continue;
            }
            // A restart policy's delay cut short by the restart of berthd: the boot pass
            // below decides again.
            if rec.restarting() {
                let _ = self.update(&rec.id, |r| r.state.status = "exited".into());
                continue;
            }
            if !rec.running() {
                continue;
            }
            let task = self
                .sup
                .tasks()
                .get(pb::GetTaskRequest {
                    namespace: self.sup.namespace.clone(),
                    container_id: rec.id.clone(),
                    exec_id: String::new(),
                })
                .await;
            match task.map(|t| t.into_inner().process) {
                Ok(Some(p)) if p.status == types::Status::Stopped as i32 => {
                    self.on_exit(&rec.id, p.exit_status).await;
                }
                Ok(Some(p)) => {
                    let paused = p.status == types::Status::Paused as i32;
                    let _ = self.update(&rec.id, |r| {
                        r.state.status = if paused { "paused" } else { "running" }.into();
                        r.state.pid = p.pid;
                    });
                    self.start_health(&rec.id, true);
                }
                _ => self.on_exit(&rec.id, 137).await,
            }
        }
        // Networks as the records say, before any container starts again: DNS servers of
        // running containers, namespaces and rules of those that are gone.
        self.networks_restore().await;
        // Restart policies when berthd starts: `always` even after a manual stop,
        // `unless-stopped` unless stopped, `on-failure` after a failure, as dockerd does.
        for rec in self.list() {
            if rec.state.status == "exited"
                && rec.state.started_at != ZERO_TIME
                && rec.policy_restarts(true)
            {
                let me = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = me.start(&rec.id).await {
                        tracing::warn!(container_id = %rec.id, error = %e, "restart at boot failed");
                    }
                });
            }
        }
    }

    // ---- signals, stop, remove ---------------------------------------------------------

    pub async fn kill(&self, key: &str, signal: i32) -> ApiResult<()> {
        let rec = self.find(key)?;
        // A kill ends the restart policy's loop, as in dockerd.
        if self.cancel_restart(&rec.id) {
            return Ok(());
        }
        if !rec.running() {
            return Err(ApiError::conflict(format!(
                "Cannot kill container: {key}: Container {} is not running",
                rec.id
            )));
        }
        self.sup
            .tasks()
            .kill(pb::KillTaskRequest {
                namespace: self.sup.namespace.clone(),
                container_id: rec.id.clone(),
                exec_id: String::new(),
                signal: signal as u32,
                all: false,
            })
            .await?;
        self.emit_container(&rec, "kill", &[("signal", signal.to_string())]);
        Ok(())
    }

    /// Waits until `cond` holds for the container (or it is gone: `None`).
    pub async fn wait_for(
        &self,
        id: &str,
        timeout: Option<Duration>,
        cond: impl Fn(&Record) -> bool,
    ) -> Option<Record> {
        let mut rx = self.subscribe();
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let cur = self.lock().get(id).cloned();
            match cur {
                None => return None,
                Some(r) if cond(&r) => return Some(r),
                _ => {}
            }
            let changed = rx.changed();
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, changed).await.is_err() {
                        return self.lock().get(id).cloned();
                    }
                }
                None => {
                    if changed.await.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    /// `docker stop`: the stop signal, then SIGKILL after the timeout.
    pub async fn stop(
        &self,
        key: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> ApiResult<bool> {
        let rec = self.find(key)?;
        if self.cancel_restart(&rec.id) {
            self.emit_container_id(&rec.id, "stop", &[]);
            return Ok(true);
        }
        if !rec.running() {
            return Ok(false);
        }
        if rec.state.status == "paused" {
            let _ = self.resume(&rec.id).await;
        }
        let sig_name = signal
            .map(str::to_string)
            .or_else(|| rec.config["StopSignal"].as_str().map(str::to_string))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "SIGTERM".into());
        let sig = parse_signal(&sig_name)
            .ok_or_else(|| ApiError::bad_request(format!("Invalid signal: {sig_name}")))?;
        let secs = timeout
            .or_else(|| rec.config["StopTimeout"].as_i64())
            .unwrap_or(10);
        let _ = self.kill(&rec.id, sig).await;
        let exits = rec.exits;
        let stopped = |r: &Record| r.exits > exits || !r.running();
        let waited = if secs < 0 {
            self.wait_for(&rec.id, None, stopped).await
        } else {
            self.wait_for(&rec.id, Some(Duration::from_secs(secs as u64)), stopped)
                .await
        };
        if waited.is_some_and(|r| !stopped(&r)) {
            let _ = self.kill(&rec.id, 9).await;
            self.wait_for(&rec.id, Some(Duration::from_secs(10)), stopped)
                .await;
        }
        self.emit_container_id(&rec.id, "stop", &[]);
        Ok(true)
    }

    pub async fn pause(&self, key: &str) -> ApiResult<()> {
        let rec = self.find(key)?;
        if rec.state.status != "running" {
            return Err(ApiError::conflict(format!(
                "Container {} is not running",
                rec.id
            )));
        }
        self.sup
            .tasks()
            .pause(pb::PauseTaskRequest {
                namespace: self.sup.namespace.clone(),
                container_id: rec.id.clone(),
            })
            .await?;
        self.update(&rec.id, |r| r.state.status = "paused".into())?;
        self.emit_container(&rec, "pause", &[]);
        Ok(())
    }

    pub async fn resume(&self, key: &str) -> ApiResult<()> {
        let rec = self.find(key)?;
        if rec.state.status != "paused" {
            return Err(ApiError::conflict(format!(
                "Container {} is not paused",
                rec.id
            )));
        }
        self.sup
            .tasks()
            .resume(pb::ResumeTaskRequest {
                namespace: self.sup.namespace.clone(),
                container_id: rec.id.clone(),
            })
            .await?;
        self.update(&rec.id, |r| r.state.status = "running".into())?;
        self.emit_container(&rec, "unpause", &[]);
        Ok(())
    }

    /// `DELETE /containers/{id}`.
    pub async fn remove(self: &Arc<Self>, key: &str, force: bool) -> ApiResult<()> {
        let volumes = self.find(key).is_ok_and(|r| r.auto_remove());
        self.remove_with_volumes(key, force, volumes).await
    }

    /// `DELETE /containers/{id}?v=1`: the removal, and with `volumes` the container's
    /// anonymous volumes that no other container uses (`run --rm` does it too).
    pub async fn remove_with_volumes(
        self: &Arc<Self>,
        key: &str,
        force: bool,
        volumes: bool,
    ) -> ApiResult<()> {
        let rec = self.find(key)?;
        // An exit its policy restarts counts as restarting from the moment it is recorded
        // (the policy's timer starts after the cleanup), as dockerd sets it at once.
        let pending_restart = rec.state.status == "exited" && rec.policy_restarts(false);
        if rec.restarting() || pending_restart {
            if !force {
                return Err(ApiError::conflict(format!(
                    "cannot remove container \"{}\": container is restarting: stop the container before removing or force remove",
                    rec.name
                )));
            }
            self.cancel_restart(&rec.id);
        }
        if rec.running() {
            if !force {
                let what = if rec.state.status == "paused" {
                    "cannot remove a paused container"
                } else {
                    "container is running: stop the container before removing or force remove"
                };
                return Err(ApiError::conflict(format!(
                    "cannot remove container \"{}\": {what}",
                    rec.name
                )));
            }
            if rec.state.status == "paused" {
                let _ = self.resume(&rec.id).await;
            }
            let _ = self.kill(&rec.id, 9).await;
            let exits = rec.exits;
            self.wait_for(&rec.id, Some(Duration::from_secs(10)), |r| {
                r.exits > exits || !r.running()
            })
            .await;
        }
        self.endpoints_down(&rec.id).await;
        // Gone from the API at once, and durably: the container's directory becomes a
        // tombstone (one rename) in the same critical section, so a record can no longer be
        // written there and a crash from here on finishes the removal at the next start. The
        // task, the rootfs and the files go in the background (dockerd answers after them,
        // which makes DELETE wait for the runtime).
        {
            let mut map = self.lock();
            let Some(last) = map.remove(&rec.id) else {
                return Ok(()); // removed meanwhile
            };
            // A `wait?condition=removed` that wakes after the removal still gets the code.
            self.removing()
                .insert(rec.id.clone(), (rec.image_id.clone(), last.state.exit_code));
            if let Err(e) = std::fs::rename(self.container_dir(&rec.id), self.tombstone(&rec.id)) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    self.removing().remove(&rec.id);
                    map.insert(rec.id.clone(), last);
                    return Err(e.into());
                }
            }
        }
        self.emit_container(&rec, "destroy", &[]);
        if volumes {
            self.remove_anonymous_volumes(&rec.volumes);
        }
        self.notify();
        let me = Arc::clone(self);
        let id = rec.id.clone();
        tokio::spawn(async move { me.finish_removal(&id).await });
        Ok(())
    }

    /// Where a removed container's directory waits for its cleanup.
    fn tombstone(&self, id: &str) -> PathBuf {
        self.config
            .data_root
            .join("containers")
            .join(format!(".removing-{id}"))
    }

    fn removing(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, i64)>> {
        self.removing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The exit code of a container removed moments ago (its cleanup still running).
    pub fn removed_exit_code(&self, id: &str) -> Option<i64> {
        self.removing().get(id).map(|r| r.1)
    }

    /// The rest of a removal: the supervisor's task and container, the rootfs, the files.
    pub async fn finish_removal(&self, id: &str) {
        self.cleanup_task(id).await;
        if let Err(e) = self.images.remove_rootfs(id) {
            tracing::warn!(container_id = %id, error = %e, "remove rootfs");
        }
        // A rootfs lease (docker cp, export, a build step) still mounted in the directory,
        // whose user outlived the container, is let go first.
        let tomb = self.tombstone(id);
        if let Ok(entries) = std::fs::read_dir(&tomb) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("rootfs-") {
                    let _ = nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH);
                }
            }
        }
        match std::fs::remove_dir_all(&tomb) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(container_id = %id, error = %e, "remove container files"),
        }
        self.removing().remove(id);
        self.notify();
    }

    /// Waits (at most `timeout`) until the background cleanups of removed containers ended.
    pub async fn removals_settled(&self, timeout: Duration) {
        let mut changes = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.removing().is_empty() {
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                break;
            }
        }
    }

    /// Removals a crash interrupted (tombstones under `<data-root>/containers`): finished now.
    pub async fn finish_interrupted_removals(&self) {
        let Ok(entries) = std::fs::read_dir(self.config.data_root.join("containers")) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_prefix(".removing-") {
                self.finish_removal(id).await;
            }
        }
    }

    /// Whether any container uses the image (for image removal).
    pub fn image_in_use(&self, image_id: &str) -> bool {
        self.lock().values().any(|r| r.image_id == image_id)
            || self.removing().values().any(|(i, _)| i == image_id)
    }
}

pub(crate) struct OwnedSpecFiles {
    hosts: PathBuf,
    hostname: PathBuf,
    resolv: PathBuf,
    init: Option<PathBuf>,
}

impl OwnedSpecFiles {
    pub(crate) fn as_spec(&self) -> SpecFiles<'_> {
        SpecFiles {
            hosts: &self.hosts,
            hostname: &self.hostname,
            resolv: &self.resolv,
            init: self.init.as_deref(),
            user: None,
            joins: Vec::new(),
        }
    }
}

/// A container's filesystem held for reading or writing from berthd: the running
/// container's own root (`/proc/<pid>/root`, with its mounts), or its rootfs mounted under
/// its directory while the lease lives (shared by concurrent users, unmounted by the last).
pub struct RootfsLease {
    engine: Arc<Engine>,
    id: String,
    mounted: Option<PathBuf>,
    /// A read-only view of its own (not shared): unmounted when the lease goes.
    private: bool,
    pub root: super::archive::Root,
    /// The shared lease a private view with the volumes is made over (released after it).
    base: Option<Box<RootfsLease>>,
}

impl Engine {
    /// Leases `rec`'s filesystem (blocking: may mount).
    pub fn lease_rootfs(self: &Arc<Self>, rec: &Record) -> ApiResult<RootfsLease> {
        if rec.running() && rec.state.pid > 0 {
            let proc_root = PathBuf::from(format!("/proc/{}/root", rec.state.pid));
            if let Ok(root) = super::archive::Root::open(&proc_root) {
                return Ok(RootfsLease {
                    engine: self.clone(),
                    id: rec.id.clone(),
                    mounted: None,
                    private: false,
                    root,
                    base: None,
                });
            }
        }
        let dir = self.container_dir(&rec.id).join("rootfs-lease");
        let mut leases = self.rootfs_leases.lock().unwrap_or_else(|p| p.into_inner());
        let users = leases.entry(rec.id.clone()).or_insert(0);
        if *users == 0 {
            let m = self.images.prepare_rootfs(&rec.image_id, &rec.id)?;
            std::fs::create_dir_all(&dir)?;
            let data = m.options.join(",");
            nix::mount::mount(
                Some(m.source.as_str()),
                &dir,
                Some(m.kind.as_str()),
                nix::mount::MsFlags::empty(),
                Some(data.as_str()),
            )
            .map_err(|e| ApiError::internal(format!("mount the container's rootfs: {e}")))?;
        }
        *users += 1;
        drop(leases);
        match super::archive::Root::open(&dir) {
            Ok(root) => Ok(RootfsLease {
                engine: self.clone(),
                id: rec.id.clone(),
                mounted: Some(dir),
                private: false,
                root,
                base: None,
            }),
            Err(e) => {
                self.release_rootfs(&rec.id, &dir);
                Err(ApiError::internal(format!(
                    "open the container's rootfs: {e}"
                )))
            }
        }
    }

    /// Leases `rec`'s filesystem as `docker cp` sees it, with its volumes: a running
    /// container's through `/proc/<pid>/root`; a stopped one's as a private bind of its
    /// rootfs lease with each volume bound at its destination (opened inside the rootfs, so a
    /// symlink cannot move it outside), all gone with the lease.
    pub fn lease_rootfs_with_volumes(self: &Arc<Self>, rec: &Record) -> ApiResult<RootfsLease> {
        use nix::mount::{mount, MsFlags};
        let base = self.lease_rootfs(rec)?;
        let Some(base_dir) = base.mounted.clone().filter(|_| !rec.volumes.is_empty()) else {
            return Ok(base);
        };
        let dir = self.container_dir(&rec.id).join(format!(
            "rootfs-cp-{}",
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir)?;
        let fail = |what: &str, e: nix::Error| {
            let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(&dir);
            ApiError::internal(format!("{what}: {e}"))
        };
        mount(
            Some(&base_dir),
            &dir,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| fail("bind the container's rootfs", e))?;
        // Private: the volumes bound below must not show in the shared lease.
        mount(
            None::<&str>,
            &dir,
            None::<&str>,
            MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| fail("make the rootfs view private", e))?;
        let root = super::archive::Root::open(&dir)
            .map_err(|e| ApiError::internal(format!("open the rootfs: {e}")))?;
        for v in &rec.volumes {
            // The runtime makes mount points at start; a container that never ran lacks them.
            let Ok(fd) = root.make_dir(&v.destination) else {
                continue;
            };
            use std::os::fd::AsRawFd;
            let at = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
            mount(
                Some(v.source.as_str()),
                &at,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| fail("bind a volume", e))?;
            if !v.rw {
                mount(
                    None::<&str>,
                    &at,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                    None::<&str>,
                )
                .map_err(|e| fail("make a volume read-only", e))?;
            }
        }
        // A root opened after the volumes are in place sees them.
        let root = super::archive::Root::open(&dir)
            .map_err(|e| ApiError::internal(format!("open the rootfs: {e}")))?;
        Ok(RootfsLease {
            engine: self.clone(),
            id: rec.id.clone(),
            mounted: Some(dir),
            private: true,
            root,
            base: Some(Box::new(base)),
        })
    }

    /// Leases `rec`'s filesystem without its mounts (what export and commit read): for a
    /// running container a read-only overlay of its writable layer over the image's, else
    /// [`Engine::lease_rootfs`].
    pub fn lease_rootfs_view(self: &Arc<Self>, rec: &Record) -> ApiResult<RootfsLease> {
        if !(rec.running() && rec.state.pid > 0) {
            let mut stopped = rec.clone();
            stopped.state.pid = 0;
            return self.lease_rootfs(&stopped);
        }
        let m = self.images.prepare_rootfs(&rec.image_id, &rec.id)?;
        let upper = self.images.rootfs_upper(&rec.id);
        let lower = m
            .options
            .iter()
            .find_map(|o| o.strip_prefix("lowerdir="))
            .unwrap_or_default();
        let data = format!("lowerdir={}:{lower}", upper.display());
        let dir = self.container_dir(&rec.id).join(format!(
            "rootfs-view-{}",
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir)?;
        if let Err(e) = nix::mount::mount(
            Some("overlay"),
            &dir,
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(data.as_str()),
        ) {
            let _ = std::fs::remove_dir(&dir);
            return Err(ApiError::internal(format!(
                "mount the container's rootfs: {e}"
            )));
        }
        match super::archive::Root::open(&dir) {
            Ok(root) => Ok(RootfsLease {
                engine: self.clone(),
                id: rec.id.clone(),
                mounted: Some(dir),
                private: true,
                root,
                base: None,
            }),
            Err(e) => {
                let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
                let _ = std::fs::remove_dir(&dir);
                Err(ApiError::internal(format!("open the rootfs: {e}")))
            }
        }
    }

    fn release_rootfs(&self, id: &str, dir: &std::path::Path) {
        let mut leases = self.rootfs_leases.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(users) = leases.get_mut(id) {
            *users -= 1;
            if *users == 0 {
                leases.remove(id);
                let _ = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH);
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

impl std::fmt::Debug for RootfsLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootfsLease")
            .field("id", &self.id)
            .field("mounted", &self.mounted)
            .finish()
    }
}

impl RootfsLease {
    /// Where the filesystem is mounted (none for a running container's `/proc/<pid>/root`).
    pub fn path(&self) -> Option<&std::path::Path> {
        self.mounted.as_deref()
    }
}

impl Drop for RootfsLease {
    fn drop(&mut self) {
        match &self.mounted {
            Some(dir) if self.private => {
                let _ = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH);
                let _ = std::fs::remove_dir(dir);
            }
            Some(dir) => self.engine.release_rootfs(&self.id, dir),
            None => {}
        }
        // The shared lease under a private view goes after it.
        drop(self.base.take());
    }
}

/// A volume `mount` event's attributes, as dockerd sends them.
fn volume_event_attrs(rec: &Record, v: &crate::volume::VolumeMount) -> Vec<(&'static str, String)> {
    vec![
        ("container", rec.id.clone()),
        ("destination", v.destination.clone()),
        ("driver", "local".into()),
        ("propagation", String::new()),
        ("read/write", v.rw.to_string()),
    ]
}

/// A container's /etc/hosts, as dockerd writes it: loopback and the IPv6 names, a line per
/// address of its (`addresses`: the address and the container's aliases on that network, after
/// its hostname; `127.0.1.1` with its hostname when it has none), `links` lines, then the
/// `--add-host`s.
pub(crate) fn hosts_file(
    rec: &Record,
    addresses: &[(std::net::IpAddr, &[String])],
    links: &[String],
) -> String {
    let hostname = rec.config["Hostname"].as_str().unwrap_or(rec.short_id());
    let domain = rec.config["Domainname"].as_str().unwrap_or_default();
    let names = if domain.is_empty() {
        hostname.to_string()
    } else {
        format!("{hostname}.{domain} {hostname}")
    };
    let mut hosts = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for (ip, aliases) in addresses {
        let mut line = names.clone();
        for a in aliases.iter() {
            if !line.split(' ').any(|x| x == a) {
                line.push(' ');
                line.push_str(a);
            }
        }
        hosts.push_str(&format!("{ip}\t{line}\n"));
    }
    if addresses.is_empty() {
        hosts.push_str(&format!("127.0.1.1\t{names}\n"));
    }
    for l in links {
        hosts.push_str(l);
        hosts.push('\n');
    }
    push_extra_hosts(&mut hosts, rec);
    hosts
}

/// The `--add-host` lines (`name:addr`, or `name=addr`).
fn push_extra_hosts(hosts: &mut String, rec: &Record) {
    for e in rec.host_config["ExtraHosts"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let e = e.as_str().unwrap_or_default();
        let (name, addr) = e
            .split_once(':')
            .or_else(|| e.split_once('='))
            .unwrap_or((e, ""));
        hosts.push_str(&format!("{addr}\t{name}\n"));
    }
}
