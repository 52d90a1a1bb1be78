//! What a stack runs, task by task and node by node: for each of its
//! services (task jobs aside), the replicas it asks for and every task the
//! swarm wants running, with its node's host name, the image digest its spec
//! pins and its state.

use std::collections::HashMap;

use bollard::models::{Service, Task};
use bollard::query_parameters::{ListNodesOptions, ListServicesOptions, ListTasksOptions};

use super::{filter, Engine, EngineError};
use crate::plan::{STACK_NAMESPACE_LABEL, TASK_LABEL};

/// One service as the swarm runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedService {
    pub name: String,
    /// `None` for a global service.
    pub replicas: Option<u64>,
    pub tasks: Vec<ObservedTask>,
}

/// One task the swarm wants running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedTask {
    pub node: Option<String>,
    pub digest: Option<String>,
    /// `running`, `pending`, `preparing`, `failed`, … as the engine says.
    pub state: String,
    pub error: Option<String>,
}

/// The stack the services named `names` belong to: the namespace label of
/// the first of them that exists.
pub async fn stack_of(engine: &Engine, names: &[String]) -> Result<Option<String>, EngineError> {
    for name in names {
        let found = engine
            .docker
            .list_services(Some(ListServicesOptions {
                filters: Some(filter("name", name.clone())),
                ..Default::default()
            }))
            .await?;
        let stack = found
            .into_iter()
            .filter(|s| spec_name(s) == Some(name.as_str()))
            .find_map(|s| s.spec?.labels?.remove(STACK_NAMESPACE_LABEL));
        if stack.is_some() {
            return Ok(stack);
        }
    }
    Ok(None)
}

fn spec_name(service: &Service) -> Option<&str> {
    service.spec.as_ref()?.name.as_deref()
}

/// Every service of `stack` but its task jobs, as it runs now, by name.
pub async fn stack(engine: &Engine, stack: &str) -> Result<Vec<ObservedService>, EngineError> {
    let services = engine
        .docker
        .list_services(Some(ListServicesOptions {
            filters: Some(filter("label", format!("{STACK_NAMESPACE_LABEL}={stack}"))),
            ..Default::default()
        }))
        .await?;
    let hosts: HashMap<String, String> = engine
        .docker
        .list_nodes(None::<ListNodesOptions>)
        .await?
        .into_iter()
        .filter_map(|n| Some((n.id?, n.description?.hostname?)))
        .collect();
    let mut observed = Vec::new();
    for service in services {
        let Some(spec) = &service.spec else { continue };
        if spec
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(TASK_LABEL))
        {
            continue;
        }
        let (Some(id), Some(name)) = (service.id.clone(), spec.name.clone()) else {
            continue;
        };
        let replicas = spec
            .mode
            .as_ref()
            .and_then(|m| m.replicated.as_ref())
            .map(|r| r.replicas.unwrap_or(1).max(0) as u64);
        let mut filters = filter("service", id);
        filters.insert("desired-state".into(), vec!["running".into()]);
        let tasks = engine
            .docker
            .list_tasks(Some(ListTasksOptions {
                filters: Some(filters),
            }))
            .await?;
        let mut tasks: Vec<ObservedTask> = tasks.iter().map(|t| task(t, &hosts)).collect();
        tasks.sort_by(|a, b| (&a.node, &a.state).cmp(&(&b.node, &b.state)));
        observed.push(ObservedService {
            name,
            replicas,
            tasks,
        });
    }
    observed.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(observed)
}

fn task(task: &Task, hosts: &HashMap<String, String>) -> ObservedTask {
    let status = task.status.clone().unwrap_or_default();
    let image = task
        .spec
        .as_ref()
        .and_then(|s| s.container_spec.as_ref())
        .and_then(|c| c.image.as_deref());
    ObservedTask {
        node: task
            .node_id
            .as_ref()
            .map(|id| hosts.get(id).cloned().unwrap_or_else(|| id.clone())),
        digest: image
            .and_then(|i| i.split_once('@'))
            .map(|(_, digest)| digest.to_owned()),
        state: status
            .state
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".into()),
        error: status.err.filter(|e| !e.is_empty()),
    }
}
