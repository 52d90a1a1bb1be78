//! The GraphQL schema: the contract that `schema.graphql` records.
//!
//! Every request, over HTTP or WebSocket, passes [`Bounds`]: its cost is
//! checked against [`MAX_COST`] (see [`cost`]), a heavy one waits for its
//! turn ([`HEAVY_COST`]), its errors get a code and a bounded size, and the
//! HTTP layer learns whether it was executed at all ([`Execution`]). Each
//! operation runs in a tracing span of its own (`trace`); the schema served
//! to clients also times each one (`timed`); each mutation is recorded in
//! the audit log (`audit`).

mod audit;
pub mod cost;
mod dora;
mod enums;
mod gates;
mod mutation;
mod nodes;
mod notifications;
mod query;
mod subscription;
mod timed;
mod trace;
pub mod types;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
    NextRequest, NextSubscribe, NextValidation,
};
use async_graphql::futures_util::stream::BoxStream;
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationDefinition};
use async_graphql::{
    PathSegment, Positioned, Request, Response, Schema, SchemaBuilder, ServerError, ServerResult,
    ValidationResult, Value, Variables,
};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::cut;
use crate::state::AppState;
pub use mutation::Mutation;
pub use query::Query;
pub use subscription::Subscription;

pub type SlipwaySchema = Schema<Query, Mutation, Subscription>;

/// Deepest query accepted: deep enough for the introspection query of
/// GraphiQL and graphql-js (`__schema` down nine `ofType`s is 15), while
/// [`cost`] bounds what any query may ask for.
const MAX_DEPTH: usize = 16;
/// Dearest query accepted, in [`cost`]'s units (about one per value in the
/// answer): 10,000 log lines with every field of each cost 40,001, and
/// `slipway status` about 6,000. BENCHMARKS.md has what the dearest query
/// costs the API in memory.
pub const MAX_COST: u64 = 50_000;
/// Queries dearer than this run one at a time ([`HEAVY_AT_ONCE`]): each
/// holds tens of megabytes and a database connection per alias while it
/// runs, and the requests runners make must not wait behind a crowd of them.
/// `slipway status` and a CLI page of 1,000 log lines are lighter.
pub const HEAVY_COST: u64 = 10_000;
/// How many heavy queries run at once; the others wait their turn.
pub const HEAVY_AT_ONCE: usize = 1;
/// Longest error message sent: messages quote input, and input can be large.
const MAX_MESSAGE_CHARS: usize = 1000;

fn builder() -> SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(Query, Mutation, Subscription)
        .limit_depth(MAX_DEPTH)
        .extension(Bounds {
            heavy: Arc::new(Semaphore::new(HEAVY_AT_ONCE)),
        })
        .extension(trace::Traced)
        .extension(audit::Audited)
}

/// The schema clients are served: each query and mutation is timed into
/// `state.metrics`.
pub fn schema(state: AppState) -> SlipwaySchema {
    builder()
        .extension(timed::Timed(state.metrics.clone()))
        .data(state)
        .finish()
}

/// The schema the API asks itself through (the outbox reads a deployment
/// as webhooks show it): not a client's request, so not timed.
pub(crate) fn own_schema(state: AppState) -> SlipwaySchema {
    builder().data(state).finish()
}

/// The schema in SDL, as `schema.graphql` holds it.
pub fn sdl() -> String {
    builder().finish().sdl()
}

/// Put in a request's data by the HTTP layer, to learn how it went.
#[derive(Debug, Default)]
pub struct Execution {
    /// Set once the request passed parsing and validation and runs. A
    /// request that never ran gets no `data` in its answer (and, as
    /// `application/graphql-response+json`, status 400).
    ran: AtomicBool,
    /// A heavy query's turn, held until its answer is written.
    turn: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Execution {
    pub fn ran(&self) -> bool {
        self.ran.load(Ordering::Acquire)
    }

    /// Whether the request was heavy (and still holds its turn).
    pub fn is_heavy(&self) -> bool {
        self.turn.lock().is_ok_and(|turn| turn.is_some())
    }
}

/// The rules every request passes through, whatever its transport.
struct Bounds {
    /// Turns for heavy queries.
    heavy: Arc<Semaphore>,
}

impl ExtensionFactory for Bounds {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(BoundsOfOne {
            heavy: self.heavy.clone(),
            operation: Mutex::default(),
            parsed: Mutex::default(),
            cost: AtomicU64::default(),
        })
    }
}

/// [`Bounds`] for one request.
struct BoundsOfOne {
    heavy: Arc<Semaphore>,
    /// The operation the request names, to price that one.
    operation: Mutex<Option<String>>,
    /// The parsed document and its variables, kept until validation.
    parsed: Mutex<Option<(ExecutableDocument, Variables)>>,
    /// Its cost, once parsed.
    cost: AtomicU64,
}

#[async_graphql::async_trait::async_trait]
impl Extension for BoundsOfOne {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        bound_errors(&mut response.errors);
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream)
            .map(|mut response| {
                bound_errors(&mut response.errors);
                response
            })
            .boxed()
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Ok(mut operation) = self.operation.lock() {
            operation.clone_from(&request.operation_name);
        }
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await.map_err(as_sentence)?;
        if let Ok(mut parsed) = self.parsed.lock() {
            *parsed = Some((document.clone(), variables.clone()));
        }
        Ok(document)
    }

    /// After the schema's own rules (depth among them): the cost, then the
    /// variables the operation cannot run without.
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        let Some((document, variables)) = self.parsed.lock().ok().and_then(|mut p| p.take()) else {
            return Ok(result);
        };
        let operation = self.operation.lock().ok().and_then(|name| name.clone());
        let cost = cost::of_document(
            &ctx.schema_env.registry,
            &document,
            operation.as_deref(),
            &variables,
        );
        self.cost.store(cost, Ordering::Relaxed);
        if cost > MAX_COST {
            return Err(vec![ServerError::new(
                format!(
                    "query cost {cost} is over the limit of {MAX_COST}: ask for fewer items \
                     (`first`) or fewer fields, and page through the rest"
                ),
                None,
            )]);
        }
        if let Some(chosen) = operation_of(&document, operation.as_deref()) {
            required_variables(chosen, &variables).map_err(|err| vec![err])?;
        }
        Ok(result)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let execution = ctx.data_opt::<Arc<Execution>>();
        if let Some(execution) = execution {
            execution.ran.store(true, Ordering::Release);
        }
        if self.cost.load(Ordering::Relaxed) <= HEAVY_COST {
            return next.run(ctx, operation_name).await;
        }
        let Ok(turn) = self.heavy.clone().acquire_owned().await else {
            return next.run(ctx, operation_name).await;
        };
        // Resolving tens of thousands of values takes long polls: the thread
        // doing it leaves the runtime's workers to the other requests.
        let runtime = tokio::runtime::Handle::current();
        let response = match runtime.runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| runtime.block_on(next.run(ctx, operation_name)))
            }
            _ => next.run(ctx, operation_name).await,
        };
        // Over HTTP the turn lasts until the answer is written.
        if let Some(execution) = execution {
            if let Ok(mut held) = execution.turn.lock() {
                *held = Some(turn);
            }
        }
        response
    }
}

/// The operation a request runs: the one named, or the document's only one.
pub(crate) fn operation_of<'a>(
    document: &'a ExecutableDocument,
    name: Option<&str>,
) -> Option<&'a Positioned<OperationDefinition>> {
    match (&document.operations, name) {
        (DocumentOperations::Single(operation), _) => Some(operation),
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name),
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next()
        }
        _ => None,
    }
}

/// A variable of a non-null type without a default must be given: GraphQL
/// coerces variables before it executes anything, so a missing one is an
/// error of the request, not of a field.
fn required_variables(
    operation: &Positioned<OperationDefinition>,
    variables: &Variables,
) -> ServerResult<()> {
    for definition in &operation.node.variable_definitions {
        let definition = &definition.node;
        let given = variables
            .get(&definition.name.node)
            .is_some_and(|value| *value != Value::Null);
        if !definition.var_type.node.nullable && definition.default_value.is_none() && !given {
            return Err(ServerError::new(
                format!(
                    "variable `${}` of type `{}` is required",
                    definition.name.node, definition.var_type.node
                ),
                Some(definition.name.pos),
            ));
        }
    }
    Ok(())
}

/// A parse error as one line: the parser draws the query around the spot
/// (`--> 1:2 | { | ^--- = expected selection`); the location is in the
/// error's `locations` already.
fn as_sentence(mut error: ServerError) -> ServerError {
    if let Some((_, expected)) = error.message.rsplit_once("\n  = ") {
        let at = error
            .locations
            .first()
            .map(|pos| format!(" at line {}, column {}", pos.line, pos.column))
            .unwrap_or_default();
        error.message = format!("the query does not parse{at}: {}", expected.trim());
    }
    error
}

/// Gives every error a code and a bounded size. Errors that carry no code
/// come from parsing or validating the request (unknown field, wrong
/// argument type, too deep, too dear): the client's input is wrong.
fn bound_errors(errors: &mut [ServerError]) {
    for error in errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", "BAD_USER_INPUT");
        }
        if let Some(short) = cut(&error.message, MAX_MESSAGE_CHARS) {
            error.message = short;
        }
        for segment in &mut error.path {
            if let PathSegment::Field(name) = segment {
                if let Some(short) = cut(name, MAX_MESSAGE_CHARS) {
                    *name = short;
                }
            }
        }
    }
}
