//! Carrying out what a hook wants: finding the applications and environments
//! it means, creating their deployments through the API and tracking the ones
//! whose statuses go to GitHub. The same for every source.

use serde_json::Value;

use super::{
    is_auto_deploy, Answer, Application, BranchDeploy, Created, Hooks, NamedDeploy, Request,
    Wanted, Which,
};
use crate::error::HookError;
use crate::statuses::journal::GithubDeploymentSpec;

impl Hooks {
    /// Does what `wanted` (from a hook of `source`) asks, and says what it did.
    pub(crate) async fn carry_out(
        &self,
        source: &'static str,
        wanted: Wanted,
    ) -> Result<Answer, HookError> {
        let auto_deploy = is_auto_deploy(&wanted);
        match wanted {
            Wanted::Pong(message) => Ok(Answer::Pong { ok: true, message }),
            Wanted::Ignored(reason) => Ok(Answer::ignored(reason)),
            Wanted::Branch(push) => self.deploy_branch(source, push, auto_deploy).await,
            Wanted::Named(one) => self.deploy_named(source, one, auto_deploy).await,
        }
    }

    /// Deploys `push.sha` to every environment that auto-deploys its branch.
    async fn deploy_branch(
        &self,
        source: &'static str,
        push: BranchDeploy,
        auto_deploy: bool,
    ) -> Result<Answer, HookError> {
        let repo = &push.repository.shown;
        let applications = self.applications().await?;
        let apps = super::by_repository(&applications, &push.repository.names);
        if apps.is_empty() {
            return Err(super::no_application(repo));
        }
        let targets = super::tracking(&apps, &push.branch);
        if targets.is_empty() {
            let names: Vec<&str> = apps.iter().map(|app| app.name.as_str()).collect();
            return Ok(Answer::ignored(format!(
                "no environment of {} auto-deploys branch `{}`",
                names.join(", "),
                push.branch
            )));
        }
        let requests = targets
            .iter()
            .map(|(app, environment)| Request {
                application: app.name.clone(),
                environment: environment.clone(),
                ref_name: push.branch.clone(),
                sha: Some(push.sha.clone()),
                task: None,
                payload: None,
                external_id: Some(format!("{}:{environment}", push.key)),
                description: push.description.clone(),
                auto_deploy,
            })
            .collect();
        let (created, skipped) = self.create_all(requests).await?;
        if let (Some(statuses), Some(github_repo)) = (&self.statuses, &push.github_repo) {
            for deployment in &created {
                let spec = GithubDeploymentSpec {
                    ref_name: push.branch.clone(),
                    sha: push.sha.clone(),
                    environment: deployment.environment.clone(),
                    task: "deploy".into(),
                    description: push.description.clone(),
                };
                let id = deployment_id(deployment)?;
                statuses
                    .track_push(id, deployment.created_at, github_repo, spec)
                    .await
                    .map_err(journal_failed)?;
            }
        }
        tracing::info!(
            source,
            repo = %repo,
            branch = %push.branch,
            deployments = created.len(),
            skipped = skipped.len(),
            "hook deployed a branch"
        );
        Ok(Answer::Deployments {
            deployments: created,
            skipped,
        })
    }

    /// Deploys to the one environment `one` names.
    async fn deploy_named(
        &self,
        source: &'static str,
        one: NamedDeploy,
        auto_deploy: bool,
    ) -> Result<Answer, HookError> {
        if let Some((_, github_id)) = &one.github {
            if let Some(ours) = self
                .statuses
                .as_ref()
                .and_then(|statuses| statuses.created_by_slipway(*github_id))
            {
                return Ok(Answer::ignored(format!(
                    "GitHub deployment {github_id} was created by Slipway for deployment \
                     {ours}; it is not deployed again"
                )));
            }
        }
        let applications = self.applications().await?;
        let app = which(&applications, &one.application, &one.environment)?;
        let created = self
            .create(Request {
                application: app.name.clone(),
                environment: one.environment,
                ref_name: one.ref_name,
                sha: one.sha,
                task: one.task,
                payload: one.payload,
                external_id: one.external_id,
                description: one.description,
                auto_deploy,
            })
            .await?;
        if let (Some(statuses), Some((repo, github_id))) = (&self.statuses, &one.github) {
            statuses
                .track_event(
                    deployment_id(&created)?,
                    created.created_at,
                    repo,
                    *github_id,
                )
                .await
                .map_err(journal_failed)?;
        }
        tracing::info!(
            source,
            deployment = %created.name,
            environment = %created.environment,
            github_deployment = one.github.as_ref().map(|(_, id)| *id),
            "hook deployed an environment"
        );
        Ok(Answer::Deployments {
            deployments: vec![created],
            skipped: Vec::new(),
        })
    }
}

/// The application `which` means, which must have `environment`.
fn which<'a>(
    applications: &'a [Application],
    which: &Which,
    environment: &str,
) -> Result<&'a Application, HookError> {
    match which {
        Which::Named(name) => {
            let Some(app) = applications.iter().find(|app| app.name == *name) else {
                return Err(HookError::Unmatched(format!(
                    "no application is named `{name}`"
                )));
            };
            if !app.environments.iter().any(|env| env.name == environment) {
                let names: Vec<&str> = app.environments.iter().map(|e| e.name.as_str()).collect();
                return Err(HookError::Unmatched(format!(
                    "application `{}` has no environment `{environment}` (it has {})",
                    app.name,
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                )));
            }
            Ok(app)
        }
        Which::OfRepository {
            repository,
            preferred,
        } => {
            let repo = &repository.shown;
            let apps = super::by_repository(applications, &repository.names);
            if apps.is_empty() {
                return Err(super::no_application(repo));
            }
            let apps = super::with_environment(&apps, environment, repo)?;
            if let [app] = apps.as_slice() {
                return Ok(app);
            }
            // One repository, several applications (a monorepo): the sender says which.
            if let Some(app) = preferred
                .as_deref()
                .and_then(|name| apps.iter().find(|app| app.name == name))
            {
                return Ok(app);
            }
            let names: Vec<&str> = apps.iter().map(|app| app.name.as_str()).collect();
            Err(HookError::Unmatched(format!(
                "the repository {repo} is deployed by several applications with an \
                 environment `{environment}` ({}): name one in the deployment's payload as \
                 {{\"application\": \"{}\"}}",
                names.join(", "),
                names[0]
            )))
        }
    }
}

/// The application a monorepo's GitHub deployment names in its payload.
pub(crate) fn preferred_application(payload: Option<&Value>) -> Option<String> {
    payload?
        .get("application")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn deployment_id(created: &Created) -> Result<i64, HookError> {
    created.id.parse::<i64>().map_err(|_| {
        tracing::error!(id = %created.id, "the API answered a deployment id that is not a number");
        HookError::Internal
    })
}

fn journal_failed(err: crate::statuses::journal::JournalError) -> HookError {
    tracing::error!(%err, "cannot record a deployment in the status journal");
    HookError::Internal
}
