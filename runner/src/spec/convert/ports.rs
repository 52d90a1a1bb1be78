//! Published ports, short (`"8080:80"`, `"9000-9001:7000-7001/udp"`,
//! `"127.0.0.1:80:80"`) and long (`{target, published, protocol, mode}`)
//! syntax, expanded and sorted as `docker stack deploy` does.
//!
//! Protocol and publish mode are written out (`tcp`, `ingress`) where the
//! CLI leaves them empty: the engine stores the same values either way, and
//! the plan then shows what will run.

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum as Protocol,
    EndpointPortConfigPublishModeEnum as Mode,
};
use serde_norway::Value;

use super::super::scalar::{Int, Text};
use super::super::yaml::{typed, KeyPath, PathError};

pub fn convert(values: &[Value], path: &KeyPath) -> Result<Vec<EndpointPortConfig>, PathError> {
    let mut out = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let at = path.index(i);
        match value {
            Value::String(s) => out.extend(short(s, &at)?),
            Value::Number(n) => out.extend(short(&n.to_string(), &at)?),
            Value::Mapping(_) => out.push(long(value, &at)?),
            _ => {
                return Err(PathError::new(
                    &at,
                    "a port is a string like \"8080:80\" or a mapping",
                ))
            }
        }
    }
    out.sort_by_key(|p| {
        (
            p.published_port,
            p.target_port,
            p.protocol.map(|p| p.to_string()),
            p.publish_mode.map(|m| m.to_string()),
        )
    });
    Ok(out)
}

fn protocol(text: &str, path: &KeyPath) -> Result<Protocol, PathError> {
    match text.to_ascii_lowercase().as_str() {
        "" | "tcp" => Ok(Protocol::TCP),
        "udp" => Ok(Protocol::UDP),
        "sctp" => Ok(Protocol::SCTP),
        other => Err(PathError::new(
            path,
            format!("unknown protocol {other:?} (tcp, udp, sctp)"),
        )),
    }
}

fn mode(text: &str, path: &KeyPath) -> Result<Mode, PathError> {
    match text {
        "" | "ingress" => Ok(Mode::INGRESS),
        "host" => Ok(Mode::HOST),
        other => Err(PathError::new(
            path,
            format!("unknown publish mode {other:?} (ingress, host)"),
        )),
    }
}

fn range(text: &str, path: &KeyPath) -> Result<(i64, i64), PathError> {
    let bad = || PathError::new(path, format!("invalid port or range {text:?}"));
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let a: i64 = a.trim().parse().map_err(|_| bad())?;
    let b: i64 = b.trim().parse().map_err(|_| bad())?;
    if !(0..=65535).contains(&a) || !(0..=65535).contains(&b) || b < a {
        return Err(bad());
    }
    Ok((a, b))
}

/// `[ip:][published:]target[/protocol]`, each port possibly a range.
fn short(spec: &str, path: &KeyPath) -> Result<Vec<EndpointPortConfig>, PathError> {
    let (ports, proto) = spec.rsplit_once('/').unwrap_or((spec, "tcp"));
    let proto = protocol(proto, path)?;
    let parts: Vec<&str> = ports.rsplitn(3, ':').collect();
    let (target, published) = match parts.as_slice() {
        [target] => (*target, None),
        [target, published] => (*target, Some(*published)),
        [target, published, _ip] => (*target, Some(*published)),
        _ => unreachable!("rsplitn(3) yields one to three parts"),
    };
    let (t0, t1) = range(target, path)?;
    let published = match published {
        Some("") | None => None,
        Some(p) => Some(range(p, path)?),
    };
    if let Some((p0, p1)) = published {
        if p1 - p0 != t1 - t0 && p0 != p1 {
            return Err(PathError::new(
                path,
                format!("{spec:?}: the published range and the target range differ in size"),
            ));
        }
    }
    Ok((t0..=t1)
        .enumerate()
        .map(|(i, t)| EndpointPortConfig {
            protocol: Some(proto),
            target_port: Some(t),
            published_port: Some(match published {
                None => 0,
                Some((p0, p1)) if p0 == p1 => p0,
                Some((p0, _)) => p0 + i as i64,
            }),
            publish_mode: Some(Mode::INGRESS),
            name: None,
        })
        .collect())
}

fn long(value: &Value, path: &KeyPath) -> Result<EndpointPortConfig, PathError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Long {
        target: Int,
        published: Option<Text>,
        protocol: Option<Text>,
        mode: Option<Text>,
        name: Option<Text>,
        host_ip: Option<Text>,
        app_protocol: Option<Text>,
    }
    let p: Long = typed(value.clone()).map_err(|e| PathError {
        path: KeyPath(path.0.iter().chain(e.path.0.iter()).cloned().collect()),
        message: e.message,
    })?;
    let published = match &p.published {
        None => 0,
        Some(Text(t)) => {
            let (a, b) = range(t, &path.key("published"))?;
            if a != b {
                return Err(PathError::new(
                    &path.key("published"),
                    "a range needs the short syntax (\"9000-9001:7000-7001\")",
                ));
            }
            a
        }
    };
    let Int(target) = p.target;
    if !(1..=65535).contains(&target) {
        return Err(PathError::new(
            &path.key("target"),
            format!("invalid port {target}"),
        ));
    }
    let _ = (p.name, p.host_ip, p.app_protocol);
    Ok(EndpointPortConfig {
        name: None,
        protocol: Some(protocol(
            p.protocol.as_ref().map(|t| t.0.as_str()).unwrap_or(""),
            &path.key("protocol"),
        )?),
        target_port: Some(target),
        published_port: Some(published),
        publish_mode: Some(mode(
            p.mode.as_ref().map(|t| t.0.as_str()).unwrap_or(""),
            &path.key("mode"),
        )?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(yaml: &str) -> Vec<(i64, i64, String, String)> {
        let values: Vec<Value> = serde_norway::from_str(yaml).unwrap();
        convert(&values, &KeyPath::parse("services.web.ports"))
            .unwrap()
            .into_iter()
            .map(|p| {
                (
                    p.published_port.unwrap(),
                    p.target_port.unwrap(),
                    p.protocol.unwrap().to_string(),
                    p.publish_mode.unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn short_long_ranges_sorted() {
        assert_eq!(
            ports(
                r#"["18090:90", {target: 8080, published: 18081, mode: host}, "9000-9001:7000-7001/udp", "127.0.0.1:5000:5000", 3000]"#
            ),
            vec![
                (0, 3000, "tcp".into(), "ingress".into()),
                (5000, 5000, "tcp".into(), "ingress".into()),
                (9000, 7000, "udp".into(), "ingress".into()),
                (9001, 7001, "udp".into(), "ingress".into()),
                (18081, 8080, "tcp".into(), "host".into()),
                (18090, 90, "tcp".into(), "ingress".into()),
            ]
        );
    }

    #[test]
    fn bad_ports_name_the_entry() {
        let values: Vec<Value> = serde_norway::from_str(r#"["80:80", "80:eighty"]"#).unwrap();
        let err = convert(&values, &KeyPath::parse("services.web.ports")).unwrap_err();
        assert_eq!(err.path.to_string(), "services.web.ports[1]");
        let values: Vec<Value> = serde_norway::from_str("[{target: 80, mode: bridge}]").unwrap();
        let err = convert(&values, &KeyPath::parse("services.web.ports")).unwrap_err();
        assert_eq!(err.path.to_string(), "services.web.ports[0].mode");
    }
}
