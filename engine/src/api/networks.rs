//! Network endpoints: list, inspect, create, remove, connect, disconnect, prune.

use super::*;
use crate::container::Record;
use crate::network::{CreateRequest, IpamConf, Network};

/// A network in Docker's JSON; `containers` fills `Containers` (inspect does, list not).
pub(crate) fn network_json(e: &Engine, n: &Network, containers: bool) -> Value {
    let mut ctrs = serde_json::Map::new();
    if containers {
        for (r, name) in e.network_containers(&n.id) {
            let ep = &r.endpoints[&name];
            ctrs.insert(
                r.id.clone(),
                json!({
                    "Name": r.name.trim_start_matches('/'),
                    "EndpointID": ep.endpoint_id,
                    "MacAddress": ep.mac,
                    "IPv4Address": ep.ip.map(|ip| format!("{ip}/{}", ep.prefix)).unwrap_or_default(),
                    "IPv6Address": ep.ip6.map(|ip| format!("{ip}/{}", ep.prefix6)).unwrap_or_default(),
                }),
            );
        }
    }
    let config: Vec<Value> = n
        .ipam
        .iter()
        .map(|c| {
            let mut m = serde_json::Map::new();
            m.insert("Subnet".into(), json!(c.subnet));
            if !c.ip_range.is_empty() {
                m.insert("IPRange".into(), json!(c.ip_range));
            }
            if !c.gateway.is_empty() {
                m.insert("Gateway".into(), json!(c.gateway));
            }
            if !c.aux.is_empty() {
                m.insert("AuxiliaryAddresses".into(), json!(c.aux));
            }
            Value::Object(m)
        })
        .collect();
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv6": n.enable_ipv6,
        "IPAM": {
            "Driver": "default",
            "Options": if n.is_predefined() || n.ipam_options.is_empty() {
                Value::Null
            } else {
                json!(n.ipam_options)
            },
            "Config": config,
        },
        "Internal": n.internal,
        "Attachable": n.attachable,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": ctrs,
        "Options": n.options,
        "Labels": n.labels,
    })
}

/// `until` of prune filters: a timestamp (unix or RFC 3339) or a duration back from now.
fn until_cutoff(s: &str) -> ApiResult<chrono::DateTime<chrono::Utc>> {
    if let Ok(secs) = s.parse::<f64>() {
        return chrono::DateTime::from_timestamp(secs as i64, 0)
            .ok_or_else(|| ApiError::bad_request(format!("invalid until: {s}")));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let nanos = berth_image::go_duration(s)
        .ok_or_else(|| ApiError::bad_request(format!("failed to parse value {s} for until")))?;
    Ok(chrono::Utc::now() - chrono::Duration::nanoseconds(nanos))
}

fn check_keys(f: &HashMap<String, Vec<String>>, allowed: &[&str]) -> ApiResult<()> {
    for k in f.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
        }
    }
    Ok(())
}

pub(crate) async fn network_list(State(e): S, Query(q): Q) -> ApiResult<Response> {
    let f = filters(&q)?;
    check_keys(
        &f,
        &["driver", "id", "label", "name", "scope", "type", "dangling"],
    )?;
    for t in f.get("type").into_iter().flatten() {
        if t != "custom" && t != "builtin" {
            return Err(ApiError::bad_request(format!(
                "invalid filter: 'type'='{t}'"
            )));
        }
    }
    for d in f.get("dangling").into_iter().flatten() {
        if !matches!(d.as_str(), "true" | "false" | "1" | "0") {
            return Err(ApiError::bad_request(format!(
                "invalid filter 'dangling={d}'"
            )));
        }
    }
    let any = |k: &str, pred: &dyn Fn(&str) -> bool| -> bool {
        f.get(k)
            .is_none_or(|vals| vals.is_empty() || vals.iter().any(|v| pred(v)))
    };
    let mut out = Vec::new();
    let mut nets = e.networks();
    nets.sort_by(|a, b| a.created.cmp(&b.created));
    for n in &nets {
        let keep = any("driver", &|v| n.driver == v)
            && any("id", &|v| n.id.starts_with(v))
            && any("name", &|v| n.name.contains(v))
            && any("scope", &|v| v == "local")
            && any("type", &|v| (v == "builtin") == n.is_predefined())
            && any("dangling", &|v| {
                let dangling = matches!(v, "true" | "1");
                // Dangling: a user network no running container uses.
                (!n.is_predefined() && e.network_containers(&n.id).is_empty()) == dangling
            })
            && label_filters_keep(&n.labels, &f);
        if keep {
            out.push(network_json(&e, n, false));
        }
    }
    Ok(ok_json(Value::Array(out)))
}

pub(crate) async fn network_inspect(State(e): S, Path(id): Path<String>) -> ApiResult<Response> {
    let n = e.network_find(&id)?;
    Ok(ok_json(network_json(&e, &n, true)))
}

pub(crate) async fn network_create(State(e): S, body: Bytes) -> ApiResult<Response> {
    let body = parse_body(&body)?;
    let str_of = |k: &str| body[k].as_str().unwrap_or_default().to_string();
    let ipam = body["IPAM"]["Config"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| IpamConf {
            subnet: c["Subnet"].as_str().unwrap_or_default().to_string(),
            gateway: c["Gateway"].as_str().unwrap_or_default().to_string(),
            ip_range: c["IPRange"].as_str().unwrap_or_default().to_string(),
            aux: crate::string_map(&c["AuxiliaryAddresses"]),
        })
        .collect();
    if body["Scope"]
        .as_str()
        .is_some_and(|s| !s.is_empty() && s != "local")
    {
        return Err(ApiError::bad_request(format!(
            "scope {} is not supported: berthd has local networks only",
            str_of("Scope")
        )));
    }
    if body["Ingress"].as_bool() == Some(true) || body["ConfigOnly"].as_bool() == Some(true) {
        return Err(ApiError::bad_request(
            "ingress and config-only networks are swarm features, which berthd does not have",
        ));
    }
    let req = CreateRequest {
        name: str_of("Name"),
        driver: str_of("Driver"),
        internal: body["Internal"].as_bool().unwrap_or(false),
        attachable: body["Attachable"].as_bool().unwrap_or(false),
        enable_ipv6: body["EnableIPv6"].as_bool().unwrap_or(false),
        labels: crate::string_map(&body["Labels"]),
        options: crate::string_map(&body["Options"]),
        ipam_driver: body["IPAM"]["Driver"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        ipam_options: crate::string_map(&body["IPAM"]["Options"]),
        ipam,
    };
    let n = e.network_create(req).await?;
    Ok(json_resp(
        StatusCode::CREATED,
        json!({"Id": n.id, "Warning": ""}),
    ))
}

pub(crate) async fn network_remove(State(e): S, Path(id): Path<String>) -> ApiResult<Response> {
    e.network_remove(&id).await?;
    Ok(no_content())
}

/// The body of connect and disconnect, with its `Container`.
fn container_body(body: &Bytes) -> ApiResult<(Value, String)> {
    let body = parse_body(body)?;
    let container = body["Container"].as_str().unwrap_or_default().to_string();
    if container.is_empty() {
        return Err(ApiError::bad_request("no container specified"));
    }
    Ok((body, container))
}

pub(crate) async fn network_connect(
    State(e): S,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let (body, container) = container_body(&body)?;
    e.network_connect(&id, &container, &body["EndpointConfig"])
        .await?;
    Ok(StatusCode::OK.into_response())
}

pub(crate) async fn network_disconnect(
    State(e): S,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let (body, container) = container_body(&body)?;
    e.network_disconnect(&id, &container, body["Force"].as_bool().unwrap_or(false))
        .await?;
    Ok(StatusCode::OK.into_response())
}

pub(crate) async fn network_prune(State(e): S, Query(q): Q) -> ApiResult<Response> {
    let f = filters(&q)?;
    check_keys(&f, &["until", "label", "label!"])?;
    let cutoff = match f.get("until").and_then(|u| u.first()) {
        Some(u) => Some(until_cutoff(u)?),
        None => None,
    };
    let mut deleted = Vec::new();
    for n in e.networks() {
        if n.is_predefined() || !e.network_containers(&n.id).is_empty() {
            continue;
        }
        if let Some(cut) = cutoff {
            let created = chrono::DateTime::parse_from_rfc3339(&n.created)
                .map(|t| t.with_timezone(&chrono::Utc));
            if created.is_ok_and(|c| c >= cut) {
                continue;
            }
        }
        if !label_filters_keep(&n.labels, &f) {
            continue;
        }
        if e.network_remove(&n.id).await.is_ok() {
            deleted.push(n.name);
        }
    }
    Ok(ok_json(json!({
        "NetworksDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) }
    })))
}

/// One entry of `NetworkSettings.Networks`.
fn endpoint_json(r: &Record, name: &str, ep: &crate::network::Endpoint) -> Value {
    let user = name != "bridge";
    // API 1.45: Aliases are the client's only; the short id is among DNSNames.
    let aliases: Vec<String> = ep.aliases.clone();
    let ipam = if ep.ipv4_config.is_empty() && ep.ipv6_config.is_empty() && ep.link_local.is_empty()
    {
        Value::Null
    } else {
        let mut m = serde_json::Map::new();
        if !ep.ipv4_config.is_empty() {
            m.insert("IPv4Address".into(), json!(ep.ipv4_config));
        }
        if !ep.ipv6_config.is_empty() {
            m.insert("IPv6Address".into(), json!(ep.ipv6_config));
        }
        if !ep.link_local.is_empty() {
            m.insert("LinkLocalIPs".into(), json!(ep.link_local));
        }
        Value::Object(m)
    };
    let running = !ep.endpoint_id.is_empty();
    let dns_names = if user && running {
        let mut d = vec![r.name.trim_start_matches('/').to_string()];
        d.extend(ep.aliases.iter().cloned());
        d.push(r.short_id().to_string());
        json!(d)
    } else {
        Value::Null
    };
    let opt = |ip: Option<std::net::IpAddr>| ip.map(|i| i.to_string()).unwrap_or_default();
    json!({
        "IPAMConfig": ipam,
        "Links": if ep.links.is_empty() { Value::Null } else { json!(ep.links) },
        "Aliases": if aliases.is_empty() { Value::Null } else { json!(aliases) },
        // The address asked for, until the endpoint exists.
        "MacAddress": if ep.mac.is_empty() { &ep.mac_config } else { &ep.mac },
        "DriverOpts": if ep.driver_opts.is_empty() { Value::Null } else { json!(ep.driver_opts) },
        "NetworkID": ep.network_id,
        "EndpointID": ep.endpoint_id,
        "Gateway": opt(ep.gateway),
        "IPAddress": opt(ep.ip),
        "IPPrefixLen": if ep.ip.is_some() { ep.prefix } else { 0 },
        "IPv6Gateway": opt(ep.gateway6),
        "GlobalIPv6Address": opt(ep.ip6),
        "GlobalIPv6PrefixLen": if ep.ip6.is_some() { ep.prefix6 } else { 0 },
        "DNSNames": dns_names,
    })
}

/// `NetworkSettings.Networks`: an entry per network (host, none and `container:` modes
/// show the mode's name with empty fields, as dockerd).
pub(crate) fn container_networks(r: &Record) -> Value {
    if r.endpoints.is_empty() {
        let mode = match r.host_config["NetworkMode"].as_str() {
            None | Some("") | Some("default") => "bridge",
            Some(m) if m.starts_with("container:") => return json!({}),
            Some(m) => m,
        };
        return json!({ mode: {
            "IPAMConfig": null, "Links": null, "Aliases": null, "MacAddress": "", "DriverOpts": null,
            "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": null,
        }});
    }
    let mut m = serde_json::Map::new();
    for (name, ep) in &r.endpoints {
        m.insert(name.clone(), endpoint_json(r, name, ep));
    }
    Value::Object(m)
}

/// Inspect's `NetworkSettings`: the top-level address fields are the default bridge's.
pub(crate) fn network_settings(r: &Record) -> Value {
    let ports = crate::network::ports_of(r);
    let bridge = r
        .endpoints
        .get("bridge")
        .filter(|e| !e.endpoint_id.is_empty());
    let opt = |ip: Option<std::net::IpAddr>| ip.map(|i| i.to_string()).unwrap_or_default();
    let running = !r.sandbox.is_empty();
    json!({
        "Bridge": "",
        "SandboxID": if running { r.id.clone() } else { String::new() },
        "HairpinMode": false,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": ports,
        "SandboxKey": r.sandbox,
        "SecondaryIPAddresses": null,
        "SecondaryIPv6Addresses": null,
        "EndpointID": bridge.map(|e| e.endpoint_id.clone()).unwrap_or_default(),
        "Gateway": opt(bridge.and_then(|e| e.gateway)),
        "GlobalIPv6Address": opt(bridge.and_then(|e| e.ip6)),
        "GlobalIPv6PrefixLen": bridge.filter(|e| e.ip6.is_some()).map(|e| e.prefix6).unwrap_or(0),
        "IPAddress": opt(bridge.and_then(|e| e.ip)),
        "IPPrefixLen": bridge.filter(|e| e.ip.is_some()).map(|e| e.prefix).unwrap_or(0),
        "IPv6Gateway": opt(bridge.and_then(|e| e.gateway6)),
        "MacAddress": bridge.map(|e| e.mac.clone()).unwrap_or_default(),
        "Networks": container_networks(r),
    })
}

/// The `Ports` of `GET /containers/json`: published ports, then exposed ones unpublished.
pub(crate) fn summary_ports(r: &Record) -> Value {
    let mut out = Vec::new();
    for (key, bindings) in crate::network::ports_of(r) {
        let (port, proto) = key.split_once('/').unwrap_or((&key, "tcp"));
        let port: u16 = port.parse().unwrap_or(0);
        match bindings.as_array() {
            Some(list) if !list.is_empty() => {
                for b in list {
                    out.push(json!({
                        "IP": b["HostIp"],
                        "PrivatePort": port,
                        "PublicPort": b["HostPort"].as_str().and_then(|p| p.parse::<u16>().ok()).unwrap_or(0),
                        "Type": proto,
                    }));
                }
            }
            _ => out.push(json!({"PrivatePort": port, "Type": proto})),
        }
    }
    Value::Array(out)
}
