//! The HTTP surface: `/graphql` (POST queries, GET GraphiQL), `/graphql/ws`
//! (subscriptions), `/healthz` and `/readyz`.

use std::time::Duration;

use async_graphql::http::GraphiQLSource;
use async_graphql::http::{WebSocketProtocols, WsMessage};
use async_graphql::{Data, ServerError};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::json;
use tower_http::limit::RequestBodyLimitLayer;

use crate::auth::Auth;
use crate::graphql::{self, SlipwaySchema};
use crate::state::AppState;

/// Largest request body accepted (a batch of log lines fits comfortably).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// How long a WebSocket may stay open without `connection_init`.
const WS_INIT_TIMEOUT: Duration = Duration::from_secs(10);

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
    let http = Http {
        schema: graphql::schema(state.clone()),
        state,
        subscriptions,
    };
    Router::new()
        .route("/graphql", get(graphiql).post(graphql_post))
        .route("/graphql/ws", get(graphql_ws))
        .route("/deployments/{id}", get(deployment_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .with_state(http)
}

async fn graphiql() -> Html<String> {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .title("Slipway GraphQL")
            .finish(),
    )
}

async fn graphql_post(
    State(http): State<Http>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> GraphQLResponse {
    let header = headers
        .get(AUTHORIZATION)
        .map(|value| value.to_str().unwrap_or("<not text>"));
    let auth = http.state.keys.authenticate(header);
    let mut response = http.schema.execute(request.into_inner().data(auth)).await;
    for error in &mut response.errors {
        tag_request_error(error);
    }
    response.into()
}

/// Errors that carry no code come from parsing or validating the request
/// (unknown field, wrong argument type, too deep): the client's input is wrong.
fn tag_request_error(error: &mut ServerError) {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", "BAD_USER_INPUT");
    }
}

/// A deployment's page (`Deployment.url`, GitHub's `log_url`): status and a
/// live log. It reads through the GraphQL API with a token the reader gives
/// it, so it shows nothing the token may not see.
async fn deployment_page() -> Html<&'static str> {
    Html(include_str!("pages/deployment.html"))
}

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

async fn graphql_ws(
    State(http): State<Http>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
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
        .on_upgrade(move |socket| async move {
            let runtime = http.subscriptions.clone();
            let _ = runtime.spawn(serve_ws(http, socket, legacy)).await;
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
/// codes: 4408 (no init in time), 4401 (something else came first), 4403 (refused).
async fn serve_ws(http: Http, socket: WebSocket, legacy: bool) {
    let (mut sink, mut stream) = socket.split();
    let first = match tokio::time::timeout(WS_INIT_TIMEOUT, stream.next()).await {
        Err(_) => {
            close(&mut sink, legacy, 4408, "Connection initialisation timeout").await;
            return;
        }
        Ok(Some(Ok(Message::Text(text)))) => text,
        Ok(_) => return,
    };
    let init: serde_json::Value = serde_json::from_str(first.as_str()).unwrap_or_default();
    if init.get("type").and_then(|t| t.as_str()) != Some("connection_init") {
        close(
            &mut sink,
            legacy,
            4401,
            "Unauthorized: send connection_init first",
        )
        .await;
        return;
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
    let auth = http.state.keys.authenticate(header.as_deref());
    let claims = match &auth {
        Auth::Valid(_) => auth,
        Auth::Anonymous => {
            close(
                &mut sink,
                legacy,
                4403,
                "Forbidden: connection_init carries no token",
            )
            .await;
            return;
        }
        Auth::Invalid(reason) => {
            let reason = format!("Forbidden: {reason}");
            close(&mut sink, legacy, 4403, &reason).await;
            return;
        }
    };
    // Give async-graphql the init message back, so it acknowledges it as usual.
    let replay = futures_util::stream::once(async move { Ok(Message::Text(first)) });
    let input = replay
        .chain(stream)
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
            data.insert(claims);
            Ok(data)
        })
        .map(|message| match message {
            WsMessage::Text(text) => Message::Text(text.into()),
            WsMessage::Close(code, reason) => Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })),
        });
    futures_util::pin_mut!(messages);
    // Write what is ready in one go and flush once: a follower of a busy log
    // gets many lines at a time, and one write per line would dominate.
    while let Some(message) = messages.next().await {
        if sink.feed(message).await.is_err() {
            return;
        }
        while let Some(Some(message)) = messages.next().now_or_never() {
            if sink.feed(message).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

async fn close<S>(sink: &mut S, legacy: bool, code: u16, reason: &str)
where
    S: futures_util::Sink<Message> + Unpin,
{
    if legacy {
        let error = json!({"type": "connection_error", "payload": {"message": reason}});
        let _ = sink.send(Message::Text(error.to_string().into())).await;
    }
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
}
