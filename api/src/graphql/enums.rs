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

/// What a QUEUED deployment waits for before a runner may take it.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::gates::GateKind")]
pub(crate) enum GateKind {
    /// A deployer's approval (`approveDeployment`).
    Approval,
    /// The end of the freeze window it was created in, or an admin's
    /// `overrideFreeze`.
    Freeze,
    /// The environment's required CI checks to pass on its commit, as the
    /// provider reports them (`reportChecks`); `until` is when it times out.
    Checks,
}

/// A CI check's state on a commit, as the provider reads it from the forge.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::checks::CheckState")]
pub(crate) enum CheckState {
    /// Not finished (or not started: queued, waiting, no pipeline yet).
    Pending,
    /// Passed (GitHub: `success`, `neutral` and `skipped` check runs too).
    Success,
    /// Failed, errored, cancelled or timed out.
    Failure,
}

/// What a deployment created inside a freeze window does.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::gates::FreezeMode")]
pub(crate) enum FreezeMode {
    /// It waits, QUEUED at gate FREEZE, until the window ends.
    Wait,
    /// It is refused with `CONFLICT`, giving the window's reason.
    Refuse,
}

/// What a person decided about a deployment that waited for approval.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::gates::ReviewVerdict")]
pub(crate) enum ReviewVerdict {
    Approved,
    /// It ended CANCELLED.
    Rejected,
}
