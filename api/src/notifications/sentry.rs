//! Sentry releases: when a deployment starts, the release of its commit
//! (version = the sha) with the commits it brings; when it succeeds, a
//! deploy of that release to the environment, with when it started and
//! finished. Sentry's releases API, posted through the outbox like any
//! notification.
//!
//! A Sentry notification's target is the project's page,
//! `https://sentry.io/organizations/ORG/projects/PROJECT/` (or a
//! self-hosted Sentry's); the API is under the same origin and prefix.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};

use crate::commits;
use crate::db::entities::commit;
use crate::db::entities::notification_event::DeploymentEvent;
use crate::error::{ApiError, ApiResult};
use crate::releases;
use crate::view::DeploymentView;

/// The most commits a release lists.
const MAX_COMMITS: usize = 100;

/// A Sentry project, as a notification's target names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Project {
    /// Where Sentry's API is: `https://sentry.io`.
    pub base: String,
    pub organization: String,
    pub project: String,
}

impl Project {
    /// Reads `https://HOST[/PREFIX]/organizations/ORG/projects/PROJECT/`.
    pub fn parse(target: &str) -> ApiResult<Project> {
        let bad = || {
            ApiError::BadInput(
                "a Sentry `target` is the project's page: https://sentry.io/organizations/ORG/projects/PROJECT/"
                    .into(),
            )
        };
        let url = reqwest::Url::parse(target).map_err(|_| bad())?;
        let segments: Vec<&str> = url
            .path_segments()
            .ok_or_else(bad)?
            .filter(|s| !s.is_empty())
            .collect();
        let at = segments
            .windows(4)
            .rposition(|w| w[0] == "organizations" && w[2] == "projects")
            .filter(|at| at + 4 == segments.len())
            .ok_or_else(bad)?;
        let slug = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        let (organization, project) = (segments[at + 1], segments[at + 3]);
        if !slug(organization) || !slug(project) {
            return Err(bad());
        }
        let mut base = url.origin().ascii_serialization();
        for prefix in &segments[..at] {
            base.push('/');
            base.push_str(prefix);
        }
        Ok(Project {
            base,
            organization: organization.to_owned(),
            project: project.to_owned(),
        })
    }

    /// `POST` here to create a release.
    pub fn releases_url(&self) -> String {
        format!(
            "{}/api/0/organizations/{}/releases/",
            self.base, self.organization
        )
    }

    /// `POST` here to record a deploy of release `version`.
    pub fn deploys_url(&self, version: &str) -> String {
        format!("{}{version}/deploys/", self.releases_url())
    }
}

/// What to send Sentry for `event` of `view`, as the JSON the outbox keeps:
/// `{"release": …, "deploy": …}`, or `{"skip": why}` when there is nothing
/// to tell yet (no commit known when it started).
pub async fn calls(
    db: &impl ConnectionTrait,
    project: &Project,
    view: &DeploymentView,
    event: DeploymentEvent,
    public_url: Option<&str>,
) -> ApiResult<Value> {
    let d = &view.deployment;
    let Some(sha) = &d.sha else {
        return Ok(json!({"skip": "no commit known yet: the release is made when it succeeds"}));
    };
    let previous = releases::before(db, view.environment.id, d.id)
        .await?
        .and_then(|release| release.sha);
    let mut release = json!({
        "version": sha,
        "ref": d.ref_name,
        "projects": [project.project],
    });
    if let Some(url) = releases::commit_url(&view.application.repository, sha) {
        release["url"] = json!(url);
    }
    if let Some(repository) = releases::repository_name(&view.application.repository) {
        release["commits"] = Value::Array(
            commits_of(
                db,
                view.application.id,
                sha,
                previous.as_deref(),
                &repository,
            )
            .await?,
        );
    }
    let deploy = (event == DeploymentEvent::Succeeded).then(|| {
        let mut deploy = json!({
            "environment": view.environment.name,
            "name": view.name(),
            "projects": [project.project],
            "dateStarted": d.started_at,
            "dateFinished": d.finished_at,
        });
        if let Some(base) = public_url {
            deploy["url"] = json!(format!(
                "{}/deployments/{}",
                base.trim_end_matches('/'),
                d.id
            ));
        }
        deploy
    });
    Ok(json!({"release": release, "deploy": deploy}))
}

/// The commits `sha` brings since `previous`, as Sentry lists them; just
/// `sha` when the runners reported none.
async fn commits_of(
    db: &impl ConnectionTrait,
    application_id: i64,
    sha: &str,
    previous: Option<&str>,
    repository: &str,
) -> ApiResult<Vec<Value>> {
    let graph = commits::graph(db, application_id).await?;
    let mut shas = graph.since(sha, previous);
    if shas.is_empty() {
        shas.push(sha.to_owned());
    }
    let mut rows = commit::Entity::find()
        .filter(commit::Column::ApplicationId.eq(application_id))
        .filter(commit::Column::Sha.is_in(shas.clone()))
        .all(db)
        .await?;
    rows.sort_by(|a, b| b.committed_at.cmp(&a.committed_at).then(a.sha.cmp(&b.sha)));
    let mut listed: Vec<Value> = rows
        .iter()
        .take(MAX_COMMITS)
        .map(|c| {
            let mut one = json!({"id": c.sha, "repository": repository});
            if let Some(subject) = &c.subject {
                one["message"] = json!(subject);
            }
            if let Some(at) = c.committed_at {
                one["timestamp"] = json!(at);
            }
            one
        })
        .collect();
    if listed.is_empty() {
        listed.push(json!({"id": sha, "repository": repository}));
    }
    Ok(listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_is_read_from_its_page() {
        let p = Project::parse("https://sentry.io/organizations/acme/projects/shop/").unwrap();
        assert_eq!(p.base, "https://sentry.io");
        assert_eq!(
            p.releases_url(),
            "https://sentry.io/api/0/organizations/acme/releases/"
        );
        assert_eq!(
            p.deploys_url("abc"),
            "https://sentry.io/api/0/organizations/acme/releases/abc/deploys/"
        );
        let hosted =
            Project::parse("http://127.0.0.1:9000/sentry/organizations/acme/projects/shop")
                .unwrap();
        assert_eq!(hosted.base, "http://127.0.0.1:9000/sentry");
        for bad in [
            "https://sentry.io/acme/shop/",
            "https://sentry.io/organizations/acme/projects/",
            "https://sentry.io/organizations/acme/projects/shop/issues/",
            "https://sentry.io/organizations/ac%20me/projects/shop/",
        ] {
            assert!(Project::parse(bad).is_err(), "{bad}");
        }
    }
}
