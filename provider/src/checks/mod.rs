//! Required checks: the provider holds the forge tokens, so it reads what CI
//! says of a waiting deployment's commit and tells the API (`reportChecks`),
//! which decides whether the gate opens.
//!
//! [`watch`] reads the deployments waiting at gate CHECKS
//! (`deploymentsAtGate`) when it starts and every `every` after, and for
//! each one finds its forge by its application's repository: GitLab for
//! the GitLab URL's host (and gitlab.com), GitHub for github.com (and the
//! GitHub API URL's host, for GitHub Enterprise), each only with its token.
//! A deployment created with a ref only has its commit resolved on the
//! forge first; the API records the sha the checks were read on.
//! [`github`] reads combined statuses and check runs, [`gitlab`] the
//! latest pipeline. A failure to read is logged and tried again at the next
//! round; the API times out a deployment whose checks never pass.

pub mod github;
pub mod gitlab;

use std::collections::HashSet;
use std::time::Duration;

use slipway_client::operations::{self, deployments_at_checks, report_checks};
use slipway_client::{Client, Code};
use tokio::sync::watch;

use self::gitlab::Gitlab;
use crate::repository::RepoId;
use crate::statuses::github::Github;

/// How often the waiting deployments are read unless told.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(15);

/// A check on a commit, as the forge says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub state: CheckState,
    pub url: Option<String>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CheckState {
    Success,
    Pending,
    Failure,
}

/// Adds a check, or keeps the worse state where the name is already there
/// (a status context and a check run of one name).
fn merge(checks: &mut Vec<Check>, name: &str, state: CheckState, url: Option<String>) {
    match checks.iter_mut().find(|c| c.name == name) {
        Some(c) if state > c.state => {
            c.state = state;
            c.url = url.or(c.url.take());
        }
        Some(_) => {}
        None => checks.push(Check {
            name: name.to_owned(),
            state,
            url,
        }),
    }
}

/// The forges the provider has tokens for, and the hosts of each.
#[derive(Clone, Debug, Default)]
pub struct Forges {
    pub github: Option<(Github, Vec<String>)>,
    pub gitlab: Option<(Gitlab, Vec<String>)>,
}

/// The hosts a forge's repositories live on: `well_known` and the host of
/// `url` (without an `api.` in front: GitHub's API is `api.github.com`).
pub fn hosts(url: &str, well_known: &str) -> Vec<String> {
    let mut hosts = vec![well_known.to_owned()];
    let host = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(url)
        .split(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let host = host.strip_prefix("api.").unwrap_or(&host).to_owned();
    if !host.is_empty() && !hosts.contains(&host) {
        hosts.push(host);
    }
    hosts
}

#[derive(Debug)]
enum Forge<'a> {
    Github(&'a Github),
    Gitlab(&'a Gitlab),
}

impl Forges {
    fn of(&self, repo: &RepoId) -> Option<Forge<'_>> {
        let host = repo.host()?;
        if let Some((gitlab, hosts)) = &self.gitlab {
            if hosts.iter().any(|h| h == host) {
                return Some(Forge::Gitlab(gitlab));
            }
        }
        if let Some((github, hosts)) = &self.github {
            if hosts.iter().any(|h| h == host) {
                return Some(Forge::Github(github));
            }
        }
        None
    }

    pub fn is_empty(&self) -> bool {
        self.github.is_none() && self.gitlab.is_none()
    }
}

/// Reads the deployments waiting for checks now and every `every`, until
/// `stopped` turns true.
pub async fn watch(
    api: Client,
    forges: Forges,
    every: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut watcher = Watcher {
        api,
        forges,
        unserved: HashSet::new(),
    };
    loop {
        if *stopped.borrow() {
            return;
        }
        watcher.round().await;
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stopped.changed() => {}
        }
    }
}

struct Watcher {
    api: Client,
    forges: Forges,
    /// Deployments whose repository no forge serves, said once each.
    unserved: HashSet<String>,
}

type Waiting = deployments_at_checks::DeploymentsAtChecksDeploymentsAtGate;

impl Watcher {
    async fn round(&mut self) {
        let waiting = match self
            .api
            .run::<operations::DeploymentsAtChecks>(deployments_at_checks::Variables {})
            .await
        {
            Ok(data) => data.deployments_at_gate,
            Err(err) => {
                tracing::warn!(%err, "cannot read the deployments waiting for checks");
                return;
            }
        };
        for d in waiting {
            self.one(&d).await;
        }
    }

    async fn one(&mut self, d: &Waiting) {
        let Some(repo) = RepoId::parse(&d.application.repository) else {
            self.unserved(d, "its repository is not on a forge");
            return;
        };
        let Some(forge) = self.forges.of(&repo) else {
            self.unserved(d, "no forge with a token serves its repository's host");
            return;
        };
        let read = async {
            let sha = match &d.sha {
                Some(sha) => sha.clone(),
                None => match forge {
                    Forge::Github(github) => github
                        .resolve(repo.path(), &d.ref_)
                        .await
                        .map_err(|e| e.to_string())?,
                    Forge::Gitlab(gitlab) => gitlab
                        .resolve(repo.path(), &d.ref_)
                        .await
                        .map_err(|e| e.to_string())?,
                },
            };
            let checks = match forge {
                Forge::Github(github) => github
                    .checks(repo.path(), &sha)
                    .await
                    .map_err(|e| e.to_string())?,
                Forge::Gitlab(gitlab) => gitlab
                    .checks(repo.path(), &sha)
                    .await
                    .map_err(|e| e.to_string())?,
            };
            Ok::<_, String>((sha, checks))
        };
        let (sha, checks) = match read.await {
            Ok(read) => read,
            Err(err) => {
                tracing::warn!(deployment = %d.name, repository = %repo, %err, "cannot read the checks; trying again later");
                return;
            }
        };
        let variables = report_checks::Variables {
            deployment: d.id.clone(),
            sha: sha.clone(),
            checks: checks
                .into_iter()
                .map(|c| report_checks::CheckInput {
                    name: c.name,
                    state: match c.state {
                        CheckState::Success => report_checks::CheckState::SUCCESS,
                        CheckState::Pending => report_checks::CheckState::PENDING,
                        CheckState::Failure => report_checks::CheckState::FAILURE,
                    },
                    url: c.url,
                })
                .collect(),
        };
        match self.api.run::<operations::ReportChecks>(variables).await {
            Ok(data) => {
                let after = data.report_checks;
                tracing::debug!(deployment = %d.name, sha, status = ?after.status, message = ?after.message, "checks reported");
            }
            // It moved on meanwhile (cancelled, timed out).
            Err(err) if err.code() == Some(Code::Conflict) => {
                tracing::debug!(deployment = %d.name, %err, "the deployment no longer waits for checks");
            }
            Err(err) => {
                tracing::warn!(deployment = %d.name, %err, "cannot report the checks; trying again later");
            }
        }
    }

    fn unserved(&mut self, d: &Waiting, why: &str) {
        if self.unserved.insert(d.id.clone()) {
            tracing::warn!(
                deployment = %d.name,
                repository = %d.application.repository,
                "cannot read the checks of a deployment waiting for them: {why}; it times out"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worse_state_of_one_name_wins() {
        let mut checks = Vec::new();
        merge(&mut checks, "ci", CheckState::Success, None);
        merge(
            &mut checks,
            "ci",
            CheckState::Failure,
            Some("https://x/1".into()),
        );
        merge(&mut checks, "ci", CheckState::Pending, None);
        assert_eq!(
            checks,
            [Check {
                name: "ci".into(),
                state: CheckState::Failure,
                url: Some("https://x/1".into())
            }]
        );
    }

    #[test]
    fn forge_hosts_come_from_their_urls() {
        assert_eq!(
            hosts("https://api.github.com", "github.com"),
            ["github.com"]
        );
        assert_eq!(
            hosts("https://ghe.example.com/api/v3", "github.com"),
            ["github.com", "ghe.example.com"]
        );
        assert_eq!(
            hosts("http://127.0.0.1:8080", "gitlab.com"),
            ["gitlab.com", "127.0.0.1"]
        );
    }
}
