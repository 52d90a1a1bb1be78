//! A fake of Slack over real HTTP on 127.0.0.1: an incoming webhook as
//! strict as Slack's — JSON only, at the webhook's own path (`404
//! no_service` elsewhere), a `text` always (`400 no_text`), blocks of the
//! kinds and sizes Slack takes (`400 invalid_blocks`), and at most one
//! message a second (`429 rate_limited` with `Retry-After`), answering
//! `200 ok` or what a test scripts — and the `response_url`s of slash
//! commands (`/commands/…`, five messages each, as Slack allows). A test
//! plays Slack sending a command with [`signed_command`].

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
use serde_json::Value;
use tokio::time::Instant;

use crate::running::Running;
use crate::wait;

/// The webhook's path: its last segment is the secret Slack puts in it.
pub const PATH: &str = "/services/T0SLIPWAY/B0SLIPWAY/s3cr3tW3bh00kT0k3n";

/// The least time Slack takes between two messages, less what the network
/// between two requests sent a second apart may take off.
const GAP: Duration = Duration::from_millis(900);

/// A message the fake accepted.
#[derive(Clone, Debug)]
pub struct Message {
    pub body: Value,
    pub at: Instant,
}

#[derive(Default)]
struct Shared {
    /// Messages to response URLs, by path.
    responses: Mutex<Vec<(String, Value)>>,
    /// Statuses to answer accepted messages with, in order; then 200.
    answers: Mutex<VecDeque<u16>>,
    accepted: Mutex<Vec<Message>>,
    /// Every request refused, with why.
    refused: Mutex<Vec<String>>,
    last: Mutex<Option<Instant>>,
}

/// The incoming webhook; stops when dropped.
pub struct FakeSlack {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _server: Running,
}

impl FakeSlack {
    pub async fn start() -> FakeSlack {
        let shared = Arc::new(Shared::default());
        let router = Router::new()
            .route("/commands/{*path}", post(respond))
            .route("/{*path}", post(incoming))
            .with_state(shared.clone());
        let (addr, server) = super::serve("the fake Slack", router).await;
        FakeSlack {
            addr,
            shared,
            _server: server,
        }
    }

    /// The incoming webhook's URL.
    pub fn webhook_url(&self) -> String {
        format!("http://{}{PATH}", self.addr)
    }

    /// A response URL of a command, as Slack makes them.
    pub fn response_url(&self, command: u32) -> String {
        format!("http://{}/commands/T0SLIPWAY/{command}/r3sp0ns3", self.addr)
    }

    /// The messages posted to response URLs: the path and the message.
    pub fn responses(&self) -> Vec<(String, Value)> {
        self.shared.responses.lock().unwrap().clone()
    }

    /// Waits until `n` messages were posted to response URLs.
    pub async fn wait_for_responses(&self, n: usize, within: Duration) -> Vec<(String, Value)> {
        wait::until(&format!("{n} Slack response(s)"), within, || async {
            let responses = self.responses();
            if responses.len() >= n {
                Ok(responses)
            } else {
                Err(format!("{} so far: {responses:?}", responses.len()))
            }
        })
        .await
    }

    /// Answers the next accepted messages with these statuses, in order.
    pub fn answer(&self, statuses: impl IntoIterator<Item = u16>) {
        self.shared.answers.lock().unwrap().extend(statuses);
    }

    /// The messages taken, in the order they arrived.
    pub fn messages(&self) -> Vec<Message> {
        self.shared.accepted.lock().unwrap().clone()
    }

    /// Why each refused request was refused.
    pub fn refused(&self) -> Vec<String> {
        self.shared.refused.lock().unwrap().clone()
    }

    /// Waits until `n` messages were taken; returns them all.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Message> {
        wait::until(&format!("{n} Slack message(s)"), within, || async {
            let messages = self.messages();
            if messages.len() >= n {
                Ok(messages)
            } else {
                Err(format!("{} so far", messages.len()))
            }
        })
        .await
    }
}

async fn incoming(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let refuse = |status: StatusCode, error: &str| {
        shared.refused.lock().unwrap().push(error.to_owned());
        (status, error.to_owned()).into_response()
    };
    if uri.path() != PATH {
        return refuse(StatusCode::NOT_FOUND, "no_service");
    }
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return refuse(StatusCode::BAD_REQUEST, "invalid_payload");
    }
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "invalid_payload");
    };
    if message["text"].as_str().is_none_or(|t| t.trim().is_empty()) {
        return refuse(StatusCode::BAD_REQUEST, "no_text");
    }
    if let Err(why) = check_blocks(&message["blocks"]) {
        return refuse(StatusCode::BAD_REQUEST, &format!("invalid_blocks: {why}"));
    }
    {
        let mut last = shared.last.lock().unwrap();
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < GAP) {
            drop(last);
            let mut limited = refuse(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
            limited
                .headers_mut()
                .insert("retry-after", "1".parse().unwrap());
            return limited;
        }
        *last = Some(now);
    }
    let status = shared.answers.lock().unwrap().pop_front().unwrap_or(200);
    if status == 200 {
        shared.accepted.lock().unwrap().push(Message {
            body: message,
            at: Instant::now(),
        });
        return (StatusCode::OK, "ok").into_response();
    }
    let status = StatusCode::from_u16(status).expect("a status code");
    (status, "scripted failure").into_response()
}

/// A message to a command's response URL: JSON with a `text`, valid
/// blocks, a `response_type` of `in_channel` or `ephemeral` if any, and at
/// most five to one URL.
async fn respond(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let message = serde_json::from_slice::<Value>(&body).ok().filter(|_| json);
    let Some(message) = message else {
        return (StatusCode::BAD_REQUEST, "invalid_payload").into_response();
    };
    if message["text"].as_str().is_none_or(|t| t.trim().is_empty()) {
        return (StatusCode::BAD_REQUEST, "no_text").into_response();
    }
    if let Err(why) = check_blocks(&message["blocks"]) {
        return (StatusCode::BAD_REQUEST, format!("invalid_blocks: {why}")).into_response();
    }
    if !matches!(
        message.get("response_type").and_then(Value::as_str),
        None | Some("in_channel" | "ephemeral")
    ) {
        return (StatusCode::BAD_REQUEST, "invalid_response_type").into_response();
    }
    let mut responses = shared.responses.lock().unwrap();
    let path = uri.path().to_owned();
    if responses.iter().filter(|(p, _)| *p == path).count() >= 5 {
        return (StatusCode::NOT_FOUND, "used_url").into_response();
    }
    responses.push((path, message));
    (StatusCode::OK, "ok").into_response()
}

/// What Slack sends for a slash command: the form body and the headers
/// that sign it with `secret` at `timestamp` (`v0=` and the hex HMAC-SHA256
/// of `v0:timestamp:body`).
pub fn signed_command(
    secret: &str,
    timestamp: i64,
    fields: &[(&str, &str)],
) -> (String, Vec<(&'static str, String)>) {
    use hmac::{Hmac, Mac};
    let body = form_body(fields);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("a key");
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    let signature = format!("v0={}", hex_of(&mac.finalize().into_bytes()));
    let headers = vec![
        (
            "content-type",
            "application/x-www-form-urlencoded".to_owned(),
        ),
        ("x-slack-request-timestamp", timestamp.to_string()),
        ("x-slack-signature", signature),
    ];
    (body, headers)
}

fn form_body(fields: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                    (b as char).to_string()
                }
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Blocks as Slack's Block Kit takes them in a message: at most 50, each a
/// section (mrkdwn or plain text of at most 3000 characters), a context
/// (1 to 10 text elements), a header or a divider.
fn check_blocks(blocks: &Value) -> Result<(), String> {
    let Some(blocks) = blocks.as_array() else {
        return if blocks.is_null() {
            Ok(())
        } else {
            Err("blocks is not a list".into())
        };
    };
    if blocks.len() > 50 {
        return Err("more than 50 blocks".into());
    }
    for block in blocks {
        match block["type"].as_str() {
            Some("section") => text_object(&block["text"], 3000)?,
            Some("context") => {
                let elements = block["elements"]
                    .as_array()
                    .filter(|e| (1..=10).contains(&e.len()))
                    .ok_or("a context needs 1 to 10 elements")?;
                for element in elements {
                    text_object(element, 3000)?;
                }
            }
            Some("header") => {
                text_object(&block["text"], 150)?;
                if block["text"]["type"] != "plain_text" {
                    return Err("a header's text must be plain_text".into());
                }
            }
            Some("divider") => {}
            other => return Err(format!("unknown block type {other:?}")),
        }
    }
    Ok(())
}

fn text_object(text: &Value, max: usize) -> Result<(), String> {
    if !matches!(text["type"].as_str(), Some("mrkdwn" | "plain_text")) {
        return Err(format!("not a text object: {text}"));
    }
    match text["text"].as_str() {
        Some(t) if !t.is_empty() && t.chars().count() <= max => Ok(()),
        _ => Err(format!("a text must have 1 to {max} characters")),
    }
}
