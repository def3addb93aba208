//! Typed request bodies, decoded as dockerd decodes them: a value of the wrong JSON type is a
//! 400 with Go's words (`json: cannot unmarshal string into Go struct field
//! HostConfig.HostConfig.Memory of type int64`), the error's path found by
//! `serde_path_to_error`.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;

/// Docker's strslice: a command given as one string or as a list of strings.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum StrSlice {
    One(String),
    Many(Vec<String>),
}

impl StrSlice {
    /// The words of the command (one string is one word, as dockerd keeps it).
    pub fn words(&self) -> Vec<String> {
        match self {
            StrSlice::One(s) if s.is_empty() => Vec::new(),
            StrSlice::One(s) => vec![s.clone()],
            StrSlice::Many(v) => v.clone(),
        }
    }
}

/// `Config` of `POST /containers/create` (the body's top level).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerConfig {
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub user: Option<String>,
    pub attach_stdin: Option<bool>,
    pub attach_stdout: Option<bool>,
    pub attach_stderr: Option<bool>,
    pub exposed_ports: Option<HashMap<String, Value>>,
    pub tty: Option<bool>,
    pub open_stdin: Option<bool>,
    pub stdin_once: Option<bool>,
    pub env: Option<Vec<String>>,
    pub cmd: Option<StrSlice>,
    pub healthcheck: Option<Value>,
    pub args_escaped: Option<bool>,
    pub image: Option<String>,
    pub volumes: Option<HashMap<String, Value>>,
    pub working_dir: Option<String>,
    pub entrypoint: Option<StrSlice>,
    pub network_disabled: Option<bool>,
    pub mac_address: Option<String>,
    pub on_build: Option<Vec<String>>,
    pub labels: Option<HashMap<String, String>>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    pub shell: Option<Vec<String>>,
}

/// `HostConfig` of `POST /containers/create`: the fields berth reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub cpu_period: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub pids_limit: Option<i64>,
    pub shm_size: Option<i64>,
    pub oom_score_adj: Option<i64>,
    pub blkio_weight: Option<u16>,
    pub privileged: Option<bool>,
    pub readonly_rootfs: Option<bool>,
    pub auto_remove: Option<bool>,
    pub init: Option<bool>,
    pub network_mode: Option<String>,
    pub ipc_mode: Option<String>,
    pub pid_mode: Option<String>,
    pub cgroup_parent: Option<String>,
    pub binds: Option<Vec<String>>,
    pub tmpfs: Option<HashMap<String, String>>,
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    pub group_add: Option<Vec<String>>,
    pub security_opt: Option<Vec<String>>,
    pub ulimits: Option<Vec<Ulimit>>,
    pub log_config: Option<LogConfig>,
}

/// One `--ulimit`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// `--log-driver` and `--log-opt`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub kind: String,
    pub config: Option<HashMap<String, String>>,
}

/// The create body as dockerd's `ContainerConfigWrapper`: Config at the top level, HostConfig
/// and NetworkingConfig beside it.
#[derive(Debug, Clone)]
pub struct CreateBody {
    pub config: ContainerConfig,
    pub host_config: HostConfig,
}

impl CreateBody {
    /// Decodes `body` (a JSON object), with Go's message for a mistyped field.
    pub fn decode(body: &Value) -> Result<CreateBody, ApiError> {
        let config = decode_as(body, "ContainerConfigWrapper.Config")?;
        let host_config = match &body["HostConfig"] {
            Value::Null => HostConfig::default(),
            Value::Object(_) => decode_as(&body["HostConfig"], "HostConfig.HostConfig")?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid JSON: json: cannot unmarshal {} into Go struct field \
                     ContainerConfigWrapper.HostConfig of type container.HostConfig",
                    go_kind(other)
                )))
            }
        };
        Ok(CreateBody {
            config,
            host_config,
        })
    }
}

/// Decodes `v` as `T`; a type error names the field under `scope` in Go's words.
fn decode_as<T: DeserializeOwned>(v: &Value, scope: &str) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let field = path
            .split('.')
            .next()
            .filter(|f| !f.is_empty() && *f != "?")
            .unwrap_or("");
        let at = if field.is_empty() {
            scope.to_string()
        } else {
            format!("{scope}.{field}")
        };
        let at = at.trim_end_matches(|c: char| c == '[' || c.is_ascii_digit() || c == ']');
        let value = lookup(v, field);
        let want = go_type(&e.inner().to_string());
        ApiError::bad_request(format!(
            "invalid JSON: json: cannot unmarshal {} into Go struct field {at} of type {want}",
            value.map(go_kind).unwrap_or("value")
        ))
    })
}

fn lookup<'a>(v: &'a Value, field: &str) -> Option<&'a Value> {
    let name = field.split('[').next().unwrap_or(field);
    v.get(name)
}

/// How Go's encoding/json names a JSON value's kind in its errors.
fn go_kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "null",
    }
}

/// The Go type dockerd decodes into, from serde's "expected ..." words.
fn go_type(serde_msg: &str) -> &'static str {
    let expected = serde_msg
        .split("expected ")
        .nth(1)
        .unwrap_or_default()
        .split(" at line")
        .next()
        .unwrap_or_default();
    match expected {
        "i64" => "int64",
        "u16" => "uint16",
        "a boolean" => "bool",
        "a string" => "string",
        "a sequence" => "[]string",
        "a map" => "map[string]string",
        e if e.starts_with("struct") => "struct",
        _ => "value",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn mistyped_fields_get_gos_words() {
        let e = CreateBody::decode(&json!({"Image": "x", "HostConfig": {"Memory": "lots"}}))
            .unwrap_err();
        assert_eq!(
            e.message,
            "invalid JSON: json: cannot unmarshal string into Go struct field \
             HostConfig.HostConfig.Memory of type int64"
        );
        let e = CreateBody::decode(&json!({"Image": "x", "Tty": "yes"})).unwrap_err();
        assert_eq!(
            e.message,
            "invalid JSON: json: cannot unmarshal string into Go struct field \
             ContainerConfigWrapper.Config.Tty of type bool"
        );
        let e = CreateBody::decode(&json!({"Image": 5})).unwrap_err();
        assert!(
            e.message.contains("Config.Image of type string"),
            "{}",
            e.message
        );
        let e = CreateBody::decode(&json!({"HostConfig": []})).unwrap_err();
        assert!(
            e.message.contains("of type container.HostConfig"),
            "{}",
            e.message
        );
    }

    #[test]
    fn commands_take_a_string_or_a_list() {
        let b = CreateBody::decode(&json!({"Image": "x", "Cmd": "echo", "Entrypoint": ["a", "b"]}))
            .unwrap();
        assert_eq!(b.config.cmd.unwrap().words(), vec!["echo"]);
        assert_eq!(b.config.entrypoint.unwrap().words(), vec!["a", "b"]);
        let b =
            CreateBody::decode(&json!({"Image": "x", "Cmd": null, "HostConfig": null})).unwrap();
        assert!(b.config.cmd.is_none());
        assert!(CreateBody::decode(&json!({"Cmd": [1]})).is_err());
    }
}
