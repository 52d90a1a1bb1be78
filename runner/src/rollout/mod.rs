//! Carrying one claimed deployment out, as a sequence of steps — fetch, plan,
//! resolve, apply, converge, settle — each returning `Result<_, Stop>`; a
//! rollout that settled then reports the commits it deployed for the API's
//! commit graph, which cannot stop it.
//!
//! A step that cannot go on says why with a [`Stop`]: the deployment
//! `Failed` (what was changed has been rolled back), was `Cancelled`, or was
//! `Lost` (the lease may have lapsed: another runner may hold the
//! environment, so nothing more is written to the swarm and nothing is
//! reported). The end is turned into the API's types in one place,
//! [`Ending::finish_variables`].
//!
//! # Layout
//!
//! - [`Rollout`]: the steps, and `undo`, which every failure after the first
//!   swarm write goes through.
//! - [`record`]: what the deployment changed, on disk, for a restart.

pub mod record;

use std::time::Duration;

use slipway_client::operations::{
    finish_deployment, release_shas, report_deployment_commits,
    update_deployment_progress::DeploymentPhase, FinishDeployment, ReleaseShas,
    ReportDeploymentCommits,
};
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::git::{CommitFiles, Fetched};
use crate::lease::{Lease, DEFAULT_LEASE};
use crate::plan::{Plan, Rollback, TaskPlan, TaskWhen};
use crate::registry::reference::digest_of;
use crate::report::{Convergence, Mask, Reporter};
use crate::spec::{self, Context};
use crate::swarm::job::JobEnd;
use crate::swarm::{self, Applied, Baseline, ChangeKind, EngineError, Outcome};
use crate::work::{Runner, Work};
use record::{RecordFile, RollingBack};

/// Why a task stopped before it succeeded.
enum TaskStop {
    Failed(String),
    Cancelled,
    /// A stop that ends the deployment as it is (the lease was lost).
    Stop(Stop),
}

/// Why a rollout stopped before it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The deployment failed; what it had changed is rolled back unless the
    /// message says otherwise.
    Failed(String),
    Cancelled(String),
    /// This runner may no longer hold the deployment: it leaves the swarm and
    /// the deployment's status alone.
    Lost(String),
}

/// What a rollout that succeeded leaves running.
#[derive(Debug, Clone)]
pub struct Release {
    pub message: String,
    pub services: Vec<ServiceImage>,
}

/// An image a service of a release runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceImage {
    pub name: String,
    pub image: String,
    pub digest: Option<String>,
    /// SHA-256 (hex) of the ServiceSpec applied: see [`crate::plan::spec_hash`].
    pub spec_hash: String,
}

/// How long the end of a deployment is retried while the API cannot be reached.
const FINISH_PATIENCE: Duration = Duration::from_secs(600);
/// Longest wait between two attempts to report the end.
const FINISH_BACKOFF: Duration = Duration::from_secs(30);
/// How long the last lines of a lost deployment may take to be stored.
const LOST_FLUSH: Duration = Duration::from_secs(5);
/// The most commits a deployment reports (the API takes no more at once):
/// a first deployment of a long history reports its newest ones.
const COMMITS_REPORTED: usize = 1000;
/// How deep a shallow mirror is fetched, in turn, until the walk of the
/// commits to report meets no edge.
const DEEPEN_STEPS: [i32; 3] = [10, 100, COMMITS_REPORTED as i32];
/// The most time deepening a shallow mirror may take, in all.
const DEEPEN_PATIENCE: Duration = Duration::from_secs(15);
/// How often, at most, a rollout says how its services converge.
const CONVERGENCE_EVERY: Duration = Duration::from_secs(1);
/// How long a resumed deployment waits for its first heartbeat before it
/// writes to the swarm.
const RENEW_WITHIN: Duration = Duration::from_secs(30);

/// Carries a claimed deployment to its end. `sent` is when the claim that
/// granted the lease was sent; `None` for one held before a restart.
pub(crate) async fn execute(runner: &Runner, work: Work, sent: Option<Instant>) {
    let span = tracing::info_span!("deployment", deployment = %work.name, id = %work.id);
    carry_out(runner, work, sent).instrument(span).await
}

async fn carry_out(runner: &Runner, work: Work, sent: Option<Instant>) {
    let mask = Mask::new(
        runner
            .secrets
            .values()
            .cloned()
            .chain(runner.registry_auth.secret_values()),
    );
    let reporter = Reporter::start(
        runner.client.clone(),
        work.id.clone(),
        runner.instance.clone(),
        mask.clone(),
        work.log_count,
    );
    let lease = Lease::hold(
        runner.client.clone(),
        work.id.clone(),
        runner.instance.clone(),
        work.lease.unwrap_or(DEFAULT_LEASE),
        sent,
    );
    let (record, problem) = RecordFile::open(&runner.workdir, &work.id);
    let resumed = sent.is_none();
    if resumed {
        reporter.line(format!(
            "runner {} restarted; reconciling {} with the swarm",
            runner.name, work.name
        ));
    }
    if let Some(problem) = problem {
        reporter.line(format!("warning: {problem}"));
    }
    let mut rollout = Rollout {
        runner,
        work: &work,
        report: &reporter,
        lease: &lease,
        record,
        resumed,
    };
    let ending = Ending::of(rollout.run().await);
    reporter.line(ending.line());
    match ending.finish_variables(&work.id, &runner.instance, &mask) {
        Some(variables) => {
            // Lines first, then the end: a finished deployment takes no more
            // lines. The heartbeat goes on meanwhile, so a slow API does not
            // cost the lease.
            reporter.flush().await;
            finish(runner, &work, variables).await;
        }
        None => {
            // The API may be out of reach: the lines get a moment, not the
            // ten minutes a deployment that goes on would give them.
            let _ = tokio::time::timeout(LOST_FLUSH, reporter.flush()).await;
            tracing::warn!("the lease was lost; not reporting the end");
        }
    }
    rollout.record.remove();
    drop(lease);
}

/// Reports the end, retrying while the API cannot be reached: an API
/// restarting now must not turn a converged rollout into a lost runner.
async fn finish(runner: &Runner, work: &Work, variables: finish_deployment::Variables) {
    let mut wait = Duration::from_millis(200);
    let deadline = Instant::now() + FINISH_PATIENCE;
    loop {
        match runner
            .client
            .run::<FinishDeployment>(variables.clone())
            .await
        {
            Ok(_) => return,
            Err(err) if err.is_transient() && Instant::now() < deadline => {
                tracing::warn!(deployment = %work.name, %err, "reporting the end; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(FINISH_BACKOFF);
            }
            Err(err) => {
                tracing::error!(deployment = %work.name, %err, "could not report the end");
                return;
            }
        }
    }
}

/// The end of a rollout as the API hears it.
struct Ending(Result<Release, Stop>);

impl Ending {
    fn of(outcome: Result<Release, Stop>) -> Self {
        Self(outcome)
    }

    /// The last line of the deployment's log.
    fn line(&self) -> String {
        match &self.0 {
            Ok(release) => format!("succeeded: {}", release.message),
            Err(Stop::Failed(why)) => format!("failed: {why}"),
            Err(Stop::Cancelled(why)) => format!("cancelled: {why}"),
            Err(Stop::Lost(why)) => format!(
                "stopped: {why}; this runner made no further change to the swarm and leaves \
                 the deployment to the API"
            ),
        }
    }

    /// The `finishDeployment` call, or `None` when the deployment was lost.
    fn finish_variables(
        &self,
        id: &str,
        instance: &str,
        mask: &Mask,
    ) -> Option<finish_deployment::Variables> {
        use finish_deployment::DeploymentStatus as Status;
        let (status, message, services) = match &self.0 {
            // A task run alone rolled no service out.
            Ok(release) if release.services.is_empty() => {
                (Status::SUCCEEDED, &release.message, None)
            }
            Ok(release) => (
                Status::SUCCEEDED,
                &release.message,
                Some(
                    release
                        .services
                        .iter()
                        .map(|s| finish_deployment::ServiceImageInput {
                            name: s.name.clone(),
                            image: s.image.clone(),
                            digest: s.digest.clone(),
                            spec_hash: Some(s.spec_hash.clone()),
                        })
                        .collect(),
                ),
            ),
            Err(Stop::Failed(why)) => (Status::FAILED, why, None),
            Err(Stop::Cancelled(why)) => (Status::CANCELLED, why, None),
            Err(Stop::Lost(_)) => return None,
        };
        Some(finish_deployment::Variables {
            id: id.to_owned(),
            instance: Some(instance.to_owned()),
            status,
            message: Some(mask.apply(message)),
            services,
        })
    }
}

/// An engine error as a stop: a fenced write means the lease was lost.
fn stop(err: EngineError, failed: impl FnOnce(EngineError) -> String) -> Stop {
    match err {
        EngineError::Fenced(why) => Stop::Lost(why),
        other => Stop::Failed(failed(other)),
    }
}

/// One deployment on its way.
pub(crate) struct Rollout<'a> {
    runner: &'a Runner,
    work: &'a Work,
    report: &'a Reporter,
    lease: &'a Lease,
    record: RecordFile,
    resumed: bool,
}

impl Rollout<'_> {
    async fn run(&mut self) -> Result<Release, Stop> {
        let fetched = self.fetch().await?;
        if let Some(task) = self.work.runs_task.clone() {
            return self.run_alone(&fetched, &task).await;
        }
        self.refuse_going_back(&fetched).await?;
        // The commits are reported while the stack rolls out, so that
        // deepening a shallow mirror does not hold the deployment's end; a
        // rollout that stops drops the report.
        let commits = CommitReport {
            runner: self.runner,
            work: self.work,
            report: self.report,
        };
        let commits = commits.report_commits(&fetched.sha);
        tokio::pin!(commits);
        let steps = self.roll_out(&fetched);
        tokio::pin!(steps);
        let mut reported = false;
        let release = loop {
            tokio::select! {
                outcome = &mut steps => break outcome?,
                () = &mut commits, if !reported => reported = true,
            }
        };
        if !reported {
            commits.await;
        }
        Ok(release)
    }

    async fn roll_out(&mut self, fetched: &Fetched) -> Result<Release, Stop> {
        let mut plan = self.plan(fetched).await?;
        if let Some(rolling) = self.record.record.rolling_back.clone() {
            return Err(self.resume_rollback(&plan, rolling).await);
        }
        self.skip_unwatched(fetched, &plan).await?;
        self.resolve(&mut plan).await?;
        self.before_tasks(&plan).await?;
        let applied = self.apply(&plan).await?;
        self.converge(&plan, &applied).await?;
        self.after_tasks(&plan, &applied).await?;
        self.settle(&plan, &applied, fetched).await
    }

    /// A deployment that runs one task of the spec alone: at its commit,
    /// with the images it names resolved, and no service changed. What it
    /// created for the job (a network, a config) and nothing uses is removed.
    async fn run_alone(&mut self, fetched: &Fetched, name: &str) -> Result<Release, Stop> {
        let mut plan = self.plan(fetched).await?;
        plan.only_task(name)
            .map_err(|why| Stop::Failed(format!("nothing was run: {why}")))?;
        self.resolve(&mut plan).await?;
        let task = plan.tasks[0].clone();
        let applied = self
            .prepare_tasks(&plan, &format!("running task {name}"))
            .await?;
        let outcome = self.run_task(&task).await;
        if let Some(why) = self.lease.lapsed() {
            return Err(Stop::Lost(why));
        }
        self.tidy(&plan, &applied).await?;
        match outcome {
            Ok(()) => Ok(Release {
                message: format!("task {name} succeeded at {}", short(&fetched.sha)),
                services: Vec::new(),
            }),
            Err(TaskStop::Failed(why)) => {
                Err(Stop::Failed(format!("{why}; no service was changed")))
            }
            Err(TaskStop::Cancelled) => Err(Stop::Cancelled(format!(
                "cancelled while task {name} ran; its job was removed, no service was changed"
            ))),
            Err(TaskStop::Stop(stop)) => Err(stop),
        }
    }

    /// The tasks that run before the rollout (`before: deploy`), in the
    /// order of their names, after the stack's networks, configs and
    /// secrets exist; the first that fails stops the deployment with no
    /// service changed, and what was created for it removed.
    async fn before_tasks(&mut self, plan: &Plan) -> Result<(), Stop> {
        let tasks: Vec<TaskPlan> = plan
            .tasks
            .iter()
            .filter(|t| t.when == TaskWhen::Before)
            .cloned()
            .collect();
        if tasks.is_empty() {
            return Ok(());
        }
        if !self.record.record.applied.changes.is_empty() {
            // Resumed after the rollout began: they succeeded before.
            return Ok(());
        }
        let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
        let doing = format!("running task {} before the rollout", names.join(", "));
        let applied = self.prepare_tasks(plan, &doing).await?;
        for task in &tasks {
            let outcome = self.run_task(task).await;
            if let Some(why) = self.lease.lapsed() {
                return Err(Stop::Lost(why));
            }
            let stop = match outcome {
                Ok(()) => continue,
                Err(TaskStop::Failed(why)) => Stop::Failed(format!(
                    "{why}; the rollout did not start: no service was changed"
                )),
                Err(TaskStop::Cancelled) => Stop::Cancelled(format!(
                    "cancelled while task {} ran before the rollout; no service was changed",
                    task.name
                )),
                Err(TaskStop::Stop(stop)) => return Err(stop),
            };
            self.tidy(plan, &applied).await?;
            return Err(stop);
        }
        Ok(())
    }

    /// The tasks that run once every service converged (`after: deploy`);
    /// the first that fails rolls the stack back as a failed convergence
    /// does (`rollback:`).
    async fn after_tasks(&mut self, plan: &Plan, applied: &Applied) -> Result<(), Stop> {
        let tasks: Vec<TaskPlan> = plan
            .tasks
            .iter()
            .filter(|t| t.when == TaskWhen::After)
            .cloned()
            .collect();
        for task in &tasks {
            self.phase(
                DeploymentPhase::VERIFYING,
                &format!("running task {} after the rollout", task.name),
                None,
            )
            .await;
            let outcome = self.run_task(task).await;
            if let Some(why) = self.lease.lapsed() {
                return Err(Stop::Lost(why));
            }
            match outcome {
                Ok(()) => {}
                Err(TaskStop::Failed(why)) => {
                    return Err(self.failed(plan, applied, why, None).await);
                }
                Err(TaskStop::Cancelled) => return Err(self.cancelled(plan, applied).await),
                Err(TaskStop::Stop(stop)) => return Err(stop),
            }
        }
        Ok(())
    }

    /// Before a task's first write: the lease renewed (after a restart),
    /// no cancel asked, and the stack's networks, configs and secrets made,
    /// which the job may use. Returns what was created, for [`Self::tidy`].
    async fn prepare_tasks(&mut self, plan: &Plan, doing: &str) -> Result<Applied, Stop> {
        if self.resumed && !self.lease.renewed(RENEW_WITHIN).await {
            return Err(Stop::Lost(self.lease.lapsed().unwrap_or_else(|| {
                "the lease could not be renewed after the restart".into()
            })));
        }
        if self.lease.cancel_requested() {
            return Err(Stop::Cancelled("cancelled before anything changed".into()));
        }
        self.phase(DeploymentPhase::UPDATING, doing, None).await;
        let baseline = self.baseline(&plan.stack).await?;
        if let Some(owner) = baseline.owned_by_other(&self.work.application, &self.work.environment)
        {
            return Err(Stop::Failed(format!("nothing was changed: {owner}")));
        }
        let mut applied = self.record.record.applied.clone();
        let path = self.record.path().to_owned();
        let mut saved = |applied: &Applied| {
            let record = record::Record {
                baseline: Some(baseline.clone()),
                applied: applied.clone(),
                rolling_back: None,
            };
            record::save(&path, &record).map_err(|err| {
                EngineError::Api(format!(
                    "cannot record the deployment's changes in {}: {err}",
                    path.display()
                ))
            })
        };
        let result = swarm::apply::apply_data(
            &self.runner.engine,
            plan,
            self.lease,
            &mut applied,
            &mut saved,
        )
        .await;
        self.record.record.applied = applied.clone();
        match result {
            Ok(()) => Ok(applied),
            Err(EngineError::Fenced(why)) => Err(Stop::Lost(why)),
            Err(err) => {
                self.tidy(plan, &applied).await?;
                Err(Stop::Failed(format!("nothing was changed: {err}")))
            }
        }
    }

    /// Runs one task's job to its end, its output in the log under the
    /// task's name.
    async fn run_task(&self, task: &TaskPlan) -> Result<(), TaskStop> {
        let report = self.report;
        report.line(format!(
            "task {}: running {} as job {} (timeout {} s)",
            task.name,
            task.job.image().unwrap_or_default(),
            task.job.name,
            task.timeout.as_secs()
        ));
        let started = Instant::now();
        let is_cancelled = || self.lease.cancel_requested();
        let mut line = |text: String| report.stream_line(&task.name, text);
        let end = swarm::job::run(
            &self.runner.engine,
            task,
            self.lease,
            &is_cancelled,
            &mut line,
        )
        .await;
        match end {
            Ok(JobEnd::Succeeded) => {
                report.line(format!(
                    "task {}: succeeded in {:.1} s",
                    task.name,
                    started.elapsed().as_secs_f64()
                ));
                Ok(())
            }
            Ok(JobEnd::Failed(why)) => Err(TaskStop::Failed(why)),
            Ok(JobEnd::Cancelled) => Err(TaskStop::Cancelled),
            Err(EngineError::Fenced(why)) => Err(TaskStop::Stop(Stop::Lost(why))),
            Err(err) => Err(TaskStop::Failed(format!("task {}: {err}", task.name))),
        }
    }

    /// Removes what a deployment created that nothing uses: networks it
    /// created, configs and secrets no service uses.
    async fn tidy(&self, plan: &Plan, applied: &Applied) -> Result<(), Stop> {
        let engine = &self.runner.engine;
        let tidy = async {
            swarm::apply::prune_data(engine, &plan.stack, self.lease).await?;
            swarm::apply::remove_created_networks(engine, applied, self.lease).await
        };
        match tidy.await {
            Ok(()) => Ok(()),
            Err(EngineError::Fenced(why)) => Err(Stop::Lost(why)),
            Err(err) => {
                self.report.line(format!(
                    "warning: removing what the deployment created: {err}"
                ));
                Ok(())
            }
        }
    }

    async fn phase(&self, phase: DeploymentPhase, message: &str, sha: Option<&str>) {
        if let Err(err) = self.report.progress(Some(phase), message, sha).await {
            tracing::warn!(%err, "could not report the phase");
        }
    }

    /// Fetch: the commit, into the repository's mirror.
    async fn fetch(&self) -> Result<Fetched, Stop> {
        let work = self.work;
        self.phase(
            DeploymentPhase::CLONING,
            &format!("fetching {} at {}", work.repository, work.reference),
            None,
        )
        .await;
        let fetched = self
            .runner
            .mirrors
            .fetch(
                &work.repository,
                &work.reference,
                work.sha.as_deref(),
                self.runner.fetch_timeout,
            )
            .await
            .map_err(|err| Stop::Failed(err.to_string()))?;
        self.report.line(format!(
            "fetched {} ({}): {} bytes in {} ms",
            fetched.sha,
            fetched.how,
            fetched.received_bytes,
            fetched.took.as_millis()
        ));
        Ok(fetched)
    }

    /// An auto-deploy (a push, a pipeline) that arrived late must not roll
    /// back a newer release: a commit the environment already runs, or one
    /// its release descends from, is not rolled out. A person who deploys an
    /// old commit means it and is not stopped.
    async fn refuse_going_back(&self, fetched: &Fetched) -> Result<(), Stop> {
        let work = self.work;
        let (true, Some(release)) = (work.auto_deploy, &work.release) else {
            return Ok(());
        };
        let newer = self
            .runner
            .mirrors
            .contains(
                &work.repository,
                &release.sha,
                &fetched.sha,
                self.runner.fetch_timeout,
            )
            .await;
        match newer {
            Ok(false) => Ok(()),
            Ok(true) => Err(Stop::Cancelled(format!(
                "{} is an auto-deploy of {}, but {} already runs {} ({}), which {}: \
                 deploying it would go backwards, so nothing was changed",
                work.name,
                short(&fetched.sha),
                work.environment,
                release.name,
                short(&release.sha),
                if release.sha == fetched.sha {
                    "is that commit"
                } else {
                    "is newer"
                }
            ))),
            Err(err) => {
                self.report.line(format!(
                    "warning: cannot tell whether {} is older than the release {} ({err}); \
                     deploying it",
                    short(&fetched.sha),
                    short(&release.sha)
                ));
                Ok(())
            }
        }
    }

    /// An auto-deploy of an environment that watches paths (`watch:`) whose
    /// commits since the release touch none of them deploys nothing.
    async fn skip_unwatched(&self, fetched: &Fetched, plan: &Plan) -> Result<(), Stop> {
        let work = self.work;
        let (true, false, Some(release)) = (work.auto_deploy, plan.watch.is_empty(), &work.release)
        else {
            return Ok(());
        };
        let changed = self
            .runner
            .mirrors
            .changed_paths(
                &work.repository,
                &release.sha,
                &fetched.sha,
                self.runner.fetch_timeout,
            )
            .await;
        match changed {
            Ok(paths) => {
                let touched: Vec<&String> = paths
                    .iter()
                    .filter(|p| spec::watch::any_matches(&plan.watch, p))
                    .collect();
                if touched.is_empty() {
                    return Err(Stop::Cancelled(format!(
                        "{} changes nothing {} watches ({}) since {} ({}): {} path(s) changed, \
                         none of them watched, so nothing was deployed",
                        short(&fetched.sha),
                        work.environment,
                        plan.watch.join(", "),
                        release.name,
                        short(&release.sha),
                        paths.len()
                    )));
                }
                self.report.line(format!(
                    "{} watched path(s) changed since {}: {}",
                    touched.len(),
                    release.name,
                    touched
                        .iter()
                        .take(5)
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                Ok(())
            }
            Err(err) => {
                self.report.line(format!(
                    "warning: cannot tell which paths changed since {} ({err}); deploying",
                    release.name
                ));
                Ok(())
            }
        }
    }

    /// Plan: `slipway.yml` and its Compose files at the commit, as swarm objects.
    async fn plan(&self, fetched: &Fetched) -> Result<Plan, Stop> {
        let work = self.work;
        self.phase(
            DeploymentPhase::PLANNING,
            &format!("reading {} at {}", work.spec_path, short(&fetched.sha)),
            Some(&fetched.sha),
        )
        .await;
        let ctx = Context {
            application: work.application.clone(),
            environment: work.environment.clone(),
            deployment: work.id.clone(),
            sha: fetched.sha.clone(),
            ref_name: work.reference.clone(),
            secrets: self.runner.secrets.clone(),
        };
        let plan = CommitFiles::open(&fetched.mirror, &fetched.sha)
            .map_err(|e| e.to_string())
            .and_then(|files| spec::load(&files, &work.spec_path, &ctx).map_err(|e| e.to_string()))
            .map_err(Stop::Failed)?;
        for warning in &plan.warnings {
            self.report.line(format!("warning: {warning}"));
        }
        Ok(plan)
    }

    /// Resolve: each image's tag pinned to the digest its registry has now,
    /// and the registry credentials each service is sent with. An image that
    /// cannot be resolved fails the deployment before anything changed.
    async fn resolve(&mut self, plan: &mut Plan) -> Result<(), Stop> {
        self.phase(
            DeploymentPhase::PLANNING,
            &format!("resolving images ({} services)", plan.services.len()),
            None,
        )
        .await;
        let baseline = self.baseline(&plan.stack).await?;
        plan.restore = self.work.restores.clone();
        if let Some(restore) = &plan.restore {
            self.report.line(format!(
                "deploying {} exactly: its images pinned to the digests it ran ({} of {} \
                 services)",
                restore.release,
                plan.services
                    .iter()
                    .filter(|s| restore.of(&plan.stack, &s.name).is_some())
                    .count(),
                plan.services.len()
            ));
        }
        let started = Instant::now();
        let resolution = swarm::resolve(
            &self.runner.engine,
            plan,
            &baseline,
            &self.runner.registry_auth,
        )
        .await
        .map_err(|err| Stop::Failed(format!("nothing was changed: {err}")))?;
        for line in resolution.lines {
            self.report.line(line);
        }
        for warning in resolution.warnings {
            self.report.line(format!("warning: {warning}"));
        }
        self.report.line(format!(
            "images resolved in {:.1} ms",
            started.elapsed().as_secs_f64() * 1000.0
        ));
        Ok(())
    }

    /// The stack as it was before this deployment's first write: recorded
    /// (a resumed deployment has it), or read now and recorded.
    async fn baseline(&mut self, stack: &str) -> Result<Baseline, Stop> {
        match &self.record.record.baseline {
            Some(baseline) if baseline.stack == stack => Ok(baseline.clone()),
            _ => {
                let baseline = swarm::apply::snapshot(&self.runner.engine, stack)
                    .await
                    .map_err(|err| Stop::Failed(format!("reading stack {stack}: {err}")))?;
                self.record.record.baseline = Some(baseline.clone());
                self.save()?;
                Ok(baseline)
            }
        }
    }

    /// Apply: networks, configs, secrets and services, after a look at who
    /// owns the stack. A failure midway rolls back what was done.
    async fn apply(&mut self, plan: &Plan) -> Result<Applied, Stop> {
        if self.resumed && !self.lease.renewed(RENEW_WITHIN).await {
            return Err(Stop::Lost(self.lease.lapsed().unwrap_or_else(|| {
                "the lease could not be renewed after the restart".into()
            })));
        }
        if self.lease.cancel_requested() {
            let applied = self.record.record.applied.clone();
            return Err(self.cancelled(plan, &applied).await);
        }
        self.phase(
            DeploymentPhase::UPDATING,
            &format!(
                "applying stack {} ({} services)",
                plan.stack,
                plan.services.len()
            ),
            None,
        )
        .await;
        let baseline = self.baseline(&plan.stack).await?;
        let engine = &self.runner.engine;
        if let Some(owner) = baseline.owned_by_other(&self.work.application, &self.work.environment)
        {
            return Err(Stop::Failed(format!("nothing was changed: {owner}")));
        }
        let mut applied = self.record.record.applied.clone();
        let path = self.record.path().to_owned();
        let mut saved = |applied: &Applied| {
            let record = record::Record {
                baseline: Some(baseline.clone()),
                applied: applied.clone(),
                rolling_back: None,
            };
            record::save(&path, &record).map_err(|err| {
                EngineError::Api(format!(
                    "cannot record the deployment's changes in {}: {err}",
                    path.display()
                ))
            })
        };
        let result = swarm::apply(
            engine,
            plan,
            &baseline,
            self.lease,
            &mut applied,
            &mut saved,
        )
        .await;
        self.record.record.applied = applied.clone();
        for change in &applied.changes {
            self.report
                .line(format!("{}: {}", change.name, kind_word(change.kind)));
        }
        match result {
            Ok(()) => Ok(applied),
            Err(EngineError::Fenced(why)) => Err(Stop::Lost(why)),
            Err(err) => Err(match self.undo(plan, &applied).await {
                Ok(undone) => Stop::Failed(format!("{err}; {undone}")),
                Err(Stop::Failed(why)) => {
                    Stop::Failed(format!("{err}; the rollback failed too: {why}"))
                }
                Err(other) => other,
            }),
        }
    }

    /// Converge: every changed service runs its new spec, up and stable;
    /// otherwise the stack goes back.
    async fn converge(&mut self, plan: &Plan, applied: &Applied) -> Result<(), Stop> {
        self.phase(
            DeploymentPhase::VERIFYING,
            "waiting for services to converge",
            None,
        )
        .await;
        let is_cancelled = || self.lease.cancel_requested();
        let report = self.report;
        // How each service converges, for the deployment's page: what the
        // log says, kept per service and sent when it changed.
        let states = std::sync::Mutex::new(
            applied
                .changes
                .iter()
                .filter(|c| c.kind != ChangeKind::Removed)
                .map(|c| {
                    (
                        c.name.clone(),
                        Convergence::Converging,
                        "waiting".to_owned(),
                    )
                })
                .collect::<Vec<_>>(),
        );
        let changed = std::sync::atomic::AtomicBool::new(true);
        let mut progress = |service: &str, state: &str| {
            report.line(format!("{service}: {state}"));
            let mut states = states.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(entry) = states.iter_mut().find(|(name, ..)| name == service) {
                entry.1 = if state == "converged" {
                    Convergence::Converged
                } else {
                    Convergence::Converging
                };
                state.clone_into(&mut entry.2);
                changed.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        };
        let snapshot = || states.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let converging = swarm::converge(
            &self.runner.engine,
            applied,
            plan.timeout,
            &is_cancelled,
            &mut progress,
        );
        let telling = async {
            loop {
                tokio::time::sleep(CONVERGENCE_EVERY).await;
                if changed.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    if let Err(err) = report.convergence(&snapshot()).await {
                        tracing::debug!(%err, "could not say how the services converge");
                    }
                }
            }
        };
        let outcome = tokio::select! {
            outcome = converging => outcome,
            () = telling => unreachable!("telling never ends"),
        }
        .unwrap_or_else(|err| Outcome::Failed {
            why: err.to_string(),
            service: None,
        });
        let mut last = snapshot();
        if let Outcome::Failed {
            why,
            service: Some(failed),
        } = &outcome
        {
            if let Some(entry) = last.iter_mut().find(|(name, ..)| name == failed) {
                entry.1 = Convergence::Failed;
                why.strip_prefix(&format!("{failed}: "))
                    .unwrap_or(why)
                    .clone_into(&mut entry.2);
            }
        }
        if let Err(err) = report.convergence(&last).await {
            tracing::debug!(%err, "could not say how the services converged");
        }
        if let Some(why) = self.lease.lapsed() {
            // Another runner may hold the environment now: leave the swarm alone.
            return Err(Stop::Lost(why));
        }
        match outcome {
            Outcome::Converged => Ok(()),
            Outcome::Failed { why, service } => Err(self.failed(plan, applied, why, service).await),
            Outcome::Cancelled => Err(self.cancelled(plan, applied).await),
        }
    }

    /// The stop of a rollout that failed after applying — a service that did
    /// not converge (`service`), a task after the rollout —, after rolling
    /// back as `rollback:` says.
    async fn failed(
        &mut self,
        plan: &Plan,
        applied: &Applied,
        why: String,
        service: Option<String>,
    ) -> Stop {
        match (service, plan.rollback) {
            (_, Rollback::Stack) => {
                let rolling = RollingBack {
                    why,
                    only: None,
                    cancel: false,
                };
                self.roll_back(plan, applied, rolling).await
            }
            (Some(service), Rollback::Service) => {
                let rolling = RollingBack {
                    why,
                    only: Some(service),
                    cancel: false,
                };
                self.roll_back(plan, applied, rolling).await
            }
            (_, Rollback::Service | Rollback::Off) => Stop::Failed(format!(
                "{why}; nothing was rolled back (rollback: {})",
                match plan.rollback {
                    Rollback::Service => "service, and no one service failed",
                    _ => "false",
                }
            )),
        }
    }

    /// Settle: services the stack no longer has and configs and secrets no
    /// service uses are removed; the release's images are recorded.
    async fn settle(
        &self,
        plan: &Plan,
        applied: &Applied,
        fetched: &Fetched,
    ) -> Result<Release, Stop> {
        let engine = &self.runner.engine;
        let lost = |err: EngineError| match err {
            EngineError::Fenced(why) => Err(Stop::Lost(why)),
            other => Ok(other),
        };
        if let Err(err) = swarm::apply::remove_dropped(engine, applied, self.lease).await {
            let err = lost(err)?;
            self.report.line(format!(
                "warning: removing services no longer in the stack: {err}"
            ));
        }
        if let Err(err) = swarm::apply::prune_data(engine, &plan.stack, self.lease).await {
            let err = lost(err)?;
            self.report.line(format!(
                "warning: removing unused configs and secrets: {err}"
            ));
        }
        // The image as written, and the digest it was pinned to: what runs.
        let services = plan
            .services
            .iter()
            .map(|service| ServiceImage {
                name: service.name.clone(),
                image: service.written_image(),
                digest: service.image().and_then(digest_of).map(str::to_owned),
                spec_hash: crate::plan::spec_hash(&service.spec),
            })
            .collect();
        let unchanged = applied
            .changes
            .iter()
            .all(|c| c.kind == ChangeKind::Unchanged);
        let verb = if unchanged { "unchanged" } else { "converged" };
        Ok(Release {
            message: format!("{} {verb} at {}", plan.stack, short(&fetched.sha)),
            services,
        })
    }

    /// Where a rollback leaves the stack: on the environment's release.
    fn back_on(&self) -> String {
        match &self.work.release {
            Some(release) => format!(
                "the stack is back on release {} ({})",
                release.name,
                short(&release.sha)
            ),
            None => "the stack is back as it was (the environment had no release yet)".into(),
        }
    }

    /// The stop of a cancelled deployment, after undoing what it changed.
    async fn cancelled(&mut self, plan: &Plan, applied: &Applied) -> Stop {
        if !applied.touched_anything() {
            return Stop::Cancelled("cancelled before anything changed".into());
        }
        let rolling = RollingBack {
            why: "cancel requested".into(),
            only: None,
            cancel: true,
        };
        self.roll_back(plan, applied, rolling).await
    }

    /// Puts back what a failed or cancelled rollout changed — every change,
    /// or `rolling.only` — recording first that it does, and says how it
    /// ended.
    async fn roll_back(&mut self, plan: &Plan, applied: &Applied, rolling: RollingBack) -> Stop {
        self.record.record.rolling_back = Some(rolling.clone());
        if let Err(err) = self.record.save() {
            self.report.line(format!(
                "warning: cannot record the rollback in {} ({err}); a restart now would apply \
                 the deployment again",
                self.record.path().display()
            ));
        }
        let why = &rolling.why;
        self.phase(DeploymentPhase::ROLLING_BACK, why, None).await;
        match (&rolling.only, rolling.cancel) {
            (_, true) => match self.undo(plan, applied).await {
                Ok(undone) => Stop::Cancelled(format!("cancelled; {undone}")),
                Err(Stop::Failed(why)) => {
                    Stop::Cancelled(format!("cancelled; the rollback failed: {why}"))
                }
                Err(other) => other,
            },
            (Some(service), false) => {
                self.report.line(format!(
                    "rolling back {service} alone (rollback: service): {why}"
                ));
                let alone = Applied {
                    changes: applied
                        .changes
                        .iter()
                        .filter(|c| c.name == *service)
                        .cloned()
                        .collect(),
                    ..Applied::default()
                };
                match self.undo(plan, &alone).await {
                    Ok(_) => Stop::Failed(format!(
                        "{why}; {service} was rolled back alone (rollback: service), the other \
                         services keep the new spec"
                    )),
                    Err(Stop::Failed(err)) => {
                        Stop::Failed(format!("{why}; rolling back {service} failed too: {err}"))
                    }
                    Err(other) => other,
                }
            }
            (None, false) => {
                self.report.line(format!("rolling back: {why}"));
                match self.undo(plan, applied).await {
                    Ok(undone) => {
                        Stop::Failed(format!("rolled back: {why}; {}: {undone}", self.back_on()))
                    }
                    Err(Stop::Failed(err)) => {
                        Stop::Failed(format!("{why}; the rollback failed too: {err}"))
                    }
                    Err(other) => other,
                }
            }
        }
    }

    /// A runner restarted while its deployment was rolling back (the
    /// runner's own service may be among those put back) goes on with the
    /// rollback: applying the deployment again would undo it.
    async fn resume_rollback(&mut self, plan: &Plan, rolling: RollingBack) -> Stop {
        if !self.lease.renewed(RENEW_WITHIN).await {
            return Stop::Lost(
                self.lease
                    .lapsed()
                    .unwrap_or_else(|| "the lease could not be renewed after the restart".into()),
            );
        }
        self.report.line(format!(
            "the rollback begun before the restart goes on ({})",
            rolling.why
        ));
        let applied = self.record.record.applied.clone();
        self.roll_back(plan, &applied, rolling).await
    }

    /// Puts back what `applied` changed; says what it did.
    async fn undo(&self, plan: &Plan, applied: &Applied) -> Result<String, Stop> {
        let engine = &self.runner.engine;
        if !applied.touched_anything() {
            return Ok("nothing had been changed".into());
        }
        swarm::rollback(engine, applied, plan.timeout, self.lease)
            .await
            .map_err(|err| stop(err, |err| err.to_string()))?;
        // What the deployment created and nothing uses now.
        self.tidy(plan, applied).await?;
        let (mut restored, mut removed) = (0, 0);
        for change in &applied.changes {
            match change.kind {
                ChangeKind::Updated | ChangeKind::Unchanged => restored += 1,
                ChangeKind::Created => removed += 1,
                ChangeKind::Removed => {}
            }
        }
        Ok(format!(
            "rolled back what it changed ({restored} service(s) restored, {removed} created one(s) removed)"
        ))
    }

    fn save(&self) -> Result<(), Stop> {
        self.record.save().map_err(|err| {
            Stop::Failed(format!(
                "nothing was changed: cannot record the deployment's changes in {}: {err}",
                self.record.path().display()
            ))
        })
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

fn kind_word(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Created => "created",
        ChangeKind::Updated => "updated",
        ChangeKind::Unchanged => "unchanged",
        ChangeKind::Removed => "no longer in the stack: removed once the rest has converged",
    }
}

/// The report of a rollout's commits, borrowing only what it shares with the
/// rollout, so that it runs beside the rollout's own steps.
struct CommitReport<'a> {
    runner: &'a Runner,
    work: &'a Work,
    report: &'a Reporter,
}

impl CommitReport<'_> {
    /// Report: the commits of the deployed one that the API may not know
    /// yet, for its commit graph. Not being able to is a warning: the
    /// release stands.
    async fn report_commits(&self, sha: &str) {
        match self.try_report_commits(sha).await {
            Ok(line) => self.report.line(line),
            Err(why) => {
                tracing::warn!(%why, "could not report the commits");
                self.report.line(format!(
                    "warning: the API was not told the commits of {}: {why}; the deployment \
                     goes on (how far environments are apart may not be known)",
                    short(sha)
                ));
            }
        }
    }

    async fn try_report_commits(&self, sha: &str) -> Result<String, String> {
        let work = self.work;
        let client = &self.runner.client;
        let known = client
            .run::<ReleaseShas>(release_shas::Variables {
                application: work.application.clone(),
            })
            .await
            .map_err(|err| format!("asking for the commits of the releases: {err}"))?
            .application
            .map(|app| app.release_shas)
            .unwrap_or_default();
        let mirrors = &self.runner.mirrors;
        let walk = || async {
            mirrors
                .commits(&work.repository, sha, known.clone(), COMMITS_REPORTED)
                .await
                .map_err(|err| format!("walking the mirror: {err}"))
        };
        let mut commits = walk().await?;
        // A shallow mirror (a fetch by sha is one commit deep) knows no
        // parents past its edge: fetch the history the report needs, a
        // little first (the last release is usually a few commits back),
        // within a patience of its own, as the deployment waits for it.
        let edge = |commits: &[crate::git::Commit]| {
            commits.len() < COMMITS_REPORTED && commits.iter().any(|c| c.parents.is_none())
        };
        let deadline = Instant::now() + DEEPEN_PATIENCE.min(self.runner.fetch_timeout);
        for depth in DEEPEN_STEPS {
            if !edge(&commits) {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match mirrors
                .deepen(&work.repository, &work.reference, sha, depth, left)
                .await
            {
                // Not shallow: the edge is of another kind, which
                // fetching does not mend.
                Ok(false) => break,
                Ok(true) => {
                    commits = walk().await?;
                    self.report.line(format!(
                        "the mirror was shallow at {}: fetched its history {depth} commits deep",
                        short(sha)
                    ));
                }
                Err(err) => {
                    self.report.line(format!(
                        "warning: the mirror is shallow at {} and could not be deepened \
                         ({err}): reporting the commits it has",
                        short(sha)
                    ));
                    break;
                }
            }
        }
        if commits.is_empty() {
            return Ok(format!(
                "the API knows the commits of {} already",
                short(sha)
            ));
        }
        let count = commits.len();
        let commits = commits
            .into_iter()
            .map(|c| report_deployment_commits::CommitInput {
                sha: c.sha,
                parents: c.parents,
                subject: Some(c.subject),
                committed_at: chrono::DateTime::from_timestamp(c.committed_at, 0),
            })
            .collect();
        let new = client
            .run::<ReportDeploymentCommits>(report_deployment_commits::Variables {
                id: work.id.clone(),
                instance: Some(self.runner.instance.clone()),
                commits,
            })
            .await
            .map_err(|err| format!("reporting them: {err}"))?
            .report_deployment_commits;
        Ok(format!(
            "reported {count} commit(s) up to {} to the API, {new} new to it{}",
            short(sha),
            if count == COMMITS_REPORTED {
                format!(" (at most {COMMITS_REPORTED}: older history stays unknown)")
            } else {
                String::new()
            }
        ))
    }
}
