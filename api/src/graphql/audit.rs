//! The audit log in GraphQL: [`Audited`], the extension that records every
//! mutation field as it resolves (over HTTP and WebSocket alike), and
//! `AuditEntry`, what `auditLog` answers.

use std::sync::{Arc, Mutex};

use async_graphql::connection::{Connection, Edge};
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest, NextResolve, ResolveInfo,
};
use async_graphql::{Context, Object, Request, ServerResult, Value, Variables, ID};
use chrono::{DateTime, Utc};

use super::types::page_arguments;
use crate::audit::{self, Action, Origin, Via};
use crate::auth::Auth;
use crate::db::entities::audit_entry;
use crate::error::ApiResult;
use crate::state::AppState;

/// Records each mutation field with its caller, arguments and result.
pub(super) struct Audited;

impl ExtensionFactory for Audited {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(AuditedRequest::default())
    }
}

/// [`Audited`] for one request.
#[derive(Default)]
struct AuditedRequest {
    /// The request's variables, to read the arguments they fill.
    variables: Mutex<Variables>,
}

#[async_graphql::async_trait::async_trait]
impl Extension for AuditedRequest {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Ok(mut variables) = self.variables.lock() {
            variables.clone_from(&request.variables);
        }
        next.run(ctx, request).await
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let recorded = info.parent_type == "Mutation" && !audit::UNRECORDED.contains(&info.name);
        let Some(state) = ctx.data_opt::<AppState>().filter(|_| recorded) else {
            return next.run(ctx, info).await;
        };
        let action = info.name.to_owned();
        let arguments = self.arguments(&info);
        let result = next.run(ctx, info).await;
        let (actor, role) = match ctx.data_opt::<Auth>() {
            Some(Auth::Valid(claims)) => (Some(claims.sub.clone()), Some(claims.role)),
            _ => (None, None),
        };
        let outcome = match &result {
            Ok(_) => Ok(()),
            Err(err) => {
                let code = err
                    .extensions
                    .as_ref()
                    .and_then(|e| e.get("code"))
                    .and_then(|code| match code {
                        Value::String(code) => Some(code.clone()),
                        _ => None,
                    })
                    .unwrap_or_else(|| "BAD_USER_INPUT".into());
                Err((code, err.message.clone()))
            }
        };
        audit::record(
            state,
            Action {
                actor,
                role,
                via: Via::Graphql,
                action,
                arguments,
                origin: ctx.data_opt::<Origin>().cloned().unwrap_or_default(),
                result: outcome,
            },
        )
        .await;
        result
    }
}

impl AuditedRequest {
    /// The field's arguments as JSON, variables filled in.
    fn arguments(&self, info: &ResolveInfo<'_>) -> serde_json::Value {
        let variables = self.variables.lock().map(|v| v.clone()).unwrap_or_default();
        let mut map = serde_json::Map::new();
        for (name, value) in &info.field.arguments {
            let value = value
                .node
                .clone()
                .into_const_with(|name| variables.get(&name).cloned().ok_or(()))
                .unwrap_or(Value::Null);
            map.insert(
                name.node.to_string(),
                value.into_json().unwrap_or(serde_json::Value::Null),
            );
        }
        serde_json::Value::Object(map)
    }
}

/// One action in the audit log.
pub(crate) struct AuditEntry(pub audit_entry::Model);

#[Object]
impl AuditEntry {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }

    /// The subject of the token or session that acted, or `(anonymous)`.
    async fn actor(&self) -> &str {
        &self.0.actor
    }

    /// Its role then (`admin`, `deployer`, …).
    async fn role(&self) -> Option<&str> {
        self.0.role.as_deref()
    }

    /// `GRAPHQL` or `WEB`.
    async fn via(&self) -> &str {
        &self.0.via
    }

    /// The mutation's name (`cancelDeployment`); the web UI's forms are
    /// named as the mutations that do the same.
    async fn action(&self) -> &str {
        &self.0.action
    }

    async fn application(&self) -> Option<&str> {
        self.0.application.as_deref()
    }

    async fn environment(&self) -> Option<&str> {
        self.0.environment.as_deref()
    }

    /// What it acted on beyond the environment: `deployment 12`.
    async fn object(&self) -> Option<&str> {
        self.0.object.as_deref()
    }

    /// The arguments as JSON, with secrets and targets left out.
    async fn arguments(&self) -> Option<&str> {
        self.0.arguments.as_deref()
    }

    /// The address the request came from.
    async fn ip(&self) -> Option<&str> {
        self.0.ip.as_deref()
    }

    /// `X-Forwarded-For` as the request carried it: a proxy's word, unchecked.
    async fn forwarded_for(&self) -> Option<&str> {
        self.0.forwarded_for.as_deref()
    }

    async fn user_agent(&self) -> Option<&str> {
        self.0.user_agent.as_deref()
    }

    /// `OK`, or the error's code (`FORBIDDEN`, `CONFLICT`, …).
    async fn result(&self) -> &str {
        &self.0.result
    }

    /// The error's message, when it failed.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
}

pub(crate) async fn audit_page(
    ctx: &Context<'_>,
    filter: audit::Filter,
    first: Option<i32>,
    after: Option<String>,
) -> ApiResult<Connection<String, AuditEntry>> {
    let (first, before_id) = page_arguments(first, after)?;
    let state = ctx.data_unchecked::<AppState>();
    let (rows, more) = audit::list(state, &filter, first as u64, before_id).await?;
    let mut connection = Connection::new(before_id.is_some(), more);
    connection.edges.extend(
        rows.into_iter()
            .map(|row| Edge::new(row.id.to_string(), AuditEntry(row))),
    );
    Ok(connection)
}
