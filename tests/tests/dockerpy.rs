//! docker-py (the Python SDK, `pip install docker`) against a real berthd: runs
//! `tests/py/test_dockerpy.py` with `DOCKER_HOST` pointed at a berthd in a temp dir.
//! Without python3 or the `docker` module the test says so and returns (CI installs both).
//!
//! Run: `cargo build --workspace --bins`, then
//! `sudo -E cargo test -p berth-tests --test dockerpy -- --include-ignored`.

use std::path::Path;
use std::time::Duration;

use berth_tests::cli::{CliEnv, IMAGE};
use berth_tests::{skip_unless_root, unique_id, Cmd};

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn docker_py_drives_berthd() {
    skip_unless_root!();
    let probe = Cmd::new("python3")
        .args(["-c", "import docker; print(docker.__version__)"])
        .output();
    match probe {
        Ok(out) if out.success() => eprintln!("docker-py {}", out.stdout.trim()),
        Ok(out) => {
            eprintln!("skipping: python3 has no docker module (pip install docker): {out}");
            return;
        }
        Err(e) => {
            eprintln!("skipping: no python3 on this machine: {e:#}");
            return;
        }
    }
    let Some(env) = CliEnv::start() else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/test_dockerpy.py");
    let out = Cmd::new("python3")
        .arg("-u")
        .arg(&script)
        .env("DOCKER_HOST", env.host())
        .env("DOCKER_CONFIG", env.dir().join("docker-config"))
        .env("BERTH_TEST_IMAGE", IMAGE)
        .env("BERTH_TEST_PREFIX", unique_id("dockerpy"))
        .env("BERTH_TEST_DIR", env.dir())
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap_or_else(|e| panic!("{}: {e:#}", script.display()));
    assert!(
        out.success(),
        "{} failed ({}):\n{}{}\n--- berthd log ---\n{}",
        script.display(),
        out.code(),
        out.stdout,
        out.stderr,
        env.daemon_logs()
    );
    assert!(
        out.stdout.contains("all docker-py checks passed"),
        "{}",
        out.stdout
    );
    eprint!("{}", out.stdout);
}
