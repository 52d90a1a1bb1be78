//! One Compose service → one swarm `ServiceSpec`, field by field as
//! docker/cli's `convert.Service` does it: `entrypoint` → `Command`,
//! `command` → `Args`, sorted `Env`, `update_config` without `parallelism`
//! means 1, `restart:` is the fallback restart policy, and the service name
//! is an alias on each of its networks.

use std::collections::BTreeMap;

use bollard::models::{
    EndpointSpec, EndpointSpecModeEnum, HealthConfig, Limit, ResourceObject, ResourcesUlimits,
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecModeReplicatedJob,
    ServiceSpecRollbackConfig, ServiceSpecRollbackConfigFailureActionEnum,
    ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum, TaskSpec,
    TaskSpecContainerSpec, TaskSpecContainerSpecDnsConfig, TaskSpecContainerSpecIsolationEnum,
    TaskSpecContainerSpecPrivileges, TaskSpecLogDriver, TaskSpecPlacement,
    TaskSpecPlacementPreferences, TaskSpecPlacementSpread, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use serde_norway::Value;

use crate::plan::{DataPlan, ServicePlan, STACK_IMAGE_LABEL};

use super::super::compose::{split_words, Compose, Deploy, Healthcheck, Service, UpdateConfig};
use super::super::scalar::{Bool, Bytes, Int, Nanos, OneOrMany, Text};
use super::super::yaml::{typed, KeyPath, PathError};
use super::super::{env_file, relative_to, SpecError};
use super::{mounts, networks, objects, ports, ConvertError, Scope};

/// The configs and secrets of the plan, which services reference by name.
pub struct Refs<'a> {
    pub configs: &'a [DataPlan],
    pub secrets: &'a [DataPlan],
}

pub fn convert(
    scope: &Scope<'_>,
    model: &Compose,
    name: &str,
    svc: &Service,
    refs: &Refs<'_>,
    path: &KeyPath,
    _warnings: &mut Vec<String>,
) -> Result<ServicePlan, ConvertError> {
    let empty_deploy = Deploy::default();
    let deploy = svc.deploy.as_ref().unwrap_or(&empty_deploy);
    let dpath = path.key("deploy");
    let image = svc
        .image
        .as_ref()
        .map(|Text(i)| i.clone())
        .unwrap_or_default();

    let mut labels = scope.service_labels(&deploy.labels);
    labels.insert(STACK_IMAGE_LABEL.into(), image.clone());

    let mounts = mounts::convert(scope, model, &svc.volumes, &path.key("volumes"))?;
    let configs = objects::config_refs(refs.configs, &svc.configs, &path.key("configs"))?;
    let secrets = objects::secret_refs(refs.secrets, &svc.secrets, &path.key("secrets"))?;
    let (cap_add, cap_drop) = capabilities(&svc.cap_add, &svc.cap_drop);

    let container = TaskSpecContainerSpec {
        image: Some(image),
        labels: Some(scope.container_labels(&svc.labels)),
        command: command(svc.entrypoint.as_ref(), &path.key("entrypoint"))?,
        args: command(svc.command.as_ref(), &path.key("command"))?,
        hostname: text(&svc.hostname),
        env: non_empty(environment(scope, svc, path)?),
        dir: text(&svc.working_dir),
        user: text(&svc.user),
        privileges: Some(TaskSpecContainerSpecPrivileges::default()),
        tty: flag(svc.tty),
        open_stdin: flag(svc.stdin_open),
        read_only: flag(svc.read_only),
        mounts: non_empty(mounts),
        stop_signal: text(&svc.stop_signal),
        stop_grace_period: svc.stop_grace_period.map(|Nanos(n)| n),
        health_check: healthcheck(svc.healthcheck.as_ref(), &path.key("healthcheck"))?,
        hosts: hosts(svc.extra_hosts.as_ref(), &path.key("extra_hosts"))?,
        dns_config: dns(svc),
        secrets: non_empty(secrets),
        configs: non_empty(configs),
        isolation: match &svc.isolation {
            None => None,
            Some(Text(i)) => Some(i.parse::<TaskSpecContainerSpecIsolationEnum>().map_err(
                |_| PathError::new(&path.key("isolation"), format!("unknown isolation {i:?}")),
            )?),
        },
        init: svc.init.map(|Bool(b)| b),
        sysctls: (!svc.sysctls.is_empty()).then(|| {
            svc.sysctls
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_ref().map(|t| t.0.clone()).unwrap_or_default(),
                    )
                })
                .collect()
        }),
        capability_add: non_empty(cap_add),
        capability_drop: non_empty(cap_drop),
        ulimits: non_empty(ulimits(&svc.ulimits, &path.key("ulimits"))?),
        oom_score_adj: svc.oom_score_adj.map(|Int(i)| i).filter(|i| *i != 0),
        ..Default::default()
    };

    let task = TaskSpec {
        container_spec: Some(container),
        resources: Some(resources(deploy, &dpath)?),
        restart_policy: restart_policy(deploy, svc.restart.as_ref(), path)?,
        placement: Some(placement(deploy)),
        networks: Some(networks::attachments(scope, model, name, svc)),
        log_driver: svc.logging.as_ref().map(|l| TaskSpecLogDriver {
            name: text(&l.driver),
            options: (!l.options.is_empty()).then(|| {
                l.options
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_ref().map(|t| t.0.clone()).unwrap_or_default(),
                        )
                    })
                    .collect()
            }),
        }),
        ..Default::default()
    };

    let endpoint_mode = match deploy
        .endpoint_mode
        .as_ref()
        .map(|Text(m)| m.to_ascii_lowercase())
    {
        None => None,
        Some(m) if m == "vip" => Some(EndpointSpecModeEnum::VIP),
        Some(m) if m == "dnsrr" => Some(EndpointSpecModeEnum::DNSRR),
        Some(m) => {
            return Err(PathError::new(
                &dpath.key("endpoint_mode"),
                format!("unknown endpoint mode {m:?} (vip, dnsrr)"),
            )
            .into())
        }
    };
    let ports = ports::convert(&svc.ports, &path.key("ports"))?;

    let spec = ServiceSpec {
        name: Some(scope.scoped(name)),
        labels: Some(labels),
        task_template: Some(task),
        mode: Some(mode(deploy, &dpath)?),
        update_config: deploy
            .update_config
            .as_ref()
            .map(|u| update_config(u, &dpath.key("update_config")))
            .transpose()?,
        rollback_config: deploy
            .rollback_config
            .as_ref()
            .map(|u| rollback_config(u, &dpath.key("rollback_config")))
            .transpose()?,
        networks: None,
        endpoint_spec: Some(EndpointSpec {
            mode: endpoint_mode,
            ports: non_empty(ports),
        }),
    };
    Ok(ServicePlan {
        name: scope.scoped(name),
        spec,
        credentials: None,
    })
}

fn text(t: &Option<Text>) -> Option<String> {
    t.as_ref()
        .map(|Text(s)| s.clone())
        .filter(|s| !s.is_empty())
}

/// `true` only: the CLI sends Go's zero value, which the engine omits.
fn flag(b: Option<Bool>) -> Option<bool> {
    b.map(|Bool(b)| b).filter(|b| *b)
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// `command`/`entrypoint`: a list as is, a string split like a shell.
pub(super) fn command(
    value: Option<&Value>,
    path: &KeyPath,
) -> Result<Option<Vec<String>>, PathError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => split_words(s)
            .map(non_empty)
            .map_err(|e| PathError::new(path, format!("cannot split {s:?}: {e}"))),
        Some(v @ Value::Sequence(_)) => {
            let words: Vec<Text> = typed(v.clone()).map_err(|e| PathError::new(path, e.message))?;
            Ok(non_empty(words.into_iter().map(|Text(w)| w).collect()))
        }
        Some(_) => Err(PathError::new(
            path,
            "expected a string or a list of strings",
        )),
    }
}

/// `env_file` entries, then `environment` (which wins); a name without a
/// value takes the interpolation variable of that name, as the CLI takes it
/// from its own environment. Sorted.
fn environment(
    scope: &Scope<'_>,
    svc: &Service,
    path: &KeyPath,
) -> Result<Vec<String>, ConvertError> {
    let mut env: BTreeMap<String, Option<String>> = BTreeMap::new();
    let lookup = |name: &str, value: Option<String>| -> Option<String> {
        match value {
            Some(v) if !v.is_empty() => Some(v),
            other => scope.variables.get(name).cloned().or(other),
        }
    };
    let env_files: Vec<(String, bool)> = match &svc.env_file {
        None => Vec::new(),
        Some(Value::String(s)) => vec![(s.clone(), true)],
        Some(Value::Sequence(items)) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => out.push((s.clone(), true)),
                    Value::Mapping(_) => {
                        #[derive(serde::Deserialize)]
                        #[serde(deny_unknown_fields)]
                        struct Long {
                            path: Text,
                            required: Option<Bool>,
                        }
                        let l: Long = typed(item.clone()).map_err(|e| {
                            PathError::new(&path.key("env_file").index(i), e.message)
                        })?;
                        out.push((l.path.0, l.required.map(|Bool(b)| b).unwrap_or(true)));
                    }
                    _ => {
                        return Err(PathError::new(
                            &path.key("env_file").index(i),
                            "expected a path",
                        )
                        .into())
                    }
                }
            }
            out
        }
        Some(_) => {
            return Err(
                PathError::new(&path.key("env_file"), "expected a path or a list of paths").into(),
            )
        }
    };
    for (i, (file, required)) in env_files.iter().enumerate() {
        let file_path = relative_to(scope.base_file, file);
        let bytes = scope.files.read(&file_path).map_err(|e| {
            PathError::new(
                &path.key("env_file").index(i),
                format!("cannot read {file_path}: {e}"),
            )
        })?;
        let Some(bytes) = bytes else {
            if *required {
                return Err(PathError::new(
                    &path.key("env_file"),
                    format!("env file {file_path} does not exist in the repository"),
                )
                .into());
            }
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let vars = env_file::parse(&text).map_err(|(line, message)| {
            ConvertError::Spec(SpecError {
                file: file_path.clone(),
                line: Some(line),
                key: None,
                message,
            })
        })?;
        for (k, v) in vars {
            let v = lookup(&k, v);
            env.insert(k, v);
        }
    }
    for (k, v) in &svc.environment {
        let v = lookup(k, v.as_ref().map(|t| t.0.clone()));
        env.insert(k.clone(), v);
    }
    let mut out: Vec<String> = env
        .into_iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k,
        })
        .collect();
    out.sort();
    Ok(out)
}

fn healthcheck(h: Option<&Healthcheck>, path: &KeyPath) -> Result<Option<HealthConfig>, PathError> {
    let Some(h) = h else { return Ok(None) };
    if h.disable.map(|Bool(b)| b).unwrap_or(false) {
        if h.test.is_some() {
            return Err(PathError::new(path, "test and disable cannot both be set"));
        }
        return Ok(Some(HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        }));
    }
    let test = match &h.test {
        None => None,
        Some(Value::String(s)) => Some(vec!["CMD-SHELL".into(), s.clone()]),
        Some(v @ Value::Sequence(_)) => {
            let words: Vec<Text> =
                typed(v.clone()).map_err(|e| PathError::new(&path.key("test"), e.message))?;
            Some(words.into_iter().map(|Text(w)| w).collect())
        }
        Some(_) => {
            return Err(PathError::new(
                &path.key("test"),
                "expected a string or a list",
            ))
        }
    };
    let d = |n: Option<Nanos>| n.map(|Nanos(n)| n).filter(|n| *n != 0);
    Ok(Some(HealthConfig {
        test,
        interval: d(h.interval),
        timeout: d(h.timeout),
        retries: h.retries.map(|Int(r)| r).filter(|r| *r != 0),
        start_period: d(h.start_period),
        start_interval: d(h.start_interval),
    }))
}

/// `host:ip` (or `host=ip`) → swarm's `ip host`, in file order; the mapping
/// form is sorted first, as the CLI does.
fn hosts(value: Option<&Value>, path: &KeyPath) -> Result<Option<Vec<String>>, PathError> {
    let entries: Vec<(String, String)> = match value {
        None => return Ok(None),
        Some(Value::Sequence(items)) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let Value::String(s) = item else {
                    return Err(PathError::new(&path.index(i), "expected \"host:ip\""));
                };
                let (h, ip) = s
                    .split_once('=')
                    .or_else(|| s.split_once(':'))
                    .ok_or_else(|| {
                        PathError::new(&path.index(i), format!("expected \"host:ip\", found {s:?}"))
                    })?;
                out.push((h.to_owned(), ip.to_owned()));
            }
            out
        }
        Some(v @ Value::Mapping(_)) => {
            let map: BTreeMap<String, Text> =
                typed(v.clone()).map_err(|e| PathError::new(path, e.message))?;
            let mut list: Vec<String> = map
                .into_iter()
                .map(|(h, Text(ip))| format!("{h}:{ip}"))
                .collect();
            list.sort();
            list.into_iter()
                .map(|s| {
                    let (h, ip) = s.split_once(':').expect("formatted with a colon");
                    (h.to_owned(), ip.to_owned())
                })
                .collect()
        }
        Some(_) => return Err(PathError::new(path, "expected a list or a mapping")),
    };
    Ok(non_empty(
        entries
            .into_iter()
            .map(|(h, ip)| format!("{ip} {h}"))
            .collect(),
    ))
}

fn dns(svc: &Service) -> Option<TaskSpecContainerSpecDnsConfig> {
    let servers: Vec<String> = svc
        .dns
        .as_ref()
        .map(|OneOrMany(d)| {
            d.iter()
                .filter(|s| s.parse::<std::net::IpAddr>().is_ok())
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let search = svc
        .dns_search
        .as_ref()
        .map(|OneOrMany(s)| s.clone())
        .unwrap_or_default();
    if servers.is_empty() && search.is_empty() {
        return None;
    }
    Some(TaskSpecContainerSpecDnsConfig {
        nameservers: non_empty(servers),
        search: non_empty(search),
        options: None,
    })
}

/// Normalised as the CLI's `EffectiveCapAddCapDrop`: upper case, a `CAP_`
/// prefix, `ALL` alone, and a capability both added and dropped is added.
fn capabilities(add: &[Text], drop: &[Text]) -> (Vec<String>, Vec<String>) {
    fn normalize(caps: &[Text]) -> Vec<String> {
        let mut out: Vec<String> = caps
            .iter()
            .map(|Text(c)| {
                let c = c.trim().to_ascii_uppercase();
                if c == "ALL" || c.starts_with("CAP_") {
                    c
                } else {
                    format!("CAP_{c}")
                }
            })
            .filter(|c| !c.is_empty())
            .collect();
        out.sort();
        out.dedup();
        if out.iter().any(|c| c == "ALL") {
            out = vec!["ALL".into()];
        }
        out
    }
    let add = normalize(add);
    let drop = normalize(drop)
        .into_iter()
        .filter(|c| !add.contains(c))
        .collect();
    (add, drop)
}

fn ulimits(
    map: &BTreeMap<String, Value>,
    path: &KeyPath,
) -> Result<Vec<ResourcesUlimits>, PathError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SoftHard {
        soft: Int,
        hard: Int,
    }
    let mut out = Vec::new();
    for (name, value) in map {
        let (soft, hard) = match value {
            Value::Mapping(_) => {
                let sh: SoftHard = typed(value.clone()).map_err(|e| PathError {
                    path: KeyPath(path.key(name).0.into_iter().chain(e.path.0).collect()),
                    message: e.message,
                })?;
                (sh.soft.0, sh.hard.0)
            }
            other => {
                let Int(n) =
                    typed(other.clone()).map_err(|e| PathError::new(&path.key(name), e.message))?;
                (n, n)
            }
        };
        out.push(ResourcesUlimits {
            name: Some(name.clone()),
            soft: Some(soft),
            hard: Some(hard),
        });
    }
    Ok(out) // BTreeMap order: sorted by name, as the CLI sorts them.
}

fn resources(deploy: &Deploy, path: &KeyPath) -> Result<TaskSpecResources, PathError> {
    let mut out = TaskSpecResources::default();
    let Some(r) = &deploy.resources else {
        return Ok(out);
    };
    let cpus = |c: &Option<Text>, p: &KeyPath| -> Result<Option<i64>, PathError> {
        match c {
            None => Ok(None),
            Some(Text(t)) => super::super::units::parse_cpus(t)
                .map(|n| Some(n).filter(|n| *n != 0))
                .map_err(|m| PathError::new(p, m)),
        }
    };
    if let Some(l) = &r.limits {
        let p = path.key("resources").key("limits");
        out.limits = Some(Limit {
            nano_cpus: cpus(&l.cpus, &p.key("cpus"))?,
            memory_bytes: l.memory.map(|Bytes(b)| b).filter(|b| *b != 0),
            pids: l.pids.map(|Int(p)| p).filter(|p| *p != 0),
        });
    }
    if let Some(l) = &r.reservations {
        let p = path.key("resources").key("reservations");
        if l.pids.is_some() {
            return Err(PathError::new(
                &p.key("pids"),
                "pids can only be limited, not reserved",
            ));
        }
        out.reservations = Some(ResourceObject {
            nano_cpus: cpus(&l.cpus, &p.key("cpus"))?,
            memory_bytes: l.memory.map(|Bytes(b)| b).filter(|b| *b != 0),
            generic_resources: None,
        });
    }
    Ok(out)
}

fn restart_policy(
    deploy: &Deploy,
    restart: Option<&Text>,
    path: &KeyPath,
) -> Result<Option<TaskSpecRestartPolicy>, PathError> {
    if let Some(p) = &deploy.restart_policy {
        let at = path.key("deploy").key("restart_policy").key("condition");
        let condition = match p.condition.as_ref().map(|Text(c)| c.as_str()) {
            None => None,
            Some(c) => Some(
                c.parse::<TaskSpecRestartPolicyConditionEnum>()
                    .map_err(|_| {
                        PathError::new(
                            &at,
                            format!("unknown condition {c:?} (none, on-failure, any)"),
                        )
                    })?,
            ),
        };
        return Ok(Some(TaskSpecRestartPolicy {
            condition,
            delay: p.delay.map(|Nanos(n)| n),
            max_attempts: p.max_attempts.map(|Int(n)| n),
            window: p.window.map(|Nanos(n)| n),
        }));
    }
    let Some(Text(restart)) = restart else {
        return Ok(None);
    };
    let (name, count) = restart.split_once(':').unwrap_or((restart, ""));
    let count: i64 = if count.is_empty() {
        0
    } else {
        count.parse().ok().filter(|c| *c >= 0).ok_or_else(|| {
            PathError::new(
                &path.key("restart"),
                format!("invalid retry count in {restart:?}"),
            )
        })?
    };
    let max_attempts = (count > 0).then_some(count);
    let condition = match name {
        "" | "no" => return Ok(None),
        "always" | "unless-stopped" => TaskSpecRestartPolicyConditionEnum::ANY,
        "on-failure" => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
        other => {
            return Err(PathError::new(
                &path.key("restart"),
                format!(
                    "unknown restart policy {other:?} (no, always, on-failure, unless-stopped)"
                ),
            ))
        }
    };
    Ok(Some(TaskSpecRestartPolicy {
        condition: Some(condition),
        max_attempts,
        ..Default::default()
    }))
}

fn placement(deploy: &Deploy) -> TaskSpecPlacement {
    let Some(p) = &deploy.placement else {
        return TaskSpecPlacement::default();
    };
    TaskSpecPlacement {
        constraints: non_empty(p.constraints.iter().map(|Text(c)| c.clone()).collect()),
        preferences: non_empty(
            p.preferences
                .iter()
                .map(|pref| TaskSpecPlacementPreferences {
                    spread: Some(TaskSpecPlacementSpread {
                        spread_descriptor: Some(pref.spread.0.clone()),
                    }),
                })
                .collect(),
        ),
        max_replicas: p.max_replicas_per_node.map(|Int(n)| n).filter(|n| *n != 0),
        platforms: None,
    }
}

fn mode(deploy: &Deploy, path: &KeyPath) -> Result<ServiceSpecMode, PathError> {
    let replicas = deploy.replicas.map(|Int(n)| n);
    if replicas.is_some_and(|r| r < 0) {
        return Err(PathError::new(&path.key("replicas"), "cannot be negative"));
    }
    let no_replicas = |m: &str| -> Result<(), PathError> {
        match replicas {
            Some(_) => Err(PathError::new(
                &path.key("replicas"),
                format!("replicas cannot be used with mode {m}"),
            )),
            None => Ok(()),
        }
    };
    let global = || Some(Default::default());
    Ok(
        match deploy
            .mode
            .as_ref()
            .map(|Text(m)| m.as_str())
            .unwrap_or("replicated")
        {
            "replicated" => ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas }),
                ..Default::default()
            },
            "global" => {
                no_replicas("global")?;
                ServiceSpecMode {
                    global: global(),
                    ..Default::default()
                }
            }
            "replicated-job" => ServiceSpecMode {
                replicated_job: Some(ServiceSpecModeReplicatedJob {
                    max_concurrent: replicas,
                    total_completions: replicas,
                }),
                ..Default::default()
            },
            "global-job" => {
                no_replicas("global-job")?;
                ServiceSpecMode {
                    global_job: global(),
                    ..Default::default()
                }
            }
            other => {
                return Err(PathError::new(
                    &path.key("mode"),
                    format!(
                        "unknown mode {other:?} (replicated, global, replicated-job, global-job)"
                    ),
                ))
            }
        },
    )
}

fn update_config(u: &UpdateConfig, path: &KeyPath) -> Result<ServiceSpecUpdateConfig, PathError> {
    Ok(ServiceSpecUpdateConfig {
        parallelism: Some(u.parallelism.map(|Int(n)| n).unwrap_or(1)),
        delay: u.delay.map(|Nanos(n)| n).filter(|n| *n != 0),
        failure_action: match u.failure_action.as_ref().map(|Text(a)| a.as_str()) {
            None | Some("") => None,
            Some(a) => Some(
                a.parse::<ServiceSpecUpdateConfigFailureActionEnum>()
                    .map_err(|_| {
                        PathError::new(
                            &path.key("failure_action"),
                            format!("unknown action {a:?} (pause, continue, rollback)"),
                        )
                    })?,
            ),
        },
        monitor: u.monitor.map(|Nanos(n)| n).filter(|n| *n != 0),
        max_failure_ratio: u.max_failure_ratio,
        order: match u.order.as_ref().map(|Text(o)| o.as_str()) {
            None | Some("") => None,
            Some(o) => Some(o.parse::<ServiceSpecUpdateConfigOrderEnum>().map_err(|_| {
                PathError::new(
                    &path.key("order"),
                    format!("unknown order {o:?} (stop-first, start-first)"),
                )
            })?),
        },
    })
}

fn rollback_config(
    u: &UpdateConfig,
    path: &KeyPath,
) -> Result<ServiceSpecRollbackConfig, PathError> {
    Ok(ServiceSpecRollbackConfig {
        parallelism: Some(u.parallelism.map(|Int(n)| n).unwrap_or(1)),
        delay: u.delay.map(|Nanos(n)| n).filter(|n| *n != 0),
        failure_action: match u.failure_action.as_ref().map(|Text(a)| a.as_str()) {
            None | Some("") => None,
            Some(a) => Some(
                a.parse::<ServiceSpecRollbackConfigFailureActionEnum>()
                    .map_err(|_| {
                        PathError::new(
                            &path.key("failure_action"),
                            format!("unknown action {a:?} (pause, continue)"),
                        )
                    })?,
            ),
        },
        monitor: u.monitor.map(|Nanos(n)| n).filter(|n| *n != 0),
        max_failure_ratio: u.max_failure_ratio,
        order: match u.order.as_ref().map(|Text(o)| o.as_str()) {
            None | Some("") => None,
            Some(o) => Some(
                o.parse::<ServiceSpecRollbackConfigOrderEnum>()
                    .map_err(|_| {
                        PathError::new(
                            &path.key("order"),
                            format!("unknown order {o:?} (stop-first, start-first)"),
                        )
                    })?,
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_normalised_like_the_cli() {
        let t = |v: &[&str]| v.iter().map(|s| Text((*s).into())).collect::<Vec<_>>();
        assert_eq!(
            capabilities(
                &t(&["net_admin", "CAP_SYS_TIME", "NET_ADMIN"]),
                &t(&["mknod", "net_admin"])
            ),
            (
                vec!["CAP_NET_ADMIN".into(), "CAP_SYS_TIME".into()],
                vec!["CAP_MKNOD".into()]
            )
        );
        assert_eq!(
            capabilities(&t(&["all", "net_admin"]), &[]).0,
            vec!["ALL".to_owned()]
        );
    }
}
