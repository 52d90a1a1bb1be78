//! A GraphQL WebSocket client (`graphql-transport-ws`) for subscriptions.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::TestApi;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A GraphQL WebSocket client.
pub struct Ws {
    socket: Socket,
    next_id: u32,
}

/// How a socket ended when the server refused it.
#[derive(Debug)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

impl Ws {
    /// Connects with `protocol` and sends `connection_init` with `payload`;
    /// returns the socket once acknowledged, or how the server closed it.
    pub async fn connect(api: &TestApi, protocol: &str, payload: Value) -> Result<Ws, Closed> {
        let mut ws = Ws::open(api, protocol).await;
        ws.send(json!({"type": "connection_init", "payload": payload}))
            .await;
        loop {
            match ws.recv_raw().await {
                Message::Text(text) => {
                    let message: Value = serde_json::from_str(&text).expect("JSON message");
                    match message["type"].as_str() {
                        Some("connection_ack") => return Ok(ws),
                        Some("ka") => continue,
                        Some("connection_error") => continue,
                        other => panic!("unexpected {other:?} before ack: {message}"),
                    }
                }
                Message::Close(frame) => {
                    let frame = frame.expect("close frame");
                    return Err(Closed {
                        code: frame.code.into(),
                        reason: frame.reason.to_string(),
                    });
                }
                _ => continue,
            }
        }
    }

    /// Opens a WebSocket with `protocol` and sends nothing yet.
    pub async fn open(api: &TestApi, protocol: &str) -> Ws {
        let mut request = format!("ws://{}/graphql/ws", api.addr)
            .into_client_request()
            .expect("request");
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse().expect("header"));
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("WebSocket connects");
        Ws { socket, next_id: 1 }
    }

    /// Sends one JSON message.
    pub async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("send");
    }

    /// Reads (and drops) messages until the server closes the socket; returns
    /// how it closed it.
    pub async fn closed(&mut self) -> Closed {
        self.ended().await.expect("a close frame")
    }

    /// Reads (and drops) messages until the socket ends: how the server
    /// closed it, or the error that ended it without a close frame.
    pub async fn ended(&mut self) -> Result<Closed, String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("the socket ends within 20 s");
            match message {
                Some(Ok(Message::Close(frame))) => {
                    let frame = frame.expect("close frame");
                    return Ok(Closed {
                        code: frame.code.into(),
                        reason: frame.reason.to_string(),
                    });
                }
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Err(err.to_string()),
                None => return Err("the socket ended".into()),
            }
        }
    }

    async fn recv_raw(&mut self) -> Message {
        tokio::time::timeout(Duration::from_secs(20), self.socket.next())
            .await
            .expect("a WebSocket message within 20 s")
            .expect("socket open")
            .expect("socket message")
    }

    /// Starts a subscription; returns its id.
    pub async fn subscribe(&mut self, query: &str, variables: Value) -> String {
        let id = self.next_id.to_string();
        self.next_id += 1;
        self.socket
            .send(Message::text(
                json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}})
                    .to_string(),
            ))
            .await
            .expect("send subscribe");
        id
    }

    /// The next `next` payload's `data`, or `None` when the subscription completed.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let Message::Text(text) = self.recv_raw().await else {
                continue;
            };
            let message: Value = serde_json::from_str(&text).expect("JSON message");
            match message["type"].as_str() {
                Some("next") => {
                    let payload = &message["payload"];
                    assert!(
                        payload.get("errors").is_none(),
                        "subscription error: {payload}"
                    );
                    return Some(payload["data"].clone());
                }
                Some("complete") => return None,
                Some("error") => panic!("subscription refused: {message}"),
                _ => continue,
            }
        }
    }

    /// The code of the error the next message carries: a protocol `error`, or
    /// a `next` whose payload has errors (as resolver errors arrive).
    pub async fn error_code(&mut self) -> String {
        let error = self.error().await;
        error["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("error without code: {error}"))
            .to_owned()
    }

    /// The first error the next message carries, as [`Ws::error_code`] reads it.
    pub async fn error(&mut self) -> Value {
        let message = self.message().await;
        let errors = match message["type"].as_str() {
            Some("error") => &message["payload"],
            Some("next") => &message["payload"]["errors"],
            _ => panic!("expected an error, got {message}"),
        };
        errors[0].clone()
    }

    /// The next message of any type, as JSON.
    pub async fn message(&mut self) -> Value {
        loop {
            if let Message::Text(text) = self.recv_raw().await {
                return serde_json::from_str(&text).expect("JSON message");
            }
        }
    }
}

impl Ws {
    /// Waits for the next item of a subscription that may not be listening yet:
    /// runs `action` (which makes an event), waits a second for an item, and
    /// runs it again while none came (at most 20 times).
    pub async fn next_while<F, Fut, T>(&mut self, mut action: F) -> Option<Value>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        for _ in 0..20 {
            action().await;
            if let Ok(item) = tokio::time::timeout(Duration::from_secs(1), self.next()).await {
                return item;
            }
        }
        panic!("no subscription item after 20 tries");
    }
}
