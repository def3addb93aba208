//! A pull interrupted mid-layer (the registry killed) resumes from the kept partial blob with
//! a Range request: on the next pull, or within the same pull when it retries.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use berth_registry::{
    LayerStatus, Progress, ProgressSink, PullOptions, RegistryConfig, RegistryStore,
};
use berth_tests::registry::Registry as TestRegistry;
use common::{client, rt, tar, Entry};

/// A registry holding `resume:v1`: a small layer and a 24 MiB incompressible one, big enough
/// that it cannot all be in flight when the registry dies.
struct Setup {
    reg: TestRegistry,
    name: String,
    big: Vec<u8>,
    big_digest: String,
    big_len: u64,
}

fn setup(rt: &tokio::runtime::Runtime) -> Setup {
    let reg = TestRegistry::start().unwrap();
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
    let name = format!("{}/resume:v1", reg.host());
    Setup {
        reg,
        name,
        big,
        big_digest,
        big_len: big_tar.len() as u64,
    }
}

/// A progress sink that, once 4 MiB of `digest` arrived, tells `reached` and stalls the
/// download until `go on` (so the test can kill the registry mid-layer). Also collects the
/// events as Docker JSON.
fn stalling_sink(digest: &str) -> Stalling {
    let (reached_tx, reached_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let reached_tx = Mutex::new(Some(reached_tx));
    let go_rx = Mutex::new(go_rx);
    let fired = AtomicBool::new(false);
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let id = digest.to_string();
    let sink = ProgressSink::new(move |p: Progress| {
        ev.lock().unwrap().push(p.to_docker_json());
        if let Progress::Layer {
            digest,
            status: LayerStatus::Downloading { current, .. },
            ..
        } = &p
        {
            if *digest == id && *current >= 4 << 20 && !fired.swap(true, Ordering::SeqCst) {
                if let Some(tx) = reached_tx.lock().unwrap().take() {
                    let _ = tx.send(());
                }
                let _ = go_rx.lock().unwrap().recv_timeout(Duration::from_secs(30));
            }
        }
    });
    (sink, reached_rx, go_tx, events)
}

/// The sink, "4 MiB reached", "go on", and the events so far.
type Stalling = (
    ProgressSink,
    mpsc::Receiver<()>,
    mpsc::Sender<()>,
    Arc<Mutex<Vec<serde_json::Value>>>,
);

fn check_pulled(c: &common::Client, s: &Setup) {
    let img = c.store.image(&s.name).unwrap().unwrap();
    let layer = c.store.layer_path(&img.diff_ids[1]).unwrap();
    assert_eq!(std::fs::read(layer.join("big.bin")).unwrap(), s.big);
    let partial = c
        .store
        .downloads_dir()
        .join(format!("{}.partial", &s.big_digest[7..]));
    assert!(!partial.exists(), "partial blob moved into the store");
}

#[test]
fn interrupted_pull_resumes_with_a_range_request() {
    let rt = rt();
    let mut s = setup(&rt);
    let c = common::client_with(RegistryConfig {
        max_download_attempts: 1,
        ..RegistryConfig::default()
    });

    // First pull: stalled at 4 MiB of the big layer, the registry killed, the download goes
    // on into the dead connection and fails.
    let (sink, reached, go_on, _) = stalling_sink(&s.big_digest);
    let registry = c.registry.clone();
    let n = s.name.clone();
    let first = rt.spawn(async move { registry.pull(&n, &PullOptions::default(), &sink).await });
    reached
        .recv_timeout(Duration::from_secs(60))
        .expect("download reached 4 MiB");
    s.reg.kill().unwrap();
    go_on.send(()).unwrap();
    let err = rt.block_on(first).unwrap().unwrap_err();
    assert_eq!(err.kind(), berth_registry::ErrorKind::Unavailable, "{err}");
    assert!(
        c.store.image(&s.name).unwrap().is_none(),
        "nothing registered"
    );
    let partial = c
        .store
        .downloads_dir()
        .join(format!("{}.partial", &s.big_digest[7..]));
    let kept = std::fs::metadata(&partial)
        .expect("partial blob kept")
        .len();
    assert!(kept >= 4 << 20 && kept < s.big_len, "kept {kept}");

    // Registry back (same port, same storage): the next pull continues from the partial blob.
    s.reg.restart().unwrap();
    let ev = common::Events::default();
    let report = rt
        .block_on(
            c.registry
                .pull(&s.name, &PullOptions::default(), &ev.sink()),
        )
        .unwrap();
    // `resumed` is only set when the registry answered the Range request with 206.
    let resumed = report
        .resumed
        .iter()
        .find(|r| r.digest == s.big_digest)
        .expect("big layer resumed");
    assert!(resumed.offset >= 4 << 20, "{resumed:?}");
    assert!(ev.has("Pull complete"));
    assert!(
        report.already_existed.len() == 1 || report.downloaded.len() == 2,
        "the small layer was either kept from the first pull or pulled again: {report:?}"
    );
    check_pulled(&c, &s);
}

#[test]
fn a_pull_retries_and_resumes_when_the_registry_comes_back() {
    let rt = rt();
    let mut s = setup(&rt);
    let c = common::client_with(RegistryConfig {
        retry_delay: Duration::from_millis(700),
        ..RegistryConfig::default()
    });
    let (sink, reached, go_on, events) = stalling_sink(&s.big_digest);
    let registry = c.registry.clone();
    let n = s.name.clone();
    let pull = rt.spawn(async move { registry.pull(&n, &PullOptions::default(), &sink).await });
    reached
        .recv_timeout(Duration::from_secs(60))
        .expect("download reached 4 MiB");
    s.reg.kill().unwrap();
    go_on.send(()).unwrap();
    // Back while the pull waits to retry.
    s.reg.restart().unwrap();
    let report = rt.block_on(pull).unwrap().unwrap();
    let resumed = report
        .resumed
        .iter()
        .find(|r| r.digest == s.big_digest)
        .expect("big layer resumed within the same pull");
    assert!(resumed.offset >= 4 << 20, "{resumed:?}");
    let statuses: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .map(|j| j["status"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        statuses.iter().any(|s| s.starts_with("Retrying in ")),
        "{statuses:?}"
    );
    check_pulled(&c, &s);
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
