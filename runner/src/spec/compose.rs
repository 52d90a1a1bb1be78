//! The Compose files of a deployment: read, interpolated, merged in order,
//! and typed into the part of the Compose specification that swarm
//! understands. Unknown keys are errors (a misspelt `replcas` must not be
//! silently dropped); keys swarm ignores (`build`, `depends_on`, ...) become
//! warnings, as `docker stack deploy` prints "Ignoring unsupported options".
//!
//! Fields whose syntax has several forms (ports, volumes, secret and config
//! references, env files, extra hosts) stay YAML values here and are parsed
//! by [`super::convert`], which knows what they mean.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_norway::Value;

use super::deploy_file::DeploySpec;
use super::interpolate::Interpolator;
use super::scalar::{Bool, Bytes, Int, Nanos, OneOrMany, Text};
use super::yaml::{self, KeyPath, PathError, Source};
use super::{merge, Context, Files, SpecError};

/// Service keys that swarm does not use. `restart` is listed because
/// `docker stack deploy` lists it, although it is still the fallback for
/// `deploy.restart_policy`.
pub const IGNORED_SERVICE_KEYS: &[&str] = &[
    "build",
    "cgroup_parent",
    "cgroupns_mode",
    "container_name",
    "depends_on",
    "devices",
    "domainname",
    "expose",
    "external_links",
    "ipc",
    "links",
    "mac_address",
    "network_mode",
    "pid",
    "platform",
    "privileged",
    "profiles",
    "pull_policy",
    "restart",
    "security_opt",
    "shm_size",
    // A service-level `tmpfs:` is for containers: `docker stack deploy`
    // drops it (a tmpfs mount under `volumes:` is what swarm takes).
    "tmpfs",
    "userns_mode",
];

/// The merged Compose model and the files it came from.
#[derive(Debug)]
pub struct ComposeProject {
    /// The files in merge order, to place errors found later.
    pub sources: Vec<Source>,
    pub model: Compose,
    pub warnings: Vec<String>,
}

impl ComposeProject {
    /// Places an error found after merging in the file that set the key.
    pub fn error(&self, err: PathError) -> SpecError {
        yaml::place(&self.sources, err)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compose {
    pub version: Option<Text>,
    pub name: Option<Text>,
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    #[serde(default)]
    pub networks: BTreeMap<String, Option<NetworkDef>>,
    #[serde(default)]
    pub volumes: BTreeMap<String, Option<VolumeDef>>,
    #[serde(default)]
    pub configs: BTreeMap<String, ObjectDef>,
    #[serde(default)]
    pub secrets: BTreeMap<String, ObjectDef>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub image: Option<Text>,
    pub command: Option<Value>,
    pub entrypoint: Option<Value>,
    #[serde(default)]
    pub environment: BTreeMap<String, Option<Text>>,
    pub env_file: Option<Value>,
    #[serde(default)]
    pub labels: BTreeMap<String, Option<Text>>,
    pub deploy: Option<Deploy>,
    #[serde(default)]
    pub ports: Vec<Value>,
    #[serde(default)]
    pub networks: BTreeMap<String, Option<ServiceNetwork>>,
    #[serde(default)]
    pub configs: Vec<Value>,
    #[serde(default)]
    pub secrets: Vec<Value>,
    pub healthcheck: Option<Healthcheck>,
    pub user: Option<Text>,
    pub working_dir: Option<Text>,
    pub hostname: Option<Text>,
    pub stop_grace_period: Option<Nanos>,
    pub stop_signal: Option<Text>,
    pub init: Option<Bool>,
    pub read_only: Option<Bool>,
    pub tty: Option<Bool>,
    pub stdin_open: Option<Bool>,
    #[serde(default)]
    pub cap_add: Vec<Text>,
    #[serde(default)]
    pub cap_drop: Vec<Text>,
    #[serde(default)]
    pub sysctls: BTreeMap<String, Option<Text>>,
    #[serde(default)]
    pub ulimits: BTreeMap<String, Value>,
    pub extra_hosts: Option<Value>,
    pub dns: Option<OneOrMany>,
    pub dns_search: Option<OneOrMany>,
    pub logging: Option<Logging>,
    #[serde(default)]
    pub volumes: Vec<Value>,
    pub isolation: Option<Text>,
    pub oom_score_adj: Option<Int>,
    /// Legacy restart policy, the fallback for `deploy.restart_policy`.
    pub restart: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    pub mode: Option<Text>,
    pub replicas: Option<Int>,
    #[serde(default)]
    pub labels: BTreeMap<String, Option<Text>>,
    pub update_config: Option<UpdateConfig>,
    pub rollback_config: Option<UpdateConfig>,
    pub restart_policy: Option<RestartPolicy>,
    pub resources: Option<Resources>,
    pub placement: Option<Placement>,
    pub endpoint_mode: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    pub parallelism: Option<Int>,
    pub delay: Option<Nanos>,
    pub failure_action: Option<Text>,
    pub monitor: Option<Nanos>,
    pub max_failure_ratio: Option<f64>,
    pub order: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    pub condition: Option<Text>,
    pub delay: Option<Nanos>,
    pub max_attempts: Option<Int>,
    pub window: Option<Nanos>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub limits: Option<ResourceSet>,
    pub reservations: Option<ResourceSet>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSet {
    pub cpus: Option<Text>,
    pub memory: Option<Bytes>,
    pub pids: Option<Int>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    #[serde(default)]
    pub constraints: Vec<Text>,
    #[serde(default)]
    pub preferences: Vec<Preference>,
    pub max_replicas_per_node: Option<Int>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preference {
    pub spread: Text,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    pub test: Option<Value>,
    pub interval: Option<Nanos>,
    pub timeout: Option<Nanos>,
    pub retries: Option<Int>,
    pub start_period: Option<Nanos>,
    pub start_interval: Option<Nanos>,
    pub disable: Option<Bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    pub driver: Option<Text>,
    #[serde(default)]
    pub options: BTreeMap<String, Option<Text>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNetwork {
    #[serde(default)]
    pub aliases: Vec<Text>,
    #[serde(default)]
    pub driver_opts: BTreeMap<String, Text>,
}

/// `external: true`, or the deprecated `external: {name: x}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct External {
    pub external: bool,
    pub name: Option<String>,
}

impl<'de> Deserialize<'de> for External {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Named {
            name: Option<Text>,
        }
        let value = Value::deserialize(d)?;
        match value {
            Value::Bool(b) => Ok(External {
                external: b,
                name: None,
            }),
            Value::String(_) => {
                let Bool(b) = Bool::deserialize(value).map_err(serde::de::Error::custom)?;
                Ok(External {
                    external: b,
                    name: None,
                })
            }
            other => {
                let named = Named::deserialize(other).map_err(serde::de::Error::custom)?;
                Ok(External {
                    external: true,
                    name: named.name.map(|Text(n)| n),
                })
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkDef {
    pub name: Option<Text>,
    pub driver: Option<Text>,
    #[serde(default)]
    pub driver_opts: BTreeMap<String, Text>,
    pub external: Option<External>,
    #[serde(default)]
    pub labels: BTreeMap<String, Option<Text>>,
    pub attachable: Option<Bool>,
    pub internal: Option<Bool>,
    pub ipam: Option<Value>,
    pub enable_ipv6: Option<Bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeDef {
    pub name: Option<Text>,
    pub driver: Option<Text>,
    #[serde(default)]
    pub driver_opts: BTreeMap<String, Text>,
    pub external: Option<External>,
    #[serde(default)]
    pub labels: BTreeMap<String, Option<Text>>,
}

/// A top-level config or secret.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectDef {
    pub name: Option<Text>,
    pub file: Option<Text>,
    /// Content from a variable (Compose's `environment:` source); for
    /// Slipway that is a spec variable or a runner secret.
    pub environment: Option<Text>,
    /// Inline content (configs only in Compose).
    pub content: Option<Text>,
    pub external: Option<External>,
    #[serde(default)]
    pub labels: BTreeMap<String, Option<Text>>,
    pub template_driver: Option<Text>,
}

/// Reads, interpolates and merges the spec's Compose files.
pub fn read(
    files: &dyn Files,
    spec: &DeploySpec,
    _ctx: &Context,
) -> Result<ComposeProject, SpecError> {
    let mut sources = Vec::new();
    let mut merged: Option<Value> = None;
    let mut warnings = Vec::new();
    let mut ignored = std::collections::BTreeSet::new();
    for file in &spec.compose {
        let bytes = files
            .read(file)
            .map_err(|e| SpecError::file(file, format!("cannot read: {e}")))?
            .ok_or_else(|| {
                spec.source.error(PathError::new(
                    &spec.compose_key,
                    format!("Compose file {file} does not exist in the repository"),
                ))
            })?;
        let (source, mut value) = yaml::parse(file, &bytes)?;
        value.apply_merge().map_err(|e| SpecError {
            file: file.clone(),
            line: None,
            key: None,
            message: format!("invalid YAML merge key: {e}"),
        })?;
        merge::normalize(&mut value).map_err(|e| source.error(e))?;
        let mut interp = Interpolator::new(&spec.variables);
        interp
            .value(&mut value, &KeyPath::default())
            .map_err(|e| source.error(e))?;
        warnings.extend(interp.warnings.into_iter().map(|w| format!("{file}: {w}")));
        remove_ignored(&mut value, &mut ignored);
        sources.push(source);
        match &mut merged {
            None => merged = Some(value),
            Some(m) => merge::merge(m, value),
        }
    }
    if !ignored.is_empty() {
        let list: Vec<&str> = ignored.iter().copied().collect();
        warnings.insert(
            0,
            format!("Ignoring unsupported options: {}", list.join(", ")),
        );
    }
    let merged = merged.unwrap_or(Value::Mapping(Default::default()));
    let model: Compose = yaml::typed(merged).map_err(|e| yaml::place(&sources, e))?;
    let project = ComposeProject {
        sources,
        model,
        warnings,
    };
    for (name, service) in &project.model.services {
        if service.image.is_none() {
            return Err(project.error(PathError::new(
                &KeyPath::default().key("services").key(name),
                "a service needs an image: swarm does not build images",
            )));
        }
    }
    Ok(project)
}

/// Takes the keys swarm ignores out of each service, noting which were
/// used. `restart` stays: it is the fallback restart policy.
fn remove_ignored(file: &mut Value, found: &mut std::collections::BTreeSet<&'static str>) {
    let Some(Value::Mapping(services)) = file.get_mut("services") else {
        return;
    };
    for (_, service) in services.iter_mut() {
        let Value::Mapping(service) = service else {
            continue;
        };
        for key in IGNORED_SERVICE_KEYS {
            if service.contains_key(*key) {
                found.insert(key);
                if *key != "restart" {
                    service.remove(*key);
                }
            }
        }
    }
}

/// Splits a shell-style command line into words, as the Docker CLI does
/// for `command: serve --port 80` (quotes group, backslashes escape).
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(n) => word.push(n),
                    None => return Err("ends with an escaping backslash".into()),
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => word.push(n),
                        None => return Err("unclosed single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(n @ ('"' | '\\' | '$' | '`')) => word.push(n),
                            Some('\n') => {}
                            Some(n) => {
                                word.push('\\');
                                word.push(n);
                            }
                            None => return Err("unclosed double quote".into()),
                        },
                        Some(n) => word.push(n),
                        None => return Err("unclosed double quote".into()),
                    }
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_split_like_a_shell() {
        assert_eq!(
            split_words(r#"sh -c 'echo "hi there"' a\ b "x\"y""#).unwrap(),
            vec!["sh", "-c", "echo \"hi there\"", "a b", "x\"y"]
        );
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
        assert!(split_words("'open").is_err());
    }
}
