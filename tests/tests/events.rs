//! End-to-end tests of `GET /events` on berthd: through `berth events`, the real docker CLI
//! (when installed) and raw HTTP on the API socket.
//!
//! Build first: `cargo build --workspace --bins`, then
//! `sudo -E cargo test -p berth-tests --test events -- --include-ignored`.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use berth_tests::cli::{CliEnv, IMAGE};
use berth_tests::{skip_unless_root, unique_id, Cmd};
use serde_json::Value;

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// The JSON events `berth events <args> --format '{{json .}}'` prints.
fn events_json(env: &CliEnv, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["events", "--format", "{{json .}}"];
    all.extend_from_slice(args);
    let out = env
        .berth(&all)
        .timeout(Duration::from_secs(20))
        .output()
        .expect("run berth events");
    assert_eq!(out.code(), 0, "berth {all:?}: {out}");
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn actions(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["Action"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A raw HTTP/1.0 GET on the daemon's unix socket: (status, body).
fn raw_get(env: &CliEnv, path: &str) -> (u16, String) {
    let sock = env.host().strip_prefix("unix://").expect("a unix host");
    let mut s = std::os::unix::net::UnixStream::connect(sock).expect("connect to the API socket");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("set read timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: berth\r\n\r\n").expect("send request");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read response");
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

fn q(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn container_life_is_reported_in_order_with_attributes_and_filters_apply() {
    skip_unless_root!();
    let Some(env) = CliEnv::start() else { return };
    let name = unique_id("ev");
    let since = format!("{:.9}", unix_now() - 1.0);
    // A live subscriber, to see the same events as they happen.
    let live_file = env.dir().join(format!("{name}.events"));
    let live = env
        .berth(["events", "--format", "{{json .}}", "--filter"])
        .arg(format!("container={name}"))
        .stdout_to(&live_file)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let out = env.run(&[
        "run",
        "--name",
        &name,
        "-l",
        "tier=front",
        IMAGE,
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(out.code(), 3, "{out}");
    env.ok(&["rm", &name]);
    let until = format!("{:.9}", unix_now() + 0.5);
    std::thread::sleep(Duration::from_millis(600));

    // Replayed from the ring buffer: since and until bound the stream, which then ends.
    let filter = format!("container={name}");
    let evs = events_json(
        &env,
        &["--since", &since, "--until", &until, "--filter", &filter],
    );
    let acts = actions(&evs);
    let want = ["create", "attach", "start", "die", "destroy"];
    let pos: Vec<usize> = want
        .iter()
        .map(|a| {
            acts.iter()
                .position(|x| x == a)
                .unwrap_or_else(|| panic!("no {a} in {acts:?}"))
        })
        .collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{acts:?}");
    let id = evs[0]["Actor"]["ID"].as_str().unwrap().to_string();
    for e in &evs {
        assert_eq!(e["Type"], "container");
        assert_eq!(e["scope"], "local");
        assert_eq!(e["Actor"]["ID"], id.as_str());
        assert_eq!(e["id"], id.as_str(), "legacy id");
        assert_eq!(e["status"], e["Action"], "legacy status");
        assert_eq!(e["from"], IMAGE, "legacy from");
        assert_eq!(e["Actor"]["Attributes"]["name"], name.as_str());
        assert_eq!(e["Actor"]["Attributes"]["image"], IMAGE);
        assert_eq!(e["Actor"]["Attributes"]["tier"], "front", "labels");
        let (t, tn) = (e["time"].as_i64().unwrap(), e["timeNano"].as_i64().unwrap());
        assert_eq!(t, tn / 1_000_000_000);
    }
    let die = &evs[pos[3]];
    assert_eq!(die["Actor"]["Attributes"]["exitCode"], "3", "{die}");

    // The live subscriber saw the same sequence, and is still streaming.
    let read_live = || -> Vec<String> {
        std::fs::read_to_string(&live_file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|e| e["Action"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while read_live().len() < acts.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(read_live(), acts, "live and replayed streams differ");
    let mut live = live;
    assert!(!live.has_exited(), "a stream without until does not end");
    drop(live);

    // Filters: by event, by label, by type; keys combine with AND.
    let range = ["--since", since.as_str(), "--until", until.as_str()];
    let with = |extra: &[&str]| {
        let mut a = range.to_vec();
        a.extend_from_slice(extra);
        actions(&events_json(&env, &a))
    };
    assert_eq!(
        with(&["--filter", &filter, "--filter", "event=die"]),
        ["die"]
    );
    assert_eq!(
        with(&[
            "--filter",
            &filter,
            "--filter",
            "event=start",
            "--filter",
            "event=die"
        ]),
        ["start", "die"]
    );
    assert_eq!(with(&["--filter", "label=tier=front"]), acts);
    assert!(with(&["--filter", "label=tier=back"]).is_empty());
    assert!(with(&["--filter", &filter, "--filter", "type=image"]).is_empty());
    assert_eq!(
        with(&["--filter", &format!("container={}", &id[..12])]),
        acts,
        "container by id prefix"
    );
    // The plain format, as docker prints it.
    let out = env.ok(&[
        "events", "--since", &since, "--until", &until, "--filter", &filter,
    ]);
    let die_line = out.lines().find(|l| l.contains(" container die ")).unwrap();
    assert!(
        die_line.contains(&format!("{id} (execDuration="))
            && die_line.contains("exitCode=3, ")
            && die_line.contains("tier=front"),
        "{die_line}"
    );

    // The real docker CLI reads the same stream.
    if let Some(docker) = ["/usr/local/bin/docker", "/usr/bin/docker"]
        .iter()
        .find(|p| std::path::Path::new(p).is_file())
    {
        let out = Cmd::new(docker)
            .env("DOCKER_HOST", env.host())
            .args(["events", "--since", &since, "--until", &until, "--filter"])
            .arg(&filter)
            .args(["--format", "{{.Action}} {{.Actor.Attributes.exitCode}}"])
            .timeout(Duration::from_secs(20))
            .output()
            .unwrap();
        assert_eq!(out.code(), 0, "{out}");
        assert!(out.stdout.lines().any(|l| l == "die 3"), "{out}");
        assert_eq!(out.stdout.lines().count(), acts.len(), "{out}");
    }
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn until_in_the_future_ends_the_live_stream_and_images_are_reported() {
    skip_unless_root!();
    let Some(env) = CliEnv::start() else { return };
    let tag = format!("{}:v1", unique_id("evimg"));
    let until = format!("{:.9}", unix_now() + 3.0);
    let started = Instant::now();
    let live = env
        .berth(["events", "--format", "{{json .}}", "--filter", "type=image"])
        // With `until` dockerd replays its buffer too (the harness's `load`): filter by name.
        .args(["--filter", &format!("image={tag}"), "--until", &until])
        .timeout(Duration::from_secs(30))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    env.ok(&["tag", IMAGE, &tag]);
    env.ok(&["rmi", &tag]);
    let out = live.wait(Duration::from_secs(20)).unwrap();
    let took = started.elapsed();
    assert_eq!(out.code(), 0, "{out}");
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(15),
        "the stream ended after {took:?}"
    );
    let evs: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(actions(&evs), ["tag", "untag"], "{}", out.stdout);
    assert_eq!(evs[0]["Type"], "image");
    assert_eq!(evs[0]["Actor"]["Attributes"]["name"], tag.as_str());
    assert!(evs[0]["Actor"]["ID"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(evs[0].get("from").is_none(), "images carry no legacy from");
}

#[test]
#[ignore = "needs root: starts berthd"]
fn events_api_answers_bad_parameters_with_docker_errors() {
    skip_unless_root!();
    let Some(env) = CliEnv::start() else { return };
    if !env.host().starts_with("unix://") {
        return;
    }
    let (code, body) = raw_get(
        &env,
        &format!("/events?filters={}", q(r#"{"bogus":["x"]}"#)),
    );
    assert_eq!(code, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["message"], "invalid filter 'bogus'");
    let (code, body) = raw_get(&env, "/events?filters=%7Bnot-json");
    assert_eq!(code, 400, "{body}");
    let (code, body) = raw_get(&env, "/events?since=yesterday");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("yesterday"), "{body}");
    let (code, body) = raw_get(&env, "/v1.45/events?since=200&until=100");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("cannot be after"), "{body}");
    // A past `until`: the replay only, then the stream ends (image load of the harness is in
    // the ring; legacy and new fields both present). RFC 3339 and durations are accepted.
    let (code, body) = raw_get(&env, "/events?since=0&until=0s");
    assert_eq!(code, 200, "{body}");
    let loads: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &Value| e["Action"] == "load")
        .collect();
    assert!(!loads.is_empty(), "{body}");
    assert_eq!(loads[0]["status"], "load");
    let (code, body) = raw_get(
        &env,
        &format!(
            "/events?since=1970-01-01T00:00:00Z&until={}&filters={}",
            q("2000-01-01T00:00:00Z"),
            q(r#"{"type":{"image":true}}"#)
        ),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, "", "nothing happened before 2000");
}
