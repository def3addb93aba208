//! `spec`: write a default config.json like `runc spec` (`--rootless` adapts it).

use std::fs;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// runc 1.1's default spec (hostname changed), kept as runc prints it.
const DEFAULT_SPEC: &str = include_str!("spec_default.json");

/// The default spec text, ociVersion set to the version we implement.
pub fn default_spec_text() -> String {
    DEFAULT_SPEC.replacen(
        "\"ociVersion\": \"1.0.2-dev\"",
        &format!("\"ociVersion\": \"{}\"", oci_spec::runtime::VERSION),
        1,
    )
}

/// runc's `specconv.ToRootless`: a user namespace mapping our ids, no network
/// namespace, no cgroup mount or resources, sysfs bind-mounted, no gid= options.
pub fn make_rootless(spec: &mut Value, uid: u32, gid: u32) {
    if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
        ns.retain(|n| n["type"] != "network" && n["type"] != "user");
        ns.push(json!({"type": "user"}));
    }
    spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
    spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}]);
    if let Some(mounts) = spec["mounts"].as_array_mut() {
        mounts.retain(|m| m["type"] != "cgroup");
        for m in mounts.iter_mut() {
            if m["destination"] == "/sys" {
                *m = json!({"destination": "/sys", "type": "none", "source": "/sys",
                            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
                continue;
            }
            if let Some(opts) = m["options"].as_array_mut() {
                opts.retain(|o| !o.as_str().is_some_and(|s| s.starts_with("gid=")));
            }
        }
    }
    if let Some(linux) = spec["linux"].as_object_mut() {
        linux.remove("resources");
    }
}

/// Render JSON with tabs, as Go's `json.MarshalIndent(v, "", "\t")`.
fn to_tabbed_json(v: &Value) -> Result<String> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    serde::Serialize::serialize(v, &mut ser)?;
    Ok(String::from_utf8(out)?)
}

/// `berth-runtime spec [--bundle B] [--rootless]`.
pub fn spec(args: liboci_cli::Spec) -> Result<()> {
    let dir = args.bundle.clone().unwrap_or_else(|| PathBuf::from("."));
    let path = dir.join("config.json");
    if path.exists() {
        bail!("File {} exists. Remove it first", path.display());
    }
    let text = if args.rootless {
        let mut v: Value = serde_json::from_str(&default_spec_text())?;
        make_rootless(
            &mut v,
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        to_tabbed_json(&v)?
    } else {
        default_spec_text()
    };
    fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_parses_as_oci_spec() {
        let spec: oci_spec::runtime::Spec =
            serde_json::from_str(&default_spec_text()).expect("valid spec");
        assert_eq!(spec.hostname().as_deref(), Some("berth"));
        assert!(spec.version().starts_with("1."));
        assert_eq!(
            spec.process().as_ref().and_then(|p| p.args().clone()),
            Some(vec!["sh".to_string()])
        );
    }

    #[test]
    fn rootless_spec_maps_ids_and_drops_network() {
        let mut v: Value = serde_json::from_str(&default_spec_text()).expect("json");
        make_rootless(&mut v, 1000, 1000);
        let spec: oci_spec::runtime::Spec = serde_json::from_value(v.clone()).expect("spec");
        let ns: Vec<String> = v["linux"]["namespaces"]
            .as_array()
            .expect("ns")
            .iter()
            .map(|n| n["type"].as_str().unwrap_or_default().to_string())
            .collect();
        assert!(ns.contains(&"user".to_string()));
        assert!(!ns.contains(&"network".to_string()));
        assert_eq!(v["linux"]["uidMappings"][0]["hostID"], 1000);
        assert!(spec.linux().as_ref().expect("linux").resources().is_none());
    }
}
