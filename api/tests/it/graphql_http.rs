//! GraphQL over HTTP as its specification says: answers in the media type
//! the client accepts, queries by GET but never mutations, GraphiQL only for
//! browsers, requests that never ran answered without `data` — and the
//! reference implementation's own audit suite (graphql-http) passing.

use std::path::Path;
use std::process::Command;

use reqwest::header::{ACCEPT, ALLOW, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use slipway_api::auth::Role;

use slipway_testkit::api::{Backend, TestApi};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// POSTs `body` with `accept` (none when `None`); returns status, content
/// type and body.
async fn post(server: &TestApi, accept: Option<&str>, body: Value) -> (StatusCode, String, Value) {
    let mut request = reqwest::Client::new()
        .post(server.url("/graphql"))
        .bearer_auth(server.token(Role::Admin, "admin"))
        .json(&body);
    if let Some(accept) = accept {
        request = request.header(ACCEPT, accept);
    }
    answer(request.send().await.unwrap()).await
}

async fn answer(response: reqwest::Response) -> (StatusCode, String, Value) {
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, content_type, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_come_in_the_media_type_the_client_accepts() {
    let server = TestApi::start(Backend::Sqlite).await;
    let query = json!({"query": "{ viewer { subject } }"});
    for (accept, expected) in [
        (Some("application/json"), "application/json"),
        (Some("*/*"), "application/json"),
        (None, "application/json"),
        (Some("text/html, application/*;q=0.9"), "application/json"),
        (Some(GRAPHQL_RESPONSE), GRAPHQL_RESPONSE),
        (
            Some("application/json;q=0.5, application/graphql-response+json"),
            GRAPHQL_RESPONSE,
        ),
        (
            Some("application/graphql-response+json;q=0.5, application/json"),
            "application/json",
        ),
    ] {
        let (status, content_type, body) = post(&server, accept, query.clone()).await;
        assert_eq!(status, 200, "{accept:?}: {body}");
        assert_eq!(content_type, expected, "Accept: {accept:?}");
        assert_eq!(body["data"]["viewer"]["subject"], "admin");
    }
    let (status, _, body) = post(&server, Some("text/html"), query).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE, "{body}");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("application/json"));

    let unlabelled = reqwest::Client::new()
        .post(server.url("/graphql"))
        .body(r#"{"query": "{ __typename }"}"#)
        .send()
        .await
        .unwrap();
    let (status, _, body) = answer(unlabelled).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("application/json"));
}

async fn get_runs_queries_but_never_mutations(backend: Backend) {
    let server = TestApi::start(backend).await;
    let http = reqwest::Client::new();
    let admin = server.token(Role::Admin, "admin");
    let get = |query: &str, accept: &str| {
        http.get(server.url("/graphql"))
            .query(&[("query", query), ("variables", r#"{"name": "web"}"#)])
            .header(ACCEPT, accept)
            .bearer_auth(&admin)
            .send()
    };
    let (status, content_type, body) = answer(
        get(
            "query($name: String!) { viewer { subject } application(name: $name) { name } }",
            "application/json",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "application/json"),
        "{body}"
    );
    assert_eq!(body["data"]["viewer"]["subject"], "admin");

    let create = "mutation($name: String!) { createApplication(input: {name: $name, repository: \"file:///srv/app.git\"}) { name } }";
    for accept in ["application/json", GRAPHQL_RESPONSE] {
        let response = get(create, accept).await.unwrap();
        assert_eq!(response.headers().get(ALLOW).unwrap(), "POST");
        let (status, content_type, body) = answer(response).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
        assert_eq!(content_type, accept);
        assert_eq!(body["errors"][0]["message"], "mutations are sent with POST");
        assert!(body.get("data").is_none(), "{body}");
    }
    let data = server
        .ok(&admin, "{ application(name: \"web\") { name } }", json!({}))
        .await;
    assert!(data["application"].is_null(), "GET created nothing");
    // Naming the mutation among several operations is no way around it.
    let response = http
        .get(server.url("/graphql"))
        .query(&[
            (
                "query",
                format!(
                    "query Read {{ __typename }} {}",
                    create.replacen("mutation", "mutation Write", 1)
                )
                .as_str(),
            ),
            ("operationName", "Write"),
            ("variables", r#"{"name": "web"}"#),
        ])
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_is_for_browsers_only() {
    let server = TestApi::start(Backend::Sqlite).await;
    let http = reqwest::Client::new();
    let page = http
        .get(server.url("/graphql"))
        .header(
            ACCEPT,
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text().await.unwrap().contains("graphiql"));

    let (status, content_type, body) =
        answer(http.get(server.url("/graphql")).send().await.unwrap()).await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::BAD_REQUEST, "application/json")
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("`query`"),
        "{body}"
    );
}

/// A request that never ran (it does not parse, is invalid, or costs too
/// much) is, as `application/graphql-response+json`, a 400 without `data`;
/// as `application/json` a 200, also without `data`. One that ran is a 200
/// with `data`, even when a field failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_never_ran_have_no_data() {
    let server = TestApi::start(Backend::Sqlite).await;
    let never_ran = [
        (
            "{",
            "the query does not parse at line 1, column 2: expected selection",
        ),
        ("{ nope }", "Unknown field \"nope\" on type \"Query\"."),
        (
            "query($id: ID!) { deployment(id: $id) { id } }",
            "variable `$id` of type `ID!` is required",
        ),
    ];
    for (query, message) in never_ran {
        for (accept, status) in [
            (GRAPHQL_RESPONSE, StatusCode::BAD_REQUEST),
            ("application/json", StatusCode::OK),
        ] {
            let (got, content_type, body) =
                post(&server, Some(accept), json!({"query": query})).await;
            assert_eq!(
                (got, content_type.as_str()),
                (status, accept),
                "{query}: {body}"
            );
            assert!(body.get("data").is_none(), "{query}: {body}");
            let said = body["errors"][0]["message"].as_str().unwrap();
            assert!(said.contains(message), "{query}: {said}");
            assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
        }
    }
    let anonymous = reqwest::Client::new()
        .post(server.url("/graphql"))
        .header(ACCEPT, GRAPHQL_RESPONSE)
        .json(&json!({"query": "{ applications { name } }"}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = answer(anonymous).await;
    assert_eq!(status, StatusCode::OK, "it ran: {body}");
    assert!(body.get("data").is_some(), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
}

slipway_testkit::on_both_backends!(get_runs_queries_but_never_mutations);

/// graphql-http's `serverAudits`, run by Node from `tests/graphql-http`
/// (installed with `npm ci` from its lock file when missing), against a real
/// API: every MUST and SHOULD audit passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graphql_over_http_audit_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/graphql-http");
    install_audit(&dir);
    let server = TestApi::start(Backend::Sqlite).await;
    let url = server.url("/graphql");
    let token = server.token(Role::Viewer, "audit");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("audit.mjs")
            .arg(url)
            .arg(token)
            .current_dir(&dir)
            .output()
    })
    .await
    .unwrap()
    .expect("node runs (scripts/test-env.sh installs Node and npm)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the audit failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout
            .lines()
            .filter(|line| line.starts_with("ok "))
            .count()
            >= 60,
        "{stdout}"
    );
}

/// `npm ci` in `dir` unless the locked graphql-http is installed already.
fn install_audit(dir: &Path) {
    let lock: Value =
        serde_json::from_slice(&std::fs::read(dir.join("package-lock.json")).unwrap()).unwrap();
    let locked = &lock["packages"]["node_modules/graphql-http"]["version"];
    let installed = std::fs::read(dir.join("node_modules/graphql-http/package.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
    if installed.is_some_and(|package| package["version"] == *locked) {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .expect("npm runs (scripts/test-env.sh installs Node and npm)");
    assert!(status.success(), "npm ci in {} failed", dir.display());
}
