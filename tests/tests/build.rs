//! Issue 14, builds, with the real docker CLI (`DOCKER_BUILDKIT=0`: POST /build) and `berth
//! build` against a real berthd: each instruction's effect on the image's config and files,
//! multi-stage builds with `--target`, unused stages skipped and independent ones
//! overlapping, `.dockerignore`, the cache (hits, a changed file invalidating only the steps
//! from its COPY, `--no-cache`, prune), a failing RUN's message and code, Dockerfiles from
//! stdin, escapes through `..` and symlinks refused, and dockerd's errors.
//!
//! With `$BERTH_CLI_TEST_HOST` pointing at a dockerd 20.10 the same tests check dockerd's
//! answers (the overlap of independent stages, a BuildKit trait, is then not asserted).
//!
//! Run: `cargo build --workspace --bins`, then
//! `sudo -E cargo test -p berth-tests --test build -- --include-ignored`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use berth_tests::cli::{CliEnv, IMAGE};
use berth_tests::{skip_unless_root, unique_id, Output};

fn start() -> Option<CliEnv> {
    berth_tests::cli::start_for_docker()
}

/// berthd and an empty context directory.
fn start_with_context() -> Option<(CliEnv, tempfile::TempDir)> {
    let env = start()?;
    Some((env, tempfile::tempdir().expect("tempdir")))
}

fn external() -> bool {
    std::env::var("BERTH_CLI_TEST_HOST").is_ok_and(|h| !h.is_empty())
}

/// `docker build <args> .` in `dir` with the classic builder.
fn build(env: &CliEnv, dir: &Path, args: &[&str]) -> Output {
    env.docker(["build"].iter().chain(args.iter()).chain(["."].iter()))
        .env("DOCKER_BUILDKIT", "0")
        .current_dir(dir)
        .timeout(Duration::from_secs(120))
        .output()
        .expect("run docker build")
}

#[track_caller]
fn build_ok(env: &CliEnv, dir: &Path, args: &[&str]) -> String {
    let out = build(env, dir, args);
    assert!(
        out.success(),
        "docker build {args:?}: {out}\n--- berthd log ---\n{}",
        env.daemon_logs()
    );
    out.stdout
}

fn write(dir: &Path, name: &str, data: &str) {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(p, data).expect("write");
}

fn sh(env: &CliEnv, image: &str, script: &str) -> String {
    env.docker_ok(&[
        "run",
        "--rm",
        "-u",
        "0",
        "--entrypoint",
        "sh",
        image,
        "-c",
        script,
    ])
}

fn inspect(env: &CliEnv, image: &str, format: &str) -> String {
    env.docker_ok(&["image", "inspect", "-f", format, image])
        .trim()
        .to_string()
}

/// Serves `body` over HTTP on loopback for each request, until the test ends.
fn serve(body: &'static [u8]) -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = c.write_all(head.as_bytes());
            let _ = c.write_all(body);
        }
    });
    format!("http://{addr}/files/fetched.txt")
}

#[test]
#[ignore = "needs root: builds run containers under berthd"]
fn every_instruction_shapes_the_image() {
    skip_unless_root!();
    if external() {
        eprintln!("skipping: heredocs and --chmod are BuildKit syntax dockerd 20.10's classic builder lacks");
        return;
    }
    let Some((env, ctx)) = start_with_context() else {
        return;
    };
    let d = ctx.path();
    write(d, "src/a.txt", "one\n");
    write(d, "src/b.txt", "two\n");
    write(d, "src/skip.md", "md\n");
    {
        let f = std::fs::File::create(d.join("arch.tgz")).expect("create");
        let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        let mut t = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(7);
        h.set_mode(0o640);
        h.set_uid(123);
        h.set_gid(45);
        t.append_data(&mut h, "inner/f", &b"inarch\n"[..])
            .expect("tar");
        t.into_inner().expect("tar").finish().expect("gz");
    }
    let url = serve(b"fetched body\n");
    let tag = unique_id("full").to_lowercase();
    let df = format!(
        r#"# escape=\
ARG BASE={IMAGE}
FROM ${{BASE}}
ARG WHO=world
ENV GREETING="hello ${{WHO}}" \
    EMPTY=${{UNSET:-fallback}} PLUS=${{WHO:+set}}
LABEL org.test.a="x y" who=${{WHO}}
WORKDIR /app
WORKDIR sub
COPY --chown=65534:65534 --chmod=600 src/*.txt /data/
COPY src/a.txt renamed.txt
COPY ["src/b.txt", "/json form/"]
ADD arch.tgz /unpacked/
ADD {url} /fetched/
COPY <<EOT /heredoc.txt
greeting is $GREETING
EOT
RUN <<EOS
echo from heredoc > /hd
echo "arg $WHO" >> /hd
EOS
RUN ["/bin/sh", "-c", "echo exec form > /exec"]
SHELL ["/bin/sh", "-ec"]
RUN echo shell is $0 > /shell
USER nobody
EXPOSE 80 53/udp
VOLUME ["/vol"]
STOPSIGNAL SIGUSR1
MAINTAINER builder@example.com
HEALTHCHECK --interval=5s --retries=2 CMD true
ONBUILD ENV TRIGGERED=yes
ONBUILD RUN echo ran-trigger
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/sub/renamed.txt"]
"#
    );
    write(d, "Dockerfile", &df);
    let out = build_ok(
        &env,
        d,
        &[
            "-t",
            &tag,
            "--build-arg",
            "WHO=berth",
            "--label",
            "built.by=test",
        ],
    );
    assert!(out.contains("Successfully built "), "{out}");
    assert!(
        out.contains(&format!("Successfully tagged {tag}:latest")),
        "{out}"
    );
    assert!(out.contains("Step 1/"), "{out}");

    let cfg = inspect(
        &env,
        &tag,
        "{{.Config.User}}|{{.Config.WorkingDir}}|{{json .Config.ExposedPorts}}|{{json .Config.Volumes}}|{{.Config.StopSignal}}|{{json .Config.Healthcheck}}|{{json .Config.OnBuild}}|{{json .Config.Entrypoint}}|{{json .Config.Cmd}}|{{json .Config.Labels}}",
    );
    assert_eq!(
        cfg,
        r#"nobody|/app/sub|{"53/udp":{},"80/tcp":{}}|{"/vol":{}}|SIGUSR1|{"Test":["CMD-SHELL","true"],"Interval":5000000000,"Retries":2}|["ENV TRIGGERED=yes","RUN echo ran-trigger"]|["/bin/sh","-c"]|["cat /app/sub/renamed.txt"]|{"built.by":"test","org.test.a":"x y","who":"berth"}"#
    );
    assert_eq!(inspect(&env, &tag, "{{.Author}}"), "builder@example.com");
    let env_list = inspect(&env, &tag, "{{json .Config.Env}}");
    assert!(env_list.contains(r#""GREETING=hello berth""#), "{env_list}");
    assert!(env_list.contains(r#""EMPTY=fallback""#), "{env_list}");
    assert!(env_list.contains(r#""PLUS=set""#), "{env_list}");
    assert!(env_list.contains(r#""PATH="#), "{env_list}");
    // The shell form of CMD and the image's run: the default command.
    assert_eq!(env.docker_ok(&["run", "--rm", &tag]), "one\n");
    let files = sh(
        &env,
        &tag,
        "stat -c '%u:%g %a %n' /data/a.txt /data/b.txt /unpacked/inner/f; \
         cat '/json form/b.txt' /heredoc.txt /hd /exec /shell /unpacked/inner/f /fetched/fetched.txt; \
         stat -c '%a %Y' /fetched/fetched.txt; ls /data",
    );
    assert_eq!(
        files,
        "65534:65534 600 /data/a.txt\n65534:65534 600 /data/b.txt\n123:45 640 /unpacked/inner/f\n\
         two\ngreeting is hello berth\nfrom heredoc\narg berth\nexec form\nshell is /bin/sh\ninarch\nfetched body\n\
         600 1445412480\na.txt\nb.txt\n"
    );
    // History: one entry per step, config-only steps without a layer.
    let hist = env.docker_ok(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", &tag]);
    assert!(hist.contains("/bin/sh -c #(nop)  USER nobody"), "{hist}");
    assert!(
        hist.contains("|1 WHO=berth /bin/sh -c echo exec form")
            || hist.contains("/bin/sh -c echo exec form"),
        "{hist}"
    );
    assert!(hist.contains("#(nop) COPY multi:"), "{hist}");

    // ONBUILD triggers run in a build FROM the image (as root here).
    let child = tempfile::tempdir().expect("tempdir");
    write(
        child.path(),
        "Dockerfile",
        &format!("FROM {tag}\nUSER root\n"),
    );
    let out = build(&env, child.path(), &["-t", &format!("{tag}-child")]);
    // The triggers run right after FROM.
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains("# Executing 2 build triggers"), "{out}");
    assert!(out.stdout.contains("ran-trigger"), "{out}");
    assert!(
        inspect(&env, &format!("{tag}-child"), "{{json .Config.Env}}").contains("TRIGGERED=yes")
    );
    assert_eq!(
        inspect(&env, &format!("{tag}-child"), "{{json .Config.OnBuild}}"),
        "null"
    );

    // berth build: the same API through berth's own client.
    let out = env
        .berth(["build", "-q", "--build-arg", "WHO=b", "."])
        .current_dir(d)
        .timeout(Duration::from_secs(120))
        .output()
        .expect("berth build");
    assert!(out.success(), "{out}");
    let id = out.stdout.trim().to_string();
    assert!(id.starts_with("sha256:"), "{out}");
    assert_eq!(sh(&env, &id, "echo $GREETING"), "hello b\n");
}

#[test]
#[ignore = "needs root: builds run containers under berthd"]
fn stages_targets_skips_and_overlap() {
    skip_unless_root!();
    let Some((env, ctx)) = start_with_context() else {
        return;
    };
    let d = ctx.path();
    // Two independent stages that each take a while, one unused stage that would fail,
    // and a final stage taking files from both.
    write(
        d,
        "Dockerfile",
        &format!(
            "FROM {IMAGE} AS a\n\
             RUN cut -d' ' -f1 /proc/uptime > /start; sleep 2; cut -d' ' -f1 /proc/uptime > /end; echo A > /what\n\
             FROM {IMAGE} AS b\n\
             RUN cut -d' ' -f1 /proc/uptime > /start; sleep 2; cut -d' ' -f1 /proc/uptime > /end; echo B > /what\n\
             FROM {IMAGE} AS broken\n\
             RUN exit {broken}\n\
             FROM scratch AS final\n\
             COPY --from=a /start /a.start\n\
             COPY --from=a /end /a.end\n\
             COPY --from=1 /start /b.start\n\
             COPY --from=b /end /b.end\n\
             COPY --from=b /what /what\n\
             COPY --from={IMAGE} /bin/busybox /bin/busybox\n\
             CMD [\"/bin/busybox\", \"cat\", \"/what\"]\n",
            // dockerd's classic builder runs unused stages too.
            broken = if external() { 0 } else { 9 }
        ),
    );
    let tag = unique_id("stages").to_lowercase();
    let out = build_ok(&env, d, &["--no-cache", "-t", &tag]);
    if !external() {
        // dockerd's classic builder runs every stage in order, the failing one too.
        assert!(!out.contains("RUN exit 9"), "the unused stage ran: {out}");
    }
    assert_eq!(env.docker_ok(&["run", "--rm", &tag]), "B\n");
    let times = env.docker_ok(&[
        "run",
        "--rm",
        &tag,
        "/bin/busybox",
        "cat",
        "/a.start",
        "/a.end",
        "/b.start",
        "/b.end",
    ]);
    let t: Vec<f64> = times
        .lines()
        .map(|l| l.trim().parse().expect("time"))
        .collect();
    assert_eq!(t.len(), 4, "{times}");
    if !external() {
        assert!(
            t[0] < t[3] && t[2] < t[1],
            "independent stages did not overlap: a {}..{}, b {}..{}",
            t[0],
            t[1],
            t[2],
            t[3]
        );
    }
    // --target builds that stage only.
    let tag_a = format!("{tag}-a");
    let out = build_ok(&env, d, &["--target", "a", "-t", &tag_a]);
    assert!(!out.contains("AS b"), "{out}");
    assert_eq!(sh(&env, &tag_a, "cat /what"), "A\n");
    let out = build(&env, d, &["--target", "nope"]);
    assert!(!out.success());
    assert!(
        out.stderr
            .contains("failed to reach build target nope in Dockerfile"),
        "{out}"
    );
}

#[test]
#[ignore = "needs root: builds run containers under berthd"]
fn cache_hits_invalidation_and_prune() {
    skip_unless_root!();
    let Some((env, ctx)) = start_with_context() else {
        return;
    };
    let d = ctx.path();
    let stamp = unique_id("stamp");
    write(d, "first.txt", "1\n");
    write(d, "second.txt", "2\n");
    write(
        d,
        "Dockerfile",
        &format!(
            "FROM {IMAGE}\nRUN echo {stamp} > /stamp\nCOPY first.txt /\nRUN cat /first.txt > /copy1\nCOPY second.txt /\nRUN cat /second.txt > /copy2\nARG UNUSED\n"
        ),
    );
    let first = build_ok(&env, d, &["-t", "cachetest"]);
    assert!(!first.contains("Using cache"), "{first}");
    let again = build_ok(&env, d, &["-t", "cachetest"]);
    assert_eq!(again.matches("Using cache").count(), 6, "{again}");
    let id1 = inspect(&env, "cachetest", "{{.Id}}");
    // Changing the second file invalidates its COPY and what follows, nothing before.
    write(d, "second.txt", "changed\n");
    let third = build_ok(&env, d, &["-t", "cachetest"]);
    assert_eq!(third.matches("Using cache").count(), 3, "{third}");
    assert_ne!(inspect(&env, "cachetest", "{{.Id}}"), id1);
    assert_eq!(sh(&env, "cachetest", "cat /copy1 /copy2"), "1\nchanged\n");
    // A build arg that is declared after the RUNs does not touch their cache.
    let fourth = build_ok(&env, d, &["-t", "cachetest", "--build-arg", "UNUSED=x"]);
    assert_eq!(fourth.matches("Using cache").count(), 6, "{fourth}");
    let none = build_ok(&env, d, &["--no-cache", "-t", "cachetest"]);
    assert!(!none.contains("Using cache"), "{none}");
    // Intermediate images are the cache: listed with -a only, not dangling.
    let all = env.docker_ok(&["images", "-a", "-q"]).lines().count();
    let top = env.docker_ok(&["images", "-q"]).lines().count();
    assert!(all > top, "{all} {top}");
    if !external() {
        let df = env.docker_ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
        assert!(
            df.lines()
                .any(|l| l.starts_with("Build Cache ") && l != "Build Cache 0"),
            "{df}"
        );
        // A filter it cannot match is refused, not ignored; `until` keeps what is newer.
        env.docker_fails(
            &["builder", "prune", "-f", "--filter", "id=x"],
            "Invalid filter 'id'",
        );
        env.docker_ok(&["builder", "prune", "-f", "--filter", "until=1h"]);
        let kept = build_ok(&env, d, &["-t", "cachetest"]);
        assert_eq!(kept.matches("Using cache").count(), 6, "{kept}");
        env.docker_ok(&["builder", "prune", "-f"]);
        let after = build_ok(&env, d, &["-t", "cachetest"]);
        assert!(!after.contains("Using cache"), "{after}");
        // The tagged image survives the prune and still runs.
        assert_eq!(sh(&env, "cachetest", "cat /copy2"), "changed\n");
    }
}

#[test]
#[ignore = "needs root: builds run containers under berthd"]
fn contexts_ignore_stdin_and_escapes() {
    skip_unless_root!();
    let Some((env, ctx)) = start_with_context() else {
        return;
    };
    let d = ctx.path();
    write(d, "keep/a.txt", "a\n");
    write(d, "keep/b.log", "log\n");
    write(d, "keep/important.log", "kept\n");
    write(d, "secret/key", "k\n");
    write(
        d,
        ".dockerignore",
        "# comment\nsecret\n**/*.log\n!keep/important.log\n",
    );
    write(
        d,
        "Dockerfile",
        &format!("FROM {IMAGE}\nCOPY . /ctx/\nRUN find /ctx | sort\n"),
    );
    let tag = unique_id("ignore").to_lowercase();
    build_ok(&env, d, &["-t", &tag]);
    assert_eq!(
        sh(&env, &tag, "cd /ctx && find . -type f | sort"),
        "./.dockerignore\n./Dockerfile\n./keep/a.txt\n./keep/important.log\n"
    );
    // A Dockerfile from stdin, with the directory as context.
    let out = env
        .docker(["build", "-q", "-f", "-", "."])
        .env("DOCKER_BUILDKIT", "0")
        .current_dir(d)
        .stdin(format!("FROM {IMAGE}\nCOPY keep/a.txt /from-stdin\n"))
        .timeout(Duration::from_secs(60))
        .output()
        .expect("build -f -");
    assert!(out.success(), "{out}\n{}", env.daemon_logs());
    let id = out.stdout.trim().to_string();
    assert_eq!(sh(&env, &id, "cat /from-stdin"), "a\n");
    // A bare Dockerfile as the whole context.
    let out = env
        .docker(["build", "-q", "-"])
        .env("DOCKER_BUILDKIT", "0")
        .stdin(format!("FROM {IMAGE}\nRUN echo bare > /bare\n"))
        .timeout(Duration::from_secs(60))
        .output()
        .expect("build -");
    assert!(out.success(), "{out}");
    assert_eq!(sh(&env, out.stdout.trim(), "cat /bare"), "bare\n");

    // Escapes: `..`, and symlinks that point out of the context resolve inside it.
    let esc = tempfile::tempdir().expect("tempdir");
    let e = esc.path();
    std::os::unix::fs::symlink("/etc/passwd", e.join("abs-link")).expect("symlink");
    std::os::unix::fs::symlink("../../../../etc", e.join("up-link")).expect("symlink");
    for (line, message) in [
        ("COPY ../outside /x", "COPY failed: forbidden path outside the build context: ../outside ()"),
        ("COPY abs-link /x", "COPY failed: file not found in build context or excluded by .dockerignore: stat abs-link: file does not exist"),
        ("COPY up-link/passwd /x", "COPY failed: file not found in build context or excluded by .dockerignore: stat up-link/passwd: file does not exist"),
    ] {
        write(e, "Dockerfile", &format!("FROM {IMAGE}\n{line}\n"));
        let out = build(&env, e, &[]);
        assert!(!out.success(), "{line} was accepted: {out}");
        assert!(out.stderr.contains(message), "{line}: want {message:?}: {out}");
    }
    // A symlink whose target exists inside the context is followed there.
    std::fs::create_dir_all(e.join("etc")).expect("mkdir");
    write(e, "etc/passwd", "inside\n");
    write(
        e,
        "Dockerfile",
        &format!("FROM {IMAGE}\nCOPY abs-link /x\n"),
    );
    let id = build_ok(&env, e, &["-q"]).trim().to_string();
    assert_eq!(sh(&env, &id, "cat /x"), "inside\n");
}

#[test]
#[ignore = "needs root: builds run containers under berthd"]
fn failures_and_options_as_dockerd() {
    skip_unless_root!();
    let Some((env, ctx)) = start_with_context() else {
        return;
    };
    let d = ctx.path();
    // A failing RUN: its output, dockerd's message and its exit code from the CLI.
    write(
        d,
        "Dockerfile",
        &format!("FROM {IMAGE}\nRUN echo out; echo err >&2; exit 7\n"),
    );
    let out = build(&env, d, &[]);
    assert_eq!(out.code(), 7, "{out}");
    assert!(out.stdout.contains("out\n"), "{out}");
    assert!(out.stdout.contains("err"), "{out}");
    assert!(
        out.stderr.contains(
            "The command '/bin/sh -c echo out; echo err >&2; exit 7' returned a non-zero code: 7"
        ),
        "{out}"
    );
    // The failed step's container stays (as dockerd's --rm keeps it); --force-rm removes it.
    let before = env.docker_ok(&["ps", "-aq"]).lines().count();
    let out = build(&env, d, &["--force-rm"]);
    assert_eq!(out.code(), 7, "{out}");
    if !external() {
        // (dockerd 20.10 keeps it all the same.)
        assert_eq!(env.docker_ok(&["ps", "-aq"]).lines().count(), before);
    }

    for (df, message) in [
        ("FROM X\n\nFOO bar\n".to_string(), "dockerfile parse error line 3: unknown instruction: FOO"),
        (format!("FROM {IMAGE}\nENV\n"), "dockerfile parse error line 2: ENV requires at least one argument"),
        (format!("FROM {IMAGE}\nENV --foo=1 a=b\n"), "dockerfile parse error line 2: Unknown flag: foo"),
        (format!("FROM {IMAGE}\nCOPY nope /x\n"), "COPY failed: file not found in build context or excluded by .dockerignore: stat nope: file does not exist"),
        (format!("FROM {IMAGE}\nCOPY --from=3 /x /x\n"), "invalid from flag value 3: index out of bounds"),
        (format!("FROM {IMAGE}\nRUN --mount=type=cache,target=/x true\n"), "the --mount option requires BuildKit"),
    ] {
        write(d, "Dockerfile", &df);
        let out = build(&env, d, &[]);
        assert!(!out.success(), "{df:?} was accepted: {out}");
        assert!(out.stderr.contains(message), "{df:?}: want {message:?}: {out}");
    }
    if !external() {
        // BuildKit refuses cycles between stages; the classic builder has no forward refs.
        write(
            d,
            "Dockerfile",
            &format!(
                "FROM {IMAGE} AS a\nCOPY --from=b /x /x\nFROM {IMAGE} AS b\nCOPY --from=a /y /y\n"
            ),
        );
        let out = build(&env, d, &["--target", "b"]);
        assert!(!out.success(), "{out}");
        assert!(
            out.stderr
                .contains("circular dependency detected on stage: "),
            "{out}"
        );
    }

    // RUN's options: --network none, --memory, several tags, -q, --iidfile.
    write(
        d,
        "Dockerfile",
        &format!(
            "FROM {IMAGE}\nRUN ls /sys/class/net > /nets; \
             (cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max) > /mem\n"
        ),
    );
    let iid = d.join("iid");
    let t1 = unique_id("opts").to_lowercase();
    let t2 = format!("{t1}-second");
    let out = build_ok(
        &env,
        d,
        &[
            "-q",
            "--network",
            "none",
            "--memory",
            "64m",
            "-t",
            &t1,
            "-t",
            &t2,
            "--iidfile",
            iid.to_str().expect("path"),
        ],
    );
    let id = out.trim().to_string();
    assert!(id.starts_with("sha256:") && !id.contains('\n'), "{out}");
    assert_eq!(std::fs::read_to_string(&iid).expect("iidfile").trim(), id);
    assert_eq!(inspect(&env, &t2, "{{.Id}}"), id);
    assert_eq!(sh(&env, &t1, "cat /nets /mem"), "lo\n67108864\n");
}

#[test]
#[ignore = "needs root: builds run containers under berthd"]
fn pull_and_cache_from_a_registry() {
    skip_unless_root!();
    if external() {
        eprintln!("skipping: the registry on 127.0.0.1 is insecure to berthd only by default");
        return;
    }
    let Some(env) = start() else { return };
    let registry = berth_tests::registry::Registry::start().expect("start docker-registry");
    let host = registry.host();
    let base = format!("{host}/base:1");
    let app = format!("{host}/app:1");
    env.docker_ok(&["tag", IMAGE, &base]);
    env.docker_ok(&["push", &base]);
    let ctx = tempfile::tempdir().expect("tempdir");
    let d = ctx.path();
    write(d, "x", "payload\n");
    write(
        d,
        "Dockerfile",
        &format!("FROM {base}\nRUN echo built > /f\nCOPY x /x\nENV DONE=1\n"),
    );
    // --pull pulls FROM's image even though it is here, and shows the pull.
    let out = build_ok(&env, d, &["--pull", "-t", &app]);
    assert!(out.contains("Pulling from base"), "{out}");
    let layers = inspect(&env, &app, "{{json .RootFS.Layers}}");
    env.docker_ok(&["push", &app]);
    // Nothing of the build left here: no local cache, then the image from the registry.
    env.docker_ok(&["rmi", &app]);
    env.docker_ok(&["builder", "prune", "-f"]);
    env.docker_ok(&["pull", &app]);
    let plain = build_ok(&env, d, &["-t", "nocachefrom"]);
    assert!(!plain.contains("Using cache"), "{plain}");
    env.docker_ok(&["rmi", "nocachefrom"]);
    env.docker_ok(&["builder", "prune", "-f"]);
    let cached = build_ok(&env, d, &["--cache-from", &app, "-t", "withcachefrom"]);
    assert_eq!(cached.matches("Using cache").count(), 3, "{cached}");
    assert_eq!(
        inspect(&env, "withcachefrom", "{{json .RootFS.Layers}}"),
        layers
    );
    assert_eq!(
        sh(&env, "withcachefrom", "cat /f /x; echo $DONE"),
        "built\npayload\n1\n"
    );
}

#[test]
#[ignore = "needs root: builds run containers under berthd"]
fn steps_that_change_nothing_stack_again() {
    skip_unless_root!();
    let Some((env, ctx)) = start_with_context() else {
        return;
    };
    let d = ctx.path();
    // Two RUNs that change nothing make the same (empty) layer twice; a third step runs on
    // an image naming that layer twice.
    write(
        d,
        "Dockerfile",
        &format!("FROM {IMAGE}\nRUN true\nRUN true\nRUN echo ran > /ran\n"),
    );
    let id = build_ok(&env, d, &["-q", "--no-cache"]).trim().to_string();
    assert_eq!(sh(&env, &id, "cat /ran"), "ran\n");
    let layers = inspect(&env, &id, "{{len .RootFS.Layers}}");
    assert_eq!(layers, "4", "every step keeps its layer, as dockerd");
}

#[test]
#[ignore = "needs root: builds run containers under berthd"]
fn a_build_whose_client_goes_away_stops() {
    skip_unless_root!();
    let Some((env, ctx)) = start_with_context() else {
        return;
    };
    let d = ctx.path();
    write(
        d,
        "Dockerfile",
        &format!("FROM {IMAGE}\nRUN sleep 2\nRUN sleep 2\nRUN sleep 2\n"),
    );
    let tag = unique_id("gone").to_lowercase();
    let client = env
        .docker(["build", "--no-cache", "-t", &tag, "."])
        .env("DOCKER_BUILDKIT", "0")
        .current_dir(d)
        .spawn()
        .expect("docker build");
    // The client is killed while the first RUN runs.
    let _ = client.wait(Duration::from_secs(1));
    // Long enough for the three steps (about 6.5 s) had the build gone on.
    std::thread::sleep(Duration::from_secs(7));
    // The build stopped after that step: no image, no step container left running.
    let images = env.docker_ok(&["images", "-q", &tag]);
    assert_eq!(images, "", "the build went on without its client");
    let running = env.docker_ok(&["ps", "-q"]);
    assert_eq!(running, "", "a step still runs");
}
