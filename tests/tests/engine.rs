//! berthd over raw HTTP on its unix socket: bad input gets Docker's status codes and
//! messages and loses nothing stored; `kill -9` of berthd keeps running containers, their
//! logs and every confirmed container and image.
//!
//! Run: `cargo build --workspace --bins`, then
//! `sudo -E cargo test -p berth-tests --test engine -- --include-ignored`.

use std::path::Path;
use std::time::Duration;

use berth_tests::cli::{busybox_tar_layer, docker_archive, CliEnv, IMAGE};
use berth_tests::http::{request, Response};
use berth_tests::{skip_unless_root, unique_id, wait_until};
use serde_json::{json, Value};

fn call(sock: &Path, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Response {
    request(sock, method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e:#}"))
}

fn post_json(sock: &Path, path: &str, body: &str) -> Response {
    call(
        sock,
        "POST",
        path,
        Some(("application/json", body.as_bytes())),
    )
}

/// Asserts `status` and a Docker error body `{"message": <message>}`.
#[track_caller]
fn assert_error(r: &Response, status: u16, message: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{}",
        r.text()
    );
    let body = r.json().expect("daemon answer");
    assert_eq!(body["message"], message, "{body}");
}

/// Asserts `status` and a Docker error body whose message starts with `prefix`.
#[track_caller]
fn assert_error_prefix(r: &Response, status: u16, prefix: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let body = r.json().expect("daemon answer");
    let m = body["message"].as_str().unwrap_or_default();
    assert!(m.starts_with(prefix), "{body}");
}

/// What the daemon stores: every container (id, name, state) and every image (id, tags).
/// Containers as (id, name, state) and images as (id, tags), sorted.
type Stored = (Vec<(String, String, String)>, Vec<(String, Vec<String>)>);

fn snapshot(sock: &Path) -> Stored {
    let r = call(sock, "GET", "/v1.45/containers/json?all=1", None);
    assert_eq!(r.status, 200, "{}", r.text());
    let mut cs: Vec<(String, String, String)> = r
        .json()
        .expect("daemon answer")
        .as_array()
        .expect("daemon answer")
        .iter()
        .map(|c| {
            (
                c["Id"].as_str().expect("daemon answer").to_string(),
                c["Names"][0].as_str().expect("daemon answer").to_string(),
                c["State"].as_str().expect("daemon answer").to_string(),
            )
        })
        .collect();
    cs.sort();
    let r = call(sock, "GET", "/v1.45/images/json", None);
    assert_eq!(r.status, 200, "{}", r.text());
    let mut is: Vec<(String, Vec<String>)> = r
        .json()
        .expect("daemon answer")
        .as_array()
        .expect("daemon answer")
        .iter()
        .map(|i| {
            let mut tags: Vec<String> = i["RepoTags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect();
            tags.sort();
            (i["Id"].as_str().expect("daemon answer").to_string(), tags)
        })
        .collect();
    is.sort();
    (cs, is)
}

fn create(sock: &Path, name: &str, config: Value) -> String {
    let r = post_json(
        sock,
        &format!("/v1.45/containers/create?name={name}"),
        &config.to_string(),
    );
    assert_eq!(r.status, 201, "create {name}: {}", r.text());
    r.json().expect("daemon answer")["Id"]
        .as_str()
        .expect("daemon answer")
        .to_string()
}

fn inspect(sock: &Path, id: &str) -> Value {
    let r = call(sock, "GET", &format!("/v1.45/containers/{id}/json"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().expect("daemon answer")
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn bad_requests_get_dockers_status_and_message_and_lose_nothing() {
    skip_unless_root!();
    let Some(env) = CliEnv::start() else { return };
    let sock = env.socket().expect("berthd on a unix socket");
    let keep = unique_id("keep");
    let keep_id = create(
        &sock,
        &keep,
        json!({"Image": IMAGE, "Cmd": ["sleep", "300"], "Labels": {"t": "engine"}}),
    );
    let r = call(
        &sock,
        "POST",
        &format!("/v1.45/containers/{keep_id}/start"),
        None,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let before = snapshot(&sock);
    let fresh = unique_id("fresh");

    // Malformed and mistyped bodies on create: 400 "invalid JSON", no container made.
    let path = format!("/v1.45/containers/create?name={fresh}");
    let body = format!("{{\"Image\": \"{IMAGE}\", \"Cmd\": [");
    assert_error_prefix(&post_json(&sock, &path, &body), 400, "invalid JSON: ");
    let r = post_json(&sock, &path, "not json at all");
    assert_error_prefix(&r, 400, "invalid JSON: ");
    let body = json!({"Image": IMAGE, "Cmd": ["true"], "HostConfig": {"Memory": "lots"}});
    assert_error(
        &post_json(&sock, &path, &body.to_string()),
        400,
        "invalid JSON: json: cannot unmarshal string into Go struct field \
         HostConfig.HostConfig.Memory of type int64",
    );
    let body = json!({"Image": IMAGE, "Cmd": ["true"], "Tty": "yes"});
    assert_error_prefix(
        &post_json(&sock, &path, &body.to_string()),
        400,
        "invalid JSON: ",
    );
    assert_error(
        &post_json(&sock, &path, ""),
        400,
        "config cannot be empty in order to create a container",
    );

    // Unknown objects: 404 with Docker's words.
    for (method, p) in [
        ("GET", "/v1.45/containers/berth-nope/json"),
        ("POST", "/v1.45/containers/berth-nope/start"),
        ("POST", "/v1.45/containers/berth-nope/stop"),
        ("POST", "/v1.45/containers/berth-nope/kill"),
        ("POST", "/v1.45/containers/berth-nope/wait"),
        ("POST", "/v1.45/containers/berth-nope/pause"),
        ("GET", "/v1.45/containers/berth-nope/logs?stdout=1"),
        ("GET", "/v1.45/containers/berth-nope/top"),
        ("DELETE", "/v1.45/containers/berth-nope"),
        ("GET", "/containers/berth-nope/json"),
    ] {
        let r = call(&sock, method, p, None);
        assert_error(&r, 404, "No such container: berth-nope");
    }
    let r = post_json(
        &sock,
        "/v1.45/containers/berth-nope/exec",
        r#"{"Cmd": ["true"]}"#,
    );
    assert_error(&r, 404, "No such container: berth-nope");
    let r = call(&sock, "GET", "/v1.45/exec/berth-nope/json", None);
    assert_error(&r, 404, "No such exec instance: berth-nope");
    let r = call(&sock, "GET", "/v1.45/images/berth-nope/img:1/json", None);
    assert_error(&r, 404, "No such image: berth-nope/img:1");
    let r = call(&sock, "DELETE", "/v1.45/images/berth-nope", None);
    assert_error(&r, 404, "No such image: berth-nope:latest");
    let body = json!({"Image": "berth-nope/img", "Cmd": ["true"]});
    assert_error(
        &post_json(&sock, &path, &body.to_string()),
        404,
        "No such image: berth-nope/img:latest",
    );

    // Name conflicts: 409 naming the holder.
    let body = json!({"Image": IMAGE, "Cmd": ["true"]}).to_string();
    let r = post_json(
        &sock,
        &format!("/v1.45/containers/create?name={keep}"),
        &body,
    );
    assert_error(
        &r,
        409,
        &format!(
            "Conflict. The container name \"/{keep}\" is already in use by container \
             \"{keep_id}\". You have to remove (or rename) that container to be able to \
             reuse that name."
        ),
    );
    let other = create(
        &sock,
        &unique_id("other"),
        json!({"Image": IMAGE, "Cmd": ["true"]}),
    );
    let r = call(
        &sock,
        "POST",
        &format!("/v1.45/containers/{other}/rename?name={keep}"),
        None,
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("is already in use"), "{}", r.text());
    // Bad parameters: 400.
    let r = call(
        &sock,
        "POST",
        &format!("/v1.45/containers/{keep}/kill?signal=NOPE"),
        None,
    );
    assert_error(&r, 400, "Invalid signal: NOPE");
    let r = call(&sock, "GET", "/v1.45/containers/json?filters=notjson", None);
    assert_eq!(r.status, 400, "{}", r.text());
    let r = post_json(&sock, "/v1.45/containers/create?name=a/b", &body);
    assert_eq!(r.status, 400, "{}", r.text());
    let r = call(&sock, "DELETE", &format!("/v1.45/containers/{keep}"), None);
    assert_eq!(r.status, 409, "removing a running container: {}", r.text());
    assert!(r.text().contains("cannot remove"), "{}", r.text());

    // API versions out of range: 400 with dockerd's message; in range: served.
    assert_error(
        &call(&sock, "GET", "/v1.99/version", None),
        400,
        "client version 1.99 is too new. Maximum supported API version is 1.45",
    );
    assert_error(
        &call(&sock, "GET", "/v1.12/containers/json", None),
        400,
        "client version 1.12 is too old. Minimum supported API version is 1.24, please upgrade \
         your client to a newer version",
    );
    for v in ["/v1.24", "/v1.41", ""] {
        let r = call(&sock, "GET", &format!("{v}/version"), None);
        assert_eq!(r.status, 200, "{v}: {}", r.text());
        assert_eq!(r.json().unwrap()["ApiVersion"], "1.45");
    }

    // Bad archives on /images/load: refused (dockerd: 400 or 500), nothing tagged.
    let tar = |path: &str, data: &[u8]| {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, data).unwrap();
        b.into_inner().unwrap()
    };
    let bad_tag = format!("berth-engine-test/bad:{}", unique_id("t"));
    let layer = busybox_tar_layer().unwrap();
    // A layer the store does not have yet (a present one is not unpacked again, as dockerd).
    let fresh_dir = tempfile::tempdir().unwrap();
    std::fs::write(fresh_dir.path().join("data"), "x".repeat(64 * 1024)).unwrap();
    let mut corrupt = berth_tests::tarball::Layer::from_dir(fresh_dir.path(), false).unwrap();
    let mid = corrupt.bytes.len() / 2;
    corrupt.bytes[mid] ^= 0xff;
    let archives: Vec<(&str, Vec<u8>)> = vec![
        (
            "not a tar",
            b"this is not a tar archive, not at all".repeat(40),
        ),
        (
            "random bytes",
            (0..20_000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
        ("no manifest", tar("hello.txt", b"hi\n")),
        ("bad manifest", tar("manifest.json", b"{not json")),
        (
            "layer not matching its diff_id",
            docker_archive(&corrupt, &bad_tag).unwrap(),
        ),
        ("truncated", {
            let a = docker_archive(&layer, &bad_tag).unwrap();
            a[..a.len() / 3].to_vec()
        }),
    ];
    for (what, bytes) in &archives {
        let r = call(
            &sock,
            "POST",
            "/v1.45/images/load?quiet=1",
            Some(("application/x-tar", bytes)),
        );
        // A stream that already started reports the error in a JSON message instead.
        let in_stream = r.status == 200 && r.text().contains("\"error");
        assert!(
            r.status == 400 || r.status == 500 || in_stream,
            "{what}: {} {}",
            r.status,
            r.text()
        );
        if !in_stream {
            let m = r.json().unwrap()["message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(!m.is_empty(), "{what}: no message in {}", r.text());
        }
        let r = call(&sock, "GET", &format!("/v1.45/images/{bad_tag}/json"), None);
        assert_eq!(
            r.status,
            404,
            "{what}: the bad archive left {bad_tag}: {}",
            r.text()
        );
    }

    // Nothing confirmed before was lost or changed, and the daemon still works.
    let r = call(&sock, "DELETE", &format!("/v1.45/containers/{other}"), None);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(snapshot(&sock), before);
    let state = inspect(&sock, &keep_id);
    assert_eq!(state["State"]["Running"], true, "{state}");
    let r = call(&sock, "GET", "/_ping", None);
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
    assert_eq!(r.header("api-version"), Some("1.45"));
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn kill_9_of_berthd_keeps_running_containers_logs_and_state() {
    skip_unless_root!();
    let Some(mut env) = CliEnv::start() else {
        return;
    };
    let sock = env.socket().expect("berthd on a unix socket");
    let sleeper = create(
        &sock,
        &unique_id("k9-sleep"),
        json!({"Image": IMAGE, "Cmd": ["sleep", "300"]}),
    );
    // 100 lines, one per 100 ms, then exit 3: it runs through the restart.
    let ticker = create(
        &sock,
        &unique_id("k9-tick"),
        json!({"Image": IMAGE, "Cmd": ["sh", "-c",
            "i=0; while [ $i -lt 100 ]; do echo line$i; i=$((i+1)); sleep 0.1; done; exit 3"]}),
    );
    let exited = create(
        &sock,
        &unique_id("k9-done"),
        json!({"Image": IMAGE, "Cmd": ["sh", "-c", "echo finished; exit 5"]}),
    );
    let created = create(
        &sock,
        &unique_id("k9-created"),
        json!({"Image": IMAGE, "Cmd": ["true"], "Labels": {"kept": "yes"}}),
    );
    for id in [&sleeper, &ticker, &exited] {
        let r = call(
            &sock,
            "POST",
            &format!("/v1.45/containers/{id}/start"),
            None,
        );
        assert_eq!(r.status, 204, "{}", r.text());
    }
    let r = call(
        &sock,
        "POST",
        &format!("/v1.45/containers/{exited}/wait"),
        None,
    );
    assert_eq!(r.json().unwrap()["StatusCode"], 5, "{}", r.text());
    let extra_tag = format!("berth-engine-test/kept:{}", unique_id("t"));
    let (repo, tag) = extra_tag.split_once(':').unwrap();
    let r = call(
        &sock,
        "POST",
        &format!("/v1.45/images/{IMAGE}/tag?repo={repo}&tag={tag}"),
        None,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let pid_of = |id: &str| inspect(&sock, id)["State"]["Pid"].as_i64().unwrap();
    let (sleep_pid, tick_pid) = (pid_of(&sleeper), pid_of(&ticker));
    assert!(sleep_pid > 0 && tick_pid > 0);
    wait_until("5 lines from the ticker", Duration::from_secs(15), || {
        let r = call(
            &sock,
            "GET",
            &format!("/v1.45/containers/{ticker}/logs?stdout=1"),
            None,
        );
        (r.body.len() > 5 * (8 + 6)).then_some(())
    })
    .unwrap();
    let before = snapshot(&sock);

    env.kill_daemon().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    for pid in [sleep_pid, tick_pid] {
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "container process {pid} died with berthd"
        );
    }
    env.restart_daemon().unwrap();

    // Every container and image is there, the running ones with the same processes.
    let after = snapshot(&sock);
    assert_eq!(after, before, "state changed across kill -9 of berthd");
    for (id, pid) in [(&sleeper, sleep_pid), (&ticker, tick_pid)] {
        let s = inspect(&sock, id);
        assert_eq!(s["State"]["Status"], "running", "{s}");
        assert_eq!(s["State"]["Pid"], pid, "{s}");
    }
    let s = inspect(&sock, &exited);
    assert_eq!(
        (
            s["State"]["Status"].as_str(),
            s["State"]["ExitCode"].as_i64()
        ),
        (Some("exited"), Some(5)),
        "{s}"
    );
    assert_eq!(inspect(&sock, &created)["State"]["Status"], "created");
    assert_eq!(inspect(&sock, &created)["Config"]["Labels"]["kept"], "yes");
    let r = call(
        &sock,
        "GET",
        &format!("/v1.45/images/{extra_tag}/json"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // The ticker's later exit is seen with its code, and its log has every line once, in
    // order: the shim kept writing while berthd was down.
    let r = request(
        &sock,
        "POST",
        &format!("/v1.45/containers/{ticker}/wait"),
        None,
    )
    .unwrap();
    assert_eq!(r.json().unwrap()["StatusCode"], 3, "{}", r.text());
    assert_eq!(inspect(&sock, &ticker)["State"]["ExitCode"], 3);
    let r = call(
        &sock,
        "GET",
        &format!("/v1.45/containers/{ticker}/logs?stdout=1"),
        None,
    );
    let text = demux_stdout(&r.body);
    let want: String = (0..100).map(|i| format!("line{i}\n")).collect();
    assert_eq!(text, want, "log not continuous across the restart");
    let r = call(
        &sock,
        "GET",
        &format!("/v1.45/containers/{exited}/logs?stdout=1"),
        None,
    );
    assert_eq!(demux_stdout(&r.body), "finished\n");
    // attach with logs=1 and no stream replays the log and ends, as dockerd.
    let r = call(
        &sock,
        "POST",
        &format!("/v1.45/containers/{exited}/attach?logs=1&stdout=1&stderr=1&stream=0"),
        None,
    );
    assert_eq!(demux_stdout(&r.body), "finished\n");

    // The adopted sleeper is still controlled: kill, wait, remove.
    let r = call(
        &sock,
        "POST",
        &format!("/v1.45/containers/{sleeper}/kill"),
        None,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let r = call(
        &sock,
        "POST",
        &format!("/v1.45/containers/{sleeper}/wait"),
        None,
    );
    assert_eq!(r.json().unwrap()["StatusCode"], 137, "{}", r.text());
    assert!(
        !Path::new(&format!("/proc/{sleep_pid}")).exists() || {
            // The pid may linger as a zombie for a moment.
            std::thread::sleep(Duration::from_millis(300));
            !Path::new(&format!("/proc/{sleep_pid}")).exists()
        }
    );
    let r = call(
        &sock,
        "DELETE",
        &format!("/v1.45/containers/{sleeper}"),
        None,
    );
    assert_eq!(r.status, 204, "{}", r.text());
}

/// The stdout payload of Docker's multiplexed stream (8-byte headers: stream, 0, 0, 0, len).
fn demux_stdout(mut b: &[u8]) -> String {
    let mut out = Vec::new();
    while b.len() >= 8 {
        let len = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
        let end = (8 + len).min(b.len());
        if b[0] == 1 {
            out.extend_from_slice(&b[8..end]);
        }
        b = &b[end..];
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `kill -9` of berthd in the middle of a stream of creates and tags: every create and tag
/// that was answered before the kill is there after the restart, and every listed container
/// can be inspected, started and removed (no half-written record).
#[test]
#[ignore = "needs root: runs containers under berthd"]
fn kill_9_during_creates_and_tags_loses_nothing_confirmed() {
    skip_unless_root!();
    let Some(mut env) = CliEnv::start() else {
        return;
    };
    let sock = env.socket().expect("berthd on a unix socket");
    let prefix = unique_id("burst");
    let worker = {
        let sock = sock.clone();
        let prefix = prefix.clone();
        std::thread::spawn(move || {
            let mut confirmed = Vec::new();
            for i in 0..2000 {
                let body = json!({"Image": IMAGE, "Cmd": ["sh", "-c", "echo ok"]}).to_string();
                let path = format!("/v1.45/containers/create?name={prefix}-{i}");
                let Ok(r) = request(
                    &sock,
                    "POST",
                    &path,
                    Some(("application/json", body.as_bytes())),
                ) else {
                    break;
                };
                if r.status != 201 {
                    break;
                }
                let id = r.json().expect("create answer")["Id"]
                    .as_str()
                    .expect("Id")
                    .to_string();
                let tag = format!("/v1.45/images/{IMAGE}/tag?repo=berth-burst/{prefix}&tag=t{i}");
                match request(&sock, "POST", &tag, None) {
                    Ok(r) if r.status == 201 => confirmed.push((id, i)),
                    _ => break,
                }
            }
            confirmed
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    env.kill_daemon().unwrap();
    let confirmed = worker.join().unwrap();
    assert!(
        confirmed.len() >= 3,
        "only {} creates before the kill",
        confirmed.len()
    );
    eprintln!(
        "{} creates and tags confirmed before kill -9",
        confirmed.len()
    );
    env.restart_daemon().unwrap();

    let (containers, images) = snapshot(&sock);
    let tags: Vec<&String> = images.iter().flat_map(|(_, t)| t).collect();
    for (id, i) in &confirmed {
        assert!(
            containers
                .iter()
                .any(|(cid, name, _)| cid == id && *name == format!("/{prefix}-{i}")),
            "confirmed container {prefix}-{i} ({id}) lost"
        );
        let tag = format!("berth-burst/{prefix}:t{i}");
        assert!(tags.contains(&&tag), "confirmed tag {tag} lost");
    }
    // Whatever is listed (the last create may or may not have been stored) is whole.
    for (id, _, state) in &containers {
        assert_eq!(state, "created", "{id}");
        inspect(&sock, id);
    }
    let (last, _) = confirmed.last().unwrap();
    let r = call(
        &sock,
        "POST",
        &format!("/v1.45/containers/{last}/start"),
        None,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let r = call(
        &sock,
        "POST",
        &format!("/v1.45/containers/{last}/wait"),
        None,
    );
    assert_eq!(r.json().unwrap()["StatusCode"], 0, "{}", r.text());
    let r = call(
        &sock,
        "GET",
        &format!("/v1.45/containers/{last}/logs?stdout=1"),
        None,
    );
    assert_eq!(demux_stdout(&r.body), "ok\n");
    for (id, _, _) in &containers {
        let r = call(
            &sock,
            "DELETE",
            &format!("/v1.45/containers/{id}?force=1"),
            None,
        );
        assert_eq!(r.status, 204, "{id}: {}", r.text());
    }
    assert!(snapshot(&sock).0.is_empty());
}
