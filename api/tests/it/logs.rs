//! Log lines: dense sequence numbers, stored before the answer, followed live
//! with no gap and no duplicate.

use serde_json::json;
use slipway_api::auth::Role;

use slipway_testkit::api::{Backend, TestApi};

const APPEND: &str = "mutation($id: ID!, $lines: [LogLineInput!]!) { appendDeploymentLogs(id: $id, lines: $lines) { logCount } }";

async fn lines_get_dense_sequence_numbers_from_one(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let id = server.deploy("web", "prod").await;
    server.claim("r", &id).await;
    let runner = server.token(Role::Runner, "r");
    let batch = |from: usize, n: usize| {
        json!((from..from + n)
            .map(|i| json!({"text": format!("line {i}")}))
            .collect::<Vec<_>>())
    };
    // Concurrent appends still number densely.
    let answers = futures_util::future::join_all((0..5).map(|i| {
        server.ok(
            &runner,
            APPEND,
            json!({"id": id, "lines": batch(i * 10, 10)}),
        )
    }))
    .await;
    assert_eq!(answers.len(), 5);
    let viewer = server.token(Role::Viewer, "v");
    let data = server
        .ok(
            &viewer,
            "query($id: ID!) { deployment(id: $id) { logCount logs(first: 100) { seq text } } }",
            json!({"id": id}),
        )
        .await;
    let logs = data["deployment"]["logs"].as_array().unwrap();
    let seqs: Vec<i64> = logs.iter().map(|l| l["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    assert_eq!(data["deployment"]["logCount"], 50);
    // Each batch is contiguous.
    for chunk in logs.chunks(10) {
        let first: usize = chunk[0]["text"].as_str().unwrap()[5..].parse().unwrap();
        for (k, line) in chunk.iter().enumerate() {
            assert_eq!(line["text"], format!("line {}", first + k));
        }
    }
    let page = server
        .ok(
            &viewer,
            "query($id: ID!) { deployment(id: $id) { logs(after: 45, first: 3) { seq } } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        page["deployment"]["logs"],
        json!([{"seq": 46}, {"seq": 47}, {"seq": 48}])
    );

    let (code, _) = server
        .err(
            &runner,
            APPEND,
            json!({"id": id, "lines": [{"text": "x".repeat(70_000)}]}),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT", "an oversized line is refused");
    let after = server
        .ok(
            &viewer,
            "query($id: ID!) { deployment(id: $id) { logCount } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(after["deployment"]["logCount"], 50, "and nothing is stored");
}

async fn a_follower_joining_mid_stream_gets_every_line_once_in_order(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let id = server.deploy("web", "prod").await;
    server.claim("r", &id).await;
    let runner = server.token(Role::Runner, "r");
    const BATCHES: usize = 40;
    const PER_BATCH: usize = 25;

    let writer = {
        let server_url = server.url("/graphql");
        let id = id.clone();
        let runner = runner.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            for b in 0..BATCHES {
                let lines: Vec<_> = (0..PER_BATCH)
                    .map(|i| json!({"text": format!("b{b} l{i}")}))
                    .collect();
                let body: serde_json::Value = http
                    .post(&server_url)
                    .bearer_auth(&runner)
                    .json(&json!({"query": APPEND, "variables": {"id": id, "lines": lines}}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert!(body.get("errors").is_none(), "{body}");
                tokio::task::yield_now().await;
            }
        })
    };
    // Join while the writer is busy.
    let viewer = server.token(Role::Viewer, "v");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let data = server
            .ok(
                &viewer,
                "query($id: ID!) { deployment(id: $id) { logCount } }",
                json!({"id": id}),
            )
            .await;
        if data["deployment"]["logCount"].as_i64().unwrap() >= 100 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the writer made no progress"
        );
        tokio::task::yield_now().await;
    }
    let mut followers = Vec::new();
    for after in [0, 7] {
        let mut ws = server.ws(&viewer).await;
        ws.subscribe(
            "subscription($id: ID!, $after: Int!) { deploymentLogs(id: $id, afterSeq: $after) { seq text } }",
            json!({"id": id, "after": after}),
        )
        .await;
        followers.push((after, ws));
    }
    writer.await.unwrap();
    server.finish("r", &id, "SUCCEEDED").await;

    let total = (BATCHES * PER_BATCH) as i64;
    for (after, mut ws) in followers {
        let mut seqs = Vec::new();
        while let Some(item) = ws.next().await {
            let line = &item["deploymentLogs"];
            let seq = line["seq"].as_i64().unwrap();
            let b = (seq - 1) / PER_BATCH as i64;
            let l = (seq - 1) % PER_BATCH as i64;
            assert_eq!(
                line["text"],
                format!("b{b} l{l}"),
                "line {seq} carries its own text"
            );
            seqs.push(seq);
        }
        assert_eq!(
            seqs,
            ((after + 1)..=total).collect::<Vec<_>>(),
            "follower after {after}"
        );
    }
}

async fn following_a_finished_deployment_replays_and_completes(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let id = server.deploy("web", "prod").await;
    server.claim("r", &id).await;
    let runner = server.token(Role::Runner, "r");
    server
        .ok(
            &runner,
            APPEND,
            json!({"id": id, "lines": [{"text": "a"}, {"text": "b"}, {"text": "c"}]}),
        )
        .await;
    server.finish("r", &id, "FAILED").await;
    let (code, _) = server
        .err(
            &runner,
            APPEND,
            json!({"id": id, "lines": [{"text": "late"}]}),
        )
        .await;
    assert_eq!(
        code, "CONFLICT",
        "a finished deployment takes no more lines"
    );

    let mut ws = server.ws(&server.token(Role::Viewer, "v")).await;
    ws.subscribe(
        "subscription($id: ID!) { deploymentLogs(id: $id, afterSeq: 1) { seq text } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(ws.next().await.unwrap()["deploymentLogs"]["text"], "b");
    assert_eq!(ws.next().await.unwrap()["deploymentLogs"]["text"], "c");
    assert!(ws.next().await.is_none(), "completes after the last line");

    ws.subscribe(
        "subscription { deploymentLogs(id: \"999\") { seq } }",
        json!({}),
    )
    .await;
    assert_eq!(ws.error_code().await, "NOT_FOUND");
}

slipway_testkit::on_both_backends!(
    lines_get_dense_sequence_numbers_from_one,
    a_follower_joining_mid_stream_gets_every_line_once_in_order,
    following_a_finished_deployment_replays_and_completes,
    a_batch_sent_again_is_stored_once,
);

async fn a_batch_sent_again_is_stored_once(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let id = server.deploy("web", "prod").await;
    server.claim("r", &id).await;
    let runner = server.token(Role::Runner, "r");
    let append = "mutation($id: ID!, $lines: [LogLineInput!]!, $after: Int) {
        appendDeploymentLogs(id: $id, lines: $lines, after: $after) { logCount } }";
    let batch = json!([{"text": "a"}, {"text": "b"}]);
    let first = server
        .ok(
            &runner,
            append,
            json!({"id": id, "lines": batch, "after": 0}),
        )
        .await;
    assert_eq!(first["appendDeploymentLogs"]["logCount"], 2);
    // The answer was lost and the runner sends the same batch again.
    let again = server
        .ok(
            &runner,
            append,
            json!({"id": id, "lines": batch, "after": 0}),
        )
        .await;
    assert_eq!(
        again["appendDeploymentLogs"]["logCount"], 2,
        "nothing stored twice"
    );
    // A batch that overlaps stores only its new lines.
    let overlap = json!([{"text": "b"}, {"text": "c"}]);
    let data = server
        .ok(
            &runner,
            append,
            json!({"id": id, "lines": overlap, "after": 1}),
        )
        .await;
    assert_eq!(data["appendDeploymentLogs"]["logCount"], 3);
    let (code, message) = server
        .err(
            &runner,
            append,
            json!({"id": id, "lines": [{"text": "x"}], "after": 9}),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(message.contains("missing"), "{message}");
    let viewer = server.token(Role::Viewer, "v");
    let logs = server
        .ok(
            &viewer,
            "query($id: ID!) { deployment(id: $id) { logs { seq text } } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        logs["deployment"]["logs"],
        json!([{"seq": 1, "text": "a"}, {"seq": 2, "text": "b"}, {"seq": 3, "text": "c"}])
    );
}
