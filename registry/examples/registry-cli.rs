//! Pull or push with a [`DirStore`], printing Docker's JSON progress lines: the shape of what
//! berthd's `/images/create` and `/images/{name}/push` stream.
//!
//! ```text
//! cargo run -p berth-registry --example registry-cli -- pull  <store-dir> 127.0.0.1:5000/x:v1 [platform]
//! cargo run -p berth-registry --example registry-cli -- push  <store-dir> 127.0.0.1:5000/x:v1
//! cargo run -p berth-registry --example registry-cli -- login <host> <user> <password>
//! ```
//! Credentials for pull and push come from `$DOCKER_CONFIG/config.json` (or
//! `~/.docker/config.json`).

use std::path::PathBuf;
use std::sync::Arc;

use berth_registry::{
    docker_error_json, AuthConfig, DirStore, DockerConfigFile, Progress, ProgressSink, PullOptions,
    PushOptions, Reference, Registry, RegistryConfig,
};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args).await {
        println!("{}", docker_error_json(&e.to_string()));
        std::process::exit(1);
    }
}

async fn run(args: &[String]) -> berth_registry::Result<()> {
    let usage = || {
        berth_registry::Error::InvalidArgument(
            "usage: pull|push <store-dir> <reference> [platform] | login <host> <user> <password>"
                .into(),
        )
    };
    let verb = args.first().ok_or_else(usage)?;
    let progress = ProgressSink::new(|p: Progress| println!("{}", p.to_docker_json()));
    if verb == "login" {
        let [_, host, user, password] = args else {
            return Err(usage());
        };
        let store = Arc::new(DirStore::open(
            &std::env::temp_dir().join("berth-registry-cli"),
        )?);
        let registry = Registry::new(RegistryConfig::default(), store);
        let ok = registry
            .login(&AuthConfig::basic(user, password, host))
            .await?;
        println!("{}", ok.to_docker_json());
        return Ok(());
    }
    let (Some(dir), Some(reference)) = (args.get(1), args.get(2)) else {
        return Err(usage());
    };
    let store = Arc::new(DirStore::open(&PathBuf::from(dir))?);
    let registry = Registry::new(RegistryConfig::default(), store);
    let domain = Reference::parse(reference)?.domain;
    let config_dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
        .unwrap_or_default();
    let auth = DockerConfigFile::load(&config_dir.join("config.json"))?
        .credentials_for(&domain)
        .unwrap_or_default();
    match verb.as_str() {
        "pull" => {
            let options = PullOptions {
                platform: args.get(3).cloned().unwrap_or_default(),
                auth,
            };
            registry.pull(reference, &options, &progress).await?;
        }
        "push" => {
            registry
                .push(reference, &PushOptions { auth }, &progress)
                .await?;
        }
        _ => return Err(usage()),
    }
    Ok(())
}
