//! The audit log: every action someone takes — a GraphQL mutation, a form
//! of the web UI, a chat command — with who took it (the token's or session's subject and
//! role), what, on which application, environment and object, when, from
//! where (the peer's address, `X-Forwarded-For` as sent, the user agent),
//! and how it ended. Hooks reach the API as the provider's mutations, so
//! they are recorded as those.
//!
//! Entries hold names, not references, so they outlive what they name. The
//! arguments are kept as JSON without their secrets ([`SECRET_ARGUMENTS`]).
//! Recording never fails the action: an entry that cannot be written is
//! logged as an error instead.

use std::net::SocketAddr;

use axum::http::{header, HeaderMap};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde_json::{Map, Value};

use crate::auth::Role;
use crate::db::entities::audit_entry;
use crate::error::{cut, ApiResult};
use crate::state::AppState;
use crate::view;

/// Arguments whose values are never kept: they are, or may hold, secrets.
pub const SECRET_ARGUMENTS: &[&str] = &["secret", "target", "token", "password", "code"];

/// The runner's protocol chatter, which the deployment or the environment
/// itself records (its heartbeats, progress, log lines, what it sees of the
/// swarm every minute): not entries of their own.
pub const UNRECORDED: &[&str] = &[
    "heartbeatDeployment",
    "updateDeploymentProgress",
    "appendDeploymentLogs",
    "reportObserved",
];

/// The longest text kept of a header, an argument list or an error.
const MAX_TEXT: usize = 1000;

/// Where an action came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Graphql,
    Web,
    Chat,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Graphql => "GRAPHQL",
            Via::Web => "WEB",
            Via::Chat => "CHAT",
        }
    }
}

/// Where a request came from, as far as the API can tell.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    pub ip: Option<String>,
    pub forwarded_for: Option<String>,
    pub user_agent: Option<String>,
}

impl Origin {
    pub fn of(peer: Option<SocketAddr>, headers: &HeaderMap) -> Self {
        let header = |name: &header::HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| bounded(v.to_owned()))
        };
        Origin {
            ip: peer.map(|peer| peer.ip().to_string()),
            forwarded_for: header(&header::HeaderName::from_static("x-forwarded-for")),
            user_agent: header(&header::USER_AGENT),
        }
    }
}

/// The peer of an HTTP connection, put in each of its requests.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// One action to record.
#[derive(Debug)]
pub struct Action {
    /// The subject, or `None` for a caller without a valid token.
    pub actor: Option<String>,
    pub role: Option<Role>,
    pub via: Via,
    /// The mutation's name; the web UI's forms use the same names.
    pub action: String,
    /// Its arguments, secrets and all: [`record`] leaves them out.
    pub arguments: Value,
    pub origin: Origin,
    /// `Ok`, or the error's code and message.
    pub result: Result<(), (String, String)>,
}

/// Records `action`, naming its application, environment and object from
/// its arguments (and, for a deployment, from the deployment).
pub async fn record(state: &AppState, action: Action) {
    let mut arguments = action.arguments;
    redact(&mut arguments);
    let mut application = named(&arguments, "application");
    let mut environment = named(&arguments, "environment");
    if application.is_none() && action.action.ends_with("Application") {
        application = named(&arguments, "name");
    }
    let object = object_of(&action.action, &arguments);
    if let Some(Object::Deployment(id)) = &object {
        if let Ok(view) = view::get(&state.db, *id).await {
            application.get_or_insert(view.application.name.clone());
            environment.get_or_insert(view.environment.name.clone());
        }
    }
    let (result, error) = match action.result {
        Ok(()) => ("OK".to_owned(), None),
        Err((code, message)) => (code, Some(bounded(message))),
    };
    let arguments = match &arguments {
        Value::Object(map) if map.is_empty() => None,
        other => Some(bounded(other.to_string())),
    };
    let entry = audit_entry::ActiveModel {
        at: Set(state.clock.now()),
        actor: Set(action.actor.unwrap_or_else(|| "(anonymous)".into())),
        role: Set(action.role.map(|role| role.as_str().to_owned())),
        via: Set(action.via.as_str().to_owned()),
        action: Set(action.action.clone()),
        application: Set(application),
        environment: Set(environment),
        object: Set(object.map(|o| o.to_string())),
        arguments: Set(arguments),
        ip: Set(action.origin.ip),
        forwarded_for: Set(action.origin.forwarded_for),
        user_agent: Set(action.origin.user_agent),
        result: Set(result),
        error: Set(error),
        ..Default::default()
    };
    if let Err(err) = entry.insert(&state.db).await {
        tracing::error!(?err, action = %action.action, "could not record an action in the audit log");
    }
}

/// Which entries to read.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub application: Option<String>,
    pub actor: Option<String>,
}

/// Entries newest first, `first` of them before the id `before`; and
/// whether there are more.
pub async fn list(
    state: &AppState,
    filter: &Filter,
    first: u64,
    before: Option<i64>,
) -> ApiResult<(Vec<audit_entry::Model>, bool)> {
    let mut query = audit_entry::Entity::find().order_by_desc(audit_entry::Column::Id);
    if let Some(application) = &filter.application {
        query = query.filter(audit_entry::Column::Application.eq(application.clone()));
    }
    if let Some(actor) = &filter.actor {
        query = query.filter(audit_entry::Column::Actor.eq(actor.clone()));
    }
    if let Some(before) = before {
        query = query.filter(audit_entry::Column::Id.lt(before));
    }
    let mut rows = query.limit(first + 1).all(&state.db).await?;
    let more = rows.len() as u64 > first;
    rows.truncate(first as usize);
    Ok((rows, more))
}

/// What an action acted on, beyond its application and environment.
enum Object {
    Deployment(i64),
    Other(String, String),
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Object::Deployment(id) => write!(f, "deployment {id}"),
            Object::Other(kind, id) => write!(f, "{kind} {id}"),
        }
    }
}

/// The object of `action`: its `deployment` argument, or its `id` of the
/// kind the action's name ends with (`removeFreezeWindow` → freeze window).
fn object_of(action: &str, arguments: &Value) -> Option<Object> {
    let text = |value: &Value| match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    if let Some(id) = arguments.get("deployment").and_then(text) {
        return Some(deployment_or(id));
    }
    let id = arguments.get("id").and_then(text)?;
    let kind = kind_of(action);
    if kind == "deployment" {
        return Some(deployment_or(id));
    }
    Some(Object::Other(kind, id))
}

fn deployment_or(id: String) -> Object {
    match id.parse() {
        Ok(id) => Object::Deployment(id),
        Err(_) => Object::Other("deployment".into(), id),
    }
}

/// `cancelDeployment` → `deployment`, `removeFreezeWindow` → `freeze window`.
fn kind_of(action: &str) -> String {
    let start = action.find(|c: char| c.is_ascii_uppercase()).unwrap_or(0);
    let mut kind = String::new();
    for c in action[start..].chars() {
        if c.is_ascii_uppercase() && !kind.is_empty() {
            kind.push(' ');
        }
        kind.push(c.to_ascii_lowercase());
    }
    kind
}

/// The string `key` of the arguments, or of their `input`.
fn named(arguments: &Value, key: &str) -> Option<String> {
    let direct = arguments.get(key).and_then(Value::as_str);
    let input = arguments
        .get("input")
        .and_then(|i| i.get(key))
        .and_then(Value::as_str);
    direct.or(input).map(str::to_owned)
}

/// Replaces the values of [`SECRET_ARGUMENTS`], at any depth.
fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => redact_map(map),
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

fn redact_map(map: &mut Map<String, Value>) {
    for (key, value) in map.iter_mut() {
        if SECRET_ARGUMENTS.contains(&key.as_str()) && !value.is_null() {
            *value = Value::String("(not kept)".into());
        } else {
            redact(value);
        }
    }
}

fn bounded(text: String) -> String {
    cut(&text, MAX_TEXT).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secrets_are_not_kept_at_any_depth() {
        let mut arguments = json!({"input": {"application": "shop", "target": "https://hooks.slack.com/services/T/B/x",
            "secret": "whsec_abc", "events": ["QUEUED"]}, "token": null});
        redact(&mut arguments);
        assert_eq!(
            arguments,
            json!({"input": {"application": "shop", "target": "(not kept)",
                "secret": "(not kept)", "events": ["QUEUED"]}, "token": null})
        );
    }

    #[test]
    fn objects_are_named_by_the_action() {
        let of = |action, arguments| object_of(action, &arguments).map(|o| o.to_string());
        assert_eq!(
            of("cancelDeployment", json!({"id": "12"})).as_deref(),
            Some("deployment 12")
        );
        assert_eq!(
            of("reportChecks", json!({"deployment": "7"})).as_deref(),
            Some("deployment 7")
        );
        assert_eq!(
            of("removeFreezeWindow", json!({"id": "3"})).as_deref(),
            Some("freeze window 3")
        );
        assert_eq!(of("lockEnvironment", json!({"application": "shop"})), None);
    }
}
