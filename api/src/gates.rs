//! Gates before a rollout: freeze windows, required checks, approvals.
//!
//! A gate holds a QUEUED deployment back until it opens: a person approves it
//! (gate `Approval`), the freeze window it was created in ends or an admin
//! overrides it (gate `Freeze`), or CI passes on its commit (gate `Checks`,
//! see [`crate::checks`]). They come in that order: freeze, checks, approval
//! (a person approves what CI passed). A gated deployment is not claimable and does
//! not count as "queued before" the others of its environment, so it never
//! holds the environment's one in-progress slot while it waits for a person
//! or a time: a rollback can go first.
//!
//! A rollback passes every gate: it restores what already ran there, which is
//! what a gate protects, and it is what one needs in a freeze.
//!
//! Gates are evaluated when a deployment is created (a `REFUSE` window
//! refuses it then); a `Freeze` gate is opened by [`open_expired`], which the
//! API runs periodically with the lease reaper and which announces the
//! deployments that became claimable to runners.

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, ModelTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};

use crate::applications;
use crate::checks;
use crate::db::entities::deployment::{self, DeploymentStatus};
pub use crate::db::entities::deployment::{GateKind, ReviewVerdict};
pub use crate::db::entities::freeze_window::{self, FreezeMode};
use crate::db::entities::{application, environment};
use crate::deployments::{self, NewDeployment};
use crate::error::{quote, ApiError, ApiResult};
use crate::releases::ROLLBACK_TASK;
use crate::state::AppState;
use crate::view::{self, DeploymentView};

/// The longest freeze window: four weeks.
const MAX_DURATION_MINUTES: i64 = 28 * 24 * 60;
const MAX_TEXT: usize = 4096;

/// A gate a deployment waits at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gate {
    pub kind: GateKind,
    /// When it opens by itself (a freeze window's end).
    pub until: Option<DateTime<Utc>>,
    /// What it waits for, in words.
    pub waiting_for: String,
}

/// A freeze window as an admin adds it.
#[derive(Clone, Debug)]
pub struct NewFreezeWindow {
    pub application: String,
    pub environment: String,
    pub cron: String,
    pub duration_minutes: i64,
    pub time_zone: String,
    pub reason: String,
    pub mode: FreezeMode,
}

fn parse_cron(cron: &str) -> ApiResult<Cron> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(cron)
        .map_err(|err| {
            ApiError::BadInput(format!(
                "`cron` {} is not a cron expression of five fields \
                 (minute hour day-of-month month day-of-week, e.g. `0 16 * * FRI`): {err}",
                quote(cron)
            ))
        })
}

fn parse_zone(zone: &str) -> ApiResult<Tz> {
    Tz::from_str(zone).map_err(|_| {
        ApiError::BadInput(format!(
            "`timeZone` {} is not an IANA time zone such as `Europe/Berlin` or `UTC`",
            quote(zone)
        ))
    })
}

/// When the occurrence of `window` that covers `at` ends, if one does: the
/// latest start at or before `at` (in the window's zone, so that 16:00 stays
/// 16:00 local across a DST change) plus its duration.
pub fn active_until(
    window: &freeze_window::Model,
    at: DateTime<Utc>,
) -> ApiResult<Option<DateTime<Utc>>> {
    let cron = parse_cron(&window.cron)?;
    let zone = parse_zone(&window.time_zone)?;
    let local = at.with_timezone(&zone);
    let Ok(start) = cron.find_previous_occurrence(&local, true) else {
        return Ok(None);
    };
    let end = start.with_timezone(&Utc) + Duration::minutes(window.duration_minutes);
    Ok((end > at).then_some(end))
}

/// `Fri 2026-12-04 16:00 CET`: a time as the window's people read it.
fn local(at: DateTime<Utc>, zone: &str) -> String {
    match Tz::from_str(zone) {
        Ok(tz) => at
            .with_timezone(&tz)
            .format("%a %Y-%m-%d %H:%M %Z")
            .to_string(),
        Err(_) => at.to_rfc3339(),
    }
}

/// What a new deployment must pass before its rollout.
#[derive(Clone, Debug, Default)]
pub(crate) struct Admission {
    /// The gate it waits at first, if any.
    pub gate: Option<Gate>,
    /// The checks it waits for (now or after a freeze window).
    pub checks: Option<checks::StoredRequiredChecks>,
    /// It went past a freeze window in force by an admin's override
    /// (`override_freeze`).
    pub overrode_freeze: bool,
}

/// The gate a new deployment waits at, if any, the checks it requires, and
/// whether an admin's override took it past a freeze window; `CONFLICT`
/// when a `REFUSE` window covers `now` and nobody overrides it.
pub(crate) async fn at_creation(
    db: &impl ConnectionTrait,
    env: &environment::Model,
    app: &application::Model,
    input: &NewDeployment,
    created_by: &str,
    now: DateTime<Utc>,
) -> ApiResult<Admission> {
    if input.restores.is_some() && input.task.as_deref() == Some(ROLLBACK_TASK) {
        return Ok(Admission::default());
    }
    if let Some(reason) = &input.override_freeze {
        validate_comment("overrideFreeze", reason, true)?;
    }
    let required = checks::for_new(env, input.force);
    let (freeze, overrode_freeze) =
        freeze_at_creation(db, env, app, input, created_by, now).await?;
    let gate = match (freeze, &required) {
        (Some(freeze), _) => Some(freeze),
        (None, Some(required)) => Some(checks::gate_at_creation(
            input.sha.as_deref(),
            &input.ref_name,
            required,
            now,
        )),
        (None, None) => approval_gate(env, created_by),
    };
    Ok(Admission {
        gate,
        checks: required,
        overrode_freeze,
    })
}

/// The freeze gate a deployment created `now` waits at, if any, and whether
/// an admin's override went past the windows in force.
async fn freeze_at_creation(
    db: &impl ConnectionTrait,
    env: &environment::Model,
    app: &application::Model,
    input: &NewDeployment,
    created_by: &str,
    now: DateTime<Utc>,
) -> ApiResult<(Option<Gate>, bool)> {
    let mut waiting: Option<(freeze_window::Model, DateTime<Utc>)> = None;
    for window in windows(db, env.id).await? {
        let Some(end) = active_until(&window, now)? else {
            continue;
        };
        if input.override_freeze.is_some() {
            tracing::warn!(
                environment = env.id,
                window = window.id,
                by = created_by,
                "freeze window overridden at creation"
            );
            return Ok((None, true));
        }
        match window.mode {
            FreezeMode::Refuse => {
                return Err(ApiError::Conflict(format!(
                    "`{}` of `{}` is frozen until {} ({}): {}; deployments created in \
                     this window are refused (freeze window {}, mode REFUSE; an admin may \
                     create one with `overrideFreeze` and a reason)",
                    env.name,
                    app.name,
                    local(end, &window.time_zone),
                    end.to_rfc3339(),
                    window.reason,
                    window.id
                )))
            }
            FreezeMode::Wait => {
                if waiting.as_ref().is_none_or(|(_, until)| end > *until) {
                    waiting = Some((window, end));
                }
            }
        }
    }
    Ok((
        waiting.map(|(window, end)| freeze_gate(env, &window, end)),
        false,
    ))
}

/// The gate after a freeze window: the checks when it requires some, else
/// an approval when its environment requires one.
fn after_freeze(view: &DeploymentView, now: DateTime<Utc>) -> Option<Gate> {
    checks::first_gate(&view.deployment, now)
        .or_else(|| approval_gate(&view.environment, &view.deployment.created_by))
}

fn freeze_gate(
    env: &environment::Model,
    window: &freeze_window::Model,
    end: DateTime<Utc>,
) -> Gate {
    Gate {
        kind: GateKind::Freeze,
        until: Some(end),
        waiting_for: format!(
            "the end of freeze window {} of `{}` at {} ({}): {}; an admin may override it",
            window.id,
            env.name,
            local(end, &window.time_zone),
            end.to_rfc3339(),
            window.reason
        ),
    }
}

pub(crate) fn approval_gate(env: &environment::Model, created_by: &str) -> Option<Gate> {
    env.approval_required.then(|| Gate {
        kind: GateKind::Approval,
        until: None,
        waiting_for: if env.approval_not_by_creator {
            format!("an approval by a deployer other than {created_by}, who created it")
        } else {
            "an approval by a deployer".to_owned()
        },
    })
}

/// The freeze windows of an environment, oldest first.
pub async fn windows(
    db: &impl ConnectionTrait,
    environment_id: i64,
) -> ApiResult<Vec<freeze_window::Model>> {
    Ok(freeze_window::Entity::find()
        .filter(freeze_window::Column::EnvironmentId.eq(environment_id))
        .order_by_asc(freeze_window::Column::Id)
        .all(db)
        .await?)
}

pub(crate) async fn environment_of(
    db: &impl ConnectionTrait,
    application: &str,
    name: &str,
) -> ApiResult<(environment::Model, application::Model)> {
    let app = applications::get(db, application).await?;
    let env = applications::find_environment(db, app.id, name)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "environment `{name}` of `{application}` does not exist"
            ))
        })?;
    Ok((env, app))
}

/// Whether the environment's new deployments wait for an approval, and
/// whether their creator may give it. Deployments already queued keep the
/// gate they have.
pub async fn set_approval_policy(
    state: &AppState,
    application: &str,
    name: &str,
    required: bool,
    not_by_creator: bool,
) -> ApiResult<(environment::Model, application::Model)> {
    let (env, app) = environment_of(&state.db, application, name).await?;
    let env = environment::ActiveModel {
        id: Set(env.id),
        approval_required: Set(required),
        approval_not_by_creator: Set(not_by_creator),
        ..Default::default()
    }
    .update(&state.db)
    .await?;
    Ok((env, app))
}

pub async fn add_freeze_window(
    state: &AppState,
    by: &str,
    input: NewFreezeWindow,
) -> ApiResult<freeze_window::Model> {
    parse_cron(&input.cron)?;
    parse_zone(&input.time_zone)?;
    if !(1..=MAX_DURATION_MINUTES).contains(&input.duration_minutes) {
        return Err(ApiError::BadInput(format!(
            "`durationMinutes` must be 1 to {MAX_DURATION_MINUTES} (four weeks), not {}",
            input.duration_minutes
        )));
    }
    if input.reason.trim().is_empty() || input.reason.len() > MAX_TEXT {
        return Err(ApiError::BadInput(format!(
            "`reason` must say why the environment is frozen, in 1 to {MAX_TEXT} characters"
        )));
    }
    let (env, _) = environment_of(&state.db, &input.application, &input.environment).await?;
    Ok(freeze_window::ActiveModel {
        environment_id: Set(env.id),
        cron: Set(input.cron.trim().to_owned()),
        duration_minutes: Set(input.duration_minutes),
        time_zone: Set(input.time_zone),
        reason: Set(input.reason),
        mode: Set(input.mode),
        created_by: Set(by.to_owned()),
        created_at: Set(state.clock.now()),
        ..Default::default()
    }
    .insert(&state.db)
    .await?)
}

/// Removes a freeze window. Deployments that wait for its end keep waiting
/// until then (or an override): removing a window changes what comes, not
/// what was decided.
pub async fn remove_freeze_window(state: &AppState, id: i64) -> ApiResult<freeze_window::Model> {
    let window = freeze_window::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("freeze window {id} does not exist")))?;
    window.clone().delete(&state.db).await?;
    Ok(window)
}

fn validate_comment(what: &str, text: &str, required: bool) -> ApiResult<()> {
    if required && text.trim().is_empty() {
        return Err(ApiError::BadInput(format!("`{what}` must say why")));
    }
    if text.len() > MAX_TEXT {
        return Err(ApiError::BadInput(format!(
            "`{what}` is longer than {MAX_TEXT} characters"
        )));
    }
    Ok(())
}

/// The deployment `id`, which must be QUEUED at a gate of `kind`.
pub(crate) async fn at_gate(
    state: &AppState,
    id: i64,
    kind: GateKind,
) -> ApiResult<DeploymentView> {
    let view = view::get(&state.db, id).await?;
    let d = &view.deployment;
    let what = match kind {
        GateKind::Approval => "an approval",
        GateKind::Freeze => "the end of a freeze window",
        GateKind::Checks => "checks",
    };
    if d.status != DeploymentStatus::Queued {
        return Err(ApiError::Conflict(format!(
            "deployment {} is {}, not waiting for {what}",
            view.name(),
            d.status.as_str()
        )));
    }
    match d.gate {
        Some(gate) if gate == kind => Ok(view),
        Some(_) => Err(ApiError::Conflict(format!(
            "deployment {} waits for {}, not for {what}",
            view.name(),
            d.gate_waiting_for.as_deref().unwrap_or("another gate")
        ))),
        None => Err(ApiError::Conflict(format!(
            "deployment {} is not waiting for {what}",
            view.name()
        ))),
    }
}

/// Moves a QUEUED deployment from gate `from` to `next` (or to no gate),
/// with `extra` columns set on the way; `None` when another request moved it
/// first.
pub(crate) async fn move_gate(
    state: &AppState,
    row: &deployment::Model,
    from: GateKind,
    next: Option<Gate>,
    extra: Vec<(deployment::Column, sea_orm::Value)>,
) -> ApiResult<Option<deployment::Model>> {
    let now = state.clock.now();
    let mut update = deployment::Entity::update_many();
    update = match &next {
        Some(gate) => update
            .col_expr(deployment::Column::Gate, Expr::value(gate.kind))
            .col_expr(deployment::Column::GateSince, Expr::value(now))
            .col_expr(deployment::Column::GateUntil, Expr::value(gate.until))
            .col_expr(
                deployment::Column::GateWaitingFor,
                Expr::value(gate.waiting_for.clone()),
            )
            .col_expr(
                deployment::Column::Message,
                Expr::value(format!("waiting for {}", gate.waiting_for)),
            ),
        None => update
            .col_expr(deployment::Column::Gate, Expr::value(None::<GateKind>))
            .col_expr(
                deployment::Column::GateSince,
                Expr::value(None::<DateTime<Utc>>),
            )
            .col_expr(
                deployment::Column::GateUntil,
                Expr::value(None::<DateTime<Utc>>),
            )
            .col_expr(
                deployment::Column::GateWaitingFor,
                Expr::value(None::<String>),
            )
            .col_expr(deployment::Column::Message, Expr::value(None::<String>)),
    };
    for (column, value) in extra {
        update = update.col_expr(column, Expr::value(value));
    }
    Ok(update
        .filter(deployment::Column::Id.eq(row.id))
        .filter(deployment::Column::Status.eq(DeploymentStatus::Queued))
        .filter(deployment::Column::Gate.eq(from))
        .exec_with_returning(&state.db)
        .await?
        .pop())
}

pub(crate) async fn announce(
    state: &AppState,
    row: deployment::Model,
) -> ApiResult<DeploymentView> {
    let view = view::hydrate_one(&state.db, row).await?;
    state.events.deployment_changed(&state.db, &view).await;
    deployments::publish_next_claimable(state, view.environment.id).await?;
    Ok(view)
}

pub(crate) fn moved_first(view: &DeploymentView) -> ApiError {
    ApiError::Conflict(format!(
        "deployment {} changed while this was asked; look at it again",
        view.name()
    ))
}

/// Approves a deployment waiting for approval: it becomes claimable in its
/// turn. `FORBIDDEN` for its creator when the environment says so.
pub async fn approve(
    state: &AppState,
    id: i64,
    by: &str,
    comment: Option<&str>,
) -> ApiResult<DeploymentView> {
    validate_comment("comment", comment.unwrap_or_default(), false)?;
    let view = at_gate(state, id, GateKind::Approval).await?;
    let d = &view.deployment;
    if view.environment.approval_not_by_creator && d.created_by == by {
        return Err(ApiError::Forbidden(format!(
            "{by} created deployment {} and may not approve it: `{}` of `{}` needs the \
             approval of another deployer",
            view.name(),
            view.environment.name,
            view.application.name
        )));
    }
    let row = move_gate(
        state,
        d,
        GateKind::Approval,
        None,
        review(ReviewVerdict::Approved, by, comment, state.clock.now()),
    )
    .await?
    .ok_or_else(|| moved_first(&view))?;
    tracing::info!(deployment = id, by, "deployment approved");
    announce(state, row).await
}

/// Rejects a deployment waiting for approval: it ends CANCELLED, saying who
/// rejected it and why.
pub async fn reject(
    state: &AppState,
    id: i64,
    by: &str,
    comment: &str,
) -> ApiResult<DeploymentView> {
    validate_comment("comment", comment, true)?;
    let view = at_gate(state, id, GateKind::Approval).await?;
    let now = state.clock.now();
    let mut update = deployment::Entity::update_many()
        .col_expr(
            deployment::Column::Status,
            Expr::value(DeploymentStatus::Cancelled),
        )
        .col_expr(deployment::Column::FinishedAt, Expr::value(now))
        .col_expr(
            deployment::Column::Message,
            Expr::value(format!("rejected by {by}: {comment}")),
        )
        .col_expr(deployment::Column::Gate, Expr::value(None::<GateKind>))
        .col_expr(
            deployment::Column::GateSince,
            Expr::value(None::<DateTime<Utc>>),
        )
        .col_expr(
            deployment::Column::GateUntil,
            Expr::value(None::<DateTime<Utc>>),
        )
        .col_expr(
            deployment::Column::GateWaitingFor,
            Expr::value(None::<String>),
        );
    for (column, value) in review(ReviewVerdict::Rejected, by, Some(comment), now) {
        update = update.col_expr(column, Expr::value(value));
    }
    let row = update
        .filter(deployment::Column::Id.eq(id))
        .filter(deployment::Column::Status.eq(DeploymentStatus::Queued))
        .filter(deployment::Column::Gate.eq(GateKind::Approval))
        .exec_with_returning(&state.db)
        .await?
        .pop()
        .ok_or_else(|| moved_first(&view))?;
    tracing::info!(deployment = id, by, "deployment rejected");
    announce(state, row).await
}

fn review(
    verdict: ReviewVerdict,
    by: &str,
    comment: Option<&str>,
    now: DateTime<Utc>,
) -> Vec<(deployment::Column, sea_orm::Value)> {
    vec![
        (deployment::Column::ReviewVerdict, Some(verdict).into()),
        (deployment::Column::ReviewedBy, Some(by.to_owned()).into()),
        (deployment::Column::ReviewedAt, Some(now).into()),
        (
            deployment::Column::ReviewComment,
            comment.filter(|c| !c.is_empty()).map(str::to_owned).into(),
        ),
    ]
}

/// Lets a deployment through the freeze window it waits for (an admin's
/// call, recorded with the reason). It then waits for its checks, or an
/// approval, when its environment requires them.
pub async fn override_freeze(
    state: &AppState,
    id: i64,
    by: &str,
    reason: &str,
) -> ApiResult<DeploymentView> {
    validate_comment("reason", reason, true)?;
    let view = at_gate(state, id, GateKind::Freeze).await?;
    let d = &view.deployment;
    let next = after_freeze(&view, state.clock.now());
    let row = move_gate(
        state,
        d,
        GateKind::Freeze,
        next,
        vec![
            (
                deployment::Column::FreezeOverriddenBy,
                Some(by.to_owned()).into(),
            ),
            (
                deployment::Column::FreezeOverriddenAt,
                Some(state.clock.now()).into(),
            ),
            (
                deployment::Column::FreezeOverrideReason,
                Some(reason.to_owned()).into(),
            ),
        ],
    )
    .await?
    .ok_or_else(|| moved_first(&view))?;
    tracing::warn!(deployment = id, by, reason, "freeze overridden");
    announce(state, row).await
}

/// Opens the `Freeze` gates whose window has ended: each deployment moves on
/// to its checks or its approval (when required) or becomes claimable, and runners hear of
/// it. One whose environment froze again meanwhile (another `WAIT` window)
/// waits for that one's end. Returns the deployments it moved.
pub async fn open_expired(state: &AppState) -> ApiResult<Vec<DeploymentView>> {
    let now = state.clock.now();
    let due = deployment::Entity::find()
        .filter(deployment::Column::Status.eq(DeploymentStatus::Queued))
        .filter(deployment::Column::Gate.eq(GateKind::Freeze))
        .filter(deployment::Column::GateUntil.lte(now))
        .order_by_asc(deployment::Column::Id)
        .all(&state.db)
        .await?;
    let mut opened = Vec::new();
    for d in due {
        let view = view::hydrate_one(&state.db, d).await?;
        let env = &view.environment;
        let mut next = None;
        for window in windows(&state.db, env.id).await? {
            if window.mode != FreezeMode::Wait {
                continue;
            }
            if let Some(end) = active_until(&window, now)? {
                if next.as_ref().is_none_or(|g: &Gate| g.until < Some(end)) {
                    next = Some(freeze_gate(env, &window, end));
                }
            }
        }
        let next = next.or_else(|| after_freeze(&view, now));
        if let Some(row) =
            move_gate(state, &view.deployment, GateKind::Freeze, next, Vec::new()).await?
        {
            tracing::info!(deployment = row.id, gate = ?row.gate, "freeze window ended");
            opened.push(announce(state, row).await?);
        }
    }
    Ok(opened)
}

/// The deployments QUEUED at a gate of `kind`, oldest first (at most 500).
pub async fn waiting_at(
    db: &impl ConnectionTrait,
    kind: GateKind,
) -> ApiResult<Vec<DeploymentView>> {
    let rows = deployment::Entity::find()
        .filter(deployment::Column::Status.eq(DeploymentStatus::Queued))
        .filter(deployment::Column::Gate.eq(kind))
        .order_by_asc(deployment::Column::Id)
        .limit(500)
        .all(db)
        .await?;
    view::hydrate(db, rows).await
}

impl DeploymentView {
    /// The gate it waits at, if any.
    pub fn gate(&self) -> Option<Gate> {
        let d = &self.deployment;
        Some(Gate {
            kind: d.gate?,
            until: d.gate_until,
            waiting_for: d.gate_waiting_for.clone().unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn window(cron: &str, minutes: i64, zone: &str) -> freeze_window::Model {
        freeze_window::Model {
            id: 1,
            environment_id: 1,
            cron: cron.into(),
            duration_minutes: minutes,
            time_zone: zone.into(),
            reason: "r".into(),
            mode: FreezeMode::Wait,
            created_by: "a".into(),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn a_window_follows_its_zone_across_daylight_saving() {
        let fridays = window("0 16 * * FRI", 8 * 60, "Europe/Berlin");
        // Summer (CEST, UTC+2): 16:00 local is 14:00 UTC.
        let summer = Utc.with_ymd_and_hms(2026, 7, 3, 14, 30, 0).unwrap();
        assert_eq!(
            active_until(&fridays, summer).unwrap(),
            Some(Utc.with_ymd_and_hms(2026, 7, 3, 22, 0, 0).unwrap())
        );
        let before = Utc.with_ymd_and_hms(2026, 7, 3, 13, 59, 0).unwrap();
        assert_eq!(active_until(&fridays, before).unwrap(), None);
        // Winter (CET, UTC+1): 16:00 local is 15:00 UTC, so 14:30 UTC is not frozen.
        let winter = Utc.with_ymd_and_hms(2026, 12, 4, 14, 30, 0).unwrap();
        assert_eq!(active_until(&fridays, winter).unwrap(), None);
        let winter = Utc.with_ymd_and_hms(2026, 12, 4, 15, 0, 0).unwrap();
        assert_eq!(
            active_until(&fridays, winter).unwrap(),
            Some(Utc.with_ymd_and_hms(2026, 12, 4, 23, 0, 0).unwrap())
        );
    }

    #[test]
    fn bad_cron_and_zones_say_what_is_wrong() {
        let err = format!("{:?}", parse_cron("0 16 * *").unwrap_err());
        assert!(err.contains("five fields"), "{err}");
        let err = format!("{:?}", parse_zone("Europe/Bärlin").unwrap_err());
        assert!(err.contains("IANA"), "{err}");
    }
}
