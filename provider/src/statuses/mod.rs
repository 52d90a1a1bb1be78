//! Statuses out: how each deployment that came from GitHub is going, posted as
//! GitHub deployment statuses, in order, exactly as far as it has got.
//!
//! The [`journal`] says which deployments to report and what GitHub has taken.
//! A record is of one deployment of one API database: a deployment the API
//! reports with another `createdAt` is another deployment that reuses the id
//! (the database was reset), and the record is discarded.
//! [`follow`] wakes the reporter for every change the API's `deploymentEvents`
//! subscription shows (reconnecting with backoff), and for every pending
//! deployment after each (re)connect and every [`RESYNC_EVERY`], so nothing
//! that happened while the provider was down or disconnected is missed.
//! [`Reporter`] reads the deployment as it is now, derives the statuses its
//! life so far implies (`queued`, `in_progress` once it started, then the
//! final one) and posts those GitHub does not have yet, oldest deployment
//! first, waiting out GitHub's failures and rate limits. A status whose
//! answer never came (GitHub may have taken it), or that was posted just
//! before the provider stopped and so is not in the journal, is *in doubt*:
//! before posting more for that deployment, the reporter reads the statuses
//! GitHub has and records those that are Slipway's, so none is posted twice.

pub mod github;
pub mod journal;

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use slipway_client::operations::{self, deployment::DeploymentStatus};
use slipway_client::{Client, DateTime};
use tokio::sync::{mpsc, watch};

use self::github::{Github, GithubError, ListedStatus, StatusBody};
use self::journal::{GithubDeploymentSpec, Journal, JournalError, Tracked};

/// How often every pending deployment is looked at even without an event.
pub const RESYNC_EVERY: Duration = Duration::from_secs(30);
/// First wait after a failure; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// GitHub's limit on a status description, in characters.
pub const DESCRIPTION_MAX: usize = 140;

/// A GitHub deployment state Slipway posts.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GithubState {
    Queued,
    InProgress,
    Success,
    Failure,
    Error,
}

/// The marker Slipway puts in the payload of a GitHub deployment it creates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The Slipway deployment's id.
    pub deployment: String,
    /// `application#number`.
    pub name: String,
    pub application: String,
}

impl Marker {
    pub fn payload(&self) -> Value {
        json!({ "slipway": self })
    }
}

/// Slipway's marker in a GitHub deployment payload (an object, or the JSON
/// text of one, as older deployments carry it).
pub fn marker_of(payload: &Value) -> Option<Marker> {
    let parsed;
    let payload = match payload {
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text).ok()?;
            &parsed
        }
        other => other,
    };
    serde_json::from_value(payload.get("slipway")?.clone()).ok()
}

/// What the hook handlers use: tracks a deployment durably and wakes the reporter.
#[derive(Clone, Debug)]
pub struct Statuses {
    journal: Journal,
    wake: mpsc::UnboundedSender<Wake>,
}

#[derive(Debug)]
enum Wake {
    One(i64),
    All,
}

impl Statuses {
    /// Reports the statuses of Slipway deployment `deployment` (created by
    /// the API at `created_at`) on the GitHub deployment `github_id` of
    /// `repo`. Returns once that is on disk.
    pub async fn track_event(
        &self,
        deployment: i64,
        created_at: DateTime,
        repo: &str,
        github_id: u64,
    ) -> Result<(), JournalError> {
        self.track(Tracked {
            deployment,
            created_at: Some(created_at),
            repo: repo.to_owned(),
            github_id: Some(github_id),
            create: None,
            posted: Vec::new(),
        })
        .await
    }

    /// Creates a GitHub deployment for `deployment` (made from a push, created
    /// by the API at `created_at`), then reports its statuses there. Returns
    /// once that is on disk.
    pub async fn track_push(
        &self,
        deployment: i64,
        created_at: DateTime,
        repo: &str,
        spec: GithubDeploymentSpec,
    ) -> Result<(), JournalError> {
        self.track(Tracked {
            deployment,
            created_at: Some(created_at),
            repo: repo.to_owned(),
            github_id: None,
            create: Some(spec),
            posted: Vec::new(),
        })
        .await
    }

    async fn track(&self, tracked: Tracked) -> Result<(), JournalError> {
        let deployment = tracked.deployment;
        let journal = self.journal.clone();
        tokio::task::spawn_blocking(move || journal.track(tracked))
            .await
            .expect("journal task")?;
        let _ = self.wake.send(Wake::One(deployment));
        Ok(())
    }

    /// The Slipway deployment for which Slipway itself created the GitHub
    /// deployment `github_id` (for a push), while its statuses are reported.
    pub fn created_by_slipway(&self, github_id: u64) -> Option<i64> {
        let deployment = self.journal.by_github_id(github_id)?;
        let tracked = self.journal.get(deployment)?;
        tracked.create.is_some().then_some(deployment)
    }
}

/// Starts the reporter: follows the API's events and posts statuses until
/// `stop` turns true. Returns the handle hooks use and the tasks to await.
pub fn start(
    journal: Journal,
    github: Github,
    api: Client,
    public_url: Option<String>,
    stop: watch::Receiver<bool>,
) -> (Statuses, Vec<tokio::task::JoinHandle<()>>) {
    let (wake, woken) = mpsc::unbounded_channel();
    let statuses = Statuses {
        journal: journal.clone(),
        wake: wake.clone(),
    };
    let reporter = Reporter {
        journal: journal.clone(),
        github,
        api: api.clone(),
        public_url,
        stop: stop.clone(),
        in_doubt: BTreeSet::new(),
    };
    let tasks = vec![
        tokio::spawn(follow(api, journal, wake, stop)),
        tokio::spawn(reporter.run(woken)),
    ];
    (statuses, tasks)
}

/// Wakes the reporter for every event of a tracked deployment; after each
/// (re)connect and every [`RESYNC_EVERY`], for all of them.
async fn follow(
    api: Client,
    journal: Journal,
    wake: mpsc::UnboundedSender<Wake>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::default();
    while !*stop.borrow() {
        let variables = operations::deployment_events::Variables {
            application: None,
            id: None,
        };
        let connected = tokio::select! {
            connected = api.subscribe::<operations::DeploymentEvents>(variables) => connected,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        match connected {
            Ok(events) => {
                backoff.reset();
                tracing::debug!("following the API's deployment events");
                // What changed while not connected.
                let _ = wake.send(Wake::All);
                let mut events = std::pin::pin!(events);
                let mut resync = tokio::time::interval(RESYNC_EVERY);
                resync.reset();
                loop {
                    tokio::select! {
                        event = events.next() => match event {
                            Some(Ok(data)) => {
                                let id = data.deployment_events.id.parse::<i64>().unwrap_or(0);
                                if journal.get(id).is_some() {
                                    let _ = wake.send(Wake::One(id));
                                }
                            }
                            Some(Err(err)) => {
                                tracing::warn!(%err, "lost the API's deployment events; reconnecting");
                                break;
                            }
                            None => {
                                tracing::warn!("the API ended the deployment events; reconnecting");
                                break;
                            }
                        },
                        _ = resync.tick() => {
                            let _ = wake.send(Wake::All);
                        }
                        _ = stop.wait_for(|stop| *stop) => return,
                    }
                }
            }
            Err(err) => {
                tracing::warn!(%err, "cannot follow the API's deployment events; retrying");
                // Keep posting what is known while the API is away.
                let _ = wake.send(Wake::All);
            }
        }
        if !backoff.sleep(&mut stop, None).await {
            return;
        }
    }
}

/// Posts statuses, one deployment at a time, oldest first.
struct Reporter {
    journal: Journal,
    github: Github,
    api: Client,
    public_url: Option<String>,
    stop: watch::Receiver<bool>,
    /// Deployments GitHub may have taken more statuses of than the journal
    /// says: every pending one at start, and one whose post failed.
    in_doubt: BTreeSet<i64>,
}

/// What became of one attempt to bring a deployment's statuses up to date.
enum Outcome {
    /// Up to date (or given up on).
    Settled,
    /// Failed for a while; try again after the wait.
    Again(Option<Duration>),
    Stopped,
}

impl Reporter {
    async fn run(mut self, mut woken: mpsc::UnboundedReceiver<Wake>) {
        let mut dirty: BTreeSet<i64> = self.journal.pending().into_iter().collect();
        // The provider may have stopped between a post and its record.
        self.in_doubt = dirty.clone();
        let mut backoff = Backoff::default();
        loop {
            // Take every wake-up that is waiting, then work the oldest.
            while let Ok(wake) = woken.try_recv() {
                self.mark(&mut dirty, wake);
            }
            let Some(&deployment) = dirty.first() else {
                let mut stop = self.stop.clone();
                tokio::select! {
                    wake = woken.recv() => match wake {
                        Some(wake) => self.mark(&mut dirty, wake),
                        None => return,
                    },
                    _ = stop.wait_for(|stop| *stop) => return,
                }
                continue;
            };
            match self.report(deployment).await {
                Outcome::Settled => {
                    dirty.remove(&deployment);
                    backoff.reset();
                }
                Outcome::Again(after) => {
                    if !backoff.sleep(&mut self.stop, after).await {
                        return;
                    }
                }
                Outcome::Stopped => return,
            }
        }
    }

    fn mark(&self, dirty: &mut BTreeSet<i64>, wake: Wake) {
        match wake {
            Wake::One(id) => {
                dirty.insert(id);
            }
            Wake::All => dirty.extend(self.journal.pending()),
        }
    }

    /// Posts what GitHub does not have yet of `deployment`'s statuses.
    async fn report(&mut self, deployment: i64) -> Outcome {
        let Some(mut tracked) = self.journal.get(deployment) else {
            return Outcome::Settled;
        };
        let variables = operations::deployment::Variables {
            id: deployment.to_string(),
        };
        let now = match self.api.run::<operations::Deployment>(variables).await {
            Ok(data) => match data.deployment {
                Some(now) => now,
                None => {
                    tracing::warn!(
                        deployment,
                        "the API no longer has the deployment; no more statuses for it"
                    );
                    return self.settle(deployment);
                }
            },
            Err(err) => {
                tracing::warn!(deployment, %err, "cannot read the deployment from the API; retrying");
                return Outcome::Again(None);
            }
        };
        if !tracked.is_of(now.created_at) {
            // The API's database is not the one this record was made for
            // (it was reset or replaced, and ids start again from 1).
            tracing::warn!(
                deployment,
                recorded_created_at = ?tracked.created_at,
                api_created_at = %now.created_at,
                "the journal's record of this deployment belongs to another API database; \
                 discarding it (no statuses for the old deployment)"
            );
            return self.settle(deployment);
        }
        let path = life(&now.status, now.started_at.is_some());
        let mut todo = unposted(&path, &tracked.posted);

        let github_id = match tracked.github_id {
            Some(id) => id,
            None => match self.create_on_github(&tracked, &now).await {
                Ok(Some(id)) => {
                    tracked.github_id = Some(id);
                    id
                }
                Ok(None) => return self.settle(deployment),
                Err(outcome) => return outcome,
            },
        };
        if !todo.is_empty() && self.in_doubt.contains(&deployment) {
            match self.recover(&mut tracked, github_id, &now).await {
                Ok(()) => {
                    self.in_doubt.remove(&deployment);
                    todo = unposted(&path, &tracked.posted);
                }
                Err(outcome) => return outcome,
            }
        }
        for state in todo {
            if *self.stop.borrow() {
                return Outcome::Stopped;
            }
            let body = self.status_body(state, &now);
            match self
                .github
                .create_status(&tracked.repo, github_id, &body)
                .await
            {
                Ok(()) => {
                    tracing::info!(
                        deployment,
                        github_deployment = github_id,
                        repo = %tracked.repo,
                        state = ?state,
                        "posted a GitHub deployment status"
                    );
                    if let Err(err) = self.journal_posted(deployment, state).await {
                        tracing::error!(deployment, %err, "cannot record a posted status");
                        self.in_doubt.insert(deployment);
                        return Outcome::Again(None);
                    }
                }
                Err(GithubError::Retry { reason, after }) => {
                    tracing::warn!(deployment, %reason, "GitHub did not take a status; retrying");
                    // It may have, and only its answer was lost.
                    self.in_doubt.insert(deployment);
                    return Outcome::Again(after);
                }
                Err(GithubError::Refused { status, message }) => {
                    tracing::warn!(
                        deployment,
                        github_deployment = github_id,
                        repo = %tracked.repo,
                        status,
                        %message,
                        "GitHub refused a status; no more statuses for this deployment"
                    );
                    return self.settle(deployment);
                }
            }
        }
        if is_final(&now.status) {
            return self.settle(deployment);
        }
        Outcome::Settled
    }

    /// Records in the journal the statuses of `tracked` that GitHub has and
    /// the journal lacks: those whose post was answered too late, or not
    /// recorded before the provider stopped.
    async fn recover(
        &self,
        tracked: &mut Tracked,
        github_id: u64,
        now: &operations::deployment::DeploymentInfo,
    ) -> Result<(), Outcome> {
        let listed = self
            .github
            .list_statuses(&tracked.repo, github_id)
            .await
            .map_err(|err| self.github_failed(tracked, err, "list deployment statuses"))?;
        let log_url = self.log_url(now);
        for state in ours(&listed, log_url.as_deref(), &now.name) {
            if tracked.posted.contains(&state) {
                continue;
            }
            tracing::info!(
                deployment = tracked.deployment,
                github_deployment = github_id,
                state = ?state,
                "GitHub has a status the journal lacks; recording it instead of posting it again"
            );
            if let Err(err) = self.journal_posted(tracked.deployment, state).await {
                tracing::error!(deployment = tracked.deployment, %err, "cannot record a posted status");
                return Err(Outcome::Again(None));
            }
            tracked.posted.push(state);
        }
        Ok(())
    }

    /// Creates (or finds, when a previous attempt got that far) the GitHub
    /// deployment of a deployment made from a push. `Ok(None)`: GitHub refused.
    async fn create_on_github(
        &self,
        tracked: &Tracked,
        now: &operations::deployment::DeploymentInfo,
    ) -> Result<Option<u64>, Outcome> {
        let Some(spec) = &tracked.create else {
            tracing::warn!(
                deployment = tracked.deployment,
                "no GitHub deployment to report to"
            );
            return Ok(None);
        };
        let found = self
            .github
            .find_deployment(&tracked.repo, spec, tracked.deployment)
            .await;
        let github_id = match found {
            Ok(Some(id)) => id,
            Ok(None) => {
                let marker = Marker {
                    deployment: tracked.deployment.to_string(),
                    name: now.name.clone(),
                    application: now.application.name.clone(),
                };
                match self
                    .github
                    .create_deployment(&tracked.repo, spec, &marker.payload())
                    .await
                {
                    Ok(id) => id,
                    Err(err) => {
                        return Err(self.github_failed(tracked, err, "create a deployment"))
                    }
                }
            }
            Err(err) => return Err(self.github_failed(tracked, err, "list deployments")),
        };
        tracing::info!(
            deployment = tracked.deployment,
            github_deployment = github_id,
            repo = %tracked.repo,
            "created the GitHub deployment"
        );
        let journal = self.journal.clone();
        let deployment = tracked.deployment;
        let recorded = tokio::task::spawn_blocking(move || journal.created(deployment, github_id))
            .await
            .expect("journal task");
        match recorded {
            Ok(()) => Ok(Some(github_id)),
            Err(err) => {
                tracing::error!(deployment, %err, "cannot record the GitHub deployment");
                Err(Outcome::Again(None))
            }
        }
    }

    fn github_failed(&self, tracked: &Tracked, err: GithubError, what: &str) -> Outcome {
        match err {
            GithubError::Retry { reason, after } => {
                tracing::warn!(deployment = tracked.deployment, %reason, "cannot {what} on GitHub; retrying");
                Outcome::Again(after)
            }
            GithubError::Refused { status, message } => {
                tracing::warn!(
                    deployment = tracked.deployment,
                    repo = %tracked.repo,
                    status,
                    %message,
                    "GitHub refused to {what}; no statuses for this deployment"
                );
                match self.journal.done(tracked.deployment) {
                    Ok(()) => Outcome::Settled,
                    Err(err) => {
                        tracing::error!(deployment = tracked.deployment, %err, "cannot update the journal");
                        Outcome::Again(None)
                    }
                }
            }
        }
    }

    fn settle(&self, deployment: i64) -> Outcome {
        match self.journal.done(deployment) {
            Ok(()) => Outcome::Settled,
            Err(err) => {
                tracing::error!(deployment, %err, "cannot update the journal");
                Outcome::Again(None)
            }
        }
    }

    async fn journal_posted(
        &self,
        deployment: i64,
        state: GithubState,
    ) -> Result<(), JournalError> {
        let journal = self.journal.clone();
        tokio::task::spawn_blocking(move || journal.posted(deployment, state))
            .await
            .expect("journal task")
    }

    /// Where a status links to: the deployment's page in Slipway.
    fn log_url(&self, now: &operations::deployment::DeploymentInfo) -> Option<String> {
        match &self.public_url {
            Some(base) => Some(format!(
                "{}/deployments/{}",
                base.trim_end_matches('/'),
                now.id
            )),
            None => now.url.clone(),
        }
    }

    fn status_body(
        &self,
        state: GithubState,
        now: &operations::deployment::DeploymentInfo,
    ) -> StatusBody {
        StatusBody {
            state,
            log_url: self.log_url(now),
            environment_url: now.environment.url.clone(),
            description: truncate_chars(&describe(state, now), DESCRIPTION_MAX),
            auto_inactive: true,
        }
    }
}

/// The GitHub states a deployment has gone through, judged from how it is now.
pub fn life(status: &DeploymentStatus, started: bool) -> Vec<GithubState> {
    let mut path = vec![GithubState::Queued];
    let in_progress = matches!(status, DeploymentStatus::IN_PROGRESS);
    if in_progress || started {
        path.push(GithubState::InProgress);
    }
    match status {
        DeploymentStatus::SUCCEEDED => path.push(GithubState::Success),
        DeploymentStatus::FAILED => path.push(GithubState::Failure),
        DeploymentStatus::CANCELLED => path.push(GithubState::Error),
        _ => {}
    }
    path
}

fn is_final(status: &DeploymentStatus) -> bool {
    matches!(
        status,
        DeploymentStatus::SUCCEEDED | DeploymentStatus::FAILED | DeploymentStatus::CANCELLED
    )
}

/// The states of `path` after the last one GitHub has.
fn unposted(path: &[GithubState], posted: &[GithubState]) -> Vec<GithubState> {
    match posted.last() {
        None => path.to_vec(),
        Some(last) => match path.iter().position(|state| state == last) {
            Some(index) => path[index + 1..].to_vec(),
            // Posted something `path` does not have: only the end is missing.
            None => path
                .last()
                .filter(|state| !posted.contains(state))
                .into_iter()
                .copied()
                .collect(),
        },
    }
}

/// The states of the statuses in `listed` (GitHub's list, newest first) that
/// Slipway posted for the deployment named `name`, oldest first: those that
/// link to `log_url`, or when there is none, whose description names it.
/// Other tools may post statuses on a GitHub deployment too.
fn ours(listed: &[ListedStatus], log_url: Option<&str>, name: &str) -> Vec<GithubState> {
    let named = |description: &str| {
        description
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with([' ', ':']))
    };
    listed
        .iter()
        .rev()
        .filter(|status| match log_url {
            Some(url) => status.log_url.as_deref() == Some(url),
            None => status.description.as_deref().is_some_and(named),
        })
        .filter_map(|status| status.state())
        .collect()
}

fn describe(state: GithubState, now: &operations::deployment::DeploymentInfo) -> String {
    let name = &now.name;
    let message = now
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty());
    let environment = &now.environment.name;
    match state {
        GithubState::Queued => format!("{name} is queued for {environment}"),
        GithubState::InProgress => match (&now.status, message) {
            (DeploymentStatus::IN_PROGRESS, Some(message)) => format!("{name}: {message}"),
            _ => format!("{name} is deploying to {environment}"),
        },
        GithubState::Success => match message {
            Some(message) => format!("{name} deployed: {message}"),
            None => format!("{name} deployed to {environment}"),
        },
        GithubState::Failure => match message {
            Some(message) => format!("{name} failed: {message}"),
            None => format!("{name} failed"),
        },
        GithubState::Error => match message {
            Some(message) => format!("{name} was cancelled: {message}"),
            None => format!("{name} was cancelled"),
        },
    }
}

/// At most `max` characters of `text`, with an ellipsis when cut.
pub fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Exponential backoff that an explicit wait (GitHub's) overrides.
#[derive(Debug, Default)]
struct Backoff {
    next: Option<Duration>,
}

impl Backoff {
    fn reset(&mut self) {
        self.next = None;
    }

    /// Sleeps `after` or the next step; `false` when stopped meanwhile.
    async fn sleep(&mut self, stop: &mut watch::Receiver<bool>, after: Option<Duration>) -> bool {
        let step = self.next.unwrap_or(BACKOFF_MIN);
        self.next = Some((step * 2).min(BACKOFF_MAX));
        let wait = after.unwrap_or(step);
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = stop.wait_for(|stop| *stop) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GithubState::*;

    #[test]
    fn life_follows_the_deployment() {
        assert_eq!(life(&DeploymentStatus::QUEUED, false), vec![Queued]);
        assert_eq!(
            life(&DeploymentStatus::IN_PROGRESS, true),
            vec![Queued, InProgress]
        );
        assert_eq!(
            life(&DeploymentStatus::SUCCEEDED, true),
            vec![Queued, InProgress, Success]
        );
        assert_eq!(
            life(&DeploymentStatus::FAILED, true),
            vec![Queued, InProgress, Failure]
        );
        assert_eq!(
            life(&DeploymentStatus::CANCELLED, false),
            vec![Queued, Error]
        );
    }

    #[test]
    fn only_what_github_lacks_is_posted() {
        let path = [Queued, InProgress, Success];
        assert_eq!(unposted(&path, &[]), path.to_vec());
        assert_eq!(unposted(&path, &[Queued]), vec![InProgress, Success]);
        assert_eq!(unposted(&path, &[Queued, InProgress, Success]), vec![]);
        assert_eq!(
            unposted(&[Queued, Error], &[Queued, InProgress]),
            vec![Error]
        );
    }

    #[test]
    fn only_slipways_own_listed_statuses_count() {
        let status = |state: &str, description: &str, log_url: Option<&str>| ListedStatus {
            state: state.into(),
            description: Some(description.into()),
            log_url: log_url.map(str::to_owned),
        };
        let url = "https://slipway.example.com/deployments/7";
        // Newest first, as GitHub lists them.
        let listed = [
            status(
                "in_progress",
                "shop#7 is deploying to production",
                Some(url),
            ),
            status(
                "in_progress",
                "another tool's step",
                Some("https://ci.example.com"),
            ),
            status("inactive", "shop#7 is queued for production", Some(url)),
            status("queued", "shop#7 is queued for production", Some(url)),
        ];
        assert_eq!(ours(&listed, Some(url), "shop#7"), vec![Queued, InProgress]);

        // Without a link, by the name that starts the description.
        let listed = [
            status("failure", "shop#7: did not converge", None),
            status("success", "shop#70 deployed to production", None),
            status("queued", "shop#7 is queued for production", None),
        ];
        assert_eq!(ours(&listed, None, "shop#7"), vec![Queued, Failure]);
        assert_eq!(ours(&[], None, "shop#7"), vec![]);
    }

    #[test]
    fn descriptions_are_cut_on_character_boundaries() {
        let text = "é".repeat(200);
        let cut = truncate_chars(&text, DESCRIPTION_MAX);
        assert_eq!(cut.chars().count(), DESCRIPTION_MAX);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate_chars("short", DESCRIPTION_MAX), "short");
    }

    #[test]
    fn markers_are_found_in_objects_and_text() {
        let marker = Marker {
            deployment: "7".into(),
            name: "shop#7".into(),
            application: "shop".into(),
        };
        assert_eq!(marker_of(&marker.payload()), Some(marker.clone()));
        assert_eq!(
            marker_of(&Value::String(marker.payload().to_string())),
            Some(marker)
        );
        assert_eq!(marker_of(&json!({"other": 1})), None);
        assert_eq!(marker_of(&Value::String(String::new())), None);
    }
}
