//! Delivery figures of an environment over a window of days, in the manner
//! of DORA's: how often it deploys, how often a deployment fails, and how
//! long it takes to restore a release after a failure.
//!
//! What counts is a rollout (a deployment that rolls the stack out: not a
//! task run alone, see `deployments::task_alone`) that ended SUCCEEDED or
//! FAILED within the window. A CANCELLED one is not counted: it was stopped,
//! not judged. A FAILED rollout is restored by the next rollout of the same
//! environment that succeeded (`deployments::released`, the rule of what
//! made a release), whenever that was; one not restored yet counts towards
//! the change failure rate but not the time to restore.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::db::entities::deployment::{self, DeploymentStatus};
use crate::deployments;
use crate::error::{ApiError, ApiResult};

/// The longest window asked for, in days.
pub const MAX_DAYS: i64 = 366;

/// The figures of one environment over one window.
#[derive(Clone, Debug, PartialEq)]
pub struct Dora {
    /// The window: from `since` to `until` (now).
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub days: i64,
    /// Rollouts that ended SUCCEEDED in the window.
    pub succeeded: u64,
    /// Rollouts that ended FAILED in the window.
    pub failed: u64,
    /// How long each failed rollout of the window waited for the next
    /// success of the environment, for those that have one.
    pub restore_times: Vec<Duration>,
}

impl Dora {
    /// Rollouts that finished (succeeded or failed) in the window.
    pub fn deployments(&self) -> u64 {
        self.succeeded + self.failed
    }

    /// Deployments per day of the window.
    pub fn deploys_per_day(&self) -> f64 {
        self.deployments() as f64 / self.days as f64
    }

    /// The share of deployments that failed; `None` when there were none.
    pub fn change_failure_rate(&self) -> Option<f64> {
        let deployments = self.deployments();
        (deployments > 0).then(|| self.failed as f64 / deployments as f64)
    }

    /// The mean time from a failure to the next success, in seconds; `None`
    /// when no failure of the window has been restored.
    pub fn mean_time_to_restore_seconds(&self) -> Option<f64> {
        if self.restore_times.is_empty() {
            return None;
        }
        let total: i64 = self
            .restore_times
            .iter()
            .map(Duration::num_milliseconds)
            .sum();
        Some(total as f64 / 1000.0 / self.restore_times.len() as f64)
    }
}

/// A window of `days` (1 to [`MAX_DAYS`]), or the error telling why not.
pub fn validate_days(days: i64) -> ApiResult<i64> {
    if (1..=MAX_DAYS).contains(&days) {
        Ok(days)
    } else {
        Err(ApiError::BadInput(format!(
            "`days` must be 1 to {MAX_DAYS}, not {days}"
        )))
    }
}

/// The figures of environment `environment_id` over the `days` before `now`.
pub async fn of_environment(
    db: &impl ConnectionTrait,
    environment_id: i64,
    days: i64,
    now: DateTime<Utc>,
) -> ApiResult<Dora> {
    let days = validate_days(days)?;
    let since = now - Duration::days(days);
    // Every rollout that ended since the window began, in the order they
    // ended: successes after `now` cannot be (`finished_at` is the clock's).
    let ended: Vec<(DeploymentStatus, DateTime<Utc>)> = deployment::Entity::find()
        .select_only()
        .column(deployment::Column::Status)
        .column(deployment::Column::FinishedAt)
        .filter(deployment::Column::EnvironmentId.eq(environment_id))
        .filter(
            Condition::any().add(deployments::released()).add(
                Condition::all()
                    .add(deployment::Column::Status.eq(DeploymentStatus::Failed))
                    .add(deployment::Column::RunsTask.is_null()),
            ),
        )
        .filter(deployment::Column::FinishedAt.gte(since))
        .filter(deployment::Column::FinishedAt.lte(now))
        .order_by_asc(deployment::Column::FinishedAt)
        .order_by_asc(deployment::Column::Id)
        .into_tuple()
        .all(db)
        .await?;
    Ok(figures(since, now, days, &ended))
}

/// The figures of rollouts that `ended` (status and time, in order) in the
/// window from `since` to `until`.
fn figures(
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    days: i64,
    ended: &[(DeploymentStatus, DateTime<Utc>)],
) -> Dora {
    let count = |status| ended.iter().filter(|(s, _)| *s == status).count() as u64;
    let restore_times = ended
        .iter()
        .enumerate()
        .filter(|(_, (status, _))| *status == DeploymentStatus::Failed)
        .filter_map(|(i, (_, failed_at))| {
            let (_, restored_at) = ended[i + 1..]
                .iter()
                .find(|(status, _)| *status == DeploymentStatus::Succeeded)?;
            Some(*restored_at - *failed_at)
        })
        .collect();
    Dora {
        since,
        until,
        days,
        succeeded: count(DeploymentStatus::Succeeded),
        failed: count(DeploymentStatus::Failed),
        restore_times,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + Duration::minutes(minutes)
    }

    #[test]
    fn each_failure_is_restored_by_the_next_success() {
        use DeploymentStatus::{Failed, Succeeded};
        let ended = [
            (Succeeded, at(0)),
            (Failed, at(10)),
            (Failed, at(20)),
            (Succeeded, at(50)),
            (Failed, at(60)),
        ];
        let dora = figures(at(0), at(60 * 24), 1, &ended);
        assert_eq!(dora.deployments(), 5);
        assert_eq!(dora.deploys_per_day(), 5.0);
        assert_eq!(dora.change_failure_rate(), Some(0.6));
        // 40 and 30 minutes; the last failure is not restored yet.
        assert_eq!(dora.mean_time_to_restore_seconds(), Some(35.0 * 60.0));
    }

    #[test]
    fn no_deployments_have_no_rates() {
        let dora = figures(at(0), at(60 * 24 * 7), 7, &[]);
        assert_eq!(dora.deployments(), 0);
        assert_eq!(dora.deploys_per_day(), 0.0);
        assert_eq!(dora.change_failure_rate(), None);
        assert_eq!(dora.mean_time_to_restore_seconds(), None);
    }

    #[test]
    fn windows_are_one_day_to_a_year() {
        assert!(validate_days(0).is_err());
        assert!(validate_days(MAX_DAYS + 1).is_err());
        assert_eq!(validate_days(30), Ok(30));
    }
}
