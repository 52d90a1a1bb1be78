//! Running a task of the spec (`tasks:`) as a swarm job: created, its
//! output followed into the deployment's log as it runs, judged by its
//! container's exit code, and removed afterwards, whatever the end.

use std::collections::VecDeque;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::models::{Task, TaskState};
use bollard::query_parameters::{InspectServiceOptions, ListTasksOptions, LogsOptions};
use futures_util::StreamExt as _;
use tokio::time::Instant;

use super::{apply, engine_message, filter, is_not_found, Engine, EngineError, Fence};
use crate::plan::{TaskPlan, TASK_LABEL};
use crate::registry::Credential;

/// Swarm jobs (`replicated-job`) came with Engine API 1.41 (Docker 20.10).
const JOBS_SINCE: (u32, u32) = (1, 41);
/// How often the job's task is looked at.
const POLL: Duration = Duration::from_millis(250);
/// How long a task may wait for a node that fits before the job is given
/// up on, as for a service (see `converge::UNSCHEDULABLE_AFTER`).
const UNSCHEDULABLE_AFTER: Duration = super::converge::UNSCHEDULABLE_AFTER;
/// The lines of output a failure's message ends with.
const LAST_LINES: usize = 5;

/// How a task ended.
#[derive(Debug, PartialEq, Eq)]
pub enum JobEnd {
    /// Its container exited 0.
    Succeeded,
    /// Why not: the exit code and the last lines of output, the engine's
    /// error, or the timeout.
    Failed(String),
    Cancelled,
}

/// Fails with what to do unless the engine runs swarm jobs.
pub async fn check_jobs(engine: &Engine) -> Result<(), EngineError> {
    let version = engine.docker.version().await?;
    let api = version.api_version.unwrap_or_default();
    let parsed = api
        .split_once('.')
        .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)));
    match parsed {
        Some(v) if v >= JOBS_SINCE => Ok(()),
        _ => Err(EngineError::Api(format!(
            "the Docker engine speaks API {} ({}): tasks run as swarm jobs, which need API \
             {}.{} (Docker 20.10) or later; upgrade the engine or remove `tasks:` from the spec",
            if api.is_empty() { "?" } else { &api },
            version.version.as_deref().unwrap_or("version unknown"),
            JOBS_SINCE.0,
            JOBS_SINCE.1
        ))),
    }
}

/// Runs `task`'s job to its end, calling `line` with each line of its
/// output; `is_cancelled` is asked as it runs. The job is removed before
/// this returns, unless the fence forbids writing.
pub async fn run(
    engine: &Engine,
    task: &TaskPlan,
    fence: &dyn Fence,
    is_cancelled: &(dyn Fn() -> bool + Sync),
    line: &mut (dyn FnMut(String) + Send),
) -> Result<JobEnd, EngineError> {
    check_jobs(engine).await?;
    let name = &task.job.name;
    remove_leftover(engine, name, fence).await?;
    let mut spec = task.job.spec.clone();
    apply::with_data_ids(engine, &mut spec).await?;
    fence.check()?;
    let created = engine
        .docker
        .create_service(spec, task.job.credentials.as_ref().map(Credential::docker))
        .await
        .map_err(|err| {
            EngineError::Api(format!("creating job {name}: {}", engine_message(&err)))
        })?;
    let id = created.id.unwrap_or_else(|| name.clone());
    let ended = watch(engine, task, &id, is_cancelled, line).await;
    let removed = remove(engine, &id, fence).await;
    let end = ended?;
    removed?;
    Ok(end)
}

/// Follows the output and the task until it ends, times out or is cancelled.
async fn watch(
    engine: &Engine,
    task: &TaskPlan,
    id: &str,
    is_cancelled: &(dyn Fn() -> bool + Sync),
    line: &mut (dyn FnMut(String) + Send),
) -> Result<JobEnd, EngineError> {
    let started = Instant::now();
    let deadline = started + task.timeout;
    let mut output = Output::default();
    let mut follow = Box::pin(engine.docker.service_logs(id, Some(logs(true))));
    let mut following = true;
    let mut pending_since: Option<Instant> = None;
    let mut next_look = Instant::now();
    let end = loop {
        tokio::select! {
            chunk = follow.next(), if following => match chunk {
                Some(Ok(chunk)) => output.take(&chunk, line),
                // The engine ended the stream or cannot follow: the rest is
                // read once the task ended.
                Some(Err(_)) | None => following = false,
            },
            () = tokio::time::sleep_until(next_look) => {
                next_look = Instant::now() + POLL;
                if is_cancelled() {
                    break JobEnd::Cancelled;
                }
                let tasks = engine
                    .docker
                    .list_tasks(Some(ListTasksOptions {
                        filters: Some(filter("service", id)),
                    }))
                    .await?;
                match judge(&tasks) {
                    Look::Running => pending_since = None,
                    Look::Pending(why) => {
                        let since = *pending_since.get_or_insert_with(Instant::now);
                        if let Some(why) = why.filter(|_| since.elapsed() >= UNSCHEDULABLE_AFTER) {
                            break JobEnd::Failed(format!(
                                "task {} could not start: {why}",
                                task.name
                            ));
                        }
                    }
                    Look::Exited(code) => {
                        break if code == 0 {
                            JobEnd::Succeeded
                        } else {
                            JobEnd::Failed(format!(
                                "task {} exited with code {code}",
                                task.name
                            ))
                        };
                    }
                    Look::Failed(why) => {
                        break JobEnd::Failed(format!("task {} failed: {why}", task.name));
                    }
                }
                if Instant::now() >= deadline {
                    break JobEnd::Failed(format!(
                        "task {} did not finish within its timeout of {} s",
                        task.name,
                        task.timeout.as_secs()
                    ));
                }
            }
        }
    };
    drop(follow);
    // What the follow had not delivered: the whole output, read again, past
    // the lines already told.
    let mut all = Output::default();
    let mut rest = Box::pin(engine.docker.service_logs(id, Some(logs(false))));
    let mut ignore = |_: String| {};
    while let Some(Ok(chunk)) = rest.next().await {
        all.take(&chunk, &mut ignore);
    }
    all.flush(&mut ignore);
    for text in all.lines.iter().skip(output.told) {
        line(text.clone());
    }
    output.flush(line);
    let last = if all.told > output.told {
        &all.last
    } else {
        &output.last
    };
    Ok(match end {
        JobEnd::Failed(why) if !last.is_empty() => JobEnd::Failed(format!(
            "{why}; its last lines: {}",
            last.iter().cloned().collect::<Vec<_>>().join(" / ")
        )),
        other => other,
    })
}

fn logs(follow: bool) -> LogsOptions {
    LogsOptions {
        follow,
        stdout: true,
        stderr: true,
        ..Default::default()
    }
}

/// Lines of a job's output, as chunks of it arrive.
#[derive(Default)]
struct Output {
    partial: String,
    /// Every line, when kept (the second read), else empty.
    lines: Vec<String>,
    /// How many lines were told.
    told: usize,
    last: VecDeque<String>,
}

impl Output {
    fn take(&mut self, chunk: &LogOutput, line: &mut (dyn FnMut(String) + Send)) {
        let bytes = match chunk {
            LogOutput::StdOut { message }
            | LogOutput::StdErr { message }
            | LogOutput::Console { message } => message,
            LogOutput::StdIn { .. } => return,
        };
        self.partial.push_str(&String::from_utf8_lossy(bytes));
        while let Some(at) = self.partial.find('\n') {
            let text: String = self.partial.drain(..=at).collect();
            self.tell(text.trim_end_matches(['\n', '\r']).to_owned(), line);
        }
    }

    fn flush(&mut self, line: &mut (dyn FnMut(String) + Send)) {
        if !self.partial.is_empty() {
            let text = std::mem::take(&mut self.partial);
            self.tell(text, line);
        }
    }

    fn tell(&mut self, text: String, line: &mut (dyn FnMut(String) + Send)) {
        self.told += 1;
        if self.last.len() == LAST_LINES {
            self.last.pop_front();
        }
        self.last.push_back(text.clone());
        self.lines.push(text.clone());
        line(text);
    }
}

/// What one look at a job's tasks says.
#[derive(Debug, PartialEq, Eq)]
enum Look {
    Running,
    /// Not started; the scheduler's reason, if it gave one.
    Pending(Option<String>),
    Exited(i64),
    Failed(String),
}

fn judge(tasks: &[Task]) -> Look {
    // One task, never restarted; a newer one (an engine retry) wins.
    let Some(task) = tasks.iter().max_by_key(|t| t.created_at.clone()) else {
        return Look::Pending(None);
    };
    let status = task.status.clone().unwrap_or_default();
    let err = status.err.clone().filter(|e| !e.is_empty());
    let code = status.container_status.as_ref().and_then(|c| c.exit_code);
    match status.state {
        Some(TaskState::COMPLETE) => Look::Exited(code.unwrap_or(0)),
        Some(TaskState::FAILED) => match code {
            Some(code) if code != 0 => Look::Exited(code),
            _ => Look::Failed(err.unwrap_or_else(|| "the task failed".into())),
        },
        Some(TaskState::REJECTED) => {
            Look::Failed(err.unwrap_or_else(|| "the engine rejected the task".into()))
        }
        Some(TaskState::SHUTDOWN | TaskState::ORPHANED | TaskState::REMOVE) => {
            Look::Failed(err.unwrap_or_else(|| "the task was stopped before it finished".into()))
        }
        Some(TaskState::RUNNING) => Look::Running,
        _ => Look::Pending(err.or(status.message)),
    }
}

/// A job of this task left by a runner that stopped mid-task is removed; a
/// service of that name that is not a task's is never touched.
async fn remove_leftover(
    engine: &Engine,
    name: &str,
    fence: &dyn Fence,
) -> Result<(), EngineError> {
    let found = engine
        .docker
        .inspect_service(name, None::<InspectServiceOptions>)
        .await;
    let service = match found {
        Ok(service) => service,
        Err(err) if is_not_found(&err) => return Ok(()),
        Err(err) => return Err(err.into()),
    };
    let is_task = service
        .spec
        .as_ref()
        .and_then(|s| s.labels.as_ref())
        .is_some_and(|l| l.contains_key(TASK_LABEL));
    if !is_task {
        return Err(EngineError::Api(format!(
            "service {name} exists and is not a task's job (it has no {TASK_LABEL} label): \
             the task's job would take its name; rename the task or remove the service"
        )));
    }
    remove(engine, service.id.as_deref().unwrap_or(name), fence).await
}

async fn remove(engine: &Engine, id: &str, fence: &dyn Fence) -> Result<(), EngineError> {
    fence.check()?;
    match engine.docker.delete_service(id).await {
        Ok(()) => Ok(()),
        Err(err) if is_not_found(&err) => Ok(()),
        Err(err) => Err(EngineError::Api(format!(
            "removing job {id}: {}",
            engine_message(&err)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use bollard::models::{ContainerStatus, Task, TaskState, TaskStatus};

    use super::{judge, Look};

    fn task(state: TaskState, code: Option<i64>, err: Option<&str>) -> Task {
        Task {
            created_at: Some("2026-12-02T10:00:00Z".into()),
            status: Some(TaskStatus {
                state: Some(state),
                err: err.map(str::to_owned),
                container_status: code.map(|c| ContainerStatus {
                    exit_code: Some(c),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_job_is_judged_by_its_container_exit_code() {
        assert_eq!(judge(&[]), Look::Pending(None));
        assert_eq!(
            judge(&[task(TaskState::COMPLETE, Some(0), None)]),
            Look::Exited(0)
        );
        assert_eq!(
            judge(&[task(
                TaskState::FAILED,
                Some(3),
                Some("task: non-zero exit (3)")
            )]),
            Look::Exited(3)
        );
        assert_eq!(
            judge(&[task(TaskState::REJECTED, None, Some("No such image: nope"))]),
            Look::Failed("No such image: nope".into())
        );
        assert_eq!(
            judge(&[task(TaskState::RUNNING, None, None)]),
            Look::Running
        );
        assert_eq!(
            judge(&[task(
                TaskState::PENDING,
                None,
                Some("no suitable node (scheduling constraints not satisfied)")
            )]),
            Look::Pending(Some(
                "no suitable node (scheduling constraints not satisfied)".into()
            ))
        );
    }
}
