//! Root tests of the image store: real layers unpacked with overlay whiteouts, real overlay
//! mounts of containers' rootfs, archives round-tripped (and checked by skopeo when present).

#![allow(clippy::unwrap_used)] // test helpers panic with context on failure

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_image::{Error, ImageStore, ImportOptions, Removed};
use berth_tests::skip_unless_root;
use berth_tests::tarball::{sha256_digest, Layer};
use serde_json::json;

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn mount(m: &berth_image::RootfsMount, at: &Path) -> Mounted {
    std::fs::create_dir_all(at).unwrap();
    let data = m.options.join(",");
    nix::mount::mount(
        Some(m.source.as_str()),
        at,
        Some(m.kind.as_str()),
        nix::mount::MsFlags::empty(),
        Some(data.as_str()),
    )
    .unwrap_or_else(|e| panic!("mount overlay {data}: {e}"));
    Mounted(at.to_path_buf())
}

fn busybox_import(store: &ImageStore, tag: &str) -> berth_image::Image {
    let layer = Layer::busybox().unwrap();
    store
        .import(
            &layer.bytes[..],
            &ImportOptions {
                reference: Some(tag.into()),
                changes: vec![r#"CMD ["sh"]"#.into(), "ENV PATH=/bin".into()],
                message: "busybox for tests".into(),
                ..Default::default()
            },
        )
        .unwrap()
}

/// A tar layer built entry by entry (whiteouts, hard links: what `tar_dir` of a tree can't say).
fn tar_layer(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    b.into_inner().unwrap()
}

fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, path, data).unwrap();
}

fn dir(b: &mut tar::Builder<Vec<u8>>, path: &str) {
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o755);
    h.set_entry_type(tar::EntryType::Directory);
    b.append_data(&mut h, path, std::io::empty()).unwrap();
}

fn hardlink(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Link);
    b.append_link(&mut h, path, target).unwrap();
}

/// A `docker save`-style archive (manifest.json + blobs) of the given layer tars.
fn docker_archive(layers: &[Vec<u8>], tag: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| json!({"created_by": "test"})).collect::<Vec<_>>(),
    }))
    .unwrap();
    let config_digest = sha256_digest(&config);
    let mut b = tar::Builder::new(Vec::new());
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    file(
        &mut b,
        &format!("blobs/sha256/{}", hex(&config_digest)),
        &config,
    );
    for (l, d) in layers.iter().zip(&diff_ids) {
        file(&mut b, &format!("blobs/sha256/{}", hex(d)), l);
    }
    let manifest = json!([{
        "Config": format!("blobs/sha256/{}", hex(&config_digest)),
        "RepoTags": [tag],
        "Layers": diff_ids.iter().map(|d| format!("blobs/sha256/{}", hex(d))).collect::<Vec<_>>(),
    }]);
    file(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    b.into_inner().unwrap()
}

#[test]
#[ignore = "needs root: overlay mounts and device-node whiteouts"]
fn imported_busybox_mounts_as_a_writable_rootfs_and_is_removed_with_the_container() {
    skip_unless_root!();
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("image")).unwrap();
    let img = busybox_import(&store, "bb:test");
    assert_eq!(img.repo_tags, vec!["bb:test"]);
    assert_eq!(img.diff_ids.len(), 1);
    assert!(img.size > 100_000, "{}", img.size);
    assert_eq!(img.raw_config["config"]["Cmd"], json!(["sh"]));
    // Every way of naming it.
    for r in [
        "bb:test",
        "docker.io/library/bb:test",
        img.id.as_str(),
        &img.id[7..19],
    ] {
        assert_eq!(store.get(r).unwrap().id, img.id, "{r}");
    }
    // As dockerd: the message names the normalized reference, tag included. (Not a name of
    // hex digits only: that is also an id prefix, which the random id may start with.)
    assert!(
        matches!(store.get("nosuch"), Err(Error::NotFound(m)) if m == "No such image: nosuch:latest")
    );
    assert!(matches!(
        store.get("Bad:Ref"),
        Err(Error::NotFound(_)) | Err(Error::InvalidArgument(_))
    ));

    let m = store.prepare_rootfs(&img.id, "c1").unwrap();
    let at = tmp.path().join("rootfs");
    let mounted = mount(&m, &at);
    assert!(at.join("bin/busybox").is_file());
    std::fs::write(at.join("written-by-container"), "x").unwrap();
    drop(mounted);
    assert!(store
        .rootfs_upper("c1")
        .join("written-by-container")
        .is_file());
    let du = store.disk_usage().unwrap();
    assert!(du.layers_size >= img.size);
    assert!(du.containers.iter().any(|(c, s)| c == "c1" && *s >= 1));

    // The image is in use by c1: removal is refused, unless forced (then only untagged).
    let used = |id: &str| id == img.id;
    let err = store.remove("bb:test", false, false, &used).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    store.remove_rootfs("c1").unwrap();
    store.remove_rootfs("c1").unwrap();
    assert!(!store.rootfs_upper("c1").exists());
    let removed = store.remove("bb:test", false, false, &|_| false).unwrap();
    assert_eq!(removed[0], Removed::Untagged("bb:test".into()));
    assert!(removed.contains(&Removed::Deleted(img.id.clone())));
    assert!(store.list().unwrap().is_empty());
    assert_eq!(store.disk_usage().unwrap().layers_size, 0);
}

#[test]
#[ignore = "needs root: device-node whiteouts, trusted xattrs, overlay mounts"]
fn layers_with_whiteouts_opaque_dirs_and_hard_links_stack_correctly() {
    skip_unless_root!();
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("image")).unwrap();
    let base = tar_layer(|b| {
        dir(b, "etc/");
        file(b, "etc/keep", b"keep");
        file(b, "etc/gone", b"gone");
        dir(b, "opaque/");
        file(b, "opaque/old", b"old");
        file(b, "data", b"shared bytes");
        hardlink(b, "data-link", "data");
    });
    let top = tar_layer(|b| {
        dir(b, "etc/");
        file(b, "etc/.wh.gone", b"");
        dir(b, "opaque/");
        file(b, "opaque/.wh..wh..opq", b"");
        file(b, "opaque/new", b"new");
    });
    let loaded = store
        .load(&docker_archive(&[base, top], "layered:v1")[..])
        .unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].repo_tags, vec!["layered:v1"]);
    let m = store.prepare_rootfs(&loaded[0].id, "c2").unwrap();
    let at = tmp.path().join("rootfs");
    let _mounted = mount(&m, &at);
    assert_eq!(
        std::fs::read_to_string(at.join("etc/keep")).unwrap(),
        "keep"
    );
    assert!(!at.join("etc/gone").exists(), "whiteout hides etc/gone");
    assert!(
        !at.join("opaque/old").exists(),
        "opaque dir hides the lower content"
    );
    assert_eq!(
        std::fs::read_to_string(at.join("opaque/new")).unwrap(),
        "new"
    );
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (
        std::fs::metadata(at.join("data")).unwrap(),
        std::fs::metadata(at.join("data-link")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "hard link kept");
    assert_eq!(a.nlink(), 2);
}

#[test]
#[ignore = "needs root: device-node whiteouts in unpacked layers"]
fn save_then_load_keeps_ids_tags_and_bytes() {
    skip_unless_root!();
    let tmp = tempfile::tempdir().unwrap();
    let a = ImageStore::open(&tmp.path().join("a")).unwrap();
    let img = busybox_import(&a, "bb:saved");
    a.tag("bb:saved", "other/name:v2").unwrap();
    let archive = tmp.path().join("saved.tar");
    let mut f = std::fs::File::create(&archive).unwrap();
    a.save(&["bb:saved".into(), "other/name:v2".into()], &mut f)
        .unwrap();
    f.flush().unwrap();

    // Real tools read it both ways, when installed.
    if Path::new("/usr/bin/skopeo").exists() {
        // Two images in one archive: name the one to read.
        for (transport, name) in [("docker-archive", "bb:saved"), ("oci-archive", "saved")] {
            let out = Command::new("skopeo")
                .args(["inspect", "--raw"])
                .arg(format!("{transport}:{}:{name}", archive.display()))
                .output()
                .unwrap();
            assert!(out.status.success(), "skopeo {transport}: {out:?}");
        }
    }

    let b = ImageStore::open(&tmp.path().join("b")).unwrap();
    let loaded = b.load(std::fs::File::open(&archive).unwrap()).unwrap();
    assert_eq!(loaded.len(), 2);
    assert!(loaded.iter().all(|l| l.id == img.id));
    let back = b.get("bb:saved").unwrap();
    assert_eq!(back.id, img.id);
    assert_eq!(back.diff_ids, img.diff_ids);
    assert_eq!(b.get("other/name:v2").unwrap().id, img.id);
    assert_eq!(
        b.config_blob(&img.id).unwrap(),
        a.config_blob(&img.id).unwrap()
    );
    // History and size survive too.
    assert_eq!(back.size, img.size);
    let h = b.history("bb:saved").unwrap();
    assert_eq!(h[0].id, img.id);
    assert_eq!(h[0].comment, "busybox for tests");
}

#[test]
#[ignore = "needs root: unpacks layers"]
fn bad_archives_are_refused_and_store_nothing() {
    skip_unless_root!();
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("image")).unwrap();
    let good = tar_layer(|b| file(b, "hello", b"hello"));
    let mut archive = docker_archive(&[good], "bad:one");
    // Flip one byte of the layer's content inside the archive: its diff id no longer matches.
    let pos = archive
        .windows(5)
        .position(|w| w == b"hello")
        .expect("layer content in archive");
    archive[pos] = b'j';
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("corrupted layer", archive),
        ("not a tar", b"this is not a tar archive at all".repeat(20)),
        ("empty", Vec::new()),
        ("no manifest", tar_layer(|b| file(b, "x", b"y"))),
    ];
    for (what, bytes) in cases {
        let err = store.load(&bytes[..]).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{what}: {err:?}");
        assert!(store.list().unwrap().is_empty(), "{what} stored an image");
        assert_eq!(
            store.disk_usage().unwrap().layers_size,
            0,
            "{what} left a layer"
        );
    }
    assert!(store
        .import(&b"garbage"[..], &ImportOptions::default())
        .is_err());
}

#[test]
#[ignore = "needs root: unpacks layers"]
fn reopening_after_an_interrupted_write_is_consistent() {
    skip_unless_root!();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("image");
    let id = {
        let store = ImageStore::open(&root).unwrap();
        busybox_import(&store, "bb:keep").id
    };
    // What a kill -9 in the middle of writes leaves: a half-unpacked layer in tmp/, a layer
    // dir without its record, a temp file next to a record.
    std::fs::create_dir_all(root.join("tmp/layer-1-1/bin")).unwrap();
    std::fs::create_dir_all(root.join("layers/0123456789abcdef/etc")).unwrap();
    std::fs::write(root.join("images/.tmp-x.json-1"), b"{partial").unwrap();
    let store = ImageStore::open(&root).unwrap();
    assert!(!root.join("tmp/layer-1-1").exists());
    assert!(!root.join("layers/0123456789abcdef").exists());
    assert_eq!(store.get("bb:keep").unwrap().id, id);
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
#[ignore = "needs root: unpacks layers"]
fn tags_prune_and_history_follow_docker() {
    skip_unless_root!();
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("image")).unwrap();
    let img = busybox_import(&store, "bb:one");
    store.tag("bb:one", "bb:two").unwrap();
    assert!(matches!(
        store.tag("bb:one", "Bad/Name"),
        Err(Error::InvalidArgument(m)) if m.contains("must be lowercase")
    ));
    // Removing one of two tags only untags.
    assert_eq!(
        store.remove("bb:two", false, false, &|_| false).unwrap(),
        vec![Removed::Untagged("bb:two".into())]
    );
    // An untagged import is dangling: prune takes it, keeps the tagged one.
    let dangling = store
        .import(
            &Layer::from_dir(&tmp.path().join("image/tmp"), false)
                .unwrap()
                .bytes[..],
            &ImportOptions::default(),
        )
        .unwrap();
    assert!(dangling.repo_tags.is_empty());
    let report = store.prune(false, &|_| false).unwrap();
    assert!(report
        .removed
        .contains(&Removed::Deleted(dangling.id.clone())));
    assert_eq!(store.list().unwrap().len(), 1);
    // prune -a takes the rest unless a container uses it.
    assert!(store
        .prune(true, &|id| id == img.id)
        .unwrap()
        .removed
        .is_empty());
    let report = store.prune(true, &|_| false).unwrap();
    assert!(report.space_reclaimed > 0);
    assert!(store.list().unwrap().is_empty());
}
