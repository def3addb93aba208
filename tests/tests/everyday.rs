//! Issue 15, the rest of Docker's everyday API with the real docker CLI against a real
//! berthd: `ps` with every filter and `--format` (json and table templates), `-s` sizes,
//! `images` filters, `stats --no-stream` over many containers, `wait` on several,
//! `rename` of a running container on a user network (its DNS name follows), and `system
//! prune -a --volumes`. Each answer was checked against dockerd 20.10 (`BERTH_CLI_TEST_HOST`
//! runs these tests there too).
//!
//! Run: `cargo build --workspace --bins`, then
//! `sudo -E cargo test -p berth-tests --test everyday -- --include-ignored`.

use berth_tests::cli::{CliEnv, IMAGE};
use berth_tests::{skip_unless_root, unique_id};

fn names(env: &CliEnv, filter: &str, all: bool) -> Vec<String> {
    let mut args = vec!["ps", "--format", "{{.Names}}", "--filter", filter];
    if all {
        args.push("-a");
    }
    let mut v: Vec<String> = env.docker_ok(&args).lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn ps_filters_formats_and_sizes() {
    skip_unless_root!();
    let Some(env) = berth_tests::cli::start_for_docker() else {
        return;
    };
    let p = unique_id("ps").replace('-', "");
    let (a, b, c) = (format!("{p}a"), format!("{p}b"), format!("{p}c"));
    let label = format!("suite={p}");
    env.docker_ok(&[
        "run", "-d", "--name", &a, "--label", &label, "--label", "k=1", "-p", "18481:80",
        "--expose", "90", IMAGE, "sleep", "1000",
    ]);
    let out = env.docker_output(&[
        "run", "--name", &b, "--label", &label, "--label", "k=2", IMAGE, "sh", "-c", "exit 3",
    ]);
    assert_eq!(out.code(), 3, "{out}");
    env.docker_ok(&[
        "run",
        "-d",
        "--name",
        &c,
        "--label",
        &label,
        "--health-cmd",
        "true",
        "--health-interval",
        "1s",
        IMAGE,
        "sleep",
        "1000",
    ]);
    berth_tests::wait_until(
        "a healthy container",
        std::time::Duration::from_secs(20),
        || {
            (env.docker_ok(&["inspect", "-f", "{{.State.Health.Status}}", &c])
                .trim()
                == "healthy")
                .then_some(())
        },
    )
    .expect("healthy");
    let scope = format!("label={label}");
    let id_prefix = env.docker_ok(&["inspect", "-f", "{{.Id}}", &a])[..8].to_string();
    let both = |x: &str, y: &str| {
        let mut v = vec![x.to_string(), y.to_string()];
        v.sort();
        v
    };
    let all3 = {
        let mut v = vec![a.clone(), b.clone(), c.clone()];
        v.sort();
        v
    };
    let with_scope = |f: &str, all: bool| -> Vec<String> {
        let mut args = vec![
            "ps",
            "--format",
            "{{.Names}}",
            "--filter",
            &scope,
            "--filter",
            f,
        ];
        if all {
            args.push("-a");
        }
        let mut v: Vec<String> = env.docker_ok(&args).lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(with_scope("status=running", true), both(&a, &c));
    assert_eq!(with_scope("status=exited", false), vec![b.clone()]);
    assert_eq!(with_scope("exited=3", true), vec![b.clone()]);
    assert!(
        with_scope("exited=3", false).is_empty(),
        "exited= alone lists running ones only"
    );
    assert_eq!(with_scope("label=k=2", true), vec![b.clone()]);
    assert_eq!(with_scope(&format!("name={a}"), true), vec![a.clone()]);
    assert_eq!(
        with_scope(&format!("id={id_prefix}"), true),
        vec![a.clone()]
    );
    assert_eq!(with_scope(&format!("ancestor={IMAGE}"), true), all3);
    assert_eq!(with_scope(&format!("before={c}"), true), both(&a, &b));
    assert_eq!(with_scope(&format!("since={a}"), true), both(&b, &c));
    assert_eq!(with_scope(&format!("before={c}"), false), vec![a.clone()]);
    assert_eq!(with_scope("publish=18481", true), vec![a.clone()]);
    assert_eq!(with_scope("publish=18000-18500/tcp", true), vec![a.clone()]);
    assert!(with_scope("publish=18481/udp", true).is_empty());
    assert_eq!(with_scope("expose=90", true), vec![a.clone()]);
    assert_eq!(with_scope("expose=85-95", true), vec![a.clone()]);
    assert_eq!(with_scope("health=healthy", true), vec![c.clone()]);
    assert_eq!(with_scope("is-task=false", true), all3);
    assert!(with_scope("is-task=true", true).is_empty());
    assert_eq!(with_scope("network=bridge", true), all3);
    assert!(names(&env, &format!("volume={p}-none"), true).is_empty());
    for (filter, message) in [
        ("bogus=1", "Invalid filter 'bogus'"),
        ("status=bogus", "Invalid filter 'status=bogus'"),
        ("publish=x", "error while looking up for publish x: strconv.ParseUint: parsing \"x\": invalid syntax"),
        ("before=nosuch-container", "no such container nosuch-container"),
    ] {
        env.docker_fails(&["ps", "--filter", filter], message);
    }

    // --format json and table templates.
    let json = env.docker_ok(&["ps", "--filter", &format!("name={a}"), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("json line");
    assert_eq!(v["Names"], a.as_str());
    assert_eq!(v["State"], "running");
    assert!(
        v["Ports"]
            .as_str()
            .unwrap_or("")
            .contains("0.0.0.0:18481->80/tcp"),
        "{v}"
    );
    assert!(v["Labels"].as_str().unwrap_or("").contains("k=1"), "{v}");
    let table = env.docker_ok(&[
        "ps",
        "--filter",
        &format!("name={a}"),
        "--format",
        "table {{.Names}}\t{{.Label \"k\"}}\t{{.Networks}}",
    ]);
    let mut lines = table.lines();
    assert!(lines.next().unwrap_or("").starts_with("NAMES"), "{table}");
    let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(row, vec![a.as_str(), "1", "bridge"], "{table}");

    // Sizes: ps -s and inspect -s count the writable layer.
    env.docker_ok(&["exec", &a, "sh", "-c", "head -c 300000 /dev/zero > /big"]);
    let size = env.docker_ok(&[
        "ps",
        "-s",
        "--filter",
        &format!("name={a}"),
        "--format",
        "{{.Size}}",
    ]);
    assert!(size.starts_with("300kB (virtual "), "{size}");
    let rw: u64 = env
        .docker_ok(&["inspect", "-s", "-f", "{{.SizeRw}}", &a])
        .trim()
        .parse()
        .expect("SizeRw");
    assert!(rw >= 300_000, "{rw}");
    env.docker_ok(&["rm", "-f", &a, &b, &c]);
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn image_filters_stats_wait_rename_and_prune() {
    skip_unless_root!();
    let Some(env) = berth_tests::cli::start_for_docker() else {
        return;
    };
    let p = unique_id("img").replace('-', "");
    // Images: before, since, until, label, reference, refusals.
    let older = format!("{p}-older:1");
    env.docker_ok(&["tag", IMAGE, &older]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let ctx = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {IMAGE}\nLABEL suite={p}\n"),
    )
    .expect("write");
    let newer = format!("{p}-newer:1");
    let out = env
        .docker(["build", "-q", "-t", &newer, "."])
        .env("DOCKER_BUILDKIT", "0")
        .current_dir(ctx.path())
        .output()
        .expect("build");
    assert!(out.success(), "{out}");
    let repos = |f: &str| -> Vec<String> {
        env.docker_ok(&[
            "images",
            "--filter",
            f,
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ])
        .lines()
        .map(str::to_string)
        .collect()
    };
    assert!(repos(&format!("before={newer}")).contains(&older));
    assert!(!repos(&format!("before={newer}")).contains(&newer));
    assert!(repos(&format!("since={older}")).contains(&newer));
    assert_eq!(repos(&format!("label=suite={p}")), vec![newer.clone()]);
    assert_eq!(repos(&format!("reference={p}-n*")), vec![newer.clone()]);
    assert!(!repos("until=1h").contains(&newer));
    env.docker_fails(&["images", "--filter", "bogus=1"], "Invalid filter 'bogus'");
    env.docker_fails(
        &["images", "--filter", "dangling=x"],
        "Invalid filter 'dangling=x'",
    );

    // stats --no-stream over several containers.
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            env.docker_ok(&[
                "run",
                "-d",
                "--name",
                &format!("{p}s{i}"),
                IMAGE,
                "sleep",
                "1000",
            ])
            .trim()
            .to_string(),
        );
    }
    let mut args = vec![
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}}",
    ];
    args.extend(ids.iter().map(String::as_str));
    let stats = env.docker_ok(&args);
    assert_eq!(stats.lines().count(), 6, "{stats}");
    assert!(
        stats
            .lines()
            .all(|l| l.contains("MiB") || l.contains("KiB")),
        "{stats}"
    );

    // wait on several: each exit code in order.
    let w1 = format!("{p}w1");
    let w2 = format!("{p}w2");
    env.docker_ok(&[
        "run",
        "-d",
        "--name",
        &w1,
        IMAGE,
        "sh",
        "-c",
        "sleep 1; exit 4",
    ]);
    env.docker_ok(&[
        "run",
        "-d",
        "--name",
        &w2,
        IMAGE,
        "sh",
        "-c",
        "sleep 2; exit 5",
    ]);
    assert_eq!(env.docker_ok(&["wait", &w1, &w2]), "4\n5\n");

    // rename a running container on a user network: its new name resolves.
    let net = format!("{p}net");
    env.docker_ok(&["network", "create", &net]);
    let r1 = format!("{p}r1");
    let r2 = format!("{p}r2");
    env.docker_ok(&[
        "run",
        "-d",
        "--name",
        &r1,
        "--network",
        &net,
        IMAGE,
        "sleep",
        "1000",
    ]);
    env.docker_ok(&["rename", &r1, &r2]);
    let ip = env.docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &r2,
    ]);
    let lookup = env.docker_ok(&["run", "--rm", "--network", &net, IMAGE, "nslookup", &r2]);
    assert!(lookup.contains(ip.trim()), "{lookup}");

    // system prune -a --volumes: stopped containers, unused networks, images and anonymous
    // volumes go (named volumes stay, as API 1.42+); what running containers use stays.
    let anon = env.docker_ok(&[
        "run",
        "--name",
        &format!("{p}anon"),
        "-v",
        "/data",
        IMAGE,
        "true",
    ]);
    assert_eq!(anon, "");
    let anon_vol = env
        .docker_ok(&[
            "inspect",
            "-f",
            "{{range .Mounts}}{{.Name}}{{end}}",
            &format!("{p}anon"),
        ])
        .trim()
        .to_string();
    let named = format!("{p}named");
    env.docker_ok(&["volume", "create", &named]);
    let unused_net = format!("{p}unused");
    env.docker_ok(&["network", "create", &unused_net]);
    env.docker_ok(&["system", "prune", "-a", "--volumes", "-f"]);
    let left = env.docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(
        !left.contains(&w1) && !left.contains(&format!("{p}anon")),
        "{left}"
    );
    assert!(left.contains(&r2), "{left}");
    let vols = env.docker_ok(&["volume", "ls", "-q"]);
    assert!(!vols.contains(&anon_vol) && vols.contains(&named), "{vols}");
    let nets = env.docker_ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!nets.contains(&unused_net) && nets.contains(&net), "{nets}");
    let images = env.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        !images.contains(&newer) && images.contains(IMAGE),
        "{images}"
    );
    env.docker_ok(&["rm", "-f", &r2]);
    for i in 0..6 {
        env.docker_ok(&["rm", "-f", &format!("{p}s{i}")]);
    }
    env.docker_ok(&["network", "rm", &net]);
    env.docker_ok(&["volume", "rm", &named]);
}
