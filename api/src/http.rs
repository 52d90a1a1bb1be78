//! The HTTP surface: `/graphql` (GraphQL over HTTP: POST, GET for queries,
//! GraphiQL for browsers), `/graphql/ws` (subscriptions), `/healthz` and
//! `/readyz`, with the web UI's routes ([`crate::web`]) merged in; and the
//! connections they arrive on, with the timeouts that keep a slow or silent
//! client from holding one.
//!
//! `/graphql` follows the GraphQL-over-HTTP specification: answers are
//! `application/json` unless the client asks for
//! `application/graphql-response+json`, under which a request that never ran
//! (unparsable, invalid, too dear) is a 400 without `data`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::http::{WebSocketProtocols, WsMessage};
use async_graphql::parser::types::OperationType;
use async_graphql::{Data, Variables};
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::header::{
    ACCEPT, ALLOW, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, SEC_WEBSOCKET_PROTOCOL,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::audit::{Origin, Peer};
use crate::auth::{Auth, EXPIRED};
use crate::graphql::{self, Execution, SlipwaySchema};
use crate::state::{AppState, Timeouts};

/// Largest request body accepted (a batch of log lines fits comfortably).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Largest WebSocket message (a subscription's query is a few hundred bytes).
pub const MAX_WS_MESSAGE_BYTES: usize = 1024 * 1024;
/// Largest message a WebSocket may send before it is authenticated.
pub const MAX_WS_INIT_BYTES: usize = 4 * 1024;

#[derive(Clone)]
struct Http {
    state: AppState,
    schema: SlipwaySchema,
    /// Where WebSocket connections run (see [`router_with`]).
    subscriptions: tokio::runtime::Handle,
}

/// The API's routes, ready to serve or to drive from tests without a socket.
/// WebSocket connections run on the current runtime.
pub fn router(state: AppState) -> Router {
    router_with(state, tokio::runtime::Handle::current())
}

/// The routes, with WebSocket connections run on `subscriptions`: a runtime
/// of their own keeps a crowd of log followers from slowing down the requests
/// that runners depend on (claims, heartbeats, log appends).
pub fn router_with(state: AppState, subscriptions: tokio::runtime::Handle) -> Router {
    let state_for_web = state.clone();
    let http = Http {
        schema: graphql::schema(state.clone()),
        state,
        subscriptions,
    };
    Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/graphql/ws", get(graphql_ws))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(http)
        .merge(crate::chatops::router(state_for_web.clone()))
        .merge(crate::web::router(state_for_web))
        // A span per request, so what a handler logs says which request it
        // served; 5xx answers are logged as failures, the rest at debug.
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |request: &axum::http::Request<axum::body::Body>| {
                    tracing::info_span!("http", method = %request.method(), path = %request.uri().path())
                },
            ),
        )
}

/// Serves `router` on the connections of `listener` until `shutdown`, then
/// lets the requests in flight finish. A connection must send each request's
/// head within `timeouts.header` (hyper's clock also runs while a keep-alive
/// connection waits for its next request, so an idle one is closed after as
/// long); handlers bound the body. Upgraded WebSockets leave this loop and
/// keep themselves alive with pings.
pub(crate) async fn serve_connections(
    listener: TcpListener,
    router: Router,
    timeouts: &Timeouts,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(timeouts.header)
        .keep_alive(true);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) if is_connection_error(&err) => continue,
                Err(err) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::error!(%err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // Every request knows its connection's peer (for the audit log).
        let service = hyper_util::service::TowerToHyperService::new(router.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(Peer(peer));
                request
            },
        ));
        let connection = http1
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .with_upgrades();
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = result {
                tracing::debug!(%err, "connection ended");
            }
        });
    }
    drop((listener, stopping));
    let _ = stop.send(true);
    // Every connection task holds a receiver; they are gone when it is done.
    stop.closed().await;
    Ok(())
}

/// An error of the one connection being accepted, not of the listener.
pub(crate) fn is_connection_error(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        err.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

// --- GraphQL over HTTP --------------------------------------------------------

/// The media type of an answer on `/graphql`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Json,
    GraphqlResponse,
}

impl Format {
    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Format::Json => "application/json",
            Format::GraphqlResponse => "application/graphql-response+json",
        })
    }
}

/// The answer's media type: the first of those `Accept` ranks highest that
/// this API speaks; `application/json` without `Accept`; `None` when
/// `Accept` rules out both.
fn negotiate(headers: &HeaderMap) -> Option<Format> {
    let mut ranges = accepted(headers).peekable();
    if ranges.peek().is_none() {
        return Some(Format::Json);
    }
    let mut best: Option<(f32, Format)> = None;
    for (media, q) in ranges {
        let format = match media.as_str() {
            "application/graphql-response+json" => Format::GraphqlResponse,
            "application/json" | "application/*" | "*/*" => Format::Json,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(best, _)| q > best) {
            best = Some((q, format));
        }
    }
    best.map(|(_, format)| format)
}

/// Whether a browser asks for a page.
fn wants_html(headers: &HeaderMap) -> bool {
    accepted(headers).any(|(media, q)| media == "text/html" && q > 0.0)
}

/// The media ranges of `Accept`, lower-cased, with their quality.
fn accepted(headers: &HeaderMap) -> impl Iterator<Item = (String, f32)> + '_ {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|range| {
            let mut parts = range.split(';');
            let media = parts.next()?.trim().to_ascii_lowercase();
            if media.is_empty() {
                return None;
            }
            let q = parts
                .filter_map(|part| part.trim().strip_prefix("q="))
                .map(|q| q.trim().parse::<f32>().unwrap_or(0.0))
                .next()
                .unwrap_or(1.0);
            Some((media, q))
        })
}

/// A request refused before GraphQL saw it: a status and a sentence, sent as
/// a GraphQL error in the negotiated media type.
struct Refusal {
    status: StatusCode,
    message: String,
    /// The connection is closed after the answer (the body was not read).
    close: bool,
    /// For 405: the methods that are allowed.
    allow: Option<&'static str>,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            close: false,
            allow: None,
        }
    }

    fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    fn into_response(self, format: Format) -> Response {
        let body = json!({"errors": [{
            "message": self.message,
            "extensions": {"code": "BAD_USER_INPUT"},
        }]});
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, format.content_type());
        if let Some(allow) = self.allow {
            headers.insert(ALLOW, HeaderValue::from_static(allow));
        }
        if self.close {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

fn not_acceptable() -> Response {
    Refusal::new(
        StatusCode::NOT_ACCEPTABLE,
        "answers are application/json or application/graphql-response+json, and Accept \
         allows neither",
    )
    .into_response(Format::Json)
}

/// What a GraphQL request asks, from a JSON body or a URL's parameters.
struct Params {
    query: String,
    operation_name: Option<String>,
    variables: Option<Value>,
}

impl Params {
    /// Checks each parameter; `extensions` are accepted and not used.
    fn new(
        query: Option<Value>,
        operation_name: Option<Value>,
        variables: Option<Value>,
        extensions: Option<Value>,
    ) -> Result<Self, String> {
        let query = match query {
            Some(Value::String(query)) => query,
            None | Some(Value::Null) => {
                return Err(
                    "the request has no `query`: send {\"query\": \"{ viewer { subject } }\"}"
                        .into(),
                )
            }
            Some(other) => return Err(format!("`query` must be a string, not {}", kind(&other))),
        };
        let operation_name = match operation_name {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) => Some(name),
            Some(other) => {
                return Err(format!(
                    "`operationName` must be a string or null, not {}",
                    kind(&other)
                ))
            }
        };
        let variables = match variables {
            None | Some(Value::Null) => None,
            Some(variables @ Value::Object(_)) => Some(variables),
            Some(other) => {
                return Err(format!(
                    "`variables` must be an object or null, not {}",
                    kind(&other)
                ))
            }
        };
        match extensions {
            None | Some(Value::Null) | Some(Value::Object(_)) => {}
            Some(other) => {
                return Err(format!(
                    "`extensions` must be an object or null, not {}",
                    kind(&other)
                ))
            }
        }
        Ok(Self {
            query,
            operation_name,
            variables,
        })
    }

    fn from_body(body: &[u8]) -> Result<Self, String> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err("the request body is empty: send a JSON object such as \
                        {\"query\": \"{ viewer { subject } }\"}"
                .into());
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|err| format!("the request body is not JSON ({err})"))?;
        let Value::Object(mut object) = value else {
            return Err(format!(
                "the request body must be a JSON object with a `query`, not {}",
                kind(&value)
            ));
        };
        Self::new(
            object.remove("query"),
            object.remove("operationName"),
            object.remove("variables"),
            object.remove("extensions"),
        )
    }

    fn from_url(url: UrlParams) -> Result<Self, String> {
        let json = |name: &str, text: Option<String>| -> Result<Option<Value>, String> {
            text.map(|text| {
                serde_json::from_str(&text).map_err(|err| format!("`{name}` is not JSON ({err})"))
            })
            .transpose()
        };
        Self::new(
            url.query.map(Value::String),
            url.operation_name.map(Value::String),
            json("variables", url.variables)?,
            json("extensions", url.extensions)?,
        )
    }
}

/// `a number`, `an array`...: how an error names a JSON value's kind.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The parameters of `GET /graphql?query=...`.
#[derive(serde::Deserialize)]
struct UrlParams {
    query: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

/// `GET /graphql`: a query in the URL, or GraphiQL for a browser.
async fn graphql_get(
    State(http): State<Http>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    url: Result<Query<UrlParams>, QueryRejection>,
) -> Response {
    let format = negotiate(&headers);
    let url = match url {
        Ok(Query(url)) => url,
        Err(rejection) => {
            return Refusal::new(StatusCode::BAD_REQUEST, rejection.body_text())
                .into_response(format.unwrap_or(Format::Json))
        }
    };
    if url.query.is_none() && wants_html(&headers) {
        return graphiql().into_response();
    }
    let Some(format) = format else {
        return not_acceptable();
    };
    match Params::from_url(url) {
        Ok(params) => execute(&http, peer, &headers, params, format, false).await,
        Err(message) => Refusal::new(StatusCode::BAD_REQUEST, message).into_response(format),
    }
}

/// `POST /graphql`: a JSON body.
async fn graphql_post(
    State(http): State<Http>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(format) = negotiate(&headers) else {
        return not_acceptable();
    };
    if !is_json(&headers) {
        return Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the request as `Content-Type: application/json` (UTF-8)",
        )
        .into_response(format);
    }
    let body = match read_body(&headers, body, http.state.settings.timeouts.body).await {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(format),
    };
    match Params::from_body(&body) {
        Ok(params) => execute(&http, peer, &headers, params, format, true).await,
        Err(message) => Refusal::new(StatusCode::BAD_REQUEST, message).into_response(format),
    }
}

/// `Content-Type: application/json`, UTF-8 if a charset is named.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or_default().trim();
    media.eq_ignore_ascii_case("application/json")
        && parts.all(|part| match part.split_once('=') {
            Some((name, charset)) if name.trim().eq_ignore_ascii_case("charset") => charset
                .trim()
                .trim_matches('"')
                .eq_ignore_ascii_case("utf-8"),
            _ => true,
        })
}

/// The whole body, within [`MAX_BODY_BYTES`] and `timeout`. A body over the
/// limit is 413 whether it announced its length or not (chunked); the rest
/// of it is read and dropped for a while, so the client sees the answer.
async fn read_body(headers: &HeaderMap, body: Body, timeout: Duration) -> Result<Vec<u8>, Refusal> {
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        )
        .closing()
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let deadline = Instant::now() + timeout;
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0));
    loop {
        let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                return Err(Refusal::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {} s",
                        timeout.as_secs_f32()
                    ),
                )
                .closing())
            }
            Ok(None) => return Ok(bytes),
            Ok(Some(Err(err))) => {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    format!("the request body could not be read ({err})"),
                )
                .closing())
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            let mut drained = 0;
            while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, stream.next()).await {
                drained += chunk.len();
                if drained > MAX_BODY_BYTES {
                    break;
                }
            }
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
}

/// Runs one request. Mutations come by POST only (`GET` is for reading and
/// may be repeated by anything on the way); subscriptions by WebSocket.
async fn execute(
    http: &Http,
    peer: Option<Extension<Peer>>,
    headers: &HeaderMap,
    params: Params,
    format: Format,
    post: bool,
) -> Response {
    let mut request = async_graphql::Request::new(params.query);
    if let Some(name) = params.operation_name {
        request = request.operation_name(name);
    }
    if let Some(variables) = params.variables {
        request = request.variables(Variables::from_json(variables));
    }
    let name = request.operation_name.clone();
    let operation = request
        .parsed_query()
        .ok()
        .and_then(|document| graphql::operation_of(document, name.as_deref()))
        .map(|operation| operation.node.ty);
    match operation {
        Some(OperationType::Mutation) if !post => {
            let mut refusal = Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "mutations are sent with POST",
            );
            refusal.allow = Some("POST");
            return refusal.into_response(format);
        }
        Some(OperationType::Subscription) => {
            return Refusal::new(
                StatusCode::BAD_REQUEST,
                "subscriptions are served over WebSocket at /graphql/ws (graphql-transport-ws)",
            )
            .into_response(format)
        }
        _ => {}
    }
    let execution = Arc::new(Execution::default());
    let request = request
        .data(authenticate(http, headers))
        .data(Origin::of(peer.map(|Extension(Peer(peer))| peer), headers))
        .data(execution.clone());
    let response = http.schema.execute(request).await;
    // A request that never ran has no `data` (GraphQL's "request error").
    let (status, body) = if execution.ran() {
        if execution.is_heavy() {
            let body = streamed(response, execution, http.state.settings.timeouts.answer);
            return (
                StatusCode::OK,
                [(CONTENT_TYPE, format.content_type())],
                body,
            )
                .into_response();
        }
        (StatusCode::OK, serde_json::to_vec(&response))
    } else {
        let status = match format {
            Format::Json => StatusCode::OK,
            Format::GraphqlResponse => StatusCode::BAD_REQUEST,
        };
        (
            status,
            serde_json::to_vec(&json!({"errors": response.errors})),
        )
    };
    match body {
        Ok(body) => (status, [(CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(err) => {
            tracing::error!(%err, "cannot serialize an answer");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A heavy answer, serialized as the client reads it: it is never held
/// whole a second time, and its turn (held by `execution`) ends only once
/// the client has taken it, or after `timeout`. An answer cut short ends
/// the body with an error, not as if it were whole.
fn streamed(
    response: async_graphql::Response,
    execution: Arc<Execution>,
    timeout: Duration,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(2);
    let whole = Arc::new(AtomicBool::new(false));
    let chunks = Chunks {
        tx,
        runtime: tokio::runtime::Handle::current(),
        deadline: Instant::now() + timeout,
    };
    tokio::task::spawn_blocking({
        let whole = whole.clone();
        move || {
            let mut writer = std::io::BufWriter::with_capacity(64 * 1024, chunks);
            let written = serde_json::to_writer(&mut writer, &response)
                .map_err(std::io::Error::from)
                .and_then(|()| std::io::Write::flush(&mut writer));
            match written {
                Ok(()) => whole.store(true, Ordering::Release),
                Err(err) => tracing::info!(%err, "a heavy answer was not taken in full"),
            }
            drop((writer, execution));
        }
    });
    let end = futures_util::stream::once(async move {
        let cut = std::io::Error::other("the answer was cut short");
        (!whole.load(Ordering::Acquire)).then_some(Err(cut))
    })
    .filter_map(std::future::ready);
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx).chain(end))
}

/// Where [`streamed`] writes: chunks handed to the response body, waiting
/// (until `deadline`) while the client has not taken the previous ones.
struct Chunks {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    runtime: tokio::runtime::Handle,
    deadline: Instant,
}

impl std::io::Write for Chunks {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let chunk = Bytes::copy_from_slice(buf);
        let sent = tokio::time::timeout_at(self.deadline, self.tx.send(Ok(chunk)));
        match self.runtime.block_on(sent) {
            Ok(Ok(())) => Ok(buf.len()),
            Ok(Err(_)) => Err(std::io::ErrorKind::BrokenPipe.into()),
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn authenticate(http: &Http, headers: &HeaderMap) -> Auth {
    let header = headers
        .get(AUTHORIZATION)
        .map(|value| value.to_str().unwrap_or("<not text>"));
    http.state.keys.authenticate(header)
}

/// GraphiQL, from assets embedded in the binary.
fn graphiql() -> Response {
    crate::web::graphiql_page()
}

// --- Probes ------------------------------------------------------------------

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(http): State<Http>) -> Response {
    match crate::db::ping(&http.state.db).await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(err) => {
            tracing::warn!(?err, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "database does not answer"})),
            )
                .into_response()
        }
    }
}

// --- WebSocket ---------------------------------------------------------------

async fn graphql_ws(
    State(http): State<Http>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let origin = Origin::of(peer.map(|Extension(Peer(peer))| peer), &headers);
    let legacy = match first_protocol(&headers) {
        Some(protocol) => protocol == "graphql-ws",
        None => {
            return (
                StatusCode::BAD_REQUEST,
                "ask for the graphql-transport-ws (or graphql-ws) subprotocol\n",
            )
                .into_response()
        }
    };
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        // Small reads: the socket mostly writes, and every read clears its buffer.
        .read_buffer_size(16 * 1024)
        .max_message_size(MAX_WS_MESSAGE_BYTES)
        .max_frame_size(MAX_WS_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            let runtime = http.subscriptions.clone();
            let _ = runtime.spawn(serve_ws(http, socket, legacy, origin)).await;
        })
}

fn first_protocol(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(SEC_WEBSOCKET_PROTOCOL)?
        .to_str()
        .ok()?
        .split(',')
        .map(str::trim)
        .find(|p| async_graphql::http::ALL_WEBSOCKET_PROTOCOLS.contains(p))
}

/// Authenticates the socket from its `connection_init` payload before handing
/// it to async-graphql: `{"authorization": "Bearer <jwt>"}` or `{"token": "<jwt>"}`.
/// A socket that does not authenticate is closed with graphql-transport-ws's
/// codes: 4408 (no init in time), 4400 (init over [`MAX_WS_INIT_BYTES`]),
/// 4401 (something else came first), 4403 (refused).
///
/// Once open, the socket is pinged every `ws_ping` (graphql-transport-ws
/// `ping`; `ka` and a WebSocket ping on the legacy protocol), dropped when the
/// client has sent nothing for `ws_silence` (3008), and closed with 4403 when
/// its token expires.
async fn serve_ws(http: Http, socket: WebSocket, legacy: bool, origin: Origin) {
    let timeouts = http.state.settings.timeouts.clone();
    let (mut sink, mut stream) = socket.split();
    let first = match tokio::time::timeout(timeouts.ws_init, first_text(&mut stream)).await {
        Err(_) => {
            close(&mut sink, legacy, 4408, "Connection initialisation timeout").await;
            return;
        }
        Ok(None) => return,
        Ok(Some(text)) => text,
    };
    if first.len() > MAX_WS_INIT_BYTES {
        let reason = format!(
            "Bad request: connection_init is {} bytes, at most {MAX_WS_INIT_BYTES}",
            first.len()
        );
        close(&mut sink, legacy, 4400, &reason).await;
        return;
    }
    let claims = match authenticate_init(&http, first.as_str()) {
        Ok(claims) => claims,
        Err((code, reason)) => {
            close(&mut sink, legacy, code, &reason).await;
            return;
        }
    };
    let expires_in = (claims.expires_at() - http.state.clock.now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    let auth = Auth::Valid(claims);

    let heard = Arc::new(Mutex::new(Instant::now()));
    // Give async-graphql the init message back, so it acknowledges it as usual.
    let replay = futures_util::stream::once(async move { Ok(Message::Text(first)) });
    let input = replay
        .chain(stream)
        .inspect({
            let heard = heard.clone();
            move |_| {
                if let Ok(mut heard) = heard.lock() {
                    *heard = Instant::now();
                }
            }
        })
        .take_while(|message| std::future::ready(message.is_ok()))
        .filter_map(|message| {
            std::future::ready(match message {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => Some(message.into_data()),
                _ => None,
            })
        });
    let protocol = if legacy {
        WebSocketProtocols::SubscriptionsTransportWS
    } else {
        WebSocketProtocols::GraphQLWS
    };
    let messages = async_graphql::http::WebSocket::new(http.schema, input, protocol)
        .on_connection_init(move |_| async move {
            let mut data = Data::default();
            data.insert(auth);
            data.insert(origin);
            Ok(data)
        })
        .map(|message| match message {
            WsMessage::Text(text) => Message::Text(text.into()),
            WsMessage::Close(code, reason) => Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })),
        });
    let mut messages = std::pin::pin!(messages);
    let mut ping = tokio::time::interval_at(Instant::now() + timeouts.ws_ping, timeouts.ws_ping);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let silence = tokio::time::sleep(timeouts.ws_silence);
    let expiry = tokio::time::sleep(expires_in);
    tokio::pin!(silence, expiry);
    // A write that blocks this long means the client stopped reading.
    let write_timeout = timeouts.ws_silence;
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return };
                let written = tokio::time::timeout(
                    write_timeout,
                    write_ready(&mut sink, message, &mut messages),
                );
                if !matches!(written.await, Ok(Ok(()))) {
                    return;
                }
            }
            _ = ping.tick() => {
                let pings = if legacy {
                    vec![Message::Text(r#"{"type":"ka"}"#.into()), Message::Ping(Default::default())]
                } else {
                    vec![Message::Text(r#"{"type":"ping"}"#.into())]
                };
                let sent = tokio::time::timeout(write_timeout, async {
                    for ping in pings {
                        sink.feed(ping).await?;
                    }
                    sink.flush().await
                });
                if !matches!(sent.await, Ok(Ok(()))) {
                    return;
                }
            }
            () = &mut silence => {
                let heard = heard.lock().map(|heard| *heard).unwrap_or_else(|_| Instant::now());
                if heard + timeouts.ws_silence > Instant::now() {
                    silence.as_mut().reset(heard + timeouts.ws_silence);
                } else {
                    let reason = format!("Timeout: nothing heard for {} s", timeouts.ws_silence.as_secs_f32());
                    close(&mut sink, legacy, 3008, &reason).await;
                    return;
                }
            }
            () = &mut expiry => {
                close(&mut sink, legacy, 4403, &format!("Forbidden: {EXPIRED}")).await;
                return;
            }
        }
    }
}

/// The first text message, skipping WebSocket pings; `None` when the socket
/// ends or sends something else first.
async fn first_text<S>(stream: &mut S) -> Option<axum::extract::ws::Utf8Bytes>
where
    S: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    loop {
        match stream.next().await? {
            Ok(Message::Text(text)) => return Some(text),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            _ => return None,
        }
    }
}

/// The claims of a `connection_init`, or the close code and reason.
fn authenticate_init(http: &Http, init: &str) -> Result<crate::auth::Claims, (u16, String)> {
    let init: Value = serde_json::from_str(init).unwrap_or_default();
    if init.get("type").and_then(|t| t.as_str()) != Some("connection_init") {
        return Err((4401, "Unauthorized: send connection_init first".into()));
    }
    let payload = init.get("payload");
    let header = payload
        .and_then(|p| p.get("authorization").or_else(|| p.get("Authorization")))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .or_else(|| {
            payload
                .and_then(|p| p.get("token"))
                .and_then(|v| v.as_str())
                .map(|token| format!("Bearer {token}"))
        });
    match http.state.keys.authenticate(header.as_deref()) {
        Auth::Valid(claims) if claims.is_expired(http.state.clock.now()) => {
            Err((4403, format!("Forbidden: {EXPIRED}")))
        }
        Auth::Valid(claims) => Ok(claims),
        Auth::Anonymous => Err((4403, "Forbidden: connection_init carries no token".into())),
        Auth::Invalid(reason) => Err((4403, format!("Forbidden: {reason}"))),
    }
}

/// Writes `first` and whatever else is ready, and flushes once: a follower
/// of a busy log gets many lines at a time, and one write per line would
/// dominate.
async fn write_ready<S, M>(
    sink: &mut S,
    first: Message,
    messages: &mut M,
) -> Result<(), axum::Error>
where
    S: Sink<Message, Error = axum::Error> + Unpin,
    M: Stream<Item = Message> + Unpin,
{
    sink.feed(first).await?;
    while let Some(Some(message)) = messages.next().now_or_never() {
        sink.feed(message).await?;
    }
    sink.flush().await
}

async fn close<S>(sink: &mut S, legacy: bool, code: u16, reason: &str)
where
    S: Sink<Message> + Unpin,
{
    let closing = async {
        if legacy {
            let error = json!({"type": "connection_error", "payload": {"message": reason}});
            let _ = sink.send(Message::Text(error.to_string().into())).await;
        }
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = sink.send(Message::Close(Some(frame))).await;
    };
    // A client that stopped reading does not get to hold the socket.
    let _ = tokio::time::timeout(Duration::from_secs(1), closing).await;
}
