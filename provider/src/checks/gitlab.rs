//! The checks of a commit on GitLab: its latest pipeline, reported as one
//! check named `pipeline`. No pipeline yet is no check yet (pending).

use std::time::Duration;

use reqwest::header::{HeaderMap, USER_AGENT};
use serde_json::Value;

use super::{Check, CheckState};
use crate::config::Secret;

/// The name GitLab's pipeline is reported under.
pub const PIPELINE: &str = "pipeline";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum GitlabError {
    #[error("cannot reach GitLab: {0}")]
    Unreachable(String),
    #[error("GitLab answered {status}: {message}")]
    Refused { status: u16, message: String },
}

/// GitLab's REST API (`/api/v4`) with one token.
#[derive(Clone)]
pub struct Gitlab {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

impl std::fmt::Debug for Gitlab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gitlab")
            .field("base", &self.base)
            .field("token", &self.token)
            .finish()
    }
}

impl Gitlab {
    /// `base` is the instance's URL (`https://gitlab.com`), without `/api/v4`.
    pub fn new(base: &str, token: Secret) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(
            USER_AGENT,
            concat!("slipway-provider/", env!("CARGO_PKG_VERSION"))
                .parse()
                .expect("header"),
        );
        Self {
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .default_headers(headers)
                .build()
                .expect("HTTP client"),
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// `/api/v4/projects/{project, encoded as one segment}/…`.
    fn url(&self, project: &str, rest: &[&str]) -> reqwest::Url {
        let mut url = reqwest::Url::parse(&self.base).expect("a checked base URL");
        url.path_segments_mut()
            .expect("an http(s) URL")
            .pop_if_empty()
            .extend(["api", "v4", "projects", project])
            .extend(rest);
        url
    }

    /// `GET /projects/:id/repository/commits/:ref`: the commit `git_ref` is at.
    pub async fn resolve(&self, project: &str, git_ref: &str) -> Result<String, GitlabError> {
        let url = self.url(project, &["repository", "commits", git_ref]);
        let answer = self.send(self.http.get(url)).await?;
        answer["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| GitlabError::Refused {
                status: 200,
                message: format!("no commit id for {git_ref} of {project} in GitLab's answer"),
            })
    }

    /// `GET /projects/:id/pipelines?sha=`: the latest pipeline of `sha`, as
    /// the check `pipeline`; none when it has none.
    pub async fn checks(&self, project: &str, sha: &str) -> Result<Vec<Check>, GitlabError> {
        let request = self.http.get(self.url(project, &["pipelines"])).query(&[
            ("sha", sha),
            ("order_by", "id"),
            ("sort", "desc"),
            ("per_page", "1"),
        ]);
        let answer = self.send(request).await?;
        let Some(latest) = answer.as_array().and_then(|list| list.first()) else {
            return Ok(Vec::new());
        };
        Ok(vec![Check {
            name: PIPELINE.to_owned(),
            state: pipeline_state(&latest["status"]),
            url: latest["web_url"]
                .as_str()
                .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
                .map(str::to_owned),
        }])
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, GitlabError> {
        let response = request
            .header("PRIVATE-TOKEN", self.token.expose())
            .send()
            .await
            .map_err(|err| GitlabError::Unreachable(err.without_url().to_string()))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
        }
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|body| body["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| text.chars().take(200).collect());
        Err(GitlabError::Refused {
            status: status.as_u16(),
            message,
        })
    }
}

/// `success` passes; `failed` and `canceled` fail; the rest (`created`,
/// `pending`, `running`, `manual`, `scheduled`, `skipped`, …) is pending.
fn pipeline_state(status: &Value) -> CheckState {
    match status.as_str() {
        Some("success") => CheckState::Success,
        Some("failed" | "canceled") => CheckState::Failure,
        _ => CheckState::Pending,
    }
}
