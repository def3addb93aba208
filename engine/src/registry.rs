//! Registry glue: berthd's pulls, pushes, logins and distribution lookups, driven through
//! `berth-registry` into and out of the image store.
//!
//! A pull or push runs in its own task and reports Docker's JSON progress lines on a channel.
//! The caller gets them as a [`ProgressStream`] only once the operation got past the checks
//! that Docker answers with a plain HTTP error (bad reference, unknown manifest or repository,
//! refused credentials, image missing locally): until then the first line is held back, so
//! those failures still become `{"message"}` with their status code.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_image::ImageStore;
use berth_registry::{
    AuthConfig, DistributionInspect, Error, LoginResult, Progress, ProgressSink, PullOptions,
    PushOptions, Reference, Registry, RegistryConfig,
};
use serde_json::Value;
use tokio::sync::mpsc;

/// Partial downloads older than this are removed by a prune even while other pulls run
/// (a running pull touches its partial file at least every few seconds).
const STALE_PARTIAL: Duration = Duration::from_secs(600);

/// An image event of a registry operation, as Docker logs it: `pull` or `push`, the
/// reference (`busybox:latest`, the event's id) and the repository (`busybox`, its `name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEvent {
    /// `pull` or `push`.
    pub action: &'static str,
    /// The reference pulled or pushed, familiar form.
    pub image: String,
    /// The repository, familiar form.
    pub name: String,
}

impl ImageEvent {
    fn new(action: &'static str, reference: &str) -> ImageEvent {
        let (image, name) = match Reference::parse(reference) {
            Ok(r) => (r.familiar_string(), r.familiar_name()),
            Err(_) => (reference.to_string(), reference.to_string()),
        };
        ImageEvent {
            action,
            image,
            name,
        }
    }
}

/// What a pull or push sends while it runs.
#[derive(Debug)]
pub enum Msg {
    /// One Docker JSON progress message.
    Progress(Value),
    /// The operation ended; an error is Docker's message (to be sent as the stream's
    /// `errorDetail` line).
    Done(Result<(), String>),
}

/// A pull or push that got past its early checks: the lines so far, then the rest.
#[derive(Debug)]
pub struct ProgressStream {
    /// Lines already received (send these first).
    pub head: Vec<Value>,
    /// The following lines, ending with [`Msg::Done`].
    pub rest: mpsc::UnboundedReceiver<Msg>,
}

/// berthd's registry client and the bookkeeping around it.
pub struct RegistryService {
    client: Registry,
    in_flight: Arc<AtomicUsize>,
}

impl std::fmt::Debug for RegistryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryService")
            .field("config", self.client.config())
            .finish()
    }
}

/// Counts a running operation for as long as it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(n: &Arc<AtomicUsize>) -> InFlight {
        n.fetch_add(1, Ordering::SeqCst);
        InFlight(n.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl RegistryService {
    /// A client pulling into and pushing from `images`.
    pub fn new(config: RegistryConfig, images: &ImageStore) -> RegistryService {
        RegistryService {
            client: Registry::new(config, Arc::new(images.clone())),
            in_flight: Arc::default(),
        }
    }

    /// The registry settings in use (daemon.json keys and flags).
    pub fn config(&self) -> &RegistryConfig {
        self.client.config()
    }

    /// `POST /images/create?fromImage=&tag=&platform=`. An empty `tag` on a name without
    /// one pulls every tag of the repository (`docker pull --all-tags`). `on_event` gets a
    /// `pull` event per image pulled.
    pub async fn pull(
        &self,
        from_image: &str,
        tag: &str,
        platform: &str,
        auth: AuthConfig,
        on_event: impl Fn(ImageEvent) + Send + Sync + 'static,
    ) -> Result<ProgressStream, Error> {
        let r = Reference::parse(from_image)?;
        let single = if !tag.is_empty() {
            let name = r.name();
            Some(if tag.starts_with("sha256:") {
                format!("{name}@{tag}")
            } else {
                format!("{name}:{tag}")
            })
        } else if r.tag.is_some() || r.digest.is_some() {
            Some(from_image.to_string())
        } else {
            None
        };
        // Checked now, so a bad one is a 400 before anything streams.
        if let Some(s) = &single {
            Reference::parse(s)?;
        }
        berth_registry::Platform::parse(platform)?;
        let client = self.client.clone();
        let options = PullOptions {
            platform: platform.to_string(),
            auth,
        };
        let guard = InFlight::new(&self.in_flight);
        start(move |sink| async move {
            let _guard = guard;
            let refs = match single {
                Some(s) => vec![s],
                None => {
                    let tags = client.list_tags(&r.name(), &options.auth).await?;
                    tags.iter().map(|t| format!("{}:{t}", r.name())).collect()
                }
            };
            for reference in refs {
                client.pull(&reference, &options, &sink).await?;
                on_event(ImageEvent::new("pull", &reference));
            }
            Ok(())
        })
        .await
    }

    /// `POST /images/{name}/push?tag=`. An empty `tag` on a name without one pushes every
    /// local tag of the repository, as Docker does. `on_event` gets a `push` event per tag.
    pub async fn push(
        &self,
        images: &ImageStore,
        name: &str,
        tag: &str,
        auth: AuthConfig,
        on_event: impl Fn(ImageEvent) + Send + Sync + 'static,
    ) -> Result<ProgressStream, Error> {
        let r = Reference::parse(name)?;
        let refs: Vec<String> = if !tag.is_empty() {
            let s = format!("{}:{tag}", r.name());
            Reference::parse(&s)?;
            vec![s]
        } else if r.tag.is_some() || r.digest.is_some() {
            vec![name.to_string()]
        } else {
            let repo = r.name();
            let store = images.clone();
            let list = tokio::task::spawn_blocking(move || store.list())
                .await
                .map_err(|e| Error::Store(e.to_string()))?
                .map_err(|e| Error::Store(e.to_string()))?;
            let tags: BTreeSet<String> = list
                .iter()
                .flat_map(|i| &i.repo_tags)
                .filter_map(|t| Reference::parse(t).ok())
                .filter(|t| t.name() == repo && t.tag.is_some())
                .map(|t| format!("{repo}:{}", t.tag_or_digest()))
                .collect();
            if tags.is_empty() {
                return Err(Error::NotFound(format!(
                    "An image does not exist locally with the tag: {}",
                    r.familiar_name()
                )));
            }
            tags.into_iter().collect()
        };
        let client = self.client.clone();
        let options = PushOptions { auth };
        let guard = InFlight::new(&self.in_flight);
        start(move |sink| async move {
            let _guard = guard;
            for reference in refs {
                client.push(&reference, &options, &sink).await?;
                on_event(ImageEvent::new("push", &reference));
            }
            Ok(())
        })
        .await
    }

    /// `POST /auth`: checks the credentials against their registry.
    pub async fn login(&self, auth: &AuthConfig) -> Result<LoginResult, Error> {
        self.client.login(auth).await
    }

    /// `GET /distribution/{name}/json`.
    pub async fn inspect(
        &self,
        reference: &str,
        auth: &AuthConfig,
    ) -> Result<DistributionInspect, Error> {
        self.client.inspect_distribution(reference, auth).await
    }

    /// Removes kept partial downloads (for `image prune`): all of them when no pull runs,
    /// else those untouched for a while. Returns the bytes freed.
    pub fn clean_downloads(&self) -> u64 {
        let age = if self.in_flight.load(Ordering::SeqCst) == 0 {
            Duration::ZERO
        } else {
            STALE_PARTIAL
        };
        match self.client.clean_downloads(age) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot clean partial downloads");
                0
            }
        }
    }

    /// Bytes held by partial downloads (for `system df`).
    pub fn downloads_size(&self) -> u64 {
        let dir = self.client.store().downloads_dir();
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "partial"))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// Total size of the regular files directly in `dir` (0 if it is missing).
pub fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Runs `op` in its own task with a progress sink, and waits until it either failed before
/// its second progress line (the error is returned) or is clearly under way (the stream).
async fn start<F, Fut>(op: F) -> Result<ProgressStream, Error>
where
    F: FnOnce(ProgressSink) -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>> + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let (err_tx, mut err_rx) = mpsc::unbounded_channel::<Error>();
    let progress_tx = tx.clone();
    let sink = ProgressSink::new(move |p: Progress| {
        let _ = progress_tx.send(Msg::Progress(p.to_docker_json()));
    });
    let fut = op(sink);
    tokio::spawn(async move {
        let res = fut.await;
        match res {
            Ok(()) => {
                let _ = tx.send(Msg::Done(Ok(())));
            }
            Err(e) => {
                let message = e.to_string();
                tracing::info!(error = %message, "registry operation failed");
                // The error itself goes to whoever still holds the head back; the stream
                // gets Docker's message.
                let _ = err_tx.send(e);
                let _ = tx.send(Msg::Done(Err(message)));
            }
        }
    });
    let mut head = Vec::new();
    loop {
        let Some(msg) = rx.recv().await else {
            return Err(Error::Store(
                "registry operation ended without a result".into(),
            ));
        };
        match msg {
            Msg::Progress(v) => {
                head.push(v);
                if head.len() > 1 {
                    return Ok(ProgressStream { head, rest: rx });
                }
            }
            Msg::Done(Ok(())) => {
                let (tx, rest) = mpsc::unbounded_channel();
                let _ = tx.send(Msg::Done(Ok(())));
                return Ok(ProgressStream { head, rest });
            }
            Msg::Done(Err(message)) => {
                return Err(err_rx.recv().await.unwrap_or(Error::Store(message)));
            }
        }
    }
}
