//! `POST /hooks/generic`: any CI deploys with `Authorization: Bearer <generic
//! token>` and a body `{"application", "environment", "ref", "sha"?, "task"?,
//! "payload"?, "description"?, "id"?}`. `id` (or an `Idempotency-Key` header)
//! makes it exactly-once: a retry finds the deployment of the first.

use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::{header, Answer, Hooks, Request};
use crate::error::HookError;
use crate::signature;

/// The longest idempotency key accepted.
const MAX_ID_LEN: usize = 200;

#[derive(Debug, Deserialize)]
struct Body {
    application: String,
    environment: String,
    #[serde(rename = "ref")]
    ref_name: String,
    sha: Option<String>,
    task: Option<String>,
    payload: Option<Value>,
    description: Option<String>,
    id: Option<String>,
}

pub(crate) async fn handle(
    hooks: &Hooks,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Answer, HookError> {
    let Some(expected) = &hooks.secrets.generic_token else {
        return Err(HookError::NotConfigured(
            "generic hooks are off: the provider has no --generic-token".into(),
        ));
    };
    let given = header(headers, "authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| {
            HookError::Unauthorized(
                "missing `Authorization: Bearer <token>` with the generic hook token".into(),
            )
        })?;
    if !signature::token_matches(expected.expose(), given.trim()) {
        return Err(HookError::Unauthorized(
            "the bearer token is not the generic hook token".into(),
        ));
    }
    let body: Body = super::parse(body)?;
    for (field, value) in [
        ("application", &body.application),
        ("environment", &body.environment),
        ("ref", &body.ref_name),
    ] {
        if value.trim().is_empty() {
            return Err(HookError::BadRequest(format!("field `{field}` is empty")));
        }
    }
    let id = body
        .id
        .clone()
        .or_else(|| header(headers, "idempotency-key").map(str::to_owned))
        .filter(|id| !id.is_empty());
    if id.as_ref().is_some_and(|id| id.len() > MAX_ID_LEN) {
        return Err(HookError::BadRequest(format!(
            "`id` is longer than {MAX_ID_LEN} characters"
        )));
    }

    let applications = hooks.applications().await?;
    let Some(app) = applications.iter().find(|app| app.name == body.application) else {
        return Err(HookError::Unmatched(format!(
            "no application is named `{}`",
            body.application
        )));
    };
    if !app
        .environments
        .iter()
        .any(|env| env.name == body.environment)
    {
        let names: Vec<&str> = app.environments.iter().map(|e| e.name.as_str()).collect();
        return Err(HookError::Unmatched(format!(
            "application `{}` has no environment `{}` (it has {})",
            app.name,
            body.environment,
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )));
    }
    let created = hooks
        .create(Request {
            application: body.application,
            environment: body.environment,
            ref_name: body.ref_name,
            sha: body.sha,
            task: body.task,
            payload: body.payload,
            external_id: id.map(|id| format!("generic:{id}")),
            description: body.description,
        })
        .await?;
    tracing::info!(deployment = %created.name, environment = %created.environment, "generic hook");
    Ok(Answer::Deployments {
        deployments: vec![created],
        skipped: Vec::new(),
    })
}
