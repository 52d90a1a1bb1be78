//! Compose → Engine API objects, following `docker stack deploy`'s
//! conventions (docker/cli `cli/compose/convert`) so that stacks deployed by
//! Slipway and by the CLI look the same to `docker stack ls/ps/services` and
//! an operator can switch either way without restarting tasks:
//!
//! - objects are named `<stack>_<name>` and carry
//!   `com.docker.stack.namespace=<stack>`;
//! - services without networks join `<stack>_default`;
//! - lists the engine compares (env, ports, secrets, configs, networks,
//!   ulimits) are sorted so that reordering a file does not redeploy.
//!
//! Where Slipway deliberately differs, the module that does it says so.

use std::collections::{BTreeMap, HashMap};

use crate::plan::{
    Plan, APPLICATION_LABEL, DEPLOYMENT_LABEL, ENVIRONMENT_LABEL, STACK_NAMESPACE_LABEL,
};

use super::compose::ComposeProject;
use super::deploy_file::DeploySpec;
use super::scalar::Text;
use super::yaml::{KeyPath, PathError};
use super::{Context, Files, SpecError};

pub mod mounts;
pub mod networks;
pub mod objects;
pub mod ports;
pub mod service;
pub mod task;

/// What every conversion step needs to know about the deployment.
pub struct Scope<'a> {
    pub stack: &'a str,
    pub ctx: &'a Context,
    pub files: &'a dyn Files,
    /// Interpolation variables, also used to resolve bare `environment`
    /// names and `environment:` secrets.
    pub variables: &'a BTreeMap<String, String>,
    /// The first Compose file: relative paths (`env_file`, `file:`) are
    /// resolved against its directory, as the Docker CLI does.
    pub base_file: &'a str,
}

impl Scope<'_> {
    /// `<stack>_<name>`.
    pub fn scoped(&self, name: &str) -> String {
        format!("{}_{}", self.stack, name)
    }

    /// Labels of a service's containers: the stack namespace added, as
    /// `docker stack deploy` does, and nothing of Slipway's, so a stack that
    /// `docker stack deploy` made is taken over without restarting a task.
    pub fn container_labels(
        &self,
        labels: &BTreeMap<String, Option<Text>>,
    ) -> HashMap<String, String> {
        let mut out = plain_labels(labels);
        out.insert(STACK_NAMESPACE_LABEL.into(), self.stack.to_owned());
        out
    }

    /// Labels of the stack's networks, configs and secrets: the stack
    /// namespace, and Slipway's application and environment labels, added.
    pub fn object_labels(
        &self,
        labels: &BTreeMap<String, Option<Text>>,
    ) -> HashMap<String, String> {
        let mut out = plain_labels(labels);
        out.insert(STACK_NAMESPACE_LABEL.into(), self.stack.to_owned());
        out.insert(APPLICATION_LABEL.into(), self.ctx.application.clone());
        out.insert(ENVIRONMENT_LABEL.into(), self.ctx.environment.clone());
        out
    }

    /// Labels of the service object itself: also the deployment, which
    /// changes on every deployment and must therefore stay off anything in
    /// the task template.
    pub fn service_labels(
        &self,
        labels: &BTreeMap<String, Option<Text>>,
    ) -> HashMap<String, String> {
        let mut out = self.object_labels(labels);
        out.insert(DEPLOYMENT_LABEL.into(), self.ctx.deployment.clone());
        out
    }
}

/// A conversion error: at a key of the Compose files, or already placed
/// (an `env_file` line, a missing `file:`).
#[derive(Debug)]
pub enum ConvertError {
    At(PathError),
    Spec(SpecError),
}

impl From<PathError> for ConvertError {
    fn from(e: PathError) -> Self {
        ConvertError::At(e)
    }
}

pub(crate) fn plain_labels(labels: &BTreeMap<String, Option<Text>>) -> HashMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_ref().map(|t| t.0.clone()).unwrap_or_default(),
            )
        })
        .collect()
}

/// Turns the merged Compose project into the plan for `spec`'s environment.
pub fn plan(
    files: &dyn Files,
    spec: &DeploySpec,
    project: &ComposeProject,
    ctx: &Context,
) -> Result<Plan, SpecError> {
    let scope = Scope {
        stack: &spec.stack,
        ctx,
        files,
        variables: &spec.variables,
        base_file: spec.compose.first().map(String::as_str).unwrap_or(""),
    };
    let model = &project.model;
    let fail = |e: ConvertError| match e {
        ConvertError::At(e) => project.error(e),
        ConvertError::Spec(e) => e,
    };

    let mut warnings = spec.warnings.clone();
    warnings.extend(project.warnings.iter().cloned());

    let networks = networks::plan(&scope, model, &mut warnings).map_err(fail)?;
    let configs = objects::configs(&scope, model).map_err(fail)?;
    let secrets = objects::secrets(&scope, model).map_err(fail)?;

    let mut services = Vec::new();
    for (name, svc) in &model.services {
        let path = KeyPath::default().key("services").key(name);
        let refs = service::Refs {
            configs: &configs,
            secrets: &secrets,
        };
        let plan = service::convert(&scope, model, name, svc, &refs, &path, &mut warnings)
            .map_err(fail)?;
        services.push(plan);
    }
    let mut tasks = Vec::new();
    for task in &spec.tasks {
        let refs = service::Refs {
            configs: &configs,
            secrets: &secrets,
        };
        let plan = task::convert(
            &scope,
            model,
            task,
            &services,
            &networks,
            &refs,
            &mut warnings,
        )
        .map_err(|e| match e {
            // Task keys are of `slipway.yml`, not of the Compose files.
            ConvertError::At(e) => spec.source.error(e),
            ConvertError::Spec(e) => e,
        })?;
        tasks.push(plan);
    }

    Ok(Plan {
        stack: spec.stack.clone(),
        services,
        networks,
        configs,
        secrets,
        warnings,
        timeout: spec.timeout,
        rollback: spec.rollback,
        url: spec.url.clone(),
        resolve_image: spec.resolve_image,
        with_registry_auth: spec.with_registry_auth,
        restore: None,
        watch: spec.watch.clone(),
        tasks,
    })
}
