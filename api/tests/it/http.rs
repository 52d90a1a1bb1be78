//! The HTTP surface, the binary's commands, and the checked-in schema.

use std::process::Command;

use serde_json::json;
use slipway_api::auth::{Keys, Role};

use slipway_testkit::api::{Backend, TestApi};

#[test]
fn schema_graphql_is_what_the_api_serves() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema.graphql");
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    let current = slipway_api::graphql::sdl();
    assert!(
        checked_in == current,
        "schema.graphql differs from the API's schema; regenerate it with\n    \
         cargo run -p slipway-api -- schema > schema.graphql"
    );
}

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slipway-api"));
    command
        .env_remove("SLIPWAY_JWT_SECRET")
        .env_remove("SLIPWAY_JWT_SECRET_FILE");
    command
}

#[test]
fn serving_without_a_jwt_secret_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = binary()
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url"])
        .arg(format!("sqlite://{}/x.db?mode=rwc", dir.path().display()))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SLIPWAY_JWT_SECRET"), "{stderr}");
    assert!(!dir.path().join("x.db").exists(), "nothing was created");
}

#[test]
fn the_token_command_prints_a_token_the_api_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "file-secret-0123456789\n").unwrap();
    let output = binary()
        .args([
            "token",
            "--role",
            "runner",
            "--subject",
            "runner-1",
            "--ttl",
            "2h",
            "--jwt-secret-file",
        ])
        .arg(&secret_file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).unwrap();
    let claims = Keys::new(b"file-secret-0123456789")
        .verify(token.trim())
        .unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.role),
        ("runner-1", Role::Runner)
    );
    let ttl = claims.exp - claims.iat;
    assert_eq!(ttl, 7200);
}

#[test]
fn the_schema_command_prints_the_sdl() {
    let output = binary().arg("schema").output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        slipway_api::graphql::sdl()
    );
}

/// The router is a service like any other: driven here without a socket.
async fn the_router_answers_without_a_socket(backend: Backend) {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use tower::ServiceExt as _;
    let server = TestApi::start(backend).await;
    let router = slipway_api::http::router(server.state.clone());
    let health = router
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let query = Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", server.token(Role::Viewer, "v")),
        )
        .body(Body::from(
            json!({"query": "{ viewer { subject role } }"}).to_string(),
        ))
        .unwrap();
    let answer = router.oneshot(query).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let body = axum::body::to_bytes(answer.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body["data"]["viewer"],
        json!({"subject": "v", "role": "VIEWER"})
    );
}

async fn health_readiness_and_graphiql(backend: Backend) {
    let server = TestApi::start(backend).await;
    let http = reqwest::Client::new();
    let healthz = http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200);
    let readyz = http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 200);
    // GraphiQL is for browsers, which ask for a page.
    let graphiql = http
        .get(server.url("/graphql"))
        .header("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(graphiql.status(), 200);
    assert!(graphiql
        .text()
        .await
        .unwrap()
        .contains("data-endpoint=\"/graphql\""));
    // Deployment pages (GitHub's log_url) ask a browser without a session to
    // sign in, and come back after.
    let page = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(server.url("/deployments/42"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(
        page.headers()["location"],
        "/login?next=%2Fdeployments%2F42"
    );

    server.state.db.clone().close().await.unwrap();
    let readyz = http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 503, "not ready once the database is gone");
}

async fn oversized_and_too_deep_requests_are_refused(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let admin = server.token(Role::Admin, "a");
    // A client announcing a body over the limit is answered 413 before it sends it.
    let answer = raw_post(&server, 9 * 1024 * 1024).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(server
        .ok(&admin, "{ application(name: \"big\") { name } }", json!({}))
        .await["application"]
        .is_null());

    let deep = format!(
        "{{ applications {{ {} name {} }} }}",
        "environments { application { ".repeat(8),
        "} } ".repeat(8)
    );
    let (code, message) = server.err(&admin, &deep, json!({})).await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(message.contains("nested too deep"), "{message}");

    let (code, _) = server
        .err(&admin, "{ applications { nope } }", json!({}))
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
}

async fn database_errors_do_not_reach_clients(backend: Backend) {
    use sea_orm::ConnectionTrait;
    let server = TestApi::start(backend).await;
    server
        .state
        .db
        .execute_unprepared("DROP TABLE runners")
        .await
        .unwrap();
    let viewer = server.token(Role::Viewer, "v");
    let (code, message) = server.err(&viewer, "{ runners { name } }", json!({})).await;
    assert_eq!(code, "INTERNAL");
    assert!(
        !message.to_lowercase().contains("runners"),
        "no SQL detail: {message}"
    );
    assert!(
        !message.to_lowercase().contains("table"),
        "no SQL detail: {message}"
    );
}

slipway_testkit::on_both_backends!(
    the_router_answers_without_a_socket,
    health_readiness_and_graphiql,
    oversized_and_too_deep_requests_are_refused,
    database_errors_do_not_reach_clients,
);

/// Sends the head of a POST /graphql announcing `length` bytes, and returns
/// what the server answers before any of the body is sent.
async fn raw_post(server: &TestApi, length: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n",
        server.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 1024];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[test]
fn migrate_brings_a_database_up_to_date_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/m.db?mode=rwc", dir.path().display());
    let first = binary()
        .args(["migrate", "--database-url", &url])
        .output()
        .unwrap();
    assert!(first.status.success(), "{first:?}");
    // Every migration there is, whatever their number.
    let said = String::from_utf8_lossy(&first.stderr);
    assert!(
        said.contains("applied ") && !said.contains("applied 0 migration"),
        "{said}"
    );
    let again = binary()
        .args(["migrate", "--database-url", &url])
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("applied 0 migration"));
}
