//! Several Compose files merged in order, with the Compose specification's
//! override rules: mappings merge key by key, later scalars win, lists are
//! appended without duplicates, `volumes` are keyed by their target and
//! `secrets`/`configs` by theirs, and `command`, `entrypoint` and
//! `healthcheck.test` are replaced whole.
//!
//! Before merging, the forms Compose allows as "list or mapping"
//! (`environment`, `labels`, `deploy.labels`, `sysctls`, service `networks`)
//! are brought to their mapping form, so `- A=1` in one file and `A: 2` in
//! the next are the same key.

use serde_norway::{Mapping, Value};

use super::yaml::{KeyPath, PathError};

/// Removes extension keys (`x-...`) where Compose allows them and brings
/// list-or-mapping fields to their mapping form.
pub fn normalize(file: &mut Value) -> Result<(), PathError> {
    let Value::Mapping(top) = file else {
        return Ok(());
    };
    strip_extensions(top);
    for section in ["networks", "volumes", "configs", "secrets"] {
        if let Some(Value::Mapping(defs)) = top.get_mut(section) {
            for (name, def) in defs.iter_mut() {
                if let Value::Mapping(def) = def {
                    strip_extensions(def);
                    if let Some(labels) = def.get_mut("labels") {
                        let path = KeyPath::default()
                            .key(section)
                            .key(name.as_str().unwrap_or_default())
                            .key("labels");
                        list_to_mapping(labels, false, &path)?;
                    }
                }
            }
        }
    }
    let Some(Value::Mapping(services)) = top.get_mut("services") else {
        return Ok(());
    };
    for (name, service) in services.iter_mut() {
        let path = KeyPath::default()
            .key("services")
            .key(name.as_str().unwrap_or_default());
        let Value::Mapping(service) = service else {
            continue;
        };
        strip_extensions(service);
        for key in ["environment", "labels", "sysctls"] {
            if let Some(v) = service.get_mut(key) {
                list_to_mapping(v, key == "environment", &path.key(key))?;
            }
        }
        if let Some(Value::Mapping(deploy)) = service.get_mut("deploy") {
            if let Some(v) = deploy.get_mut("labels") {
                list_to_mapping(v, false, &path.key("deploy").key("labels"))?;
            }
        }
        if let Some(Value::Sequence(list)) = service.get("networks") {
            let mut map = Mapping::new();
            for item in list {
                map.insert(item.clone(), Value::Null);
            }
            service.insert("networks".into(), Value::Mapping(map));
        }
    }
    Ok(())
}

fn strip_extensions(map: &mut Mapping) {
    map.retain(|k, _| !k.as_str().is_some_and(|k| k.starts_with("x-")));
}

/// `["A=1", "B"]` → `{A: "1", B: null}` (or `B: ""` outside `environment`,
/// where a bare name means an empty value).
fn list_to_mapping(value: &mut Value, allow_null: bool, path: &KeyPath) -> Result<(), PathError> {
    let Value::Sequence(list) = value else {
        return Ok(());
    };
    let mut map = Mapping::new();
    for (i, item) in list.iter().enumerate() {
        let Some(text) = scalar_text(item) else {
            return Err(PathError::new(&path.index(i), "expected KEY=value"));
        };
        let (k, v) = match text.split_once('=') {
            Some((k, v)) => (k.to_owned(), Value::String(v.to_owned())),
            None if allow_null => (text, Value::Null),
            None => (text, Value::String(String::new())),
        };
        map.insert(Value::String(k), v);
    }
    *value = Value::Mapping(map);
    Ok(())
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Merges `over` into `base`; `over` wins.
pub fn merge(base: &mut Value, over: Value) {
    merge_at(base, over, &mut Vec::new());
}

fn merge_at(base: &mut Value, over: Value, path: &mut Vec<String>) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                let key = k.as_str().unwrap_or_default().to_owned();
                match b.get_mut(&k) {
                    Some(existing) => {
                        path.push(key);
                        merge_at(existing, v, path);
                        path.pop();
                    }
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (Value::Sequence(b), Value::Sequence(o)) => {
            let field = service_field(path);
            match field.as_deref() {
                Some("command" | "entrypoint" | "healthcheck.test") => *b = o,
                Some("volumes") => merge_keyed(b, o, volume_target),
                Some("secrets" | "configs") => merge_keyed(b, o, reference_target),
                _ => {
                    for item in o {
                        if !b.contains(&item) {
                            b.push(item);
                        }
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// The field of a service a path points at (`services.web.healthcheck.test`
/// → `healthcheck.test`), or `None` outside services.
fn service_field(path: &[String]) -> Option<String> {
    match path {
        [services, _, rest @ ..] if services == "services" && !rest.is_empty() => {
            Some(rest.join("."))
        }
        _ => None,
    }
}

/// Entries of `over` replace those of `base` with the same key; others are
/// appended.
fn merge_keyed(base: &mut Vec<Value>, over: Vec<Value>, key: fn(&Value) -> Option<String>) {
    for item in over {
        let k = key(&item);
        match k.and_then(|k| {
            base.iter()
                .position(|b| key(b).as_deref() == Some(k.as_str()))
        }) {
            Some(i) => base[i] = item,
            None if !base.contains(&item) => base.push(item),
            None => {}
        }
    }
}

/// The container path of a `volumes` entry, short (`src:/dst:ro`) or long.
fn volume_target(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.len() {
                1 => Some(parts[0].to_owned()),
                _ => Some(parts[1].to_owned()),
            }
        }
        Value::Mapping(m) => m.get("target").and_then(scalar_text),
        _ => None,
    }
}

/// Where a secret or config lands in the container: its `target`, which
/// defaults to its `source`.
fn reference_target(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Mapping(m) => m
            .get("target")
            .or_else(|| m.get("source"))
            .and_then(scalar_text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        let mut v: Value = serde_norway::from_str(s).unwrap();
        normalize(&mut v).unwrap();
        v
    }

    #[test]
    fn later_files_win_and_lists_follow_compose_rules() {
        let mut base = yaml(
            "
services:
  web:
    image: app:1
    command: [serve, --port, '80']
    environment: [A=1, B=2, C]
    ports: ['80:80']
    dns: [1.1.1.1]
    volumes: ['data:/data', '/etc:/host-etc:ro']
    secrets: [pw]
    healthcheck: {test: [CMD, a], interval: 5s}
    deploy: {replicas: 1, labels: [x=1]}
x-anchors: {a: 1}
",
        );
        let over = yaml(
            "
services:
  web:
    image: app:2
    command: [serve]
    environment: {B: '3', D: '4'}
    ports: ['80:80', '443:443']
    dns: [1.1.1.1, 8.8.8.8]
    volumes: [{type: volume, source: other, target: /data}]
    secrets: [{source: pw2, target: pw}]
    healthcheck: {test: [CMD, b]}
    deploy: {labels: {y: '2'}}
    x-extra: 1
",
        );
        merge(&mut base, over);
        let expected = yaml(
            "
services:
  web:
    image: app:2
    command: [serve]
    environment: {A: '1', B: '3', C: null, D: '4'}
    ports: ['80:80', '443:443']
    dns: [1.1.1.1, 8.8.8.8]
    volumes: [{type: volume, source: other, target: /data}, '/etc:/host-etc:ro']
    secrets: [{source: pw2, target: pw}]
    healthcheck: {test: [CMD, b], interval: 5s}
    deploy: {replicas: 1, labels: {x: '1', y: '2'}}
",
        );
        assert_eq!(base, expected);
    }

    #[test]
    fn merge_order_matters() {
        let a = yaml("services: {web: {image: a, deploy: {replicas: 1}}}");
        let b = yaml("services: {web: {image: b}}");
        let mut ab = a.clone();
        merge(&mut ab, b.clone());
        let mut ba = b;
        merge(&mut ba, a);
        assert_eq!(
            ab,
            yaml("services: {web: {image: b, deploy: {replicas: 1}}}")
        );
        assert_eq!(
            ba,
            yaml("services: {web: {image: a, deploy: {replicas: 1}}}")
        );
    }
}
