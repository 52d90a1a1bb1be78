use std::sync::Arc;

use async_graphql::connection::Connection;
use async_graphql::{Context, Object, ID};

use super::enums::{DeploymentStatus, GateKind};
use super::types::{
    deployment_id, deployment_page, plan_id, state, Application, Deployment, Plan, Runner, Viewer,
};
use crate::auth::{caller, roles, Role, RoleGuard};
use crate::deployments::{self, Filter};
use crate::error::{ApiError, ApiResult};
use crate::{applications, gates, plans, runners, view};

pub struct Query;

#[Object]
impl Query {
    /// The caller, as its token says.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn viewer(&self, ctx: &Context<'_>) -> ApiResult<Viewer> {
        let claims = caller(ctx)?;
        Ok(Viewer {
            subject: claims.sub.clone(),
            role: claims.role,
        })
    }

    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn applications(&self, ctx: &Context<'_>) -> ApiResult<Vec<Application>> {
        let apps = applications::list(&state(ctx).db).await?;
        Ok(apps.into_iter().map(|a| Application(Arc::new(a))).collect())
    }

    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn application(&self, ctx: &Context<'_>, name: String) -> ApiResult<Option<Application>> {
        let app = applications::find(&state(ctx).db, &name).await?;
        Ok(app.map(|a| Application(Arc::new(a))))
    }

    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn deployment(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<Deployment>> {
        match view::get(&state(ctx).db, deployment_id(&id)?).await {
            Ok(view) => Ok(Some(Deployment::of(view))),
            Err(ApiError::NotFound(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Deployments, newest first, optionally of one application, environment or status.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn deployments(
        &self,
        ctx: &Context<'_>,
        application: Option<String>,
        environment: Option<String>,
        status: Option<DeploymentStatus>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, Deployment>> {
        let filter = Filter {
            application,
            environment,
            status: status.map(Into::into),
        };
        deployment_page(state(ctx), &filter, first, after).await
    }

    /// Deployments a runner may claim now: per environment the oldest queued one,
    /// when none is in progress. Runners read this after every (re)connect;
    /// a runner gets only those of environments whose `runnerLabels` it has.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn claimable_deployments(&self, ctx: &Context<'_>) -> ApiResult<Vec<Deployment>> {
        let caller = caller(ctx)?;
        let has = match caller.role {
            Role::Runner => Some(runners::labels_of(state(ctx), &caller.sub).await?),
            _ => None,
        };
        let views = deployments::claimable(&state(ctx).db).await?;
        Ok(views
            .into_iter()
            .filter(|v| has.as_ref().is_none_or(|has| runners::may_take(has, v)))
            .map(Deployment::of)
            .collect())
    }

    /// Deployments QUEUED at a gate of `kind`, oldest first (at most 500).
    /// The provider reads those at CHECKS to evaluate them on the forge.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn deployments_at_gate(
        &self,
        ctx: &Context<'_>,
        kind: GateKind,
    ) -> ApiResult<Vec<Deployment>> {
        let views = gates::waiting_at(&state(ctx).db, kind.into()).await?;
        Ok(views.into_iter().map(Deployment::of).collect())
    }

    /// The plan `id` (see `requestPlan`).
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn plan(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Plan> {
        Ok(Plan(plans::get(&state(ctx).db, plan_id(&id)?).await?))
    }

    /// Plans waiting for a runner, oldest first. Runners read this after
    /// every (re)connect, for what `planRequested` told while they were away;
    /// each gets only those of environments whose `runnerLabels` it has.
    #[graphql(guard = "RoleGuard::new(roles::RUNNER)")]
    async fn requested_plans(&self, ctx: &Context<'_>) -> ApiResult<Vec<Plan>> {
        let has = runners::labels_of(state(ctx), &caller(ctx)?.sub).await?;
        let views = plans::requested(&state(ctx).db).await?;
        Ok(views
            .into_iter()
            .filter(|v| runners::serves(&has, &runners::required(&v.environment)))
            .map(Plan)
            .collect())
    }

    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn runners(&self, ctx: &Context<'_>) -> ApiResult<Vec<Runner>> {
        let list = runners::list(state(ctx)).await?;
        Ok(list.into_iter().map(Runner).collect())
    }

    /// What was done, by whom, from where, and how it ended — every
    /// mutation and every form of the web UI — newest first (admins only).
    /// Entries name what they acted on, and stay when it is gone.
    #[graphql(guard = "RoleGuard::new(roles::ADMIN)")]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        application: Option<String>,
        actor: Option<String>,
    ) -> ApiResult<Connection<String, super::audit::AuditEntry>> {
        let filter = crate::audit::Filter { application, actor };
        super::audit::audit_page(ctx, filter, first, after).await
    }
}
