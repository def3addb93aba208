//! Images pushed by another client (skopeo) pull back correctly: an OCI layout (OCI manifest,
//! gzip layer) and a `docker save` archive (Docker v2 schema 2). zstd and plain tar layers are
//! covered in pull_push.rs (skopeo 1.9 keeps the source's gzip).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::path::Path;
use std::process::Command;

use berth_registry::{PullOptions, RegistryStore};
use berth_tests::registry::Registry as TestRegistry;
use common::{client, rt};
use serde_json::json;

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn config(diff_id: &str) -> Vec<u8> {
    let mut c = common::base_config();
    c["rootfs"] = json!({"type": "layers", "diff_ids": [diff_id]});
    serde_json::to_vec(&c).unwrap()
}

/// An OCI image layout with one busybox layer, tagged `v1`.
fn oci_layout(dir: &Path, layer_tar: &[u8]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = berth_registry::sha256_digest(data);
        std::fs::write(blobs.join(&d[7..]), data).unwrap();
        (d, data.len())
    };
    let gz = gzip(layer_tar);
    let (ld, ls) = put(&gz);
    let cfg = config(&berth_registry::sha256_digest(layer_tar));
    let (cd, cs) = put(&cfg);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": ls}],
    }))
    .unwrap();
    let (md, ms) = put(&manifest);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": md, "size": ms,
                "annotations": {"org.opencontainers.image.ref.name": "v1"},
            }],
        }))
        .unwrap(),
    )
    .unwrap();
}

/// A `docker save` archive with one layer.
fn docker_archive(path: &Path, layer_tar: &[u8]) {
    let cfg = config(&berth_registry::sha256_digest(layer_tar));
    let cfg_name = format!("{}.json", &berth_registry::sha256_digest(&cfg)[7..]);
    let manifest = serde_json::to_vec(&json!([{
        "Config": cfg_name,
        "RepoTags": ["skopeo/docker:v1"],
        "Layers": ["layer0/layer.tar"],
    }]))
    .unwrap();
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, data) in [
        ("manifest.json", &manifest[..]),
        (cfg_name.as_str(), &cfg[..]),
        ("layer0/layer.tar", layer_tar),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).unwrap();
    }
    b.finish().unwrap();
}

fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo (apt-get install skopeo)");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn inspect_media_type(host: &str, repo_tag: &str) -> String {
    let out = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{host}/{repo_tag}"),
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers: Vec<String> = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_string())
        .collect();
    format!(
        "{} {}",
        v["mediaType"].as_str().unwrap_or("-"),
        layers.join(",")
    )
}

/// The pulled layer is the busybox tree, and its busybox runs.
fn check_busybox_layer(store: &berth_registry::DirStore, name: &str, src: &Path) {
    let img = store.image(name).unwrap().expect("pulled image");
    let layer = store.layer_path(&img.diff_ids[0]).unwrap();
    let want = common::tree(src);
    let got = common::tree(&layer);
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        want["bin/busybox"].split(' ').nth(1),
        got["bin/busybox"].split(' ').nth(1)
    );
    let out = Command::new(layer.join("bin/busybox"))
        .args(["echo", "pulled"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"pulled\n");
}

#[test]
fn images_pushed_by_skopeo_pull_back() {
    let reg = TestRegistry::start().unwrap();
    let host = reg.host();
    let rt = rt();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("rootfs");
    berth_tests::rootfs::populate(&src).unwrap();
    let layer_tar = berth_tests::tarball::tar_dir(&src).unwrap();

    let layout = work.path().join("layout");
    oci_layout(&layout, &layer_tar);
    let oci_src = format!("oci:{}:v1", layout.display());
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &oci_src,
        &format!("docker://{host}/skopeo/oci:v1"),
    ]);
    let archive = work.path().join("image.tar");
    docker_archive(&archive, &layer_tar);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        &format!("docker-archive:{}", archive.display()),
        &format!("docker://{host}/skopeo/docker:v1"),
    ]);

    assert!(inspect_media_type(&host, "skopeo/oci:v1").contains("tar+gzip"));
    let docker_types = inspect_media_type(&host, "skopeo/docker:v1");
    assert!(
        docker_types.starts_with("application/vnd.docker.distribution.manifest.v2+json"),
        "{docker_types}"
    );

    for repo in ["skopeo/oci:v1", "skopeo/docker:v1"] {
        let c = client();
        let name = format!("{host}/{repo}");
        let report = rt
            .block_on(
                c.registry
                    .pull(&name, &PullOptions::default(), &Default::default()),
            )
            .unwrap_or_else(|e| panic!("pull {name}: {e}"));
        assert_eq!(report.downloaded.len(), 1);
        check_busybox_layer(&c.store, &name, &src);
    }
}
