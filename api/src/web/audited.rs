//! The web UI's actions in the audit log: every form posted (a `POST` to
//! any page) is recorded under the name of the mutation that does the same
//! (`/deployments/{id}/cancel` is `cancelDeployment`), with the path's
//! parameters and the form's fields (less its CSRF token and secrets), the
//! person the session is of, and how it ended.

use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{Map, Value};

use crate::audit::{self, Action, Origin, Peer, Via};
use crate::auth::Role;
use crate::error::ApiError;
use crate::state::AppState;

/// The largest form the UI takes: its forms are a few fields.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Form fields that are not the action's arguments.
const NOT_ARGUMENTS: &[&str] = &["csrf", "login"];

/// Who acted: filled by [`super::SignedIn`] (or by signing in) for the
/// request [`record`] wraps.
#[derive(Clone, Default)]
pub(crate) struct Acting(Arc<Mutex<Option<(String, Role)>>>);

impl Acting {
    pub(crate) fn set(&self, subject: &str, role: Role) {
        if let Ok(mut acting) = self.0.lock() {
            *acting = Some((subject.to_owned(), role));
        }
    }

    fn get(&self) -> Option<(String, Role)> {
        self.0.lock().ok().and_then(|acting| acting.clone())
    }
}

/// Why an action failed, put on its answer (the page itself is HTML).
#[derive(Clone)]
pub(crate) struct Failure {
    pub code: &'static str,
    pub message: String,
}

impl Failure {
    pub(crate) fn of(err: &ApiError) -> Self {
        Failure {
            code: err.code(),
            message: err.message().to_owned(),
        }
    }
}

/// Records a posted form as an action (a route layer: it knows the route).
pub(crate) async fn record(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    peer: Option<Extension<Peer>>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let route = matched.as_ref().map_or("", |m| m.as_str()).to_owned();
    let origin = Origin::of(peer.map(|Extension(Peer(peer))| peer), request.headers());
    let mut arguments = path_parameters(&route, request.uri().path());
    let (mut parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_FORM_BYTES).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "this form is too large").into_response();
    };
    for (key, value) in form_urlencoded::parse(&bytes) {
        if !NOT_ARGUMENTS.contains(&key.as_ref()) && !value.is_empty() {
            arguments.insert(key.into_owned(), Value::String(value.into_owned()));
        }
    }
    let acting = Acting::default();
    parts.extensions.insert(acting.clone());
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;

    let (actor, role) = acting.get().unzip();
    let result = match response.extensions().get::<Failure>() {
        Some(failure) => Err((failure.code.to_owned(), failure.message.clone())),
        None if response.status().is_client_error() || response.status().is_server_error() => {
            Err((response.status().as_u16().to_string(), String::new()))
        }
        None => Ok(()),
    };
    audit::record(
        &state,
        Action {
            actor,
            role,
            via: Via::Web,
            action: action_of(&route),
            arguments: Value::Object(arguments),
            origin,
            result,
        },
    )
    .await;
    response
}

/// The mutation a form of `route` does.
fn action_of(route: &str) -> String {
    match route {
        "/login" => "signIn",
        "/logout" => "signOut",
        "/apps/{app}/{env}/deploy" => "createDeployment",
        "/apps/{app}/{env}/lock" => "lockEnvironment",
        "/apps/{app}/{env}/unlock" => "unlockEnvironment",
        "/apps/{app}/{env}/resume" => "resumeAutoDeploy",
        "/apps/{app}/{env}/rollback" => "rollbackDeployment",
        "/deployments/{id}/cancel" => "cancelDeployment",
        "/deployments/{id}/approve" => "approveDeployment",
        "/deployments/{id}/reject" => "rejectDeployment",
        "/deployments/{id}/override-freeze" => "overrideFreeze",
        "/deployments/{id}/redeploy" => "createDeployment",
        "/plans" => "requestPlan",
        "/setup/applications" => "createApplication",
        "/setup/environments" => "createEnvironment",
        other => return format!("POST {other}"),
    }
    .to_owned()
}

/// The route's parameters under the names the mutations give them.
fn path_parameters(route: &str, path: &str) -> Map<String, Value> {
    let mut found = Map::new();
    for (template, segment) in route.split('/').zip(path.split('/')) {
        let name = match template {
            "{app}" => "application",
            "{env}" => "environment",
            "{id}" => "id",
            _ => continue,
        };
        let value = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        found.insert(name.to_owned(), Value::String(value.into_owned()));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_their_mutation_and_parameters() {
        assert_eq!(action_of("/deployments/{id}/cancel"), "cancelDeployment");
        assert_eq!(action_of("/elsewhere"), "POST /elsewhere");
        let found = path_parameters("/apps/{app}/{env}/lock", "/apps/shop/pre%20prod/lock");
        assert_eq!(found["application"], "shop");
        assert_eq!(found["environment"], "pre prod");
    }
}
