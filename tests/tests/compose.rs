//! Issue 15, compose: docker-compose 1.29 (Debian's, over docker-py) drives a stack the test
//! writes against a real berthd: a service built from a Dockerfile (busybox httpd), a
//! stateful one with a named volume and a health check, one that waits for it to be healthy;
//! a published port, the project's default network and a user network, `environment` and
//! `env_file`, labels, `restart: unless-stopped`, `command` and `entrypoint` overrides. Then
//! every everyday compose command, `--scale` with the service name resolving to every
//! replica, and `down` keeping the named volume's data until `down -v`.
//!
//! Without docker-compose on the machine the test says so and returns (CI installs it).
//!
//! Run: `cargo build --workspace --bins`, then
//! `sudo -E cargo test -p berth-tests --test compose -- --include-ignored`.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use berth_tests::cli::{CliEnv, IMAGE};
use berth_tests::{skip_unless_root, unique_id, Cmd, Output};

struct Compose<'a> {
    env: &'a CliEnv,
    dir: &'a Path,
    project: String,
}

impl Compose<'_> {
    fn cmd(&self, args: &[&str]) -> Cmd {
        Cmd::new("docker-compose")
            .env("DOCKER_HOST", self.env.host())
            .env("DOCKER_BUILDKIT", "0")
            .env("COMPOSE_DOCKER_CLI_BUILD", "0")
            .args(["--no-ansi", "-p", &self.project])
            .args(args)
            .current_dir(self.dir)
            .timeout(Duration::from_secs(120))
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args)
            .output()
            .unwrap_or_else(|e| panic!("docker-compose {args:?}: {e:#}"))
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.success(),
            "docker-compose {args:?}: {out}\n--- berthd log ---\n{}",
            self.env.daemon_logs()
        );
        out.stdout
    }

    /// The containers of a service, by compose's labels.
    fn containers(&self, service: &str) -> Vec<String> {
        self.env
            .docker_ok(&[
                "ps",
                "-aq",
                "--filter",
                &format!("label=com.docker.compose.project={}", self.project),
                "--filter",
                &format!("label=com.docker.compose.service={service}"),
            ])
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn http_get(port: &str) -> String {
    let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

fn stack(dir: &Path) {
    std::fs::create_dir_all(dir.join("web")).expect("mkdir");
    std::fs::write(
        dir.join("web/Dockerfile"),
        format!(
            "FROM {IMAGE}\nRUN mkdir -p /www && echo hello from web > /www/index.html\nEXPOSE 80\n\
             CMD [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n"
        ),
    )
    .expect("write");
    std::fs::write(dir.join("app.env"), "FROM_ENV_FILE=yes\n").expect("write");
    std::fs::write(
        dir.join("docker-compose.yml"),
        format!(
            r#"version: "3.8"
services:
  web:
    build: ./web
    ports:
      - "80"
    networks: [default, back]
    labels:
      tier: front
    restart: unless-stopped
  db:
    image: {IMAGE}
    command: ["sh", "-c", "echo started >> /data/log; exec sleep 100000"]
    volumes:
      - dbdata:/data
    healthcheck:
      test: ["CMD", "test", "-f", "/data/log"]
      interval: 1s
      timeout: 2s
      retries: 20
    environment:
      ROLE: db
    env_file: app.env
    networks: [back]
  app:
    image: {IMAGE}
    entrypoint: ["sh", "-c"]
    command: ["echo app-ran; exec sleep 100000"]
    depends_on:
      db:
        condition: service_healthy
    networks: [back]
    labels:
      tier: back
volumes:
  dbdata:
networks:
  back:
"#
        ),
    )
    .expect("write");
}

#[test]
#[ignore = "needs root: runs containers under berthd"]
fn compose_stack_through_its_everyday_commands() {
    skip_unless_root!();
    if Cmd::new("docker-compose")
        .arg("version")
        .output()
        .map(|o| !o.success())
        .unwrap_or(true)
    {
        eprintln!("skipping: no docker-compose on this machine (apt-get install docker-compose)");
        return;
    }
    let Some(env) = berth_tests::cli::start_for_docker() else {
        return;
    };
    let ctx = tempfile::tempdir().expect("tempdir");
    stack(ctx.path());
    let c = Compose {
        env: &env,
        dir: ctx.path(),
        project: unique_id("stack").replace('-', ""),
    };
    let p = c.project.clone();

    // up: the image built, db healthy before app starts, the port published.
    let up = c.run(&["up", "-d"]);
    assert!(up.success(), "{up}\n{}", env.daemon_logs());
    let ps = c.ok(&["ps"]);
    assert!(
        ps.contains(&format!("{p}_db_1")) && ps.contains("Up (healthy)"),
        "{ps}"
    );
    assert!(
        ps.contains(&format!("{p}_app_1")) && ps.contains(&format!("{p}_web_1")),
        "{ps}"
    );
    let port_line = c.ok(&["port", "web", "80"]);
    let port = port_line
        .trim()
        .rsplit(':')
        .next()
        .expect("port")
        .to_string();
    assert!(http_get(&port).contains("hello from web"), "{port_line}");

    // Config, labels, restart policy, environment and env_file, the overrides.
    let config = c.ok(&["config"]);
    assert!(config.contains("condition: service_healthy"), "{config}");
    let app = c.containers("app").pop().expect("app container");
    assert_eq!(
        env.docker_ok(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"tier\"}} {{json .Config.Entrypoint}} {{json .Config.Cmd}}",
            &app
        ])
        .trim(),
        r#"back ["sh","-c"] ["echo app-ran; exec sleep 100000"]"#
    );
    let web = c.containers("web").pop().expect("web container");
    assert_eq!(
        env.docker_ok(&["inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", &web])
            .trim(),
        "unless-stopped"
    );
    assert_eq!(
        c.ok(&[
            "exec",
            "-T",
            "db",
            "sh",
            "-c",
            "echo $ROLE $FROM_ENV_FILE; cat /data/log"
        ]),
        "db yes\nstarted\n"
    );
    assert_eq!(
        c.ok(&["logs", "--no-color", "app"])
            .matches("app-ran")
            .count(),
        1
    );

    // run --rm: a one-off container, gone after.
    let before = env.docker_ok(&["ps", "-aq"]).lines().count();
    let out = c.ok(&["run", "--rm", "-T", "app", "echo via-run"]);
    assert!(out.contains("via-run"), "{out}");
    assert_eq!(env.docker_ok(&["ps", "-aq"]).lines().count(), before);

    // --scale: three replicas, each published, the service name resolving to all three.
    c.ok(&["up", "-d", "--scale", "web=3"]);
    assert_eq!(c.containers("web").len(), 3);
    let third = c.ok(&["port", "--index=3", "web", "80"]);
    let port3 = third.trim().rsplit(':').next().expect("port").to_string();
    assert!(http_get(&port3).contains("hello from web"), "{third}");
    let lookup = c.ok(&["exec", "-T", "app", "nslookup", "web"]);
    let addresses = lookup
        .lines()
        .filter(|l| l.starts_with("Address") && !l.contains("127.0.0.11"))
        .count();
    assert_eq!(addresses, 3, "{lookup}");

    // logs -f follows until the service stops.
    let follow = c
        .cmd(&["logs", "-f", "--no-color", "app"])
        .spawn()
        .expect("logs -f");
    std::thread::sleep(Duration::from_millis(500));
    c.ok(&["stop", "-t", "1", "app"]);
    let followed = follow.wait(Duration::from_secs(30)).expect("logs -f ends");
    assert!(followed.stdout.contains("app-ran"), "{followed}");

    // stop / start / restart / pause / unpause / top.
    c.ok(&["stop", "-t", "1"]);
    assert!(c.ok(&["ps"]).matches("Exit").count() >= 5);
    c.ok(&["start"]);
    c.ok(&["restart", "-t", "1", "app"]);
    c.ok(&["pause", "db"]);
    assert!(c.ok(&["ps", "db"]).contains("Paused"));
    c.ok(&["unpause", "db"]);
    assert!(c.ok(&["top", "db"]).contains("sleep 100000"));

    // events: compose's JSON lines for a restart.
    let events = Cmd::new("timeout")
        .args([
            "6",
            "docker-compose",
            "--no-ansi",
            "-p",
            &p,
            "events",
            "--json",
        ])
        .env("DOCKER_HOST", env.host())
        .current_dir(ctx.path())
        .timeout(Duration::from_secs(30))
        .spawn()
        .expect("events");
    std::thread::sleep(Duration::from_secs(1));
    c.ok(&["restart", "-t", "1", "app"]);
    let ev = events.wait(Duration::from_secs(30)).expect("events end");
    assert!(
        ev.stdout.contains("\"action\": \"restart\"") && ev.stdout.contains("\"service\": \"app\""),
        "{ev}"
    );

    // down keeps the named volume; up finds its data; down -v removes everything.
    c.ok(&["down", "-t", "1"]);
    assert!(c.containers("db").is_empty());
    let vols = env.docker_ok(&["volume", "ls", "-q"]);
    assert!(vols.contains(&format!("{p}_dbdata")), "{vols}");
    c.ok(&["up", "-d"]);
    let log = c.ok(&["exec", "-T", "db", "cat", "/data/log"]);
    assert!(log.matches("started").count() >= 3, "{log}");
    c.ok(&["down", "-v", "-t", "1"]);
    let filter = format!("label=com.docker.compose.project={p}");
    assert_eq!(env.docker_ok(&["ps", "-aq", "--filter", &filter]), "");
    assert_eq!(
        env.docker_ok(&["network", "ls", "-q", "--filter", &filter]),
        ""
    );
    assert_eq!(
        env.docker_ok(&["volume", "ls", "-q", "--filter", &filter]),
        ""
    );
}
