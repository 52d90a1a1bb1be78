//! Hooks in. Each sender is a [`Source`] in [`SOURCES`]: its module verifies
//! the request ([`Verify`]) and reads what it asks for ([`Extract`]) into a
//! [`Wanted`]; [`deploy`] finds the applications and environments that means
//! and creates the deployments through the API, exactly once per idempotency
//! key.

mod deploy;
pub mod generic;
pub mod github;
pub mod gitlab;
mod source;

use axum::http::HeaderMap;
use serde::Serialize;
use slipway_client::operations::{self, applications::ApplicationsApplications};
use slipway_client::{Client, Code};

pub use self::source::Source;
pub(crate) use self::source::{Extract, Verify};
use crate::config::Secrets;
use crate::error::HookError;
use crate::repository::{self, RepoId};
use crate::statuses::Statuses;

/// Every hook source, in the order the banner shows them. A new source is a
/// module with a [`Source`] and one line here (and its secret's flags in
/// [`crate::config::Hooks`]).
pub const SOURCES: &[Source] = &[github::SOURCE, gitlab::SOURCE, generic::SOURCE];

/// What every hook handler shares.
#[derive(Clone, Debug)]
pub struct Hooks {
    pub(crate) api: Client,
    pub(crate) secrets: Secrets,
    /// Present when a GitHub token is configured.
    pub(crate) statuses: Option<Statuses>,
    /// How long a sender may take to send a hook's body.
    pub(crate) body_timeout: std::time::Duration,
    /// Where each hook's answer time goes.
    pub(crate) metrics: crate::metrics::Metrics,
}

/// A hook's answer when it did its work.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// 200: the deployments the hook made (or made the first time).
    Deployments {
        deployments: Vec<Created>,
        /// Environments a push would have deployed but that are locked.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        skipped: Vec<Skipped>,
    },
    /// 202: the hook asks for nothing Slipway does.
    Ignored { ignored: String },
    /// 200: GitHub's `ping`.
    Pong { ok: bool, message: String },
}

impl Answer {
    pub fn ignored(reason: impl Into<String>) -> Self {
        Answer::Ignored {
            ignored: reason.into(),
        }
    }
}

/// A deployment the API has stored.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Created {
    pub id: String,
    pub number: i64,
    /// `application#number`.
    pub name: String,
    pub application: String,
    pub environment: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// When the API created it: with the id, what tells this deployment from
    /// one of another API database that had the same id.
    #[serde(skip)]
    pub created_at: slipway_client::DateTime,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Skipped {
    pub application: String,
    pub environment: String,
    pub reason: String,
}

/// An application as the hooks need it.
pub(crate) type Application = ApplicationsApplications;

/// What a verified hook asks for, as its source read it from the request.
#[derive(Debug)]
pub(crate) enum Wanted {
    /// Answer, and do nothing else (GitHub's `ping`).
    Pong(String),
    /// Nothing Slipway does; the reason goes back to the sender (202).
    Ignored(String),
    /// A commit to deploy to every environment that auto-deploys its branch
    /// (a push, a pipeline).
    Branch(BranchDeploy),
    /// A deployment to the one environment the sender names (a GitHub
    /// deployment, a CI's request).
    Named(NamedDeploy),
}

/// The repository a hook is about.
#[derive(Debug)]
pub(crate) struct Repository {
    /// How the hook names it, for answers and logs.
    pub shown: String,
    /// Every name it gives it, to match applications' repositories.
    pub names: Vec<RepoId>,
}

#[derive(Debug)]
pub(crate) struct BranchDeploy {
    pub repository: Repository,
    pub branch: String,
    pub sha: String,
    /// The idempotency key of the push or pipeline, from fields the sender
    /// vouches for; each environment's deployment is `<key>:<environment>`.
    pub key: String,
    pub description: Option<String>,
    /// The GitHub repository (`owner/name`) in which Slipway creates a GitHub
    /// deployment for each deployment, to report its statuses there.
    pub github_repo: Option<String>,
}

/// Which application a [`NamedDeploy`] is for.
#[derive(Debug)]
pub(crate) enum Which {
    /// The application of this name.
    Named(String),
    /// The application of this repository that has the environment; when
    /// several do (a monorepo), the one `preferred` names.
    OfRepository {
        repository: Repository,
        preferred: Option<String>,
    },
}

#[derive(Debug)]
pub(crate) struct NamedDeploy {
    pub application: Which,
    pub environment: String,
    pub ref_name: String,
    pub sha: Option<String>,
    pub task: Option<String>,
    pub payload: Option<serde_json::Value>,
    pub description: Option<String>,
    /// The whole `externalId`, when the sender gave something to key on.
    pub external_id: Option<String>,
    /// The GitHub deployment this is, `(owner/name, id)`: its statuses go
    /// there, and one that Slipway created itself is not deployed again.
    pub github: Option<(String, u64)>,
}

/// A deployment to ask the API for.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub application: String,
    pub environment: String,
    pub ref_name: String,
    pub sha: Option<String>,
    pub task: Option<String>,
    pub payload: Option<serde_json::Value>,
    pub external_id: Option<String>,
    pub description: Option<String>,
    /// Whether no person asked for this deployment: a push or a pipeline
    /// deployed an environment that tracks its branch ([`is_auto_deploy`]).
    /// The runner does not roll out an auto-deploy that would go backwards.
    pub auto_deploy: bool,
}

/// Whether a deployment that `wanted` makes is an auto-deploy: one that no
/// person asked for, made because an environment tracks the pushed branch.
pub(crate) fn is_auto_deploy(wanted: &Wanted) -> bool {
    matches!(wanted, Wanted::Branch(_))
}

impl Hooks {
    /// Every application with its environments, as the API has them now.
    pub(crate) async fn applications(&self) -> Result<Vec<Application>, HookError> {
        let data = self
            .api
            .run::<operations::Applications>(operations::applications::Variables)
            .await
            .map_err(api_failed)?;
        Ok(data.applications)
    }

    /// Creates one deployment (or gets the one with the same external id).
    pub(crate) async fn create(&self, request: Request) -> Result<Created, HookError> {
        tracing::debug!(
            application = %request.application,
            environment = %request.environment,
            auto_deploy = request.auto_deploy,
            "creating a deployment"
        );
        let input = operations::create_deployment::CreateDeploymentInput {
            application: request.application.clone(),
            environment: request.environment.clone(),
            ref_: request.ref_name,
            sha: request.sha,
            task: request.task,
            payload: request.payload,
            external_id: request.external_id.map(bounded_key),
            description: request.description,
            auto_deploy: Some(request.auto_deploy),
            // A hook never goes past a freeze window.
            override_freeze: None,
            // A hook never goes past the checks its environment requires.
            force: None,
        };
        let variables = operations::create_deployment::Variables { input };
        match self
            .api
            .run::<operations::CreateDeployment>(variables)
            .await
        {
            Ok(data) => {
                let d = data.create_deployment;
                Ok(Created {
                    id: d.id,
                    number: d.number,
                    name: d.name,
                    application: d.application.name,
                    environment: d.environment.name,
                    url: d.url,
                    created_at: d.created_at,
                })
            }
            Err(err) => Err(match err.code() {
                Some(Code::Conflict) => HookError::Locked(api_message(&err)),
                Some(Code::NotFound) => HookError::Unmatched(api_message(&err)),
                Some(Code::BadUserInput) => HookError::BadRequest(api_message(&err)),
                _ => api_failed(err),
            }),
        }
    }

    /// Creates the deployments of an auto-deploy (a push, a pipeline): one per
    /// environment; a locked one is skipped, unless all are (409).
    pub(crate) async fn create_all(
        &self,
        requests: Vec<Request>,
    ) -> Result<(Vec<Created>, Vec<Skipped>), HookError> {
        let mut created = Vec::new();
        let mut skipped = Vec::new();
        let mut last_lock = None;
        for request in requests {
            let (application, environment) =
                (request.application.clone(), request.environment.clone());
            match self.create(request).await {
                Ok(deployment) => created.push(deployment),
                Err(HookError::Locked(reason)) => {
                    skipped.push(Skipped {
                        application,
                        environment,
                        reason: reason.clone(),
                    });
                    last_lock = Some(reason);
                }
                Err(err) => return Err(err),
            }
        }
        match (created.is_empty(), last_lock) {
            (true, Some(reason)) if skipped.len() == 1 => Err(HookError::Locked(reason)),
            (true, Some(_)) => Err(HookError::Locked(
                skipped
                    .iter()
                    .map(|s| s.reason.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
            _ => Ok((created, skipped)),
        }
    }
}

/// The applications whose repository is one of `names`.
pub(crate) fn by_repository<'a>(
    applications: &'a [Application],
    names: &[RepoId],
) -> Vec<&'a Application> {
    applications
        .iter()
        .filter(|app| repository::any_matches(&app.repository, names))
        .collect()
}

/// The sentence of a 422 for a repository no application has.
pub(crate) fn no_application(repo: &str) -> HookError {
    HookError::Unmatched(format!(
        "no application has the repository {repo}: create one with this repository \
         (clone URL, SSH URL or owner/name)"
    ))
}

/// The (application, environment) pairs to deploy `environment` of one of
/// `apps` to: the one the sender named, else every application that has the
/// environment.
pub(crate) fn with_environment<'a>(
    apps: &[&'a Application],
    environment: &str,
    repo: &str,
) -> Result<Vec<&'a Application>, HookError> {
    let found: Vec<&Application> = apps
        .iter()
        .copied()
        .filter(|app| app.environments.iter().any(|env| env.name == environment))
        .collect();
    if found.is_empty() {
        let have = apps
            .iter()
            .map(|app| {
                let envs: Vec<&str> = app.environments.iter().map(|e| e.name.as_str()).collect();
                if envs.is_empty() {
                    format!("`{}` has none", app.name)
                } else {
                    format!("`{}` has {}", app.name, envs.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Err(HookError::Unmatched(format!(
            "no application of the repository {repo} has an environment `{environment}` ({have})"
        )));
    }
    Ok(found)
}

/// A branch name from `refs/heads/<branch>`; `None` for a tag or another ref.
pub(crate) fn branch_of(git_ref: &str) -> Option<&str> {
    git_ref.strip_prefix("refs/heads/")
}

/// Environments whose auto-deploy branch is `branch`, per application.
pub(crate) fn tracking<'a>(
    apps: &[&'a Application],
    branch: &str,
) -> Vec<(&'a Application, String)> {
    let mut out = Vec::new();
    for app in apps {
        for env in &app.environments {
            let tracks = env.auto_deploy_ref.as_deref().is_some_and(|wanted| {
                let wanted = wanted.trim();
                wanted.strip_prefix("refs/heads/").unwrap_or(wanted) == branch
            });
            if tracks {
                out.push((*app, env.name.clone()));
            }
        }
    }
    out
}

/// Whether `sha` is the all-zero id git uses for "no commit" (a deleted branch).
pub(crate) fn is_null_sha(sha: &str) -> bool {
    !sha.is_empty() && sha.bytes().all(|b| b == b'0')
}

/// The longest `externalId` the API takes.
const MAX_EXTERNAL_ID: usize = 255;

/// `key` itself when the API takes it; a longer one (a very long branch name)
/// is cut and ends with the SHA-256 of the whole key, so it is still the
/// same for the same hook and different for different ones.
pub(crate) fn bounded_key(key: String) -> String {
    if key.len() <= MAX_EXTERNAL_ID {
        return key;
    }
    use sha2::Digest as _;
    let digest = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    let mut keep = MAX_EXTERNAL_ID - digest.len() - ":sha256:".len();
    while !key.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}:sha256:{digest}", &key[..keep])
}

/// The first line of a commit message, as a deployment description.
pub(crate) fn first_line(message: &str) -> Option<String> {
    let line = message.lines().next()?.trim();
    (!line.is_empty()).then(|| crate::statuses::truncate_chars(line, 1000))
}

fn api_message(err: &slipway_client::Error) -> String {
    match err {
        slipway_client::Error::Api { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn api_failed(err: slipway_client::Error) -> HookError {
    match err.code() {
        Some(code @ (Code::Unauthenticated | Code::Forbidden)) => tracing::error!(
            code = code.as_str(),
            %err,
            "the API refused the provider's token: check --token (it needs the provider role)"
        ),
        _ => tracing::error!(%err, "the API failed a request of the provider"),
    }
    HookError::ApiUnavailable
}

/// Parses `body` as JSON of type `T`, naming the field when one is missing or wrong.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HookError> {
    // Syntax first, so "not JSON" and "a field is wrong" read differently.
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|err| HookError::BadRequest(format!("the body is not JSON: {err}")))?;
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = err.into_inner().to_string();
        // serde names a missing field without its parents: add them.
        let missing = inner
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(field, _)| field);
        HookError::BadRequest(match missing {
            Some(field) if path.is_empty() => format!("missing field `{field}`"),
            Some(field) => format!("missing field `{path}.{field}`"),
            None if path.is_empty() => format!("the body is not what was expected: {inner}"),
            None => format!("field `{path}`: {inner}"),
        })
    })
}

/// A header's value, when it is text.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    fn extract<S: Extract>(pairs: &[(&'static str, &str)], body: serde_json::Value) -> Wanted {
        S::extract(&headers(pairs), &serde_json::to_vec(&body).unwrap()).unwrap()
    }

    #[test]
    fn pushes_and_pipelines_auto_deploy_and_named_deployments_do_not() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let repository = json!({"id": 1, "full_name": "acme/shop"});
        let push = extract::<github::Github>(
            &[("x-github-event", "push")],
            json!({"ref": "refs/heads/main", "after": sha, "repository": repository}),
        );
        assert!(is_auto_deploy(&push), "{push:?}");
        let project = json!({"id": 15, "path_with_namespace": "acme/shop"});
        let gitlab_push = extract::<gitlab::Gitlab>(
            &[("x-gitlab-event", "Push Hook")],
            json!({"ref": "refs/heads/main", "after": sha, "project": project}),
        );
        assert!(is_auto_deploy(&gitlab_push), "{gitlab_push:?}");
        let pipeline = extract::<gitlab::Gitlab>(
            &[("x-gitlab-event", "Pipeline Hook")],
            json!({
                "object_attributes": {"id": 7, "ref": "main", "sha": sha, "status": "success", "source": "push"},
                "project": project,
            }),
        );
        assert!(is_auto_deploy(&pipeline), "{pipeline:?}");

        let event = extract::<github::Github>(
            &[("x-github-event", "deployment")],
            json!({
                "deployment": {"id": 9, "sha": sha, "ref": "main", "environment": "production"},
                "repository": repository,
            }),
        );
        assert!(!is_auto_deploy(&event), "{event:?}");
        let generic = extract::<generic::Generic>(
            &[],
            json!({"application": "shop", "environment": "qa", "ref": "main"}),
        );
        assert!(!is_auto_deploy(&generic), "{generic:?}");
    }

    #[test]
    fn long_keys_are_cut_and_stay_distinct() {
        let short = "github-push:1:refs/heads/main:abc:production".to_owned();
        assert_eq!(bounded_key(short.clone()), short);
        let long_a = format!("github-push:1:refs/heads/{}:production", "é".repeat(200));
        let long_b = format!("github-push:1:refs/heads/{}:staging", "é".repeat(200));
        let (a, b) = (bounded_key(long_a.clone()), bounded_key(long_b));
        assert!(a.len() <= MAX_EXTERNAL_ID && b.len() <= MAX_EXTERNAL_ID);
        assert_ne!(a, b);
        assert_eq!(a, bounded_key(long_a));
    }
}
