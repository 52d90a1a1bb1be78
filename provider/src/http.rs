//! The HTTP surface: `POST` at the route of every hook source in
//! [`SOURCES`] (`/hooks/github`, `/hooks/gitlab`, `/hooks/generic`) and
//! `GET /healthz`. Bodies are read whole (up to [`MAX_BODY_BYTES`]) before a
//! source sees them, because a signature is over the raw bytes. A sender
//! gets [`Timeouts`] to send a request's head and its body; a keep-alive
//! connection may sit idle as long as a head may take.

use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::error::{HookError, MAX_BODY_BYTES};
use crate::hooks::{Answer, Hooks, SOURCES};

/// How long a sender may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// To send a request's head (request line and headers). hyper's clock
    /// also runs while a keep-alive connection waits for its next request.
    pub header: Duration,
    /// To send a request's body, once its head has arrived. GitHub's
    /// payloads reach 25 MB and GitHub itself gives up after 10 s.
    pub body: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            header: Duration::from_secs(30),
            body: Duration::from_secs(60),
        }
    }
}

/// After an oversized body, how much more is read (and dropped) so the sender
/// gets the 413 instead of a reset connection, and for how long at most.
const DRAIN_BYTES: usize = 4 * MAX_BODY_BYTES;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// The provider's routes, ready to serve: one per hook source, and `/healthz`.
pub fn router(hooks: Hooks) -> Router {
    let mut router = Router::new();
    for source in SOURCES {
        router = router.route(source.route, source.method_router());
    }
    router
        .route("/healthz", get(|| async { "ok" }))
        // The limit is enforced (with a clear 413) by `read_body`.
        .layer(DefaultBodyLimit::disable())
        .with_state(hooks)
        // A span per hook, so what its handling logs says which request it was.
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |request: &axum::http::Request<Body>| {
                    tracing::info_span!("http", method = %request.method(), path = %request.uri().path())
                },
            ),
        )
}

/// Serves `router` on the connections of `listener` until `shutdown`, then
/// lets the hooks being answered finish.
pub(crate) async fn serve(
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
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // An error of the one connection being accepted.
                Err(err) if matches!(
                    err.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                ) => continue,
                Err(err) => {
                    tracing::error!(%err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection = http1.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
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

/// The response to a hook of `source`, and its log line.
pub(crate) fn answer(source: &'static str, result: Result<Answer, HookError>) -> Response {
    match result {
        Ok(answer) => {
            let status = match answer {
                Answer::Ignored { ref ignored } => {
                    tracing::debug!(source, reason = %ignored, "hook ignored");
                    StatusCode::ACCEPTED
                }
                _ => StatusCode::OK,
            };
            (status, Json(answer)).into_response()
        }
        Err(err) => {
            // The sentence is the sender's own input judged; it holds no secret.
            tracing::info!(source, status = err.status().as_u16(), error = %err, "hook refused");
            // The rest of the body was not read: the connection cannot carry
            // another request.
            let unread = matches!(err, HookError::TooLarge | HookError::TooSlow(_));
            let mut response = err.into_response();
            if unread {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, "close".parse().expect("header"));
            }
            response
        }
    }
}

/// The raw body, 413 when it is larger than [`MAX_BODY_BYTES`], or 408 when
/// it has not arrived within `timeout`.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    timeout: Duration,
) -> Result<Vec<u8>, HookError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
        drain(stream, 0).await;
        return Err(HookError::TooLarge);
    }
    let deadline = Instant::now() + timeout;
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0));
    loop {
        let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => return Err(HookError::TooSlow(timeout)),
            Ok(None) => break,
            Ok(Some(chunk)) => chunk,
        };
        let chunk = chunk
            .map_err(|err| HookError::BadRequest(format!("the body could not be read: {err}")))?;
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            drain(stream, bytes.len() + chunk.len()).await;
            return Err(HookError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Reads and drops what is left of a body, within limits.
async fn drain(mut stream: axum::body::BodyDataStream, mut read: usize) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len();
            if read > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}
