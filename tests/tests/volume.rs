//! Issue 13, volumes, with the real docker CLI against a real berthd: named volumes keeping
//! data across containers and across `kill -9` of berthd, `:ro`, copy-up from the image with
//! owners and modes, the image's VOLUME paths, `--volumes-from`, tmpfs through `--mount`,
//! anonymous volumes removed by `--rm` and `rm -v`, prune with and without `all`, and
//! dockerd's errors.
//!
//! Run: `cargo build --workspace --bins`, then
//! `sudo -E cargo test -p berth-tests --test volume -- --include-ignored`.

use berth_tests::cli::{CliEnv, IMAGE};
use berth_tests::{skip_unless_root, unique_id};

fn start() -> Option<CliEnv> {
    berth_tests::cli::start_for_docker()
}

fn ok(env: &CliEnv, args: &[&str]) -> String {
    env.docker_ok(args)
}

#[track_caller]
fn fails(env: &CliEnv, args: &[&str], message: &str) {
    env.docker_fails(args, message)
}

/// `docker run --rm <opts> IMAGE sh -c <script>`: its stdout.
fn sh(env: &CliEnv, opts: &[&str], script: &str) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(opts);
    args.extend([IMAGE, "sh", "-c", script]);
    ok(env, &args)
}

fn volumes(env: &CliEnv) -> Vec<String> {
    ok(env, &["volume", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn named_volumes_keep_data_across_containers_and_a_kill_9() {
    skip_unless_root!();
    let Some(mut env) = start() else { return };
    let v = unique_id("data");
    let created = ok(&env, &["volume", "create", "--label", "tier=db", &v]);
    assert_eq!(created.trim(), v);
    let insp = ok(
        &env,
        &[
            "volume",
            "inspect",
            "-f",
            "{{.Driver}} {{.Scope}} {{.Labels.tier}} {{.Mountpoint}}",
            &v,
        ],
    );
    assert!(insp.starts_with("local local db "), "{insp}");
    assert!(
        insp.trim().ends_with(&format!("/volumes/{v}/_data")),
        "{insp}"
    );

    sh(
        &env,
        &["-v", &format!("{v}:/data")],
        "echo kept > /data/f; mkdir /data/d",
    );
    env.kill_daemon().expect("kill -9 berthd");
    env.restart_daemon().expect("start berthd again");
    assert!(volumes(&env).contains(&v));
    let out = sh(
        &env,
        &["-v", &format!("{v}:/data")],
        "cat /data/f; ls /data",
    );
    assert_eq!(out, "kept\nd\nf\n");

    // :ro refuses writes.
    let out = sh(
        &env,
        &["-v", &format!("{v}:/data:ro")],
        "echo x > /data/g 2>/dev/null && echo WROTE || echo REFUSED",
    );
    assert_eq!(out.trim(), "REFUSED");
    // A missing named volume is made by run.
    let fresh = unique_id("fresh");
    sh(&env, &["-v", &format!("{fresh}:/x")], "true");
    assert!(volumes(&env).contains(&fresh));

    // --volumes-from, and 409 while any container uses the volume.
    let holder = unique_id("holder");
    ok(
        &env,
        &[
            "create",
            "--name",
            &holder,
            "-v",
            &format!("{v}:/data"),
            IMAGE,
            "true",
        ],
    );
    assert_eq!(
        sh(&env, &["--volumes-from", &holder], "cat /data/f"),
        "kept\n"
    );
    let out = sh(
        &env,
        &["--volumes-from", &format!("{holder}:ro")],
        "touch /data/z 2>/dev/null && echo WROTE || echo REFUSED",
    );
    assert_eq!(out.trim(), "REFUSED");
    fails(&env, &["volume", "rm", &v], "volume is in use");
    let ps = ok(
        &env,
        &[
            "ps",
            "-a",
            "--filter",
            &format!("volume={v}"),
            "--format",
            "{{.Names}}",
        ],
    );
    assert_eq!(ps.trim(), holder);
    let mounts = ok(
        &env,
        &[
            "inspect",
            "-f",
            "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.RW}}{{end}}",
            &holder,
        ],
    );
    assert_eq!(mounts.trim(), format!("volume {v} /data true"));
    // docker cp sees the volume's content in a stopped container, both ways.
    let copied = env.dir().join("copied-f");
    ok(
        &env,
        &[
            "cp",
            &format!("{holder}:/data/f"),
            &copied.to_string_lossy(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(&copied).unwrap_or_default(),
        "kept\n"
    );
    std::fs::write(&copied, "put\n").expect("write");
    ok(
        &env,
        &[
            "cp",
            &copied.to_string_lossy(),
            &format!("{holder}:/data/put"),
        ],
    );
    assert_eq!(
        sh(&env, &["-v", &format!("{v}:/data")], "cat /data/put"),
        "put\n"
    );
    ok(&env, &["rm", &holder]);
    ok(&env, &["volume", "rm", &v, &fresh]);
    // The volumes' events (since the restart: berthd keeps its event history in memory).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let events = ok(
        &env,
        &[
            "events",
            "--since",
            "10m",
            "--until",
            "0s",
            "--filter",
            "type=volume",
            "--format",
            "{{.Action}} {{.Actor.ID}}",
        ],
    );
    for want in [
        format!("create {fresh}"),
        format!("mount {v}"),
        format!("unmount {v}"),
        format!("destroy {v}"),
        format!("destroy {fresh}"),
    ] {
        assert!(events.lines().any(|l| l == want), "{want}: {events}");
    }
    assert!(!volumes(&env).contains(&v));

    // dockerd's errors.
    fails(
        &env,
        &["volume", "create", "bad name"],
        "includes invalid characters for a local volume name",
    );
    fails(&env, &["volume", "inspect", "nope-vol"], "no such volume");
    fails(
        &env,
        &["run", "--rm", "-v", "x/y:/data", IMAGE, "true"],
        "includes invalid characters",
    );
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn copy_up_image_volumes_anonymous_volumes_and_prune() {
    skip_unless_root!();
    let Some(env) = start() else { return };
    // Copy-up: an empty volume over /etc gets the image's files, with owner and mode.
    let v = unique_id("etc");
    let out = sh(
        &env,
        &["-v", &format!("{v}:/etc")],
        "head -1 /etc/passwd; stat -c '%a %u' /etc/passwd",
    );
    assert!(out.starts_with("root:"), "{out}");
    assert!(out.contains("644 0"), "{out}");
    // Not again once it has content; nocopy leaves it empty.
    sh(&env, &["-v", &format!("{v}:/etc")], "rm /etc/passwd");
    let out = sh(
        &env,
        &["-v", &format!("{v}:/etc")],
        "ls /etc/passwd 2>&1 || true",
    );
    assert!(out.contains("No such file"), "{out}");
    let empty = unique_id("empty");
    let out = sh(
        &env,
        &["-v", &format!("{empty}:/etc:nocopy")],
        "ls /etc | wc -l",
    );
    assert_eq!(out.trim(), "0");

    // An image with VOLUME: an anonymous volume there, removed by --rm.
    let img = format!("{}-vol", unique_id("img")).to_lowercase();
    let base = unique_id("base");
    ok(&env, &["create", "--name", &base, IMAGE, "true"]);
    ok(&env, &["commit", "--change", "VOLUME /state", &base, &img]);
    ok(&env, &["rm", &base]);
    let cfg = ok(
        &env,
        &["image", "inspect", "-f", "{{json .Config.Volumes}}", &img],
    );
    assert_eq!(cfg.trim(), r#"{"/state":{}}"#);
    let before = volumes(&env).len();
    let c = unique_id("withvol");
    ok(&env, &["run", "-d", "--name", &c, &img, "sleep", "300"]);
    let mounts = ok(
        &env,
        &[
            "inspect",
            "-f",
            "{{range .Mounts}}{{.Type}} {{.Destination}}{{end}}",
            &c,
        ],
    );
    assert_eq!(mounts.trim(), "volume /state");
    assert_eq!(volumes(&env).len(), before + 1);
    ok(&env, &["rm", "-fv", &c]);
    assert_eq!(
        volumes(&env).len(),
        before,
        "rm -v left the anonymous volume"
    );
    sh(&env, &["-v", "/scratch"], "touch /scratch/x");
    ok(&env, &["run", "--rm", &img, "true"]);
    assert_eq!(volumes(&env).len(), before, "--rm left anonymous volumes");

    // An anonymous volume of a kept container: a plain prune takes it once the container
    // is gone; named volumes only with --all.
    let k = unique_id("keep");
    ok(&env, &["run", "--name", &k, "-v", "/anon", IMAGE, "true"]);
    assert_eq!(volumes(&env).len(), before + 1);
    let pruned = ok(&env, &["volume", "prune", "-f"]);
    assert!(pruned.contains("Total reclaimed space"), "{pruned}");
    assert_eq!(
        volumes(&env).len(),
        before + 1,
        "prune took a volume in use"
    );
    ok(&env, &["rm", &k]);
    ok(&env, &["volume", "prune", "-f"]);
    assert_eq!(volumes(&env).len(), before);
    assert!(volumes(&env).contains(&v));
    let pruned = ok(&env, &["volume", "prune", "-f", "--all"]);
    assert!(pruned.contains(&v) && pruned.contains(&empty), "{pruned}");

    // tmpfs through --mount, with its size.
    let out = sh(
        &env,
        &["--mount", "type=tmpfs,target=/t,tmpfs-size=2m"],
        "grep ' /t ' /proc/mounts",
    );
    assert!(out.contains("size=2048k"), "{out}");
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn local_driver_options_mount_tmpfs_and_binds() {
    skip_unless_root!();
    let Some(env) = start() else { return };
    let t = unique_id("tmpv");
    ok(
        &env,
        &[
            "volume",
            "create",
            "-o",
            "type=tmpfs",
            "-o",
            "device=tmpfs",
            "-o",
            "o=size=3m,mode=0770",
            &t,
        ],
    );
    let out = sh(
        &env,
        &["-v", &format!("{t}:/t")],
        "grep ' /t ' /proc/mounts; stat -c %a /t",
    );
    assert!(
        out.contains("tmpfs /t tmpfs") && out.contains("size=3072k"),
        "{out}"
    );
    assert!(out.trim().ends_with("770"), "{out}");
    // Unmounted again when no container uses it.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    assert!(
        !mountinfo.contains(&format!("/volumes/{t}/_data")),
        "{mountinfo}"
    );

    let src = env.dir().join("bind-src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("h"), "from-host\n").expect("write");
    let b = unique_id("bindv");
    let device = format!("device={}", src.display());
    ok(
        &env,
        &[
            "volume",
            "create",
            "-o",
            "type=none",
            "-o",
            &device,
            "-o",
            "o=bind",
            &b,
        ],
    );
    assert_eq!(
        sh(&env, &["-v", &format!("{b}:/b")], "cat /b/h"),
        "from-host\n"
    );
    fails(
        &env,
        &["volume", "create", "-o", "foo=bar", &unique_id("bad")],
        "invalid option key",
    );
    let df = ok(&env, &["system", "df", "-v"]);
    assert!(df.contains(&t) && df.contains(&b), "{df}");
    ok(&env, &["volume", "rm", &t, &b]);
}
