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
use futures_util::{stream, Stream};
use maud::Markup;
use tokio::sync::broadcast::error::RecvError;

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
        Event::Logs(_) => None,
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

/// How long a live stream of `who` may last: until its session expires.
pub(super) fn lifetime(state: &AppState, who: &SignedIn) -> Duration {
    (who.0.expires_at - state.clock.now())
        .to_std()
        .unwrap_or_default()
}

/// Swaps for the changes of environments: `render(None)` renders the page's
/// live part as it is now (sent first, and again when this stream fell
/// behind the events); `render(Some((application, environment)))` what a
/// change of that environment changes, or nothing when the page does not
/// show it. Ends when `who`'s session does.
pub(super) fn swaps<R, Fut>(state: AppState, who: &SignedIn, render: R) -> Response
where
    R: FnMut(Option<(i64, i64)>) -> Fut + Send + 'static,
    Fut: Future<Output = ApiResult<Option<Markup>>> + Send,
{
    let events = state.events.subscribe();
    let closing = state.events.clone();
    let ends = tokio::time::Instant::now() + lifetime(&state, who);
    let stream = stream::unfold(
        (events, render, true),
        move |(mut events, mut render, first)| {
            let closing = closing.clone();
            async move {
                let mut changed = if first { Some(None) } else { None };
                loop {
                    if let Some(change) = changed.take() {
                        match render(change).await {
                            Ok(Some(html)) => return Some((swap(html), (events, render, false))),
                            Ok(None) => {}
                            Err(_) => return None,
                        }
                    }
                    let received = tokio::select! {
                        received = events.recv() => received,
                        () = closing.closed() => return None,
                        () = tokio::time::sleep_until(ends) => return None,
                    };
                    changed = match received {
                        Ok(event) => environment_of(&event).map(Some),
                        Err(RecvError::Lagged(_)) => Some(None),
                        Err(RecvError::Closed) => return None,
                    };
                }
            }
        },
    );
    sse(stream)
}
