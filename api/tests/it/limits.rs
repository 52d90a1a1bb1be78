//! What a request may cost and how it is refused: a query pays for the items
//! it asks for (`first` times what each item selects), whichever way it asks
//! (aliases, variables, fragments); refusals are sentences of bounded size,
//! whatever the input they quote; a body too large is 413 whether it says its
//! length or not.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_api::graphql::MAX_COST;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use slipway_testkit::api::{Backend, TestApi};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_pays_for_the_items_it_asks_for() {
    let server = TestApi::start(Backend::Sqlite).await;
    let viewer = server.token(Role::Viewer, "v");
    // 100 deployments × (1 + 10,000 lines × 4 fields), plus the connection.
    let (code, message) = server
        .err(
            &viewer,
            "{ deployments(first: 100) { nodes { logs(first: 10000) { seq at stream text } } } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(
        message.starts_with(&format!(
            "query cost 4000102 is over the limit of {MAX_COST}"
        )),
        "{message}"
    );

    // Aliases each pay: four reads of 10,000 lines fit, five do not.
    let aliases = |n: usize| {
        let fields: String = (0..n)
            .map(|i| format!("a{i}: deployment(id: \"1\") {{ logs(first: 10000) {{ text }} }} "))
            .collect();
        format!("{{ {fields} }}")
    };
    let fits = server.gql(Some(&viewer), &aliases(4), json!({})).await;
    assert!(fits.get("errors").is_none(), "{fits}");
    let (_, message) = server.err(&viewer, &aliases(5), json!({})).await;
    assert!(message.starts_with("query cost 50010 is over"), "{message}");

    // A variable is priced at its value, a fragment wherever it is spread.
    let (_, message) = server
        .err(
            &viewer,
            "query($n: Int!) { deployment(id: \"1\") { logs(first: $n) { text } } }",
            json!({"n": 1_000_000_000}),
        )
        .await;
    assert!(
        message.starts_with("query cost 1000000002 is over"),
        "{message}"
    );
    let fragments = "fragment Lines on Deployment { logs(first: 9000) { seq text } } \
                     { a: deployment(id: \"1\") { ...Lines } b: deployment(id: \"2\") { ...Lines } \
                       c: deployment(id: \"3\") { ...Lines } }";
    let (_, message) = server.err(&viewer, fragments, json!({})).await;
    assert!(message.starts_with("query cost 54006 is over"), "{message}");
    // Lists without `first` count as ten items each.
    let (_, message) = server
        .err(
            &viewer,
            "{ applications { environments { release { deployment { logs(first: 1000) { text } } } } } }",
            json!({}),
        )
        .await;
    assert!(
        message.starts_with("query cost 100311 is over"),
        "{message}"
    );
    // A walk of the commit graph costs 100 more: five reads of every
    // environment's distance, 10,211 each, are over the limit.
    let walks: String = (0..5)
        .map(|i| {
            format!("a{i}: applications {{ environments {{ commitDistance(to: \"x\") {{ behind }} }} }} ")
        })
        .collect();
    let (_, message) = server
        .err(&viewer, &format!("{{ {walks} }}"), json!({}))
        .await;
    assert!(message.starts_with("query cost 51055 is over"), "{message}");
}

/// Every operation that Slipway's own clients (runner, provider, CLI) send
/// costs less than the limit with the largest variables they use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_slipway_sends_is_within_the_limit() {
    let server = TestApi::start(Backend::Sqlite).await;
    let admin = server.token(Role::Admin, "admin");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../client/graphql");
    let mut checked = 0;
    for file in std::fs::read_dir(&dir).unwrap() {
        let path = file.unwrap().path();
        let document = std::fs::read_to_string(&path).unwrap();
        let names = document.lines().filter_map(|line| {
            let mut words = line.split_whitespace();
            matches!(words.next(), Some("query" | "mutation" | "subscription"))
                .then(|| words.next())
                .flatten()
                .map(|name| name.split('(').next().unwrap().to_owned())
        });
        for name in names.collect::<Vec<_>>() {
            let body = reqwest::Client::new()
                .post(server.url("/graphql"))
                .bearer_auth(&admin)
                .json(&json!({
                    "query": document,
                    "operationName": name,
                    "variables": {"first": 1000, "limit": 100},
                }))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap();
            let cost_error = body["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|error| {
                    error["message"]
                        .as_str()
                        .unwrap_or("")
                        .contains("query cost")
                });
            assert!(cost_error.is_none(), "{}: {name}: {body}", path.display());
            checked += 1;
        }
    }
    assert!(
        checked > 20,
        "only {checked} operations found in {}",
        dir.display()
    );
}

/// An error that quotes the client's input quotes a few hundred characters
/// of it, however large it is; every error is a sentence of bounded size.
async fn errors_quote_input_cut_short(backend: Backend) {
    let server = TestApi::start(backend).await;
    let admin = server.token(Role::Admin, "admin");
    let huge = "A".repeat(4 * 1024 * 1024);
    let (code, message) = server
        .err(
            &admin,
            "mutation($name: String!) { createApplication(input: {name: $name, repository: \"file:///srv/app.git\"}) { name } }",
            json!({"name": huge}),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(
        message.starts_with("application name `AAAA"),
        "{}",
        &message[..100]
    );
    assert!(
        message.contains("(4194304 bytes in all)` is invalid: use 1 to 63"),
        "{message}"
    );
    assert!(message.len() < 600, "{} bytes", message.len());

    let (code, message) = server
        .err(
            &admin,
            "mutation($app: String!) { createEnvironment(input: {application: $app, name: \"prod\"}) { name } }",
            json!({"app": huge}),
        )
        .await;
    assert_eq!(code, "NOT_FOUND");
    assert!(
        message.ends_with("bytes in all)` does not exist"),
        "{message}"
    );
    assert!(message.len() < 600, "{} bytes", message.len());

    // Messages quoting input anywhere else are cut as a whole.
    let (_, message) = server
        .err(
            &admin,
            "query($id: ID!) { deployment(id: $id) { id } }",
            json!({"id": huge}),
        )
        .await;
    assert!(message.len() < 1200, "{} bytes", message.len());
    assert!(message.contains(" bytes in all)"), "{message}");
    let unknown = format!("{{ {} }}", "b".repeat(64 * 1024));
    let (code, message) = server.err(&admin, &unknown, json!({})).await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(
        message.starts_with("Unknown field \"bbbb"),
        "{}",
        &message[..50]
    );
    assert!(message.len() < 1200, "{} bytes", message.len());
    let nothing = server
        .ok(&admin, "{ applications { name } }", json!({}))
        .await;
    assert_eq!(nothing["applications"], json!([]), "nothing was created");
}

slipway_testkit::on_both_backends!(errors_quote_input_cut_short);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_body_is_answered_with_a_sentence() {
    let server = TestApi::start(Backend::Sqlite).await;
    for (body, expected) in [
        ("{ \"query\": ", "the request body is not JSON (EOF while parsing a value at line 1 column 11)"),
        ("", "the request body is empty: send a JSON object such as {\"query\": \"{ viewer { subject } }\"}"),
        ("[{\"query\": \"{ __typename }\"}]", "the request body must be a JSON object with a `query`, not an array"),
        ("{\"query\": 5}", "`query` must be a string, not a number"),
        ("{\"qeury\": \"{ __typename }\"}", "the request has no `query`: send {\"query\": \"{ viewer { subject } }\"}"),
        ("{\"query\": \"{ __typename }\", \"variables\": \"x\"}", "`variables` must be an object or null, not a string"),
        ("{\"query\": \"{ __typename }\", \"operationName\": false}", "`operationName` must be a string or null, not a boolean"),
    ] {
        let response = reqwest::Client::new()
            .post(server.url("/graphql"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["errors"][0]["message"], expected, "{body}");
        assert_eq!(answer["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    }
}

/// A chunked body (no Content-Length) over the limit is 413 like one that
/// announces its length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_chunked_body_is_413() {
    let server = TestApi::start(Backend::Sqlite).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        server.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 64 * 1024];
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        for _ in 0..(9 * 16) {
            let sent = async {
                writer
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
                writer.write_all(&chunk).await?;
                writer.write_all(b"\r\n").await
            };
            if sent.await.is_err() {
                return;
            }
        }
        let _ = writer.write_all(b"0\r\n\r\n").await;
        // Dropping the writer would half-close the connection, which the
        // server takes for a client gone away.
        std::future::pending::<()>().await;
        drop(writer);
    });
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), reader.read(&mut answer))
        .await
        .expect("an answer within 20 s")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("larger than 8388608 bytes"), "{answer}");
    sender.abort();
}
