//! Waiting for a condition: poll it until a deadline, then fail saying what
//! was awaited and what was last seen.

use std::future::Future;
use std::time::Duration;

/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(50);

/// How long [`wait_for`] waits.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `check` every [`POLL`] until it returns `Ok`, or panics after
/// `within` with `what` and the last `Err` it returned.
pub async fn until<T, E, F, Fut>(what: &str, within: Duration, check: F) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    until_every(POLL, what, within, check).await
}

/// [`until`], polling every `poll`.
pub async fn until_every<T, E, F, Fut>(
    poll: Duration,
    what: &str,
    within: Duration,
    mut check: F,
) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(err) => err,
        };
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(poll).await;
    }
}

/// Polls `check` until it returns `Some`, or panics after [`DEADLINE`]
/// saying what was awaited.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    until(what, DEADLINE, || {
        let checked = check();
        async move { checked.await.ok_or("not yet") }
    })
    .await
}
