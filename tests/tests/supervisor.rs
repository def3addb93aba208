//! Root tests of berth-supervisor: the real supervisor, real shims and a real runtime (runc by
//! default; `BERTH_TEST_RUNTIME=berth` for berth-runtime), driven over gRPC and `ctl`.

use std::path::Path;
use std::time::Duration;

use berth_proto::supervisor::v1 as pb;
use berth_proto::types::v1 as types;
use berth_tests::bins::require_workspace_binary;
use berth_tests::supervisor::{mounts_under, Supervisor};
use berth_tests::{skip_unless_root, unique_id, wait_until, Bundle, Cmd, SpecBuilder};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tonic::Code;

const NS: &str = "test";
const WAIT: Duration = Duration::from_secs(30);

/// A busybox bundle whose init runs `script` under sh (sh stays PID 1 and honours traps).
fn bundle(id: &str, script: &str) -> Bundle {
    Bundle::busybox(SpecBuilder::new(id).args(["sh", "-c", script])).expect("busybox bundle")
}

fn create_container(sup: &Supervisor, ns: &str, c: pb::Container) {
    sup.block_on(sup.containers().create(pb::CreateContainerRequest {
        namespace: ns.into(),
        container: Some(c),
    }))
    .expect("create container");
}

fn create_task(sup: &Supervisor, ns: &str, id: &str) -> pb::CreateTaskResponse {
    sup.block_on(sup.tasks().create(pb::CreateTaskRequest {
        namespace: ns.into(),
        container_id: id.into(),
        io: None,
    }))
    .expect("create task")
    .into_inner()
}

fn start(sup: &Supervisor, ns: &str, id: &str, exec_id: &str) -> u32 {
    sup.block_on(sup.tasks().start(pb::StartTaskRequest {
        namespace: ns.into(),
        container_id: id.into(),
        exec_id: exec_id.into(),
    }))
    .expect("start")
    .into_inner()
    .pid
}

fn wait(sup: &Supervisor, ns: &str, id: &str, exec_id: &str) -> u32 {
    let mut client = sup.tasks();
    let fut = client.wait(pb::WaitTaskRequest {
        namespace: ns.into(),
        container_id: id.into(),
        exec_id: exec_id.into(),
    });
    sup.block_on(async { tokio::time::timeout(WAIT, fut).await })
        .expect("wait timed out")
        .expect("wait")
        .into_inner()
        .exit_status
}

fn get(sup: &Supervisor, ns: &str, id: &str) -> Result<pb::GetTaskResponse, tonic::Status> {
    sup.block_on(sup.tasks().get(pb::GetTaskRequest {
        namespace: ns.into(),
        container_id: id.into(),
        exec_id: String::new(),
    }))
    .map(|r| r.into_inner())
}

fn kill_task(sup: &Supervisor, ns: &str, id: &str, signal: i32) {
    sup.block_on(sup.tasks().kill(pb::KillTaskRequest {
        namespace: ns.into(),
        container_id: id.into(),
        exec_id: String::new(),
        signal: signal as u32,
        all: false,
    }))
    .expect("kill");
}

fn delete_task(sup: &Supervisor, ns: &str, id: &str) -> pb::DeleteTaskResponse {
    sup.block_on(sup.tasks().delete(pb::DeleteTaskRequest {
        namespace: ns.into(),
        container_id: id.into(),
        exec_id: String::new(),
        force: false,
    }))
    .expect("delete task")
    .into_inner()
}

fn list_ids(sup: &Supervisor, ns: &str) -> Vec<String> {
    sup.block_on(sup.containers().list(pb::ListContainersRequest {
        namespace: ns.into(),
        label_filter: Default::default(),
    }))
    .expect("list containers")
    .into_inner()
    .containers
    .into_iter()
    .map(|c| c.id)
    .collect()
}

fn status_of(p: &types::ProcessState) -> types::Status {
    types::Status::try_from(p.status).unwrap_or(types::Status::Unknown)
}

fn run_lifecycle(sup: &Supervisor) {
    let id = unique_id("sv-life");
    let b = bundle(&id, "echo hello from $0; echo to-stderr >&2; exit 3");
    let events = sup.watch_events(NS);
    create_container(sup, NS, sup.container_for(&id, &b));
    let created = create_task(sup, NS, &id);
    assert!(created.pid > 0);
    assert!(!created.log_path.is_empty(), "create reports the log path");
    let st = get(sup, NS, &id)
        .expect("get task")
        .process
        .expect("process state");
    assert_eq!(status_of(&st), types::Status::Created);
    start(sup, NS, &id, "");
    assert_eq!(wait(sup, NS, &id, ""), 3);

    let got = get(sup, NS, &id).expect("get task");
    let st = got.process.expect("process state");
    assert_eq!(
        (status_of(&st), st.exit_status),
        (types::Status::Stopped, 3)
    );
    assert!(got.shim_pid > 0);
    let log = std::fs::read_to_string(&created.log_path).expect("read log file");
    assert!(log.contains("hello from sh"), "{log}");
    assert!(log.contains("to-stderr"), "{log}");
    let out = sup.ctl(NS, ["logs", &id]);
    out.assert_success();
    assert!(out.stdout.contains("hello from sh"), "{out}");

    events.wait_for("/tasks/exit", WAIT, |e| {
        e.container_id == id && e.topic == "/tasks/exit"
    });
    let d = delete_task(sup, NS, &id);
    assert_eq!(d.exit_status, 3);
    sup.block_on(sup.containers().delete(pb::DeleteContainerRequest {
        namespace: NS.into(),
        id: id.clone(),
    }))
    .expect("delete container");
    assert!(!list_ids(sup, NS).contains(&id));
    events.wait_for("/containers/delete", WAIT, |e| {
        e.container_id == id && e.topic == "/containers/delete"
    });
    let exit = events
        .all()
        .into_iter()
        .find(|e| e.container_id == id && e.topic == "/tasks/exit")
        .expect("exit event");
    assert_eq!(exit.exit_status, 3);
    assert_eq!(exit.namespace, NS);
    assert_eq!(
        events.topics_of(&id),
        [
            "/containers/create",
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete",
            "/containers/delete"
        ]
    );
    assert!(
        sup.live_shim_pids().is_empty(),
        "the shim exits after delete"
    );
    assert!(mounts_under(&sup.state()).is_empty());
}

#[test]
#[ignore = "needs root: runs containers under the supervisor"]
fn create_start_wait_reads_output_from_the_log_runc() {
    skip_unless_root!();
    let sup = Supervisor::start_with(berth_tests::bins::RUNC);
    run_lifecycle(&sup);
}

#[test]
#[ignore = "needs root: runs containers under the supervisor"]
fn create_start_wait_reads_output_from_the_log_berth_runtime() {
    skip_unless_root!();
    let sup = Supervisor::start_with(require_workspace_binary("berth-runtime"));
    run_lifecycle(&sup);
}

#[test]
#[ignore = "needs root: mounts an overlay rootfs"]
fn overlay_rootfs_mounts_are_mounted_for_the_task_and_unmounted_on_delete() {
    skip_unless_root!();
    let sup = Supervisor::start();
    let id = unique_id("sv-overlay");
    let b = bundle(
        &id,
        "echo written > /made-by-container; cat /made-by-container",
    );
    let (upper, work) = (sup.scratch("upper"), sup.scratch("work"));
    let mut c = sup.container_for(&id, &b);
    // root.path is replaced by the supervisor with "rootfs" inside its own bundle.
    c.rootfs = vec![types::Mount {
        r#type: "overlay".into(),
        source: "overlay".into(),
        target: String::new(),
        options: vec![
            format!("lowerdir={}", b.rootfs().display()),
            format!("upperdir={}", upper.display()),
            format!("workdir={}", work.display()),
        ],
    }];
    create_container(&sup, NS, c);
    let created = create_task(&sup, NS, &id);
    let mounted = mounts_under(&sup.state());
    assert_eq!(mounted.len(), 1, "{mounted:?}");
    assert!(mounted[0].ends_with(Path::new(NS).join(&id).join("rootfs")));
    start(&sup, NS, &id, "");
    assert_eq!(wait(&sup, NS, &id, ""), 0);
    assert_eq!(
        std::fs::read_to_string(upper.join("made-by-container")).unwrap(),
        "written\n"
    );
    assert!(
        !b.rootfs().join("made-by-container").exists(),
        "lower dir untouched"
    );
    let log = std::fs::read_to_string(&created.log_path).unwrap();
    assert!(log.contains("written"), "{log}");
    delete_task(&sup, NS, &id);
    assert!(mounts_under(&sup.state()).is_empty(), "rootfs unmounted");
    assert!(!mounted[0].exists(), "bundle removed");
}

#[test]
#[ignore = "needs root: runs containers under the supervisor"]
fn exec_runs_a_process_in_the_running_container() {
    skip_unless_root!();
    let sup = Supervisor::start();
    let id = unique_id("sv-exec");
    let b = bundle(&id, "echo marker > /tmp/m; while :; do sleep 0.1; done");
    create_container(&sup, NS, sup.container_for(&id, &b));
    create_task(&sup, NS, &id);
    start(&sup, NS, &id, "");

    let process = serde_json::json!({
        "cwd": "/",
        "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "sleep 0.2; cat /tmp/m; exit 4"],
    });
    let events = sup.watch_events(NS);
    sup.block_on(sup.tasks().exec(pb::ExecTaskRequest {
        namespace: NS.into(),
        container_id: id.clone(),
        exec_id: "e1".into(),
        spec: serde_json::to_vec(&process).unwrap(),
        io: None,
    }))
    .expect("exec");
    let pid = start(&sup, NS, &id, "e1");
    assert!(pid > 0);
    assert_eq!(wait(&sup, NS, &id, "e1"), 4);
    let st = sup
        .block_on(sup.tasks().get(pb::GetTaskRequest {
            namespace: NS.into(),
            container_id: id.clone(),
            exec_id: "e1".into(),
        }))
        .expect("get exec")
        .into_inner()
        .process
        .unwrap();
    assert_eq!(
        (status_of(&st), st.exit_status),
        (types::Status::Stopped, 4)
    );
    let log = std::fs::read_to_string(&st.log_path).expect("exec log");
    assert!(
        log.contains("marker"),
        "the exec sees the init's files: {log}"
    );
    events.wait_for("exec exit", WAIT, |e| {
        e.topic == "/tasks/exit" && e.exec_id == "e1" && e.exit_status == 4
    });
    let d = sup
        .block_on(sup.tasks().delete(pb::DeleteTaskRequest {
            namespace: NS.into(),
            container_id: id.clone(),
            exec_id: "e1".into(),
            force: false,
        }))
        .expect("delete exec")
        .into_inner();
    assert_eq!(d.exit_status, 4);

    // The same through ctl, which attaches to the output and exits with the status.
    let out = sup.ctl(NS, ["exec", &id, "--", "sh", "-c", "echo via-ctl; exit 2"]);
    assert_eq!(out.code(), 2, "{out}");
    assert!(out.stdout.contains("via-ctl"), "{out}");
    let st = get(&sup, NS, &id).unwrap().process.unwrap();
    assert_eq!(status_of(&st), types::Status::Running);
}

#[test]
#[ignore = "needs root: runs containers under the supervisor"]
fn kill_is_reported_as_an_exit_event_with_the_status() {
    skip_unless_root!();
    let sup = Supervisor::start();
    let events = sup.watch_events(NS);
    let term = unique_id("sv-term");
    let b1 = bundle(&term, "trap 'exit 7' TERM; while :; do sleep 0.1; done");
    let hard = unique_id("sv-kill");
    let b2 = bundle(&hard, "while :; do sleep 0.1; done");
    for (id, b) in [(&term, &b1), (&hard, &b2)] {
        create_container(&sup, NS, sup.container_for(id, b));
        create_task(&sup, NS, id);
        start(&sup, NS, id, "");
    }
    // Let sh install its trap before signalling.
    std::thread::sleep(Duration::from_millis(300));
    kill_task(&sup, NS, &term, libc::SIGTERM);
    kill_task(&sup, NS, &hard, libc::SIGKILL);
    let e = events.wait_for("TERM exit", WAIT, |e| {
        e.container_id == term && e.topic == "/tasks/exit"
    });
    assert_eq!(e.exit_status, 7);
    let e = events.wait_for("KILL exit", WAIT, |e| {
        e.container_id == hard && e.topic == "/tasks/exit"
    });
    assert_eq!(e.exit_status, 137);
    assert_eq!(wait(&sup, NS, &hard, ""), 137);
    // Kill of a stopped task's init is refused by the shim or runtime, not a hang.
    let err = sup
        .block_on(sup.tasks().delete(pb::DeleteTaskRequest {
            namespace: NS.into(),
            container_id: "no-such".into(),
            exec_id: String::new(),
            force: false,
        }))
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[test]
#[ignore = "needs root: runs containers under the supervisor"]
fn namespaces_do_not_see_each_other() {
    skip_unless_root!();
    let sup = Supervisor::start();
    let (a, b) = ("ns-a", "ns-b");
    let shared = unique_id("sv-same");
    let only_a = unique_id("sv-onlya");
    let bs = bundle(&shared, "while :; do sleep 0.1; done");
    let ba = bundle(&only_a, "while :; do sleep 0.1; done");
    let events_b = sup.watch_events(b);
    create_container(&sup, a, sup.container_for(&shared, &bs));
    create_container(&sup, a, sup.container_for(&only_a, &ba));
    create_container(&sup, b, sup.container_for(&shared, &bs));
    create_task(&sup, a, &only_a);
    start(&sup, a, &only_a, "");

    let mut in_a = list_ids(&sup, a);
    in_a.sort();
    let mut want = vec![shared.clone(), only_a.clone()];
    want.sort();
    assert_eq!(in_a, want);
    assert_eq!(list_ids(&sup, b), vec![shared.clone()]);
    let err = sup
        .block_on(sup.containers().get(pb::GetContainerRequest {
            namespace: b.into(),
            id: only_a.clone(),
        }))
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let tasks_b = sup
        .block_on(sup.tasks().list(pb::ListTasksRequest {
            namespace: b.into(),
        }))
        .unwrap()
        .into_inner()
        .tasks;
    assert!(tasks_b.is_empty(), "{tasks_b:?}");
    assert_eq!(get(&sup, b, &only_a).unwrap_err().code(), Code::NotFound);
    let err = sup
        .block_on(sup.tasks().kill(pb::KillTaskRequest {
            namespace: b.into(),
            container_id: only_a.clone(),
            exec_id: String::new(),
            signal: 9,
            all: false,
        }))
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let names: Vec<String> = sup
        .block_on(sup.namespaces().list(pb::ListNamespacesRequest {}))
        .unwrap()
        .into_inner()
        .namespaces
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert!(
        names.contains(&a.to_string()) && names.contains(&b.to_string()),
        "{names:?}"
    );
    let err = sup
        .block_on(
            sup.namespaces()
                .remove(pb::RemoveNamespaceRequest { name: a.into() }),
        )
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    // Only namespace b's own events reached b's subscriber.
    std::thread::sleep(Duration::from_millis(300));
    let seen = events_b.all();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|e| e.namespace == b), "{seen:#?}");
    assert!(seen.iter().all(|e| e.container_id != only_a));
}

#[test]
#[ignore = "needs root: runs containers under the supervisor"]
fn container_survives_supervisor_kill9_and_its_later_exit_is_reported() {
    skip_unless_root!();
    let mut sup = Supervisor::start();
    let id = unique_id("sv-restart");
    let b = bundle(&id, "trap 'exit 9' TERM; while :; do sleep 0.1; done");
    create_container(&sup, NS, sup.container_for(&id, &b));
    create_task(&sup, NS, &id);
    let pid = start(&sup, NS, &id, "");
    std::thread::sleep(Duration::from_millis(300));

    sup.kill9();
    assert_eq!(
        kill(Pid::from_raw(pid as i32), None),
        Ok(()),
        "container outlives the supervisor"
    );
    sup.restart();

    assert!(list_ids(&sup, NS).contains(&id), "still listed");
    let st = get(&sup, NS, &id).unwrap().process.unwrap();
    assert_eq!((status_of(&st), st.pid), (types::Status::Running, pid));
    let listed = sup.ctl(NS, ["ls"]);
    assert!(
        listed.stdout.contains(&id) && listed.stdout.contains("running"),
        "{listed}"
    );

    let events = sup.watch_events(NS);
    kill_task(&sup, NS, &id, libc::SIGTERM);
    assert_eq!(wait(&sup, NS, &id, ""), 9);
    let e = events.wait_for("exit after restart", WAIT, |e| {
        e.container_id == id && e.topic == "/tasks/exit"
    });
    assert_eq!(e.exit_status, 9);
    assert_eq!(delete_task(&sup, NS, &id).exit_status, 9);
}

#[test]
#[ignore = "needs root: runs containers under the supervisor"]
fn exit_while_supervisor_is_down_is_found_after_restart() {
    skip_unless_root!();
    let mut sup = Supervisor::start();
    let id = unique_id("sv-downexit");
    let b = bundle(&id, "sleep 1; exit 5");
    create_container(&sup, NS, sup.container_for(&id, &b));
    create_task(&sup, NS, &id);
    start(&sup, NS, &id, "");
    sup.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    sup.restart();
    assert_eq!(wait(&sup, NS, &id, ""), 5);
    let st = get(&sup, NS, &id).unwrap().process.unwrap();
    assert_eq!(
        (status_of(&st), st.exit_status),
        (types::Status::Stopped, 5)
    );
}

#[test]
#[ignore = "needs root: runs containers under the supervisor"]
fn shim_kill9_marks_the_task_stopped() {
    skip_unless_root!();
    let sup = Supervisor::start();
    let id = unique_id("sv-shimdie");
    let b = bundle(&id, "while :; do sleep 0.1; done");
    create_container(&sup, NS, sup.container_for(&id, &b));
    create_task(&sup, NS, &id);
    let pid = start(&sup, NS, &id, "");
    let events = sup.watch_events(NS);
    let shim_pid = get(&sup, NS, &id).unwrap().shim_pid;
    assert!(shim_pid > 0);
    kill(Pid::from_raw(shim_pid as i32), Signal::SIGKILL).unwrap();

    let st = wait_until("task reported stopped", WAIT, || {
        let st = get(&sup, NS, &id).ok()?.process?;
        (status_of(&st) == types::Status::Stopped).then_some(st)
    })
    .unwrap();
    assert_eq!(st.exit_status, 137);
    assert_eq!(wait(&sup, NS, &id, ""), 137);
    let e = events.wait_for("exit of dead shim's task", WAIT, |e| {
        e.container_id == id && e.topic == "/tasks/exit"
    });
    assert_eq!(e.exit_status, 137);
    // The container was force-deleted with the runtime.
    wait_until("container process gone", WAIT, || {
        kill(Pid::from_raw(pid as i32), None).is_err().then_some(())
    })
    .unwrap();
    let state = Cmd::new(sup.runtime())
        .arg("--root")
        .arg(sup.state().join("runtime").join(NS))
        .args(["state", &id])
        .output()
        .unwrap();
    assert_ne!(state.code(), 0, "runtime container removed: {state}");
    // Still listed as stopped until deleted; delete works without force.
    let listed = sup.ctl(NS, ["ls"]);
    assert!(listed.stdout.contains("stopped(137)"), "{listed}");
    assert_eq!(delete_task(&sup, NS, &id).exit_status, 137);
    assert_eq!(get(&sup, NS, &id).unwrap_err().code(), Code::NotFound);
}

#[test]
#[ignore = "needs root: runs the supervisor"]
fn bad_requests_fail_with_clear_errors_and_change_nothing() {
    skip_unless_root!();
    let mut sup = Supervisor::start();
    let id = unique_id("sv-bad");
    let b = bundle(&id, "while :; do sleep 0.1; done");
    create_container(&sup, NS, sup.container_for(&id, &b));

    let err = sup
        .block_on(sup.containers().get(pb::GetContainerRequest {
            namespace: NS.into(),
            id: "nope".into(),
        }))
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "container nope not found in namespace test");

    let err = sup
        .block_on(sup.containers().create(pb::CreateContainerRequest {
            namespace: NS.into(),
            container: Some(sup.container_for(&id, &b)),
        }))
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(
        err.message().contains("already exists"),
        "{}",
        err.message()
    );

    let bad_id = unique_id("sv-badspec");
    let mut c = sup.container_for(&bad_id, &b);
    c.spec = b"{\"ociVersion\": \"1.0.2\", \"process\": ".to_vec();
    let err = sup
        .block_on(sup.containers().create(pb::CreateContainerRequest {
            namespace: NS.into(),
            container: Some(c.clone()),
        }))
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .starts_with(&format!("invalid spec for container {bad_id}: ")),
        "{}",
        err.message()
    );
    c.spec = br#"{"ociVersion": "1.0.2", "process": {"args": "not-a-list"}}"#.to_vec();
    let err = sup
        .block_on(sup.containers().create(pb::CreateContainerRequest {
            namespace: NS.into(),
            container: Some(c.clone()),
        }))
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());

    let mut c = sup.container_for("../escape", &b);
    c.id = "../escape".into();
    let err = sup
        .block_on(sup.containers().create(pb::CreateContainerRequest {
            namespace: NS.into(),
            container: Some(c),
        }))
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("invalid container id"),
        "{}",
        err.message()
    );

    let err = sup
        .block_on(sup.tasks().create(pb::CreateTaskRequest {
            namespace: NS.into(),
            container_id: "nope".into(),
            io: None,
        }))
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // A task the runtime cannot create fails with the runtime's message and leaves nothing.
    let broken = unique_id("sv-broken");
    let bb = Bundle::busybox(SpecBuilder::new(&broken).args(["/no/such/binary"])).unwrap();
    create_container(&sup, NS, sup.container_for(&broken, &bb));
    let mut tasks = sup.tasks();
    let err = sup
        .block_on(async {
            tasks
                .create(pb::CreateTaskRequest {
                    namespace: NS.into(),
                    container_id: broken.clone(),
                    io: None,
                })
                .await?;
            tasks
                .start(pb::StartTaskRequest {
                    namespace: NS.into(),
                    container_id: broken.clone(),
                    exec_id: String::new(),
                })
                .await
                .map(|_| ())
        })
        .unwrap_err();
    assert!(err.message().contains("/no/such/binary"), "{err:?}");
    let out = sup.ctl(NS, ["delete", "--force", &broken]);
    out.assert_success();
    assert!(sup.live_shim_pids().is_empty(), "no shim left");
    assert!(mounts_under(&sup.state()).is_empty());

    // A running task: deleting it (without force) or its container is refused.
    create_task(&sup, NS, &id);
    start(&sup, NS, &id, "");
    let err = sup
        .block_on(sup.tasks().create(pb::CreateTaskRequest {
            namespace: NS.into(),
            container_id: id.clone(),
            io: None,
        }))
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let err = sup
        .block_on(sup.containers().delete(pb::DeleteContainerRequest {
            namespace: NS.into(),
            id: id.clone(),
        }))
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = sup
        .block_on(sup.tasks().delete(pb::DeleteTaskRequest {
            namespace: NS.into(),
            container_id: id.clone(),
            exec_id: String::new(),
            force: false,
        }))
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    let st = get(&sup, NS, &id).unwrap().process.unwrap();
    assert_eq!(status_of(&st), types::Status::Running);

    // Nothing of the refused requests was stored: a restarted supervisor sees one container.
    sup.kill9();
    sup.restart();
    assert_eq!(list_ids(&sup, NS), vec![id.clone()]);
    let out = sup.ctl(NS, ["delete", &id]);
    assert_ne!(out.code(), 0, "running task: {out}");
    assert!(out.stderr.contains("FailedPrecondition"), "{out}");
    let out = sup.ctl(NS, ["delete", "--force", &id]);
    out.assert_success();
    assert!(list_ids(&sup, NS).is_empty());
}

#[test]
#[ignore = "needs root: runs containers under the supervisor"]
fn ctl_run_prints_output_and_exits_with_the_status() {
    skip_unless_root!();
    let sup = Supervisor::start();
    let id = unique_id("sv-ctlrun");
    let b = bundle(&id, "echo from-run; exit 6");
    let out = sup.ctl(
        "ctl",
        [
            "run",
            "--rm",
            "--runtime",
            &sup.runtime().to_string_lossy(),
            "--bundle",
            &b.path().to_string_lossy(),
            &id,
        ],
    );
    assert_eq!(out.code(), 6, "{out}");
    assert!(out.stdout.contains("from-run"), "{out}");
    assert!(list_ids(&sup, "ctl").is_empty(), "--rm removed it");
    let v = sup.ctl("ctl", ["version"]);
    v.assert_success();
    assert!(v.stdout.contains("server: 0.1.0"), "{v}");
}

#[test]
#[ignore = "needs root: runs the supervisor"]
fn container_update_replaces_masked_fields_and_survives_restart() {
    skip_unless_root!();
    let mut sup = Supervisor::start();
    let id = unique_id("sv-update");
    let b = bundle(&id, "true");
    let mut c = sup.container_for(&id, &b);
    c.labels = [("tier".to_string(), "web".to_string())].into();
    c.image = "busybox:1".into();
    create_container(&sup, NS, c.clone());

    let mut upd = c.clone();
    upd.labels = [("tier".to_string(), "db".to_string())].into();
    upd.image = "ignored".into();
    let got = sup
        .block_on(sup.containers().update(pb::UpdateContainerRequest {
            namespace: NS.into(),
            container: Some(upd.clone()),
            update_mask: vec!["labels".into()],
        }))
        .expect("update")
        .into_inner()
        .container
        .unwrap();
    assert_eq!(got.labels.get("tier").map(String::as_str), Some("db"));
    assert_eq!(got.image, "busybox:1", "fields outside the mask are kept");
    let err = sup
        .block_on(sup.containers().update(pb::UpdateContainerRequest {
            namespace: NS.into(),
            container: Some(upd),
            update_mask: vec!["id".into()],
        }))
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    sup.kill9();
    sup.restart();
    let filtered = sup
        .block_on(sup.containers().list(pb::ListContainersRequest {
            namespace: NS.into(),
            label_filter: [("tier".to_string(), "db".to_string())].into(),
        }))
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].image, "busybox:1");
    assert_eq!(filtered[0].spec, c.spec, "the spec is stored as given");
    let none = sup
        .block_on(sup.containers().list(pb::ListContainersRequest {
            namespace: NS.into(),
            label_filter: [("tier".to_string(), "web".to_string())].into(),
        }))
        .unwrap()
        .into_inner()
        .containers;
    assert!(none.is_empty());
}

#[test]
#[ignore = "needs root: runs containers under a real supervisor"]
fn pause_resume_pids_stats_update_and_close_stdin() {
    skip_unless_root!();
    let sup = Supervisor::start();
    let id = unique_id("sv-ctl");
    // The init reads stdin to EOF, then reports how much it read and exits 7.
    let b = bundle(&id, "n=$(cat | wc -c); echo read $n; exit 7");
    create_container(&sup, NS, sup.container_for(&id, &b));
    let created = sup
        .block_on(sup.tasks().create(pb::CreateTaskRequest {
            namespace: NS.into(),
            container_id: id.clone(),
            io: Some(types::Io {
                stdin: true,
                ..Default::default()
            }),
        }))
        .expect("create task with stdin")
        .into_inner();
    assert!(!created.stdin_path.is_empty(), "stdin FIFO path reported");
    let pid = start(&sup, NS, &id, "");

    // Pause and resume show in the task's status.
    sup.block_on(sup.tasks().pause(pb::PauseTaskRequest {
        namespace: NS.into(),
        container_id: id.clone(),
    }))
    .expect("pause");
    let st = get(&sup, NS, &id).expect("get").process.expect("process");
    assert_eq!(status_of(&st), types::Status::Paused);
    sup.block_on(sup.tasks().resume(pb::ResumeTaskRequest {
        namespace: NS.into(),
        container_id: id.clone(),
    }))
    .expect("resume");
    let st = get(&sup, NS, &id).expect("get").process.expect("process");
    assert_eq!(status_of(&st), types::Status::Running);

    // The init is among the container's pids.
    let pids = sup
        .block_on(sup.tasks().list_pids(pb::ListPidsRequest {
            namespace: NS.into(),
            container_id: id.clone(),
        }))
        .expect("list pids")
        .into_inner()
        .processes;
    assert!(pids.iter().any(|p| p.pid == pid), "{pid} in {pids:?}");

    // A memory limit set by Update is what Stats reads back from the cgroup.
    let limit: u64 = 64 * 1024 * 1024;
    let resources = serde_json::json!({"memory": {"limit": limit}});
    sup.block_on(sup.tasks().update(pb::UpdateTaskRequest {
        namespace: NS.into(),
        container_id: id.clone(),
        resources: serde_json::to_vec(&resources).expect("resources json"),
    }))
    .expect("update");
    let stats = sup
        .block_on(sup.tasks().stats(pb::StatsRequest {
            namespace: NS.into(),
            container_id: id.clone(),
        }))
        .expect("stats")
        .into_inner()
        .stats
        .expect("stats in response");
    let mem = stats.memory.expect("memory stats");
    assert_eq!(mem.limit, limit, "{mem:?}");
    assert!(mem.usage > 0, "{mem:?}");
    assert!(stats.pids.expect("pids stats").current >= 1);

    // Closing stdin gives the init EOF; it exits with its own status.
    sup.block_on(sup.tasks().close_io(pb::CloseIoRequest {
        namespace: NS.into(),
        container_id: id.clone(),
        exec_id: String::new(),
        stdin: true,
    }))
    .expect("close stdin");
    assert_eq!(wait(&sup, NS, &id, ""), 7);
    let log = std::fs::read_to_string(&created.log_path).expect("read log");
    assert!(log.contains("read 0"), "{log}");
    delete_task(&sup, NS, &id);
}
