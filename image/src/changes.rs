//! Dockerfile instructions applied to an image config (`docker import --change`).

use serde_json::{json, Map, Value};

use crate::{Error, Result};

/// Applies one instruction (`CMD ["sh"]`, `ENV A=b`, `WORKDIR /x`, ...) to the `config`
/// object of an image config (Docker's capitalized field names).
pub(crate) fn apply(cfg: &mut Map<String, Value>, change: &str) -> Result<()> {
    let change = change.trim();
    let (word, rest) = change
        .split_once(char::is_whitespace)
        .map(|(w, r)| (w, r.trim()))
        .unwrap_or((change, ""));
    let bad = |why: &str| Error::InvalidArgument(format!("{why}: {change}"));
    match word.to_ascii_uppercase().as_str() {
        "CMD" => {
            cfg.insert("Cmd".into(), json!(command(rest)));
        }
        "ENTRYPOINT" => {
            cfg.insert("Entrypoint".into(), json!(command(rest)));
        }
        "WORKDIR" => {
            cfg.insert("WorkingDir".into(), json!(rest));
        }
        "USER" => {
            cfg.insert("User".into(), json!(rest));
        }
        "STOPSIGNAL" => {
            cfg.insert("StopSignal".into(), json!(rest));
        }
        "ENV" => {
            let pairs = key_values(rest).ok_or_else(|| bad("ENV needs KEY=value"))?;
            let env = cfg.entry("Env").or_insert_with(|| json!([]));
            let list = env.as_array_mut().ok_or_else(|| bad("Env is not a list"))?;
            for (k, v) in pairs {
                list.retain(|e| {
                    e.as_str().and_then(|s| s.split_once('=')).map(|x| x.0) != Some(&k)
                });
                list.push(json!(format!("{k}={v}")));
            }
        }
        "LABEL" => {
            let pairs = key_values(rest).ok_or_else(|| bad("LABEL needs key=value"))?;
            let labels = cfg.entry("Labels").or_insert_with(|| json!({}));
            for (k, v) in pairs {
                labels[k] = json!(v);
            }
        }
        "EXPOSE" => {
            let ports = cfg.entry("ExposedPorts").or_insert_with(|| json!({}));
            for p in rest.split_whitespace() {
                let p = if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                };
                ports[p] = json!({});
            }
        }
        "VOLUME" => {
            let vols = cfg.entry("Volumes").or_insert_with(|| json!({}));
            let list = serde_json::from_str::<Vec<String>>(rest)
                .unwrap_or_else(|_| rest.split_whitespace().map(str::to_string).collect());
            for v in list {
                vols[v] = json!({});
            }
        }
        "HEALTHCHECK" => {
            cfg.insert(
                "Healthcheck".into(),
                healthcheck(rest).map_err(|w| bad(&w))?,
            );
        }
        "ONBUILD" => {
            let list = cfg.entry("OnBuild").or_insert_with(|| json!([]));
            if let Some(l) = list.as_array_mut() {
                l.push(json!(rest));
            }
        }
        "" => return Err(bad("empty change")),
        other => {
            return Err(Error::InvalidArgument(format!(
                "{other} is not a valid change command"
            )))
        }
    }
    Ok(())
}

/// `HEALTHCHECK [--interval=D] [--timeout=D] [--start-period=D] [--start-interval=D]
/// [--retries=N] CMD ...` or `HEALTHCHECK NONE`, as the image config's `Healthcheck`
/// (durations in nanoseconds), as a Dockerfile's HEALTHCHECK.
fn healthcheck(rest: &str) -> std::result::Result<Value, String> {
    let mut flags = Vec::new();
    let mut rest = rest.trim();
    while let Some(opt) = rest.strip_prefix("--") {
        let (word, tail) = opt.split_once(char::is_whitespace).unwrap_or((opt, ""));
        if !word.contains('=') {
            return Err(format!("HEALTHCHECK option needs a value: --{word}"));
        }
        flags.push(word.to_string());
        rest = tail.trim();
    }
    berth_builder::instructions::healthcheck(&flags, rest)
}

pub use berth_builder::instructions::go_duration;

/// JSON form (`["a","b"]`) or shell form (`/bin/sh -c "..."`).
fn command(rest: &str) -> Vec<String> {
    if let Ok(v) = serde_json::from_str::<Vec<String>>(rest) {
        return v;
    }
    vec!["/bin/sh".into(), "-c".into(), rest.into()]
}

/// `A=b C="d e"` or the legacy `A b c` (one pair).
fn key_values(rest: &str) -> Option<Vec<(String, String)>> {
    if rest.is_empty() {
        return None;
    }
    let first = rest.split_whitespace().next()?;
    if !first.contains('=') {
        let (k, v) = rest.split_once(char::is_whitespace)?;
        return Some(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    while chars.peek().is_some() {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if key.is_empty() {
            break;
        }
        let mut val = String::new();
        let mut quote = None;
        while let Some(&c) = chars.peek() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, c) if c.is_whitespace() => break,
                (_, '\\') => {
                    chars.next();
                    if let Some(n) = chars.next() {
                        val.push(n);
                    }
                    continue;
                }
                _ => val.push(c),
            }
            chars.next();
        }
        out.push((key, val));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(changes: &[&str]) -> Value {
        let mut cfg = Map::new();
        for c in changes {
            apply(&mut cfg, c).unwrap();
        }
        Value::Object(cfg)
    }

    #[test]
    fn instructions_map_to_docker_fields() {
        let c = applied(&[
            r#"CMD ["echo", "hi"]"#,
            "ENTRYPOINT /bin/sh -c x",
            "ENV A=1 B=\"two words\"",
            "ENV A=3",
            "WORKDIR /srv",
            "USER 1000:1000",
            "LABEL k=v",
            "EXPOSE 80 53/udp",
            "VOLUME /data",
            "STOPSIGNAL SIGINT",
        ]);
        assert_eq!(c["Cmd"], json!(["echo", "hi"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "/bin/sh -c x"]));
        assert_eq!(c["Env"], json!(["B=two words", "A=3"]));
        assert_eq!(c["WorkingDir"], "/srv");
        assert_eq!(c["User"], "1000:1000");
        assert_eq!(c["Labels"]["k"], "v");
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(c["Volumes"], json!({"/data": {}}));
        assert_eq!(c["StopSignal"], "SIGINT");
        let mut h = Map::new();
        apply(
            &mut h,
            "HEALTHCHECK --interval=1s --retries=2 CMD test -f /ok",
        )
        .unwrap();
        assert_eq!(
            h["Healthcheck"],
            json!({"Interval": 1_000_000_000i64, "Retries": 2, "Test": ["CMD-SHELL", "test -f /ok"]})
        );
        apply(&mut h, "HEALTHCHECK NONE").unwrap();
        assert_eq!(h["Healthcheck"]["Test"], json!(["NONE"]));
        assert_eq!(go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(go_duration("500ms"), Some(500_000_000));
    }

    #[test]
    fn unknown_instruction_is_refused() {
        let mut cfg = Map::new();
        let err = apply(&mut cfg, "FROB x").unwrap_err();
        assert!(
            err.to_string().contains("not a valid change command"),
            "{err}"
        );
        assert!(apply(&mut cfg, "ENV").is_err());
    }
}
