//! The daemon's event bus: Docker's `/events` messages, a ring buffer of recent events for
//! `since`, Docker's event filters and its time parameters.
//!
//! Events fan out on a tokio `broadcast` channel; a subscriber that falls behind by more than
//! the channel holds is dropped (its stream ends), so a slow client never slows the engine.
//! Publishing and subscribing take the same lock, so a subscriber sees every event exactly
//! once: either in the replayed buffer or on the live channel.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::container::Record;
use crate::Engine;

/// Recent events kept for `since` (dockerd keeps 256; berth keeps more).
pub const RING_SIZE: usize = 1024;

/// How far a live subscriber may fall behind before it is dropped.
const CHANNEL_SIZE: usize = 1024;

/// Filter keys the events API accepts (API 1.45); any other is refused as Docker does.
const FILTER_KEYS: &[&str] = &[
    "config",
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "secret",
    "service",
    "type",
    "volume",
];

/// The object an event is about (`Actor` in Docker's JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Actor {
    /// Container id, image id or reference, ...
    #[serde(rename = "ID")]
    pub id: String,
    /// name, image, exitCode, signal, labels, ... (sorted, as Go's encoder writes maps).
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// One event, in the shape of Docker's `events.Message` (API 1.45), field order included.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// Deprecated copy of `Action` (container and image events only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// Deprecated copy of `Actor.ID` (container and image events only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Deprecated: the container's image (container events only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub from: String,
    /// container, image, network, volume, daemon, ...
    #[serde(rename = "Type")]
    pub kind: String,
    /// create, start, die, tag, ...
    #[serde(rename = "Action")]
    pub action: String,
    /// What the event is about.
    #[serde(rename = "Actor")]
    pub actor: Actor,
    /// Always `local` on a single engine.
    pub scope: String,
    /// Unix seconds.
    pub time: i64,
    /// Unix nanoseconds.
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

impl Message {
    /// A new event stamped now, with the deprecated fields filled as dockerd does.
    pub fn new(kind: &str, action: &str, actor: Actor) -> Message {
        let now = chrono::Utc::now();
        let time_nano = now
            .timestamp_nanos_opt()
            .unwrap_or(now.timestamp().saturating_mul(1_000_000_000));
        let (status, id, from) = match kind {
            "container" => (
                action.to_string(),
                actor.id.clone(),
                actor.attributes.get("image").cloned().unwrap_or_default(),
            ),
            "image" => (action.to_string(), actor.id.clone(), String::new()),
            _ => Default::default(),
        };
        Message {
            status,
            id,
            from,
            kind: kind.to_string(),
            action: action.to_string(),
            actor,
            scope: "local".into(),
            time: time_nano.div_euclid(1_000_000_000),
            time_nano,
        }
    }
}

/// The event bus: a ring buffer of recent events and a broadcast channel for live ones.
#[derive(Debug)]
pub struct EventBus {
    ring: Mutex<VecDeque<Arc<Message>>>,
    tx: broadcast::Sender<Arc<Message>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            ring: Mutex::new(VecDeque::with_capacity(RING_SIZE)),
            tx: broadcast::channel(CHANNEL_SIZE).0,
        }
    }
}

impl EventBus {
    fn ring(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Message>>> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `msg` and sends it to every live subscriber.
    pub fn publish(&self, msg: Message) {
        tracing::debug!(kind = %msg.kind, action = %msg.action, id = %msg.actor.id, "event");
        let msg = Arc::new(msg);
        let mut ring = self.ring();
        if ring.len() >= RING_SIZE {
            ring.pop_front();
        }
        ring.push_back(msg.clone());
        // No receivers is fine: nobody is listening.
        let _ = self.tx.send(msg);
    }

    /// The buffered events between `since` and `until` (Unix nanoseconds; both `None`: none,
    /// as dockerd replays only when asked) and a receiver of every later event.
    pub fn subscribe(
        &self,
        since: Option<i64>,
        until: Option<i64>,
    ) -> (Vec<Arc<Message>>, broadcast::Receiver<Arc<Message>>) {
        let ring = self.ring();
        let rx = self.tx.subscribe();
        if since.is_none() && until.is_none() {
            return (Vec::new(), rx);
        }
        let since = since.unwrap_or(i64::MIN);
        let until = until.unwrap_or(i64::MAX);
        let past = ring
            .iter()
            .filter(|m| m.time_nano >= since && m.time_nano <= until)
            .cloned()
            .collect();
        (past, rx)
    }
}

// ---- filters -------------------------------------------------------------------------------

/// Docker's events filter (`filters` query parameter), e.g.
/// `{"type":["container"],"event":["die"],"label":["a=b"]}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    args: HashMap<String, Vec<String>>,
}

impl EventFilter {
    /// Parses the JSON of the `filters` parameter: `{"key":["v",...]}` or the legacy
    /// `{"key":{"v":true}}`. Unknown keys are refused with Docker's message.
    pub fn parse(raw: &str) -> Result<EventFilter, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(EventFilter::default());
        }
        let v: Value = serde_json::from_str(raw).map_err(|e| format!("invalid filter: {e}"))?;
        let obj = match v {
            Value::Object(o) => o,
            Value::Null => return Ok(EventFilter::default()),
            _ => return Err("invalid filter: expected a JSON object".into()),
        };
        let mut args = HashMap::new();
        for (k, val) in obj {
            if !FILTER_KEYS.contains(&k.as_str()) {
                return Err(format!("invalid filter '{k}'"));
            }
            let list: Vec<String> = match val {
                Value::Array(a) => a
                    .iter()
                    .map(|x| match x {
                        Value::String(s) => Ok(s.clone()),
                        other => Err(format!("invalid filter '{k}': bad value {other}")),
                    })
                    .collect::<Result<_, _>>()?,
                Value::Object(m) => m
                    .into_iter()
                    .filter(|(_, on)| on.as_bool().unwrap_or(false))
                    .map(|(v, _)| v)
                    .collect(),
                other => return Err(format!("invalid filter '{k}': bad value {other}")),
            };
            args.insert(k, list);
        }
        Ok(EventFilter { args })
    }

    /// The values given for `key` (empty: the key was not given).
    fn values(&self, key: &str) -> Option<&[String]> {
        self.args.get(key).map(Vec::as_slice)
    }

    /// Docker's `ExactMatch`: no values for `key`, or `source` is one of them.
    fn exact(&self, key: &str, source: &str) -> bool {
        self.values(key)
            .is_none_or(|v| v.is_empty() || v.iter().any(|x| x == source))
    }

    /// Docker's `FuzzyMatch`: no values for `key`, or one is a prefix of `source`.
    fn fuzzy(&self, key: &str, source: &str) -> bool {
        self.values(key)
            .is_none_or(|v| v.is_empty() || v.iter().any(|x| source.starts_with(x.as_str())))
    }

    fn match_event(&self, m: &Message) -> bool {
        // Docker (#25798): exec_create, exec_start and health_status carry the command after
        // a colon in the Action, so filtering on the bare name matches by prefix.
        let fuzzy = self.values("event").is_some_and(|v| {
            v.iter()
                .any(|x| matches!(x.as_str(), "exec_create" | "exec_start" | "health_status"))
        });
        if fuzzy {
            self.fuzzy("event", &m.action)
        } else {
            self.exact("event", &m.action)
        }
    }

    /// The id or the `name` attribute of an event of type `kind` starts with a value of
    /// the filter key named like the type (`container`, `network`, ...).
    fn match_name(&self, m: &Message, kind: &str) -> bool {
        if self.values(kind).is_none_or(<[String]>::is_empty) {
            return true;
        }
        m.kind == kind
            && (self.fuzzy(kind, &m.actor.id)
                || m.actor
                    .attributes
                    .get("name")
                    .is_some_and(|n| self.fuzzy(kind, n)))
    }

    fn match_image(&self, m: &Message) -> bool {
        if self.values("image").is_none_or(<[String]>::is_empty) {
            return true;
        }
        let attr = if m.kind == "image" { "name" } else { "image" };
        let name = m.actor.attributes.get(attr).cloned().unwrap_or_default();
        [
            m.actor.id.as_str(),
            name.as_str(),
            strip_tag(&m.actor.id),
            strip_tag(&name),
        ]
        .iter()
        .any(|s| !s.is_empty() && self.exact("image", s))
    }

    /// Every `label` value (`key` or `key=value`) must hold on the attributes.
    fn match_labels(&self, attrs: &BTreeMap<String, String>) -> bool {
        self.values("label").is_none_or(|v| {
            v.iter().all(|f| match f.split_once('=') {
                Some((k, val)) => attrs.get(k).is_some_and(|a| a == val),
                None => attrs.contains_key(f.as_str()),
            })
        })
    }

    /// Whether `m` passes the filter (every given key must match, as in dockerd).
    pub fn matches(&self, m: &Message) -> bool {
        self.match_event(m)
            && self.exact("type", &m.kind)
            && self.exact("scope", &m.scope)
            && self.match_name(m, "container")
            && self.match_name(m, "network")
            && self.match_name(m, "volume")
            && self.match_name(m, "plugin")
            && self.match_name(m, "daemon")
            && self.match_name(m, "node")
            && self.match_name(m, "service")
            && self.match_name(m, "secret")
            && self.match_name(m, "config")
            && self.match_image(m)
            && self.match_labels(&m.actor.attributes)
    }
}

/// `busybox:latest` -> `busybox` (a digest or a registry port is left alone).
fn strip_tag(image: &str) -> &str {
    if image.contains('@') {
        return image;
    }
    match image.rfind(':') {
        Some(i) if !image[i + 1..].contains('/') => &image[..i],
        _ => image,
    }
}

// ---- time parameters -----------------------------------------------------------------------

/// A Go duration (`10m`, `1h30m`, `1.5s`, `300ms`, `-2h`) in nanoseconds.
pub fn parse_go_duration(s: &str) -> Option<i64> {
    berth_builder::instructions::go_duration(s)
}

/// `seconds[.fraction]` as written by the docker CLI (`1700000000.000000001`).
fn parse_unix(s: &str) -> Option<i64> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let nanos: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Parses a `since`/`until` value as docker accepts it: Unix seconds (with an optional
/// fraction), RFC 3339 (with or without zone and seconds; no zone means local time), a date,
/// or a Go duration counted back from `now_nanos`. Returns Unix nanoseconds.
pub fn parse_time(value: &str, now_nanos: i64) -> Result<i64, String> {
    let v = value.trim();
    if let Some(n) = parse_unix(v) {
        return Ok(n);
    }
    if let Some(d) = parse_go_duration(v) {
        return Ok(now_nanos - d);
    }
    let nanos = |t: chrono::DateTime<chrono::FixedOffset>| t.timestamp_nanos_opt();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        if let Some(n) = nanos(t) {
            return Ok(n);
        }
    }
    // Zoned forms without seconds (`2006-01-02T15:04Z07:00`, `2006-01-02T15Z`).
    for fmt in ["%Y-%m-%dT%H:%M%#z", "%Y-%m-%dT%H:%M%:z"] {
        if let Ok(t) = chrono::DateTime::parse_from_str(v, fmt) {
            if let Some(n) = nanos(t) {
                return Ok(n);
            }
        }
    }
    let zulu = v.strip_suffix(['Z', 'z']);
    let local = zulu.unwrap_or(v);
    let naive = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H"]
        .iter()
        .find_map(|f| {
            let padded = if *f == "%Y-%m-%dT%H" {
                format!("{local}:00")
            } else {
                local.to_string()
            };
            let f = if *f == "%Y-%m-%dT%H" {
                "%Y-%m-%dT%H:%M"
            } else {
                f
            };
            chrono::NaiveDateTime::parse_from_str(&padded, f).ok()
        })
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(local, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        });
    if let Some(n) = naive {
        let t = if zulu.is_some() {
            Some(n.and_utc().fixed_offset())
        } else {
            n.and_local_timezone(chrono::Local)
                .earliest()
                .map(|t| t.fixed_offset())
        };
        if let Some(n) = t.and_then(nanos) {
            return Ok(n);
        }
    }
    Err(format!(
        "failed to parse value as time or duration: \"{value}\""
    ))
}

/// The current time in Unix nanoseconds.
pub fn now_nanos() -> i64 {
    let now = chrono::Utc::now();
    now.timestamp_nanos_opt()
        .unwrap_or(now.timestamp().saturating_mul(1_000_000_000))
}

// ---- emitting from the engine --------------------------------------------------------------

impl Engine {
    /// Publishes a container event for `rec`: its labels, `image` and `name` (without the
    /// leading slash) plus `extra` attributes (`exitCode`, `signal`, `oldName`, ...).
    pub fn emit_container(&self, rec: &Record, action: &str, extra: &[(&str, String)]) {
        let mut attributes: BTreeMap<String, String> = rec.labels();
        let image = rec.config["Image"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or(&rec.image);
        attributes.insert("image".into(), image.to_string());
        attributes.insert("name".into(), rec.name.trim_start_matches('/').to_string());
        for (k, v) in extra {
            attributes.insert((*k).to_string(), v.clone());
        }
        let actor = Actor {
            id: rec.id.clone(),
            attributes,
        };
        self.events
            .publish(Message::new("container", action, actor));
    }

    /// `die` for `rec`, whose state already holds the exit: `exitCode` and `execDuration`
    /// (whole seconds it ran), as dockerd sends them.
    pub fn emit_die(&self, rec: &Record) {
        let secs = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
        let ran = match (secs(&rec.state.started_at), secs(&rec.state.finished_at)) {
            (Some(a), Some(b)) => (b - a).num_seconds().max(0),
            _ => 0,
        };
        self.emit_container(
            rec,
            "die",
            &[
                ("exitCode", rec.state.exit_code.to_string()),
                ("execDuration", ran.to_string()),
            ],
        );
    }

    /// Like [`Engine::emit_container`] for a container by id or name (ignored if it is gone).
    pub fn emit_container_id(&self, id: &str, action: &str, extra: &[(&str, String)]) {
        if let Ok(rec) = self.find(id) {
            self.emit_container(&rec, action, extra);
        }
    }

    /// `exec_create`, `exec_start` or `exec_die` of the exec `exec_id`. As dockerd, the first
    /// two carry the command in the Action (`exec_start: sh -c date`); all carry `execID`, and
    /// `exec_die` the `exitCode`.
    pub fn emit_exec_event(&self, exec_id: &str, action: &str) {
        let Some(ex) = self
            .execs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(exec_id)
            .cloned()
        else {
            return;
        };
        let Ok(rec) = self.find(&ex.container_id) else {
            return;
        };
        let mut extra = vec![("execID", ex.id.clone())];
        let full_action = if action == "exec_die" {
            extra.push(("exitCode", ex.exit_code.unwrap_or(0).to_string()));
            action.to_string()
        } else {
            let cmd: Vec<&str> = ex.config["Cmd"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!("{action}: {}", cmd.join(" "))
        };
        self.emit_container(&rec, &full_action, &extra);
    }

    /// `untag` and `delete` events for what an image removal or prune reported. Untags take
    /// the id of the image deleted after them in the report, else `image_id`.
    pub fn emit_image_removals(&self, image_id: &str, removed: &[berth_image::Removed]) {
        let mut untagged: Vec<&str> = Vec::new();
        for r in removed {
            match r {
                berth_image::Removed::Untagged(t) => untagged.push(t),
                berth_image::Removed::Deleted(d) => {
                    for t in untagged.drain(..) {
                        self.emit_image_event("untag", d, t);
                    }
                    self.emit_image_event("delete", d, d);
                }
            }
        }
        for t in untagged {
            self.emit_image_event("untag", image_id, t);
        }
    }

    /// Publishes an image event: `action` is load, import, tag, untag, delete, save, pull or
    /// push; `id` the image id (for pull and push Docker puts the reference there too) and
    /// `name` the reference it was named by.
    pub fn emit_image_event(&self, action: &str, id: &str, name: &str) {
        let mut attributes = BTreeMap::new();
        if !name.is_empty() {
            attributes.insert("name".to_string(), name.to_string());
        }
        let actor = Actor {
            id: id.to_string(),
            attributes,
        };
        self.events.publish(Message::new("image", action, actor));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: &str, action: &str, id: &str, attrs: &[(&str, &str)]) -> Message {
        Message::new(
            kind,
            action,
            Actor {
                id: id.into(),
                attributes: attrs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
        )
    }

    #[test]
    fn message_has_dockers_shape_and_legacy_fields() {
        let m = msg(
            "container",
            "die",
            "abc",
            &[("name", "web"), ("image", "busybox"), ("exitCode", "3")],
        );
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["status"], "die");
        assert_eq!(v["id"], "abc");
        assert_eq!(v["from"], "busybox");
        assert_eq!(v["Type"], "container");
        assert_eq!(v["Action"], "die");
        assert_eq!(v["Actor"]["ID"], "abc");
        assert_eq!(v["Actor"]["Attributes"]["exitCode"], "3");
        assert_eq!(v["scope"], "local");
        assert_eq!(v["time"].as_i64().unwrap(), m.time_nano / 1_000_000_000);
        // Go's field order: status, id, from, Type, Action, Actor, scope, time, timeNano.
        let text = serde_json::to_string(&m).unwrap();
        let at = |k: &str| text.find(&format!("\"{k}\":")).unwrap();
        let order = [
            "status", "id", "from", "Type", "Action", "Actor", "scope", "time", "timeNano",
        ];
        assert!(order.windows(2).all(|w| at(w[0]) < at(w[1])), "{text}");
        // Network events carry no legacy fields.
        let n = serde_json::to_value(msg("network", "connect", "n1", &[])).unwrap();
        assert!(n.get("status").is_none() && n.get("id").is_none() && n.get("from").is_none());
    }

    #[test]
    fn filter_parses_both_shapes_and_refuses_unknown_keys() {
        let a = EventFilter::parse(r#"{"type":["container"],"event":["die"]}"#).unwrap();
        let b = EventFilter::parse(r#"{"type":{"container":true},"event":{"die":true}}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(EventFilter::parse("").unwrap(), EventFilter::default());
        assert_eq!(
            EventFilter::parse(r#"{"action":["die"]}"#).unwrap_err(),
            "invalid filter 'action'"
        );
        assert!(EventFilter::parse("{not json")
            .unwrap_err()
            .starts_with("invalid filter"));
        assert!(EventFilter::parse(r#"{"type":"container"}"#).is_err());
    }

    #[test]
    fn filter_matches_like_dockerd() {
        let die = msg(
            "container",
            "die",
            "0123abcd",
            &[
                ("name", "web"),
                ("image", "busybox:latest"),
                ("exitCode", "0"),
                ("tier", "front"),
            ],
        );
        let tag = msg("image", "tag", "sha256:feed", &[("name", "busybox:v2")]);
        let f = |s: &str| EventFilter::parse(s).unwrap();
        assert!(f("{}").matches(&die) && f("{}").matches(&tag));
        assert!(f(r#"{"type":["container"]}"#).matches(&die));
        assert!(!f(r#"{"type":["container"]}"#).matches(&tag));
        assert!(f(r#"{"event":["start","die"]}"#).matches(&die));
        assert!(!f(r#"{"event":["start"]}"#).matches(&die));
        // Container by name, or by id prefix; not other types.
        assert!(f(r#"{"container":["web"]}"#).matches(&die));
        assert!(f(r#"{"container":["0123"]}"#).matches(&die));
        assert!(!f(r#"{"container":["db"]}"#).matches(&die));
        assert!(!f(r#"{"container":["0123"]}"#).matches(&tag));
        // Image: with or without the tag, on containers and images.
        assert!(f(r#"{"image":["busybox"]}"#).matches(&die));
        assert!(f(r#"{"image":["busybox:latest"]}"#).matches(&die));
        assert!(f(r#"{"image":["busybox"]}"#).matches(&tag));
        assert!(!f(r#"{"image":["alpine"]}"#).matches(&die));
        // Labels: key, key=value; all must hold.
        assert!(f(r#"{"label":["tier"]}"#).matches(&die));
        assert!(f(r#"{"label":["tier=front"]}"#).matches(&die));
        assert!(!f(r#"{"label":["tier=back"]}"#).matches(&die));
        assert!(!f(r#"{"label":["tier=front","other"]}"#).matches(&die));
        // Exec actions carry the command: the bare name matches by prefix.
        let exec = msg(
            "container",
            "exec_start: sh -c true",
            "0123",
            &[("name", "web")],
        );
        assert!(f(r#"{"event":["exec_start"]}"#).matches(&exec));
        assert!(!f(r#"{"event":["exec_die"]}"#).matches(&exec));
        // Keys combine with AND.
        assert!(!f(r#"{"type":["container"],"event":["start"]}"#).matches(&die));
    }

    #[test]
    fn strip_tag_keeps_registry_ports_and_digests() {
        assert_eq!(strip_tag("busybox:latest"), "busybox");
        assert_eq!(
            strip_tag("localhost:5000/busybox"),
            "localhost:5000/busybox"
        );
        assert_eq!(
            strip_tag("localhost:5000/busybox:1"),
            "localhost:5000/busybox"
        );
        assert_eq!(strip_tag("busybox@sha256:ab"), "busybox@sha256:ab");
        assert_eq!(strip_tag("sha256:ab"), "sha256");
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("10m"), Some(600_000_000_000));
        assert_eq!(parse_go_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_go_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_go_duration("300ms"), Some(300_000_000));
        assert_eq!(parse_go_duration("-2s"), Some(-2_000_000_000));
        assert_eq!(parse_go_duration("0"), Some(0));
        for bad in ["", "10", "m", "10x", "1h-", "abc"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn times_as_docker_accepts_them() {
        let now = 1_700_000_000_000_000_000i64;
        let p = |s: &str| parse_time(s, now);
        assert_eq!(p("1700000000"), Ok(1_700_000_000_000_000_000));
        assert_eq!(p("1700000000.5"), Ok(1_700_000_000_500_000_000));
        assert_eq!(p("1700000000.000000001"), Ok(1_700_000_000_000_000_001));
        assert_eq!(p("10m"), Ok(now - 600_000_000_000));
        assert_eq!(p("1h"), Ok(now - 3_600_000_000_000));
        assert_eq!(p("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000_000_000));
        assert_eq!(p("2023-11-14T22:13:20.25Z"), Ok(1_700_000_000_250_000_000));
        assert_eq!(
            p("2023-11-14T23:13:20+01:00"),
            Ok(1_700_000_000_000_000_000)
        );
        assert_eq!(p("2023-11-14T22:13Z"), Ok(1_699_999_980_000_000_000));
        // Without a zone: local time, as docker's CLI does.
        let local = chrono::NaiveDate::from_ymd_opt(2023, 11, 14)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .and_then(|n| n.and_local_timezone(chrono::Local).earliest())
            .and_then(|t| t.timestamp_nanos_opt())
            .unwrap();
        assert_eq!(p("2023-11-14"), Ok(local));
        assert_eq!(p("2023-11-14T00:00:00"), Ok(local));
        assert_eq!(p("2023-11-14T00"), Ok(local));
        assert_eq!(p("2023-11-14T00:00"), Ok(local));
        for bad in ["yesterday", "2023-13-45", "12:00", "1.2.3", ""] {
            let e = p(bad).unwrap_err();
            assert!(
                e.contains("failed to parse value as time or duration"),
                "{e}"
            );
        }
    }

    #[test]
    fn bus_replays_since_and_until_and_streams_the_rest() {
        let bus = EventBus::default();
        bus.publish(msg("container", "create", "a", &[]));
        let mid = now_nanos();
        std::thread::sleep(std::time::Duration::from_millis(2));
        bus.publish(msg("container", "start", "a", &[]));
        let (none, _) = bus.subscribe(None, None);
        assert!(none.is_empty(), "no replay unless asked");
        let (all, _) = bus.subscribe(Some(0), None);
        assert_eq!(all.len(), 2);
        let (late, _) = bus.subscribe(Some(mid), None);
        assert_eq!(
            late.iter().map(|m| m.action.as_str()).collect::<Vec<_>>(),
            ["start"]
        );
        let (early, mut rx) = bus.subscribe(Some(0), Some(mid));
        assert_eq!(
            early.iter().map(|m| m.action.as_str()).collect::<Vec<_>>(),
            ["create"]
        );
        bus.publish(msg("container", "die", "a", &[]));
        assert_eq!(rx.try_recv().unwrap().action, "die");
    }

    #[test]
    fn ring_keeps_the_most_recent_events() {
        let bus = EventBus::default();
        for i in 0..RING_SIZE + 10 {
            bus.publish(msg("image", "tag", &i.to_string(), &[]));
        }
        let (all, _) = bus.subscribe(Some(0), None);
        assert_eq!(all.len(), RING_SIZE);
        assert_eq!(all[0].actor.id, "10");
    }
}
