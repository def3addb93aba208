//! The volume service: create, inspect, list, remove, prune; a container's volumes resolved at
//! create (named, anonymous, image-declared, `--volumes-from`), filled from the image at first
//! mount (copy-up), and its anonymous ones removed with it on request.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{valid_name, Volume, ANONYMOUS_LABEL};
use crate::error::{ApiError, ApiResult};
use crate::Engine;

/// One volume (or, through `--volumes-from`, a host bind) of a container, resolved at create.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeMount {
    /// The volume's name; empty for a bind taken over from `--volumes-from`.
    pub name: String,
    /// The host path bound (the volume's `_data`).
    pub source: String,
    pub destination: String,
    pub rw: bool,
    /// Not filled from the image at first mount (`nocopy`, `volume-nocopy`).
    #[serde(default)]
    pub nocopy: bool,
    /// The mode as given (`-v name:/p:ro,nocopy`), shown by inspect.
    #[serde(default)]
    pub mode: String,
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("get {name}: no such volume"))
}

fn io(e: std::io::Error) -> ApiError {
    ApiError::internal(e.to_string())
}

impl Engine {
    fn volumes_dir(&self) -> PathBuf {
        self.config.data_root.join("volumes")
    }

    /// The directory containers see of volume `name`.
    pub fn volume_path(&self, name: &str) -> PathBuf {
        self.volumes_dir().join(name).join("_data")
    }

    /// A volume by name.
    pub fn volume_get(&self, name: &str) -> ApiResult<Volume> {
        if !valid_name(name) {
            return Err(not_found(name));
        }
        let data = std::fs::read(self.volumes_dir().join(name).join("volume.json"))
            .map_err(|_| not_found(name))?;
        serde_json::from_slice(&data).map_err(|e| ApiError::internal(e.to_string()))
    }

    /// Every volume, by name.
    pub fn volume_list(&self) -> Vec<Volume> {
        let mut out: Vec<Volume> = std::fs::read_dir(self.volumes_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| self.volume_get(&e.file_name().to_string_lossy()).ok())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Removes volume directories a crash left without their record (at berthd start).
    pub fn volumes_cleanup(&self) {
        for e in std::fs::read_dir(self.volumes_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            if !e.path().join("volume.json").exists() {
                tracing::info!(volume = %e.file_name().to_string_lossy(), "removing a half-made volume");
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// `POST /volumes/create` (and `-v name:/p` of a missing volume): an existing volume of
    /// that name is returned as it is, as dockerd does.
    pub fn volume_create(
        &self,
        name: Option<&str>,
        driver: &str,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> ApiResult<Volume> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => crate::container::new_id(),
        };
        if !valid_name(&name) {
            return Err(ApiError::bad_request(format!(
                "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
            )));
        }
        if !driver.is_empty() && driver != "local" {
            return Err(ApiError::not_found(format!(
                "error looking up volume plugin {driver}: plugin \"{driver}\" not found"
            )));
        }
        // The local driver's options, as dockerd takes them: mount(2)'s source, type and
        // options, applied when a container first mounts the volume.
        for k in options.keys() {
            if !["type", "device", "o"].contains(&k.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "create {name}: invalid option key: {k:?}"
                )));
            }
        }
        if !options.is_empty()
            && (options.get("type").is_none_or(String::is_empty)
                || options.get("device").is_none_or(String::is_empty))
        {
            return Err(ApiError::bad_request(format!(
                "create {name}: missing required option: \"type\" and \"device\" go together"
            )));
        }
        if let Ok(v) = self.volume_get(&name) {
            return Ok(v);
        }
        let dir = self.volumes_dir().join(&name);
        std::fs::create_dir_all(dir.join("_data")).map_err(io)?;
        let v = Volume {
            name: name.clone(),
            driver: "local".into(),
            // The local driver's RFC 3339 with seconds, as dockerd's.
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            labels,
            options,
        };
        // The record last: a directory without it is a half-made volume (removed at start).
        crate::container::save_json(&dir, "volume.json", &v).map_err(io)?;
        self.emit_volume(&v.name, "create", &[("driver", "local".into())]);
        Ok(v)
    }

    /// The containers (any state) that use volume `name`.
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        self.list()
            .into_iter()
            .filter(|r| r.volumes.iter().any(|m| m.name == name))
            .map(|r| r.id)
            .collect()
    }

    /// `DELETE /volumes/{name}`: refused while a container uses it (409), as dockerd.
    pub fn volume_remove(&self, name: &str, force: bool) -> ApiResult<()> {
        if self.volume_get(name).is_err() {
            return if force { Ok(()) } else { Err(not_found(name)) };
        }
        let users = self.volume_users(name);
        if !users.is_empty() {
            return Err(ApiError::conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        let dir = self.volumes_dir().join(name);
        let data = dir.join("_data");
        if is_mount_point(&data) {
            let _ = nix::mount::umount2(&data, nix::mount::MntFlags::MNT_DETACH);
        }
        // The record first: a crash in the middle leaves a half-made volume, removed at start.
        std::fs::remove_file(dir.join("volume.json")).map_err(io)?;
        std::fs::remove_dir_all(&dir).map_err(io)?;
        self.emit_volume(name, "destroy", &[("driver", "local".into())]);
        Ok(())
    }

    /// Bytes under a volume's data.
    pub fn volume_size(&self, name: &str) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(md) = std::fs::symlink_metadata(p) else {
                return 0;
            };
            if md.is_dir() {
                std::fs::read_dir(p)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| walk(&e.path()))
                    .sum()
            } else {
                md.len()
            }
        }
        walk(&self.volume_path(name))
    }

    pub(crate) fn emit_volume(&self, name: &str, action: &str, extra: &[(&str, String)]) {
        let mut attributes = BTreeMap::new();
        for (k, v) in extra {
            attributes.insert((*k).to_string(), v.clone());
        }
        self.events.publish(crate::events::Message::new(
            "volume",
            action,
            crate::events::Actor {
                id: name.to_string(),
                attributes,
            },
        ));
    }

    /// The volumes of a new container: `-v name:/p`, `--mount type=volume`, `-v /p` and the
    /// image's VOLUME paths (anonymous, unless something else is mounted there), and
    /// `--volumes-from`. Missing named volumes are made.
    pub(crate) fn resolve_volumes(
        &self,
        host_config: &Value,
        config: &Value,
        image_volumes: &Value,
    ) -> ApiResult<Vec<VolumeMount>> {
        let mut out: Vec<VolumeMount> = Vec::new();
        // Destinations taken by binds and tmpfs mounts (they win over anonymous volumes).
        let mut taken: BTreeSet<String> = BTreeSet::new();
        let clean = |p: &str| {
            let t = p.trim_end_matches('/');
            if t.is_empty() {
                "/".to_string()
            } else {
                t.to_string()
            }
        };
        let add = |m: VolumeMount, out: &mut Vec<VolumeMount>| -> ApiResult<()> {
            if out.iter().any(|o| o.destination == m.destination) {
                return Err(ApiError::bad_request(format!(
                    "Duplicate mount point: {}",
                    m.destination
                )));
            }
            out.push(m);
            Ok(())
        };
        for b in host_config["Binds"].as_array().into_iter().flatten() {
            let s = b.as_str().unwrap_or_default();
            let parts: Vec<&str> = s.split(':').collect();
            if parts.len() < 2 {
                continue;
            }
            if parts[0].starts_with('/') {
                taken.insert(clean(parts[1]));
                continue;
            }
            if parts.len() > 3 || !parts[1].starts_with('/') {
                return Err(ApiError::bad_request(format!(
                    "invalid volume specification: '{s}'"
                )));
            }
            let name = parts[0];
            if !valid_name(name) {
                return Err(ApiError::bad_request(format!(
                    "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
                )));
            }
            let mode = parts.get(2).copied().unwrap_or_default();
            let mut rw = true;
            let mut nocopy = false;
            for o in mode.split(',').filter(|o| !o.is_empty()) {
                match o {
                    "ro" => rw = false,
                    "rw" | "z" | "Z" => {}
                    "nocopy" => nocopy = true,
                    _ => return Err(ApiError::bad_request(format!("invalid mode: {mode}"))),
                }
            }
            self.volume_create(Some(name), "local", BTreeMap::new(), BTreeMap::new())?;
            add(
                VolumeMount {
                    name: name.into(),
                    source: self.volume_path(name).to_string_lossy().into_owned(),
                    destination: clean(parts[1]),
                    rw,
                    nocopy,
                    mode: if mode.is_empty() {
                        "z".into()
                    } else {
                        mode.into()
                    },
                },
                &mut out,
            )?;
        }
        for m in host_config["Mounts"].as_array().into_iter().flatten() {
            let target = clean(m["Target"].as_str().unwrap_or_default());
            match m["Type"].as_str().unwrap_or_default() {
                "volume" => {}
                _ => {
                    taken.insert(target);
                    continue;
                }
            }
            if !target.starts_with('/') {
                return Err(ApiError::bad_request(format!(
                    "invalid mount config for type \"volume\": invalid mount path: '{target}' mount path must be absolute"
                )));
            }
            let opts = &m["VolumeOptions"];
            let driver = opts["DriverConfig"]["Name"].as_str().unwrap_or_default();
            let driver_opts = crate::string_map(&opts["DriverConfig"]["Options"]);
            let mut labels = crate::string_map(&opts["Labels"]);
            let source = m["Source"].as_str().unwrap_or_default();
            if source.is_empty() {
                labels.insert(ANONYMOUS_LABEL.into(), String::new());
            }
            let v = self.volume_create(
                Some(source).filter(|s| !s.is_empty()),
                driver,
                labels,
                driver_opts,
            )?;
            let rw = !m["ReadOnly"].as_bool().unwrap_or(false);
            add(
                VolumeMount {
                    source: self.volume_path(&v.name).to_string_lossy().into_owned(),
                    name: v.name,
                    destination: target,
                    rw,
                    nocopy: opts["NoCopy"].as_bool().unwrap_or(false),
                    mode: String::new(),
                },
                &mut out,
            )?;
        }
        if let Some(t) = host_config["Tmpfs"].as_object() {
            taken.extend(t.keys().map(|k| clean(k)));
        }
        // --volumes-from: the other container's volumes and binds, `:ro` or `:rw` for all.
        for vf in host_config["VolumesFrom"].as_array().into_iter().flatten() {
            let spec = vf.as_str().unwrap_or_default();
            let (name, mode) = match spec.rsplit_once(':') {
                Some((n, m)) if m == "ro" || m == "rw" => (n, Some(m)),
                Some(_) => {
                    return Err(ApiError::bad_request(format!(
                        "invalid mode for volumes-from: {spec}"
                    )))
                }
                None => (spec, None),
            };
            let other = self.find(name)?;
            for m in &other.volumes {
                let mut m = m.clone();
                if let Some(mode) = mode {
                    m.rw = mode == "rw";
                }
                add(m, &mut out)?;
            }
            for b in other.host_config["Binds"].as_array().into_iter().flatten() {
                let s = b.as_str().unwrap_or_default();
                let parts: Vec<&str> = s.split(':').collect();
                if parts.len() < 2 || !parts[0].starts_with('/') {
                    continue;
                }
                let ro = parts
                    .get(2)
                    .is_some_and(|o| o.split(',').any(|x| x == "ro"));
                add(
                    VolumeMount {
                        name: String::new(),
                        source: parts[0].into(),
                        destination: clean(parts[1]),
                        rw: match mode {
                            Some(m) => m == "rw",
                            None => !ro,
                        },
                        nocopy: true,
                        mode: parts.get(2).copied().unwrap_or_default().into(),
                    },
                    &mut out,
                )?;
            }
        }
        // Anonymous volumes: `-v /p` (Config.Volumes) and the image's VOLUME paths.
        let mut anon: Vec<String> = Vec::new();
        for vols in [&config["Volumes"], image_volumes] {
            for k in vols.as_object().into_iter().flat_map(|o| o.keys()) {
                let p = clean(k);
                if !p.starts_with('/') {
                    return Err(ApiError::bad_request(format!(
                        "invalid mount config: invalid mount path: '{k}' mount path must be absolute"
                    )));
                }
                if !anon.contains(&p) {
                    anon.push(p);
                }
            }
        }
        for p in anon {
            if taken.contains(&p) || out.iter().any(|m| m.destination == p) {
                continue;
            }
            let mut labels = BTreeMap::new();
            labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
            let v = self.volume_create(None, "local", labels, BTreeMap::new())?;
            out.push(VolumeMount {
                source: self.volume_path(&v.name).to_string_lossy().into_owned(),
                name: v.name,
                destination: p,
                rw: true,
                nocopy: false,
                mode: String::new(),
            });
        }
        Ok(out)
    }

    /// Mounts a volume made with `-o type=... -o device=... -o o=...` on its data directory
    /// (once: a volume already mounted stays as it is).
    pub(crate) fn volume_mount(&self, name: &str) -> ApiResult<()> {
        let v = self.volume_get(name)?;
        if v.options.is_empty() {
            return Ok(());
        }
        let path = self.volume_path(name);
        if is_mount_point(&path) {
            return Ok(());
        }
        let (flags, data) = mount_options(v.options.get("o").map(String::as_str).unwrap_or(""));
        let kind = v.options.get("type").map(String::as_str).unwrap_or("none");
        let device = v.options.get("device").map(String::as_str).unwrap_or("");
        nix::mount::mount(
            Some(device),
            &path,
            (kind != "none").then_some(kind),
            flags,
            (!data.is_empty()).then_some(data.as_str()),
        )
        .map_err(|e| {
            ApiError::internal(format!(
                "error while mounting volume '{}': failed to mount local volume: mount {device}:{} , flags: {:#x}, data: {data}: {e}",
                path.display(),
                path.display(),
                flags.bits()
            ))
        })
    }

    /// Unmounts a volume with mount options when no running container uses it any more.
    pub(crate) fn volume_unmount_unused(&self, name: &str, leaving: &str) {
        let Ok(v) = self.volume_get(name) else { return };
        if v.options.is_empty() {
            return;
        }
        let in_use = self
            .list()
            .iter()
            .any(|r| r.id != leaving && r.running() && r.volumes.iter().any(|m| m.name == name));
        let path = self.volume_path(name);
        if !in_use && is_mount_point(&path) {
            if let Err(e) = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH) {
                tracing::warn!(volume = %name, error = %e, "unmount volume");
            }
        }
    }

    /// Removes the anonymous volumes of a removed container that no other container uses.
    pub(crate) fn remove_anonymous_volumes(&self, mounts: &[VolumeMount]) {
        for m in mounts.iter().filter(|m| !m.name.is_empty()) {
            if self.volume_get(&m.name).is_ok_and(|v| v.anonymous()) {
                if let Err(e) = self.volume_remove(&m.name, true) {
                    tracing::warn!(volume = %m.name, error = %e, "remove anonymous volume");
                }
            }
        }
    }
}

/// Whether `path` is a mount point (in berthd's mount namespace).
fn is_mount_point(path: &Path) -> bool {
    let want = path.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_ref()))
}

/// The `o` option of the local driver: mount(2) flags and the rest as data.
fn mount_options(o: &str) -> (nix::mount::MsFlags, String) {
    use nix::mount::MsFlags;
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for opt in o.split(',').filter(|x| !x.is_empty()) {
        match opt {
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags &= !MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

/// Docker's copy-up: fills an empty volume directory `dst` from `src` (the image's content
/// at the mount point), keeping owners, modes and symlinks; `dst` itself takes `src`'s
/// owner and mode.
pub fn copy_up(src: &Path, dst: &Path) -> std::io::Result<()> {
    // Followed: `src` is a `/proc/self/fd/N` link to a directory opened inside the rootfs.
    let md = std::fs::metadata(src)?;
    if !md.is_dir() {
        return Ok(());
    }
    if std::fs::read_dir(dst)?.next().is_some() {
        return Ok(());
    }
    copy_tree(src, dst)?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
    nix::unistd::chown(
        dst,
        Some(nix::unistd::Uid::from_raw(md.uid())),
        Some(nix::unistd::Gid::from_raw(md.gid())),
    )?;
    Ok(())
}

fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let from = e.path();
        let to = dst.join(e.file_name());
        let md = std::fs::symlink_metadata(&from)?;
        let ft = md.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&to)?;
            copy_tree(&from, &to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to)?;
        } else {
            // Devices, fifos, sockets: left out, as they carry no data.
            continue;
        }
        let own = (
            Some(nix::unistd::Uid::from_raw(md.uid())),
            Some(nix::unistd::Gid::from_raw(md.gid())),
        );
        std::os::unix::fs::lchown(&to, own.0.map(|u| u.as_raw()), own.1.map(|g| g.as_raw()))?;
        if !ft.is_symlink() {
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        }
    }
    Ok(())
}
