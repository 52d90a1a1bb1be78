//! `volumes:` (bind mounts, named volumes as `<stack>_<name>`, anonymous
//! volumes, tmpfs). A service-level `tmpfs:` list is ignored, with a
//! warning, as `docker stack deploy` ignores it.
//!
//! One deliberate difference from `docker stack deploy`: mounts are sorted
//! by target, so reordering `volumes:` does not restart tasks (the CLI keeps
//! file order).
//!
//! A relative bind source (`./data:/data`) is refused: it would be relative
//! to the runner's temporary checkout, which no swarm node has.

use std::collections::BTreeMap;

use bollard::models::{
    Mount, MountBindOptions, MountBindOptionsPropagationEnum as Propagation, MountTmpfsOptions,
    MountType, MountVolumeOptions, MountVolumeOptionsDriverConfig,
};
use serde_norway::Value;

use super::super::compose::Compose;
use super::super::scalar::{Bool, Bytes, Text};
use super::super::yaml::{typed, KeyPath, PathError};
use super::Scope;

pub fn convert(
    scope: &Scope<'_>,
    model: &Compose,
    volumes: &[Value],
    path: &KeyPath,
) -> Result<Vec<Mount>, PathError> {
    let mut out = Vec::new();
    for (i, value) in volumes.iter().enumerate() {
        let at = path.index(i);
        let raw = match value {
            Value::String(s) => short(s, &at)?,
            Value::Mapping(_) => typed::<Long>(value.clone()).map_err(|e| PathError {
                path: KeyPath(at.0.iter().chain(e.path.0.iter()).cloned().collect()),
                message: e.message,
            })?,
            _ => {
                return Err(PathError::new(
                    &at,
                    "a volume is a string like \"data:/data\" or a mapping",
                ))
            }
        };
        out.push(mount(scope, model, raw, &at)?);
    }
    out.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(out)
}

#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Long {
    #[serde(rename = "type")]
    typ: Option<Text>,
    source: Option<Text>,
    target: Option<Text>,
    read_only: Option<Bool>,
    consistency: Option<Text>,
    bind: Option<BindOpts>,
    volume: Option<VolumeOpts>,
    tmpfs: Option<TmpfsOpts>,
}

#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BindOpts {
    propagation: Option<Text>,
    create_host_path: Option<Bool>,
}

#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeOpts {
    nocopy: Option<Bool>,
    subpath: Option<Text>,
}

#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TmpfsOpts {
    size: Option<Bytes>,
    mode: Option<Value>,
}

/// `[source:]target[:mode]`, as the Docker CLI's `ParseVolume` reads it.
fn short(spec: &str, path: &KeyPath) -> Result<Long, PathError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [target] => (None, *target, None),
        [source, target] => (Some(*source), *target, None),
        [source, target, options] => (Some(*source), *target, Some(*options)),
        _ => return Err(PathError::new(path, format!("invalid volume {spec:?}"))),
    };
    if target.is_empty() {
        return Err(PathError::new(
            path,
            format!("invalid volume {spec:?}: no target"),
        ));
    }
    let is_path = |s: &str| s.starts_with('/') || s.starts_with('.') || s.starts_with('~');
    let mut long = Long {
        typ: Some(Text(
            match source {
                Some(s) if is_path(s) => "bind",
                _ => "volume",
            }
            .into(),
        )),
        source: source.map(|s| Text(s.into())),
        target: Some(Text(target.into())),
        ..Default::default()
    };
    for option in options.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        match option {
            "ro" => long.read_only = Some(Bool(true)),
            "rw" => long.read_only = Some(Bool(false)),
            "nocopy" => {
                long.volume = Some(VolumeOpts {
                    nocopy: Some(Bool(true)),
                    subpath: None,
                })
            }
            "z" | "Z" => {}
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                long.bind = Some(BindOpts {
                    propagation: Some(Text(option.into())),
                    create_host_path: None,
                })
            }
            other => {
                return Err(PathError::new(
                    path,
                    format!("unknown volume option {other:?} in {spec:?}"),
                ))
            }
        }
    }
    Ok(long)
}

fn mount(
    scope: &Scope<'_>,
    model: &Compose,
    raw: Long,
    path: &KeyPath,
) -> Result<Mount, PathError> {
    let typ = raw.typ.map(|Text(t)| t).unwrap_or_else(|| "volume".into());
    let target = raw
        .target
        .map(|Text(t)| t)
        .ok_or_else(|| PathError::new(&path.key("target"), "a mount needs a target"))?;
    let source = raw.source.map(|Text(s)| s).filter(|s| !s.is_empty());
    let mut m = Mount {
        target: Some(target),
        read_only: raw.read_only.map(|Bool(b)| b).filter(|b| *b),
        consistency: raw.consistency.map(|Text(c)| c),
        ..Default::default()
    };
    match typ.as_str() {
        "volume" => {
            m.typ = Some(MountType::VOLUME);
            if raw.bind.is_some() || raw.tmpfs.is_some() {
                return Err(PathError::new(
                    path,
                    "bind and tmpfs options do not apply to a volume",
                ));
            }
            let Some(source) = source else {
                return Ok(m); // anonymous volume
            };
            let Some(def) = model.volumes.get(&source) else {
                return Err(PathError::new(
                    path,
                    format!("volume {source:?} is not declared under the top-level volumes"),
                ));
            };
            let def = def.as_ref();
            let external = def.and_then(|d| d.external.clone()).unwrap_or_default();
            let name = def
                .and_then(|d| d.name.as_ref().map(|Text(n)| n.clone()))
                .or(external.name.clone())
                .unwrap_or_else(|| {
                    if external.external {
                        source.clone()
                    } else {
                        scope.scoped(&source)
                    }
                });
            m.source = Some(name);
            let mut opts = MountVolumeOptions {
                no_copy: raw
                    .volume
                    .as_ref()
                    .and_then(|v| v.nocopy)
                    .map(|Bool(b)| b)
                    .filter(|b| *b),
                subpath: raw
                    .volume
                    .as_ref()
                    .and_then(|v| v.subpath.as_ref())
                    .map(|Text(s)| s.clone()),
                ..Default::default()
            };
            if !external.external {
                let empty = BTreeMap::new();
                let labels = def.map(|d| &d.labels).unwrap_or(&empty);
                // Volume labels: only the stack namespace, like the CLI —
                // a volume outlives deployments and is shared by tasks.
                let mut l = super::plain_labels(labels);
                l.insert(
                    crate::plan::STACK_NAMESPACE_LABEL.into(),
                    scope.stack.to_owned(),
                );
                opts.labels = Some(l);
                if let Some(def) = def {
                    if def.driver.is_some() || !def.driver_opts.is_empty() {
                        opts.driver_config = Some(MountVolumeOptionsDriverConfig {
                            name: def.driver.as_ref().map(|Text(d)| d.clone()),
                            options: Some(
                                def.driver_opts
                                    .iter()
                                    .map(|(k, Text(v))| (k.clone(), v.clone()))
                                    .collect(),
                            ),
                        });
                    }
                }
            }
            m.volume_options = Some(opts);
        }
        "bind" => {
            m.typ = Some(MountType::BIND);
            if raw.volume.is_some() || raw.tmpfs.is_some() {
                return Err(PathError::new(
                    path,
                    "volume and tmpfs options do not apply to a bind mount",
                ));
            }
            let source =
                source.ok_or_else(|| PathError::new(path, "a bind mount needs a source"))?;
            if !source.starts_with('/') {
                return Err(PathError::new(
                    path,
                    format!("bind source {source:?} must be an absolute path on the swarm nodes"),
                ));
            }
            m.source = Some(source);
            if let Some(bind) = raw.bind {
                let propagation = match bind.propagation.as_ref().map(|Text(p)| p.as_str()) {
                    None | Some("") => None,
                    Some(p) => Some(p.parse::<Propagation>().map_err(|_| {
                        PathError::new(
                            &path.key("bind").key("propagation"),
                            format!("unknown propagation {p:?}"),
                        )
                    })?),
                };
                let _ = bind.create_host_path;
                m.bind_options = Some(MountBindOptions {
                    propagation,
                    ..Default::default()
                });
            }
        }
        "tmpfs" => {
            m.typ = Some(MountType::TMPFS);
            if source.is_some() {
                return Err(PathError::new(path, "a tmpfs mount has no source"));
            }
            if raw.bind.is_some() || raw.volume.is_some() {
                return Err(PathError::new(
                    path,
                    "bind and volume options do not apply to tmpfs",
                ));
            }
            if let Some(t) = raw.tmpfs {
                m.tmpfs_options = Some(MountTmpfsOptions {
                    size_bytes: t.size.map(|Bytes(b)| b),
                    mode: match t.mode {
                        None => None,
                        Some(Value::Number(n)) => n.as_i64(),
                        Some(Value::String(s)) => Some(
                            i64::from_str_radix(s.trim_start_matches("0o"), 8).map_err(|_| {
                                PathError::new(
                                    &path.key("tmpfs").key("mode"),
                                    format!("invalid mode {s:?}"),
                                )
                            })?,
                        ),
                        Some(_) => {
                            return Err(PathError::new(
                                &path.key("tmpfs").key("mode"),
                                "mode must be a number",
                            ))
                        }
                    },
                    options: None,
                });
            }
        }
        other => {
            return Err(PathError::new(
                &path.key("type"),
                format!("unsupported mount type {other:?} (volume, bind, tmpfs)"),
            ))
        }
    }
    Ok(m)
}
