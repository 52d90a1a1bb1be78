//! The typed client of Slipway's GraphQL API, for the runner, the provider and
//! the CLI.
//!
//! Operations live in `graphql/*.graphql` and are checked against the root
//! `schema.graphql` at compile time by `graphql_client`: a change to the API's
//! contract that breaks a client fails its build.
//!
//! # Layout
//!
//! - [`operations`]: one generated module per query, mutation and subscription.
//! - [`Client`]: HTTP for queries and mutations, `graphql-transport-ws` for
//!   subscriptions, with the caller's JWT. A subscription answers the API's
//!   pings, pings it in turn ([`Keepalive`]) and fails when the API goes
//!   silent, so a dead connection is noticed and the caller resubscribes.
//! - [`Error`]: transport failures apart from the API's own errors, whose
//!   `extensions.code` is kept.

pub mod operations;

use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::{SinkExt, StreamExt};
use graphql_client::{GraphQLQuery, QueryBody, Response};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Scalars of the schema, as the generated code names them.
pub type DateTime = chrono::DateTime<chrono::Utc>;
#[allow(clippy::upper_case_acronyms)]
pub type JSON = serde_json::Value;

/// The API's error codes (`extensions.code`), as one type for every client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Unauthenticated,
    Forbidden,
    NotFound,
    Conflict,
    BadUserInput,
    Internal,
    /// A subscription fell behind the API's events and was ended: read the
    /// current state again and subscribe anew.
    Lagged,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Forbidden => "FORBIDDEN",
            Code::NotFound => "NOT_FOUND",
            Code::Conflict => "CONFLICT",
            Code::BadUserInput => "BAD_USER_INPUT",
            Code::Internal => "INTERNAL",
            Code::Lagged => "LAGGED",
        }
    }

    /// The code the API sent; an unknown or missing one is `Internal`.
    pub fn parse(text: &str) -> Code {
        match text {
            "UNAUTHENTICATED" => Code::Unauthenticated,
            "FORBIDDEN" => Code::Forbidden,
            "NOT_FOUND" => Code::NotFound,
            "CONFLICT" => Code::Conflict,
            "BAD_USER_INPUT" => Code::BadUserInput,
            "LAGGED" => Code::Lagged,
            _ => Code::Internal,
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API could not be reached, or answered with a server error.
    #[error("cannot reach the API at {url}: {message}")]
    Transport { url: String, message: String },
    /// The API refused the request itself (HTTP 4xx): sending it again as it
    /// is will not help (a body over the API's limit is 413).
    #[error("the API at {url} refused the request: HTTP {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    /// The API refused or failed the operation.
    #[error("{code}: {message}")]
    Api { code: Code, message: String },
    /// A subscription ended on the API's side.
    #[error("the subscription ended")]
    Ended,
}

impl Error {
    /// The API's error code (`CONFLICT`, `NOT_FOUND`, ...), if it is the API's error.
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: the API was unreachable, failed
    /// inside, or ended a subscription that fell behind (`LAGGED`; subscribe
    /// again and read the current state).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Ended => true,
            Error::Refused { .. } => false,
            Error::Api { code, .. } => matches!(code, Code::Internal | Code::Lagged),
        }
    }
}

/// How a subscription keeps its connection honest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// How often the client pings the API.
    pub ping_every: Duration,
    /// How long the API may send nothing (no pong, no ping, no event) before
    /// the subscription fails with [`Error::Transport`]. The API pings every
    /// 15 s by default, so a live one is never silent that long.
    pub silence: Duration,
}

impl Default for Keepalive {
    fn default() -> Self {
        Self {
            ping_every: Duration::from_secs(15),
            silence: Duration::from_secs(45),
        }
    }
}

/// A connection to the API with one token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    keepalive: Keepalive,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// How long one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a WebSocket may take to be acknowledged.
const WS_INIT_TIMEOUT: Duration = Duration::from_secs(10);

impl Client {
    /// `base` is the API's root URL, e.g. `http://127.0.0.1:8700`.
    pub fn new(base: &str, token: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("HTTP client"),
            base: base.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
            keepalive: Keepalive::default(),
        }
    }

    /// The same client with other keepalive intervals for its subscriptions.
    pub fn with_keepalive(mut self, keepalive: Keepalive) -> Self {
        self.keepalive = keepalive;
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Runs a query or mutation.
    pub async fn run<Q: GraphQLQuery>(
        &self,
        variables: Q::Variables,
    ) -> Result<Q::ResponseData, Error> {
        let url = format!("{}/graphql", self.base);
        let body: QueryBody<Q::Variables> = Q::build_query(variables);
        let transport = |message: String| Error::Transport {
            url: url.clone(),
            message,
        };
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|err| transport(err.to_string()))?;
        let status = response.status();
        if status.is_client_error() {
            let text = response.text().await.unwrap_or_default();
            return Err(Error::Refused {
                url: url.clone(),
                status: status.as_u16(),
                message: truncate(&text, 200).to_owned(),
            });
        }
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(transport(format!(
                "HTTP {status}: {}",
                truncate(&text, 200)
            )));
        }
        let response: Response<Q::ResponseData> = response
            .json()
            .await
            .map_err(|err| transport(format!("unreadable answer: {err}")))?;
        into_data(response)
    }

    /// Starts a subscription; the stream ends when the API completes it, and
    /// yields an error (then ends) when the connection fails or the API has
    /// been silent for longer than [`Keepalive::silence`].
    pub async fn subscribe<Q: GraphQLQuery>(
        &self,
        variables: Q::Variables,
    ) -> Result<BoxStream<'static, Result<Q::ResponseData, Error>>, Error>
    where
        Q::ResponseData: Send + 'static,
    {
        let url = format!(
            "{}/graphql/ws",
            self.base
                .replacen("https://", "wss://", 1)
                .replacen("http://", "ws://", 1)
        );
        let transport = |message: String| Error::Transport {
            url: url.clone(),
            message,
        };
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|err| transport(err.to_string()))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws".parse().expect("header value"),
        );
        let (mut socket, _) =
            tokio::time::timeout(WS_INIT_TIMEOUT, tokio_tungstenite::connect_async(request))
                .await
                .map_err(|_| transport("no WebSocket connection within 10 s".into()))?
                .map_err(|err| transport(err.to_string()))?;
        let init = json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {}", self.token)}});
        socket
            .send(Message::text(init.to_string()))
            .await
            .map_err(|err| transport(err.to_string()))?;
        tokio::time::timeout(WS_INIT_TIMEOUT, async {
            while let Some(message) = socket.next().await {
                match message {
                    Ok(Message::Text(text)) => {
                        let value: Value = serde_json::from_str(&text).unwrap_or_default();
                        if value["type"] == "connection_ack" {
                            return Ok(());
                        }
                    }
                    Ok(Message::Close(frame)) => {
                        let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                        return Err(Error::Api {
                            code: Code::Unauthenticated,
                            message: reason,
                        });
                    }
                    Ok(_) => {}
                    Err(err) => return Err(transport(err.to_string())),
                }
            }
            Err(transport("closed before acknowledging".into()))
        })
        .await
        .map_err(|_| transport("no connection_ack within 10 s".into()))??;
        let body = Q::build_query(variables);
        let subscribe = json!({"id": "1", "type": "subscribe", "payload": body});
        socket
            .send(Message::text(subscribe.to_string()))
            .await
            .map_err(|err| transport(err.to_string()))?;

        let live = Live {
            socket,
            ping: tokio::time::interval_at(
                tokio::time::Instant::now() + self.keepalive.ping_every,
                self.keepalive.ping_every,
            ),
            heard: tokio::time::Instant::now(),
            silence: self.keepalive.silence,
            url,
        };
        // The socket is served by a task of its own, so pings are answered
        // and sent while the caller is busy with an event.
        let (tx, rx) = tokio::sync::mpsc::channel(EVENTS_BUFFERED);
        tokio::spawn(live.run::<Q::ResponseData>(tx));
        Ok(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed())
    }
}

/// Events a subscription holds for a caller that has not taken them yet.
const EVENTS_BUFFERED: usize = 16;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What a subscription socket delivered.
enum Event<T> {
    /// A `next` message: the data, or the errors the API put in it.
    Next(Result<T, Error>),
    /// The subscription or its connection failed; nothing follows.
    Failed(Error),
}

/// An acknowledged subscription socket, with its keepalive.
struct Live {
    socket: Socket,
    ping: tokio::time::Interval,
    /// When the API last sent anything.
    heard: tokio::time::Instant,
    silence: Duration,
    url: String,
}

impl Live {
    /// Hands the subscription's events to `tx` until the API completes it,
    /// it fails (the error is the last item), or the caller drops the stream
    /// (the socket is then closed).
    async fn run<T: serde::de::DeserializeOwned>(
        mut self,
        tx: tokio::sync::mpsc::Sender<Result<T, Error>>,
    ) {
        loop {
            let event = tokio::select! {
                event = self.next::<T>() => event,
                () = tx.closed() => {
                    let closing = self.socket.close(None);
                    let _ = tokio::time::timeout(Duration::from_secs(1), closing).await;
                    return;
                }
            };
            let (item, more) = match event {
                None => return,
                // An event the API could not resolve; the subscription goes on.
                Some(Event::Next(item)) => (item, true),
                Some(Event::Failed(err)) => (Err(err), false),
            };
            if tx.send(item).await.is_err() || !more {
                return;
            }
        }
    }

    /// The next event; `None` when the API completed the subscription.
    async fn next<T: serde::de::DeserializeOwned>(&mut self) -> Option<Event<T>> {
        loop {
            let message = tokio::select! {
                // What has arrived counts before a timer that expired meanwhile.
                biased;
                message = self.socket.next() => message,
                _ = self.ping.tick() => match self.send(json!({"type": "ping"})).await {
                    Ok(()) => continue,
                    Err(err) => return Some(Event::Failed(err)),
                },
                () = tokio::time::sleep_until(self.heard + self.silence) => {
                    return Some(Event::Failed(self.silent()));
                }
            };
            self.heard = tokio::time::Instant::now();
            let message = match message {
                None => return Some(Event::Failed(Error::Ended)),
                Some(Err(err)) => return Some(Event::Failed(self.transport(err.to_string()))),
                Some(Ok(message)) => message,
            };
            let text = match message {
                Message::Text(text) => text,
                Message::Close(_) => return Some(Event::Failed(Error::Ended)),
                _ => continue,
            };
            let value: Value = serde_json::from_str(&text).unwrap_or_default();
            match value["type"].as_str() {
                Some("next") => {
                    let item = serde_json::from_value::<Response<T>>(value["payload"].clone())
                        .map_err(|err| self.transport(format!("unreadable event: {err}")))
                        .and_then(into_data);
                    return Some(Event::Next(item));
                }
                Some("error") => return Some(Event::Failed(api_error(&value["payload"][0]))),
                Some("complete") => return None,
                Some("ping") => {
                    if let Err(err) = self.send(json!({"type": "pong"})).await {
                        return Some(Event::Failed(err));
                    }
                }
                _ => {}
            }
        }
    }

    /// Sends a message; a write the API does not take within the silence
    /// timeout fails like silence does.
    async fn send(&mut self, message: Value) -> Result<(), Error> {
        let sent = tokio::time::timeout(
            self.silence,
            self.socket.send(Message::text(message.to_string())),
        );
        match sent.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(self.transport(err.to_string())),
            Err(_) => Err(self.silent()),
        }
    }

    fn transport(&self, message: String) -> Error {
        Error::Transport {
            url: self.url.clone(),
            message,
        }
    }

    fn silent(&self) -> Error {
        self.transport(format!(
            "the API sent nothing for {} s; the connection is dropped",
            self.silence.as_secs_f32()
        ))
    }
}

fn into_data<T>(response: Response<T>) -> Result<T, Error> {
    if let Some(error) = response.errors.as_ref().and_then(|errors| errors.first()) {
        let code = Code::parse(
            error
                .extensions
                .as_ref()
                .and_then(|ext| ext.get("code"))
                .and_then(|code| code.as_str())
                .unwrap_or("INTERNAL"),
        );
        return Err(Error::Api {
            code,
            message: error.message.clone(),
        });
    }
    response.data.ok_or_else(|| Error::Api {
        code: Code::Internal,
        message: "the API answered without data".into(),
    })
}

fn api_error(error: &Value) -> Error {
    Error::Api {
        code: Code::parse(
            error["extensions"]["code"]
                .as_str()
                .unwrap_or("BAD_USER_INPUT"),
        ),
        message: error["message"].as_str().unwrap_or("refused").to_owned(),
    }
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
