//! OCI bundles on disk: a temp dir with `config.json` and a busybox `rootfs/`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use oci_spec::runtime::Spec;
use tempfile::TempDir;

use crate::rootfs;
use crate::spec::SpecBuilder;

/// An OCI bundle in a temp dir, removed on drop (after the [`crate::Runtime`] that ran it, if
/// the bundle is declared first in the test — Rust drops locals in reverse order).
#[derive(Debug)]
pub struct Bundle {
    dir: TempDir,
    spec: Spec,
}

impl Bundle {
    /// A bundle with a fresh busybox rootfs and the spec from `spec`.
    pub fn busybox(spec: SpecBuilder) -> Result<Bundle> {
        Self::busybox_in(std::env::temp_dir(), spec)
    }

    /// Like [`Bundle::busybox`], with the temp dir created under `parent`.
    pub fn busybox_in(parent: impl AsRef<Path>, spec: SpecBuilder) -> Result<Bundle> {
        let dir = tempfile::Builder::new()
            .prefix("berth-bundle-")
            .tempdir_in(parent)
            .context("create bundle dir")?;
        rootfs::populate(&dir.path().join("rootfs"))?;
        let bundle = Bundle {
            dir,
            spec: spec.build(),
        };
        bundle.write_spec()?;
        Ok(bundle)
    }

    /// The bundle directory (what `--bundle` takes).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The rootfs directory.
    pub fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }

    /// The `config.json` path.
    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.json")
    }

    /// The spec last written to `config.json`.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// `linux.cgroupsPath` of the spec, if any.
    pub fn cgroups_path(&self) -> Option<String> {
        self.spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.to_string_lossy().into_owned())
    }

    /// Replaces the spec and rewrites `config.json`.
    pub fn set_spec(&mut self, spec: SpecBuilder) -> Result<()> {
        self.spec = spec.build();
        self.write_spec()
    }

    /// Overwrites `config.json` with arbitrary bytes (for invalid-input tests).
    pub fn write_raw_config(&self, contents: &str) -> Result<()> {
        fs::write(self.config_path(), contents).context("write config.json")
    }

    /// Writes a process spec (`exec --process` input) for `args` into the bundle dir.
    pub fn write_process_json(&self, name: &str, args: &[&str]) -> Result<PathBuf> {
        let mut process = self.spec.process().clone().unwrap_or_default();
        process.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
        process.set_terminal(Some(false));
        let path = self.path().join(name);
        let json = serde_json::to_string_pretty(&process).context("serialize process")?;
        fs::write(&path, json).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    fn write_spec(&self) -> Result<()> {
        let json = serde_json::to_string_pretty(&self.spec).context("serialize spec")?;
        fs::write(self.config_path(), json).context("write config.json")
    }

    /// Keeps the bundle on disk after the test (for debugging) and returns its path.
    pub fn keep(self) -> PathBuf {
        self.dir.keep()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_has_config_and_rootfs() {
        let b = Bundle::busybox(SpecBuilder::new("b1").args(["true"])).unwrap();
        assert!(b.rootfs().join("bin/sh").exists());
        let spec = Spec::load(b.config_path()).unwrap();
        assert_eq!(
            spec.process().as_ref().unwrap().args().as_ref().unwrap(),
            &["true"]
        );
        assert_eq!(b.cgroups_path().as_deref(), Some("/berth-test/b1"));
        let p = b.write_process_json("p.json", &["echo", "x"]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&fs::read(p).unwrap()).unwrap();
        assert_eq!(v["args"], serde_json::json!(["echo", "x"]));
        assert_eq!(v["cwd"], "/");
    }
}
