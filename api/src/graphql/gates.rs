//! The schema's view of gates: what a deployment waits for, who let it
//! through, and the environment's approval policy, freeze windows and
//! required checks.
//!
//! A gate is its own object on `Deployment`, not a `DeploymentPhase`: a
//! phase says what a runner is doing to an IN_PROGRESS deployment, while a
//! gate holds a QUEUED one that no runner has, and it carries what a phase
//! cannot: what it waits for, since when, and until when.

use async_graphql::{SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::enums::{CheckState, FreezeMode, GateKind, ReviewVerdict};
use crate::checks;
use crate::db::entities::{deployment, environment};
use crate::gates::{self, freeze_window};

/// What a QUEUED deployment waits for; runners cannot claim it until then,
/// and it does not hold up the deployments behind it.
#[derive(SimpleObject)]
pub(crate) struct Gate {
    pub kind: GateKind,
    /// In words: "an approval by a deployer other than alice, who created it".
    pub waiting_for: String,
    pub since: DateTime<Utc>,
    /// When it opens by itself (a freeze window's end), or when the
    /// deployment fails if its checks have not passed by then (CHECKS);
    /// none for an approval.
    pub until: Option<DateTime<Utc>>,
}

impl Gate {
    pub(super) fn of(d: &deployment::Model) -> Option<Self> {
        Some(Gate {
            kind: d.gate?.into(),
            waiting_for: d.gate_waiting_for.clone().unwrap_or_default(),
            since: d.gate_since.unwrap_or(d.created_at),
            until: d.gate_until,
        })
    }
}

/// A person's approval or rejection of a deployment.
#[derive(SimpleObject)]
pub(crate) struct Review {
    pub verdict: ReviewVerdict,
    pub by: String,
    pub at: DateTime<Utc>,
    pub comment: Option<String>,
}

impl Review {
    pub(super) fn of(d: &deployment::Model) -> Option<Self> {
        Some(Review {
            verdict: d.review_verdict?.into(),
            by: d.reviewed_by.clone().unwrap_or_default(),
            at: d.reviewed_at.unwrap_or(d.created_at),
            comment: d.review_comment.clone(),
        })
    }
}

/// An admin's override of the freeze window a deployment waited for.
#[derive(SimpleObject)]
pub(crate) struct FreezeOverride {
    pub by: String,
    pub at: DateTime<Utc>,
    pub reason: String,
}

impl FreezeOverride {
    pub(super) fn of(d: &deployment::Model) -> Option<Self> {
        Some(FreezeOverride {
            by: d.freeze_overridden_by.clone()?,
            at: d.freeze_overridden_at.unwrap_or(d.created_at),
            reason: d.freeze_override_reason.clone().unwrap_or_default(),
        })
    }
}

/// Whether an environment's deployments wait for an approval.
#[derive(SimpleObject)]
pub(crate) struct ApprovalPolicy {
    pub required: bool,
    /// The deployment's creator may not approve it.
    pub not_by_creator: bool,
}

impl ApprovalPolicy {
    pub(super) fn of(env: &environment::Model) -> Self {
        ApprovalPolicy {
            required: env.approval_required,
            not_by_creator: env.approval_not_by_creator,
        }
    }
}

/// A recurring time in which an environment takes no new deployments.
#[derive(SimpleObject)]
pub(crate) struct FreezeWindow {
    pub id: ID,
    /// Five fields, read in `timeZone`: `0 16 * * FRI` is Fridays at 16:00.
    pub cron: String,
    pub duration_minutes: i64,
    pub time_zone: String,
    pub reason: String,
    pub mode: FreezeMode,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// When the occurrence in force now ends; none when it is not in force.
    pub active_until: Option<DateTime<Utc>>,
}

impl FreezeWindow {
    pub(super) fn new(w: freeze_window::Model, now: DateTime<Utc>) -> Self {
        let active_until = gates::active_until(&w, now).ok().flatten();
        FreezeWindow {
            id: ID(w.id.to_string()),
            cron: w.cron,
            duration_minutes: w.duration_minutes,
            time_zone: w.time_zone,
            reason: w.reason,
            mode: w.mode.into(),
            created_by: w.created_by,
            created_at: w.created_at,
            active_until,
        }
    }
}

/// The CI checks deployments must pass before their rollout.
///
/// `names` must each pass. With `all`, every other check the forge reports
/// on the commit must pass too, and at least one must be reported (a commit
/// with no statuses and no check runs is pending, not passed). A deployment
/// created with `force` waits for `names` only — with `all` and no names,
/// for none.
#[derive(SimpleObject)]
pub(crate) struct RequiredChecks {
    pub names: Vec<String>,
    pub all: bool,
    /// How long a deployment waits for them before it fails.
    pub timeout_minutes: i64,
}

impl RequiredChecks {
    pub(super) fn of(required: checks::StoredRequiredChecks) -> Self {
        RequiredChecks {
            names: required.names,
            all: required.all,
            timeout_minutes: required.timeout_minutes,
        }
    }
}

/// A CI check on a deployment's commit, as the provider last reported it.
#[derive(SimpleObject)]
pub(crate) struct Check {
    /// The status context (`ci/build`), the check run's name, or `pipeline`
    /// (GitLab).
    pub name: String,
    pub state: CheckState,
    /// Where a person reads it (the forge's page of the check).
    pub url: Option<String>,
}

impl Check {
    pub(super) fn of(c: checks::StoredCheck) -> Self {
        Check {
            name: c.name,
            state: c.state.into(),
            url: c.url,
        }
    }
}
