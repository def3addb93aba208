//! Instructions checked and typed before a build starts: flags each one allows, argument
//! counts and forms, with dockerd's messages. Variables are expanded later, step by step.

use crate::error::{BuildError, Result};
use crate::parser::{self, Heredoc, Instruction};

/// Arguments in JSON (exec) form or shell form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    Json(Vec<String>),
    Shell(String),
}

impl Args {
    fn of(rest: &str) -> Args {
        match parser::json_args(rest) {
            Some(v) => Args::Json(v),
            None => Args::Shell(rest.trim().to_string()),
        }
    }
}

/// COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub add: bool,
    /// Sources as written (expanded when the step runs).
    pub sources: Vec<String>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub heredocs: Vec<Heredoc>,
    /// Sources and destination came in JSON form (no expansion of blanks).
    pub json: bool,
}

/// A typed instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    From {
        image: String,
        name: Option<String>,
        platform: Option<String>,
    },
    Run {
        args: Args,
        heredocs: Vec<Heredoc>,
    },
    Cmd(Args),
    Entrypoint(Args),
    Shell(Vec<String>),
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    Arg(Vec<(String, Option<String>)>),
    Expose(String),
    Volume(Args),
    User(String),
    Workdir(String),
    StopSignal(String),
    Copy(Copy),
    Onbuild(String),
    Healthcheck {
        flags: Vec<String>,
        args: String,
    },
    Maintainer(String),
}

fn err(ins: &Instruction, msg: impl std::fmt::Display) -> BuildError {
    BuildError::Parse(format!("dockerfile parse error line {}: {msg}", ins.line))
}

/// Flags each instruction takes (others are refused as dockerd does).
fn allowed_flags(keyword: &str) -> &'static [&'static str] {
    match keyword {
        "FROM" => &["platform"],
        "RUN" => &["mount", "network", "security"],
        "COPY" => &["from", "chown", "chmod", "link", "parents", "exclude"],
        "ADD" => &[
            "chown",
            "chmod",
            "checksum",
            "keep-git-dir",
            "link",
            "exclude",
        ],
        "HEALTHCHECK" => &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
        _ => &[],
    }
}

fn flag<'a>(flags: &'a [String], name: &str) -> Option<&'a str> {
    flags.iter().rev().find_map(|f| {
        let (k, v) = f.split_once('=').unwrap_or((f.as_str(), ""));
        (k == name).then_some(v)
    })
}

/// Types one instruction.
pub fn command(ins: &Instruction, escape: char) -> Result<Command> {
    let allowed = allowed_flags(&ins.keyword);
    for f in &ins.flags {
        let name = f.split_once('=').map(|x| x.0).unwrap_or(f);
        if !allowed.contains(&name) {
            return Err(err(ins, format!("Unknown flag: {name}")));
        }
    }
    let rest = ins.rest.trim();
    let words = || parser::split_words(rest, escape);
    let one = |what: &str| -> Result<String> {
        match words().len() {
            1 => Ok(rest.to_string()),
            _ => Err(err(ins, format!("{what} requires exactly one argument"))),
        }
    };
    let at_least_one = || -> Result<()> {
        if rest.is_empty() {
            Err(err(
                ins,
                format!("{} requires at least one argument", ins.keyword),
            ))
        } else {
            Ok(())
        }
    };
    Ok(match ins.keyword.as_str() {
        "FROM" => {
            let w = words();
            let (image, name) = match w.as_slice() {
                [i] => (i.clone(), None),
                [i, as_, n] if as_.eq_ignore_ascii_case("as") => {
                    (i.clone(), Some(n.to_ascii_lowercase()))
                }
                [_, x, _] => {
                    return Err(err(
                        ins,
                        format!(
                            "FROM requires either one or three arguments: expected 'AS', got {x:?}"
                        ),
                    ))
                }
                _ => return Err(err(ins, "FROM requires either one or three arguments")),
            };
            Command::From {
                image,
                name,
                platform: flag(&ins.flags, "platform").map(str::to_string),
            }
        }
        "RUN" => {
            at_least_one()?;
            for (f, what) in [
                ("mount", "--mount"),
                ("network", "--network"),
                ("security", "--security"),
            ] {
                if flag(&ins.flags, f).is_some() {
                    return Err(BuildError::step(format!("the {what} option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled")));
                }
            }
            Command::Run {
                args: Args::of(rest),
                heredocs: ins.heredocs.clone(),
            }
        }
        "CMD" => Command::Cmd(Args::of(rest)),
        "ENTRYPOINT" => Command::Entrypoint(Args::of(rest)),
        "SHELL" => match parser::json_args(rest) {
            Some(v) if !v.is_empty() => Command::Shell(v),
            _ => return Err(err(ins, "SHELL requires the arguments to be in JSON form")),
        },
        "ENV" => Command::Env(parser::name_values("ENV", rest, escape, ins.line)?),
        "LABEL" => Command::Label(parser::name_values("LABEL", rest, escape, ins.line)?),
        "ARG" => {
            let w = words();
            if w.is_empty() {
                return Err(err(ins, "ARG requires at least one argument"));
            }
            Command::Arg(
                w.into_iter()
                    .map(|a| match a.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (a, None),
                    })
                    .collect(),
            )
        }
        "EXPOSE" => {
            at_least_one()?;
            Command::Expose(rest.to_string())
        }
        "VOLUME" => {
            at_least_one()?;
            Command::Volume(Args::of(rest))
        }
        "USER" => Command::User(one("USER")?),
        "WORKDIR" => {
            at_least_one()?;
            Command::Workdir(rest.to_string())
        }
        "STOPSIGNAL" => Command::StopSignal(one("STOPSIGNAL")?),
        "MAINTAINER" => {
            at_least_one()?;
            Command::Maintainer(rest.to_string())
        }
        "ONBUILD" => {
            at_least_one()?;
            let trigger = rest
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            match trigger.as_str() {
                "ONBUILD" => {
                    return Err(err(
                        ins,
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                    ))
                }
                "FROM" | "MAINTAINER" => {
                    return Err(err(
                        ins,
                        format!("{trigger} isn't allowed as an ONBUILD trigger"),
                    ))
                }
                _ => {}
            }
            Command::Onbuild(rest.to_string())
        }
        "HEALTHCHECK" => {
            at_least_one()?;
            let kind = rest
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            if kind != "NONE" && kind != "CMD" {
                return Err(err(
                    ins,
                    format!("Unknown type \"{kind}\" in HEALTHCHECK (try CMD)"),
                ));
            }
            if kind == "CMD" && rest.split_whitespace().count() < 2 {
                return Err(err(ins, "Missing command after HEALTHCHECK CMD"));
            }
            Command::Healthcheck {
                flags: ins.flags.clone(),
                args: rest.to_string(),
            }
        }
        "COPY" | "ADD" => {
            let add = ins.keyword == "ADD";
            if let Some(f) = ["link", "parents", "exclude", "checksum", "keep-git-dir"]
                .iter()
                .find(|f| flag(&ins.flags, f).is_some())
            {
                return Err(BuildError::step(format!("the --{f} option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled")));
            }
            let (json, mut parts) = match parser::json_args(rest) {
                Some(v) => (true, v),
                None => (false, words()),
            };
            // Heredoc markers are sources of their own.
            if !ins.heredocs.is_empty() {
                parts.retain(|p| !p.starts_with("<<"));
            }
            let needed = if ins.heredocs.is_empty() { 2 } else { 1 };
            if parts.len() < needed {
                return Err(err(ins, format!("{} requires at least two arguments, but only one was provided. Destination could not be determined.", ins.keyword)));
            }
            let dest = parts.pop().unwrap_or_default();
            Command::Copy(Copy {
                add,
                sources: parts,
                dest,
                from: flag(&ins.flags, "from").map(str::to_string),
                chown: flag(&ins.flags, "chown").map(str::to_string),
                chmod: flag(&ins.flags, "chmod").map(str::to_string),
                heredocs: ins.heredocs.clone(),
                json,
            })
        }
        other => return Err(err(ins, format!("unknown instruction: {other}"))),
    })
}

/// A HEALTHCHECK as the image config's `Healthcheck` (durations in nanoseconds).
pub fn healthcheck(flags: &[String], args: &str) -> std::result::Result<serde_json::Value, String> {
    use serde_json::json;
    let mut hc = serde_json::Map::new();
    for f in flags {
        let (k, v) = f.split_once('=').unwrap_or((f.as_str(), ""));
        let field = match k {
            "interval" => "Interval",
            "timeout" => "Timeout",
            "start-period" => "StartPeriod",
            "start-interval" => "StartInterval",
            "retries" => "Retries",
            _ => return Err(format!("Unknown flag: {k}")),
        };
        let n = if field == "Retries" {
            let r = v
                .parse::<i64>()
                .map_err(|_| format!("strconv.ParseInt: parsing {v:?}: invalid syntax"))?;
            if r < 1 {
                return Err(format!("--retries must be at least 1 (not {r})"));
            }
            r
        } else {
            let d = go_duration(v).ok_or_else(|| format!("time: invalid duration \"{v}\""))?;
            if d != 0 && d < 1_000_000 {
                return Err(format!("Interval {:?} cannot be less than 1ms", k));
            }
            d
        };
        hc.insert(field.into(), json!(n));
    }
    let args = args.trim();
    let (kind, cmd) = args
        .split_once(char::is_whitespace)
        .map(|(a, b)| (a, b.trim()))
        .unwrap_or((args, ""));
    let test = match kind.to_ascii_uppercase().as_str() {
        "NONE" => {
            if !cmd.is_empty() {
                return Err("HEALTHCHECK NONE takes no arguments".into());
            }
            vec!["NONE".to_string()]
        }
        "CMD" => match parser::json_args(cmd) {
            Some(v) => std::iter::once("CMD".to_string()).chain(v).collect(),
            None if !cmd.is_empty() => vec!["CMD-SHELL".to_string(), cmd.to_string()],
            None => return Err("Missing command after HEALTHCHECK CMD".into()),
        },
        other => return Err(format!("Unknown type \"{other}\" in HEALTHCHECK (try CMD)")),
    };
    hc.insert("Test".into(), json!(test));
    Ok(serde_json::Value::Object(hc))
}

/// A Go duration (`10m`, `1h30m`, `1.5s`, `300ms`, `-2h`) in nanoseconds, as Go's
/// `time.ParseDuration` reads it.
pub fn go_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, mut rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    let total = if neg { -total } else { total };
    (total.abs() < i64::MAX as f64).then_some(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(text: &str) -> Result<Command> {
        let df = parser::parse(text)?;
        command(&df.instructions[0], '\\')
    }

    #[test]
    fn typed_and_refused() {
        assert!(
            matches!(cmd("FROM a AS Build").expect("from"), Command::From { name: Some(n), .. } if n == "build")
        );
        assert_eq!(
            cmd("ENV --foo=1 a=b").expect_err("flag").to_string(),
            "dockerfile parse error line 1: Unknown flag: foo"
        );
        assert_eq!(
            cmd("ENV").expect_err("empty").to_string(),
            "dockerfile parse error line 1: ENV requires at least one argument"
        );
        assert!(cmd("COPY a").is_err());
        assert!(cmd("SHELL sh -c").is_err());
        assert!(cmd("ONBUILD ONBUILD RUN x").is_err());
        match cmd("COPY --from=b --chown=1:2 a b /d/").expect("copy") {
            Command::Copy(c) => {
                assert_eq!(c.sources, vec!["a", "b"]);
                assert_eq!(c.dest, "/d/");
                assert_eq!(c.from.as_deref(), Some("b"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn healthcheck_config() {
        let hc = healthcheck(
            &["interval=5s".into(), "retries=2".into()],
            "CMD [\"true\"]",
        )
        .expect("hc");
        assert_eq!(hc["Interval"], 5_000_000_000i64);
        assert_eq!(hc["Retries"], 2);
        assert_eq!(hc["Test"], serde_json::json!(["CMD", "true"]));
        assert_eq!(
            healthcheck(&[], "CMD curl x").expect("hc")["Test"][0],
            "CMD-SHELL"
        );
        assert_eq!(go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(go_duration("-2h"), Some(-7_200_000_000_000));
        assert_eq!(go_duration("5"), None);
    }
}
