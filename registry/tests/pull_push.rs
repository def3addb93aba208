//! Pull and push against a real registry (Debian's docker-registry on 127.0.0.1).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use berth_registry::{ErrorKind, PullOptions, PushOptions, RegistryStore};
use berth_tests::registry::Registry as TestRegistry;
use common::{client, image_trees, rt, tar, Entry, Events};

/// A three-layer image: busybox; files, a hard link, a device node, a whiteout and an
/// opaque dir; then a replaced file and a deleted hard link.
fn layers() -> Vec<Vec<u8>> {
    vec![
        common::busybox_tar(),
        tar(&[
            Entry::Dir("etc", 0o755),
            Entry::File("etc/motd", b"hello\n", 0o644, 0),
            Entry::Dir("data", 0o750),
            Entry::File("data/a", b"shared content", 0o600, 1000),
            Entry::Link("data/hard", "data/a"),
            Entry::Symlink("data/sym", "a"),
            Entry::Whiteout("bin/vi"),
            Entry::Dir("var", 0o755),
            Entry::Opaque("var"),
            Entry::File("var/new", b"only me", 0o644, 0),
            Entry::Dir("dev", 0o755),
            Entry::CharDev("dev/null", 1, 3),
            Entry::File("bin/suid", b"#!/bin/sh\n", 0o4755, 0),
            Entry::FileXattr("data/labelled", b"x", "user.berth", b"kept"),
        ]),
        tar(&[
            Entry::Dir("etc", 0o755),
            Entry::File("etc/motd", b"replaced\n", 0o644, 0),
            Entry::Whiteout("data/hard"),
        ]),
    ]
}

#[test]
#[ignore = "needs root: whiteouts are device nodes, files owned by other users"]
fn push_pull_round_trip_keeps_files_whiteouts_and_hard_links() {
    berth_tests::skip_unless_root!();
    let reg = TestRegistry::start().unwrap();
    let rt = rt();
    let src = client();
    let name = format!("{}/berth/roundtrip:v1", reg.host());
    src.store
        .create_image(&layers(), common::base_config(), &name)
        .unwrap();
    let before = image_trees(&src.store, &name);

    let ev = Events::default();
    let pushed = rt
        .block_on(
            src.registry
                .push(&name, &PushOptions::default(), &ev.sink()),
        )
        .unwrap();
    assert_eq!(pushed.pushed.len(), 3, "{:?}", ev.statuses());
    assert!(ev.has(&format!(
        "The push refers to repository [{}/berth/roundtrip]",
        reg.host()
    )));
    assert!(
        ev.has("Pushed") && ev.has("Preparing"),
        "{:?}",
        ev.statuses()
    );
    assert!(ev.has(&format!(
        "v1: digest: {} size: {}",
        pushed.digest, pushed.size
    )));

    // A second push sends nothing new and gives the same manifest.
    let ev2 = Events::default();
    let again = rt
        .block_on(
            src.registry
                .push(&name, &PushOptions::default(), &ev2.sink()),
        )
        .unwrap();
    assert_eq!(again.digest, pushed.digest);
    assert_eq!(again.existed.len(), 3);
    assert!(ev2.has("Layer already exists"));

    // Pull into another store and compare every file of every layer.
    let dst = client();
    let ev = Events::default();
    let pulled = rt
        .block_on(
            dst.registry
                .pull(&name, &PullOptions::default(), &ev.sink()),
        )
        .unwrap();
    assert_eq!(pulled.downloaded.len(), 3);
    assert_eq!(pulled.digest, pushed.digest);
    let after = image_trees(&dst.store, &name);
    assert_eq!(before.len(), after.len());
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_eq!(b, a, "layer {i} differs");
    }
    let l2 = &after[1];
    assert!(
        l2["bin/vi"].starts_with("chr 0:0"),
        "whiteout: {}",
        l2["bin/vi"]
    );
    assert!(l2["var"].contains("opaque=Some(\"y\")"), "{}", l2["var"]);
    assert!(
        l2["data/hard"].contains("link-group=data/a"),
        "{}",
        l2["data/hard"]
    );
    assert!(l2["data/a"].contains("uid=1000") && l2["data/a"].contains("mode=600"));
    assert!(l2["bin/suid"].contains("mode=4755"), "{}", l2["bin/suid"]);
    assert!(l2["dev/null"].starts_with("chr 1:3"));
    assert!(
        l2["data/labelled"].contains("xattrs=[user.berth=kept]"),
        "{}",
        l2["data/labelled"]
    );
    for s in [
        "Pulling fs layer",
        "Downloading",
        "Verifying Checksum",
        "Download complete",
        "Extracting",
        "Pull complete",
    ] {
        assert!(ev.has(s), "{s}: {:?}", ev.statuses());
    }
    assert!(ev.has(&format!("Digest: {}", pushed.digest)));
    assert!(ev.has(&format!("Status: Downloaded newer image for {name}")));

    // Pulling again: up to date; a new tag of the same layers: "Already exists".
    let ev = Events::default();
    let r = rt
        .block_on(
            dst.registry
                .pull(&name, &PullOptions::default(), &ev.sink()),
        )
        .unwrap();
    assert!(r.up_to_date);
    assert!(ev.has(&format!("Status: Image is up to date for {name}")));

    // tag + push to a new repository: layers are mounted, not uploaded.
    let other = format!("{}/berth/copy:latest", reg.host());
    let img = dst.store.image(&name).unwrap().unwrap();
    dst.store
        .register_image(berth_registry::NewImage {
            config: img.config.clone(),
            diff_ids: img.diff_ids.clone(),
            repo_tag: Some(other.clone()),
            repo_digest: format!("{}/berth/copy@{}", reg.host(), pulled.digest),
        })
        .unwrap();
    // A new client over the same store (berthd restarted) still knows where the blobs are.
    let restarted =
        berth_registry::Registry::new(berth_registry::RegistryConfig::default(), dst.store.clone());
    let ev = Events::default();
    let copy = rt
        .block_on(restarted.push(&other, &PushOptions::default(), &ev.sink()))
        .unwrap();
    assert_eq!(copy.mounted.len(), 3, "{:?}", ev.statuses());
    assert!(
        ev.has(&format!("Mounted from {}/berth/roundtrip", reg.host())),
        "{:?}",
        ev.statuses()
    );
    assert_eq!(
        copy.digest, pushed.digest,
        "same manifest in the new repository"
    );
}

#[test]
fn uncompressed_zstd_and_gzip_layers_pull() {
    let reg = TestRegistry::start().unwrap();
    let rt = rt();
    let plain = tar(&[Entry::File("plain.txt", b"plain", 0o644, 0)]);
    let zstd_tar = tar(&[Entry::File("zstd.txt", b"zstd layer", 0o644, 0)]);
    let zstd = ruzstd::encoding::compress_to_vec(
        &zstd_tar[..],
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    let gz_tar = tar(&[Entry::File("gz.txt", b"gzip layer", 0o644, 0)]);
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&gz_tar).unwrap();
        e.finish().unwrap()
    };
    let d = berth_registry::sha256_digest;
    let layers = [
        (
            "application/vnd.oci.image.layer.v1.tar",
            plain.clone(),
            d(&plain),
        ),
        (
            "application/vnd.oci.image.layer.v1.tar+zstd",
            zstd,
            d(&zstd_tar),
        ),
        (
            "application/vnd.oci.image.layer.v1.tar+gzip",
            gz,
            d(&gz_tar),
        ),
    ];
    rt.block_on(common::push_raw(
        &reg.host(),
        "kinds",
        "t",
        &layers,
        common::base_config(),
        "application/vnd.oci.image.manifest.v1+json",
    ));
    let c = client();
    let name = format!("{}/kinds:t", reg.host());
    rt.block_on(
        c.registry
            .pull(&name, &PullOptions::default(), &Default::default()),
    )
    .unwrap();
    let trees = image_trees(&c.store, &name);
    assert!(trees[0].contains_key("plain.txt"));
    assert!(trees[1].contains_key("zstd.txt"));
    assert!(trees[2].contains_key("gz.txt"));
}

#[test]
fn multi_platform_index_pulls_the_requested_platform() {
    let reg = TestRegistry::start().unwrap();
    let rt = rt();
    let mut ids = Vec::new();
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let t = tar(&[Entry::File("arch", arch.as_bytes(), 0o644, 0)]);
        let mut cfg = common::base_config();
        cfg["architecture"] = arch.into();
        let (digest, size) = rt.block_on(common::push_raw(
            &reg.host(),
            "multi",
            arch,
            &[(
                "application/vnd.oci.image.layer.v1.tar",
                t.clone(),
                berth_registry::sha256_digest(&t),
            )],
            cfg,
            "application/vnd.oci.image.manifest.v1+json",
        ));
        ids.push(digest.clone());
        entries.push((digest, size, "linux", arch));
    }
    let index = rt.block_on(common::push_index(&reg.host(), "multi", "latest", &entries));
    let name = format!("{}/multi", reg.host());
    for (platform, want) in [("linux/arm64", "arm64"), ("linux/amd64", "amd64")] {
        let c = client();
        let report = rt
            .block_on(c.registry.pull(
                &name,
                &PullOptions {
                    platform: platform.into(),
                    ..Default::default()
                },
                &Default::default(),
            ))
            .unwrap();
        assert_eq!(report.digest, index, "the index digest is the repo digest");
        let trees = image_trees(&c.store, &name);
        assert!(trees[0].contains_key("arch"));
        let layer = c
            .store
            .layer_path(&c.store.image(&name).unwrap().unwrap().diff_ids[0])
            .unwrap();
        assert_eq!(std::fs::read_to_string(layer.join("arch")).unwrap(), want);
    }
    let c = client();
    let e = rt
        .block_on(c.registry.pull(
            &name,
            &PullOptions {
                platform: "linux/s390x".into(),
                ..Default::default()
            },
            &Default::default(),
        ))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "no matching manifest for linux/s390x in the manifest list entries"
    );
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let inspect = rt
        .block_on(c.registry.inspect_distribution(&name, &Default::default()))
        .unwrap();
    assert_eq!(inspect.descriptor.digest, index);
    assert_eq!(inspect.platforms.len(), 2);
}

#[test]
fn corrupted_blob_is_detected_and_nothing_is_stored() {
    let reg = TestRegistry::start().unwrap();
    let rt = rt();
    let t = tar(&[Entry::File("f", &common::random_bytes(200_000), 0o644, 0)]);
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&t).unwrap();
        e.finish().unwrap()
    };
    let blob_digest = berth_registry::sha256_digest(&gz);
    rt.block_on(common::push_raw(
        &reg.host(),
        "corrupt",
        "v1",
        &[(
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            gz.clone(),
            berth_registry::sha256_digest(&t),
        )],
        common::base_config(),
        "application/vnd.docker.distribution.manifest.v2+json",
    ));
    // Same size, other bytes.
    let mut bad = gz.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid..mid + 64] {
        *b ^= 0xff;
    }
    std::fs::write(reg.blob_data_path(&blob_digest), &bad).unwrap();

    let c = client();
    let name = format!("{}/corrupt:v1", reg.host());
    let e = rt
        .block_on(
            c.registry
                .pull(&name, &PullOptions::default(), &Default::default()),
        )
        .unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "filesystem layer verification failed for digest {blob_digest}"
        )),
        "{e}"
    );
    assert_eq!(e.kind(), ErrorKind::Internal);
    assert!(
        c.store.image(&name).unwrap().is_none(),
        "no image registered"
    );
    assert!(c.store.images().unwrap().is_empty());
    let root = c.store.root();
    for d in ["layers", "tmp", "downloads"] {
        assert_eq!(
            std::fs::read_dir(root.join(d)).unwrap().count(),
            0,
            "{d} is empty"
        );
    }
}

#[test]
fn bad_references_and_unknown_tags_give_docker_messages() {
    let reg = TestRegistry::start().unwrap();
    let rt = rt();
    let c = client();
    let pull = |r: &str| {
        rt.block_on(
            c.registry
                .pull(r, &PullOptions::default(), &Default::default()),
        )
        .unwrap_err()
    };
    for bad in ["team/UPPER", "Upper", "a b", "x:", "x@sha256:nothex"] {
        let e = pull(bad);
        assert!(
            e.to_string().starts_with("invalid reference format"),
            "{bad}: {e}"
        );
        assert_eq!(e.kind().http_status(), 400);
    }
    // Push something so the repository exists, then ask for a missing tag.
    let t = tar(&[Entry::File("f", b"x", 0o644, 0)]);
    rt.block_on(common::push_raw(
        &reg.host(),
        "known",
        "v1",
        &[(
            "application/vnd.oci.image.layer.v1.tar",
            t.clone(),
            berth_registry::sha256_digest(&t),
        )],
        common::base_config(),
        "application/vnd.oci.image.manifest.v1+json",
    ));
    let e = pull(&format!("{}/known:nope", reg.host()));
    assert_eq!(
        e.to_string(),
        format!(
            "manifest for {}/known:nope not found: manifest unknown: manifest unknown",
            reg.host()
        )
    );
    assert_eq!(e.kind().http_status(), 404);
    let e = pull(&format!("{}/never/pushed", reg.host()));
    assert_eq!(e.kind().http_status(), 404, "{e}");
    assert!(e.to_string().contains("not found"), "{e}");
    // An image for another OS.
    let mut windows = common::base_config();
    windows["os"] = "windows".into();
    rt.block_on(common::push_raw(
        &reg.host(),
        "windows",
        "v1",
        &[(
            "application/vnd.oci.image.layer.v1.tar",
            t.clone(),
            berth_registry::sha256_digest(&t),
        )],
        windows,
        "application/vnd.oci.image.manifest.v1+json",
    ));
    let e = pull(&format!("{}/windows:v1", reg.host()));
    assert_eq!(
        e.to_string(),
        "image operating system \"windows\" cannot be used on this platform: operating system is not supported"
    );
    assert_eq!(e.kind().http_status(), 400);
    // Pushing something that is not there locally.
    let e = rt
        .block_on(c.registry.push(
            &format!("{}/absent:v1", reg.host()),
            &PushOptions::default(),
            &Default::default(),
        ))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "An image does not exist locally with the tag: {}/absent",
            reg.host()
        )
    );
    // A registry that is not there.
    let dead = berth_tests::registry::free_port().unwrap();
    let e = pull(&format!("{dead}/x:y"));
    assert_eq!(e.kind().http_status(), 500, "{e}");
}

#[test]
fn mirrors_are_tried_first_and_fall_back_to_the_registry() {
    let upstream = TestRegistry::start().unwrap();
    let mirror = TestRegistry::start().unwrap();
    let dead = berth_tests::registry::free_port().unwrap();
    let rt = rt();
    let push = |reg: &TestRegistry, repo: &str, content: &[u8]| {
        let t = tar(&[Entry::File("f", content, 0o644, 0)]);
        rt.block_on(common::push_raw(
            &reg.host(),
            repo,
            "v1",
            &[(
                "application/vnd.oci.image.layer.v1.tar",
                t.clone(),
                berth_registry::sha256_digest(&t),
            )],
            common::base_config(),
            "application/vnd.oci.image.manifest.v1+json",
        ));
    };
    push(&mirror, "only/mirror", b"from the mirror");
    push(&upstream, "only/upstream", b"from upstream");
    let mut config = berth_registry::RegistryConfig::default();
    config.mirrors.insert(
        upstream.host(),
        vec![
            format!("http://{dead}"),
            format!("http://{}/", mirror.host()),
        ],
    );
    let c = common::client_with(config);
    let r = rt
        .block_on(c.registry.pull(
            &format!("{}/only/mirror:v1", upstream.host()),
            &PullOptions::default(),
            &Default::default(),
        ))
        .unwrap();
    assert_eq!(r.endpoint, mirror.host(), "served by the mirror");
    let r = rt
        .block_on(c.registry.pull(
            &format!("{}/only/upstream:v1", upstream.host()),
            &PullOptions::default(),
            &Default::default(),
        ))
        .unwrap();
    assert_eq!(
        r.endpoint,
        upstream.host(),
        "mirror missed: the registry itself"
    );
}

#[test]
fn foreign_layers_are_skipped_with_a_message() {
    let reg = TestRegistry::start().unwrap();
    let rt = rt();
    let base = tar(&[Entry::File("base", b"base", 0o644, 0)]);
    let foreign = tar(&[Entry::File("windows", b"not for linux", 0o644, 0)]);
    rt.block_on(common::push_raw(
        &reg.host(),
        "foreign",
        "v1",
        &[
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                foreign.clone(),
                berth_registry::sha256_digest(&foreign),
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                base.clone(),
                berth_registry::sha256_digest(&base),
            ),
        ],
        common::base_config(),
        "application/vnd.docker.distribution.manifest.v2+json",
    ));
    let c = client();
    let ev = Events::default();
    let name = format!("{}/foreign:v1", reg.host());
    let r = rt
        .block_on(c.registry.pull(&name, &PullOptions::default(), &ev.sink()))
        .unwrap();
    assert_eq!(r.skipped.len(), 1);
    assert!(
        ev.has(
            "Skipping foreign layer (application/vnd.docker.image.rootfs.foreign.diff.tar.gzip)"
        ),
        "{:?}",
        ev.statuses()
    );
    let trees = image_trees(&c.store, &name);
    assert_eq!(trees.len(), 1);
    assert!(trees[0].contains_key("base"));
}

#[test]
fn shared_layers_are_stored_once_even_by_concurrent_pulls() {
    let reg = TestRegistry::start().unwrap();
    let rt = rt();
    let shared = tar(&[Entry::File(
        "shared.bin",
        &common::random_bytes(3 << 20),
        0o644,
        0,
    )]);
    let mut manifests = Vec::new();
    for name in ["one", "two"] {
        let own = tar(&[Entry::File(name, name.as_bytes(), 0o644, 0)]);
        manifests.push(rt.block_on(common::push_raw(
            &reg.host(),
            &format!("shared/{name}"),
            "v1",
            &[
                (
                    "application/vnd.oci.image.layer.v1.tar",
                    shared.clone(),
                    berth_registry::sha256_digest(&shared),
                ),
                (
                    "application/vnd.oci.image.layer.v1.tar",
                    own.clone(),
                    berth_registry::sha256_digest(&own),
                ),
            ],
            common::base_config(),
            "application/vnd.oci.image.manifest.v1+json",
        )));
    }
    let c = client();
    let (a, b) = rt.block_on(async {
        let o = PullOptions::default();
        let s = Default::default();
        let one = format!("{}/shared/one:v1", reg.host());
        let two = format!("{}/shared/two:v1", reg.host());
        tokio::join!(c.registry.pull(&one, &o, &s), c.registry.pull(&two, &o, &s))
    });
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.downloaded.len() + b.downloaded.len(),
        3,
        "the shared layer is downloaded once: {a:?} {b:?}"
    );
    assert_eq!(a.already_existed.len() + b.already_existed.len(), 1);
    let layers = std::fs::read_dir(c.store.root().join("layers"))
        .unwrap()
        .count();
    assert_eq!(layers, 3);

    // By digest: Docker's status names the digest reference; no tag is added.
    let by_digest = format!("{}/shared/one@{}", reg.host(), manifests[0].0);
    let d = client();
    let ev = Events::default();
    let r = rt
        .block_on(
            d.registry
                .pull(&by_digest, &PullOptions::default(), &ev.sink()),
        )
        .unwrap();
    assert_eq!(r.digest, manifests[0].0);
    assert!(ev.has(&format!("Status: Downloaded newer image for {by_digest}")));
    assert!(d
        .store
        .image(&format!("{}/shared/one:v1", reg.host()))
        .unwrap()
        .is_none());
    assert!(d.store.image(&r.image_id).unwrap().is_some());
    // A digest that does not match what the registry serves is refused.
    let wrong = format!("{}/shared/one@sha256:{}", reg.host(), "0".repeat(64));
    let e = rt
        .block_on(
            d.registry
                .pull(&wrong, &PullOptions::default(), &Default::default()),
        )
        .unwrap_err();
    assert_eq!(e.kind().http_status(), 404, "{e}");
}

#[test]
fn tags_are_listed() {
    let reg = TestRegistry::start().unwrap();
    let rt = rt();
    let t = tar(&[Entry::File("f", b"x", 0o644, 0)]);
    for tag in ["v2", "v1", "latest"] {
        rt.block_on(common::push_raw(
            &reg.host(),
            "tagged",
            tag,
            &[(
                "application/vnd.oci.image.layer.v1.tar",
                t.clone(),
                berth_registry::sha256_digest(&t),
            )],
            common::base_config(),
            "application/vnd.oci.image.manifest.v1+json",
        ));
    }
    let c = client();
    let mut tags = rt
        .block_on(
            c.registry
                .list_tags(&format!("{}/tagged", reg.host()), &Default::default()),
        )
        .unwrap();
    tags.sort();
    assert_eq!(tags, ["latest", "v1", "v2"]);
}
