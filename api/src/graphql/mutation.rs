use std::sync::Arc;

use async_graphql::{Context, InputObject, Json, Object, ID};
use chrono::{DateTime, Utc};

use super::enums::{
    CheckState, ConvergenceState, DeploymentPhase, DeploymentStatus, FreezeMode, QueuePolicy,
};
use super::gates::FreezeWindow;
use super::notifications::{
    DeploymentEvent, Notification, NotificationKind, SetNotificationPayload,
};
use super::types::{
    deployment_id, plan_id, state, Application, Deployment, Environment, Plan, Runner,
};
use crate::applications::{self, ApplicationChange, NewApplication, NewEnvironment};
use crate::auth::{caller, roles, Role, RoleGuard};
use crate::checks::{self, StoredCheck};
use crate::commits::{self, NewCommit};
use crate::deployments::{self, NewDeployment};
use crate::error::{quote, ApiError, ApiResult};
use crate::gates;
use crate::leases::{self, Holder};
use crate::logs::{self, NewLine};
use crate::notifications;
use crate::plans::{self, Answer};
use crate::releases;
use crate::runners;
use crate::view::{self, ServiceImage};

pub struct Mutation;

#[derive(InputObject)]
pub(super) struct CreateApplicationInput {
    /// Lowercase letters, digits, `-`, `_`, `.`; used in stack names.
    pub name: String,
    /// Clone URL or path of the repository, without credentials (a password
    /// or token is refused: give the runner `--git-token` or an SSH key).
    pub repository: String,
    /// Path of the deploy spec in the repository (default `slipway.yml`).
    pub spec_path: Option<String>,
}

#[derive(InputObject)]
pub(super) struct CreateEnvironmentInput {
    pub application: String,
    pub name: String,
    /// Branch whose pushes deploy here automatically.
    pub auto_deploy_ref: Option<String>,
    pub url: Option<String>,
    /// What a new deployment does to the queued ones (`FIFO` unless told).
    pub queue_policy: Option<QueuePolicy>,
    /// The most deployments that may wait (`FIFO` only); no cap unless told.
    pub max_queued: Option<i64>,
    /// The labels a runner must have to deploy it (`swarm=prod-eu`); any
    /// runner may unless told.
    pub runner_labels: Option<Vec<String>>,
}

#[derive(InputObject)]
pub(super) struct CreateDeploymentInput {
    pub application: String,
    /// Created on the first deployment that names it.
    pub environment: String,
    /// Branch, tag or commit to deploy.
    pub r#ref: String,
    /// The commit `ref` is at, when the creator knows it (a GitHub hook does).
    pub sha: Option<String>,
    /// `deploy` (roll the stack out) unless told; the name of a task of
    /// the spec (`migrate`, or `deploy:migrate`) runs that task alone at
    /// the commit, through the same queue and lock, and makes no release.
    pub task: Option<String>,
    pub payload: Option<Json<serde_json::Value>>,
    /// Idempotency key: a second deployment with the same key in the same
    /// application returns the first and creates nothing.
    pub external_id: Option<String>,
    pub description: Option<String>,
    /// Set by hooks for pushes and pipelines (false unless told): the runner
    /// skips such a deployment when the environment already runs a newer
    /// commit of its ref.
    pub auto_deploy: Option<bool>,
    /// An admin's reason to create the deployment past the freeze windows
    /// in force now, `REFUSE` ones too; kept on the deployment
    /// (`freezeOverride`). Only an admin may give it.
    pub override_freeze: Option<String>,
    /// Go past the checks the environment does not name as required: with
    /// `requireChecks: all`, wait only for the named ones (for none when it
    /// names none). Recorded on the deployment (`checksForcedBy`). False
    /// unless told.
    pub force: Option<bool>,
}

#[derive(InputObject)]
pub(super) struct SetNotificationInput {
    pub application: String,
    pub environment: String,
    pub kind: NotificationKind,
    /// The URL to post to (http or https): a Slack incoming webhook's URL,
    /// or a webhook receiver's. Write-only: shown back as its host.
    pub target: String,
    /// WEBHOOK only: the signing key, `whsec_` and the base64 of 24 to 64
    /// random bytes. Write-only; one is made (and answered once) when none
    /// is given.
    pub secret: Option<String>,
    /// What to tell: at least one event.
    pub events: Vec<DeploymentEvent>,
}

/// A CI check on a commit, as the provider read it from the forge.
#[derive(InputObject)]
pub(super) struct CheckInput {
    /// The status context, the check run's name, or `pipeline` (GitLab).
    pub name: String,
    pub state: CheckState,
    /// The forge's page of the check (http or https).
    pub url: Option<String>,
}

#[derive(InputObject)]
pub(super) struct LogLineInput {
    pub text: String,
    /// `stdout` unless told.
    pub stream: Option<String>,
    /// When the line was written; the time it is stored unless told.
    pub at: Option<DateTime<Utc>>,
}

#[derive(InputObject)]
pub(super) struct ServiceImageInput {
    pub name: String,
    pub image: String,
    pub digest: Option<String>,
    /// SHA-256 of the ServiceSpec the runner applied, hex.
    pub spec_hash: Option<String>,
}

/// A commit of the repository, as the runner's mirror has it.
#[derive(InputObject)]
pub(super) struct CommitInput {
    /// The full commit id, lowercase hex.
    pub sha: String,
    /// Its parents' ids, none for a root commit; null when the runner does
    /// not know them (its mirror is shallow there).
    pub parents: Option<Vec<String>>,
    /// The first line of the message (cut to 200 characters).
    pub subject: Option<String>,
    pub committed_at: Option<DateTime<Utc>>,
}

#[Object]
impl Mutation {
    #[graphql(guard = "RoleGuard::new(roles::ADMIN)")]
    async fn create_application(
        &self,
        ctx: &Context<'_>,
        input: CreateApplicationInput,
    ) -> ApiResult<Application> {
        let app = applications::create(
            state(ctx),
            NewApplication {
                name: input.name,
                repository: input.repository,
                spec_path: input.spec_path,
            },
        )
        .await?;
        Ok(Application(Arc::new(app)))
    }

    /// Changes an application's repository URL or spec path; what is not
    /// given stays.
    #[graphql(guard = "RoleGuard::new(roles::ADMIN)")]
    async fn update_application(
        &self,
        ctx: &Context<'_>,
        name: String,
        repository: Option<String>,
        spec_path: Option<String>,
    ) -> ApiResult<Application> {
        let change = ApplicationChange {
            repository,
            spec_path,
        };
        let app = applications::update(state(ctx), &name, change).await?;
        Ok(Application(Arc::new(app)))
    }

    #[graphql(guard = "RoleGuard::new(roles::ADMIN)")]
    async fn create_environment(
        &self,
        ctx: &Context<'_>,
        input: CreateEnvironmentInput,
    ) -> ApiResult<Environment> {
        let (env, app) = applications::create_environment(
            state(ctx),
            NewEnvironment {
                application: input.application,
                name: input.name,
                auto_deploy_ref: input.auto_deploy_ref,
                url: input.url,
                queue_policy: input.queue_policy.map(Into::into).unwrap_or_default(),
                max_queued: input.max_queued,
                runner_labels: input.runner_labels.unwrap_or_default(),
            },
        )
        .await?;
        Ok(Environment::new(env, Arc::new(app)))
    }

    /// Refuses new deployments to the environment until it is unlocked.
    #[graphql(guard = "RoleGuard::new(roles::OPERATE)")]
    async fn lock_environment(
        &self,
        ctx: &Context<'_>,
        application: String,
        environment: String,
        reason: String,
    ) -> ApiResult<Environment> {
        let by = caller(ctx)?.sub.clone();
        let (env, app) =
            applications::set_lock(state(ctx), &application, &environment, Some((&by, &reason)))
                .await?;
        Ok(Environment::new(env, Arc::new(app)))
    }

    #[graphql(guard = "RoleGuard::new(roles::OPERATE)")]
    async fn unlock_environment(
        &self,
        ctx: &Context<'_>,
        application: String,
        environment: String,
    ) -> ApiResult<Environment> {
        let (env, app) =
            applications::set_lock(state(ctx), &application, &environment, None).await?;
        Ok(Environment::new(env, Arc::new(app)))
    }

    #[graphql(guard = "RoleGuard::new(roles::DEPLOY)")]
    async fn create_deployment(
        &self,
        ctx: &Context<'_>,
        input: CreateDeploymentInput,
    ) -> ApiResult<Deployment> {
        let claims = caller(ctx)?;
        if input.override_freeze.is_some() && claims.role != Role::Admin {
            return Err(ApiError::Forbidden(
                "`overrideFreeze` is for admins: the caller's role may not go past a freeze \
                 window"
                    .into(),
            ));
        }
        let by = claims.sub.clone();
        let view = deployments::create(
            state(ctx),
            &by,
            NewDeployment {
                application: input.application,
                environment: input.environment,
                ref_name: input.r#ref,
                sha: input.sha,
                task: input.task,
                payload: input.payload.map(|p| p.0),
                external_id: input.external_id,
                description: input.description,
                auto_deploy: input.auto_deploy.unwrap_or(false),
                restores: None,
                pause_auto_deploy: None,
                override_freeze: input.override_freeze,
                force: input.force.unwrap_or(false),
            },
        )
        .await?;
        Ok(Deployment::of(view))
    }

    /// How the environment queues deployments: `FIFO` (each waits its turn,
    /// at most `maxQueued` waiting when set) or `LATEST` (a new deployment
    /// supersedes the queued ones, which end CANCELLED naming it).
    #[graphql(guard = "RoleGuard::new(roles::ADMIN)")]
    async fn set_queue_policy(
        &self,
        ctx: &Context<'_>,
        application: String,
        environment: String,
        policy: QueuePolicy,
        max_queued: Option<i64>,
    ) -> ApiResult<Environment> {
        let (env, app) = applications::set_queue_policy(
            state(ctx),
            &application,
            &environment,
            policy.into(),
            max_queued,
        )
        .await?;
        Ok(Environment::new(env, Arc::new(app)))
    }

    /// What the runner sees of the environment's stack on the swarm now:
    /// every service with its tasks (node, digest, state), replacing what
    /// was seen before (`Environment.nodes`). Only a runner that may deploy
    /// the environment may report it.
    #[graphql(guard = "RoleGuard::new(roles::RUNNER)")]
    async fn report_observed(
        &self,
        ctx: &Context<'_>,
        application: String,
        environment: String,
        services: Vec<super::nodes::ObservedServiceInput>,
    ) -> ApiResult<Environment> {
        let runner = caller(ctx)?.sub.clone();
        let (env, app) = crate::nodes::report(
            state(ctx),
            &runner,
            &application,
            &environment,
            services.into_iter().map(Into::into).collect(),
        )
        .await?;
        Ok(Environment::new(env, Arc::new(app)))
    }

    /// The labels a runner must have to deploy the environment
    /// (`swarm=prod-eu`: a runner started with `--label swarm=prod-eu`);
    /// empty: any runner. From now on only such runners hear of its
    /// deployments and plans or may claim them, those already queued
    /// included; one nobody connected may take says so in its message.
    #[graphql(guard = "RoleGuard::new(roles::ADMIN)")]
    async fn set_runner_labels(
        &self,
        ctx: &Context<'_>,
        application: String,
        environment: String,
        labels: Vec<String>,
    ) -> ApiResult<Environment> {
        let (env, app) =
            runners::set_environment_labels(state(ctx), &application, &environment, labels).await?;
        Ok(Environment::new(env, Arc::new(app)))
    }

    /// Whether the environment's new deployments wait (gate APPROVAL) until
    /// a deployer approves them, and whether their creator may not be that
    /// deployer. Rollbacks never wait for an approval.
    #[graphql(guard = "RoleGuard::new(roles::ADMIN)")]
    async fn set_approval_policy(
        &self,
        ctx: &Context<'_>,
        application: String,
        environment: String,
        required: bool,
        #[graphql(default = false)] not_by_creator: bool,
    ) -> ApiResult<Environment> {
        let (env, app) = gates::set_approval_policy(
            state(ctx),
            &application,
            &environment,
            required,
            not_by_creator,
        )
        .await?;
        Ok(Environment::new(env, Arc::new(app)))
    }

    /// The CI checks the environment's new deployments wait for (gate
    /// CHECKS) before their rollout: each of `checks` (status contexts or
    /// check run names; on GitLab, `pipeline`), and with `all` every check
    /// the forge reports on the commit (at least one). Neither clears it.
    /// A deployment that waited `timeoutMinutes` (60 unless set; kept when
    /// left out) fails. Deployments already queued keep what they were
    /// created with; rollbacks never wait for checks.
    #[graphql(guard = "RoleGuard::new(roles::ADMIN)")]
    async fn set_required_checks(
        &self,
        ctx: &Context<'_>,
        application: String,
        environment: String,
        checks: Option<Vec<String>>,
        all: Option<bool>,
        timeout_minutes: Option<i64>,
    ) -> ApiResult<Environment> {
        let (env, app) = checks::set_required_checks(
            state(ctx),
            &application,
            &environment,
            checks.unwrap_or_default(),
            all.unwrap_or(false),
            timeout_minutes,
        )
        .await?;
        Ok(Environment::new(env, Arc::new(app)))
    }

    /// What the provider saw of the checks on `sha`, the commit of a
    /// deployment waiting at gate CHECKS (its sha from now on when it had
    /// none; another sha than a known one is `CONFLICT`). Every required
    /// check passed: the gate opens. One failed: the deployment ends FAILED
    /// naming it. Otherwise it keeps waiting, saying for which.
    #[graphql(guard = "RoleGuard::new(roles::PROVIDER)")]
    async fn report_checks(
        &self,
        ctx: &Context<'_>,
        deployment: ID,
        sha: String,
        checks: Vec<CheckInput>,
    ) -> ApiResult<Deployment> {
        let checks = checks
            .into_iter()
            .map(|c| StoredCheck {
                name: c.name,
                state: c.state.into(),
                url: c.url,
            })
            .collect();
        let view = checks::report(state(ctx), deployment_id(&deployment)?, &sha, checks).await?;
        Ok(Deployment::of(view))
    }

    /// Adds a freeze window: from each occurrence of `cron` (five fields, in
    /// `timeZone`, e.g. `0 16 * * FRI` and `Europe/Berlin`) for
    /// `durationMinutes`, new deployments wait until it ends (`WAIT`) or are
    /// refused (`REFUSE`). Auto-deploys too; rollbacks pass.
    #[graphql(guard = "RoleGuard::new(roles::ADMIN)")]
    #[allow(clippy::too_many_arguments)]
    async fn add_freeze_window(
        &self,
        ctx: &Context<'_>,
        application: String,
        environment: String,
        cron: String,
        duration_minutes: i64,
        time_zone: String,
        reason: String,
        mode: FreezeMode,
    ) -> ApiResult<FreezeWindow> {
        let by = caller(ctx)?.sub.clone();
        let window = gates::add_freeze_window(
            state(ctx),
            &by,
            gates::NewFreezeWindow {
                application,
                environment,
                cron,
                duration_minutes,
                time_zone,
                reason,
                mode: mode.into(),
            },
        )
        .await?;
        Ok(FreezeWindow::new(window, state(ctx).clock.now()))
    }

    /// Removes a freeze window; deployments already waiting for its end keep
    /// waiting (or an admin overrides them).
    #[graphql(guard = "RoleGuard::new(roles::ADMIN)")]
    async fn remove_freeze_window(&self, ctx: &Context<'_>, id: ID) -> ApiResult<FreezeWindow> {
        let id = id
            .parse::<i64>()
            .map_err(|_| ApiError::BadInput(format!("{} is not a freeze window id", quote(&id))))?;
        let window = gates::remove_freeze_window(state(ctx), id).await?;
        Ok(FreezeWindow::new(window, state(ctx).clock.now()))
    }

    /// Sets where the deployments of an environment are told about: a Slack
    /// incoming webhook or a webhook signed per the Standard Webhooks
    /// specification, for the `events` named. Setting the same kind and
    /// target again changes its events (and its secret, when given) and
    /// enables it again after a 410. The target and the secret are never
    /// shown back; a webhook given no `secret` gets one, answered this once.
    #[graphql(guard = "RoleGuard::new(roles::ADMIN)")]
    async fn set_notification(
        &self,
        ctx: &Context<'_>,
        input: SetNotificationInput,
    ) -> ApiResult<SetNotificationPayload> {
        let by = caller(ctx)?.sub.clone();
        let (notification, secret) = notifications::set(
            state(ctx),
            &by,
            notifications::NewNotification {
                application: input.application,
                environment: input.environment,
                kind: input.kind.into(),
                target: input.target,
                secret: input.secret,
                events: input.events.into_iter().map(Into::into).collect(),
            },
        )
        .await?;
        Ok(SetNotificationPayload {
            notification: Notification(notification),
            secret,
        })
    }

    /// Removes a notification: nothing more is sent to it, and what it
    /// still owed is discarded. Its deliveries stay on record.
    #[graphql(guard = "RoleGuard::new(roles::ADMIN)")]
    async fn remove_notification(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Notification> {
        let id = id
            .parse::<i64>()
            .map_err(|_| ApiError::BadInput(format!("{} is not a notification id", quote(&id))))?;
        Ok(Notification(notifications::remove(state(ctx), id).await?))
    }

    /// Approves a deployment waiting for approval; it then goes in its turn.
    /// The approval (who, when, comment) is kept on the deployment.
    #[graphql(guard = "RoleGuard::new(roles::OPERATE)")]
    async fn approve_deployment(
        &self,
        ctx: &Context<'_>,
        id: ID,
        comment: Option<String>,
    ) -> ApiResult<Deployment> {
        let by = caller(ctx)?.sub.clone();
        let view = gates::approve(state(ctx), deployment_id(&id)?, &by, comment.as_deref()).await?;
        Ok(Deployment::of(view))
    }

    /// Rejects a deployment waiting for approval: it ends CANCELLED, with
    /// who rejected it and the comment, which must say why.
    #[graphql(guard = "RoleGuard::new(roles::OPERATE)")]
    async fn reject_deployment(
        &self,
        ctx: &Context<'_>,
        id: ID,
        comment: String,
    ) -> ApiResult<Deployment> {
        let by = caller(ctx)?.sub.clone();
        let view = gates::reject(state(ctx), deployment_id(&id)?, &by, &comment).await?;
        Ok(Deployment::of(view))
    }

    /// Lets a deployment through the freeze window it waits for, recorded
    /// with the reason; it then waits for an approval if one is required.
    #[graphql(guard = "RoleGuard::new(roles::ADMIN)")]
    async fn override_freeze(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: String,
    ) -> ApiResult<Deployment> {
        let by = caller(ctx)?.sub.clone();
        let view = gates::override_freeze(state(ctx), deployment_id(&id)?, &by, &reason).await?;
        Ok(Deployment::of(view))
    }

    /// Queues a deployment (task `rollback`) that restores a release of the
    /// environment exactly: its commit's spec and the image digests it ran,
    /// not what the tags point at now. `to` is the release's number (`41` or
    /// `web#41`); the release before the current one when left out. It waits
    /// in the queue and respects the lock like any deployment, becomes a
    /// release of its own when it succeeds, and pauses the environment's
    /// auto-deploys until a person deploys explicitly or resumes them.
    #[graphql(guard = "RoleGuard::new(roles::DEPLOY)")]
    async fn rollback_deployment(
        &self,
        ctx: &Context<'_>,
        application: String,
        environment: String,
        to: Option<String>,
        reason: String,
    ) -> ApiResult<Deployment> {
        let by = caller(ctx)?.sub.clone();
        let view = releases::rollback(
            state(ctx),
            &by,
            releases::Rollback {
                application,
                environment,
                to,
                reason,
            },
        )
        .await?;
        Ok(Deployment::of(view))
    }

    /// Queues a deployment to environment `to` of exactly the release that
    /// runs in `from` (staging to production): its commit and the image
    /// digests it ran, nothing rebuilt or re-resolved.
    #[graphql(guard = "RoleGuard::new(roles::DEPLOY)")]
    async fn promote_deployment(
        &self,
        ctx: &Context<'_>,
        application: String,
        from: String,
        to: String,
    ) -> ApiResult<Deployment> {
        let by = caller(ctx)?.sub.clone();
        let view = releases::promote(state(ctx), &by, &application, &from, &to).await?;
        Ok(Deployment::of(view))
    }

    /// Lets pushes and pipelines deploy the environment again after a
    /// rollback paused them.
    #[graphql(guard = "RoleGuard::new(roles::DEPLOY)")]
    async fn resume_auto_deploy(
        &self,
        ctx: &Context<'_>,
        application: String,
        environment: String,
    ) -> ApiResult<Environment> {
        let (env, app) = releases::resume(state(ctx), &application, &environment).await?;
        Ok(Environment::new(env, Arc::new(app)))
    }

    /// Cancels a queued deployment at once, or asks the runner of one in
    /// progress to stop and roll back.
    #[graphql(guard = "RoleGuard::new(roles::OPERATE)")]
    async fn cancel_deployment(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Deployment> {
        let by = caller(ctx)?.sub.clone();
        let view = deployments::cancel(state(ctx), deployment_id(&id)?, &by).await?;
        Ok(Deployment::of(view))
    }

    /// Registers the calling runner (named by its token) with labels, version
    /// and the instance id of this process.
    #[graphql(guard = "RoleGuard::new(roles::RUNNER)")]
    async fn register_runner(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] labels: Vec<String>,
        version: Option<String>,
        instance: Option<String>,
    ) -> ApiResult<Runner> {
        let name = caller(ctx)?.sub.clone();
        Ok(Runner(
            runners::register(state(ctx), &name, labels, version, instance.as_deref()).await?,
        ))
    }

    /// Takes a queued deployment for the calling runner's `instance` (each
    /// process of a runner names itself; the held-deployment mutations must
    /// name the same instance). Of concurrent claims exactly one wins; the
    /// others get CONFLICT. A claim sent again by the holder returns the
    /// deployment, lease renewed.
    #[graphql(guard = "RoleGuard::new(roles::RUNNER)")]
    async fn claim_deployment(
        &self,
        ctx: &Context<'_>,
        id: ID,
        instance: Option<String>,
    ) -> ApiResult<Deployment> {
        let runner = caller(ctx)?.sub.clone();
        let holder = Holder::new(&runner, instance.as_deref());
        let view = leases::claim(state(ctx), holder, deployment_id(&id)?).await?;
        Ok(Deployment::of(view))
    }

    /// Renews the lease; `cancelRequested` in the answer tells the runner to stop.
    #[graphql(guard = "RoleGuard::new(roles::RUNNER)")]
    async fn heartbeat_deployment(
        &self,
        ctx: &Context<'_>,
        id: ID,
        instance: Option<String>,
    ) -> ApiResult<Deployment> {
        let runner = caller(ctx)?.sub.clone();
        let holder = Holder::new(&runner, instance.as_deref());
        let view = leases::heartbeat(state(ctx), holder, deployment_id(&id)?).await?;
        Ok(Deployment::of(view))
    }

    /// Stores log lines; they are numbered after the ones already stored.
    /// `after` (the last sequence number the runner knows stored) makes a
    /// retried batch store only the lines that are not stored yet.
    #[graphql(guard = "RoleGuard::new(roles::RUNNER)")]
    async fn append_deployment_logs(
        &self,
        ctx: &Context<'_>,
        id: ID,
        lines: Vec<LogLineInput>,
        after: Option<i64>,
        instance: Option<String>,
    ) -> ApiResult<Deployment> {
        let runner = caller(ctx)?.sub.clone();
        let holder = Holder::new(&runner, instance.as_deref());
        let id = deployment_id(&id)?;
        let lines = lines
            .into_iter()
            .map(|l| NewLine {
                text: l.text,
                stream: l.stream,
                at: l.at,
            })
            .collect();
        let row = logs::append(state(ctx), holder, id, lines, after).await?;
        let view = view::hydrate_one(&state(ctx).db, row).await?;
        Ok(Deployment::of(view))
    }

    // Each argument is one the schema offers; they go through one by one.
    #[allow(clippy::too_many_arguments)]
    #[graphql(guard = "RoleGuard::new(roles::RUNNER)")]
    async fn update_deployment_progress(
        &self,
        ctx: &Context<'_>,
        id: ID,
        phase: Option<DeploymentPhase>,
        message: Option<String>,
        sha: Option<String>,
        instance: Option<String>,
        #[graphql(
            desc = "How each service of the stack converges now, replacing what was said before."
        )]
        convergence: Option<Vec<ServiceConvergenceInput>>,
    ) -> ApiResult<Deployment> {
        let runner = caller(ctx)?.sub.clone();
        let view = leases::progress(
            state(ctx),
            Holder::new(&runner, instance.as_deref()),
            deployment_id(&id)?,
            phase.map(Into::into),
            message,
            sha,
            convergence.map(|services| services.into_iter().map(Into::into).collect()),
        )
        .await?;
        Ok(Deployment::of(view))
    }

    /// Records commits of the deployment's repository that the API may not
    /// know yet: those the runner walked from the commit it deploys back to
    /// the application's releases (`Application.releaseShas`), at most
    /// 1,000. Commits known already stay as they were (parents not known
    /// before are filled in). Returns how many were new.
    #[graphql(guard = "RoleGuard::new(roles::RUNNER)")]
    async fn report_deployment_commits(
        &self,
        ctx: &Context<'_>,
        id: ID,
        commits: Vec<CommitInput>,
        instance: Option<String>,
    ) -> ApiResult<i64> {
        let runner = caller(ctx)?.sub.clone();
        let commits = commits
            .into_iter()
            .map(|c| NewCommit {
                sha: c.sha,
                parents: c.parents,
                subject: c.subject,
                committed_at: c.committed_at,
            })
            .collect();
        let new = commits::report(
            state(ctx),
            Holder::new(&runner, instance.as_deref()),
            deployment_id(&id)?,
            commits,
        )
        .await?;
        Ok(new.try_into().unwrap_or(i64::MAX))
    }

    /// Asks a runner what deploying `ref` to `environment` would change:
    /// services created, updated (the fields that differ), unchanged or
    /// removed, with their images pinned to digests. Deploys nothing, takes
    /// no lock, waits for no queue; follow it with `plan(id)`. A plan no
    /// runner takes within 2 minutes ends FAILED.
    #[graphql(guard = "RoleGuard::new(roles::DEPLOY)")]
    async fn request_plan(
        &self,
        ctx: &Context<'_>,
        application: String,
        environment: String,
        r#ref: String,
    ) -> ApiResult<Plan> {
        let who = caller(ctx)?.sub.clone();
        let view = plans::create(state(ctx), &who, &application, &environment, &r#ref).await?;
        Ok(Plan(view))
    }

    /// Takes a requested plan; of concurrent claims one wins, the others
    /// (and any later claim) get CONFLICT.
    #[graphql(guard = "RoleGuard::new(roles::RUNNER)")]
    async fn claim_plan(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Plan> {
        let runner = caller(ctx)?.sub.clone();
        Ok(Plan(
            plans::claim(state(ctx), &runner, plan_id(&id)?).await?,
        ))
    }

    /// Answers a plan this runner claimed: DONE with `result` (the diff),
    /// FAILED with only `message` (why).
    #[graphql(guard = "RoleGuard::new(roles::RUNNER)")]
    async fn finish_plan(
        &self,
        ctx: &Context<'_>,
        id: ID,
        sha: Option<String>,
        result: Option<Json<serde_json::Value>>,
        message: Option<String>,
    ) -> ApiResult<Plan> {
        let runner = caller(ctx)?.sub.clone();
        let answer = Answer {
            sha,
            result: result.map(|r| r.0),
            message,
        };
        Ok(Plan(
            plans::finish(state(ctx), &runner, plan_id(&id)?, answer).await?,
        ))
    }

    /// Ends the deployment: SUCCEEDED, FAILED or CANCELLED. `services` records
    /// the images of the release.
    #[graphql(guard = "RoleGuard::new(roles::RUNNER)")]
    async fn finish_deployment(
        &self,
        ctx: &Context<'_>,
        id: ID,
        status: DeploymentStatus,
        message: Option<String>,
        services: Option<Vec<ServiceImageInput>>,
        instance: Option<String>,
    ) -> ApiResult<Deployment> {
        let runner = caller(ctx)?.sub.clone();
        let services = services.map(|list| {
            list.into_iter()
                .map(|s| ServiceImage {
                    name: s.name,
                    image: s.image,
                    digest: s.digest,
                    spec_hash: s.spec_hash,
                })
                .collect()
        });
        let view = leases::finish(
            state(ctx),
            Holder::new(&runner, instance.as_deref()),
            deployment_id(&id)?,
            status.into(),
            message,
            services,
        )
        .await?;
        Ok(Deployment::of(view))
    }
}

/// How one service of a deployment converges, as its runner sees it.
#[derive(InputObject)]
pub struct ServiceConvergenceInput {
    service: String,
    state: ConvergenceState,
    /// What the runner sees: `1/3 running`, the failing task's error.
    detail: Option<String>,
}

impl From<ServiceConvergenceInput> for crate::db::entities::deployment::ServiceConvergence {
    fn from(input: ServiceConvergenceInput) -> Self {
        Self {
            service: input.service,
            state: input.state.into(),
            detail: input.detail,
        }
    }
}
