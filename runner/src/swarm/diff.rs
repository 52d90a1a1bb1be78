//! What a plan would change on the swarm, for `slipway-runner plan --diff`.
//!
//! The engine fills in defaults (update config, restart policy, ...) that a
//! plan leaves out, so a planned service is compared field by field: a field
//! the plan sets must have the same value on the engine; fields the plan
//! leaves to the engine are not compared.

use std::collections::{BTreeMap, HashMap};

use bollard::query_parameters::ListNetworksOptions;
use serde::Serialize;
use serde_json::Value;

use super::apply::stack_services;
use super::{Engine, EngineError};
use crate::plan::{engine_json, Plan, DEPLOYMENT_LABEL};
use crate::registry::reference::digest_of;

#[derive(Debug, Serialize)]
pub struct ServiceDiff {
    pub name: String,
    /// `create`, `update`, `unchanged` or `remove`.
    pub action: &'static str,
    /// JSON paths of the planned fields whose value differs on the engine.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// The image it would run, pinned when the plan was resolved (for
    /// `remove`, the image it runs now).
    pub image: Option<String>,
    /// The digest `image` is pinned to, if it is.
    pub digest: Option<String>,
}

impl ServiceDiff {
    fn new(name: &str, action: &'static str, image: Option<&str>) -> Self {
        Self {
            name: name.to_owned(),
            action,
            changes: Vec::new(),
            image: image.map(str::to_owned),
            digest: image.and_then(digest_of).map(str::to_owned),
        }
    }
}

pub async fn diff(engine: &Engine, plan: &Plan) -> Result<Vec<ServiceDiff>, EngineError> {
    let running = stack_services(engine, &plan.stack).await?;
    // The engine stores network ids where a spec names networks.
    let network_names: HashMap<String, String> = engine
        .docker
        .list_networks(None::<ListNetworksOptions>)
        .await?
        .into_iter()
        .filter_map(|n| Some((n.id?, n.name?)))
        .collect();
    let mut out = Vec::new();
    for service in &plan.services {
        let Some(id) = running.get(&service.name) else {
            out.push(ServiceDiff::new(&service.name, "create", service.image()));
            continue;
        };
        let current = engine.docker.inspect_service(id, None).await?;
        let mut actual = current.spec.as_ref().map(engine_json).unwrap_or_default();
        name_networks(&mut actual, &network_names);
        let mut changes = Vec::new();
        differences("", &engine_json(&service.spec), &actual, &mut changes);
        // References carry ids the plan cannot know, and the deployment label
        // names a deployment, not a desired state.
        let deployment_label = format!("/Labels/{DEPLOYMENT_LABEL}");
        changes.retain(|path| {
            !path.ends_with("/ConfigID")
                && !path.ends_with("/SecretID")
                && *path != deployment_label
        });
        let action = if changes.is_empty() {
            "unchanged"
        } else {
            "update"
        };
        out.push(ServiceDiff {
            changes,
            ..ServiceDiff::new(&service.name, action, service.image())
        });
    }
    let planned: BTreeMap<&str, ()> = plan
        .services
        .iter()
        .map(|s| (s.name.as_str(), ()))
        .collect();
    for name in running.keys() {
        if !planned.contains_key(name.as_str()) {
            let current = engine.docker.inspect_service(&running[name], None).await?;
            let image = current
                .spec
                .and_then(|spec| spec.task_template?.container_spec?.image);
            out.push(ServiceDiff::new(name, "remove", image.as_deref()));
        }
    }
    Ok(out)
}

fn name_networks(spec: &mut Value, names: &HashMap<String, String>) {
    for pointer in ["/TaskTemplate/Networks", "/Networks"] {
        if let Some(Value::Array(list)) = spec.pointer_mut(pointer) {
            for network in list {
                if let Some(Value::String(target)) = network.get_mut("Target") {
                    if let Some(name) = names.get(target.as_str()) {
                        *target = name.clone();
                    }
                }
            }
        }
    }
}

/// Collects the paths under `path` where `planned` sets a value `actual` lacks
/// or holds differently.
fn differences(path: &str, planned: &Value, actual: &Value, out: &mut Vec<String>) {
    match (planned, actual) {
        (Value::Object(p), Value::Object(a)) => {
            for (key, value) in p {
                match a.get(key) {
                    Some(other) => differences(&format!("{path}/{key}"), value, other, out),
                    None if is_empty(value) => {}
                    None => out.push(format!("{path}/{key}")),
                }
            }
        }
        (Value::Array(p), Value::Array(a)) if p.len() == a.len() => {
            for (i, (value, other)) in p.iter().zip(a).enumerate() {
                differences(&format!("{path}/{i}"), value, other, out);
            }
        }
        (p, a) if p == a => {}
        _ => out.push(if path.is_empty() {
            "/".into()
        } else {
            path.to_owned()
        }),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::differences;

    #[test]
    fn only_planned_fields_are_compared() {
        let planned =
            json!({"Name": "s_web", "Mode": {"Replicated": {"Replicas": 2}}, "Labels": {}});
        let actual = json!({"Name": "s_web", "Mode": {"Replicated": {"Replicas": 3}}, "UpdateConfig": {"Parallelism": 1}});
        let mut out = Vec::new();
        differences("", &planned, &actual, &mut out);
        assert_eq!(out, vec!["/Mode/Replicated/Replicas".to_owned()]);
    }
}
