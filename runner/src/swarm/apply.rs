//! Making a plan real: networks, then configs and secrets, then services —
//! created, or updated with their current version — and the stack's services
//! that the plan no longer has removed.

use std::collections::{BTreeSet, HashMap};

use base64::Engine as _;
use bollard::models::{ConfigSpec, NetworkCreateRequest, SecretSpec, ServiceSpec};
use bollard::query_parameters::{
    InspectNetworkOptions, ListConfigsOptions, ListSecretsOptions, ListServicesOptions,
    UpdateServiceOptions,
};

use super::{filter, is_not_found, Engine, EngineError};
use crate::plan::{DataPlan, Plan, STACK_NAMESPACE_LABEL};

/// What applying did to one service.
#[derive(Clone, Debug)]
pub struct Change {
    pub name: String,
    pub id: String,
    pub kind: ChangeKind,
    /// The spec before this deployment, as the engine had it (updates only).
    pub before: Option<ServiceSpec>,
    /// `UpdateStatus.StartedAt` before this deployment, to tell its own update
    /// from an earlier one.
    pub update_started_before: Option<String>,
    /// When the engine recorded this deployment's change of the service: tasks
    /// that failed before it are history, not this rollout's failures.
    pub since: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    /// Updated in a way that replaces tasks.
    Updated,
    /// Updated without touching tasks (same spec, or only service labels).
    Unchanged,
    Removed,
}

#[derive(Clone, Debug, Default)]
pub struct Applied {
    pub changes: Vec<Change>,
    pub networks_created: Vec<String>,
    pub configs_created: Vec<String>,
    pub secrets_created: Vec<String>,
}

/// How often an update that lost a race is retried.
const OUT_OF_SEQUENCE_RETRIES: usize = 5;

pub async fn apply(engine: &Engine, plan: &Plan) -> Result<Applied, EngineError> {
    let docker = &engine.docker;
    let mut applied = Applied::default();

    for network in &plan.networks {
        let existing = docker
            .inspect_network(&network.name, None::<InspectNetworkOptions>)
            .await;
        match existing {
            Ok(_) => {}
            Err(err) if is_not_found(&err) => {
                if network.external {
                    return Err(EngineError::Api(format!(
                        "network {} is declared external but does not exist; create it first",
                        network.name
                    )));
                }
                docker
                    .create_network(NetworkCreateRequest {
                        name: network.name.clone(),
                        driver: Some(network.driver.clone()),
                        attachable: Some(network.attachable),
                        internal: Some(network.internal),
                        labels: Some(network.labels.clone().into_iter().collect()),
                        options: Some(network.options.clone().into_iter().collect()),
                        ..Default::default()
                    })
                    .await
                    .map_err(|err| {
                        EngineError::Api(format!(
                            "creating network {}: {}",
                            network.name,
                            super::engine_message(&err)
                        ))
                    })?;
                applied.networks_created.push(network.name.clone());
            }
            Err(err) => return Err(err.into()),
        }
    }

    let configs: BTreeSet<String> = docker
        .list_configs(None::<ListConfigsOptions>)
        .await?
        .into_iter()
        .filter_map(|c| c.spec.and_then(|s| s.name))
        .collect();
    for config in &plan.configs {
        if ensure_data(config, &configs, "config")? {
            docker
                .create_config(ConfigSpec {
                    name: Some(config.name.clone()),
                    labels: Some(config.labels.clone().into_iter().collect()),
                    data: Some(base64::engine::general_purpose::STANDARD.encode(&config.data)),
                    ..Default::default()
                })
                .await?;
            applied.configs_created.push(config.name.clone());
        }
    }
    let secrets: BTreeSet<String> = docker
        .list_secrets(None::<ListSecretsOptions>)
        .await?
        .into_iter()
        .filter_map(|s| s.spec.and_then(|s| s.name))
        .collect();
    for secret in &plan.secrets {
        if ensure_data(secret, &secrets, "secret")? {
            docker
                .create_secret(SecretSpec {
                    name: Some(secret.name.clone()),
                    labels: Some(secret.labels.clone().into_iter().collect()),
                    data: Some(base64::engine::general_purpose::STANDARD.encode(&secret.data)),
                    ..Default::default()
                })
                .await?;
            applied.secrets_created.push(secret.name.clone());
        }
    }

    // Services name their configs and secrets; the engine wants their ids too.
    let config_ids = ids_by_name(
        docker
            .list_configs(None::<ListConfigsOptions>)
            .await?
            .into_iter()
            .map(|c| (c.spec.and_then(|s| s.name), c.id)),
    );
    let secret_ids = ids_by_name(
        docker
            .list_secrets(None::<ListSecretsOptions>)
            .await?
            .into_iter()
            .map(|s| (s.spec.and_then(|s| s.name), s.id)),
    );

    let existing = stack_services(engine, &plan.stack).await?;
    for service in &plan.services {
        let mut spec = service.spec.clone();
        resolve_references(&mut spec, &config_ids, &secret_ids)?;
        let change = match existing.get(&service.name) {
            None => {
                let created = docker.create_service(spec, None).await.map_err(|err| {
                    EngineError::Api(format!(
                        "creating service {}: {}",
                        service.name,
                        super::engine_message(&err)
                    ))
                })?;
                let id = created.id.unwrap_or_default();
                let since = docker
                    .inspect_service(&id, None)
                    .await
                    .ok()
                    .and_then(|s| s.created_at);
                Change {
                    name: service.name.clone(),
                    id,
                    kind: ChangeKind::Created,
                    before: None,
                    update_started_before: None,
                    since,
                }
            }
            Some(id) => update(engine, id, &service.name, &spec).await?,
        };
        applied.changes.push(change);
    }

    // Services the stack no longer has are removed only once the rest has
    // converged (`remove_dropped`), so a rollback has nothing to re-create.
    let planned: BTreeSet<&str> = plan.services.iter().map(|s| s.name.as_str()).collect();
    for (name, id) in &existing {
        if !planned.contains(name.as_str()) {
            applied.changes.push(Change {
                name: name.clone(),
                id: id.clone(),
                kind: ChangeKind::Removed,
                before: None,
                update_started_before: None,
                since: None,
            });
        }
    }
    Ok(applied)
}

fn ids_by_name(
    items: impl Iterator<Item = (Option<String>, Option<String>)>,
) -> HashMap<String, String> {
    items.filter_map(|(name, id)| Some((name?, id?))).collect()
}

/// Fills in the ids of the configs and secrets a service names.
fn resolve_references(
    spec: &mut ServiceSpec,
    configs: &HashMap<String, String>,
    secrets: &HashMap<String, String>,
) -> Result<(), EngineError> {
    let Some(container) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
    else {
        return Ok(());
    };
    for config in container.configs.iter_mut().flatten() {
        if let Some(name) = &config.config_name {
            let id = configs
                .get(name)
                .ok_or_else(|| EngineError::Api(format!("config {name} does not exist")))?;
            config.config_id = Some(id.clone());
        }
    }
    for secret in container.secrets.iter_mut().flatten() {
        if let Some(name) = &secret.secret_name {
            let id = secrets
                .get(name)
                .ok_or_else(|| EngineError::Api(format!("secret {name} does not exist")))?;
            secret.secret_id = Some(id.clone());
        }
    }
    Ok(())
}

/// Whether a config or secret version must be created. Versions are named
/// by their content, so one that exists already holds the same bytes.
fn ensure_data(
    data: &DataPlan,
    existing: &BTreeSet<String>,
    kind: &str,
) -> Result<bool, EngineError> {
    match (existing.contains(&data.name), data.external) {
        (true, _) => Ok(false),
        (false, true) => Err(EngineError::Api(format!(
            "{kind} {} is declared external but does not exist; create it first",
            data.name
        ))),
        (false, false) => Ok(true),
    }
}

/// The services of a stack: name → id.
pub async fn stack_services(
    engine: &Engine,
    stack: &str,
) -> Result<HashMap<String, String>, EngineError> {
    let services = engine
        .docker
        .list_services(Some(ListServicesOptions {
            filters: Some(filter("label", format!("{STACK_NAMESPACE_LABEL}={stack}"))),
            ..Default::default()
        }))
        .await?;
    Ok(services
        .into_iter()
        .filter_map(|s| Some((s.spec?.name?, s.id?)))
        .collect())
}

async fn update(
    engine: &Engine,
    id: &str,
    name: &str,
    spec: &ServiceSpec,
) -> Result<Change, EngineError> {
    let docker = &engine.docker;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = docker.inspect_service(id, None).await?;
        let version = current.version.and_then(|v| v.index).unwrap_or_default();
        let before = current.spec.clone().unwrap_or_default();
        let mut next = spec.clone();
        // Keep the current ForceUpdate: a different value restarts every task.
        if let (Some(template), Some(current_template)) =
            (next.task_template.as_mut(), before.task_template.as_ref())
        {
            template.force_update = current_template.force_update;
        }
        let options = UpdateServiceOptions {
            version: version as i32,
            ..Default::default()
        };
        match docker.update_service(id, next, options, None).await {
            Ok(_) => {
                let after = docker.inspect_service(id, None).await?;
                let after_spec = after.spec.unwrap_or_default();
                let tasks_change = after_spec.task_template != before.task_template
                    || after_spec.mode != before.mode;
                return Ok(Change {
                    name: name.to_owned(),
                    id: id.to_owned(),
                    kind: if tasks_change {
                        ChangeKind::Updated
                    } else {
                        ChangeKind::Unchanged
                    },
                    before: Some(before),
                    update_started_before: current.update_status.and_then(|u| u.started_at),
                    since: after.updated_at,
                });
            }
            Err(err)
                if super::engine_message(&err).contains("update out of sequence")
                    && attempt < OUT_OF_SEQUENCE_RETRIES =>
            {
                tracing::debug!(service = name, attempt, "update out of sequence; retrying");
                continue;
            }
            Err(err) => {
                return Err(EngineError::Api(format!(
                    "updating service {name}: {}",
                    super::engine_message(&err)
                )))
            }
        }
    }
}

/// Removes the services the plan no longer has (after a successful rollout).
pub async fn remove_dropped(engine: &Engine, applied: &Applied) -> Result<(), EngineError> {
    for change in applied
        .changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Removed)
    {
        if let Err(err) = engine.docker.delete_service(&change.id).await {
            if !is_not_found(&err) {
                return Err(err.into());
            }
        }
    }
    Ok(())
}

/// Removes the stack's config and secret versions that no service uses any
/// more (run after a successful deployment).
pub async fn prune_data(engine: &Engine, plan: &Plan) -> Result<(), EngineError> {
    let docker = &engine.docker;
    let label = format!("{STACK_NAMESPACE_LABEL}={}", plan.stack);
    let services = docker
        .list_services(Some(ListServicesOptions {
            filters: Some(filter("label", label.clone())),
            ..Default::default()
        }))
        .await?;
    let mut used = BTreeSet::new();
    for service in services {
        let container = service
            .spec
            .and_then(|s| s.task_template)
            .and_then(|t| t.container_spec);
        if let Some(container) = container {
            for config in container.configs.unwrap_or_default() {
                used.extend(config.config_id);
            }
            for secret in container.secrets.unwrap_or_default() {
                used.extend(secret.secret_id);
            }
        }
    }
    let configs = docker
        .list_configs(Some(ListConfigsOptions {
            filters: Some(filter("label", label.clone())),
        }))
        .await?;
    for config in configs {
        if let Some(id) = config.id {
            if !used.contains(&id) {
                let _ = docker.delete_config(&id).await;
            }
        }
    }
    let secrets = docker
        .list_secrets(Some(ListSecretsOptions {
            filters: Some(filter("label", label)),
        }))
        .await?;
    for secret in secrets {
        if let Some(id) = secret.id {
            if !used.contains(&id) {
                let _ = docker.delete_secret(&id).await;
            }
        }
    }
    Ok(())
}
