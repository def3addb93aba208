//! Logging in runc's shapes: logrus-like text or `{"level","msg","time"}` JSON lines.
//!
//! containerd's runc shim reads the last `"level":"error"` line of `--log` (log.json)
//! and shows its `msg` to the user, so the final error of a failed command is always
//! written there as one line, and also printed plainly on stderr (as runc does when
//! its log is not stderr).

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

use crate::cli::GlobalOpts;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `time="..." level=error msg="..."` like logrus' text formatter.
    Text,
    /// `{"level":"error","msg":"...","time":"..."}` like logrus' JSON formatter.
    Json,
}

/// Where and how to log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `--log`; stderr when `None`.
    pub file: Option<PathBuf>,
    /// `--log-format`.
    pub format: LogFormat,
    /// `--debug`.
    pub debug: bool,
}

impl LogConfig {
    /// Build from the global flags; an unknown format falls back to text with a warning.
    pub fn from_global(global: &GlobalOpts) -> Self {
        let format = match global.log_format.as_str() {
            "json" => LogFormat::Json,
            _ => LogFormat::Text,
        };
        LogConfig {
            file: global.log.clone(),
            format,
            debug: global.debug,
        }
    }
}

#[derive(Debug)]
struct Sink {
    file: Option<Mutex<File>>,
    format: LogFormat,
    debug: bool,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Install the tracing subscriber. Call once, early.
pub fn init(config: &LogConfig) -> anyhow::Result<()> {
    let file = match &config.file {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("open log file {}: {e}", path.display()))?;
            Some(Mutex::new(file))
        }
        None => None,
    };
    let _ = SINK.set(Sink {
        file,
        format: config.format,
        debug: config.debug,
    });
    tracing_subscriber::registry()
        .with(RuncLayer)
        .try_init()
        .map_err(|e| anyhow::anyhow!("init logging: {e}"))?;
    Ok(())
}

/// Write the error that ends the command: one line to stderr and, when `--log` is a
/// file, one error line there (last, so containerd's shim picks it up).
pub fn report_fatal(err: &anyhow::Error) {
    let msg = error_line(err);
    if let Some(sink) = SINK.get() {
        if let Some(file) = &sink.file {
            let line = format_line(sink.format, "error", &msg, &Map::new(), &now());
            if let Ok(mut f) = file.lock() {
                let _ = f.write_all(line.as_bytes());
            }
        }
    }
    eprintln!("{msg}");
}

/// Flatten an error chain into one line: `outer: inner: root cause`, skipping
/// repeats (libcontainer often embeds its source in its own message).
pub fn error_line(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out.replace('\n', " ")
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Format one log line (with trailing newline) the way logrus does.
pub fn format_line(
    format: LogFormat,
    level: &str,
    msg: &str,
    fields: &Map<String, Value>,
    time: &str,
) -> String {
    match format {
        LogFormat::Json => {
            // logrus marshals a map, so keys come out sorted; serde_json's Map is sorted too.
            let mut obj = fields.clone();
            obj.insert("level".into(), Value::String(level.into()));
            obj.insert("msg".into(), Value::String(msg.into()));
            obj.insert("time".into(), Value::String(time.into()));
            let mut line = Value::Object(obj).to_string();
            line.push('\n');
            line
        }
        LogFormat::Text => {
            let mut line = format!("time={time:?} level={level} msg={msg:?}");
            for (k, v) in fields {
                let v = match v {
                    Value::String(s) => format!("{s:?}"),
                    other => other.to_string(),
                };
                let _ = write!(line, " {k}={v}");
            }
            line.push('\n');
            line
        }
    }
}

struct RuncLayer;

#[derive(Default)]
struct FieldCollector {
    message: String,
    fields: Map<String, Value>,
}

impl Visit for FieldCollector {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.fields
                .insert(field.name().to_string(), Value::String(value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields.insert(
                field.name().to_string(),
                Value::String(format!("{value:?}")),
            );
        }
    }
}

/// Whether an event is worth writing: everything with `--debug`; otherwise our own
/// warnings and errors, plus libcontainer's errors when logging to a file (stderr
/// stays one clean line per failure).
fn wanted(sink: &Sink, level: &Level, target: &str) -> bool {
    if sink.debug {
        return *level <= Level::DEBUG;
    }
    if target.starts_with("berth_runtime") {
        return *level <= Level::WARN;
    }
    sink.file.is_some() && *level <= Level::ERROR
}

impl<S: Subscriber> Layer<S> for RuncLayer {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        SINK.get()
            .is_some_and(|sink| wanted(sink, metadata.level(), metadata.target()))
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let Some(sink) = SINK.get() else { return };
        let mut collector = FieldCollector::default();
        event.record(&mut collector);
        let line = format_line(
            sink.format,
            level_name(event.metadata().level()),
            &collector.message,
            &collector.fields,
            &now(),
        );
        match &sink.file {
            Some(file) => {
                if let Ok(mut f) = file.lock() {
                    let _ = f.write_all(line.as_bytes());
                }
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_runc_keys_in_order() {
        let line = format_line(
            LogFormat::Json,
            "error",
            "container \"x\" does not exist",
            &Map::new(),
            "2024-01-02T03:04:05Z",
        );
        assert_eq!(
            line,
            "{\"level\":\"error\",\"msg\":\"container \\\"x\\\" does not exist\",\"time\":\"2024-01-02T03:04:05Z\"}\n"
        );
        let v: Value = serde_json::from_str(line.trim()).expect("json");
        assert_eq!(v["level"], "error");
    }

    #[test]
    fn text_line_is_logrus_like() {
        let mut fields = Map::new();
        fields.insert("container_id".into(), Value::String("c1".into()));
        let line = format_line(LogFormat::Text, "warning", "dropped caps", &fields, "T");
        assert_eq!(
            line,
            "time=\"T\" level=warning msg=\"dropped caps\" container_id=\"c1\"\n"
        );
    }

    #[test]
    fn error_line_joins_chain_without_repeats() {
        let err = anyhow::anyhow!("root cause").context("load container c1");
        assert_eq!(error_line(&err), "load container c1: root cause");
        let err = anyhow::anyhow!("a: b").context("a: b");
        assert_eq!(error_line(&err), "a: b");
    }
}
