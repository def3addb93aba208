//! Differential test: the same scenarios against Debian's runc and against berth-runtime must
//! give the same observable results (exit codes, output, state fields, list columns).
//!
//! Each runtime's observations are a map of named facts; the test prints every fact that
//! differs, so one run shows all the incompatibilities at once. The runtime compared with runc
//! is [`Runtime::under_test`] (berth-runtime unless `BERTH_TEST_RUNTIME` says otherwise).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use berth_tests::cgroup::{read_limit, CgroupMode};
use berth_tests::process::Output;
use berth_tests::{skip_unless_root, unique_id, Bundle, Runtime, SpecBuilder};
use oci_spec::runtime::Capability;

const WAIT: Duration = Duration::from_secs(20);

type Facts = BTreeMap<String, String>;

/// Records one fact; a helper that failed to run at all records its error.
fn code(out: Result<Output>) -> String {
    match out {
        Ok(o) => o.code().to_string(),
        Err(e) => format!("error: {e:#}"),
    }
}

fn stdout(out: Result<Output>) -> String {
    match out {
        Ok(o) => o.stdout,
        Err(e) => format!("error: {e:#}"),
    }
}

fn bundle(spec: SpecBuilder) -> Bundle {
    Bundle::busybox(spec).expect("make busybox bundle")
}

/// Runs every scenario against `rt` and returns what was observed, with runtime-specific
/// values (ids, paths, pids) replaced by whether they matched what they should.
fn observe(rt: &Runtime) -> Facts {
    let mut f = Facts::new();
    let mut put = |k: &str, v: String| {
        f.insert(k.to_string(), v);
    };

    // run: exit codes and output, for process and config variations.
    type Edit = fn(SpecBuilder) -> SpecBuilder;
    let scenarios: Vec<(&str, Edit)> = vec![
        ("run.true", |s| s.args(["true"])),
        ("run.false", |s| s.args(["false"])),
        ("run.exit3", |s| s.shell("exit 3")),
        ("run.echo", |s| s.shell("echo out; echo err >&2")),
        ("run.hostname", |s| {
            s.hostname("diff-host").args(["hostname"])
        }),
        ("run.caps", |s| {
            s.args(["grep", "^Cap", "/proc/self/status"])
        }),
        ("run.caps_custom", |s| {
            s.capabilities(&[Capability::SysAdmin, Capability::Chown])
                .args(["grep", "^Cap", "/proc/self/status"])
        }),
        ("run.pid", |s| s.shell("echo $$")),
        ("run.env", |s| s.env("EXTRA", "1").args(["env"])),
        ("run.cwd_user", |s| {
            s.cwd("/tmp").user(1000, 1000).shell("pwd; id")
        }),
        ("run.readonly", |s| {
            s.readonly_rootfs(true).shell("touch /x; echo $?")
        }),
        ("run.seccomp", |s| {
            s.seccomp_deny(&["mkdir", "mkdirat"], libc::EPERM)
                .shell("mkdir /tmp/d; echo $?")
        }),
        ("run.masked", |s| {
            s.shell("wc -c < /proc/timer_list; ls /sys/firmware | wc -l")
        }),
        ("run.mounts", |s| s.shell("cut -d' ' -f2,3 /proc/mounts")),
        ("run.rlimit", |s| s.shell("ulimit -n")),
        ("run.noent", |s| s.args(["/no/such/program"])),
    ];
    for (name, edit) in scenarios {
        let id = unique_id("diff-run");
        let b = bundle(edit(SpecBuilder::new(&id)));
        let out = rt
            .cmd()
            .arg("run")
            .arg("--bundle")
            .arg(b.path())
            .arg(&id)
            .output();
        rt.track(&id, b.cgroups_path());
        match out {
            Ok(o) => {
                put(&format!("{name}.code"), o.code().to_string());
                if name == "run.env" {
                    // Order differs harmlessly (runc appends HOME last); compare the set.
                    let mut vars: Vec<&str> = o.stdout.lines().collect();
                    vars.sort();
                    put(&format!("{name}.stdout"), vars.join("\n"));
                } else if name != "run.noent" {
                    put(&format!("{name}.stdout"), o.stdout.clone());
                }
                if name == "run.echo" || name == "run.readonly" || name == "run.seccomp" {
                    put(&format!("{name}.stderr"), o.stderr.clone());
                }
            }
            Err(e) => put(&format!("{name}.code"), format!("error: {e:#}")),
        }
        put(
            &format!("{name}.listed_after"),
            rt.list_ids()
                .map(|ids| ids.contains(&id).to_string())
                .unwrap_or_else(|e| format!("error: {e:#}")),
        );
    }

    // run killed by SIGKILL from outside.
    {
        let id = unique_id("diff-killed");
        let b = bundle(SpecBuilder::new(&id).args(["sleep", "300"]));
        let running = rt.spawn_run(&id, &b, &[]);
        let up = rt.wait_status(&id, "running", WAIT).is_ok();
        put("run.killed.was_running", up.to_string());
        put(
            "run.killed.kill",
            code(rt.cmd().args(["kill", &id, "KILL"]).output()),
        );
        put("run.killed.code", code(running.wait(WAIT)));
    }

    // create / start / exec / pause / resume / kill / delete, with state at each step.
    let id = unique_id("diff-life");
    let b = bundle(
        SpecBuilder::new(&id)
            .args(["sleep", "300"])
            .memory_limit(48 << 20)
            .pids_limit(16),
    );
    let bundle_path = b.path().canonicalize().expect("bundle path");
    put("life.create", code(Ok(rt.create(&id, &b))));
    let mode = CgroupMode::detect();
    let cg = b.cgroups_path().expect("spec has a cgroups path");
    put(
        "life.cgroup.memory_limit",
        format!("{:?}", read_limit(&mode.memory_limit_file(&cg))),
    );
    put(
        "life.cgroup.pids_limit",
        format!("{:?}", read_limit(&mode.pids_limit_file(&cg))),
    );
    let state_facts = |step: &str, f: &mut Facts| match rt.state(&id) {
        Ok(s) => {
            f.insert(format!("life.{step}.status"), s.status.clone());
            f.insert(format!("life.{step}.id_matches"), (s.id == id).to_string());
            f.insert(format!("life.{step}.pid_positive"), (s.pid > 0).to_string());
            f.insert(
                format!("life.{step}.bundle_matches"),
                (s.bundle == bundle_path).to_string(),
            );
            f.insert(
                format!("life.{step}.rootfs_matches"),
                (s.rootfs.as_deref() == Some(bundle_path.join("rootfs").as_path())).to_string(),
            );
            f.insert(
                format!("life.{step}.has_created"),
                s.created.is_some().to_string(),
            );
            // The spec version differs by design (runc 1.1 says 1.0.2-dev); only require one.
            f.insert(
                format!("life.{step}.has_oci_version"),
                (!s.oci_version.is_empty()).to_string(),
            );
        }
        Err(e) => {
            f.insert(format!("life.{step}.state"), format!("error: {e:#}"));
        }
    };
    state_facts("created", &mut f);
    let raw = stdout(rt.cmd().args(["state", &id]).output());
    // Extra keys (berth-runtime adds `annotations`, as the OCI state allows) are fine; the
    // ones runc prints and shims read must all be there.
    let keys: Vec<String> =
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&raw)
            .map(|m| {
                [
                    "ociVersion",
                    "id",
                    "pid",
                    "status",
                    "bundle",
                    "rootfs",
                    "created",
                    "owner",
                ]
                .into_iter()
                .filter(|k| m.contains_key(*k))
                .map(String::from)
                .collect()
            })
            .unwrap_or_else(|_| vec![format!("unparsable: {raw}")]);
    f.insert("life.state.json_keys".into(), keys.join(","));
    let list = stdout(rt.cmd().arg("list").output());
    let mut lines = list.lines();
    f.insert(
        "life.list.header".into(),
        lines
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    );
    let row: Vec<String> = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(String::from)
        .collect();
    f.insert("life.list.row_columns".into(), row.len().to_string());
    f.insert(
        "life.list.row".into(),
        format!(
            "id={} status={} bundle={}",
            row.first().is_some_and(|c| *c == id),
            row.get(2).cloned().unwrap_or_default(),
            row.get(3)
                .is_some_and(|c| c == bundle_path.to_str().unwrap_or(""))
        ),
    );
    f.insert(
        "life.start".into(),
        code(rt.cmd().args(["start", &id]).output()),
    );
    f.insert(
        "life.running.waited".into(),
        rt.wait_status(&id, "running", WAIT).is_ok().to_string(),
    );
    state_facts("running", &mut f);
    let ex = rt
        .cmd()
        .args(["exec", &id, "sh", "-c", "echo in-exec; exit 5"])
        .output();
    f.insert(
        "life.exec.stdout".into(),
        stdout(rt.cmd().args(["exec", &id, "echo", "hi"]).output()),
    );
    f.insert("life.exec.code".into(), code(ex));
    let process = b
        .write_process_json("p.json", &["sh", "-c", "echo from-json; exit 6"])
        .expect("write process.json");
    match rt
        .cmd()
        .args(["exec", "--process"])
        .arg(&process)
        .arg(&id)
        .output()
    {
        Ok(o) => {
            f.insert("life.exec_process.code".into(), o.code().to_string());
            f.insert("life.exec_process.stdout".into(), o.stdout);
        }
        Err(e) => {
            f.insert("life.exec_process.code".into(), format!("error: {e:#}"));
        }
    }
    let ps = stdout(rt.cmd().args(["ps", "--format", "json", &id]).output());
    f.insert(
        "life.ps.count".into(),
        serde_json::from_str::<Vec<i64>>(ps.trim())
            .map(|v| v.len().to_string())
            .unwrap_or_else(|_| format!("unparsable: {ps}")),
    );
    f.insert(
        "life.pause".into(),
        code(rt.cmd().args(["pause", &id]).output()),
    );
    state_facts("paused", &mut f);
    f.insert(
        "life.resume".into(),
        code(rt.cmd().args(["resume", &id]).output()),
    );
    state_facts("resumed", &mut f);
    f.insert(
        "life.delete_running".into(),
        code(rt.cmd().args(["delete", &id]).output()),
    );
    f.insert(
        "life.kill".into(),
        code(rt.cmd().args(["kill", &id, "KILL"]).output()),
    );
    f.insert(
        "life.stopped.waited".into(),
        rt.wait_status(&id, "stopped", WAIT).is_ok().to_string(),
    );
    state_facts("stopped", &mut f);
    f.insert(
        "life.delete".into(),
        code(rt.cmd().args(["delete", &id]).output()),
    );
    f.insert(
        "life.listed_after_delete".into(),
        rt.list_ids()
            .map(|ids| ids.contains(&id).to_string())
            .unwrap_or_else(|e| format!("error: {e:#}")),
    );
    f.insert(
        "life.state_after_delete".into(),
        code(rt.cmd().args(["state", &id]).output()),
    );

    // Bad input: exit codes only (messages differ by design).
    let ghost = unique_id("diff-ghost");
    for verb in ["state", "start", "delete", "pause", "resume"] {
        f.insert(
            format!("bad.unknown.{verb}"),
            code(rt.cmd().args([verb, &ghost]).output()),
        );
    }
    f.insert(
        "bad.missing_bundle".into(),
        code(
            rt.cmd()
                .args(["create", "--bundle", "/nonexistent/b", &ghost])
                .output(),
        ),
    );
    f.insert(
        "bad.delete_force_unknown".into(),
        code(rt.cmd().args(["delete", "--force", &ghost]).output()),
    );
    f.insert(
        "bad.list_empty".into(),
        stdout(rt.cmd().args(["list", "-q"]).output()),
    );
    f
}

#[test]
#[ignore = "needs root: runs the same containers under runc and berth-runtime"]
fn berth_runtime_matches_runc() {
    skip_unless_root!();
    let runc = Runtime::runc();
    let berth = Runtime::under_test();
    let expected = observe(&runc);
    let got = observe(&berth);
    // Shown with --nocapture, to see what was compared.
    eprintln!("runc facts: {expected:#?}");

    let mut diffs = Vec::new();
    for key in expected
        .keys()
        .chain(got.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (e, g) = (expected.get(key), got.get(key));
        if e != g {
            diffs.push(format!(
                "  {key}:\n    runc:  {e:?}\n    {}: {g:?}",
                berth.name()
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differs from runc in {} of {} facts:\n{}",
        berth.name(),
        diffs.len(),
        expected.len(),
        diffs.join("\n")
    );
}
