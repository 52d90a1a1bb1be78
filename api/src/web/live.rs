//! Live pages: server-sent events carrying HTML fragments (`swap` events,
//! whose elements replace the ones with the same id), fed by the same event
//! stream as the GraphQL subscriptions. A stream first sends the state as it
//! is, so a browser that reconnects after a dropped connection is current
//! again at once; it ends when the API stops.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use maud::Markup;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::ApiResult;
use crate::events::Event;
use crate::state::AppState;

use super::SignedIn;

/// The application and environment an event is about, if it is about one.
pub(super) fn environment_of(event: &Event) -> Option<(i64, i64)> {
    match event {
        Event::Deployment(changed) | Event::Queued(changed) => {
            Some((changed.application_id, changed.environment_id))
        }
        Event::Environment {
            application_id,
            environment_id,
        } => Some((*application_id, *environment_id)),
        Event::Logs(_) | Event::Plan(_) => None,
    }
}

/// A `swap` event.
pub(super) fn swap(html: Markup) -> SseEvent {
    SseEvent::default().event("swap").data(html.into_string())
}

/// Server-sent events of `events`, kept alive with comments.
pub(super) fn sse(events: impl Stream<Item = SseEvent> + Send + 'static) -> Response {
    use futures_util::StreamExt as _;
    Sse::new(events.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// Resolves when `who`'s session has ended (signed out or expired; looked
/// at every `timeouts.session_check`), or the API is stopping: what every
/// live stream ends with.
pub(super) async fn ended(state: &AppState, who: &SignedIn) {
    let mut check = tokio::time::interval(state.settings.timeouts.session_check);
    check.tick().await;
    let session = async {
        loop {
            check.tick().await;
            if !matches!(
                crate::sessions::lasts(state, &who.session.id).await,
                Ok(true)
            ) {
                return;
            }
        }
    };
    tokio::select! {
        () = session => {}
        () = state.events.closed() => {}
    }
}

/// Swaps for the changes of environments: `render(None)` renders the page's
/// live part as it is now (sent first, and again when this stream fell
/// behind the events); `render(Some((application, environment)))` what a
/// change of that environment changes, or nothing when the page does not
/// show it. Changes that come within [`COALESCE`] of each other are rendered
/// once. Ends when `who`'s session does.
pub(super) fn swaps<R, Fut>(state: AppState, who: SignedIn, mut render: R) -> Response
where
    R: FnMut(Option<(i64, i64)>) -> Fut + Send + 'static,
    Fut: Future<Output = ApiResult<Option<Markup>>> + Send,
{
    let mut events = state.events.subscribe();
    let (tx, rx) = mpsc::channel::<SseEvent>(16);
    tokio::spawn(async move {
        let ended = ended(&state, &who);
        tokio::pin!(ended);
        let mut change = Some(None);
        loop {
            if let Some(change) = change.take() {
                match render(change).await {
                    Ok(Some(html)) => {
                        if tx.send(swap(html)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(_) => return,
                }
            }
            let received = tokio::select! {
                received = events.recv() => received,
                () = &mut ended => return,
                () = tx.closed() => return,
            };
            change = match received {
                Ok(event) => environment_of(&event).map(Some),
                Err(RecvError::Lagged(_)) => Some(None),
                Err(RecvError::Closed) => return,
            };
            if change.is_some() {
                // A deployment's change comes in a burst (its state, then the
                // next one becoming claimable): render once for all of it.
                let until = tokio::time::Instant::now() + COALESCE;
                while let Ok(Ok(event)) = tokio::time::timeout_at(until, events.recv()).await {
                    if let Some(more) = environment_of(&event) {
                        if change != Some(Some(more)) {
                            change = Some(None);
                        }
                    }
                }
            }
        }
    });
    sse(ReceiverStream::new(rx))
}

/// How long a live page waits for more changes before it renders.
const COALESCE: Duration = Duration::from_millis(200);
