//! The schema's enums: twins of the domain's, converted both ways, so that the
//! domain does not depend on GraphQL.

use async_graphql::Enum;

use crate::db::entities::environment;
use crate::deployments;
use crate::plans;

/// Where a deployment is in its life.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "deployments::DeploymentStatus")]
pub(crate) enum DeploymentStatus {
    Queued,
    InProgress,
    Succeeded,
    Failed,
    Cancelled,
}

/// What a new deployment does to the ones queued before it in its environment.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "environment::QueuePolicy")]
pub(crate) enum QueuePolicy {
    /// They run first, in order (the default).
    Fifo,
    /// It supersedes them: they end CANCELLED, naming it.
    Latest,
}

/// How a service of a deployment converges.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::db::entities::deployment::ConvergenceState")]
pub(crate) enum ConvergenceState {
    /// Its tasks are on their way to running the new spec.
    Converging,
    /// Every task runs the new spec and stayed up.
    Converged,
    /// It failed to converge.
    Failed,
}

/// What an IN_PROGRESS deployment is doing.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "deployments::DeploymentPhase")]
pub(crate) enum DeploymentPhase {
    Cloning,
    Planning,
    Updating,
    Verifying,
    RollingBack,
}

/// Where a plan is: waiting for a runner, being planned, answered, or failed.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "plans::PlanStatus")]
pub(crate) enum PlanStatus {
    Queued,
    Running,
    Done,
    Failed,
}
