//! A build: the Dockerfile's stages in dependency order, independent ones concurrently,
//! stages the target does not need skipped, each instruction through the cache, with the
//! classic builder's output (`Step N/M : ...`, ` ---> Using cache`, ` ---> <id>`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::backend::{Backend, CommitRequest, ImageInfo, Output};
use crate::context::{self, Entry, Ownership};
use crate::error::{BuildError, Result};
use crate::instructions::{self, Args, Command, Copy};
use crate::parser::{self, Instruction};
use crate::shell;

/// The proxy variables every build may use without an ARG; left out of history and cache
/// keys unless declared, as dockerd does.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a build is asked to do.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The Dockerfile's text.
    pub dockerfile: String,
    /// The unpacked context.
    pub context: PathBuf,
    pub tags: Vec<String>,
    pub target: Option<String>,
    /// `--build-arg`s (`None`: declared without a value).
    pub build_args: BTreeMap<String, Option<String>>,
    /// `--label`s for the final image.
    pub labels: BTreeMap<String, String>,
    pub no_cache: bool,
    pub pull: bool,
    /// `--cache-from`: images whose layers may serve as cache.
    pub cache_from: Vec<String>,
    pub rm: bool,
    pub force_rm: bool,
    /// `--platform` (`linux/amd64`): checked against each base image.
    pub platform: Option<String>,
    /// The host's architecture in OCI words (`amd64`).
    pub host_arch: String,
    /// Content digests of the context's files, from its unpacking.
    pub digests: std::sync::Arc<context::Digests>,
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct Built {
    pub id: String,
}

/// The first 12 hex digits of an id.
pub fn short(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

struct Stage {
    index: usize,
    name: Option<String>,
    from: Instruction,
    image: String,
    platform: Option<String>,
    steps: Vec<(Instruction, Command)>,
}

/// Where a stage takes files or its base from.
fn stage_ref(stages: &[Stage], name: &str, numeric: bool) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    if let Some(s) = stages
        .iter()
        .find(|s| s.name.as_deref() == Some(lower.as_str()))
    {
        return Some(s.index);
    }
    if numeric {
        if let Ok(i) = name.parse::<usize>() {
            return Some(i);
        }
    }
    None
}

struct Plan {
    stages: Vec<Stage>,
    escape: char,
    meta_args: BTreeMap<String, Option<String>>,
    /// Dependencies of each stage.
    deps: Vec<BTreeSet<usize>>,
    needed: Vec<usize>,
    /// First step number of each stage.
    first_step: HashMap<usize, usize>,
    total: usize,
    target: usize,
}

fn plan(opts: &BuildOptions) -> Result<Plan> {
    let df = parser::parse(&opts.dockerfile)?;
    let escape = df.escape;
    let mut meta_args: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    let mut typed = Vec::new();
    for ins in &df.instructions {
        typed.push((ins.clone(), instructions::command(ins, escape)?));
    }
    if !typed.iter().any(|(_, c)| matches!(c, Command::From { .. })) {
        return Err(BuildError::Parse(
            "dockerfile parse error: no build stage in current context".into(),
        ));
    }
    for (ins, cmd) in typed {
        match cmd {
            Command::From {
                image,
                name,
                platform,
            } => {
                let index = stages.len();
                stages.push(Stage {
                    index,
                    name,
                    from: ins,
                    image,
                    platform,
                    steps: Vec::new(),
                });
            }
            Command::Arg(list) if stages.is_empty() => {
                for (k, v) in list {
                    meta_args.insert(k, v);
                }
            }
            other => match stages.last_mut() {
                Some(s) => s.steps.push((ins, other)),
                None => {
                    return Err(BuildError::Parse(format!(
                        "dockerfile parse error line {}: {} before FROM: only ARG may come before the first FROM",
                        ins.line, ins.keyword
                    )))
                }
            },
        }
    }
    // Meta args: defaults, overridden by build args.
    let meta: BTreeMap<String, Option<String>> = meta_args
        .iter()
        .map(|(k, v)| {
            let val = match opts.build_args.get(k) {
                Some(Some(b)) => Some(b.clone()),
                _ => v.clone(),
            };
            (k.clone(), val)
        })
        .collect();
    let lookup_meta = |k: &str| meta.get(k).cloned().flatten();
    for s in &mut stages {
        s.image = shell::expand_word(&s.image, escape, &lookup_meta)?;
        if let Some(p) = &s.platform {
            s.platform = Some(shell::expand_word(p, escape, &lookup_meta)?);
        }
    }
    // --label: a last LABEL step of the target stage.
    let target = match &opts.target {
        Some(t) if !t.is_empty() => stage_ref(&stages, t, false).ok_or_else(|| {
            BuildError::Request(format!("failed to reach build target {t} in Dockerfile"))
        })?,
        _ => stages.len() - 1,
    };
    if !opts.labels.is_empty() {
        let text = format!(
            "LABEL {}",
            opts.labels
                .iter()
                .map(|(k, v)| format!("{}={}", quote(k), quote(v)))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let ins = parser::parse(&text)?.instructions.remove(0);
        let cmd = instructions::command(&ins, '\\')?;
        stages[target].steps.push((ins, cmd));
    }
    // Dependencies: FROM <stage> and COPY --from=<stage>.
    let mut deps = vec![BTreeSet::new(); stages.len()];
    for s in &stages {
        if let Some(d) = stage_ref(&stages, &s.image, false) {
            deps[s.index].insert(d);
        }
        for (_, c) in &s.steps {
            if let Command::Copy(Copy { from: Some(f), .. }) = c {
                let f = shell::expand_word(f, escape, &lookup_meta)?;
                if let Some(d) = stage_ref(&stages, &f, true) {
                    if d < stages.len() {
                        deps[s.index].insert(d);
                    }
                }
            }
        }
    }
    // The stages the target needs, with cycles refused.
    let mut needed = BTreeSet::new();
    fn visit(
        i: usize,
        deps: &[BTreeSet<usize>],
        stages: &[Stage],
        path: &mut Vec<usize>,
        done: &mut BTreeSet<usize>,
    ) -> Result<()> {
        if done.contains(&i) {
            return Ok(());
        }
        if path.contains(&i) {
            let name = stages[i].name.clone().unwrap_or_else(|| i.to_string());
            return Err(BuildError::Request(format!(
                "circular dependency detected on stage: {name}"
            )));
        }
        path.push(i);
        for &d in &deps[i] {
            visit(d, deps, stages, path, done)?;
        }
        path.pop();
        done.insert(i);
        Ok(())
    }
    visit(target, &deps, &stages, &mut Vec::new(), &mut needed)?;
    let needed: Vec<usize> = needed.into_iter().collect();
    let mut first_step = HashMap::new();
    let mut n = 0;
    for &i in &needed {
        first_step.insert(i, n + 1);
        n += 1 + stages[i].steps.len();
    }
    Ok(Plan {
        stages,
        escape,
        meta_args: meta,
        deps,
        needed,
        first_step,
        total: n,
        target,
    })
}

fn quote(s: &str) -> String {
    if s.chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\' || c == '$')
    {
        format!(
            "\"{}\"",
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('$', "\\$")
        )
    } else {
        s.to_string()
    }
}

/// The result a stage publishes for the stages waiting on it.
type StageResult = Option<std::result::Result<ImageInfo, String>>;

struct Run<'a, B: Backend> {
    backend: &'a B,
    opts: &'a BuildOptions,
    plan: &'a Plan,
    out: &'a Output,
    results: Vec<watch::Sender<StageResult>>,
    failed: AtomicBool,
    /// Build args some stage consumed.
    used_args: std::sync::Mutex<BTreeSet<String>>,
    cache_from: Vec<ImageInfo>,
}

/// Runs a build; the image id. Messages go to `out` as the steps run.
pub async fn build<B: Backend>(backend: &B, opts: &BuildOptions, out: &Output) -> Result<Built> {
    let plan = plan(opts)?;
    let mut cache_from = Vec::new();
    for c in &opts.cache_from {
        if let Ok(img) = backend.image(c, false, out).await {
            cache_from.push(img);
        }
    }
    let run = Run {
        backend,
        opts,
        plan: &plan,
        out,
        results: (0..plan.stages.len())
            .map(|_| watch::channel(None).0)
            .collect(),
        failed: AtomicBool::new(false),
        used_args: Default::default(),
        cache_from,
    };
    let outcomes = futures_util::future::join_all(plan.needed.iter().map(|&i| run.stage(i))).await;
    let mut first_err = None;
    let mut target = None;
    for (i, r) in plan.needed.iter().zip(outcomes) {
        match r {
            Ok(img) if *i == plan.target => target = Some(img),
            Ok(_) => {}
            Err(BuildError::Invalid(m)) if m == CANCELLED => {}
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(e);
                }
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let img =
        target.ok_or_else(|| BuildError::Backend("the target stage did not finish".into()))?;
    out.aux(img.id.clone());
    let used = run.used_args.lock().map(|u| u.clone()).unwrap_or_default();
    let unused: Vec<&String> = opts
        .build_args
        .keys()
        .filter(|k| {
            !used.contains(*k)
                && !PROXY_ARGS.contains(&k.as_str())
                && !plan.meta_args.contains_key(*k)
        })
        .collect();
    if !unused.is_empty() {
        out.stream(format!(
            "[Warning] One or more build-args [{}] were not consumed\n",
            unused
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    out.stream(format!("Successfully built {}\n", short(&img.id)));
    for t in &opts.tags {
        backend.tag(&img.id, t).await?;
        let shown = if t
            .rsplit_once(':')
            .is_some_and(|(_, tag)| !tag.contains('/'))
        {
            t.clone()
        } else {
            format!("{t}:latest")
        };
        out.stream(format!("Successfully tagged {shown}\n"));
    }
    Ok(Built { id: img.id })
}

const CANCELLED: &str = "cancelled: another stage failed";

/// A stage's state as its steps run.
struct State {
    image: ImageInfo,
    config: Map<String, Value>,
    /// ARGs declared in this stage, with their values.
    args: Vec<(String, Option<String>)>,
    shell: Vec<String>,
    cmd_set: bool,
}

impl State {
    fn env(&self) -> Vec<String> {
        self.config
            .get("Env")
            .and_then(Value::as_array)
            .map(|a| strings(a))
            .unwrap_or_default()
    }

    fn lookup(&self, name: &str) -> Option<String> {
        for e in self.env().iter().rev() {
            if let Some((k, v)) = e.split_once('=') {
                if k == name {
                    return Some(v.to_string());
                }
            }
        }
        self.args
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
    }

    fn workdir(&self) -> String {
        match self.config.get("WorkingDir").and_then(Value::as_str) {
            Some(w) if !w.is_empty() => w.to_string(),
            _ => "/".to_string(),
        }
    }

    /// Build args that reach RUN's environment (declared, with a value, not set by ENV).
    fn run_args(&self) -> Vec<(String, String)> {
        let env_names: BTreeSet<String> = self
            .env()
            .iter()
            .filter_map(|e| e.split_once('=').map(|x| x.0.to_string()))
            .collect();
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &self.args {
            if let Some(v) = v {
                if !env_names.contains(k) {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        out.into_iter().collect()
    }

    fn set_env(&mut self, k: &str, v: &str) {
        let mut env = self.env();
        env.retain(|e| e.split_once('=').map(|x| x.0).unwrap_or(e) != k);
        env.push(format!("{k}={v}"));
        self.config.insert("Env".into(), json!(env));
    }
}

/// The strings of a JSON array (others left out).
fn strings(a: &[Value]) -> Vec<String> {
    a.iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn cache_key(parent: &str, created_by: &str, config: &Map<String, Value>) -> String {
    let mut h = Sha256::new();
    h.update(parent.as_bytes());
    h.update(b"\n");
    h.update(created_by.as_bytes());
    h.update(b"\n");
    h.update(serde_json::to_vec(config).unwrap_or_default());
    format!("{:x}", h.finalize())
}

impl<B: Backend> Run<'_, B> {
    async fn stage(&self, i: usize) -> Result<ImageInfo> {
        let r = self.stage_inner(i).await;
        if r.is_err() {
            self.failed.store(true, Ordering::SeqCst);
        }
        let publish = match &r {
            Ok(img) => Ok(img.clone()),
            Err(e) => Err(e.to_string()),
        };
        self.results[i].send_replace(Some(publish));
        r
    }

    async fn wait_stage(&self, i: usize) -> Result<ImageInfo> {
        let mut rx = self.results[i].subscribe();
        let v = rx
            .wait_for(|v| v.is_some())
            .await
            .map_err(|_| BuildError::Backend("stage result lost".into()))?;
        match v.clone() {
            Some(Ok(img)) => Ok(img),
            _ => Err(BuildError::Invalid(CANCELLED.into())),
        }
    }

    /// Between steps: another stage failed, or the client went away (its stream is
    /// closed), as dockerd cancels a build whose client disconnects.
    fn check_cancelled(&self) -> Result<()> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(BuildError::Invalid(CANCELLED.into()));
        }
        if self.out.0.is_closed() {
            return Err(BuildError::step(
                "the build was cancelled: its client went away",
            ));
        }
        Ok(())
    }

    async fn stage_inner(&self, i: usize) -> Result<ImageInfo> {
        let plan = self.plan;
        let stage = &plan.stages[i];
        for &d in &plan.deps[i] {
            self.wait_stage(d).await?;
        }
        self.check_cancelled()?;
        let mut n = plan.first_step[&i];
        self.out
            .stream(format!("Step {n}/{} : {}", plan.total, stage.from.original));
        self.out.stream("\n");
        let base = if stage.image.eq_ignore_ascii_case("scratch") {
            ImageInfo {
                id: String::new(),
                config: json!({
                    "architecture": self.opts.host_arch,
                    "os": "linux",
                    "config": {},
                    "rootfs": {"type": "layers", "diff_ids": []},
                    "history": [],
                }),
            }
        } else if let Some(d) = stage_ref(&plan.stages, &stage.image, false) {
            self.wait_stage(d).await?
        } else {
            self.backend
                .image(&stage.image, self.opts.pull, self.out)
                .await?
        };
        if let Some(p) = stage.platform.as_ref().or(self.opts.platform.as_ref()) {
            self.check_platform(&base, p)?;
        }
        if base.id.is_empty() {
            self.out.stream(" ---> \n");
        } else {
            self.out.stream(format!(" ---> {}\n", short(&base.id)));
        }
        let mut config = match base.container_config() {
            Value::Object(o) => o,
            _ => Map::new(),
        };
        let triggers: Vec<String> = config
            .get("OnBuild")
            .and_then(Value::as_array)
            .map(|a| strings(a))
            .unwrap_or_default();
        config.remove("OnBuild");
        // The default PATH when the base image sets none, as dockerd's builder does.
        let has_path = config
            .get("Env")
            .and_then(Value::as_array)
            .is_some_and(|a| {
                a.iter()
                    .any(|v| v.as_str().is_some_and(|s| s.starts_with("PATH=")))
            });
        if !has_path {
            let mut env = config
                .get("Env")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            env.insert(0, json!(DEFAULT_PATH));
            config.insert("Env".into(), Value::Array(env));
        }
        let mut st = State {
            image: base,
            config,
            args: Vec::new(),
            shell: vec!["/bin/sh".into(), "-c".into()],
            cmd_set: false,
        };
        if let Some(sh) = st.config.get("Shell").and_then(Value::as_array) {
            let sh: Vec<String> = sh
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            if !sh.is_empty() {
                st.shell = sh;
            }
        }
        if !triggers.is_empty() {
            self.out.stream(format!(
                "# Executing {} build trigger{}\n",
                triggers.len(),
                if triggers.len() == 1 { "" } else { "s" }
            ));
            for t in &triggers {
                let df = parser::parse(t)?;
                for ins in df.instructions {
                    let cmd = instructions::command(&ins, plan.escape)?;
                    self.step(&mut st, &cmd).await?;
                }
            }
        }
        for (ins, cmd) in &stage.steps {
            self.check_cancelled()?;
            n += 1;
            self.out
                .stream(format!("Step {n}/{} : {}", plan.total, ins.original));
            self.out.stream("\n");
            self.step(&mut st, cmd).await?;
        }
        Ok(st.image)
    }

    fn check_platform(&self, img: &ImageInfo, wanted: &str) -> Result<()> {
        let mut parts = wanted.split('/');
        let os = parts.next().unwrap_or("");
        let arch = parts.next().unwrap_or("");
        let host = format!("linux/{}", self.opts.host_arch);
        if os != "linux" || (!arch.is_empty() && arch != self.opts.host_arch) {
            return Err(BuildError::step(format!(
                "\"{wanted}\": unsupported platform: this daemon builds only for {host}"
            )));
        }
        let img_arch = img.config["architecture"].as_str().unwrap_or("");
        if !img.id.is_empty() && !arch.is_empty() && !img_arch.is_empty() && img_arch != arch {
            return Err(BuildError::step(format!(
                "image {} was found but does not match the specified platform: wanted {wanted}, actual: linux/{img_arch}",
                short(&img.id)
            )));
        }
        Ok(())
    }

    fn expand(&self, st: &State, word: &str) -> Result<String> {
        shell::expand_word(word, self.plan.escape, &|k| st.lookup(k))
    }

    fn expand_words(&self, st: &State, text: &str) -> Result<Vec<String>> {
        shell::expand_words(text, self.plan.escape, &|k| st.lookup(k))
    }

    /// One instruction over the stage's state.
    async fn step(&self, st: &mut State, cmd: &Command) -> Result<()> {
        match cmd {
            // The plan puts FROM at the head of a stage, never among its steps.
            Command::From { .. } => Err(BuildError::Backend("FROM inside a stage".into())),
            Command::Run { args, heredocs } => self.run(st, args, heredocs).await,
            Command::Copy(c) => self.copy(st, c).await,
            Command::Arg(list) => {
                let mut shown = Vec::new();
                for (k, default) in list {
                    let default = match default {
                        Some(d) => Some(self.expand(st, d)?),
                        None => None,
                    };
                    let value = match self.opts.build_args.get(k) {
                        Some(Some(v)) => Some(v.clone()),
                        _ => default
                            .clone()
                            .or_else(|| self.plan.meta_args.get(k).cloned().flatten()),
                    };
                    if let Ok(mut u) = self.used_args.lock() {
                        u.insert(k.clone());
                    }
                    st.args.retain(|(a, _)| a != k);
                    st.args.push((k.clone(), value));
                    shown.push(match default {
                        Some(d) => format!("{k}={d}"),
                        None => k.clone(),
                    });
                }
                self.commit_meta(st, &format!("ARG {}", shown.join(" ")))
                    .await
            }
            Command::Env(pairs) => {
                let mut shown = Vec::new();
                for (k, v) in pairs {
                    let k = self.expand(st, k)?;
                    let v = self.expand(st, v)?;
                    st.set_env(&k, &v);
                    shown.push(format!("{k}={v}"));
                }
                self.commit_meta(st, &format!("ENV {}", shown.join(" ")))
                    .await
            }
            Command::Label(pairs) => {
                let mut shown = Vec::new();
                let mut labels = st
                    .config
                    .get("Labels")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                for (k, v) in pairs {
                    let k = self.expand(st, k)?;
                    let v = self.expand(st, v)?;
                    shown.push(format!("{k}={v}"));
                    labels.insert(k, json!(v));
                }
                st.config.insert("Labels".into(), Value::Object(labels));
                self.commit_meta(st, &format!("LABEL {}", shown.join(" ")))
                    .await
            }
            Command::Cmd(args) => {
                let argv = self.argv(st, args);
                st.config.insert("Cmd".into(), json!(argv));
                st.cmd_set = true;
                self.commit_meta(st, &format!("CMD {}", go_list(&argv)))
                    .await
            }
            Command::Entrypoint(args) => {
                let argv = match args {
                    Args::Shell(s) if s.is_empty() => Vec::new(),
                    _ => self.argv(st, args),
                };
                if argv.is_empty() {
                    st.config.insert("Entrypoint".into(), Value::Null);
                } else {
                    st.config.insert("Entrypoint".into(), json!(argv));
                }
                if !st.cmd_set {
                    st.config.insert("Cmd".into(), Value::Null);
                }
                self.commit_meta(st, &format!("ENTRYPOINT {}", go_list(&argv)))
                    .await
            }
            Command::Shell(sh) => {
                st.shell = sh.clone();
                st.config.insert("Shell".into(), json!(sh));
                self.commit_meta(st, &format!("SHELL {}", go_list(sh)))
                    .await
            }
            Command::Expose(text) => {
                let mut ports = st
                    .config
                    .get("ExposedPorts")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let mut shown = Vec::new();
                for p in self.expand_words(st, text)? {
                    let spec = expose_port(&p)?;
                    for s in spec {
                        shown.push(s.clone());
                        ports.insert(s, json!({}));
                    }
                }
                st.config
                    .insert("ExposedPorts".into(), Value::Object(ports));
                shown.sort();
                self.commit_meta(st, &format!("EXPOSE {}", shown.join(" ")))
                    .await
            }
            Command::Volume(args) => {
                let list = match args {
                    Args::Json(v) => v
                        .iter()
                        .map(|x| self.expand(st, x))
                        .collect::<Result<Vec<_>>>()?,
                    Args::Shell(s) => self.expand_words(st, s)?,
                };
                let mut vols = st
                    .config
                    .get("Volumes")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                for v in &list {
                    if v.trim().is_empty() {
                        return Err(BuildError::step(
                            "VOLUME specified can not be an empty string",
                        ));
                    }
                    vols.insert(v.clone(), json!({}));
                }
                st.config.insert("Volumes".into(), Value::Object(vols));
                self.commit_meta(st, &format!("VOLUME {}", go_list(&list)))
                    .await
            }
            Command::User(u) => {
                let u = self.expand(st, u)?;
                st.config.insert("User".into(), json!(u));
                self.commit_meta(st, &format!("USER {u}")).await
            }
            Command::Workdir(w) => {
                let w = self.expand(st, w)?;
                let dir = if w.starts_with('/') {
                    clean_abs(&w)
                } else {
                    clean_abs(&format!("{}/{w}", st.workdir()))
                };
                st.config.insert("WorkingDir".into(), json!(dir));
                self.commit_meta(st, &format!("WORKDIR {dir}")).await
            }
            Command::StopSignal(s) => {
                let s = self.expand(st, s)?;
                st.config.insert("StopSignal".into(), json!(s));
                self.commit_meta(st, &format!("STOPSIGNAL {s}")).await
            }
            Command::Onbuild(t) => {
                let trigger = {
                    let (kw, rest) = t
                        .trim()
                        .split_once(char::is_whitespace)
                        .unwrap_or((t.trim(), ""));
                    format!("{} {}", kw.to_ascii_uppercase(), rest.trim())
                };
                let mut list = st
                    .config
                    .get("OnBuild")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                list.push(json!(trigger));
                st.config.insert("OnBuild".into(), Value::Array(list));
                self.commit_meta(st, &format!("ONBUILD {trigger}")).await
            }
            Command::Healthcheck { flags, args } => {
                let hc = instructions::healthcheck(flags, args).map_err(BuildError::step)?;
                st.config.insert("Healthcheck".into(), hc);
                self.commit_meta(st, &format!("HEALTHCHECK {args}")).await
            }
            Command::Maintainer(m) => {
                let m = self.expand(st, m)?;
                // The image's `author`, kept by the steps after it (the new image starts
                // from its parent's config).
                st.image.config["author"] = json!(m);
                self.commit_meta(st, &format!("MAINTAINER {m}")).await
            }
        }
    }

    fn argv(&self, st: &State, args: &Args) -> Vec<String> {
        match args {
            Args::Json(v) => v.clone(),
            Args::Shell(s) => {
                let mut a = st.shell.clone();
                a.push(s.clone());
                a
            }
        }
    }

    /// A step that changes only the config: an image without a layer.
    async fn commit_meta(&self, st: &mut State, text: &str) -> Result<()> {
        let created_by = format!("/bin/sh -c #(nop)  {text}");
        self.commit_step(st, None, created_by).await.map(|_| ())
    }

    /// Finds the step in the cache; true with the image taken when it is there.
    async fn probe_cache(&self, st: &mut State, key: &str, created_by: &str) -> bool {
        if self.opts.no_cache {
            return false;
        }
        let hit = match self.backend.cached(&st.image.id, key).await {
            Some(img) if self.cache_allowed(&img) => Some(img),
            _ => self.cache_source_hit(st, key, created_by).await,
        };
        match hit {
            Some(img) => {
                self.out.stream(" ---> Using cache\n");
                self.out.stream(format!(" ---> {}\n", short(&img.id)));
                st.image = img;
                true
            }
            None => false,
        }
    }

    /// With `--cache-from`, a local hit counts only when the image is one of those or lies
    /// under one of them (dockerd's rule).
    fn cache_allowed(&self, img: &ImageInfo) -> bool {
        if self.opts.cache_from.is_empty() {
            return true;
        }
        let hist = |i: &ImageInfo| i.config["history"].as_array().map(|a| a.len()).unwrap_or(0);
        let diffs = |i: &ImageInfo| {
            i.config["rootfs"]["diff_ids"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        };
        self.cache_from.iter().any(|s| {
            s.id == img.id
                || (hist(s) >= hist(img) && diffs(s).starts_with(&diffs(img)) && {
                    let a = s.config["history"].as_array().cloned().unwrap_or_default();
                    let b = img.config["history"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    a.iter()
                        .zip(b.iter())
                        .all(|(x, y)| x["created_by"] == y["created_by"])
                })
        })
    }

    /// A `--cache-from` image whose history continues the current image's with this step
    /// (same earlier steps, same layers): the step's image is made from it, its layer
    /// reused, as dockerd's image source cache does.
    async fn cache_source_hit(&self, st: &State, key: &str, created_by: &str) -> Option<ImageInfo> {
        let cur_hist = st.image.config["history"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let cur_diffs = st.image.config["rootfs"]["diff_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for s in &self.cache_from {
            let h = s.config["history"].as_array().cloned().unwrap_or_default();
            let d = s.config["rootfs"]["diff_ids"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let n = cur_hist.len();
            let matches = h.len() > n
                && h.iter()
                    .zip(cur_hist.iter())
                    .all(|(a, b)| a["created_by"] == b["created_by"])
                && h[n]["created_by"] == created_by
                && d.starts_with(&cur_diffs);
            if !matches {
                continue;
            }
            let layer = if h[n]["empty_layer"].as_bool() == Some(true) {
                None
            } else {
                match d.get(cur_diffs.len()).and_then(Value::as_str) {
                    Some(l) => Some(l.to_string()),
                    None => continue,
                }
            };
            let made = self
                .backend
                .commit(CommitRequest {
                    parent: st.image.id.clone(),
                    parent_config: st.image.config.clone(),
                    container: None,
                    layer,
                    config: Value::Object(st.config.clone()),
                    created_by: created_by.to_string(),
                    cache_key: key.to_string(),
                })
                .await;
            if let Ok(id) = made {
                if let Ok(img) = self.backend.get(&id).await {
                    return Some(img);
                }
            }
        }
        None
    }

    /// Commits a config-only step (from the cache when it is there); the stage moves to it.
    async fn commit_step(
        &self,
        st: &mut State,
        container: Option<String>,
        created_by: String,
    ) -> Result<()> {
        let key = cache_key(&st.image.id, &created_by, &st.config);
        if container.is_none() && self.probe_cache(st, &key, &created_by).await {
            return Ok(());
        }
        let id = self.commit(st, container, created_by, key).await?;
        self.out.stream(format!(" ---> {}\n", short(&id)));
        Ok(())
    }

    /// Commits the step's image (a container's changes, or none) over the stage's image,
    /// with the stage's config; the stage moves to it. Its id.
    async fn commit(
        &self,
        st: &mut State,
        container: Option<String>,
        created_by: String,
        key: String,
    ) -> Result<String> {
        let id = self
            .backend
            .commit(CommitRequest {
                parent: st.image.id.clone(),
                parent_config: st.image.config.clone(),
                container,
                layer: None,
                config: Value::Object(st.config.clone()),
                created_by,
                cache_key: key,
            })
            .await?;
        st.image = self.backend.get(&id).await?;
        Ok(id)
    }

    async fn run(&self, st: &mut State, args: &Args, heredocs: &[parser::Heredoc]) -> Result<()> {
        let argv = match (args, heredocs) {
            (Args::Shell(s), [h])
                if s.trim().starts_with("<<") && s.split_whitespace().count() == 1 =>
            {
                let mut a = st.shell.clone();
                a.push(h.content.clone());
                a
            }
            (Args::Shell(s), hs) if !hs.is_empty() => {
                let mut text = s.clone();
                for h in hs {
                    text.push('\n');
                    text.push_str(&h.content);
                    text.push_str(&h.name);
                }
                let mut a = st.shell.clone();
                a.push(text);
                a
            }
            _ => self.argv(st, args),
        };
        let used = st.run_args();
        let shown_args: Vec<String> = used
            .iter()
            .filter(|(k, _)| {
                !PROXY_ARGS.contains(&k.as_str()) || st.args.iter().any(|(a, _)| a == k)
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let created_by = if shown_args.is_empty() {
            argv.join(" ")
        } else {
            format!(
                "|{} {} {}",
                shown_args.len(),
                shown_args.join(" "),
                argv.join(" ")
            )
        };
        let key = cache_key(&st.image.id, &created_by, &st.config);
        if self.probe_cache(st, &key, &created_by).await {
            return Ok(());
        }
        let mut run_config = st.config.clone();
        let mut env = st.env();
        for (k, v) in &used {
            env.push(format!("{k}={v}"));
        }
        for k in PROXY_ARGS {
            if let Some(Some(v)) = self.opts.build_args.get(*k) {
                if !env.iter().any(|e| e.starts_with(&format!("{k}="))) {
                    env.push(format!("{k}={v}"));
                }
            }
        }
        run_config.insert("Env".into(), json!(env));
        run_config.insert("Cmd".into(), json!(argv));
        run_config.insert("Entrypoint".into(), json!([]));
        run_config.remove("Healthcheck");
        let container = self
            .backend
            .create(&st.image.id, Value::Object(run_config))
            .await?;
        self.out
            .stream(format!(" ---> Running in {}\n", short(&container)));
        let code = match self.backend.run(&container, self.out).await {
            Ok(c) => c,
            Err(e) => {
                if self.opts.force_rm || self.opts.rm {
                    self.backend.remove(&container).await;
                }
                return Err(e);
            }
        };
        if code != 0 {
            if self.opts.force_rm {
                self.backend.remove(&container).await;
            }
            return Err(BuildError::Step {
                message: format!(
                    "The command '{}' returned a non-zero code: {code}",
                    argv.join(" ")
                ),
                code: Some(code),
            });
        }
        let committed = self
            .commit(st, Some(container.clone()), created_by, key)
            .await;
        if self.opts.rm || self.opts.force_rm {
            self.out.stream(format!(
                "Removing intermediate container {}\n",
                short(&container)
            ));
            self.backend.remove(&container).await;
        }
        self.out.stream(format!(" ---> {}\n", short(&committed?)));
        Ok(())
    }

    async fn copy(&self, st: &mut State, c: &Copy) -> Result<()> {
        let kw = if c.add { "ADD" } else { "COPY" };
        let fail = |m: String| BuildError::step(format!("{kw} failed: {m}"));
        let scratch = self.backend.scratch_dir();
        let mut holds: Vec<String> = Vec::new();
        let result = self
            .copy_inner(st, c, kw, &fail, &scratch, &mut holds)
            .await;
        for h in holds {
            self.backend.remove(&h).await;
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn copy_inner(
        &self,
        st: &mut State,
        c: &Copy,
        kw: &str,
        fail: &(dyn Fn(String) -> BuildError + Sync),
        scratch: &Path,
        holds: &mut Vec<String>,
    ) -> Result<()> {
        // Expand sources and destination.
        let mut sources = Vec::new();
        for s in &c.sources {
            if c.json {
                sources.push(self.expand(st, s)?);
            } else {
                sources.extend(self.expand_words(st, s)?);
            }
        }
        let dest_raw = self.expand(st, &c.dest)?;
        let dir_dest = dest_raw.ends_with('/') || dest_raw.ends_with("/.") || dest_raw == ".";
        let dest = if dest_raw.starts_with('/') {
            clean_abs(&dest_raw)
        } else {
            clean_abs(&format!("{}/{}", st.workdir(), dest_raw))
        };
        let chown = match &c.chown {
            Some(o) => Some(self.expand(st, o)?),
            None => None,
        };
        let chmod = match &c.chmod {
            Some(m) => {
                let m = self.expand(st, m)?;
                Some(u32::from_str_radix(&m, 8).ok().filter(|v| *v <= 0o7777).ok_or_else(|| {
                    BuildError::step(format!("invalid chmod parameter: {m}. it should be octal string and between 0 and 07777"))
                })?)
            }
            None => None,
        };
        // Where the sources are read from.
        let root: PathBuf = match &c.from {
            Some(f) => {
                let f = self.expand(st, f)?;
                let img = match stage_ref(&self.plan.stages, &f, true) {
                    Some(i) if i < self.plan.stages.len() => self.wait_stage(i).await?,
                    Some(_) => {
                        return Err(BuildError::step(format!(
                            "invalid from flag value {f}: index out of bounds"
                        )))
                    }
                    None => self.backend.image(&f, false, self.out).await.map_err(|e| {
                        BuildError::step(format!("invalid from flag value {f}: {e}"))
                    })?,
                };
                let holder = self
                    .backend
                    .create(&img.id, json!({"Cmd": ["/bin/sh"]}))
                    .await?;
                holds.push(holder.clone());
                self.backend.view(&holder).await?
            }
            None => self.opts.context.clone(),
        };
        let in_context = c.from.is_none();
        // What each source brings: (entries under dest, kind, archive to unpack).
        struct Src {
            entries: Vec<Entry>,
            is_dir: bool,
            archive: Option<PathBuf>,
            base: String,
        }
        let mut srcs: Vec<Src> = Vec::new();
        let dl_dir = scratch.join(format!("src-{}", unique()));
        for h in &c.heredocs {
            std::fs::create_dir_all(&dl_dir)?;
            let body = if h.expand {
                self.expand(st, &h.content)
                    .unwrap_or_else(|_| h.content.clone())
            } else {
                h.content.clone()
            };
            let p = dl_dir.join(&h.name);
            std::fs::write(&p, body)?;
            set_mode(&p, 0o644)?;
            let meta = std::fs::symlink_metadata(&p)?;
            srcs.push(Src {
                entries: vec![Entry {
                    name: h.name.clone(),
                    path: p,
                    meta,
                }],
                is_dir: false,
                archive: None,
                base: h.name.clone(),
            });
        }
        for s in &sources {
            if c.add && (s.starts_with("http://") || s.starts_with("https://")) {
                std::fs::create_dir_all(&dl_dir)?;
                let (p, name) = download(s, &dl_dir).await.map_err(fail)?;
                let meta = std::fs::symlink_metadata(&p)?;
                srcs.push(Src {
                    entries: vec![Entry {
                        name: name.clone(),
                        path: p,
                        meta,
                    }],
                    is_dir: false,
                    archive: None,
                    base: name,
                });
                continue;
            }
            if in_context && context::escapes(s) {
                return Err(fail(format!(
                    "forbidden path outside the build context: {s} ()"
                )));
            }
            let matches = if context::has_glob(s) {
                let m = context::glob_matches(&root, s)?;
                if m.is_empty() {
                    return Err(fail("no source files were specified".into()));
                }
                m
            } else {
                vec![crate::ignore::clean(s)]
            };
            for m in matches {
                let path = context::resolve(&root, &m)?;
                let meta = match std::fs::metadata(&path) {
                    Ok(meta) => meta,
                    Err(_) if in_context => {
                        return Err(fail(format!("file not found in build context or excluded by .dockerignore: stat {s}: file does not exist")))
                    }
                    Err(_) => return Err(fail(format!("stat {s}: file does not exist"))),
                };
                let base = Path::new(&m)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if c.add && meta.is_file() {
                    let spool = scratch.join(format!("xz-{}", unique()));
                    let p2 = path.clone();
                    let is_archive = tokio::task::spawn_blocking(move || {
                        let r = context::open_archive(&p2, &spool).map(|o| o.is_some());
                        let _ = std::fs::remove_file(&spool);
                        r
                    })
                    .await
                    .map_err(|e| BuildError::Backend(e.to_string()))??;
                    if is_archive {
                        let meta = std::fs::symlink_metadata(&path)?;
                        srcs.push(Src {
                            entries: vec![Entry {
                                name: base.clone(),
                                path: path.clone(),
                                meta,
                            }],
                            is_dir: true,
                            archive: Some(path),
                            base,
                        });
                        continue;
                    }
                }
                let is_dir = meta.is_dir();
                let p2 = path.clone();
                let b2 = base.clone();
                let entries = tokio::task::spawn_blocking(move || {
                    let mut out = Vec::new();
                    if is_dir {
                        context::walk(&p2, "", &mut out)?;
                    } else {
                        let meta = std::fs::metadata(&p2)?;
                        out.push(Entry {
                            name: b2,
                            path: p2,
                            meta,
                        });
                    }
                    Ok::<_, std::io::Error>(out)
                })
                .await
                .map_err(|e| BuildError::Backend(e.to_string()))??;
                srcs.push(Src {
                    entries,
                    is_dir,
                    archive: None,
                    base,
                });
            }
        }
        if srcs.len() > 1 && !dir_dest {
            return Err(BuildError::step(format!(
                "When using {kw} with more than one source file, the destination must be a directory and end with a /"
            )));
        }
        // The checksum of everything, for the cache key.
        let all: Vec<Entry> = srcs.iter().flat_map(|s| s.entries.clone()).collect();
        let known = self.opts.digests.clone();
        let sum = tokio::task::spawn_blocking(move || context::checksum(&all, &known))
            .await
            .map_err(|e| BuildError::Backend(e.to_string()))??;
        let kind = match srcs.as_slice() {
            [s] if s.is_dir => "dir",
            [_] => "file",
            _ => "multi",
        };
        let shown_dest = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            dest.clone()
        };
        let mut created_by = format!("/bin/sh -c #(nop) {kw} {kind}:{sum} in {shown_dest} ");
        if let Some(o) = &chown {
            created_by.push_str(&format!("--chown={o} "));
        }
        if let Some(m) = chmod {
            created_by.push_str(&format!("--chmod={m:o} "));
        }
        let key = cache_key(&st.image.id, &created_by, &st.config);
        if self.probe_cache(st, &key, &created_by).await {
            let _ = std::fs::remove_dir_all(&dl_dir);
            return Ok(());
        }
        let mut cfg = st.config.clone();
        cfg.insert(
            "Cmd".into(),
            json!([
                "/bin/sh",
                "-c",
                created_by.trim_start_matches("/bin/sh -c ")
            ]),
        );
        cfg.insert("Entrypoint".into(), json!([]));
        let container = self
            .backend
            .create(&st.image.id, Value::Object(cfg))
            .await?;
        let r = async {
            let (uid, gid) = match &chown {
                Some(o) => self.backend.lookup_owner(&container, o).await?,
                None => (0, 0),
            };
            let own = Ownership {
                uid,
                gid,
                mode: chmod,
            };
            for s in &srcs {
                // The directory the entries land in, and their names there.
                let (dir, entries) = if s.archive.is_some() || s.is_dir {
                    (dest.clone(), s.entries.clone())
                } else if dir_dest
                    || srcs.len() > 1
                    || self.backend.stat(&container, &dest).await? == Some(true)
                {
                    (dest.clone(), rename(&s.entries, &s.base))
                } else {
                    let (parent, name) = split_parent(&dest);
                    (parent, rename(&s.entries, &name))
                };
                // The tar streams through a pipe from a writer thread to the extraction.
                let (reader, writer) = std::io::pipe()?;
                let archive = s.archive.clone();
                let spool = scratch.join(format!("xz-{}", unique()));
                let writing = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    let mut w = std::io::BufWriter::with_capacity(1 << 20, writer);
                    match archive {
                        Some(a) => {
                            if let Some(mut r) = context::open_archive(&a, &spool)? {
                                std::io::copy(&mut r, &mut w)?;
                            }
                            let _ = std::fs::remove_file(&spool);
                            std::io::Write::flush(&mut w)
                        }
                        None => context::write_tar(&entries, own, w),
                    }
                });
                let copied = self
                    .backend
                    .copy_into(&container, &dir, Box::new(reader))
                    .await;
                let written = writing
                    .await
                    .map_err(|e| BuildError::Backend(e.to_string()))?;
                copied?;
                written?;
            }
            let id = self
                .commit(st, Some(container.clone()), created_by, key)
                .await?;
            self.out.stream(format!(" ---> {}\n", short(&id)));
            Ok(())
        }
        .await;
        self.backend.remove(&container).await;
        let _ = std::fs::remove_dir_all(&dl_dir);
        r
    }
}

/// Renames a single file entry to `name` (a file copied to a new name).
fn rename(entries: &[Entry], name: &str) -> Vec<Entry> {
    entries
        .iter()
        .map(|e| Entry {
            name: name.to_string(),
            ..e.clone()
        })
        .collect()
}

fn split_parent(path: &str) -> (String, String) {
    match path.rsplit_once('/') {
        Some(("", n)) => ("/".into(), n.into()),
        Some((p, n)) => (p.into(), n.into()),
        None => ("/".into(), path.into()),
    }
}

/// An absolute path without `.`, `..` or doubled slashes.
pub fn clean_abs(p: &str) -> String {
    format!("/{}", crate::ignore::clean(p))
}

/// Go's `%v` of a string slice: `[a b c]`, as dockerd's history shows CMD and friends.
fn go_list(v: &[String]) -> String {
    format!(
        "[{}]",
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn set_mode(p: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

/// EXPOSE's port specs: `80`, `80/udp`, `8000-8002/tcp`.
fn expose_port(p: &str) -> Result<Vec<String>> {
    let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
        return Err(BuildError::step(format!("invalid proto: {proto}")));
    }
    let bad = || BuildError::step(format!("invalid containerPort: {port}"));
    let (lo, hi) = match port.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let v = port.parse::<u16>().map_err(|_| bad())?;
            (v, v)
        }
    };
    if hi < lo {
        return Err(bad());
    }
    Ok((lo..=hi).map(|n| format!("{n}/{proto}")).collect())
}

/// Fetches ADD's URL into `dir`: the file (mode 0600, modification time from
/// Last-Modified) and its name (the URL's last path segment).
async fn download(url: &str, dir: &Path) -> std::result::Result<(PathBuf, String), String> {
    let name = url
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && !n.contains(':'))
        .unwrap_or("download")
        .to_string();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!(
            "failed to GET {url} with status {}: {}",
            resp.status(),
            resp.status().canonical_reason().unwrap_or("")
        ));
    }
    let modified = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok());
    let path = dir.join(&name);
    let mut f = tokio::fs::File::create(&path)
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = resp.bytes_stream();
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        f.write_all(&chunk).await.map_err(|e| e.to_string())?;
    }
    f.flush().await.map_err(|e| e.to_string())?;
    drop(f);
    set_mode(&path, 0o600).map_err(|e| e.to_string())?;
    if let Some(m) = modified {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(m.timestamp().max(0) as u64);
        if let Ok(f) = std::fs::File::options().write(true).open(&path) {
            let _ = f.set_modified(t);
        }
    }
    Ok((path, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(df: &str) -> BuildOptions {
        BuildOptions {
            dockerfile: df.into(),
            host_arch: "amd64".into(),
            ..Default::default()
        }
    }

    #[test]
    fn stages_needed_and_numbered() {
        let p = plan(&opts(
            "ARG BASE=busybox\nFROM $BASE AS a\nRUN x\nFROM busybox AS unused\nRUN y\nFROM a AS b\nCOPY --from=0 /x /x\nFROM scratch\nCOPY --from=b /y /y\n",
        ))
        .expect("plan");
        assert_eq!(p.stages[0].image, "busybox");
        assert_eq!(p.needed, vec![0, 2, 3]);
        assert_eq!(p.total, 2 + 2 + 2);
        assert_eq!(p.first_step[&2], 3);
        let mut o = opts("FROM busybox AS a\nFROM busybox AS b\n");
        o.target = Some("a".into());
        assert_eq!(plan(&o).expect("plan").needed, vec![0]);
        o.target = Some("zz".into());
        assert_eq!(
            plan(&o).err().map(|e| e.to_string()).unwrap_or_default(),
            "failed to reach build target zz in Dockerfile"
        );
    }

    #[test]
    fn cycles_refused() {
        let e = plan(&opts(
            "FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\nCOPY --from=a /y /y\n",
        ))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            e.starts_with("circular dependency detected on stage: "),
            "{e}"
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(go_list(&["sh".into(), "-c".into()]), "[\"sh\" \"-c\"]");
        assert_eq!(expose_port("80").expect("p"), vec!["80/tcp"]);
        assert_eq!(expose_port("53/UDP").expect("p"), vec!["53/udp"]);
        assert_eq!(expose_port("8000-8001").expect("p").len(), 2);
        assert!(expose_port("x").is_err());
        assert_eq!(clean_abs("/a/./b/../c/"), "/a/c");
        assert_eq!(split_parent("/b.txt"), ("/".into(), "b.txt".into()));
    }
}
