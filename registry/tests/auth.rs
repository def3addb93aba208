//! Auth against real registries: htpasswd basic auth, and bearer tokens from an issuer the
//! test runs (ES256 JWTs with an x5c chain the registry trusts), plus login/logout files and
//! `X-Registry-Auth`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::process::Command;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use berth_registry::{
    auth, decode_registry_auth, encode_registry_auth, AuthConfig, ErrorKind, PullOptions,
    PushOptions,
};
use berth_tests::registry::{Registry as TestRegistry, RegistryAuth};
use common::{client, rt, tar, Entry, Events};
use serde_json::json;

fn small_image(c: &common::Client, name: &str) {
    let layer = tar(&[Entry::File("hello", b"auth test", 0o644, 0)]);
    c.store
        .create_image(&[layer], common::base_config(), name)
        .unwrap();
}

#[test]
fn basic_auth_login_push_pull() {
    let reg = TestRegistry::start_with(RegistryAuth::Basic {
        user: "berth".into(),
        password: "s3cret".into(),
    })
    .unwrap();
    let rt = rt();
    let c = client();
    let host = reg.host();
    let name = format!("{host}/private/app:v1");
    small_image(&c, &name);

    // login: right and wrong passwords.
    let good = AuthConfig::basic("berth", "s3cret", &host);
    let ok = rt.block_on(c.registry.login(&good)).unwrap();
    assert_eq!(ok.status, "Login Succeeded");
    let e = rt
        .block_on(
            c.registry
                .login(&AuthConfig::basic("berth", "wrong", &host)),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    assert_eq!(
        e.to_string(),
        format!("login attempt to http://{host}/v2/ failed with status: 401 Unauthorized")
    );

    // Credentials travel as the docker CLI sends them.
    let header = encode_registry_auth(&good);
    let creds = decode_registry_auth(&header).unwrap();
    let ev = Events::default();
    rt.block_on(c.registry.push(
        &name,
        &PushOptions {
            auth: creds.clone(),
        },
        &ev.sink(),
    ))
    .unwrap();
    assert!(ev.has("Pushed"), "{:?}", ev.statuses());

    // Anonymous pull is refused in Docker's words; with credentials from a config file it works.
    let other = client();
    let e = rt
        .block_on(
            other
                .registry
                .pull(&name, &PullOptions::default(), &Default::default()),
        )
        .unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "pull access denied for {host}/private/app, repository does not exist or may require 'docker login'"
        )),
        "{e}"
    );
    let cfg = other.dir.path().join("docker-config.json");
    auth::store_credentials(&cfg, &good).unwrap();
    let stored = auth::DockerConfigFile::load(&cfg)
        .unwrap()
        .credentials_for(&host)
        .expect("credentials stored under the host");
    rt.block_on(other.registry.pull(
        &name,
        &PullOptions {
            auth: stored,
            ..Default::default()
        },
        &Default::default(),
    ))
    .unwrap();
    assert!(auth::remove_credentials(&cfg, &host).unwrap());
}

/// The token issuer's state: the signing key and its certificate.
#[derive(Clone)]
struct Issuer {
    key: std::sync::Arc<ring::signature::EcdsaKeyPair>,
    cert_der: Vec<u8>,
}

const SERVICE: &str = "berth-test-registry";
const ISSUER: &str = "berth-test-issuer";

async fn token(
    State(issuer): State<Issuer>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> axum::response::Response {
    let user = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    match user.as_deref() {
        Some("tokuser:tokpass") => {}
        Some(_) => return (StatusCode::UNAUTHORIZED, "bad credentials").into_response(),
        None => return (StatusCode::UNAUTHORIZED, "credentials required").into_response(),
    }
    let access = access_of(&query);
    let mut body = json!({"token": "", "access_token": "", "expires_in": 300});
    let jwt = issue(&issuer, access);
    body["token"] = json!(jwt);
    body["access_token"] = json!(jwt);
    if query
        .iter()
        .any(|(k, v)| k == "offline_token" && v == "true")
    {
        body["refresh_token"] = json!(REFRESH_TOKEN);
    }
    axum::Json(body).into_response()
}

const REFRESH_TOKEN: &str = "refresh-tokuser";

/// The OAuth2 refresh grant (what an identity token from `login` is used with).
async fn token_post(
    State(issuer): State<Issuer>,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> axum::response::Response {
    let field = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    if field("grant_type") != Some("refresh_token") || field("refresh_token") != Some(REFRESH_TOKEN)
    {
        return (StatusCode::UNAUTHORIZED, "bad refresh token").into_response();
    }
    let jwt = issue(&issuer, access_of(&form));
    axum::Json(json!({"access_token": jwt, "expires_in": 300})).into_response()
}

fn access_of(params: &[(String, String)]) -> Vec<serde_json::Value> {
    params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, s)| s.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter_map(|s| {
            let mut parts = s.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect()
}

/// A signed ES256 JWT granting `access`.
fn issue(issuer: &Issuer, access: Vec<serde_json::Value>) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [STANDARD.encode(&issuer.cert_der)]});
    let claims = json!({
        "iss": ISSUER, "sub": "tokuser", "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": format!("{now}-{}", access.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let rng = ring::rand::SystemRandom::new();
    let sig = issuer.key.sign(&rng, signing_input.as_bytes()).unwrap();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

/// A self-signed P-256 certificate: (cert PEM, key PEM, key PKCS#8 DER, cert DER).
fn self_signed(dir: &std::path::Path, cn: &str) -> (String, String, Vec<u8>, Vec<u8>) {
    let key = dir.join(format!("{cn}.key"));
    let cert = dir.join(format!("{cn}.crt"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let subj = format!("/CN={cn}");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
        "-days",
        "1",
        "-subj",
        &subj,
    ]);
    let pkcs8 = run(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        key.to_str().unwrap(),
        "-outform",
        "DER",
    ]);
    let cert_der = run(&["x509", "-in", cert.to_str().unwrap(), "-outform", "DER"]);
    (
        std::fs::read_to_string(&cert).unwrap(),
        std::fs::read_to_string(&key).unwrap(),
        pkcs8,
        cert_der,
    )
}

fn make_issuer(dir: &std::path::Path) -> (Issuer, String) {
    let (cert_pem, _, pkcs8, cert_der) = self_signed(dir, "berth-test-token-issuer");
    let rng = ring::rand::SystemRandom::new();
    let key = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &pkcs8,
        &rng,
    )
    .unwrap();
    (
        Issuer {
            key: std::sync::Arc::new(key),
            cert_der,
        },
        cert_pem,
    )
}

#[test]
fn insecure_registry_speaking_tls_is_used_over_https_without_verification() {
    let work = tempfile::tempdir().unwrap();
    let (cert, key, _, _) = self_signed(work.path(), "berth-test-registry");
    let reg = TestRegistry::start_tls(&cert, &key).unwrap();
    let rt = rt();
    let c = client();
    let name = format!("{}/tls/app:v1", reg.host());
    small_image(&c, &name);
    // 127.0.0.1 is insecure by default: HTTPS is tried first and its self-signed
    // certificate accepted, as Docker does (plain HTTP would get a 400 from this registry).
    rt.block_on(
        c.registry
            .push(&name, &PushOptions::default(), &Default::default()),
    )
    .unwrap();
    let other = client();
    rt.block_on(
        other
            .registry
            .pull(&name, &PullOptions::default(), &Default::default()),
    )
    .unwrap();
    let ok = rt
        .block_on(
            other
                .registry
                .login(&AuthConfig::basic("any", "thing", &reg.host())),
        )
        .unwrap();
    assert_eq!(ok.status, "Login Succeeded");
}

#[test]
fn bearer_token_flow_login_push_pull() {
    let rt = rt();
    let work = tempfile::tempdir().unwrap();
    let (issuer, cert_pem) = make_issuer(work.path());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let token_addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/token", axum::routing::get(token).post(token_post))
        .with_state(issuer);
    rt.spawn(async move { axum::serve(listener, app).await });

    let reg = TestRegistry::start_with(RegistryAuth::Token {
        realm: format!("http://{token_addr}/token"),
        service: SERVICE.into(),
        issuer: ISSUER.into(),
        cert_pem,
    })
    .unwrap();
    let host = reg.host();
    let c = client();
    let name = format!("{host}/tok/app:v1");
    small_image(&c, &name);
    let good = AuthConfig::basic("tokuser", "tokpass", &host);

    let ok = rt.block_on(c.registry.login(&good)).unwrap();
    assert_eq!(ok.status, "Login Succeeded");
    assert_eq!(
        ok.identity_token, REFRESH_TOKEN,
        "refresh token kept as identity token"
    );
    assert_eq!(ok.to_docker_json()["IdentityToken"], REFRESH_TOKEN);
    let e = rt
        .block_on(
            c.registry
                .login(&AuthConfig::basic("tokuser", "nope", &host)),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");

    let ev = Events::default();
    rt.block_on(
        c.registry
            .push(&name, &PushOptions { auth: good.clone() }, &ev.sink()),
    )
    .unwrap();
    assert!(ev.has("Pushed"), "{:?}", ev.statuses());

    let other = client();
    let e = rt
        .block_on(other.registry.pull(
            &name,
            &PullOptions {
                auth: AuthConfig::basic("tokuser", "nope", &host),
                ..Default::default()
            },
            &Default::default(),
        ))
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Unauthorized | ErrorKind::NotFound),
        "{e}"
    );
    let report = rt
        .block_on(other.registry.pull(
            &name,
            &PullOptions {
                auth: good,
                ..Default::default()
            },
            &Default::default(),
        ))
        .unwrap();
    assert_eq!(report.downloaded.len(), 1);
    let trees = common::image_trees(&other.store, &name);
    assert!(trees[0].contains_key("hello"));

    // As docker clients send it after such a login: user name and identity token only.
    let with_identity = |token: &str| AuthConfig {
        username: "tokuser".into(),
        identity_token: token.into(),
        server_address: host.clone(),
        ..AuthConfig::default()
    };
    let third = client();
    rt.block_on(third.registry.pull(
        &name,
        &PullOptions {
            auth: with_identity(REFRESH_TOKEN),
            ..Default::default()
        },
        &Default::default(),
    ))
    .unwrap();
    let e = rt
        .block_on(third.registry.pull(
            &name,
            &PullOptions {
                auth: with_identity("stolen"),
                ..Default::default()
            },
            &Default::default(),
        ))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
}
