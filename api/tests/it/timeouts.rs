//! Slow and idle clients are cut off: a connection that sends half a request
//! line, half a body or nothing, or sits idle after an answer, is closed
//! within the timeouts; an open subscription, kept alive by pings, stays.

use std::time::Duration;

use serde_json::json;
use slipway_api::auth::Role;
use slipway_api::{Clock, Settings, Timeouts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use slipway_testkit::api::{Backend, TestApi, Ws};

const TIMEOUT: Duration = Duration::from_millis(500);
/// How late a close may come: scheduling on two busy cores.
const SLACK: Duration = Duration::from_millis(1500);

fn short_timeouts() -> Settings {
    Settings {
        timeouts: Timeouts {
            header: TIMEOUT,
            body: TIMEOUT,
            ws_ping: Duration::from_millis(200),
            ws_silence: Duration::from_secs(1),
            ..Timeouts::default()
        },
        ..Settings::default()
    }
}

async fn server() -> TestApi {
    TestApi::start_with(Backend::Sqlite, Clock::system(), short_timeouts()).await
}

/// Reads until the server closes the connection (see the test kit's
/// `read_until_closed`), within the timeout and some slack.
pub(crate) async fn read_until_closed(
    stream: &mut TcpStream,
    since: Instant,
) -> (String, Duration) {
    slipway_testkit::net::read_until_closed(stream, since, TIMEOUT + SLACK).await
}

/// Thirty connections that each stop sending part way (ten mid request line,
/// ten mid body, ten before the first byte) are all closed within the
/// timeouts; the ones with a head get 408 first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let server = server().await;
    let body_head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"query\":",
        server.addr
    );
    let mut sockets = Vec::new();
    for i in 0..30 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let sent = match i % 3 {
            0 => "POST /gra".to_owned(),
            1 => body_head.clone(),
            _ => String::new(),
        };
        stream.write_all(sent.as_bytes()).await.unwrap();
        sockets.push((i % 3, stream, Instant::now()));
    }
    for (kind, mut stream, since) in sockets {
        let (answer, after) = read_until_closed(&mut stream, since).await;
        assert!(
            after >= TIMEOUT.mul_f32(0.8),
            "closed after {after:?}, before the timeout ({kind})"
        );
        if kind == 1 {
            assert!(answer.starts_with("HTTP/1.1 408"), "half a body: {answer}");
            assert!(answer.contains("did not arrive within"), "{answer}");
        }
    }
    // The server itself is fine.
    let viewer = server.token(Role::Viewer, "v");
    server
        .ok(&viewer, "{ viewer { subject } }", json!({}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = server().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = [0u8; 1024];
    let n = stream.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"),
        "{answer}"
    );
    // Kept alive for a next request...
    stream.write_all(request.as_bytes()).await.unwrap();
    let n = stream.read(&mut [0u8; 1024]).await.unwrap();
    assert!(n > 0, "the connection is kept alive between requests");
    // ...but not for ever.
    let (rest, after) = read_until_closed(&mut stream, Instant::now()).await;
    assert_eq!(rest, "", "nothing more is sent");
    assert!(after >= TIMEOUT.mul_f32(0.8), "closed after {after:?}");
}

/// An upgraded WebSocket is no longer an HTTP request: the header and body
/// timeouts do not apply to it, and its pings keep it open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_outlives_the_http_timeouts() {
    let server = server().await;
    server.create_app("web").await;
    let viewer = server.token(Role::Viewer, "v");
    let mut ws = server.ws(&viewer).await;
    ws.subscribe(
        "subscription { deploymentEvents(application: \"web\") { id status } }",
        json!({}),
    )
    .await;
    // Ten times the header timeout, answering the API's pings.
    let until = Instant::now() + TIMEOUT * 10;
    let mut pings = 0;
    while Instant::now() < until {
        let Ok(message) = tokio::time::timeout_at(until, ws.message()).await else {
            break;
        };
        assert_eq!(message["type"], "ping", "{message}");
        ws.send(json!({"type": "pong"})).await;
        pings += 1;
    }
    assert!(pings >= 10, "the API pinged {pings} times in 5 s");
    let id = server.deploy("web", "prod").await;
    loop {
        let message = ws.message().await;
        match message["type"].as_str() {
            Some("ping") => ws.send(json!({"type": "pong"})).await,
            Some("next") => {
                assert_eq!(message["payload"]["data"]["deploymentEvents"]["id"], id);
                break;
            }
            _ => panic!("unexpected {message}"),
        }
    }
}

/// A WebSocket that keeps quiet at `connection_init` is cut off like any
/// slow client, with graphql-transport-ws's 4408.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_without_connection_init_is_closed_with_4408() {
    let mut settings = short_timeouts();
    settings.timeouts.ws_init = TIMEOUT;
    let server = TestApi::start_with(Backend::Sqlite, Clock::system(), settings).await;
    let mut ws = Ws::open(&server, "graphql-transport-ws").await;
    let since = Instant::now();
    let closed = ws.closed().await;
    assert_eq!(closed.code, 4408, "{closed:?}");
    let after = since.elapsed();
    assert!(
        after >= TIMEOUT.mul_f32(0.8) && after < TIMEOUT + SLACK,
        "closed after {after:?}"
    );
}
