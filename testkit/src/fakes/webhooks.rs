//! A webhook receiver over real HTTP on 127.0.0.1 that checks what the
//! Standard Webhooks specification asks a receiver to check: the
//! `webhook-id`, a `webhook-timestamp` within five minutes of now, and a
//! `webhook-signature` (`v1,<base64>`, several separated by spaces) that is
//! the HMAC-SHA256 of `id.timestamp.body` under the base64 key after
//! `whsec_`. What it answers can be scripted, a request at a time.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::Notify;

use crate::running::Running;
use crate::wait;

/// How far a timestamp may be from now (the specification's tolerance).
const TOLERANCE_SECS: i64 = 5 * 60;

/// What the receiver answers to one request.
#[derive(Clone, Debug)]
pub enum Answer {
    /// This status, with a short body.
    Status(u16),
    /// Nothing until [`FakeWebhooks::release`] (or 60 s), then this status:
    /// a receiver that hangs while the sender goes away, or while more is
    /// owed behind the held message.
    Hold(u16),
}

/// A request the receiver took.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub id: String,
    pub timestamp: i64,
    /// The raw body, as signed.
    pub raw: String,
    pub body: Value,
    /// Whether the signature was one the secret makes.
    pub verified: bool,
    /// Why the request was refused before its signature was checked.
    pub refused: Option<String>,
}

#[derive(Default)]
struct Shared {
    secret: Mutex<Option<String>>,
    answers: Mutex<VecDeque<Answer>>,
    received: Mutex<Vec<Received>>,
    released: Notify,
}

/// The receiver; stops when dropped.
pub struct FakeWebhooks {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _server: Running,
}

impl FakeWebhooks {
    pub async fn start() -> FakeWebhooks {
        let shared = Arc::new(Shared::default());
        let router = Router::new()
            .route("/{*path}", post(receive))
            .with_state(shared.clone());
        let (addr, server) = super::serve("the webhook receiver", router).await;
        FakeWebhooks {
            addr,
            shared,
            _server: server,
        }
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The signing secret (`whsec_…`) signatures are checked against.
    pub fn set_secret(&self, secret: &str) {
        *self.shared.secret.lock().unwrap() = Some(secret.to_owned());
    }

    /// Answers the next requests so, in order; then `204`.
    pub fn answer(&self, answers: impl IntoIterator<Item = Answer>) {
        self.shared.answers.lock().unwrap().extend(answers);
    }

    /// Lets every held request be answered.
    pub fn release(&self) {
        self.shared.released.notify_waiters();
    }

    /// Every request, in the order it arrived.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits until `n` requests have arrived; returns them all.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        wait::until(&format!("{n} webhook request(s)"), within, || async {
            let received = self.received();
            if received.len() >= n {
                Ok(received)
            } else {
                Err(format!("{} so far", received.len()))
            }
        })
        .await
    }
}

/// A `whsec_` secret's signature of `id.timestamp.body`, as the
/// specification defines it.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_")?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let id = header("webhook-id").unwrap_or_default();
    let timestamp = header("webhook-timestamp").and_then(|t| t.parse::<i64>().ok());
    let mut refused = None;
    if header("content-type").as_deref() != Some("application/json") {
        refused = Some("the content type is not application/json".to_owned());
    } else if id.is_empty() {
        refused = Some("no webhook-id".to_owned());
    } else if timestamp.is_none_or(|t| (t - chrono::Utc::now().timestamp()).abs() > TOLERANCE_SECS)
    {
        refused = Some("the webhook-timestamp is missing or not within 5 minutes".to_owned());
    }
    let timestamp = timestamp.unwrap_or_default();
    let secret = shared.secret.lock().unwrap().clone();
    let expected = secret.and_then(|s| signature(&s, &id, timestamp, &body));
    let verified = match (&expected, header("webhook-signature")) {
        (Some(expected), Some(given)) => given.split(' ').any(|one| one == expected),
        _ => false,
    };
    let raw = String::from_utf8_lossy(&body).into_owned();
    shared.received.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        id,
        timestamp,
        body: serde_json::from_str(&raw).unwrap_or(Value::Null),
        raw,
        verified,
        refused: refused.clone(),
    });
    if let Some(why) = refused {
        return (StatusCode::BAD_REQUEST, why).into_response();
    }
    if !verified {
        return (StatusCode::UNAUTHORIZED, "the signature does not verify").into_response();
    }
    let answer = shared.answers.lock().unwrap().pop_front();
    let code = match answer {
        None => return StatusCode::NO_CONTENT.into_response(),
        Some(Answer::Status(code)) => code,
        Some(Answer::Hold(code)) => {
            let released = shared.released.notified();
            let _ = tokio::time::timeout(Duration::from_secs(60), released).await;
            code
        }
    };
    let status = StatusCode::from_u16(code).expect("a status code");
    (status, format!("the receiver answers {code}")).into_response()
}
