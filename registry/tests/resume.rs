//! A pull interrupted mid-layer (the registry killed) resumes from the kept partial blob with
//! a Range request once the registry is back.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use berth_registry::{LayerStatus, Progress, ProgressSink, PullOptions, RegistryStore};
use berth_tests::registry::Registry as TestRegistry;
use common::{client, rt, tar, Entry};

#[test]
fn interrupted_pull_resumes_with_a_range_request() {
    let mut reg = TestRegistry::start().unwrap();
    let rt = rt();
    // An incompressible layer big enough that it cannot all be in flight when the registry dies.
    let big = common::random_bytes(24 << 20);
    let big_tar = tar(&[Entry::File("big.bin", &big, 0o644, 0)]);
    let big_digest = berth_registry::sha256_digest(&big_tar);
    let small = tar(&[Entry::File("small", b"small", 0o644, 0)]);
    rt.block_on(common::push_raw(
        &reg.host(),
        "resume",
        "v1",
        &[
            (
                "application/vnd.oci.image.layer.v1.tar",
                small.clone(),
                berth_registry::sha256_digest(&small),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar",
                big_tar.clone(),
                big_digest.clone(),
            ),
        ],
        common::base_config(),
        "application/vnd.oci.image.manifest.v1+json",
    ));
    let c = client();
    let name = format!("{}/resume:v1", reg.host());

    // First pull: once 4 MiB of the big layer arrived, stall the download, kill the
    // registry, and let the download go on into the dead connection.
    let (reached_tx, reached_rx) = mpsc::channel::<()>();
    let (killed_tx, killed_rx) = mpsc::channel::<()>();
    let reached_tx = Mutex::new(Some(reached_tx));
    let killed_rx = Mutex::new(killed_rx);
    let fired = AtomicBool::new(false);
    let big_id = big_digest.clone();
    let sink = ProgressSink::new(move |p: Progress| {
        if let Progress::Layer {
            digest,
            status: LayerStatus::Downloading { current, .. },
            ..
        } = &p
        {
            if *digest == big_id && *current >= 4 << 20 && !fired.swap(true, Ordering::SeqCst) {
                if let Some(tx) = reached_tx.lock().unwrap().take() {
                    let _ = tx.send(());
                }
                let _ = killed_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(30));
            }
        }
    });
    let registry = c.registry.clone();
    let n = name.clone();
    let first = rt.spawn(async move { registry.pull(&n, &PullOptions::default(), &sink).await });
    reached_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("download reached 4 MiB");
    reg.kill().unwrap();
    killed_tx.send(()).unwrap();
    let err = rt.block_on(first).unwrap().unwrap_err();
    assert_eq!(err.kind(), berth_registry::ErrorKind::Unavailable, "{err}");
    assert!(
        c.store.image(&name).unwrap().is_none(),
        "nothing registered"
    );
    let partial = c
        .store
        .downloads_dir()
        .join(format!("{}.partial", &big_digest[7..]));
    let kept = std::fs::metadata(&partial)
        .expect("partial blob kept")
        .len();
    assert!(
        kept >= 4 << 20 && kept < big_tar.len() as u64,
        "kept {kept}"
    );

    // Registry back (same port, same storage): the pull continues from the partial blob.
    reg.restart().unwrap();
    let ev = common::Events::default();
    let report = rt
        .block_on(c.registry.pull(&name, &PullOptions::default(), &ev.sink()))
        .unwrap();
    // `resumed` is only set when the registry answered the Range request with 206.
    let resumed = report
        .resumed
        .iter()
        .find(|r| r.digest == big_digest)
        .expect("big layer resumed");
    assert!(resumed.offset >= kept.min(4 << 20), "{resumed:?}");
    let img = c.store.image(&name).unwrap().unwrap();
    let layer = c.store.layer_path(&img.diff_ids[1]).unwrap();
    assert_eq!(std::fs::read(layer.join("big.bin")).unwrap(), big);
    assert!(!partial.exists(), "partial blob moved into the store");
    assert!(ev.has("Pull complete"));
}

#[test]
fn a_bad_kept_partial_blob_is_downloaded_again() {
    let reg = TestRegistry::start().unwrap();
    let rt = rt();
    let data = common::random_bytes(1 << 20);
    let t = tar(&[Entry::File("data", &data, 0o644, 0)]);
    let digest = berth_registry::sha256_digest(&t);
    rt.block_on(common::push_raw(
        &reg.host(),
        "badpartial",
        "v1",
        &[(
            "application/vnd.oci.image.layer.v1.tar",
            t.clone(),
            digest.clone(),
        )],
        common::base_config(),
        "application/vnd.oci.image.manifest.v1+json",
    ));
    let c = client();
    let downloads = c.store.downloads_dir();
    std::fs::create_dir_all(&downloads).unwrap();
    // A prefix that is not the blob's.
    std::fs::write(
        downloads.join(format!("{}.partial", &digest[7..])),
        vec![7u8; 4096],
    )
    .unwrap();
    let name = format!("{}/badpartial:v1", reg.host());
    let report = rt
        .block_on(
            c.registry
                .pull(&name, &PullOptions::default(), &Default::default()),
        )
        .unwrap();
    assert!(report.resumed.is_empty(), "{report:?}");
    let img = c.store.image(&name).unwrap().unwrap();
    let layer = c.store.layer_path(&img.diff_ids[0]).unwrap();
    assert_eq!(std::fs::read(layer.join("data")).unwrap(), data);
}
