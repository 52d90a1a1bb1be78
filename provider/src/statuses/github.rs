//! The few calls of GitHub's REST API the reporter makes, and how their
//! failures are told apart: worth retrying (after how long, when GitHub says)
//! or refused for good.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, ACCEPT, RETRY_AFTER, USER_AGENT};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::journal::GithubDeploymentSpec;
use super::GithubState;
use crate::config::Secret;

/// How long one request to GitHub may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait a rate-limit header can ask for that is honoured as such.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    /// GitHub could not be reached, failed, or asked to slow down.
    #[error("{reason}")]
    Retry {
        reason: String,
        /// When GitHub said when to come back (`Retry-After`, `X-RateLimit-Reset`).
        after: Option<Duration>,
    },
    /// GitHub refused the request; asking again will not help.
    #[error("GitHub answered {status}: {message}")]
    Refused { status: u16, message: String },
}

/// A deployment status as GitHub takes it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatusBody {
    pub state: GithubState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_url: Option<String>,
    pub description: String,
    pub auto_inactive: bool,
}

/// A deployment status as GitHub lists it (what Slipway reads of it).
#[derive(Debug, Clone, Deserialize)]
pub struct ListedStatus {
    pub state: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub log_url: Option<String>,
}

impl ListedStatus {
    /// Its state, when it is one Slipway posts.
    pub fn state(&self) -> Option<GithubState> {
        serde_json::from_value(Value::String(self.state.clone())).ok()
    }
}

/// GitHub's REST API with one token.
#[derive(Clone)]
pub struct Github {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

impl std::fmt::Debug for Github {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Github")
            .field("base", &self.base)
            .field("token", &self.token)
            .finish()
    }
}

impl Github {
    pub fn new(base: &str, token: Secret) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            "application/vnd.github+json".parse().expect("header"),
        );
        headers.insert(
            "X-GitHub-Api-Version",
            "2022-11-28".parse().expect("header"),
        );
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

    /// `POST /repos/{repo}/deployments/{id}/statuses`.
    pub async fn create_status(
        &self,
        repo: &str,
        github_id: u64,
        status: &StatusBody,
    ) -> Result<(), GithubError> {
        let request = self
            .http
            .post(self.statuses_url(repo, github_id))
            .json(status);
        self.send(request).await.map(drop)
    }

    /// `GET /repos/{repo}/deployments/{id}/statuses`: the latest hundred,
    /// newest first (Slipway posts at most three per deployment).
    pub async fn list_statuses(
        &self,
        repo: &str,
        github_id: u64,
    ) -> Result<Vec<ListedStatus>, GithubError> {
        let request = self
            .http
            .get(self.statuses_url(repo, github_id))
            .query(&[("per_page", "100")]);
        let answer = self.send(request).await?;
        serde_json::from_value(answer).map_err(|err| GithubError::Retry {
            reason: format!("GitHub's list of deployment statuses is not one: {err}"),
            after: None,
        })
    }

    fn statuses_url(&self, repo: &str, github_id: u64) -> String {
        format!(
            "{}/repos/{repo}/deployments/{github_id}/statuses",
            self.base
        )
    }

    /// `POST /repos/{repo}/deployments` for a deployment Slipway made, with
    /// `marker` in its payload so its echo is recognised; returns its id.
    pub async fn create_deployment(
        &self,
        repo: &str,
        spec: &GithubDeploymentSpec,
        marker: &Value,
    ) -> Result<u64, GithubError> {
        let url = format!("{}/repos/{repo}/deployments", self.base);
        let mut body = json!({
            // The commit itself: the branch may have moved on since the push.
            "ref": spec.sha,
            "task": spec.task,
            "environment": spec.environment,
            "auto_merge": false,
            "required_contexts": [],
            "payload": marker,
        });
        if let Some(description) = &spec.description {
            body["description"] = json!(description);
        }
        let answer = self.send(self.http.post(url).json(&body)).await?;
        answer["id"].as_u64().ok_or_else(|| GithubError::Refused {
            status: 200,
            message: format!(
                "no deployment id in the answer: {}",
                answer["message"].as_str().unwrap_or("(no message)")
            ),
        })
    }

    /// The GitHub deployment at `sha` in `environment` whose payload carries
    /// Slipway's marker for `deployment`, if one was created before (the
    /// provider may have stopped before it recorded the id).
    pub async fn find_deployment(
        &self,
        repo: &str,
        spec: &GithubDeploymentSpec,
        deployment: i64,
    ) -> Result<Option<u64>, GithubError> {
        let url = format!("{}/repos/{repo}/deployments", self.base);
        let request = self.http.get(url).query(&[
            ("sha", spec.sha.as_str()),
            ("environment", spec.environment.as_str()),
            ("per_page", "100"),
        ]);
        let answer = self.send(request).await?;
        let wanted = deployment.to_string();
        Ok(answer.as_array().and_then(|list| {
            list.iter().find_map(|item| {
                let marker = super::marker_of(&item["payload"])?;
                (marker.deployment == wanted)
                    .then(|| item["id"].as_u64())
                    .flatten()
            })
        }))
    }

    /// A URL under the API's base, with `segments` percent-encoded one by one
    /// (a ref's slashes stay in its segment).
    pub(crate) fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = reqwest::Url::parse(&self.base).expect("a checked base URL");
        url.path_segments_mut()
            .expect("an http(s) URL")
            .pop_if_empty()
            .extend(segments);
        url
    }

    pub(crate) fn get(&self, url: reqwest::Url) -> reqwest::RequestBuilder {
        self.http.get(url)
    }

    pub(crate) async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, GithubError> {
        let response = request
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(|err| GithubError::Retry {
                // Without the URL's query: nothing secret is there, but keep it short.
                reason: format!("cannot reach GitHub: {}", err.without_url()),
                after: None,
            })?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
        }
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|body| body["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| truncate(&text, 200).to_owned());
        Err(classify(status, &headers, message))
    }
}

/// Which failures are worth retrying, and after how long.
fn classify(status: StatusCode, headers: &HeaderMap, message: String) -> GithubError {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    let retry_after = header(RETRY_AFTER.as_str())
        .and_then(|value| value.parse::<u64>().ok())
        .map(Duration::from_secs);
    let exhausted = header("x-ratelimit-remaining") == Some("0");
    let reset = header("x-ratelimit-reset")
        .and_then(|value| value.parse::<u64>().ok())
        .map(|reset| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            // One second more: the reset time is rounded down.
            Duration::from_secs(reset.saturating_sub(now) + 1)
        });
    let rate_limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN && (exhausted || retry_after.is_some()));
    if rate_limited {
        let after = retry_after
            .or(if exhausted { reset } else { None })
            .map(|after| after.min(MAX_RATE_LIMIT_WAIT));
        return GithubError::Retry {
            reason: format!("GitHub's rate limit ({status}): {message}"),
            after,
        };
    }
    // A refused token is fixed by an operator, not by giving up the statuses.
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::UNAUTHORIZED
    {
        return GithubError::Retry {
            reason: format!("GitHub answered {status}: {message}"),
            after: retry_after.map(|after| after.min(MAX_RATE_LIMIT_WAIT)),
        };
    }
    GithubError::Refused {
        status: status.as_u16(),
        message,
    }
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn rate_limits_say_when_to_come_back() {
        let error = classify(
            StatusCode::FORBIDDEN,
            &headers(&[("retry-after", "7".into())]),
            "secondary rate limit".into(),
        );
        assert!(
            matches!(error, GithubError::Retry { after: Some(after), .. } if after == Duration::from_secs(7))
        );

        let reset = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 30;
        let error = classify(
            StatusCode::FORBIDDEN,
            &headers(&[
                ("x-ratelimit-remaining", "0".into()),
                ("x-ratelimit-reset", reset.to_string()),
            ]),
            "API rate limit exceeded".into(),
        );
        let GithubError::Retry {
            after: Some(after), ..
        } = error
        else {
            panic!("{error:?}")
        };
        assert!((29..=31).contains(&after.as_secs()), "{after:?}");
    }

    #[test]
    fn server_errors_are_retried_and_refusals_are_not() {
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), "".into()),
            GithubError::Retry { after: None, .. }
        ));
        assert!(matches!(
            classify(
                StatusCode::UNPROCESSABLE_ENTITY,
                &HeaderMap::new(),
                "bad".into()
            ),
            GithubError::Refused { status: 422, .. }
        ));
        // A 403 that is no rate limit is a refusal (e.g. the token lacks a scope).
        assert!(matches!(
            classify(
                StatusCode::FORBIDDEN,
                &headers(&[("x-ratelimit-remaining", "4000".into())]),
                "no".into()
            ),
            GithubError::Refused { status: 403, .. }
        ));
    }
}
