//! Reading a bundle's config.json and adapting it before libcontainer sees it.
//!
//! libcontainer reads `<bundle>/config.json` itself, so adaptations (a default
//! `linux.cgroupsPath`, capabilities the host cannot grant, systemd cgroup paths)
//! go into a shadow bundle: a rewritten config.json whose `root.path` is absolute,
//! handed to the builder in place of the user's bundle. After a successful create the
//! shadow moves into the container's state dir (`<root>/<id>/bundle`, deleted with it)
//! and stays the bundle libcontainer knows, because `exec` re-reads config.json from
//! there. The user's bundle and rootfs are remembered in `<root>/<id>/berth.json` for
//! `state` and `list`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::capabilities;

/// Name of our sidecar file in a container's state dir.
pub const SIDECAR: &str = "berth.json";

/// What `state`/`list` report that libcontainer's state does not hold.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sidecar {
    /// The bundle the caller gave (canonical).
    pub bundle: PathBuf,
    /// The container's root filesystem (canonical).
    pub rootfs: PathBuf,
}

impl Sidecar {
    /// Read the sidecar of a container dir, if present.
    pub fn load(container_dir: &Path) -> Option<Sidecar> {
        let data = fs::read(container_dir.join(SIDECAR)).ok()?;
        serde_json::from_slice(&data).ok()
    }

    /// Write it (temp file + rename, so readers never see half of it).
    pub fn save(&self, container_dir: &Path) -> Result<()> {
        let tmp = container_dir.join(format!(".{SIDECAR}.tmp"));
        fs::write(&tmp, serde_json::to_vec(self)?)
            .with_context(|| format!("write {}", tmp.display()))?;
        fs::rename(&tmp, container_dir.join(SIDECAR))
            .with_context(|| format!("rename {}", tmp.display()))?;
        Ok(())
    }
}

/// A bundle ready for libcontainer.
#[derive(Debug)]
pub struct PreparedBundle {
    /// The caller's bundle, canonical.
    pub original: PathBuf,
    /// The rootfs, canonical.
    pub rootfs: PathBuf,
    /// The shadow bundle dir when config.json had to be rewritten.
    pub shadow: Option<PathBuf>,
    /// The cgroups path the container will use.
    pub cgroups_path: PathBuf,
    /// The adapted spec.
    pub spec: Spec,
}

impl PreparedBundle {
    /// The bundle directory to hand to libcontainer.
    pub fn effective(&self) -> &Path {
        self.shadow.as_deref().unwrap_or(&self.original)
    }

    /// Remove the shadow bundle, if any (on failure paths).
    pub fn discard_shadow(&self) {
        if let Some(shadow) = &self.shadow {
            let _ = fs::remove_dir_all(shadow);
        }
    }

    /// After a successful create: move the shadow into the container dir, point the
    /// container's state at it and record the caller's bundle in the sidecar.
    pub fn adopt(
        &self,
        container: &mut libcontainer::container::Container,
        container_dir: &Path,
    ) -> Result<()> {
        if let Some(shadow) = &self.shadow {
            let dest = container_dir.join("bundle");
            fs::rename(shadow, &dest)
                .with_context(|| format!("move shadow bundle into {}", dest.display()))?;
            container.state.bundle = dest;
            container.save().context("save container state")?;
        }
        Sidecar {
            bundle: self.original.clone(),
            rootfs: self.rootfs.clone(),
        }
        .save(container_dir)
    }
}

/// Default cgroups path for a container without one (runc puts it under the
/// runtime's name too). Without it libcontainer would make `:youki:<id>` at the root.
pub fn default_cgroups_path(id: &str) -> PathBuf {
    PathBuf::from(format!("/berth/{id}"))
}

/// Map a systemd-style `slice:prefix:name` to a cgroupfs path (this build has no
/// systemd cgroup driver): `system.slice:docker:abc` becomes
/// `/system.slice/docker-abc.scope`, which is where systemd would put it.
pub fn systemd_path_to_cgroupfs(path: &str, id: &str) -> Option<PathBuf> {
    let parts: Vec<&str> = path.split(':').collect();
    if parts.len() != 3 {
        return None;
    }
    let slice = if parts[0].is_empty() {
        "system.slice"
    } else {
        parts[0]
    };
    let name = if parts[2].is_empty() { id } else { parts[2] };
    let unit = if name.ends_with(".slice") || name.ends_with(".scope") {
        name.to_string()
    } else if parts[1].is_empty() {
        format!("{name}.scope")
    } else {
        format!("{}-{name}.scope", parts[1])
    };
    Some(PathBuf::from(format!("/{slice}/{unit}")))
}

/// Decide the cgroups path; returns `(path, changed)`.
pub fn resolve_cgroups_path(
    current: Option<&Path>,
    id: &str,
    systemd_cgroup: bool,
) -> (PathBuf, bool) {
    match current {
        None => {
            if systemd_cgroup {
                (
                    PathBuf::from(format!("/system.slice/berth-{id}.scope")),
                    true,
                )
            } else {
                (default_cgroups_path(id), true)
            }
        }
        Some(p) if p.is_absolute() => (p.to_path_buf(), false),
        Some(p) => {
            let s = p.to_string_lossy();
            if let Some(mapped) = systemd_path_to_cgroupfs(&s, id) {
                (mapped, true)
            } else {
                // Relative cgroupfs paths are taken under the root, as runc does.
                (Path::new("/").join(p), true)
            }
        }
    }
}

/// `SCMP_CMP_MASKED_EQ` in the runtime spec (as runc reads it): `value` is the mask and
/// `valueTwo` the value compared with. libcontainer 0.7 hands them to libseccomp the other way
/// round, so Docker's `clone` rule (mask of the namespace flags, compared with 0) would refuse
/// every clone. The two are swapped here; true when anything changed.
fn masked_eq_for_libcontainer(spec: &mut Spec) -> bool {
    use oci_spec::runtime::LinuxSeccompOperator;
    let Some(mut linux) = spec.linux().clone() else {
        return false;
    };
    let Some(mut seccomp) = linux.seccomp().clone() else {
        return false;
    };
    let mut changed = false;
    let mut syscalls = seccomp.syscalls().clone().unwrap_or_default();
    for sc in syscalls.iter_mut() {
        let Some(mut args) = sc.args().clone() else {
            continue;
        };
        for a in args.iter_mut() {
            if a.op() == LinuxSeccompOperator::ScmpCmpMaskedEq {
                let (mask, value) = (a.value(), a.value_two().unwrap_or(0));
                if let Ok(swapped) = oci_spec::runtime::LinuxSeccompArgBuilder::default()
                    .index(a.index())
                    .value(value)
                    .value_two(mask)
                    .op(a.op())
                    .build()
                {
                    *a = swapped;
                    changed = true;
                }
            }
        }
        sc.set_args(Some(args));
    }
    if changed {
        seccomp.set_syscalls(Some(syscalls));
        linux.set_seccomp(Some(seccomp));
        spec.set_linux(Some(linux));
    }
    changed
}

/// Load and adapt `<bundle>/config.json`. Writes a shadow bundle under `shadow_parent`
/// when anything had to change.
pub fn prepare(
    bundle: &Path,
    id: &str,
    systemd_cgroup: bool,
    shadow_parent: &Path,
) -> Result<PreparedBundle> {
    let original =
        fs::canonicalize(bundle).with_context(|| format!("bundle {}", bundle.display()))?;
    let config = original.join("config.json");
    if !config.exists() {
        bail!("bundle {}: config.json does not exist", original.display());
    }
    let data = fs::read(&config).with_context(|| format!("read {}", config.display()))?;
    let mut spec: Spec = serde_json::from_slice(&data)
        .map_err(|e| anyhow::anyhow!("invalid {}: {e}", config.display()))?;

    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("invalid {}: no root", config.display()))?;
    let rootfs_raw = if root.path().is_absolute() {
        root.path().clone()
    } else {
        original.join(root.path())
    };
    let rootfs = fs::canonicalize(&rootfs_raw)
        .with_context(|| format!("rootfs {}", rootfs_raw.display()))?;

    let mut changed = false;
    let mut linux = spec.linux().clone().unwrap_or_default();
    let (cgroups_path, cg_changed) =
        resolve_cgroups_path(linux.cgroups_path().as_deref(), id, systemd_cgroup);
    if cg_changed {
        tracing::debug!(container_id = id, cgroups_path = %cgroups_path.display(), "cgroups path set");
        linux.set_cgroups_path(Some(cgroups_path.clone()));
        spec.set_linux(Some(linux));
        changed = true;
    }

    if masked_eq_for_libcontainer(&mut spec) {
        changed = true;
    }

    if let Some(mut process) = spec.process().clone() {
        if capabilities::filter_process_for_host(&mut process, id) {
            spec.set_process(Some(process));
            changed = true;
        }
    }

    let shadow = if changed {
        if let Some(mut root) = spec.root().clone() {
            root.set_path(rootfs.clone());
            spec.set_root(Some(root));
        }
        let dir = shadow_parent.join(format!(".bundle-{id}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        spec.save(dir.join("config.json"))
            .map_err(|e| anyhow::anyhow!("write adapted config.json: {e}"))?;
        Some(dir)
    } else {
        None
    };

    Ok(PreparedBundle {
        original,
        rootfs,
        shadow,
        cgroups_path,
        spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_path_defaults_and_systemd_mapping() {
        assert_eq!(
            resolve_cgroups_path(None, "c1", false),
            (PathBuf::from("/berth/c1"), true)
        );
        assert_eq!(
            resolve_cgroups_path(Some(Path::new("/docker/abc")), "abc", false),
            (PathBuf::from("/docker/abc"), false)
        );
        assert_eq!(
            resolve_cgroups_path(Some(Path::new("system.slice:docker:abc")), "abc", true),
            (PathBuf::from("/system.slice/docker-abc.scope"), true)
        );
        assert_eq!(
            resolve_cgroups_path(Some(Path::new("mygroup/c1")), "c1", false),
            (PathBuf::from("/mygroup/c1"), true)
        );
    }

    #[test]
    fn prepare_writes_shadow_with_absolute_rootfs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bundle = dir.path().join("b");
        fs::create_dir_all(bundle.join("rootfs")).expect("mkdir");
        let spec = Spec::default();
        spec.save(bundle.join("config.json")).expect("save");
        let state = dir.path().join("state");
        fs::create_dir_all(&state).expect("mkdir");
        let prepared = prepare(&bundle, "c1", false, &state).expect("prepare");
        let shadow = prepared.shadow.clone().expect("shadow");
        let written = Spec::load(shadow.join("config.json")).expect("load");
        assert!(written.root().as_ref().expect("root").path().is_absolute());
        assert_eq!(
            written
                .linux()
                .as_ref()
                .and_then(|l| l.cgroups_path().clone()),
            Some(PathBuf::from("/berth/c1"))
        );
        prepared.discard_shadow();
        assert!(!shadow.exists());
    }

    #[test]
    fn prepare_errors_are_clear() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err =
            prepare(&dir.path().join("nope"), "c1", false, dir.path()).expect_err("missing bundle");
        assert!(format!("{err:#}").contains("bundle"));
        fs::write(dir.path().join("config.json"), "{not json").expect("write");
        let err = prepare(dir.path(), "c1", false, dir.path()).expect_err("bad json");
        assert!(format!("{err:#}").contains("invalid"));
    }
}
