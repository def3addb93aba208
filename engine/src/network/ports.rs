//! Published ports as a container asks for them: `HostConfig.PortBindings` (`-p`), and with
//! `PublishAllPorts` (`-P`) every exposed port without a binding, on a free host port.

use berth_network::firewall::Proto;
use serde_json::Value;

/// One port to publish; `host_port` 0..0 means any free port, a range a free one in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortBinding {
    pub proto: Proto,
    pub ctr_port: u16,
    /// As given ("" for every address).
    pub host_ip: String,
    pub host_ports: (u16, u16),
}

impl PortBinding {
    /// `80/tcp`, the key of `Ports` and `PortBindings`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.ctr_port, self.proto.as_str())
    }
}

/// `80/tcp` → (80, tcp).
pub fn parse_key(key: &str) -> Result<(u16, Proto), String> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let proto = Proto::parse(proto).ok_or_else(|| format!("invalid proto: {proto}"))?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid containerPort: {port}"))?;
    Ok((port, proto))
}

fn host_ports(s: &str) -> Result<(u16, u16), String> {
    if s.is_empty() {
        return Ok((0, 0));
    }
    let bad = || format!("invalid hostPort: {s}");
    let (lo, hi) = s.split_once('-').unwrap_or((s, s));
    let lo = lo.parse::<u16>().map_err(|_| bad())?;
    let hi = hi.parse::<u16>().map_err(|_| bad())?;
    if hi < lo {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// The ports a container publishes, from its HostConfig and Config (ExposedPorts).
pub fn parse_bindings(host_config: &Value, config: &Value) -> Result<Vec<PortBinding>, String> {
    let mut out = Vec::new();
    if let Some(map) = host_config["PortBindings"].as_object() {
        for (key, list) in map {
            let (ctr_port, proto) = parse_key(key)?;
            let list = list.as_array().cloned().unwrap_or_default();
            // `"80/tcp": []` or null publishes on a free port, as dockerd.
            let list = if list.is_empty() {
                vec![Value::Null]
            } else {
                list
            };
            for b in list {
                let host_ip = b["HostIp"].as_str().unwrap_or_default().to_string();
                if !host_ip.is_empty() && host_ip.parse::<std::net::IpAddr>().is_err() {
                    return Err(format!("invalid IP address: {host_ip}"));
                }
                out.push(PortBinding {
                    proto,
                    ctr_port,
                    host_ip,
                    host_ports: host_ports(b["HostPort"].as_str().unwrap_or_default())?,
                });
            }
        }
    }
    if host_config["PublishAllPorts"].as_bool() == Some(true) {
        if let Some(exposed) = config["ExposedPorts"].as_object() {
            for key in exposed.keys() {
                let (ctr_port, proto) = parse_key(key)?;
                if !out
                    .iter()
                    .any(|b| b.ctr_port == ctr_port && b.proto == proto)
                {
                    out.push(PortBinding {
                        proto,
                        ctr_port,
                        host_ip: String::new(),
                        host_ports: (0, 0),
                    });
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bindings_from_host_config_and_exposed_ports() {
        let hc = json!({
            "PortBindings": {
                "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
                "90": [{"HostPort": "9000-9010"}]
            },
            "PublishAllPorts": true
        });
        let cfg = json!({"ExposedPorts": {"80/tcp": {}, "7000/tcp": {}}});
        let b = parse_bindings(&hc, &cfg).unwrap();
        assert_eq!(b.len(), 4);
        assert!(b.contains(&PortBinding {
            proto: Proto::Udp,
            ctr_port: 53,
            host_ip: "127.0.0.1".into(),
            host_ports: (0, 0)
        }));
        assert!(b
            .iter()
            .any(|x| x.ctr_port == 90 && x.host_ports == (9000, 9010)));
        assert!(b
            .iter()
            .any(|x| x.ctr_port == 7000 && x.host_ports == (0, 0)));
        assert!(parse_bindings(&json!({"PortBindings": {"x/tcp": []}}), &cfg).is_err());
        assert!(parse_bindings(&json!({"PortBindings": {"80/foo": []}}), &cfg).is_err());
        assert!(parse_bindings(
            &json!({"PortBindings": {"80/tcp": [{"HostIp": "nope", "HostPort": "1"}]}}),
            &cfg
        )
        .is_err());
    }
}
