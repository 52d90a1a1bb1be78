//! The test harness: a real API on 127.0.0.1 over a real database (a temp
//! SQLite file, or a fresh PostgreSQL database), and small HTTP and WebSocket
//! GraphQL clients.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use slipway_api::auth::{Keys, Role};
use slipway_api::{db, AppState, Clock, Settings};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub const SECRET: &[u8] = b"slipway-tests-secret-0123456789";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn(Backend)` as two tests: `sqlite::name` and
/// `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
    };
}

/// A database of its own for one test.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("slipway.db").display()
                );
                Self {
                    url,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                static COUNTER: AtomicU32 = AtomicU32::new(0);
                let admin_url = std::env::var("SLIPWAY_TEST_POSTGRES_URL").unwrap_or_else(|_| {
                    "postgres://root@%2Fvar%2Frun%2Fpostgresql/postgres".to_owned()
                });
                let name = format!(
                    "slipway_test_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed),
                    chrono::Utc::now().timestamp_micros() % 1_000_000
                );
                let admin = db::connect(&admin_url).await.unwrap_or_else(|err| {
                    panic!(
                        "PostgreSQL is needed for this test and does not answer at {admin_url} \
                         ({err}); run scripts/test.sh, which starts it, or set \
                         SLIPWAY_TEST_POSTGRES_URL"
                    )
                });
                use sea_orm::ConnectionTrait;
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                let (base, _) = admin_url.rsplit_once('/').expect("database in URL");
                Self {
                    url: format!("{base}/{name}"),
                    _dir: None,
                }
            }
        }
    }
}

/// A running API.
pub struct Server {
    pub addr: SocketAddr,
    pub state: AppState,
    pub db: TestDb,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    http: reqwest::Client,
}

impl Server {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, Clock::system(), Settings::default()).await
    }

    pub async fn start_with(backend: Backend, clock: Clock, settings: Settings) -> Self {
        let db = TestDb::new(backend).await;
        Self::serve(db, clock, settings).await
    }

    async fn serve(db: TestDb, clock: Clock, settings: Settings) -> Self {
        // The API's warnings and errors go to the test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("slipway_api=warn")
            .with_test_writer()
            .try_init();
        let conn = db::connect(&db.url).await.expect("connect");
        db::migrate(&conn).await.expect("migrate");
        let state = AppState::new(conn, Keys::new(SECRET), clock, settings);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                slipway_api::serve(state, listener, async {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
            }
        });
        let server = Self {
            addr,
            state,
            db,
            stop: Some(stop),
            task: Some(task),
            http: reqwest::Client::new(),
        };
        // `serve` does its start-up work (renewing leases) before it answers.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while server
            .http
            .get(server.url("/healthz"))
            .send()
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the API did not start within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        server
    }

    /// Stops this API process's server and starts a new one on the same database.
    pub async fn restart(mut self) -> Self {
        self.shutdown().await;
        let clock = self.state.clock.clone();
        let settings = (*self.state.settings).clone();
        self.state.db.clone().close().await.ok();
        let db = std::mem::replace(
            &mut self.db,
            TestDb {
                url: String::new(),
                _dir: None,
            },
        );
        Self::serve(db, clock, settings).await
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("server stops within 10 s")
                .expect("server task");
        }
    }

    pub fn token(&self, role: Role, subject: &str) -> String {
        self.state.keys.issue(
            subject,
            role,
            chrono::Duration::hours(1),
            chrono::Utc::now(),
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Posts a GraphQL request and returns the whole response body.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut request = self
            .http
            .post(self.url("/graphql"))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("POST /graphql");
        assert!(
            response.status().is_success(),
            "POST /graphql answered {}",
            response.status()
        );
        response.json().await.expect("JSON answer")
    }

    /// Like [`Server::gql`], but the request must succeed; returns `data`.
    pub async fn ok(&self, token: &str, query: &str, variables: Value) -> Value {
        let body = self.gql(Some(token), query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// The request must fail; returns the first error's (code, message).
    pub async fn err(&self, token: &str, query: &str, variables: Value) -> (String, String) {
        let body = self.gql(Some(token), query, variables).await;
        error_of(&body)
    }

    /// Opens an authenticated graphql-transport-ws connection.
    pub async fn ws(&self, token: &str) -> Ws {
        Ws::connect(
            self,
            "graphql-transport-ws",
            json!({"authorization": format!("Bearer {token}")}),
        )
        .await
        .expect("connection_ack")
    }

    // Shortcuts for the fixtures most tests need.

    pub async fn create_app(&self, name: &str) {
        let admin = self.token(Role::Admin, "admin");
        self.ok(
            &admin,
            "mutation($name: String!) { createApplication(input: {name: $name, repository: \"file:///srv/git/app.git\"}) { name } }",
            json!({"name": name}),
        )
        .await;
    }

    /// Creates a deployment as `deployer`; returns its id.
    pub async fn deploy(&self, app: &str, env: impl AsRef<str>) -> String {
        let env = env.as_ref();
        let deployer = self.token(Role::Deployer, "deployer");
        let data = self
            .ok(
                &deployer,
                "mutation($app: String!, $env: String!) { createDeployment(input: {application: $app, environment: $env, ref: \"main\"}) { id } }",
                json!({"app": app, "env": env}),
            )
            .await;
        data["createDeployment"]["id"]
            .as_str()
            .expect("id")
            .to_owned()
    }

    pub async fn claim(&self, runner: &str, id: &str) -> Value {
        let token = self.token(Role::Runner, runner);
        self.gql(
            Some(&token),
            "mutation($id: ID!) { claimDeployment(id: $id) { id status runner } }",
            json!({"id": id}),
        )
        .await
    }

    pub async fn finish(&self, runner: &str, id: &str, status: &str) -> Value {
        let token = self.token(Role::Runner, runner);
        self.ok(
            &token,
            "mutation($id: ID!, $status: DeploymentStatus!) { finishDeployment(id: $id, status: $status, message: \"done\") { id status } }",
            json!({"id": id, "status": status}),
        )
        .await
    }

    pub async fn status(&self, id: &str) -> Value {
        let viewer = self.token(Role::Viewer, "viewer");
        self.ok(
            &viewer,
            "query($id: ID!) { deployment(id: $id) { id status phase message runner cancelRequested finishedAt } }",
            json!({"id": id}),
        )
        .await["deployment"]
            .clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// (code, message) of the first error of a response.
pub fn error_of(body: &Value) -> (String, String) {
    let error = &body["errors"][0];
    assert!(!error.is_null(), "expected an error, got {body}");
    (
        error["extensions"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        error["message"].as_str().unwrap_or("").to_owned(),
    )
}

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
    pub async fn connect(server: &Server, protocol: &str, payload: Value) -> Result<Ws, Closed> {
        let mut ws = Ws::open(server, protocol).await;
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
    pub async fn open(server: &Server, protocol: &str) -> Ws {
        let mut request = format!("ws://{}/graphql/ws", server.addr)
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
        let message = self.message().await;
        let errors = match message["type"].as_str() {
            Some("error") => &message["payload"],
            Some("next") => &message["payload"]["errors"],
            _ => panic!("expected an error, got {message}"),
        };
        errors[0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("error without code: {message}"))
            .to_owned()
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

impl Server {
    /// Posts a query with a raw `Authorization` header value.
    pub async fn http_raw_auth(&self, authorization: &str, query: &str) -> Value {
        self.http
            .post(self.url("/graphql"))
            .header("Authorization", authorization)
            .json(&json!({"query": query}))
            .send()
            .await
            .expect("POST /graphql")
            .json()
            .await
            .expect("JSON answer")
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
