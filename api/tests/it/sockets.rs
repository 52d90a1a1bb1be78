//! Subscriptions over WebSocket tell the truth: on SQLite, one that falls
//! behind ends with a `LAGGED` error instead of skipping events (on
//! PostgreSQL it catches up from the event log: see `replicas`); pings run both ways and
//! a silent peer is dropped, by the API and by the client; an expired token
//! ends its socket at once and can run nothing; and a socket is small until
//! it is authenticated.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_api::{view, Clock, Settings, Timeouts};
use slipway_client::operations::{deployment_events, DeploymentEvents};
use slipway_client::{Client, Keepalive};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use slipway_testkit::api::{Backend, TestApi, Ws};

const EVENTS: &str = "subscription($id: ID) { deploymentEvents(id: $id) { id number name status phase message ref sha createdBy createdAt } }";

/// Makes a subscriber fall far behind: `server` publishes this many events
/// of `id` at once while the subscriber reads nothing.
const FLOOD: usize = 100_000;

async fn flood(server: &TestApi, id: &str) {
    let view = Arc::new(
        view::get(&server.state.db, id.parse().unwrap())
            .await
            .unwrap(),
    );
    // Any event fills the stream a subscriber reads; `queued` events are
    // published as they come, with no turn to wait for.
    for _ in 0..FLOOD {
        server.state.events.queued(Arc::clone(&view));
    }
}

async fn a_subscriber_that_falls_behind_gets_lagged_and_completes(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let id = server.deploy("web", "prod").await;
    let viewer = server.token(Role::Viewer, "v");
    let mut ws = server.ws(&viewer).await;
    let subscription = ws.subscribe(EVENTS, json!({"id": id})).await;
    // Listening once an event arrives.
    ws.next_while(|| flood_one(&server, &id)).await;
    flood(&server, &id).await;
    let mut delivered = 0;
    let error = loop {
        let message = ws.message().await;
        assert_eq!(message["id"], subscription, "{message}");
        match message["type"].as_str() {
            Some("next") if message["payload"].get("errors").is_some() => break message,
            Some("next") => delivered += 1,
            Some("ping") => continue,
            _ => panic!("expected events, then an error: {message}"),
        }
    };
    assert!(delivered < FLOOD, "it kept up with all {FLOOD} events");
    let error = &error["payload"]["errors"][0];
    assert_eq!(error["extensions"]["code"], "LAGGED", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("missed") && message.contains("subscribe again"),
        "{message}"
    );
    let complete = ws.message().await;
    assert_eq!(
        (complete["type"].as_str(), &complete["id"]),
        (Some("complete"), &json!(subscription)),
        "the subscription ends after the error: {complete}"
    );
    // The socket itself stays usable: subscribing again works.
    ws.subscribe(EVENTS, json!({"id": id})).await;
    assert!(ws.next_while(|| flood_one(&server, &id)).await.is_some());
}

/// One event of deployment `id`: its message changes, as a runner's
/// progress would change it, and the change is published.
async fn flood_one(server: &TestApi, id: &str) {
    use sea_orm::ConnectionTrait as _;
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    server
        .state
        .db
        .execute_unprepared(&format!(
            "UPDATE deployments SET message = 'event {n}' WHERE id = {id}"
        ))
        .await
        .unwrap();
    let view = view::get(&server.state.db, id.parse().unwrap())
        .await
        .unwrap();
    server
        .state
        .events
        .deployment_changed(&server.state.db, &view)
        .await;
}

/// The client a runner or the provider uses sees the error and the end of the
/// stream, so it resubscribes and reads what it missed.
async fn the_client_sees_lagged_and_the_end(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let id = server.deploy("web", "prod").await;
    let client = Client::new(&server.url(""), &server.token(Role::Viewer, "v"));
    let mut events = client
        .subscribe::<DeploymentEvents>(deployment_events::Variables {
            application: None,
            id: Some(id.clone()),
        })
        .await
        .unwrap();
    // Listening once an event arrives.
    loop {
        flood_one(&server, &id).await;
        if let Ok(event) = tokio::time::timeout(Duration::from_secs(1), events.next()).await {
            event.expect("an event").expect("not an error");
            break;
        }
    }
    flood(&server, &id).await;
    let error = loop {
        match tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("the stream goes on")
        {
            Some(Ok(_)) => continue,
            Some(Err(err)) => break err,
            None => panic!("the stream ended without an error"),
        }
    };
    assert_eq!(error.code(), Some(slipway_client::Code::Lagged), "{error}");
    assert!(error.is_transient(), "subscribing again may succeed");
    let end = tokio::time::timeout(Duration::from_secs(20), events.next())
        .await
        .expect("the stream ends");
    assert!(end.is_none(), "nothing after the error");
}

slipway_testkit::on_both_backends!(an_expired_token_runs_nothing_on_an_open_socket);

/// The in-process stream of one API on SQLite, which has no log to replay.
mod in_process {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_subscriber_that_falls_behind_gets_lagged_and_completes() {
        super::a_subscriber_that_falls_behind_gets_lagged_and_completes(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_client_sees_lagged_and_the_end() {
        super::the_client_sees_lagged_and_the_end(Backend::Sqlite).await
    }
}

fn quick_pings() -> Settings {
    Settings {
        timeouts: Timeouts {
            ws_ping: Duration::from_millis(200),
            ws_silence: Duration::from_secs(1),
            ..Timeouts::default()
        },
        ..Settings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_pings_and_answers_pings() {
    let server = TestApi::start_with(Backend::Sqlite, Clock::system(), quick_pings()).await;
    let mut ws = server.ws(&server.token(Role::Viewer, "v")).await;
    let since = Instant::now();
    assert_eq!(ws.message().await["type"], "ping");
    assert!(
        since.elapsed() < Duration::from_secs(1),
        "pinged within its interval"
    );
    ws.send(json!({"type": "ping", "payload": {"n": 1}})).await;
    loop {
        let message = ws.message().await;
        match message["type"].as_str() {
            Some("ping") => continue,
            Some("pong") => break,
            _ => panic!("expected a pong: {message}"),
        }
    }
}

/// A client that answers nothing is dropped after the silence timeout, on
/// both protocols (the legacy one is pinged with WebSocket pings, which a
/// client that does not read cannot answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_dropped() {
    let server = TestApi::start_with(Backend::Sqlite, Clock::system(), quick_pings()).await;
    let token = server.token(Role::Viewer, "v");
    let payload = json!({"authorization": format!("Bearer {token}")});
    // graphql-transport-ws pings are messages: reading them answers nothing.
    let mut ws = Ws::connect(&server, "graphql-transport-ws", payload.clone())
        .await
        .unwrap();
    let since = Instant::now();
    let closed = ws.closed().await;
    assert_eq!(closed.code, 3008, "{closed:?}");
    assert!(
        closed.reason.contains("nothing heard for 1 s"),
        "{closed:?}"
    );
    let after = since.elapsed();
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(3),
        "{after:?}"
    );

    // On the legacy protocol, a client that does not even read (and so does
    // not send the WebSocket's automatic pong) is dropped as well; when it
    // reads at last, its pongs meet a closed connection or the close frame.
    let mut ws = Ws::connect(&server, "graphql-ws", payload).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let since = Instant::now();
    match ws.ended().await {
        Ok(closed) => assert_eq!(closed.code, 3008, "{closed:?}"),
        Err(gone) => assert!(since.elapsed() < Duration::from_millis(500), "{gone}"),
    }
}

/// The client answers the API's pings and pings it, so a subscription stays
/// open across many silence timeouts and still delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_answers_stays_connected() {
    // A silence timeout of 2 s on either side, for busy machines.
    let mut settings = quick_pings();
    settings.timeouts.ws_silence = Duration::from_secs(2);
    let server = TestApi::start_with(Backend::Sqlite, Clock::system(), settings).await;
    server.create_app("web").await;
    let client =
        Client::new(&server.url(""), &server.token(Role::Viewer, "v")).with_keepalive(Keepalive {
            ping_every: Duration::from_millis(300),
            silence: Duration::from_secs(2),
        });
    let mut events = client
        .subscribe::<DeploymentEvents>(deployment_events::Variables {
            application: Some("web".into()),
            id: None,
        })
        .await
        .unwrap();
    // Three silence timeouts of the API's and of the client's, while the
    // caller takes nothing from the stream.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let id = server.deploy("web", "prod").await;
    let event = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event")
        .expect("the stream is open")
        .expect("not an error");
    assert_eq!(event.deployment_events.id, id);
}

/// A fake API that acknowledges, pings once and then says nothing at all:
/// the client answers the ping, pings on its own, and gives up on the
/// connection after its silence timeout with an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_drops_a_silent_api() {
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heard_tx, mut heard) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let fake = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        #[allow(clippy::result_large_err)] // tungstenite's callback type
        let agree = |_: &Request, mut response: Response| {
            response.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                "graphql-transport-ws".parse().unwrap(),
            );
            Ok(response)
        };
        let mut socket = tokio_tungstenite::accept_hdr_async(stream, agree)
            .await
            .unwrap();
        let mut acked = false;
        while let Some(Ok(message)) = socket.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let message: Value = serde_json::from_str(&text).unwrap();
            if !acked && message["type"] == "connection_init" {
                acked = true;
                let ack = json!({"type": "connection_ack"}).to_string();
                socket.send(Message::text(ack)).await.unwrap();
            } else if message["type"] == "subscribe" {
                let ping = json!({"type": "ping"}).to_string();
                socket.send(Message::text(ping)).await.unwrap();
            }
            let _ = heard_tx.send(message);
        }
    });
    let client = Client::new(&format!("http://{addr}"), "token").with_keepalive(Keepalive {
        ping_every: Duration::from_millis(200),
        silence: Duration::from_secs(1),
    });
    let mut events = client
        .subscribe::<DeploymentEvents>(deployment_events::Variables {
            application: None,
            id: None,
        })
        .await
        .unwrap();
    let since = Instant::now();
    let failed = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("the client gives up on a silent API")
        .expect("an item")
        .expect_err("an error");
    let after = since.elapsed();
    assert!(failed.is_transient(), "{failed}");
    assert!(failed.to_string().contains("sent nothing"), "{failed}");
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(3),
        "{after:?}"
    );
    assert!(tokio::time::timeout(Duration::from_secs(1), events.next())
        .await
        .expect("ended")
        .is_none());
    let mut kinds = Vec::new();
    while let Ok(message) = heard.try_recv() {
        kinds.push(message["type"].as_str().unwrap_or_default().to_owned());
    }
    assert!(
        kinds.contains(&"pong".to_owned()),
        "the client answered the ping: {kinds:?}"
    );
    let pings = kinds.iter().filter(|kind| *kind == "ping").count();
    assert!(pings >= 3, "the client pinged every 200 ms: {kinds:?}");
    fake.abort();
}

/// A WebSocket whose token expires is closed with 4403 then, without
/// waiting for the client to send anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_is_closed_when_its_token_expires() {
    let server = TestApi::start(Backend::Sqlite).await;
    let issued = chrono::Utc::now();
    let token = server
        .state
        .keys
        .issue("v", Role::Viewer, chrono::Duration::seconds(2), issued);
    let expires = chrono::DateTime::from_timestamp(issued.timestamp() + 2, 0).unwrap();
    let mut ws = server.ws(&token).await;
    ws.subscribe(EVENTS, json!({})).await;
    let closed = ws.closed().await;
    let now = chrono::Utc::now();
    assert_eq!(closed.code, 4403, "{closed:?}");
    assert_eq!(closed.reason, "Forbidden: token expired");
    assert!(
        now >= expires,
        "closed at {now}, before the token expired at {expires}"
    );
    assert!(
        now - expires < chrono::Duration::milliseconds(1500),
        "closed at {now}, long after the token expired at {expires}"
    );
}

/// The role check of every field also checks expiry against the API's clock:
/// a socket opened before its token expired cannot subscribe or mutate after.
async fn an_expired_token_runs_nothing_on_an_open_socket(backend: Backend) {
    let clock = Clock::manual(chrono::Utc::now());
    let server = TestApi::start_with(backend, clock.clone(), Settings::default()).await;
    server.create_app("web").await;
    let deployer = server.token(Role::Deployer, "d");
    let mut ws = server.ws(&deployer).await;
    // Past the test kit's token lifetime (4 h).
    clock.advance(chrono::Duration::hours(5));
    ws.subscribe(EVENTS, json!({})).await;
    let error = next_error(&mut ws).await;
    assert_eq!(error["extensions"]["code"], "UNAUTHENTICATED", "{error}");
    assert_eq!(error["message"], "token expired");
    ws.subscribe(
        "mutation { createDeployment(input: {application: \"web\", environment: \"prod\", ref: \"main\"}) { id } }",
        json!({}),
    )
    .await;
    let refused = next_error(&mut ws).await;
    assert_eq!(
        refused["extensions"]["code"], "UNAUTHENTICATED",
        "{refused}"
    );
    clock.advance(chrono::Duration::hours(-5));
    let admin = server.token(Role::Admin, "a");
    let data = server
        .ok(&admin, "{ deployments { nodes { id } } }", json!({}))
        .await;
    assert_eq!(
        data["deployments"]["nodes"],
        json!([]),
        "nothing was created"
    );
}

/// The first error of the next message that carries one: a protocol
/// `error`, or a `next` with errors.
async fn next_error(ws: &mut Ws) -> Value {
    loop {
        let message = ws.message().await;
        match message["type"].as_str() {
            Some("error") => return message["payload"][0].clone(),
            Some("next") => return message["payload"]["errors"][0].clone(),
            Some("complete" | "ping") => continue,
            _ => panic!("expected an error, got {message}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_message_before_connection_init_is_refused() {
    let server = TestApi::start(Backend::Sqlite).await;
    let mut ws = Ws::open(&server, "graphql-transport-ws").await;
    let padding = "x".repeat(8 * 1024);
    ws.send(json!({"type": "connection_init", "payload": {"token": padding}}))
        .await;
    let closed = ws.closed().await;
    assert_eq!(closed.code, 4400, "{closed:?}");
    assert!(closed.reason.contains("at most 4096"), "{closed:?}");
}
