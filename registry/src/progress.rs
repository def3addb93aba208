//! Progress events of pulls and pushes, and their form as Docker's JSON progress messages.

use std::sync::Arc;

use serde_json::{json, Value};

/// What happened to one layer (or blob) during a pull or push. Each has Docker's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerStatus {
    /// Pull: queued (`Pulling fs layer`).
    PullingFsLayer,
    /// Pull: waiting for a download slot (`Waiting`).
    Waiting,
    /// Pull: `Downloading` with compressed bytes so far and the blob's size. A resumed
    /// download starts at the size of the kept partial blob.
    Downloading {
        /// Bytes of the blob received (including a resumed prefix).
        current: u64,
        /// Blob size from the manifest.
        total: u64,
    },
    /// Pull: a partial download was found and is continued with a Range request from `offset`
    /// (Docker prints nothing for this; the engine may show it as `Downloading`).
    Resuming {
        /// Bytes already on disk.
        offset: u64,
    },
    /// Pull: the download failed and is tried again after `seconds`
    /// (`Retrying in 5 seconds`); it resumes from what it got.
    Retrying {
        /// Seconds until the next try.
        seconds: u64,
    },
    /// Pull: `Verifying Checksum`.
    VerifyingChecksum,
    /// Pull: `Download complete`.
    DownloadComplete,
    /// Pull: `Extracting` (berth unpacks while downloading, so this comes once, complete).
    Extracting {
        /// Bytes extracted (compressed size).
        current: u64,
        /// Blob size.
        total: u64,
    },
    /// Pull: `Pull complete`.
    PullComplete,
    /// Pull: the store already has this layer (`Already exists`).
    AlreadyExists,
    /// Pull: a foreign / non-distributable layer that was not downloaded.
    Skipped {
        /// Why, e.g. `Skipping foreign layer (application/vnd.docker.image.rootfs.foreign.diff.tar.gzip)`.
        reason: String,
    },
    /// Push: `Preparing`.
    Preparing,
    /// Push: `Waiting`.
    PushWaiting,
    /// Push: `Pushing` with bytes sent.
    Pushing {
        /// Bytes sent.
        current: u64,
        /// Blob size.
        total: u64,
    },
    /// Push: `Pushed`.
    Pushed,
    /// Push: the registry has the blob (`Layer already exists`).
    LayerAlreadyExists,
    /// Push: mounted from another repository of the same registry (`Mounted from <repo>`).
    MountedFrom {
        /// Source repository as Docker prints it (`library/busybox`, `team/app`).
        repository: String,
    },
}

/// One progress event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A line without a layer: `Pulling from library/busybox` (with the tag as id),
    /// `Digest: sha256:...`, `Status: Downloaded newer image for busybox:latest`,
    /// `The push refers to repository [127.0.0.1:5000/x]`, `latest: digest: sha256:... size: 527`.
    Status {
        /// Docker's id field (`latest` for `Pulling from`), if any.
        id: Option<String>,
        /// The text.
        status: String,
    },
    /// A layer's progress; `id` is the 12-hex short digest Docker shows.
    Layer {
        /// Short id (first 12 hex digits of the blob digest).
        id: String,
        /// Full blob digest.
        digest: String,
        /// What happened.
        status: LayerStatus,
    },
}

impl Progress {
    /// Docker's JSON progress message for this event (one line of the `/images/create` and
    /// `/images/{name}/push` streams), e.g.
    /// `{"status":"Downloading","progressDetail":{"current":1,"total":2},"progress":"[=> ] ...","id":"0123456789ab"}`.
    /// [`LayerStatus::Resuming`] becomes a `Downloading` message at the resume offset.
    pub fn to_docker_json(&self) -> Value {
        match self {
            Progress::Status {
                id: Some(id),
                status,
            } => json!({"status": status, "id": id}),
            Progress::Status { id: None, status } => json!({ "status": status }),
            Progress::Layer { id, status, .. } => {
                let (text, detail): (String, Option<(u64, u64)>) = match status {
                    LayerStatus::PullingFsLayer => ("Pulling fs layer".into(), None),
                    LayerStatus::Waiting | LayerStatus::PushWaiting => ("Waiting".into(), None),
                    LayerStatus::Downloading { current, total } => {
                        ("Downloading".into(), Some((*current, *total)))
                    }
                    LayerStatus::Resuming { offset } => ("Downloading".into(), Some((*offset, 0))),
                    LayerStatus::Retrying { seconds } => {
                        let unit = if *seconds == 1 { "second" } else { "seconds" };
                        (format!("Retrying in {seconds} {unit}"), None)
                    }
                    LayerStatus::VerifyingChecksum => ("Verifying Checksum".into(), None),
                    LayerStatus::DownloadComplete => ("Download complete".into(), None),
                    LayerStatus::Extracting { current, total } => {
                        ("Extracting".into(), Some((*current, *total)))
                    }
                    LayerStatus::PullComplete => ("Pull complete".into(), None),
                    LayerStatus::AlreadyExists => ("Already exists".into(), None),
                    LayerStatus::Skipped { reason } => (reason.clone(), None),
                    LayerStatus::Preparing => ("Preparing".into(), None),
                    LayerStatus::Pushing { current, total } => {
                        ("Pushing".into(), Some((*current, *total)))
                    }
                    LayerStatus::Pushed => ("Pushed".into(), None),
                    LayerStatus::LayerAlreadyExists => ("Layer already exists".into(), None),
                    LayerStatus::MountedFrom { repository } => {
                        (format!("Mounted from {repository}"), None)
                    }
                };
                match detail {
                    Some((current, total)) => {
                        let mut detail = json!({ "current": current });
                        if total > 0 {
                            detail["total"] = json!(total);
                        }
                        json!({
                            "status": text,
                            "progressDetail": detail,
                            "progress": progress_bar(current, total),
                            "id": id,
                        })
                    }
                    None => json!({"status": text, "progressDetail": {}, "id": id}),
                }
            }
        }
    }
}

/// Docker's error line in a progress stream that already started (the HTTP status is 200
/// by then): `{"errorDetail":{"message":m},"error":m}`.
pub fn docker_error_json(message: &str) -> Value {
    json!({"errorDetail": {"message": message}, "error": message})
}

/// Docker's textual bar (`[=====>     ]  1.2MB/2.3MB`), for clients that show `progress`.
fn progress_bar(current: u64, total: u64) -> String {
    const WIDTH: u64 = 50;
    if total == 0 {
        return human_size(current);
    }
    let filled = (current.min(total) * WIDTH / total) as usize;
    let mut bar = "=".repeat(filled);
    if filled < WIDTH as usize {
        bar.push('>');
    }
    format!(
        "[{bar:<width$}] {:>8}/{}",
        human_size(current),
        human_size(total),
        width = WIDTH as usize
    )
}

/// Sizes as Docker's go-units `HumanSize` prints them (decimal, 3 significant digits).
fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[i])
}

/// Where a pull or push reports its [`Progress`]. Cheap to clone; called from several tasks
/// and blocking threads at once, so it must not block for long.
#[derive(Clone, Default)]
pub struct ProgressSink {
    f: Option<Arc<dyn Fn(Progress) + Send + Sync>>,
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.f.is_some() {
            "ProgressSink(fn)"
        } else {
            "ProgressSink(none)"
        })
    }
}

impl ProgressSink {
    /// Reports to `f`.
    pub fn new(f: impl Fn(Progress) + Send + Sync + 'static) -> ProgressSink {
        ProgressSink {
            f: Some(Arc::new(f)),
        }
    }

    /// Drops every event.
    pub fn none() -> ProgressSink {
        ProgressSink::default()
    }

    /// Reports a line without a layer.
    pub fn status(&self, id: Option<&str>, status: impl Into<String>) {
        self.emit(Progress::Status {
            id: id.map(str::to_string),
            status: status.into(),
        });
    }

    /// Reports a layer event.
    pub fn layer(&self, digest: &str, status: LayerStatus) {
        self.emit(Progress::Layer {
            id: crate::fsutil::short_id(digest),
            digest: digest.to_string(),
            status,
        });
    }

    fn emit(&self, p: Progress) {
        if let Some(f) = &self.f {
            f(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_events_become_docker_messages() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let p = Progress::Layer {
            id: crate::fsutil::short_id(&d),
            digest: d.clone(),
            status: LayerStatus::Downloading {
                current: 500,
                total: 1000,
            },
        };
        let j = p.to_docker_json();
        assert_eq!(j["status"], "Downloading");
        assert_eq!(j["id"], "abababababab");
        assert_eq!(j["progressDetail"], json!({"current": 500, "total": 1000}));
        assert!(j["progress"].as_str().unwrap().contains("500B/1kB"), "{j}");

        let j = Progress::Layer {
            id: "abababababab".into(),
            digest: d,
            status: LayerStatus::MountedFrom {
                repository: "team/app".into(),
            },
        }
        .to_docker_json();
        assert_eq!(
            j,
            json!({"status": "Mounted from team/app", "progressDetail": {}, "id": "abababababab"})
        );
        let j = Progress::Status {
            id: Some("latest".into()),
            status: "Pulling from library/busybox".into(),
        }
        .to_docker_json();
        assert_eq!(
            j,
            json!({"status": "Pulling from library/busybox", "id": "latest"})
        );
    }

    #[test]
    fn sizes_print_like_go_units() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(1234), "1.23kB");
        assert_eq!(human_size(2_300_000), "2.3MB");
        assert_eq!(human_size(123_000_000), "123MB");
    }
}
