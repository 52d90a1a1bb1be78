//! The HTTP surface: `POST` at the route of every hook source in
//! [`SOURCES`] (`/hooks/github`, `/hooks/gitlab`, `/hooks/generic`) and
//! `GET /healthz`. Bodies are read whole (up to [`MAX_BODY_BYTES`]) before a
//! source sees them, because a signature is over the raw bytes.

use std::time::Duration;

use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::StreamExt;

use crate::error::{HookError, MAX_BODY_BYTES};
use crate::hooks::{Answer, Hooks, SOURCES};

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
            let too_large = matches!(err, HookError::TooLarge);
            let mut response = err.into_response();
            if too_large {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, "close".parse().expect("header"));
            }
            response
        }
    }
}

/// The raw body, or 413 when it is larger than [`MAX_BODY_BYTES`].
pub(crate) async fn read_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, HookError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
        drain(stream, 0).await;
        return Err(HookError::TooLarge);
    }
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = stream.next().await {
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
