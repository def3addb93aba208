//! Health checks: the image's HEALTHCHECK or `--health-*`, probed in the running container as
//! an exec at each interval; State.Health (`starting`, `healthy`, `unhealthy`, FailingStreak,
//! the last five results) and `health_status` events, as dockerd keeps them.

use std::sync::Arc;
use std::time::Duration;

use berth_proto::supervisor::v1 as pb;
use berth_proto::types::v1 as types;
use serde_json::{json, Value};

use super::Record;
use crate::{now, Engine};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: i64 = 3;
/// Output kept of one probe, as dockerd (4 KiB).
const MAX_OUTPUT: usize = 4096;
/// Results kept in State.Health.Log.
const MAX_LOG: usize = 5;

/// A container's health check, with dockerd's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub argv: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: i64,
}

fn dur(v: &Value, default: Duration) -> Duration {
    match v.as_i64() {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

/// The check of `config` (Docker's Config, image defaults merged), or `None` when there is
/// none or it is `NONE`.
pub fn check_of(config: &Value) -> Option<Check> {
    let hc = &config["Healthcheck"];
    let test: Vec<String> = hc["Test"]
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let argv = match test.first().map(String::as_str) {
        Some("CMD") => test[1..].to_vec(),
        Some("CMD-SHELL") => {
            let mut shell: Vec<String> = config["Shell"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .filter(|s: &Vec<String>| !s.is_empty())
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            shell.push(test[1..].join(" "));
            shell
        }
        _ => return None,
    };
    if argv.is_empty() {
        return None;
    }
    Some(Check {
        argv,
        interval: dur(&hc["Interval"], DEFAULT_INTERVAL),
        timeout: dur(&hc["Timeout"], DEFAULT_TIMEOUT),
        start_period: dur(&hc["StartPeriod"], Duration::ZERO),
        start_interval: dur(&hc["StartInterval"], Duration::from_secs(5)),
        retries: hc["Retries"]
            .as_i64()
            .filter(|r| *r > 0)
            .unwrap_or(DEFAULT_RETRIES),
    })
}

/// The request's Healthcheck over the image's, field by field, as dockerd merges them.
pub fn merge(request: &Value, image: &Value) -> Value {
    if image.is_null() {
        return request.clone();
    }
    if request.is_null() {
        return image.clone();
    }
    let mut out = request.clone();
    let test_empty = out["Test"].as_array().is_none_or(|a| a.is_empty());
    if test_empty {
        out["Test"] = image["Test"].clone();
    }
    for k in [
        "Interval",
        "Timeout",
        "StartPeriod",
        "StartInterval",
        "Retries",
    ] {
        if out[k].as_i64().unwrap_or(0) == 0 && !image[k].is_null() {
            out[k] = image[k].clone();
        }
    }
    out
}

/// The health status shown by `docker ps` (`(healthy)`, `(health: starting)`).
pub fn ps_suffix(rec: &Record) -> String {
    match rec.state.health.as_ref().and_then(|h| h["Status"].as_str()) {
        Some("starting") => " (health: starting)".into(),
        Some(s) if !s.is_empty() && rec.running() => format!(" ({s})"),
        _ => String::new(),
    }
}

/// One probe's result, as in State.Health.Log.
struct Probe {
    start: String,
    end: String,
    exit_code: i64,
    output: String,
}

impl Engine {
    /// Starts the health monitor of `id`'s current run (at start, and for running containers
    /// when berthd starts again: `resume` keeps the recorded status).
    pub fn start_health(self: &Arc<Self>, id: &str, resume: bool) {
        let Ok(rec) = self.find(id) else { return };
        let Some(check) = check_of(&rec.config) else {
            return;
        };
        let run = rec.exits;
        let keep = resume && rec.state.health.is_some();
        if !keep {
            let _ = self.update(id, |r| {
                r.state.health = Some(json!({"Status": "starting", "FailingStreak": 0, "Log": []}));
            });
        }
        let me = self.clone();
        let id = id.to_string();
        tokio::spawn(async move { me.health_loop(&id, run, check).await });
    }

    async fn health_loop(self: Arc<Self>, id: &str, run: u64, check: Check) {
        let mut seq = 0u64;
        loop {
            let Ok(rec) = self.find(id) else { return };
            let started = chrono::DateTime::parse_from_rfc3339(&rec.state.started_at)
                .map(|t| t.with_timezone(&chrono::Utc))
                .unwrap_or_else(|_| chrono::Utc::now());
            let in_start_period =
                (chrono::Utc::now() - started).to_std().unwrap_or_default() < check.start_period;
            let starting =
                rec.state.health.as_ref().and_then(|h| h["Status"].as_str()) == Some("starting");
            let wait = if in_start_period && starting {
                check.start_interval.min(check.interval)
            } else {
                check.interval
            };
            tokio::time::sleep(wait).await;
            let Ok(rec) = self.find(id) else { return };
            if rec.exits != run || !rec.running() {
                return;
            }
            if rec.state.status == "paused" {
                continue;
            }
            seq += 1;
            let probe = self.probe(&rec, &check, seq).await;
            let Ok(rec) = self.find(id) else { return };
            if rec.exits != run || !rec.running() {
                return;
            }
            let in_start_period =
                (chrono::Utc::now() - started).to_std().unwrap_or_default() < check.start_period;
            let mut changed_to = None;
            let _ = self.update(id, |r| {
                let h = r.state.health.get_or_insert_with(
                    || json!({"Status": "starting", "FailingStreak": 0, "Log": []}),
                );
                let old = h["Status"].as_str().unwrap_or("starting").to_string();
                let mut streak = h["FailingStreak"].as_i64().unwrap_or(0);
                let mut status = old.clone();
                if probe.exit_code == 0 {
                    streak = 0;
                    status = "healthy".into();
                } else if !(in_start_period && old == "starting") {
                    streak += 1;
                    if streak >= check.retries {
                        status = "unhealthy".into();
                    }
                }
                let mut log: Vec<Value> = h["Log"].as_array().cloned().unwrap_or_default();
                log.push(json!({
                    "Start": probe.start,
                    "End": probe.end,
                    "ExitCode": probe.exit_code,
                    "Output": probe.output,
                }));
                if log.len() > MAX_LOG {
                    log.drain(..log.len() - MAX_LOG);
                }
                *h = json!({"Status": status, "FailingStreak": streak, "Log": log});
                if status != old {
                    changed_to = Some(status);
                }
            });
            if let Some(s) = changed_to {
                self.emit_container_id(id, &format!("health_status: {s}"), &[]);
            }
        }
    }

    /// Runs the check once as an exec of the container: its exit code and the start of its
    /// output; a probe past its timeout is killed and counts as -1, as in dockerd.
    async fn probe(&self, rec: &Record, check: &Check, seq: u64) -> Probe {
        let start = now();
        // Unique across berthd restarts too: a probe cut short by a crash may have left its
        // exec behind under an earlier number.
        let exec_id = format!(
            "health-{}-{seq}-{}",
            &rec.id[..12],
            chrono::Utc::now().timestamp_micros()
        );
        let log = self.container_dir(&rec.id).join(format!("{exec_id}.log"));
        let fail = |m: String| Probe {
            start: start.clone(),
            end: now(),
            exit_code: -1,
            output: m,
        };
        let cfg = json!({"Cmd": check.argv, "Tty": false});
        let process = match crate::api::exec_process(self, rec, &cfg) {
            Ok(p) => p,
            Err(e) => return fail(e.message),
        };
        let ns = self.sup.namespace.clone();
        let created = self
            .sup
            .tasks()
            .exec(pb::ExecTaskRequest {
                namespace: ns.clone(),
                container_id: rec.id.clone(),
                exec_id: exec_id.clone(),
                spec: serde_json::to_vec(&process).unwrap_or_default(),
                io: Some(types::Io {
                    log_path: log.to_string_lossy().into_owned(),
                    log_max_size: 1 << 20,
                    log_max_files: 1,
                    ..Default::default()
                }),
            })
            .await;
        if let Err(e) = created {
            return fail(e.message().to_string());
        }
        let started = self
            .sup
            .tasks()
            .start(pb::StartTaskRequest {
                namespace: ns.clone(),
                container_id: rec.id.clone(),
                exec_id: exec_id.clone(),
            })
            .await;
        let code = match started {
            Err(e) => {
                let m = e.message().to_string();
                Err(m)
            }
            Ok(_) => {
                let mut tasks = self.sup.tasks();
                let wait = tasks.wait(pb::WaitTaskRequest {
                    namespace: ns.clone(),
                    container_id: rec.id.clone(),
                    exec_id: exec_id.clone(),
                });
                match tokio::time::timeout(check.timeout, wait).await {
                    Ok(Ok(r)) => Ok(r.into_inner().exit_status as i64),
                    Ok(Err(e)) => Err(e.message().to_string()),
                    Err(_) => {
                        let _ = self
                            .sup
                            .tasks()
                            .kill(pb::KillTaskRequest {
                                namespace: ns.clone(),
                                container_id: rec.id.clone(),
                                exec_id: exec_id.clone(),
                                signal: 9,
                                all: false,
                            })
                            .await;
                        Err(format!(
                            "Health check exceeded timeout ({})",
                            go_duration_text(check.timeout)
                        ))
                    }
                }
            }
        };
        let _ = self
            .sup
            .tasks()
            .delete(pb::DeleteTaskRequest {
                namespace: ns,
                container_id: rec.id.clone(),
                exec_id,
                force: true,
            })
            .await;
        let output = read_output(&log);
        let _ = std::fs::remove_file(&log);
        match code {
            Ok(c) => Probe {
                start,
                end: now(),
                exit_code: c,
                output,
            },
            Err(m) => fail(m),
        }
    }
}

/// The text a probe wrote (both streams, in order), cut at 4 KiB, from its json-file log.
fn read_output(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = String::new();
    for line in text.lines() {
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            out.push_str(v["log"].as_str().unwrap_or_default());
        }
        if out.len() >= MAX_OUTPUT {
            let mut cut = MAX_OUTPUT;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            break;
        }
    }
    out
}

/// A duration as Go prints it (`30s`, `1.5s`, `500ms`).
fn go_duration_text(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_take_dockers_defaults_and_shell_form() {
        let c = check_of(&json!({"Healthcheck": {"Test": ["CMD-SHELL", "test -f /ok"]}})).unwrap();
        assert_eq!(c.argv, vec!["/bin/sh", "-c", "test -f /ok"]);
        assert_eq!(c.interval, DEFAULT_INTERVAL);
        assert_eq!(c.retries, 3);
        let c = check_of(&json!({"Healthcheck": {"Test": ["CMD", "true"], "Interval": 1_000_000_000i64, "Retries": 1}})).unwrap();
        assert_eq!(c.argv, vec!["true"]);
        assert_eq!(c.interval, Duration::from_secs(1));
        assert!(check_of(&json!({"Healthcheck": {"Test": ["NONE"]}})).is_none());
        assert!(check_of(&json!({})).is_none());
        let m = merge(
            &json!({"Interval": 2_000_000_000i64}),
            &json!({"Test": ["CMD", "x"], "Interval": 5, "Retries": 7}),
        );
        assert_eq!(
            m,
            json!({"Test": ["CMD", "x"], "Interval": 2_000_000_000i64, "Retries": 7})
        );
        assert_eq!(go_duration_text(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration_text(Duration::from_millis(1500)), "1.5s");
    }
}
