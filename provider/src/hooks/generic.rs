//! `POST /hooks/generic`: any CI deploys with `Authorization: Bearer <generic
//! token>` and a body `{"application", "environment", "ref", "sha"?, "task"?,
//! "payload"?, "description"?, "id"?}`. `id` (or an `Idempotency-Key` header)
//! makes it exactly-once per environment (`externalId`
//! `generic:<id>:<environment>`): a retry finds the deployment of the first.

use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::{header, Extract, NamedDeploy, Source, Verify, Wanted, Which};
use crate::config::Secret;
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

/// Any CI: the generic token as a bearer token.
pub(crate) struct Generic;

pub(crate) const SOURCE: Source =
    Source::of::<Generic>("generic", "/hooks/generic", "generic-token", |hooks| {
        (
            hooks.generic_token.as_ref(),
            hooks.generic_token_file.as_deref(),
        )
    });

impl Verify for Generic {
    fn verify(secret: &Secret, headers: &HeaderMap, _body: &[u8]) -> Result<(), HookError> {
        let given = header(headers, "authorization")
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| {
                HookError::Unauthorized(
                    "missing `Authorization: Bearer <token>` with the generic hook token".into(),
                )
            })?;
        if !signature::token_matches(secret.expose(), given.trim()) {
            return Err(HookError::Unauthorized(
                "the bearer token is not the generic hook token".into(),
            ));
        }
        Ok(())
    }
}

impl Extract for Generic {
    fn extract(headers: &HeaderMap, body: &[u8]) -> Result<Wanted, HookError> {
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
        // The environment is part of the key: one CI id sent for two
        // environments makes two deployments.
        let external_id = id.map(|id| format!("generic:{id}:{}", body.environment));
        Ok(Wanted::Named(NamedDeploy {
            application: Which::Named(body.application),
            environment: body.environment,
            ref_name: body.ref_name,
            sha: body.sha,
            task: body.task,
            payload: body.payload,
            description: body.description,
            external_id,
            github: None,
        }))
    }
}
