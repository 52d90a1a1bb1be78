//! Configs and secrets. Swarm cannot change their content, so each version
//! is its own object named by a hash of the content,
//! `<stack>_<name>_<first 12 hex of sha256>` — where `docker stack deploy`
//! uses `<stack>_<name>` and fails to update one in use. A deployment
//! creates the versions it needs; the old ones are removed once nothing
//! uses them. `external: true` objects are referenced by name.

use std::collections::BTreeMap;

use bollard::models::{
    TaskSpecContainerSpecConfigs, TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1,
    TaskSpecContainerSpecSecrets,
};
use serde_norway::Value;
use sha2::{Digest, Sha256};

use crate::plan::DataPlan;

use super::super::compose::{Compose, ObjectDef};
use super::super::relative_to;
use super::super::scalar::Text;
use super::super::yaml::{KeyPath, PathError};
use super::{ConvertError, Scope};

/// Swarm refuses longer config and secret names.
pub const MAX_NAME_LEN: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Config,
    Secret,
}

impl Kind {
    fn section(self) -> &'static str {
        match self {
            Kind::Config => "configs",
            Kind::Secret => "secrets",
        }
    }
}

/// The versioned name of content: `<base>_<12 hex of sha256(content)>`.
pub fn hashed_name(base: &str, content: &[u8]) -> String {
    let digest = Sha256::digest(content);
    format!("{base}_{}", &hex::encode(digest)[..12])
}

pub fn configs(scope: &Scope<'_>, model: &Compose) -> Result<Vec<DataPlan>, ConvertError> {
    objects(scope, &model.configs, Kind::Config)
}

pub fn secrets(scope: &Scope<'_>, model: &Compose) -> Result<Vec<DataPlan>, ConvertError> {
    objects(scope, &model.secrets, Kind::Secret)
}

fn objects(
    scope: &Scope<'_>,
    defs: &BTreeMap<String, ObjectDef>,
    kind: Kind,
) -> Result<Vec<DataPlan>, ConvertError> {
    let mut out = Vec::new();
    for (name, def) in defs {
        let path = KeyPath::default().key(kind.section()).key(name);
        let external = def.external.clone().unwrap_or_default();
        if def.template_driver.is_some() {
            return Err(PathError::new(
                &path.key("template_driver"),
                "templating is not supported",
            )
            .into());
        }
        if external.external {
            if def.file.is_some() || def.environment.is_some() || def.content.is_some() {
                return Err(PathError::new(
                    &path,
                    "an external object cannot also set file, environment or content",
                )
                .into());
            }
            let swarm_name = def
                .name
                .as_ref()
                .map(|Text(n)| n.clone())
                .or(external.name)
                .unwrap_or_else(|| name.clone());
            out.push(DataPlan {
                name: swarm_name,
                compose_name: name.clone(),
                external: true,
                data: Vec::new(),
                labels: BTreeMap::new(),
            });
            continue;
        }
        let data = content(scope, def, kind, &path)?;
        let base = def
            .name
            .as_ref()
            .map(|Text(n)| n.clone())
            .unwrap_or_else(|| scope.scoped(name));
        let swarm_name = hashed_name(&base, &data);
        if swarm_name.len() > MAX_NAME_LEN {
            return Err(PathError::new(
                &path,
                format!(
                    "the versioned name {swarm_name:?} is longer than swarm's {MAX_NAME_LEN} characters; shorten the stack or {} name",
                    &kind.section()[..kind.section().len() - 1]
                ),
            )
            .into());
        }
        out.push(DataPlan {
            name: swarm_name,
            compose_name: name.clone(),
            external: false,
            data,
            labels: scope.object_labels(&def.labels).into_iter().collect(),
        });
    }
    Ok(out)
}

fn content(
    scope: &Scope<'_>,
    def: &ObjectDef,
    kind: Kind,
    path: &KeyPath,
) -> Result<Vec<u8>, ConvertError> {
    match (&def.file, &def.environment, &def.content) {
        (Some(Text(file)), None, None) => {
            let file_path = relative_to(scope.base_file, file);
            let read = scope.files.read(&file_path).map_err(|e| {
                PathError::new(&path.key("file"), format!("cannot read {file_path}: {e}"))
            })?;
            read.ok_or_else(|| {
                PathError::new(
                    &path.key("file"),
                    format!("{file_path} does not exist in the repository"),
                )
                .into()
            })
        }
        (None, Some(Text(var)), None) => match scope.variables.get(var) {
            Some(v) => Ok(v.clone().into_bytes()),
            None => Err(PathError::new(
                &path.key("environment"),
                format!("{var} is neither a spec variable nor a runner secret"),
            )
            .into()),
        },
        (None, None, Some(Text(c))) if kind == Kind::Config => Ok(c.clone().into_bytes()),
        (None, None, Some(_)) => {
            Err(PathError::new(&path.key("content"), "inline content is for configs only").into())
        }
        (None, None, None) => Err(PathError::new(
            path,
            "needs one of file, environment or content (or external: true)",
        )
        .into()),
        _ => Err(PathError::new(path, "set only one of file, environment and content").into()),
    }
}

/// A service's reference to a config or secret, short (`name`) or long
/// (`{source, target, uid, gid, mode}`).
struct Reference {
    source: String,
    target: String,
    uid: String,
    gid: String,
    mode: u32,
}

fn reference(value: &Value, path: &KeyPath) -> Result<Reference, PathError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Long {
        source: Text,
        target: Option<Text>,
        uid: Option<Text>,
        gid: Option<Text>,
        mode: Option<Value>,
    }
    let long: Long = match value {
        Value::String(s) => Long {
            source: Text(s.clone()),
            target: None,
            uid: None,
            gid: None,
            mode: None,
        },
        other => super::super::yaml::typed(other.clone()).map_err(|e| PathError {
            path: KeyPath(path.0.iter().chain(e.path.0.iter()).cloned().collect()),
            message: e.message,
        })?,
    };
    // `0440` is octal, as in YAML 1.1 (which the Docker CLI reads);
    // serde_norway leaves it a string, and reads `0o440` as a number.
    let mode = match &long.mode {
        None => 0o444,
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|m| u32::try_from(m).ok())
            .ok_or_else(|| PathError::new(&path.key("mode"), format!("invalid mode {n}")))?,
        Some(Value::String(s)) => {
            let parsed = match s.strip_prefix("0o").or_else(|| s.strip_prefix('0')) {
                Some("") => Ok(0),
                Some(octal) => u32::from_str_radix(octal, 8),
                None => s.parse(),
            };
            parsed.map_err(|_| PathError::new(&path.key("mode"), format!("invalid mode {s:?}")))?
        }
        Some(_) => {
            return Err(PathError::new(
                &path.key("mode"),
                "mode must be an octal number",
            ))
        }
    };
    let Text(source) = long.source;
    Ok(Reference {
        target: long
            .target
            .map(|Text(t)| t)
            .unwrap_or_else(|| source.clone()),
        source,
        uid: long.uid.map(|Text(t)| t).unwrap_or_else(|| "0".into()),
        gid: long.gid.map(|Text(t)| t).unwrap_or_else(|| "0".into()),
        mode,
    })
}

fn find<'a>(
    plans: &'a [DataPlan],
    source: &str,
    section: &str,
    path: &KeyPath,
) -> Result<&'a DataPlan, PathError> {
    plans
        .iter()
        .find(|p| p.compose_name == source)
        .ok_or_else(|| {
            PathError::new(
                path,
                format!("{source:?} is not declared under the top-level {section}"),
            )
        })
}

/// A service's config references, sorted by config name. The config id is
/// left for the apply step to fill in.
pub fn config_refs(
    plans: &[DataPlan],
    values: &[Value],
    path: &KeyPath,
) -> Result<Vec<TaskSpecContainerSpecConfigs>, PathError> {
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let r = reference(v, &path.index(i))?;
        let plan = find(plans, &r.source, "configs", &path.index(i))?;
        out.push(TaskSpecContainerSpecConfigs {
            file: Some(TaskSpecContainerSpecFile1 {
                name: Some(r.target),
                uid: Some(r.uid),
                gid: Some(r.gid),
                mode: Some(r.mode),
            }),
            config_name: Some(plan.name.clone()),
            ..Default::default()
        });
    }
    out.sort_by(|a, b| a.config_name.cmp(&b.config_name));
    Ok(out)
}

/// A service's secret references, sorted by secret name.
pub fn secret_refs(
    plans: &[DataPlan],
    values: &[Value],
    path: &KeyPath,
) -> Result<Vec<TaskSpecContainerSpecSecrets>, PathError> {
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let r = reference(v, &path.index(i))?;
        let plan = find(plans, &r.source, "secrets", &path.index(i))?;
        out.push(TaskSpecContainerSpecSecrets {
            file: Some(TaskSpecContainerSpecFile {
                name: Some(r.target),
                uid: Some(r.uid),
                gid: Some(r.gid),
                mode: Some(r.mode),
            }),
            secret_name: Some(plan.name.clone()),
            ..Default::default()
        });
    }
    out.sort_by(|a, b| a.secret_name.cmp(&b.secret_name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_versioned_by_content() {
        let a = hashed_name("shop_nginx", b"server {}\n");
        assert!(a.starts_with("shop_nginx_"), "{a}");
        assert_eq!(a.len(), "shop_nginx_".len() + 12);
        assert!(a["shop_nginx_".len()..]
            .chars()
            .all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, hashed_name("shop_nginx", b"server {}\n"));
        assert_ne!(a, hashed_name("shop_nginx", b"server { }\n"));
        // sha256("") starts with e3b0c44298fc.
        assert_eq!(hashed_name("s_x", b""), "s_x_e3b0c44298fc");
    }

    #[test]
    fn references_default_like_the_cli() {
        let r = reference(&Value::String("pw".into()), &KeyPath::default()).unwrap();
        assert_eq!(
            (r.target.as_str(), r.uid.as_str(), r.gid.as_str(), r.mode),
            ("pw", "0", "0", 0o444)
        );
        let v: Value =
            serde_norway::from_str("{source: pw, target: t, uid: '10', gid: 20, mode: 0400}")
                .unwrap();
        let r = reference(&v, &KeyPath::default()).unwrap();
        assert_eq!(
            (r.target.as_str(), r.uid.as_str(), r.gid.as_str(), r.mode),
            ("t", "10", "20", 0o400)
        );
    }
}
