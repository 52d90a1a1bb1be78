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
//!   subscriptions, with the caller's JWT.
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

    /// Whether trying again later may succeed (the API was unreachable or failed inside).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Ended => true,
            Error::Refused { .. } => false,
            Error::Api { code, .. } => *code == Code::Internal,
        }
    }
}

/// A connection to the API with one token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
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
        }
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
    /// yields an error (then ends) when the connection fails.
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

        Ok(
            futures_util::stream::unfold(Some(socket), |socket| async move {
                let mut socket = socket?;
                loop {
                    let message = match socket.next().await {
                        None => return Some((Err(Error::Ended), None)),
                        Some(Err(err)) => {
                            let error = Error::Transport {
                                url: "websocket".into(),
                                message: err.to_string(),
                            };
                            return Some((Err(error), None));
                        }
                        Some(Ok(message)) => message,
                    };
                    let text = match message {
                        Message::Text(text) => text,
                        Message::Close(_) => return Some((Err(Error::Ended), None)),
                        _ => continue,
                    };
                    let value: Value = serde_json::from_str(&text).unwrap_or_default();
                    match value["type"].as_str() {
                        Some("next") => {
                            let item = serde_json::from_value::<Response<Q::ResponseData>>(
                                value["payload"].clone(),
                            )
                            .map_err(|err| Error::Transport {
                                url: "websocket".into(),
                                message: format!("unreadable event: {err}"),
                            })
                            .and_then(into_data);
                            return Some((item, Some(socket)));
                        }
                        Some("error") => {
                            let error = api_error(&value["payload"][0]);
                            return Some((Err(error), None));
                        }
                        Some("complete") => return None,
                        Some("ping") => {
                            let pong = json!({"type": "pong"}).to_string();
                            let _ = socket.send(Message::text(pong)).await;
                        }
                        _ => {}
                    }
                }
            })
            .boxed(),
        )
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
