//! Required CI checks: the gate `Checks`, which holds a QUEUED deployment
//! until CI passed on its commit.
//!
//! An environment names the checks its deployments need (`ci/build`,
//! `test`), or asks for every check the forge reports (`all`), or both. A
//! deployment created then keeps that requirement (`checks_required`) and
//! waits at gate `Checks` once no freeze window holds it, before any
//! approval: a person approves what CI passed. The API holds no forge token:
//! the provider reads the checks of the commit (GitHub's combined status and
//! check runs, GitLab's pipeline) and reports them with [`report`]; every
//! required check passing opens the gate, a required check failing ends the
//! deployment FAILED naming it, and [`fail_expired`] (run by the lease
//! reaper) ends one that waited longer than the environment's timeout.
//!
//! - **The commit.** A deployment created with a ref only has no sha yet:
//!   the provider resolves the ref on the forge and reports the sha it
//!   evaluated; the API records it, so the runner deploys exactly the commit
//!   whose checks passed. A report for another sha than a known one is
//!   refused.
//! - **`force`.** A deployer may create a deployment with `force`: it then
//!   waits only for the checks the environment names; with `all` and no
//!   names it waits for none. Who forced it is recorded.
//! - **Rollbacks** pass the gate, as they pass the others: they restore
//!   what already ran.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use crate::db::entities::deployment::{self, DeploymentStatus, GateKind};
pub use crate::db::entities::deployment::{CheckState, StoredCheck, StoredRequiredChecks};
use crate::db::entities::{application, environment};
use crate::deployments::validate_sha;
use crate::error::{quote, ApiError, ApiResult};
use crate::gates::{self, Gate};
use crate::state::AppState;
use crate::view::{self, DeploymentView};

/// How long a deployment waits for its checks unless the environment says.
pub const DEFAULT_TIMEOUT_MINUTES: i64 = 60;
/// The longest wait an environment may set: a week.
const MAX_TIMEOUT_MINUTES: i64 = 7 * 24 * 60;
const MAX_NAMES: usize = 50;
const MAX_REPORTED: usize = 500;
const MAX_NAME: usize = 255;
const MAX_URL: usize = 2048;

/// The environment's requirement; `None` when it requires no check.
pub fn policy(env: &environment::Model) -> Option<StoredRequiredChecks> {
    let names = names_of(env);
    let required = !names.is_empty() || env.required_checks_all;
    required.then_some(StoredRequiredChecks {
        names,
        all: env.required_checks_all,
        timeout_minutes: env.required_checks_timeout_minutes,
    })
}

fn names_of(env: &environment::Model) -> Vec<String> {
    env.required_checks
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// What a new deployment waits for: the environment's requirement, less
/// what `force` skips (every check not named). `None` when it waits for none.
pub(crate) fn for_new(env: &environment::Model, force: bool) -> Option<StoredRequiredChecks> {
    let mut required = policy(env)?;
    if force {
        required.all = false;
    }
    (!required.names.is_empty() || required.all).then_some(required)
}

/// The checks a deployment waits for, as recorded when it was created.
pub fn required(d: &deployment::Model) -> Option<StoredRequiredChecks> {
    serde_json::from_str(d.checks_required.as_deref()?).ok()
}

/// The provider's last report on a deployment; empty before the first.
pub fn reported(d: &deployment::Model) -> Vec<StoredCheck> {
    d.checks
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// What a report means for a deployment's requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every required check passed.
    Passed,
    /// These required checks failed.
    Failed(Vec<StoredCheck>),
    /// These are still to pass (by name; `None` stands for "every check"
    /// when `all` is asked and the forge reported none).
    Pending(Vec<String>),
}

pub fn evaluate(required: &StoredRequiredChecks, checks: &[StoredCheck]) -> Verdict {
    let mut failed = Vec::new();
    let mut pending = Vec::new();
    for name in &required.names {
        match checks.iter().find(|c| &c.name == name) {
            Some(c) if c.state == CheckState::Success => {}
            Some(c) if c.state == CheckState::Failure => failed.push(c.clone()),
            _ => pending.push(name.clone()),
        }
    }
    if required.all {
        for c in checks {
            if required.names.contains(&c.name) {
                continue;
            }
            match c.state {
                CheckState::Success => {}
                CheckState::Failure => failed.push(c.clone()),
                CheckState::Pending => pending.push(c.name.clone()),
            }
        }
    }
    if !failed.is_empty() {
        Verdict::Failed(failed)
    } else if !pending.is_empty() || (required.all && checks.is_empty()) {
        Verdict::Pending(pending)
    } else {
        Verdict::Passed
    }
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// "on 1a2b3c4", or the ref when the commit is not known yet.
fn on(sha: Option<&str>, ref_name: &str) -> String {
    match sha {
        Some(sha) => format!("on {}", short(sha)),
        None => format!(
            "on the commit of {} (the provider resolves it)",
            quote(ref_name)
        ),
    }
}

fn on_commit(d: &deployment::Model) -> String {
    on(d.sha.as_deref(), &d.ref_name)
}

/// The gate for the commit `sha` (or `ref_name`'s), waiting for what
/// `checks` leaves pending, timing out `timeout_minutes` after `since`.
fn gate(
    (sha, ref_name): (Option<&str>, &str),
    required: &StoredRequiredChecks,
    checks: &[StoredCheck],
    since: DateTime<Utc>,
) -> Gate {
    let pending = match evaluate(required, checks) {
        Verdict::Pending(pending) => pending,
        _ => Vec::new(),
    };
    let none_reported = required.all && checks.is_empty();
    let what = if none_reported && required.names.is_empty() {
        "every check".to_owned()
    } else if none_reported {
        format!("{} and every other check", and_list(&required.names))
    } else {
        and_list(&pending)
    };
    let mut waiting_for = format!("{what} to pass {}", on(sha, ref_name));
    if none_reported {
        waiting_for.push_str("; none reported yet");
    }
    Gate {
        kind: GateKind::Checks,
        until: Some(since + Duration::minutes(required.timeout_minutes)),
        waiting_for,
    }
}

/// The gate a deployment that requires checks enters now, before any report.
pub(crate) fn first_gate(d: &deployment::Model, now: DateTime<Utc>) -> Option<Gate> {
    Some(gate(
        (d.sha.as_deref(), &d.ref_name),
        &required(d)?,
        &[],
        now,
    ))
}

/// The gate a deployment being created (of `sha` or `ref_name`) waits at
/// for `required`, when nothing comes before it.
pub(crate) fn gate_at_creation(
    sha: Option<&str>,
    ref_name: &str,
    required: &StoredRequiredChecks,
    now: DateTime<Utc>,
) -> Gate {
    gate((sha, ref_name), required, &[], now)
}

/// Sets the checks the environment's new deployments wait for: `names`,
/// and with `all` every check the forge reports; neither clears it.
/// `timeout_minutes` stays as it was unless given. Deployments already
/// queued keep what they were created with.
pub async fn set_required_checks(
    state: &AppState,
    application: &str,
    environment: &str,
    names: Vec<String>,
    all: bool,
    timeout_minutes: Option<i64>,
) -> ApiResult<(environment::Model, application::Model)> {
    if names.len() > MAX_NAMES {
        return Err(ApiError::BadInput(format!(
            "`checks` names {} checks; at most {MAX_NAMES} may be required",
            names.len()
        )));
    }
    let mut clean: Vec<String> = Vec::new();
    for name in names {
        let name = name.trim().to_owned();
        validate_name(&name)?;
        if !clean.contains(&name) {
            clean.push(name);
        }
    }
    if let Some(minutes) = timeout_minutes {
        if !(1..=MAX_TIMEOUT_MINUTES).contains(&minutes) {
            return Err(ApiError::BadInput(format!(
                "`timeoutMinutes` must be 1 to {MAX_TIMEOUT_MINUTES} (a week), not {minutes}"
            )));
        }
    }
    let (env, app) = gates::environment_of(&state.db, application, environment).await?;
    let mut active = environment::ActiveModel {
        id: Set(env.id),
        required_checks: Set((!clean.is_empty())
            .then(|| serde_json::to_string(&clean).expect("a list of strings is JSON"))),
        required_checks_all: Set(all),
        ..Default::default()
    };
    if let Some(minutes) = timeout_minutes {
        active.required_checks_timeout_minutes = Set(minutes);
    }
    let env = active.update(&state.db).await?;
    Ok((env, app))
}

fn validate_name(name: &str) -> ApiResult<()> {
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::BadInput(format!(
            "a check's name must be 1 to {MAX_NAME} characters without control characters, not {}",
            quote(name)
        )));
    }
    Ok(())
}

fn validate_report(checks: &[StoredCheck]) -> ApiResult<()> {
    if checks.len() > MAX_REPORTED {
        return Err(ApiError::BadInput(format!(
            "`checks` holds {} checks; a report holds at most {MAX_REPORTED}",
            checks.len()
        )));
    }
    for (i, c) in checks.iter().enumerate() {
        validate_name(&c.name)?;
        if checks[..i].iter().any(|other| other.name == c.name) {
            return Err(ApiError::BadInput(format!(
                "check {} is reported twice; report each name once (its latest state)",
                quote(&c.name)
            )));
        }
        if let Some(url) = &c.url {
            let web = url.starts_with("https://") || url.starts_with("http://");
            if !web || url.len() > MAX_URL {
                return Err(ApiError::BadInput(format!(
                    "the `url` of check {} must be an http(s) URL of at most {MAX_URL} characters",
                    quote(&c.name)
                )));
            }
        }
    }
    Ok(())
}

/// "test (https://ci/1)".
fn described(c: &StoredCheck) -> String {
    match &c.url {
        Some(url) => format!("{} ({url})", c.name),
        None => c.name.clone(),
    }
}

/// Records what the provider saw of the checks on `sha`, the commit of the
/// deployment `id` waiting at gate `Checks` (recorded as its sha when it had
/// none). Every required check passed: the gate opens (to an approval when
/// one is required). One failed: the deployment ends FAILED naming it.
/// Otherwise it keeps waiting, saying for which; a report that says what
/// the last one said changes nothing.
pub async fn report(
    state: &AppState,
    id: i64,
    sha: &str,
    checks: Vec<StoredCheck>,
) -> ApiResult<DeploymentView> {
    validate_sha(sha)?;
    validate_report(&checks)?;
    let view = gates::at_gate(state, id, GateKind::Checks).await?;
    let d = &view.deployment;
    if let Some(known) = &d.sha {
        if known != sha {
            return Err(ApiError::Conflict(format!(
                "deployment {} deploys {known}, not {sha}; report the checks of its commit",
                view.name()
            )));
        }
    }
    // A deployment enters gate `Checks` only with a requirement recorded;
    // without one (a row written by hand) nothing is required.
    let required = required(d).unwrap_or_default();
    let verdict = evaluate(&required, &checks);
    // The provider reports every round; the same answer again changes
    // nothing and tells no one.
    if matches!(verdict, Verdict::Pending(_))
        && d.checks.is_some()
        && d.sha.as_deref() == Some(sha)
        && reported(d) == checks
    {
        return Ok(view);
    }
    let now = state.clock.now();
    let stored = serde_json::to_string(&checks).expect("checks are JSON");
    let columns = vec![
        (deployment::Column::Sha, Some(sha.to_owned()).into()),
        (deployment::Column::Checks, Some(stored).into()),
        (deployment::Column::ChecksReportedAt, Some(now).into()),
    ];
    let row = match verdict {
        Verdict::Passed => {
            let next = gates::approval_gate(&view.environment, &d.created_by);
            let row = gates::move_gate(state, d, GateKind::Checks, next, columns).await?;
            if row.is_some() {
                tracing::info!(deployment = id, sha, "required checks passed");
            }
            row
        }
        Verdict::Failed(failed) => {
            let list: Vec<String> = failed.iter().map(described).collect();
            let message = format!(
                "required check{} {} failed {}",
                if failed.len() == 1 { "" } else { "s" },
                and_list(&list),
                on(Some(sha), &d.ref_name)
            );
            tracing::info!(deployment = id, sha, %message, "required checks failed");
            fail(state, d, &message, columns).await?
        }
        Verdict::Pending(_) => {
            let since = d.gate_since.unwrap_or(now);
            let mut next = gate((Some(sha), &d.ref_name), &required, &checks, since);
            // The timeout counts from when the gate was entered.
            next.until = d.gate_until.or(next.until);
            update_waiting(state, d, &next, columns).await?
        }
    };
    let row = row.ok_or_else(|| gates::moved_first(&view))?;
    gates::announce(state, row).await
}

/// Keeps a deployment at gate `Checks` with a new text (and the report).
async fn update_waiting(
    state: &AppState,
    d: &deployment::Model,
    gate: &Gate,
    columns: Vec<(deployment::Column, sea_orm::Value)>,
) -> ApiResult<Option<deployment::Model>> {
    let mut update = deployment::Entity::update_many()
        .col_expr(
            deployment::Column::GateWaitingFor,
            Expr::value(gate.waiting_for.clone()),
        )
        .col_expr(
            deployment::Column::Message,
            Expr::value(format!("waiting for {}", gate.waiting_for)),
        );
    for (column, value) in columns {
        update = update.col_expr(column, Expr::value(value));
    }
    Ok(update
        .filter(deployment::Column::Id.eq(d.id))
        .filter(deployment::Column::Status.eq(DeploymentStatus::Queued))
        .filter(deployment::Column::Gate.eq(GateKind::Checks))
        .exec_with_returning(&state.db)
        .await?
        .pop())
}

/// Ends a deployment waiting at gate `Checks` FAILED with `message`.
async fn fail(
    state: &AppState,
    d: &deployment::Model,
    message: &str,
    columns: Vec<(deployment::Column, sea_orm::Value)>,
) -> ApiResult<Option<deployment::Model>> {
    let mut update = deployment::Entity::update_many()
        .col_expr(
            deployment::Column::Status,
            Expr::value(DeploymentStatus::Failed),
        )
        .col_expr(
            deployment::Column::FinishedAt,
            Expr::value(state.clock.now()),
        )
        .col_expr(deployment::Column::Message, Expr::value(message.to_owned()))
        .col_expr(deployment::Column::Gate, Expr::value(None::<GateKind>))
        .col_expr(
            deployment::Column::GateUntil,
            Expr::value(None::<DateTime<Utc>>),
        )
        .col_expr(
            deployment::Column::GateWaitingFor,
            Expr::value(None::<String>),
        );
    for (column, value) in columns {
        update = update.col_expr(column, Expr::value(value));
    }
    Ok(update
        .filter(deployment::Column::Id.eq(d.id))
        .filter(deployment::Column::Status.eq(DeploymentStatus::Queued))
        .filter(deployment::Column::Gate.eq(GateKind::Checks))
        .exec_with_returning(&state.db)
        .await?
        .pop())
}

/// Ends FAILED every deployment that waited for its checks longer than its
/// timeout, naming what was still pending. Returns the deployments it ended.
pub async fn fail_expired(state: &AppState) -> ApiResult<Vec<DeploymentView>> {
    let now = state.clock.now();
    let due = deployment::Entity::find()
        .filter(deployment::Column::Status.eq(DeploymentStatus::Queued))
        .filter(deployment::Column::Gate.eq(GateKind::Checks))
        .filter(deployment::Column::GateUntil.lte(now))
        .order_by_asc(deployment::Column::Id)
        .all(&state.db)
        .await?;
    let mut ended = Vec::new();
    for d in due {
        let Some(required) = required(&d) else {
            continue;
        };
        let checks = reported(&d);
        let pending = match evaluate(&required, &checks) {
            Verdict::Pending(pending) if !pending.is_empty() => {
                format!("{} pending", and_list(&pending))
            }
            _ if checks.is_empty() => "none reported".to_owned(),
            _ => "no report since they passed".to_owned(),
        };
        let message = format!(
            "timed out after {} minutes waiting for checks {}: {pending}",
            required.timeout_minutes,
            on_commit(&d)
        );
        if let Some(row) = fail(state, &d, &message, Vec::new()).await? {
            tracing::info!(deployment = row.id, %message, "required checks timed out");
            let view = view::hydrate_one(&state.db, row).await?;
            state.events.deployment_changed(&state.db, &view).await;
            ended.push(view);
        }
    }
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, state: CheckState) -> StoredCheck {
        StoredCheck {
            name: name.into(),
            state,
            url: None,
        }
    }

    fn needs(names: &[&str], all: bool) -> StoredRequiredChecks {
        StoredRequiredChecks {
            names: names.iter().map(|n| n.to_string()).collect(),
            all,
            timeout_minutes: 60,
        }
    }

    #[test]
    fn named_checks_must_each_pass_and_others_do_not_count() {
        let required = needs(&["ci/build", "test"], false);
        assert_eq!(
            evaluate(&required, &[]),
            Verdict::Pending(vec!["ci/build".into(), "test".into()])
        );
        let report = [
            check("ci/build", CheckState::Success),
            check("test", CheckState::Pending),
            check("lint", CheckState::Failure),
        ];
        assert_eq!(
            evaluate(&required, &report),
            Verdict::Pending(vec!["test".into()])
        );
        let report = [
            check("ci/build", CheckState::Success),
            check("test", CheckState::Success),
            check("lint", CheckState::Failure),
        ];
        assert_eq!(evaluate(&required, &report), Verdict::Passed);
    }

    #[test]
    fn all_needs_a_report_and_every_check_in_it() {
        let required = needs(&[], true);
        assert_eq!(evaluate(&required, &[]), Verdict::Pending(Vec::new()));
        let report = [
            check("build", CheckState::Success),
            check("lint", CheckState::Failure),
        ];
        assert_eq!(
            evaluate(&required, &report),
            Verdict::Failed(vec![check("lint", CheckState::Failure)])
        );
        assert_eq!(
            evaluate(&required, &[check("build", CheckState::Success)]),
            Verdict::Passed
        );
    }

    #[test]
    fn lists_read_as_sentences() {
        assert_eq!(and_list(&["a".into()]), "a");
        assert_eq!(and_list(&["a".into(), "b".into()]), "a and b");
        assert_eq!(
            and_list(&["a".into(), "b".into(), "c".into()]),
            "a, b and c"
        );
    }
}
