//! Watching a rollout until every changed service runs its new spec with all
//! replicas up and stable, or until it clearly will not.
//!
//! Convergence is judged from the tasks, not only from `UpdateStatus`: a new
//! service has none, and an update that changes no task never gets one.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ServiceUpdateStatusStateEnum as UpdateState, Task, TaskSpec, TaskState};
use bollard::query_parameters::{ListTasksOptions, UpdateServiceOptions};
use tokio::time::Instant;

use super::apply::{rolled_back_by_swarm, Applied, Change, ChangeKind};
use super::{filter, Engine, EngineError, Fence};

/// How a rollout ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Converged,
    /// Why it failed: the task's error, a paused update, a timeout...; and
    /// the service that failed, when one did.
    Failed {
        why: String,
        service: Option<String>,
    },
    Cancelled,
}

/// How often services and tasks are looked at.
const POLL: Duration = Duration::from_millis(200);
/// Failed tasks of the new spec after which a service is given up on.
const MAX_TASK_FAILURES: usize = 3;
/// Swarm's default `update_config.monitor`.
const DEFAULT_MONITOR: Duration = Duration::from_secs(5);
/// How long a task may wait for a node that fits before the rollout is
/// given up on: the scheduler retries, but a constraint nothing meets or
/// resources no node has do not change by waiting.
pub const UNSCHEDULABLE_AFTER: Duration = Duration::from_secs(15);
/// How long a service that exhausted `restart_policy.max_attempts` must
/// have no task left that could still run before it is given up on.
const EXHAUSTED_AFTER: Duration = Duration::from_secs(1);

/// What one look at a service says.
#[derive(Debug, PartialEq, Eq)]
enum Judgement {
    Done,
    Pending(String),
    Failed(String),
    /// Nothing moves, for a reason that waiting seldom fixes: a failure once
    /// it lasts its grace period.
    Stuck(String, StuckKind),
}

#[derive(Debug, PartialEq, Eq)]
enum StuckKind {
    /// A task waits for a node that fits it.
    Unschedulable,
    /// Swarm gave up restarting failed tasks (`restart_policy.max_attempts`).
    Exhausted,
}

/// Waits until every changed service of `applied` has converged, one fails,
/// `cancelled` says so, or `timeout` passes. `progress` hears each service's
/// state whenever it changes.
pub async fn converge(
    engine: &Engine,
    applied: &Applied,
    timeout: Duration,
    cancelled: &(dyn Fn() -> bool + Send + Sync),
    progress: &mut (dyn FnMut(&str, &str) + Send),
) -> Result<Outcome, EngineError> {
    let deadline = Instant::now() + timeout;
    let watched: Vec<&Change> = applied
        .changes
        .iter()
        .filter(|c| c.kind != ChangeKind::Removed)
        .collect();
    let mut said: HashMap<String, String> = HashMap::new();
    // When every replica will have been up for its monitor period, if none
    // goes down meanwhile.
    let mut stable_until: Option<Instant> = None;
    let mut stuck: HashMap<String, Instant> = HashMap::new();
    // The last engine error: one failed look is not the engine's verdict.
    let mut trouble: Option<String> = None;
    loop {
        if cancelled() {
            return Ok(Outcome::Cancelled);
        }
        let mut pending = Vec::new();
        let mut monitor = Duration::ZERO;
        let mut looked = true;
        let judgements =
            futures_util::future::join_all(watched.iter().map(|change| judge(engine, change)))
                .await;
        for (change, judged) in watched.iter().zip(judgements) {
            let (judgement, service_monitor) = match judged {
                Ok(judged) => judged,
                Err(err) => {
                    if trouble.is_none() {
                        progress(&change.name, &format!("engine error, retrying: {err}"));
                    }
                    trouble = Some(format!("{}: {err}", change.name));
                    looked = false;
                    continue;
                }
            };
            if change.kind != ChangeKind::Unchanged {
                monitor = monitor.max(service_monitor);
            }
            let judgement = match judgement {
                Judgement::Stuck(why, kind) => {
                    let grace = match kind {
                        StuckKind::Unschedulable => UNSCHEDULABLE_AFTER,
                        StuckKind::Exhausted => EXHAUSTED_AFTER,
                    };
                    let since = *stuck
                        .entry(change.name.clone())
                        .or_insert_with(Instant::now);
                    if since.elapsed() >= grace {
                        Judgement::Failed(why)
                    } else {
                        Judgement::Pending(why)
                    }
                }
                other => {
                    stuck.remove(&change.name);
                    other
                }
            };
            let text = match &judgement {
                Judgement::Done => "converged".to_owned(),
                Judgement::Pending(what) | Judgement::Failed(what) => what.clone(),
                Judgement::Stuck(..) => unreachable!("stuck judgements are resolved above"),
            };
            if said.get(&change.name) != Some(&text) {
                progress(&change.name, &text);
                said.insert(change.name.clone(), text);
            }
            match judgement {
                Judgement::Done => {}
                Judgement::Pending(what) => pending.push(format!("{}: {what}", change.name)),
                Judgement::Failed(why) => {
                    return Ok(Outcome::Failed {
                        why: format!("{}: {why}", change.name),
                        service: Some(change.name.clone()),
                    })
                }
                Judgement::Stuck(..) => {}
            }
        }
        let mut nap = POLL;
        if looked {
            trouble = None;
            if pending.is_empty() {
                // Every replica is up: it must stay up for the monitor
                // period, counted from when the engine saw the last one start
                // (`monitor` is what remains of it). A task that restarted
                // meanwhile pushes the end further.
                let candidate = Instant::now() + monitor;
                let until = stable_until.map_or(candidate, |until| until.max(candidate));
                stable_until = Some(until);
                let now = Instant::now();
                if now >= until {
                    return Ok(Outcome::Converged);
                }
                nap = nap.min(until - now);
            } else {
                stable_until = None;
            }
        }
        if Instant::now() >= deadline {
            let waited_for = match (&trouble, pending.is_empty()) {
                (Some(error), _) => format!("the engine to answer (last error: {error})"),
                (None, true) => "the services to stay up".to_owned(),
                (None, false) => pending.join("; "),
            };
            return Ok(Outcome::Failed {
                why: format!(
                    "timed out after {}s waiting for {waited_for}",
                    timeout.as_secs(),
                ),
                service: None,
            });
        }
        tokio::time::sleep(nap).await;
    }
}

async fn tasks(engine: &Engine, service_id: &str) -> Result<Vec<Task>, EngineError> {
    Ok(engine
        .docker
        .list_tasks(Some(ListTasksOptions {
            filters: Some(filter("service", service_id)),
        }))
        .await?)
}

fn state(task: &Task) -> Option<TaskState> {
    task.status.as_ref().and_then(|s| s.state)
}

fn has_error(task: &Task) -> bool {
    task.status
        .as_ref()
        .and_then(|s| s.err.as_deref())
        .is_some_and(|err| !err.is_empty())
}

/// Whether a task is, or may become, a running one: swarm wants it running
/// (or ready, while a restart waits out its delay) and it has not ended.
fn may_still_run(task: &Task) -> bool {
    let wanted = matches!(
        task.desired_state,
        Some(TaskState::RUNNING | TaskState::READY)
    );
    let ended = matches!(
        state(task),
        Some(
            TaskState::COMPLETE
                | TaskState::SHUTDOWN
                | TaskState::FAILED
                | TaskState::REJECTED
                | TaskState::REMOVE
                | TaskState::ORPHANED
        )
    );
    wanted && !ended
}

/// The reason a task failed, as the engine words it.
fn task_error(task: &Task) -> String {
    let status = task.status.clone().unwrap_or_default();
    match (status.err, status.message) {
        (Some(err), _) if !err.is_empty() => err,
        (_, Some(message)) => message,
        _ => "task failed".into(),
    }
}

/// Whether a task runs the service's current spec. The engine copies the
/// template into each task but drops some defaults (restart policy, runtime),
/// so the container spec and `ForceUpdate` are what is compared.
fn same_spec(task: &Task, template: &Option<TaskSpec>) -> bool {
    let key = |spec: &Option<TaskSpec>| {
        spec.as_ref()
            .map(|s| (serde_json::to_value(&s.container_spec).ok(), s.force_update))
    };
    task.spec.is_some() && key(&task.spec) == key(template)
}

async fn judge(engine: &Engine, change: &Change) -> Result<(Judgement, Duration), EngineError> {
    let service = engine.docker.inspect_service(&change.id, None).await?;
    let spec = service.spec.clone().unwrap_or_default();
    let monitor = spec
        .update_config
        .as_ref()
        .and_then(|u| u.monitor)
        .map(|ns| Duration::from_nanos(ns.max(0) as u64))
        .unwrap_or(DEFAULT_MONITOR);
    let template = spec.task_template.clone();

    let mut swarm_watched = false;
    let mut updating = None;
    if change.kind == ChangeKind::Updated {
        let status = service.update_status.clone().unwrap_or_default();
        let ours = status.started_at.is_some() && status.started_at != change.update_started_before;
        if ours {
            let message = status.message.clone().unwrap_or_default();
            match status.state {
                // Swarm goes on after the last task (`delay`, its own
                // monitor); the tasks below say when the rollout converged.
                Some(UpdateState::UPDATING) => updating = Some(message),
                Some(UpdateState::PAUSED) => {
                    let reason = last_failure(engine, &change.id, &template).await?;
                    return Ok((
                        Judgement::Failed(format!("update paused: {message}{reason}")),
                        monitor,
                    ));
                }
                Some(UpdateState::ROLLBACK_STARTED) => {
                    return Ok((
                        Judgement::Pending(format!("swarm is rolling back: {message}")),
                        monitor,
                    ))
                }
                Some(UpdateState::COMPLETED) => {
                    // Swarm has watched each new task for the monitor period
                    // already; the tasks below must still all be up (an update
                    // with `failure_action: continue` completes regardless).
                    swarm_watched = true;
                }
                Some(UpdateState::ROLLBACK_PAUSED) | Some(UpdateState::ROLLBACK_COMPLETED) => {
                    let reason = last_failure(engine, &change.id, &template).await?;
                    return Ok((
                        Judgement::Failed(format!("rolled back by swarm: {message}{reason}")),
                        monitor,
                    ));
                }
                _ => {}
            }
        } else {
            // Our update has not been picked up yet, or changed no task.
        }
    }

    let tasks = tasks(engine, &change.id).await?;
    let current: Vec<&Task> = tasks.iter().filter(|t| same_spec(t, &template)).collect();
    let since = change.since.as_deref().and_then(parse_time);
    let failed: Vec<&&Task> = current
        .iter()
        .filter(|t| matches!(state(t), Some(TaskState::FAILED | TaskState::REJECTED)))
        .filter(
            |t| match (since, t.created_at.as_deref().and_then(parse_time)) {
                (Some(since), Some(created)) => created >= since,
                _ => true,
            },
        )
        .collect();
    if let Some(last) = failed.iter().max_by_key(|t| t.updated_at.clone()) {
        let error = task_error(last);
        let hopeless = error.contains("No such image") || failed.len() >= MAX_TASK_FAILURES;
        if hopeless {
            return Ok((
                Judgement::Failed(format!("{} task(s) failed: {error}", failed.len())),
                monitor,
            ));
        }
    }
    // The scheduler says in a pending task's error why no node takes it.
    if let Some(task) = current
        .iter()
        .find(|t| state(t) == Some(TaskState::PENDING) && has_error(t))
    {
        return Ok((
            Judgement::Stuck(
                format!("cannot be scheduled: {}", task_error(task)),
                StuckKind::Unschedulable,
            ),
            monitor,
        ));
    }
    // Swarm restarts a failed task at most `max_attempts` times; then the
    // slot stays empty and nothing will come.
    let max_attempts = template
        .as_ref()
        .and_then(|t| t.restart_policy.as_ref())
        .and_then(|r| r.max_attempts)
        .filter(|n| *n > 0);
    if let (Some(max_attempts), Some(last)) = (
        max_attempts,
        failed.iter().max_by_key(|t| t.updated_at.clone()),
    ) {
        let alive = current.iter().filter(|t| may_still_run(t)).count();
        let want = spec
            .mode
            .as_ref()
            .and_then(|m| m.replicated.as_ref())
            .map(|r| r.replicas.unwrap_or(1).max(0) as usize);
        if want.is_some_and(|want| alive < want) || (want.is_none() && alive == 0) {
            return Ok((
                Judgement::Stuck(
                    format!(
                        "{} task(s) failed and swarm stopped restarting them \
                         (restart_policy.max_attempts: {max_attempts}): {}",
                        failed.len(),
                        task_error(last)
                    ),
                    StuckKind::Exhausted,
                ),
                monitor,
            ));
        }
    }
    let running = current
        .iter()
        .filter(|t| {
            state(t) == Some(TaskState::RUNNING) && t.desired_state == Some(TaskState::RUNNING)
        })
        .count();
    let complete = current
        .iter()
        .filter(|t| state(t) == Some(TaskState::COMPLETE))
        .count();
    let mode = spec.mode.clone().unwrap_or_default();
    let judgement = if let Some(replicated) = mode.replicated {
        let want = replicated.replicas.unwrap_or(1).max(0) as usize;
        if running >= want {
            Judgement::Done
        } else {
            Judgement::Pending(format!("{running}/{want} running"))
        }
    } else if let Some(job) = mode.replicated_job {
        let want = job.total_completions.unwrap_or(1).max(0) as usize;
        if complete >= want {
            Judgement::Done
        } else {
            Judgement::Pending(format!("{complete}/{want} completed"))
        }
    } else if mode.global_job.is_some() {
        let open = current
            .iter()
            .filter(|t| {
                t.desired_state == Some(TaskState::COMPLETE)
                    && state(t) != Some(TaskState::COMPLETE)
            })
            .count();
        if complete > 0 && open == 0 {
            Judgement::Done
        } else {
            Judgement::Pending(format!("{complete} completed"))
        }
    } else {
        // Global: one task per eligible node; done when none is still starting.
        let starting = current
            .iter()
            .filter(|t| {
                t.desired_state == Some(TaskState::RUNNING) && state(t) != Some(TaskState::RUNNING)
            })
            .count();
        if running > 0 && starting == 0 {
            Judgement::Done
        } else {
            Judgement::Pending(format!("{running} running, {starting} starting"))
        }
    };
    let judgement = match (judgement, updating) {
        (Judgement::Pending(what), Some(message)) => {
            Judgement::Pending(format!("updating: {message} ({what})"))
        }
        (judgement, _) => judgement,
    };
    // What remains of the monitor period since the engine saw the newest
    // running task start (the runner's and the engine's clocks are the
    // host's: the runner runs on a manager).
    let remaining = if swarm_watched {
        Duration::ZERO
    } else {
        current
            .iter()
            .filter(|t| state(t) == Some(TaskState::RUNNING))
            .filter_map(|t| t.status.as_ref()?.timestamp.as_deref().and_then(parse_time))
            .max()
            .map_or(monitor, |started| {
                let up = (chrono::Utc::now() - started.with_timezone(&chrono::Utc))
                    .to_std()
                    .unwrap_or_default();
                monitor.saturating_sub(up)
            })
    };
    Ok((judgement, remaining))
}

fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(text).ok()
}

async fn last_failure(
    engine: &Engine,
    service_id: &str,
    template: &Option<TaskSpec>,
) -> Result<String, EngineError> {
    let _ = template;
    let tasks = tasks(engine, service_id).await?;
    Ok(tasks
        .iter()
        .filter(|t| matches!(state(t), Some(TaskState::FAILED | TaskState::REJECTED)))
        .max_by_key(|t| t.updated_at.clone())
        .map(|t| {
            // The engine words a container's exit as "task: non-zero exit (1)".
            let error = task_error(t);
            format!(
                " (task: {})",
                error.strip_prefix("task: ").unwrap_or(&error)
            )
        })
        .unwrap_or_default())
}

/// Undoes what `applied` changed: updated services go back to their previous
/// spec, created ones are removed. Asks `fence` before every write. Waits up
/// to `timeout` for the services that remain to run their previous spec.
pub async fn rollback(
    engine: &Engine,
    applied: &Applied,
    timeout: Duration,
    fence: &dyn Fence,
) -> Result<(), EngineError> {
    let docker = &engine.docker;
    for change in applied.changes.iter().rev() {
        match change.kind {
            ChangeKind::Created => {
                fence.check()?;
                if let Err(err) = docker.delete_service(&change.id).await {
                    if !super::is_not_found(&err) {
                        return Err(err.into());
                    }
                }
            }
            ChangeKind::Updated | ChangeKind::Unchanged => {
                if let Some(before) = &change.before {
                    restore(engine, change, before, fence).await?;
                }
            }
            ChangeKind::Removed => {}
        }
    }
    // Wait for the services that remain to run their previous spec again.
    let remaining = Applied {
        changes: applied
            .changes
            .iter()
            .filter(|c| c.kind == ChangeKind::Updated)
            .map(|c| Change {
                kind: ChangeKind::Unchanged,
                ..c.clone()
            })
            .collect(),
        ..Default::default()
    };
    let never = || false;
    let mut quiet = |_: &str, _: &str| {};
    match converge(engine, &remaining, timeout, &never, &mut quiet).await? {
        Outcome::Converged => Ok(()),
        Outcome::Failed { why, .. } => Err(EngineError::Api(format!(
            "rollback did not converge: {why}"
        ))),
        Outcome::Cancelled => Ok(()),
    }
}

/// Puts one service back to `before`, unless swarm is rolling it back itself.
async fn restore(
    engine: &Engine,
    change: &Change,
    before: &bollard::models::ServiceSpec,
    fence: &dyn Fence,
) -> Result<(), EngineError> {
    let docker = &engine.docker;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = match docker.inspect_service(&change.id, None).await {
            Ok(current) => current,
            // Gone (removed by hand): nothing to put back.
            Err(err) if super::is_not_found(&err) => return Ok(()),
            Err(err) => return Err(err.into()),
        };
        if rolled_back_by_swarm(&current, change) {
            return Ok(());
        }
        let version = current.version.and_then(|v| v.index).unwrap_or_default();
        let mut spec = before.clone();
        if let (Some(template), Some(now)) = (
            spec.task_template.as_mut(),
            current.spec.as_ref().and_then(|s| s.task_template.as_ref()),
        ) {
            template.force_update = now.force_update;
        }
        fence.check()?;
        let updated = docker
            .update_service(
                &change.id,
                spec,
                UpdateServiceOptions {
                    version: version as i32,
                    ..Default::default()
                },
                None,
            )
            .await;
        match updated {
            Ok(_) => return Ok(()),
            Err(err)
                if super::engine_message(&err).contains("update out of sequence")
                    && attempt < 5 =>
            {
                continue
            }
            Err(err) => {
                return Err(EngineError::Api(format!(
                    "restoring service {}: {}",
                    change.name,
                    super::engine_message(&err)
                )))
            }
        }
    }
}
