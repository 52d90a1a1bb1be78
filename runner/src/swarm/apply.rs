//! Making a plan real: networks, then configs and secrets, then services —
//! created, or updated with their current version — and the stack's services
//! that the plan no longer has removed.
//!
//! Before its first write a deployment takes a [`Baseline`]: every service of
//! the stack as it was. What applying did is recorded in [`Applied`] as it
//! goes, so that a failure midway, a cancel, or a runner restarted mid-rollout
//! can put back exactly what this deployment changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use bollard::models::{
    ConfigSpec, NetworkCreateRequest, SecretSpec, Service, ServiceSpec,
    ServiceUpdateStatusStateEnum as UpdateState,
};
use bollard::query_parameters::{
    InspectNetworkOptions, ListConfigsOptions, ListSecretsOptions, ListServicesOptions,
    UpdateServiceOptions,
};
use serde::{Deserialize, Serialize};

use super::{filter, is_not_found, Engine, EngineError, Fence};
use crate::plan::{DataPlan, Plan, APPLICATION_LABEL, ENVIRONMENT_LABEL, STACK_NAMESPACE_LABEL};
use crate::registry::Credential;

/// What applying did to one service.
#[derive(Clone, Debug, Serialize, Deserialize)]
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    Created,
    /// Updated in a way that replaces tasks.
    Updated,
    /// Updated without touching tasks (same spec, or only service labels).
    Unchanged,
    Removed,
}

/// What a deployment has done to the swarm so far.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Applied {
    pub changes: Vec<Change>,
    pub networks_created: Vec<String>,
    pub configs_created: Vec<String>,
    pub secrets_created: Vec<String>,
}

impl Applied {
    /// Whether anything on the swarm was changed.
    pub fn touched_anything(&self) -> bool {
        !self.networks_created.is_empty()
            || !self.configs_created.is_empty()
            || !self.secrets_created.is_empty()
            || self.changes.iter().any(|c| c.kind != ChangeKind::Removed)
    }

    fn change_of(&self, name: &str) -> Option<&Change> {
        self.changes.iter().find(|c| c.name == name)
    }
}

/// A service as it was before the deployment changed anything.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Before {
    pub id: String,
    pub spec: ServiceSpec,
    pub update_started_at: Option<String>,
}

/// The services of a stack before a deployment's first write, by name.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Baseline {
    pub stack: String,
    pub services: BTreeMap<String, Before>,
}

/// Reads every service of `stack` as it is now.
pub async fn snapshot(engine: &Engine, stack: &str) -> Result<Baseline, EngineError> {
    let services = engine
        .docker
        .list_services(Some(ListServicesOptions {
            filters: Some(filter("label", format!("{STACK_NAMESPACE_LABEL}={stack}"))),
            ..Default::default()
        }))
        .await?;
    let services = services
        .into_iter()
        .filter_map(|s| {
            let spec = s.spec?;
            let before = Before {
                id: s.id?,
                update_started_at: s.update_status.and_then(|u| u.started_at),
                spec: spec.clone(),
            };
            Some((spec.name?, before))
        })
        .collect();
    Ok(Baseline {
        stack: stack.to_owned(),
        services,
    })
}

impl Baseline {
    /// Who else owns the stack, if anyone: a service that carries another
    /// application's or environment's Slipway labels. A service without them
    /// (made by `docker stack deploy`) belongs to nobody and is adopted.
    pub fn owned_by_other(&self, application: &str, environment: &str) -> Option<String> {
        self.services.iter().find_map(|(name, before)| {
            let labels = before.spec.labels.as_ref()?;
            let app = labels.get(APPLICATION_LABEL);
            let env = labels.get(ENVIRONMENT_LABEL);
            let other = app.is_some_and(|a| a != application) || env.is_some_and(|e| e != environment);
            other.then(|| {
                format!(
                    "stack {} belongs to {} {}: its service {name} carries {APPLICATION_LABEL}={} and \
                     {ENVIRONMENT_LABEL}={}; give this environment a stack of its own with `stack:` in the spec",
                    self.stack,
                    app.map(String::as_str).unwrap_or("?"),
                    env.map(String::as_str).unwrap_or("?"),
                    app.map(String::as_str).unwrap_or("-"),
                    env.map(String::as_str).unwrap_or("-"),
                )
            })
        })
    }
}

/// How often an update that lost a race is retried.
const OUT_OF_SEQUENCE_RETRIES: usize = 5;

/// Makes `plan` real, recording into `applied` what it changes and calling
/// `record` after every change so the record survives a restart. Asks
/// `fence` before every write. On an error, `applied` holds what was done
/// before it, for the caller to roll back.
///
/// A service `applied` already records (a resumed deployment) is applied
/// again — the engine does nothing for a spec it has — and keeps its record.
pub async fn apply(
    engine: &Engine,
    plan: &Plan,
    baseline: &Baseline,
    fence: &dyn Fence,
    applied: &mut Applied,
    record: &mut (dyn FnMut(&Applied) -> Result<(), EngineError> + Send),
) -> Result<(), EngineError> {
    apply_data(engine, plan, fence, applied, record).await?;
    let docker = &engine.docker;
    // Services name their configs and secrets; the engine wants their ids too.
    let (config_ids, secret_ids) = data_ids(engine).await?;

    let existing = stack_services(engine, &plan.stack).await?;
    for service in &plan.services {
        let mut spec = service.spec.clone();
        resolve_references(&mut spec, &config_ids, &secret_ids)?;
        let before = baseline.services.get(&service.name);
        // Sent with every create and update, as `--with-registry-auth` does,
        // so that every node can pull.
        let credentials = service.credentials.as_ref().map(Credential::docker);
        let change = match existing.get(&service.name) {
            None => {
                fence.check()?;
                let created = docker
                    .create_service(spec, credentials)
                    .await
                    .map_err(|err| {
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
            Some(id) => match applied.change_of(&service.name).cloned() {
                // A resumed deployment whose update swarm has rolled back (a
                // runner that updated itself to an image that fails, say)
                // must not make it again: converging judges the rollback.
                Some(recorded)
                    if rolled_back_by_swarm(
                        &docker.inspect_service(id, None).await?,
                        &recorded,
                    ) =>
                {
                    recorded
                }
                recorded => {
                    let updated =
                        update(engine, fence, id, &service.name, &spec, before, credentials)
                            .await?;
                    // The record of a resumed deployment knows better when it changed.
                    recorded.unwrap_or(updated)
                }
            },
        };
        applied.changes.retain(|c| c.name != change.name);
        applied.changes.push(change);
        record(applied)?;
    }

    // Services the stack no longer has are removed only once the rest has
    // converged (`remove_dropped`), so a rollback has nothing to re-create.
    let planned: BTreeSet<&str> = plan.services.iter().map(|s| s.name.as_str()).collect();
    for (name, id) in &existing {
        if !planned.contains(name.as_str()) && applied.change_of(name).is_none() {
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
    record(applied)?;
    Ok(())
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

/// Makes the plan's networks, configs and secrets real: those it declares
/// external must exist; the others are created when missing, each recorded
/// in `applied` (and `record` called) so that an undo removes them.
pub async fn apply_data(
    engine: &Engine,
    plan: &Plan,
    fence: &dyn Fence,
    applied: &mut Applied,
    record: &mut (dyn FnMut(&Applied) -> Result<(), EngineError> + Send),
) -> Result<(), EngineError> {
    let docker = &engine.docker;
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
                fence.check()?;
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
                record(applied)?;
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
            fence.check()?;
            docker
                .create_config(ConfigSpec {
                    name: Some(config.name.clone()),
                    labels: Some(config.labels.clone().into_iter().collect()),
                    data: Some(base64::engine::general_purpose::STANDARD.encode(&config.data)),
                    ..Default::default()
                })
                .await
                .map_err(|err| {
                    EngineError::Api(format!(
                        "creating config {}: {}",
                        config.name,
                        super::engine_message(&err)
                    ))
                })?;
            applied.configs_created.push(config.name.clone());
            record(applied)?;
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
            fence.check()?;
            docker
                .create_secret(SecretSpec {
                    name: Some(secret.name.clone()),
                    labels: Some(secret.labels.clone().into_iter().collect()),
                    data: Some(base64::engine::general_purpose::STANDARD.encode(&secret.data)),
                    ..Default::default()
                })
                .await
                .map_err(|err| {
                    EngineError::Api(format!(
                        "creating secret {}: {}",
                        secret.name,
                        super::engine_message(&err)
                    ))
                })?;
            applied.secrets_created.push(secret.name.clone());
            record(applied)?;
        }
    }
    Ok(())
}

/// The ids of every config and secret, by name.
async fn data_ids(
    engine: &Engine,
) -> Result<(HashMap<String, String>, HashMap<String, String>), EngineError> {
    let docker = &engine.docker;
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
    Ok((config_ids, secret_ids))
}

/// Gives the configs and secrets `spec` names their ids, as the engine
/// wants them (a task's job, made after the stack's data exists).
pub async fn with_data_ids(engine: &Engine, spec: &mut ServiceSpec) -> Result<(), EngineError> {
    let (config_ids, secret_ids) = data_ids(engine).await?;
    resolve_references(spec, &config_ids, &secret_ids)
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

/// Updates service `id` to `spec`. What it was before is `baseline`'s
/// record when there is one (a resumed deployment finds its own spec on the
/// engine), else what the engine has now.
async fn update(
    engine: &Engine,
    fence: &dyn Fence,
    id: &str,
    name: &str,
    spec: &ServiceSpec,
    baseline: Option<&Before>,
    credentials: Option<DockerCredentials>,
) -> Result<Change, EngineError> {
    let docker = &engine.docker;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = docker.inspect_service(id, None).await?;
        let version = current.version.and_then(|v| v.index).unwrap_or_default();
        let now = current.spec.clone().unwrap_or_default();
        let (before, update_started_before) = match baseline {
            Some(b) => (b.spec.clone(), b.update_started_at.clone()),
            None => (
                now.clone(),
                current.update_status.and_then(|u| u.started_at),
            ),
        };
        let mut next = spec.clone();
        // Keep the current ForceUpdate: a different value restarts every task.
        if let (Some(template), Some(current_template)) =
            (next.task_template.as_mut(), now.task_template.as_ref())
        {
            template.force_update = current_template.force_update;
        }
        let options = UpdateServiceOptions {
            version: version as i32,
            ..Default::default()
        };
        fence.check()?;
        match docker
            .update_service(id, next, options, credentials.clone())
            .await
        {
            Ok(_) => {
                let after = docker.inspect_service(id, None).await?;
                let after_spec = after.spec.unwrap_or_default();
                let tasks_change = without_force(&after_spec) != without_force(&before)
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
                    update_started_before,
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

/// Whether swarm rolls back, or has rolled back, the update `change` made
/// (`update_config.failure_action: rollback`), rather than an earlier one.
pub(super) fn rolled_back_by_swarm(current: &Service, change: &Change) -> bool {
    let status = current.update_status.as_ref();
    matches!(
        status.and_then(|s| s.state),
        Some(UpdateState::ROLLBACK_COMPLETED | UpdateState::ROLLBACK_STARTED)
    ) && status.and_then(|s| s.started_at.clone()) != change.update_started_before
}

/// The task template of `spec`, with its `ForceUpdate` left out: the update
/// keeps the engine's value, which a spec from before may not have.
fn without_force(spec: &ServiceSpec) -> Option<bollard::models::TaskSpec> {
    spec.task_template.clone().map(|mut t| {
        t.force_update = None;
        t
    })
}

/// Removes the services the plan no longer has (after a successful rollout).
pub async fn remove_dropped(
    engine: &Engine,
    applied: &Applied,
    fence: &dyn Fence,
) -> Result<(), EngineError> {
    for change in applied
        .changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Removed)
    {
        fence.check()?;
        if let Err(err) = engine.docker.delete_service(&change.id).await {
            if !is_not_found(&err) {
                return Err(err.into());
            }
        }
    }
    Ok(())
}

/// Removes the stack's config and secret versions that no service uses any
/// more (run after a successful deployment, and after a rollback).
pub async fn prune_data(
    engine: &Engine,
    stack: &str,
    fence: &dyn Fence,
) -> Result<(), EngineError> {
    let docker = &engine.docker;
    let label = format!("{STACK_NAMESPACE_LABEL}={stack}");
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
                fence.check()?;
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
                fence.check()?;
                let _ = docker.delete_secret(&id).await;
            }
        }
    }
    Ok(())
}

/// Removes the networks a rolled-back deployment created, where no service
/// uses them any more (the engine refuses to remove one in use).
pub async fn remove_created_networks(
    engine: &Engine,
    applied: &Applied,
    fence: &dyn Fence,
) -> Result<(), EngineError> {
    for network in &applied.networks_created {
        fence.check()?;
        if let Err(err) = engine.docker.remove_network(network).await {
            if !is_not_found(&err) {
                tracing::debug!(network, error = %super::engine_message(&err), "network kept");
            }
        }
    }
    Ok(())
}
