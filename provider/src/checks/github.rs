//! The checks of a commit on GitHub: its combined status (the statuses CI
//! posts, one per context) and its check runs (what GitHub Actions and
//! GitHub Apps report; Actions reports only these). A commit with neither
//! has no check yet: pending, never passed.

use serde_json::Value;

use super::{Check, CheckState};
use crate::statuses::github::{Github, GithubError};

impl Github {
    /// `GET /repos/{repo}/commits/{ref}`: the commit `git_ref` is at.
    pub async fn resolve(&self, repo: &str, git_ref: &str) -> Result<String, GithubError> {
        let (owner, name) = repo.split_once('/').unwrap_or((repo, ""));
        let url = self.url(&["repos", owner, name, "commits", git_ref]);
        let answer = self.send(self.get(url)).await?;
        answer["sha"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| GithubError::Refused {
                status: 200,
                message: format!("no sha for {git_ref} of {repo} in GitHub's answer"),
            })
    }

    /// The statuses and check runs on `sha`, each by its name.
    pub async fn checks(&self, repo: &str, sha: &str) -> Result<Vec<Check>, GithubError> {
        let (owner, name) = repo.split_once('/').unwrap_or((repo, ""));
        let status = self
            .send(self.get(self.url(&["repos", owner, name, "commits", sha, "status"])))
            .await?;
        let mut request = self.get(self.url(&["repos", owner, name, "commits", sha, "check-runs"]));
        request = request.query(&[("filter", "latest"), ("per_page", "100")]);
        let runs = self.send(request).await?;
        let mut checks = Vec::new();
        for s in status["statuses"].as_array().into_iter().flatten() {
            let Some(context) = s["context"].as_str() else {
                continue;
            };
            let state = match s["state"].as_str() {
                Some("success") => CheckState::Success,
                Some("failure" | "error") => CheckState::Failure,
                _ => CheckState::Pending,
            };
            super::merge(&mut checks, context, state, url(&s["target_url"]));
        }
        for run in runs["check_runs"].as_array().into_iter().flatten() {
            let Some(name) = run["name"].as_str() else {
                continue;
            };
            super::merge(&mut checks, name, run_state(run), url(&run["html_url"]));
        }
        Ok(checks)
    }
}

/// A check run that has not completed is pending; a completed one passed
/// when it concluded `success`, `neutral` or `skipped`, and failed otherwise
/// (`failure`, `cancelled`, `timed_out`, `action_required`, `stale`).
fn run_state(run: &Value) -> CheckState {
    if run["status"].as_str() != Some("completed") {
        return CheckState::Pending;
    }
    match run["conclusion"].as_str() {
        Some("success" | "neutral" | "skipped") => CheckState::Success,
        _ => CheckState::Failure,
    }
}

fn url(value: &Value) -> Option<String> {
    value
        .as_str()
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn check_runs_pass_on_success_neutral_and_skipped_only() {
        for (status, conclusion, state) in [
            ("queued", None, CheckState::Pending),
            ("in_progress", None, CheckState::Pending),
            ("completed", Some("success"), CheckState::Success),
            ("completed", Some("neutral"), CheckState::Success),
            ("completed", Some("skipped"), CheckState::Success),
            ("completed", Some("failure"), CheckState::Failure),
            ("completed", Some("cancelled"), CheckState::Failure),
            ("completed", Some("timed_out"), CheckState::Failure),
            ("completed", Some("action_required"), CheckState::Failure),
        ] {
            let run = json!({"status": status, "conclusion": conclusion});
            assert_eq!(run_state(&run), state, "{run}");
        }
    }
}
