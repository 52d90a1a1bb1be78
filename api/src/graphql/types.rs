//! The object types of the schema. Each wraps what the domain modules return.

use std::sync::Arc;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Json, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::enums::{DeploymentPhase, DeploymentStatus, PlanStatus, QueuePolicy};
use crate::applications;
use crate::auth::{roles, Role, RoleGuard};
use crate::commits;
use crate::db::entities::{application, deployment, environment, log_line, runner};
use crate::deployments::{self, Filter};
use crate::error::{ApiError, ApiResult};
use crate::logs;
use crate::plans::PlanView;
use crate::releases;
use crate::repository;
use crate::state::AppState;
use crate::view::{DeploymentView, ServiceImage};

pub(crate) fn state<'a>(ctx: &'a Context<'_>) -> &'a AppState {
    ctx.data_unchecked::<AppState>()
}

/// Parses a deployment `ID`.
pub(crate) fn deployment_id(id: &ID) -> ApiResult<i64> {
    id.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::BadInput(format!(
            "{} is not a deployment id",
            crate::error::quote(id.as_str())
        ))
    })
}

/// Parses a plan `ID`.
pub(crate) fn plan_id(id: &ID) -> ApiResult<i64> {
    id.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::BadInput(format!(
            "{} is not a plan id",
            crate::error::quote(id.as_str())
        ))
    })
}

/// Who is asking.
#[derive(SimpleObject)]
pub struct Viewer {
    /// The token's subject: a person, a runner's name or a provider's name.
    pub subject: String,
    pub role: Role,
}

pub struct Application(pub Arc<application::Model>);

#[Object]
impl Application {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Where the runner clones from: a URL (`https://`, `ssh://`, `git://`,
    /// `file://`) or `git@host:owner/name.git`. Never with credentials: one
    /// stored with them before they were refused shows them as `***` (the
    /// runner clones with its own token or key; an admin fixes the URL with
    /// `updateApplication`).
    async fn repository(&self) -> std::borrow::Cow<'_, str> {
        repository::shown(&self.0.repository)
    }

    /// Path of the deploy spec in the repository.
    async fn spec_path(&self) -> &str {
        &self.0.spec_path
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn environments(&self, ctx: &Context<'_>) -> ApiResult<Vec<Environment>> {
        let envs = applications::environments(&state(ctx).db, self.0.id).await?;
        Ok(envs
            .into_iter()
            .map(|env| Environment::new(env, self.0.clone()))
            .collect())
    }

    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn environment(&self, ctx: &Context<'_>, name: String) -> ApiResult<Option<Environment>> {
        let env = applications::find_environment(&state(ctx).db, self.0.id, &name).await?;
        Ok(env.map(|env| Environment::new(env, self.0.clone())))
    }

    /// The commits of the application's newest releases (of every
    /// environment; at most 1,000), each once, newest first. A runner's
    /// walk of the commits it reports stops at these: the API knows them.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn release_shas(&self, ctx: &Context<'_>) -> ApiResult<Vec<String>> {
        commits::release_shas(&state(ctx).db, self.0.id).await
    }

    /// This application's deployments, newest first.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn deployments(
        &self,
        ctx: &Context<'_>,
        environment: Option<String>,
        status: Option<DeploymentStatus>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, Deployment>> {
        let filter = Filter {
            application: Some(self.0.name.clone()),
            environment,
            status: status.map(Into::into),
        };
        deployment_page(state(ctx), &filter, first, after).await
    }
}

/// Default and largest page of deployments.
const PAGE: i32 = 20;
const MAX_PAGE: i32 = 100;

/// `first` (checked) and the id the page starts below, from `after`.
pub(crate) fn page_arguments(
    first: Option<i32>,
    after: Option<String>,
) -> ApiResult<(i32, Option<i64>)> {
    let first = first.unwrap_or(PAGE);
    if !(0..=MAX_PAGE).contains(&first) {
        return Err(ApiError::BadInput(format!(
            "`first` must be between 0 and {MAX_PAGE}"
        )));
    }
    let before_id = match after {
        Some(cursor) => Some(cursor.parse::<i64>().map_err(|_| {
            ApiError::BadInput(format!(
                "`after` cursor {} is not one this API gave",
                crate::error::quote(&cursor)
            ))
        })?),
        None => None,
    };
    Ok((first, before_id))
}

pub(crate) async fn deployment_page(
    state: &AppState,
    filter: &Filter,
    first: Option<i32>,
    after: Option<String>,
) -> ApiResult<Connection<String, Deployment>> {
    let (first, before_id) = page_arguments(first, after)?;
    let (rows, more) = deployments::list(&state.db, filter, first as u64, before_id).await?;
    let mut connection = Connection::new(before_id.is_some(), more);
    connection.edges.extend(
        rows.into_iter()
            .map(|view| Edge::new(view.deployment.id.to_string(), Deployment::of(view))),
    );
    Ok(connection)
}

pub struct Environment {
    model: Arc<environment::Model>,
    application: Arc<application::Model>,
}

impl Environment {
    pub fn new(model: environment::Model, application: Arc<application::Model>) -> Self {
        Self {
            model: Arc::new(model),
            application,
        }
    }
}

/// Who locked an environment, when and why.
#[derive(SimpleObject)]
pub struct EnvironmentLock {
    pub locked_by: String,
    pub locked_at: DateTime<Utc>,
    pub reason: String,
}

#[Object]
impl Environment {
    async fn id(&self) -> ID {
        ID(self.model.id.to_string())
    }

    async fn name(&self) -> &str {
        &self.model.name
    }

    async fn application(&self) -> Application {
        Application(self.application.clone())
    }

    /// The branch whose pushes deploy here automatically.
    async fn auto_deploy_ref(&self) -> Option<&str> {
        self.model.auto_deploy_ref.as_deref()
    }

    /// Where the environment is reachable.
    async fn url(&self) -> Option<&str> {
        self.model.url.as_deref()
    }

    /// The lock, when the environment refuses new deployments.
    async fn lock(&self) -> Option<EnvironmentLock> {
        let m = &self.model;
        Some(EnvironmentLock {
            locked_by: m.locked_by.clone()?,
            locked_at: m.locked_at.unwrap_or(m.created_at),
            reason: m.lock_reason.clone().unwrap_or_default(),
        })
    }

    /// What runs here: the deployment that last succeeded.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn release(&self, ctx: &Context<'_>) -> ApiResult<Option<Release>> {
        let row = deployments::current_release(&state(ctx).db, self.model.id).await?;
        Ok(row.map(|row| Release(self.view(row))))
    }

    /// How many commits this environment's release is behind and ahead of
    /// environment `to`'s, from the commits runners reported while
    /// deploying; null when either has no release or its commit is not
    /// known to the API.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn commit_distance(
        &self,
        ctx: &Context<'_>,
        to: String,
    ) -> ApiResult<Option<CommitDistance>> {
        let db = &state(ctx).db;
        let app = &self.application;
        let other = applications::find_environment(db, app.id, &to)
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "application {} has no environment {}",
                    crate::error::quote(&app.name),
                    crate::error::quote(&to)
                ))
            })?;
        let here = deployments::current_release(db, self.model.id).await?;
        let there = deployments::current_release(db, other.id).await?;
        let (Some(here), Some(there)) = (
            here.and_then(|release| release.sha),
            there.and_then(|release| release.sha),
        ) else {
            return Ok(None);
        };
        let distance = commits::distance(db, app.id, &here, &there).await?;
        Ok(distance.map(CommitDistance::from))
    }

    /// What a new deployment does to the queued ones.
    async fn queue_policy(&self) -> QueuePolicy {
        self.model.queue_policy.into()
    }

    /// The most deployments that may wait in the queue (`FIFO`), if capped.
    async fn max_queued(&self) -> Option<i64> {
        self.model.max_queued
    }

    /// Every release, newest first: the deployments that succeeded here.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn releases(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, Release>> {
        let (first, before_id) = page_arguments(first, after)?;
        let (rows, more) =
            releases::list(&state(ctx).db, self.model.id, first as u64, before_id).await?;
        let mut connection = Connection::new(before_id.is_some(), more);
        connection.edges.extend(
            rows.into_iter()
                .map(|row| Edge::new(row.id.to_string(), Release(self.view(row)))),
        );
        Ok(connection)
    }

    /// Set while auto-deploys are paused (a rollback pauses them): pushes and
    /// pipelines deploy nothing until a person deploys explicitly or resumes
    /// them (`resumeAutoDeploy`).
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn auto_deploy_pause(&self, ctx: &Context<'_>) -> ApiResult<Option<AutoDeployPause>> {
        let m = &self.model;
        let Some(paused_by) = m.auto_deploy_paused_by.clone() else {
            return Ok(None);
        };
        let rollback = match m.auto_deploy_paused_for {
            Some(id) => releases::deployment(&state(ctx).db, id)
                .await?
                .map(|row| Deployment::of(self.view(row))),
            None => None,
        };
        Ok(Some(AutoDeployPause {
            paused_by,
            paused_at: m.auto_deploy_paused_at.unwrap_or(m.created_at),
            reason: m.auto_deploy_pause_reason.clone().unwrap_or_default(),
            rollback,
        }))
    }

    /// Drift against git: what deploying its release's commit again would
    /// change on the swarm — a service edited or scaled by hand, removed,
    /// or added beside the stack — as a runner last planned it. Checked
    /// every 10 minutes, the first time 10 minutes after the release; null
    /// until a check is done.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn drift(&self, ctx: &Context<'_>) -> ApiResult<Option<Drift>> {
        Ok(crate::drift::latest(&state(ctx).db, self.model.id)
            .await?
            .map(|plan| {
                Drift(PlanView {
                    plan,
                    application: self.application.clone(),
                    environment: self.model.clone(),
                })
            }))
    }

    /// Its stack as a runner last saw it on the swarm — every service's
    /// tasks, on which node, running which digest — and how that differs
    /// from its release; null until a runner looked (runners look after
    /// each deployment and every minute).
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn nodes(&self, ctx: &Context<'_>) -> ApiResult<Option<super::nodes::EnvironmentNodes>> {
        let Some(observed) = crate::nodes::observed(&self.model)? else {
            return Ok(None);
        };
        let release = deployments::current_release(&state(ctx).db, self.model.id).await?;
        let services = release.as_ref().map(crate::view::services).transpose()?;
        Ok(Some(super::nodes::EnvironmentNodes::of(
            observed,
            self.model.observed_at.unwrap_or(self.model.created_at),
            self.model.observed_by.clone().unwrap_or_default(),
            services.as_deref(),
        )))
    }

    /// The labels a runner must have to deploy it (`swarm=prod-eu`); empty
    /// when any runner may. Only such runners hear of its deployments and
    /// plans, and may claim them.
    async fn runner_labels(&self) -> Vec<String> {
        crate::runners::required(&self.model)
    }

    /// Whether its deployments wait for a deployer's approval.
    async fn approval_policy(&self) -> super::gates::ApprovalPolicy {
        super::gates::ApprovalPolicy::of(&self.model)
    }

    /// The CI checks its new deployments wait for (gate CHECKS); none when
    /// it requires none.
    async fn required_checks(&self) -> Option<super::gates::RequiredChecks> {
        crate::checks::policy(&self.model).map(super::gates::RequiredChecks::of)
    }

    /// Its freeze windows, oldest first.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn freeze_windows(
        &self,
        ctx: &Context<'_>,
    ) -> ApiResult<Vec<super::gates::FreezeWindow>> {
        let now = state(ctx).clock.now();
        Ok(crate::gates::windows(&state(ctx).db, self.model.id)
            .await?
            .into_iter()
            .map(|w| super::gates::FreezeWindow::new(w, now))
            .collect())
    }

    /// Where its deployments are told about (Slack, webhooks), oldest
    /// first. Admins only: even masked, targets say where news goes.
    #[graphql(guard = "RoleGuard::new(roles::ADMIN)")]
    async fn notifications(
        &self,
        ctx: &Context<'_>,
    ) -> ApiResult<Vec<super::notifications::Notification>> {
        Ok(
            crate::notifications::of_environment(&state(ctx).db, self.model.id)
                .await?
                .into_iter()
                .map(super::notifications::Notification)
                .collect(),
        )
    }

    /// The messages owed to its notifications, newest first (admins only).
    #[graphql(guard = "RoleGuard::new(roles::ADMIN)")]
    async fn deliveries(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, super::notifications::Delivery>> {
        let filter = crate::notifications::DeliveryFilter {
            environment_id: Some(self.model.id),
            ..Default::default()
        };
        super::notifications::delivery_page(ctx, filter, first, after).await
    }

    /// How this environment delivered over the `days` (1 to 366) before now:
    /// deploy frequency, change failure rate, time to restore.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn dora(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 30)] days: i64,
    ) -> ApiResult<super::dora::Dora> {
        let state = state(ctx);
        let figures =
            crate::dora::of_environment(&state.db, self.model.id, days, state.clock.now()).await?;
        Ok(super::dora::Dora(figures))
    }

    /// The deployment running now, if any.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn in_progress(&self, ctx: &Context<'_>) -> ApiResult<Option<Deployment>> {
        let row = deployments::in_progress(&state(ctx).db, self.model.id).await?;
        Ok(row.map(|row| Deployment::of(self.view(row))))
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.model.created_at
    }
}

impl Environment {
    fn view(&self, deployment: deployment::Model) -> DeploymentView {
        DeploymentView {
            deployment,
            application: self.application.clone(),
            environment: self.model.clone(),
        }
    }
}

/// How far one environment's release is from another's, in commits.
#[derive(SimpleObject)]
pub struct CommitDistance {
    /// Commits the other release has and this one does not.
    pub behind: i64,
    /// Commits this release has and the other does not.
    pub ahead: i64,
    /// False when part of the history is not known to the API (a runner
    /// reports at most 1,000 commits of a deployment, and a shallow mirror
    /// knows no parents past its edge) and the two walks ended at different
    /// edges of what is known: `behind` and `ahead` then count the known
    /// commits only, and the true figures may be higher.
    pub exact: bool,
}

impl From<commits::Distance> for CommitDistance {
    fn from(d: commits::Distance) -> Self {
        Self {
            behind: d.behind.try_into().unwrap_or(i64::MAX),
            ahead: d.ahead.try_into().unwrap_or(i64::MAX),
            exact: d.exact,
        }
    }
}

/// Why auto-deploys of an environment are paused.
#[derive(SimpleObject)]
pub struct AutoDeployPause {
    pub paused_by: String,
    pub paused_at: DateTime<Utc>,
    pub reason: String,
    /// The rollback that paused them.
    pub rollback: Option<Deployment>,
}

/// A release of an environment: a deployment that succeeded there, serving
/// from when it finished until the next release replaced it.
pub struct Release(DeploymentView);

impl Release {
    /// A release of the same environment as this one.
    fn sibling(&self, row: deployment::Model) -> Release {
        Release(DeploymentView {
            deployment: row,
            application: self.0.application.clone(),
            environment: self.0.environment.clone(),
        })
    }
}

#[Object]
impl Release {
    /// The deployment that made this release.
    async fn deployment(&self) -> Deployment {
        Deployment::of(self.0.clone())
    }

    async fn sha(&self) -> Option<&str> {
        self.0.deployment.sha.as_deref()
    }

    async fn r#ref(&self) -> &str {
        &self.0.deployment.ref_name
    }

    /// `deploy`, `rollback`, or the task the deployment was asked for.
    async fn task(&self) -> &str {
        &self.0.deployment.task
    }

    /// Who asked for it (the subject of the token that created it).
    async fn created_by(&self) -> &str {
        &self.0.deployment.created_by
    }

    /// When it finished rolling out and started serving.
    async fn deployed_at(&self) -> Option<DateTime<Utc>> {
        self.0.deployment.finished_at
    }

    /// When it stopped serving: when the next release finished; null while
    /// it serves.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn replaced_at(&self, ctx: &Context<'_>) -> ApiResult<Option<DateTime<Utc>>> {
        let d = &self.0.deployment;
        let next = releases::after(&state(ctx).db, d.environment_id, d.id).await?;
        Ok(next.and_then(|next| next.finished_at))
    }

    /// The release that replaced it; a rollback when it was rolled back.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn replaced_by(&self, ctx: &Context<'_>) -> ApiResult<Option<Release>> {
        let d = &self.0.deployment;
        let next = releases::after(&state(ctx).db, d.environment_id, d.id).await?;
        Ok(next.map(|row| self.sibling(row)))
    }

    /// The release before it in the environment.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn previous(&self, ctx: &Context<'_>) -> ApiResult<Option<Release>> {
        let d = &self.0.deployment;
        let before = releases::before(&state(ctx).db, d.environment_id, d.id).await?;
        Ok(before.map(|row| self.sibling(row)))
    }

    /// For a repository on GitHub or GitLab: the page of the commits between
    /// the previous release and this one; with `from`, between that
    /// deployment of the same application (another environment's release,
    /// say) and this one.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn compare_url(&self, ctx: &Context<'_>, from: Option<ID>) -> ApiResult<Option<String>> {
        let d = &self.0.deployment;
        let Some(sha) = &d.sha else { return Ok(None) };
        let db = &state(ctx).db;
        let base = match from {
            Some(id) => {
                let row = releases::deployment(db, deployment_id(&id)?)
                    .await?
                    .filter(|row| row.application_id == d.application_id)
                    .ok_or_else(|| {
                        ApiError::NotFound(format!(
                            "`{}` has no deployment with id {}",
                            self.0.application.name,
                            crate::error::quote(id.as_str())
                        ))
                    })?;
                Some(row)
            }
            None => releases::before(db, d.environment_id, d.id).await?,
        };
        Ok(base
            .and_then(|b| b.sha)
            .and_then(|from| releases::compare_url(&self.0.application.repository, &from, sha)))
    }

    /// Per service, the image it runs (with digest where known).
    async fn services(&self) -> ApiResult<Vec<ReleaseService>> {
        release_services(&self.0)
    }

    /// Whether every node runs this release's digests with every replica
    /// up, as a runner last saw the swarm (`Environment.nodes` says how it
    /// drifted otherwise); null when it is no longer the environment's
    /// release or no runner has looked since it was made.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn consistent(&self, ctx: &Context<'_>) -> ApiResult<Option<bool>> {
        let db = &state(ctx).db;
        let current = deployments::current_release(db, self.0.environment.id).await?;
        if current.as_ref().map(|row| row.id) != Some(self.0.deployment.id) {
            return Ok(None);
        }
        // The environment as this request read it, observation included.
        let env = &self.0.environment;
        let looked_since = match (env.observed_at, self.0.deployment.finished_at) {
            (Some(at), Some(made)) => at >= made,
            _ => false,
        };
        let Some(observed) = crate::nodes::observed(env)?.filter(|_| looked_since) else {
            return Ok(None);
        };
        Ok(Some(
            crate::nodes::drift(&self.0.services()?, &observed).is_empty(),
        ))
    }
}

/// How one service of a deployment converges.
#[derive(SimpleObject)]
pub struct ServiceConvergence {
    service: String,
    state: super::enums::ConvergenceState,
    /// What the runner sees: `1/3 running`, the failing task's error.
    detail: Option<String>,
}

/// An image a service of the release runs.
#[derive(SimpleObject)]
pub struct ReleaseService {
    pub name: String,
    pub image: String,
    pub digest: Option<String>,
    /// SHA-256 (hex) of the ServiceSpec the runner applied: equal hashes,
    /// equal services.
    pub spec_hash: Option<String>,
}

impl From<ServiceImage> for ReleaseService {
    fn from(s: ServiceImage) -> Self {
        Self {
            name: s.name,
            image: s.image,
            digest: s.digest,
            spec_hash: s.spec_hash,
        }
    }
}

fn release_services(view: &DeploymentView) -> ApiResult<Vec<ReleaseService>> {
    Ok(view
        .services()?
        .into_iter()
        .map(ReleaseService::from)
        .collect())
}

/// A deployment, and the number in the event log of the change it is shown
/// for, when it comes from `deploymentEvents` on PostgreSQL.
pub struct Deployment(pub Arc<DeploymentView>, pub Option<i64>);

impl Deployment {
    pub fn of(view: DeploymentView) -> Self {
        Self(Arc::new(view), None)
    }

    /// A release of this deployment's environment.
    fn release_of(&self, row: deployment::Model) -> Release {
        Release(DeploymentView {
            deployment: row,
            application: self.0.application.clone(),
            environment: self.0.environment.clone(),
        })
    }
}

#[Object]
impl Deployment {
    async fn id(&self) -> ID {
        ID(self.0.deployment.id.to_string())
    }

    /// In `deploymentEvents` on PostgreSQL, the number of this change in
    /// the event log: subscribe again with `afterEvent` set to the last one
    /// seen, on any API replica, to miss nothing. Null elsewhere.
    async fn event_id(&self) -> Option<ID> {
        self.1.map(|id| ID(id.to_string()))
    }

    /// Per-application number, dense from 1.
    async fn number(&self) -> i64 {
        self.0.deployment.number
    }

    /// `application#number`, as people say it.
    async fn name(&self) -> String {
        self.0.name()
    }

    async fn application(&self) -> Application {
        Application(self.0.application.clone())
    }

    async fn environment(&self) -> Environment {
        Environment {
            model: self.0.environment.clone(),
            application: self.0.application.clone(),
        }
    }

    /// The branch, tag or commit asked for.
    async fn r#ref(&self) -> &str {
        &self.0.deployment.ref_name
    }

    /// The commit `ref` resolved to, once known.
    async fn sha(&self) -> Option<&str> {
        self.0.deployment.sha.as_deref()
    }

    /// `deploy` (rolls the stack out), `rollback` (restores a release), or
    /// a task of the spec to run alone (`migrate`, `deploy:migrate`).
    async fn task(&self) -> &str {
        &self.0.deployment.task
    }

    /// The task of the spec this deployment runs alone, rolling nothing out
    /// (`migrate` for task `migrate` or `deploy:migrate`); null for a
    /// rollout. Such a deployment takes the environment's queue and lock
    /// like any other, but is never a release.
    async fn runs_task(&self) -> Option<&str> {
        self.0.deployment.runs_task.as_deref()
    }

    /// Free-form JSON from the creator, passed to the runner.
    async fn payload(&self) -> Option<Json<serde_json::Value>> {
        let text = self.0.deployment.payload.as_deref()?;
        serde_json::from_str(text).ok().map(Json)
    }

    async fn description(&self) -> Option<&str> {
        self.0.deployment.description.as_deref()
    }

    async fn status(&self) -> DeploymentStatus {
        self.0.status().into()
    }

    async fn phase(&self) -> Option<DeploymentPhase> {
        self.0.phase().map(Into::into)
    }

    async fn message(&self) -> Option<&str> {
        self.0.deployment.message.as_deref()
    }

    /// What it waits for while QUEUED before a runner may take it: the end
    /// of a freeze window, its required checks, or an approval; none when
    /// nothing holds it.
    /// Not a `phase`: a phase is what a runner does to an IN_PROGRESS
    /// deployment, a gate holds a QUEUED one that no runner has.
    async fn gate(&self) -> Option<super::gates::Gate> {
        super::gates::Gate::of(&self.0.deployment)
    }

    /// Who approved or rejected it, when, and what they said.
    async fn review(&self) -> Option<super::gates::Review> {
        super::gates::Review::of(&self.0.deployment)
    }

    /// The admin who let it through a freeze window, and why.
    async fn freeze_override(&self) -> Option<super::gates::FreezeOverride> {
        super::gates::FreezeOverride::of(&self.0.deployment)
    }

    /// The CI checks it waits for (or waited for), as its environment
    /// required them when it was created and `force` left them; none when
    /// it requires none (rollbacks never do).
    async fn required_checks(&self) -> Option<super::gates::RequiredChecks> {
        crate::checks::required(&self.0.deployment).map(super::gates::RequiredChecks::of)
    }

    /// The checks on its commit as the provider last reported them; empty
    /// before the first report.
    async fn checks(&self) -> Vec<super::gates::Check> {
        crate::checks::reported(&self.0.deployment)
            .into_iter()
            .map(super::gates::Check::of)
            .collect()
    }

    /// When the provider's report of its checks last changed (the provider
    /// reads them every few seconds; the same answer is not stored again).
    async fn checks_reported_at(&self) -> Option<DateTime<Utc>> {
        self.0.deployment.checks_reported_at
    }

    /// The deployer who created it with `force`, past the checks its
    /// environment does not name as required.
    async fn checks_forced_by(&self) -> Option<&str> {
        self.0.deployment.checks_forced_by.as_deref()
    }

    /// The subject of the token that created it.
    async fn created_by(&self) -> &str {
        &self.0.deployment.created_by
    }

    /// The creator's idempotency key (`github:<deployment id>`, a delivery id).
    async fn external_id(&self) -> Option<&str> {
        self.0.deployment.external_id.as_deref()
    }

    /// Made by a hook for a push or a pipeline rather than asked for.
    async fn auto_deploy(&self) -> bool {
        self.0.deployment.auto_deploy
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.deployment.created_at
    }

    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.deployment.started_at
    }

    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.deployment.finished_at
    }

    /// The runner that holds it (or held it last).
    async fn runner(&self) -> Option<&str> {
        self.0.deployment.runner.as_deref()
    }

    /// Which process of that runner holds it (or held it last), as the
    /// process named itself when it claimed; null for runners that do not say.
    async fn runner_instance(&self) -> Option<&str> {
        self.0.deployment.runner_instance.as_deref()
    }

    /// When the runner's claim lapses unless it sends a heartbeat (while in progress).
    async fn lease_expires_at(&self) -> Option<DateTime<Utc>> {
        match self.0.status() {
            deployments::DeploymentStatus::InProgress => self.0.deployment.lease_expires_at,
            _ => None,
        }
    }

    async fn last_heartbeat_at(&self) -> Option<DateTime<Utc>> {
        self.0.deployment.last_heartbeat_at
    }

    /// Someone asked to cancel it; its runner stops and rolls back.
    async fn cancel_requested(&self) -> bool {
        self.0.deployment.cancel_requested
    }

    /// Sequence number of the last stored log line (0 when there is none).
    async fn log_count(&self) -> i64 {
        self.0.deployment.log_count
    }

    /// Per service, the image the deployment rolled out (set when it succeeded).
    async fn services(&self) -> ApiResult<Vec<ReleaseService>> {
        release_services(&self.0)
    }

    /// How each service of the stack converges, as the runner last said
    /// (while it runs, and as it ended).
    async fn convergence(&self) -> ApiResult<Vec<ServiceConvergence>> {
        Ok(crate::view::convergence(&self.0.deployment)?
            .into_iter()
            .map(|c| ServiceConvergence {
                service: c.service,
                state: c.state.into(),
                detail: c.detail,
            })
            .collect())
    }

    /// The release this deployment made, once it succeeded.
    async fn release(&self) -> Option<Release> {
        (self.0.status() == deployments::DeploymentStatus::Succeeded)
            .then(|| Release((*self.0).clone()))
    }

    /// The release this deployment replaced (or, before it succeeds, would
    /// replace): the environment's release before it.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn previous_release(&self, ctx: &Context<'_>) -> ApiResult<Option<Release>> {
        let d = &self.0.deployment;
        let before = releases::before(&state(ctx).db, d.environment_id, d.id).await?;
        Ok(before.map(|row| self.release_of(row)))
    }

    /// For a rollback or a promotion: the release it deploys exactly (its
    /// commit and the image digests it ran).
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn restores(&self, ctx: &Context<'_>) -> ApiResult<Option<Release>> {
        let Some(id) = self.0.deployment.restores else {
            return Ok(None);
        };
        let db = &state(ctx).db;
        let row = releases::deployment(db, id)
            .await?
            .ok_or_else(|| ApiError::internal(format!("release {id} vanished")))?;
        // A promotion's release is another environment's.
        Ok(Some(Release(crate::view::hydrate_one(db, row).await?)))
    }

    /// Where people follow it, when the API knows its public URL.
    async fn url(&self, ctx: &Context<'_>) -> Option<String> {
        let base = state(ctx).settings.public_url.as_deref()?;
        Some(format!(
            "{}/deployments/{}",
            base.trim_end_matches('/'),
            self.0.deployment.id
        ))
    }

    /// Stored log lines after sequence number `after`, oldest first.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn logs(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 0)] after: i64,
        #[graphql(default = 1000)] first: i32,
    ) -> ApiResult<Vec<LogLine>> {
        if !(0..=10_000).contains(&first) {
            return Err(ApiError::BadInput(
                "`first` must be between 0 and 10000".into(),
            ));
        }
        let lines = logs::read(&state(ctx).db, self.0.deployment.id, after, first as u64).await?;
        Ok(lines.into_iter().map(LogLine::from).collect())
    }
}

/// One line of a deployment's log.
#[derive(SimpleObject, Clone, Debug)]
pub struct LogLine {
    /// Dense per deployment, from 1.
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// `stdout`, `stderr`, `system`, or a service's name.
    pub stream: String,
    pub text: String,
}

impl From<log_line::Model> for LogLine {
    fn from(m: log_line::Model) -> Self {
        Self {
            seq: m.seq,
            at: m.at,
            stream: m.stream,
            text: m.text,
        }
    }
}

pub struct Runner(pub runner::Model);

#[Object]
impl Runner {
    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn labels(&self) -> Vec<String> {
        serde_json::from_str(&self.0.labels).unwrap_or_default()
    }

    async fn version(&self) -> Option<&str> {
        self.0.version.as_deref()
    }

    /// The instance (process) of this runner last heard from, if it said.
    async fn last_instance(&self) -> Option<&str> {
        self.0.last_instance.as_deref()
    }

    /// The runner's last claim, heartbeat, registration or sign of its open
    /// subscription (every 10 s while it listens).
    async fn last_seen_at(&self) -> DateTime<Utc> {
        self.0.last_seen_at
    }

    /// CONNECTED when heard from within the last 30 seconds; LOST otherwise
    /// (a runner that stopped, or that cannot reach the API).
    async fn health(&self, ctx: &Context<'_>) -> RunnerHealth {
        match crate::runners::is_connected(&self.0, state(ctx).clock.now()) {
            true => RunnerHealth::Connected,
            false => RunnerHealth::Lost,
        }
    }

    /// The deployments it holds now (IN_PROGRESS), oldest first.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn holds(&self, ctx: &Context<'_>) -> ApiResult<Vec<Deployment>> {
        let views = crate::runners::holds(&state(ctx).db, &self.0.name).await?;
        Ok(views.into_iter().map(Deployment::of).collect())
    }
}

/// Whether a runner is there.
#[derive(Copy, Clone, Debug, PartialEq, Eq, async_graphql::Enum)]
pub enum RunnerHealth {
    /// Heard from within the last 30 seconds.
    Connected,
    /// Not heard from for longer.
    Lost,
}

/// What deploying a ref to an environment would change, as a runner planned
/// it against what runs. Never a deployment: nothing is deployed or locked.
/// How an environment's swarm differs from its release's commit.
pub struct Drift(PlanView);

#[Object]
impl Drift {
    /// Whether any service differs.
    async fn drifted(&self) -> bool {
        !crate::drift::drifted(&self.0.plan).is_empty()
    }

    /// The services that differ: `update` (edited or scaled since: which
    /// fields), `remove` (on the swarm, not in the commit), `create` (in the
    /// commit, gone from the swarm).
    async fn services(&self) -> Vec<DriftedService> {
        crate::drift::drifted(&self.0.plan)
            .into_iter()
            .map(DriftedService)
            .collect()
    }

    /// The commit it was checked against.
    async fn sha(&self) -> Option<&str> {
        self.0.plan.sha.as_deref()
    }

    /// When the runner checked.
    async fn checked_at(&self) -> DateTime<Utc> {
        self.0.plan.finished_at.unwrap_or(self.0.plan.created_at)
    }

    /// The plan that checked it.
    async fn plan(&self) -> Plan {
        Plan(self.0.clone())
    }
}

/// A service that differs from the release's commit.
pub struct DriftedService(crate::plans::StoredServicePlan);

#[Object]
impl DriftedService {
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// `update`, `remove` or `create`: what deploying the commit would do.
    async fn action(&self) -> &str {
        &self.0.action
    }

    /// The fields (JSON paths of the service's spec) that differ.
    async fn changes(&self) -> &[String] {
        &self.0.changes
    }
}

pub struct Plan(pub PlanView);

#[Object]
impl Plan {
    async fn id(&self) -> ID {
        ID(self.0.plan.id.to_string())
    }

    async fn application(&self) -> Application {
        Application(self.0.application.clone())
    }

    async fn environment(&self) -> Environment {
        Environment {
            model: self.0.environment.clone(),
            application: self.0.application.clone(),
        }
    }

    /// The branch, tag or commit asked for.
    async fn r#ref(&self) -> &str {
        &self.0.plan.ref_name
    }

    /// The commit the runner planned; deploying it deploys what the plan saw.
    async fn sha(&self) -> Option<&str> {
        self.0.plan.sha.as_deref()
    }

    async fn status(&self) -> PlanStatus {
        self.0.plan.status.into()
    }

    /// The runner that took it.
    async fn runner(&self) -> Option<&str> {
        self.0.plan.runner.as_deref()
    }

    /// Once DONE: `{"stack", "services": [{"name", "action" (create, update,
    /// unchanged, remove), "changes" (the JSON paths that differ), "image",
    /// "digest"}]}`, as `slipway-runner plan --diff` prints it.
    async fn result(&self) -> Option<Json<serde_json::Value>> {
        let text = self.0.plan.result.as_deref()?;
        serde_json::from_str(text).ok().map(Json)
    }

    /// Why it FAILED, or a note with a result (warnings).
    async fn message(&self) -> Option<&str> {
        self.0.plan.message.as_deref()
    }

    async fn created_by(&self) -> &str {
        &self.0.plan.created_by
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.plan.created_at
    }

    async fn claimed_at(&self) -> Option<DateTime<Utc>> {
        self.0.plan.claimed_at
    }

    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.plan.finished_at
    }
}
