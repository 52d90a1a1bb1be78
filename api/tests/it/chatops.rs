//! Chat-ops: Slack's slash command, signed as Slack signs it, acting as the
//! Slack user's Slipway identity, answering at once and posting what became
//! of a deployment to the command's response URL (a fake Slack on
//! 127.0.0.1); refused when unsigned, stale, tampered with or from someone
//! Slipway does not know.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_api::chatops::{SlackCommands, SlackUser};
use slipway_api::{Clock, Settings};
use slipway_secret::Secret;
use slipway_testkit::api::{Backend, TestApi};
use slipway_testkit::fakes::slack::{signed_command, FakeSlack};

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const RUNNER: &str = "runner-1";
const WITHIN: Duration = Duration::from_secs(20);

async fn start(backend: Backend, slack: &FakeSlack) -> TestApi {
    let users = HashMap::from([
        (
            "U1PAT".to_owned(),
            SlackUser {
                subject: "pat".into(),
                role: Role::Deployer,
            },
        ),
        (
            "U2VIC".to_owned(),
            SlackUser {
                subject: "vic".into(),
                role: Role::Viewer,
            },
        ),
    ]);
    let settings = Settings {
        public_url: Some("https://slipway.example.com".into()),
        slack: Some(SlackCommands {
            signing_secret: Secret::new(SECRET),
            users,
            slack_url: format!("http://{}", slack.addr),
        }),
        ..Settings::default()
    };
    let server = TestApi::start_with(backend, Clock::system(), settings).await;
    server
        .app(
            "shop",
            "https://github.com/acme/shop.git",
            &[("production", None, None)],
        )
        .await;
    server
}

/// Sends `text` as Slack user `user`, signed now; Slack's status and answer.
async fn command(
    server: &TestApi,
    user: &str,
    text: &str,
    response_url: &str,
) -> (StatusCode, String) {
    let now = chrono::Utc::now().timestamp();
    let fields = [
        ("token", "deprecated-verification-token"),
        ("team_id", "T0SLIPWAY"),
        ("channel_id", "C0DEPLOYS"),
        ("user_id", user),
        ("user_name", "someone"),
        ("command", "/slipway"),
        ("text", text),
        ("response_url", response_url),
        ("trigger_id", "13345224609.738474920.8088930838d88f008e0"),
    ];
    let (body, headers) = signed_command(SECRET, now, &fields);
    send(server, body, &headers).await
}

async fn send(server: &TestApi, body: String, headers: &[(&str, String)]) -> (StatusCode, String) {
    let mut request = reqwest::Client::new()
        .post(server.url("/hooks/slack"))
        .header("user-agent", "Slackbot 1.0 (+https://api.slack.com/robots)");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let answer = request.body(body).send().await.unwrap();
    (answer.status(), answer.text().await.unwrap())
}

/// A command Slack took: its JSON answer.
async fn answered(server: &TestApi, user: &str, text: &str, response_url: &str) -> Value {
    let (status, body) = command(server, user, text, response_url).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The runner takes `id`, says which commit it deploys, and succeeds.
async fn release(server: &TestApi, id: &str, sha: &str) {
    server.claim_ok(RUNNER, id).await;
    server
        .ok(
            &server.token(Role::Runner, RUNNER),
            "mutation($id: ID!, $sha: String) { updateDeploymentProgress(id: $id, phase: UPDATING, sha: $sha) { status } }",
            json!({"id": id, "sha": sha}),
        )
        .await;
    server.finish(RUNNER, id, "SUCCEEDED").await;
}

async fn lock_of(server: &TestApi) -> Value {
    let data = server
        .ok_as(
            Role::Viewer,
            "{ application(name: \"shop\") { environments { lock { lockedBy reason } } } }",
            json!({}),
        )
        .await;
    data["application"]["environments"][0]["lock"].clone()
}

async fn slash_commands_act_as_the_mapped_person_and_report_back(backend: Backend) {
    let slack = FakeSlack::start().await;
    let server = start(backend, &slack).await;
    let respond = slack.response_url(1);

    let deployed = answered(&server, "U1PAT", "deploy shop production main", &respond).await;
    assert_eq!(deployed["response_type"], "in_channel");
    let text = deployed["text"].as_str().unwrap();
    let deployments = server.deployments().await;
    assert_eq!(deployments.len(), 1);
    let id = deployments[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        text,
        format!("pat deploys `main` of shop to production: <https://slipway.example.com/deployments/{id}|shop#1>")
    );
    assert_eq!(deployments[0]["createdBy"], "pat");
    assert_eq!(deployments[0]["ref"], "main");
    assert_eq!(deployments[0]["description"], "from Slack");

    // What becomes of it reaches the command's response URL.
    release(&server, &id, &"a".repeat(40)).await;
    let responses = slack.wait_for_responses(2, WITHIN).await;
    let texts: Vec<&str> = responses
        .iter()
        .map(|(_, m)| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "shop#1 started on production",
            "shop#1 succeeded on production"
        ]
    );
    for (path, message) in &responses {
        assert_eq!(path, "/commands/T0SLIPWAY/1/r3sp0ns3");
        assert_eq!(message["response_type"], "in_channel");
    }

    // Reading is for anyone mapped, and only they see it.
    let status = answered(&server, "U2VIC", "status", &slack.response_url(2)).await;
    assert_eq!(status["response_type"], "ephemeral");
    let text = status["text"].as_str().unwrap();
    assert_eq!(text, "*shop/production*: shop#1 `main` at `aaaaaaa`");

    let locked = answered(
        &server,
        "U1PAT",
        "lock shop production db migration",
        &respond,
    )
    .await;
    assert_eq!(locked["text"], "pat locked shop/production: db migration");
    assert_eq!(
        lock_of(&server).await,
        json!({"lockedBy": "pat", "reason": "db migration"})
    );
    let status = answered(&server, "U1PAT", "status shop", &respond).await;
    assert!(
        status["text"].as_str().unwrap().contains("locked by pat"),
        "{status}"
    );
    answered(&server, "U1PAT", "unlock shop production", &respond).await;
    assert!(lock_of(&server).await.is_null());

    // A viewer may not deploy; someone unknown may do nothing.
    let refused = answered(&server, "U2VIC", "deploy shop production", &respond).await;
    assert_eq!(refused["response_type"], "ephemeral");
    assert_eq!(refused["text"], "the viewer role may not do this");
    let stranger = answered(&server, "U9WHO", "deploy shop production", &respond).await;
    assert!(
        stranger["text"]
            .as_str()
            .unwrap()
            .starts_with("Slipway does not know you (Slack user U9WHO)"),
        "{stranger}"
    );
    assert_eq!(server.deployments().await.len(), 1, "neither deployed");
    let wrong = answered(&server, "U1PAT", "deploy shop", &respond).await;
    assert!(
        wrong["text"]
            .as_str()
            .unwrap()
            .contains("`deploy APP ENV [REF]`"),
        "{wrong}"
    );

    // A second release, then back to the first.
    answered(
        &server,
        "U1PAT",
        "deploy shop production v2",
        &slack.response_url(3),
    )
    .await;
    let second = server.deployments().await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    release(&server, &second, &"b".repeat(40)).await;
    let back = answered(
        &server,
        "U1PAT",
        "rollback shop production --to 1",
        &slack.response_url(4),
    )
    .await;
    let text = back["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "pat rolls shop/production back: <https://slipway.example.com/deployments/"
        ),
        "{text}"
    );
    let rollback = server.deployments().await[0].clone();
    let restored = server
        .ok_as(
            Role::Viewer,
            "query($id: ID!) { deployment(id: $id) { createdBy restores { deployment { id } } } }",
            json!({"id": rollback["id"]}),
        )
        .await;
    assert_eq!(
        restored["deployment"]["restores"]["deployment"]["id"],
        id.as_str()
    );
    assert_eq!(restored["deployment"]["createdBy"], "pat");

    // Every command that acted is in the audit log, as chat.
    let log = server
        .ok_as(
            Role::Admin,
            "{ auditLog(first: 50) { nodes { actor role via action result application environment userAgent } } }",
            json!({}),
        )
        .await;
    let mut chat: Vec<(String, String, String)> = log["auditLog"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["via"] == "CHAT")
        .map(|e| {
            assert_eq!(e["application"], "shop", "{e}");
            assert_eq!(e["environment"], "production", "{e}");
            let text = |k: &str| e[k].as_str().unwrap().to_owned();
            (text("actor"), text("action"), text("result"))
        })
        .collect();
    chat.reverse();
    let expected = [
        ("pat", "createDeployment", "OK"),
        ("pat", "lockEnvironment", "OK"),
        ("pat", "unlockEnvironment", "OK"),
        ("vic", "createDeployment", "FORBIDDEN"),
        ("slack:U9WHO", "createDeployment", "FORBIDDEN"),
        ("pat", "createDeployment", "OK"),
        ("pat", "rollbackDeployment", "OK"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(chat, expected);
}

async fn unsigned_stale_or_tampered_commands_are_refused(backend: Backend) {
    let slack = FakeSlack::start().await;
    let server = start(backend, &slack).await;
    let now = chrono::Utc::now().timestamp();
    let fields = [
        ("user_id", "U1PAT"),
        ("text", "deploy shop production"),
        ("response_url", "http://127.0.0.1:9/commands/x"),
    ];
    let (body, headers) = signed_command(SECRET, now, &fields);

    let unsigned: Vec<_> = headers
        .iter()
        .filter(|(name, _)| *name != "x-slack-signature")
        .cloned()
        .collect();
    let (status, why) = send(&server, body.clone(), &unsigned).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(why.contains("no X-Slack-Signature"), "{why}");

    let (_, other) = signed_command("another-app-s-signing-secret", now, &fields);
    let (status, why) = send(&server, body.clone(), &other).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(why.contains("does not match"), "{why}");

    let (old_body, old) = signed_command(SECRET, now - 6 * 60, &fields);
    let (status, why) = send(&server, old_body, &old).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(why.contains("more than 300s"), "{why}");

    let tampered = body.replace("production", "staging");
    let (status, why) = send(&server, tampered, &headers).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!why.contains(SECRET));

    assert!(
        server.deployments().await.is_empty(),
        "nothing was deployed"
    );

    // A response URL that is not Slack's gets nothing.
    let (status, _) = send(&server, body, &headers).await;
    assert_eq!(status, StatusCode::OK);
    let id = server.deployments().await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server.claim_ok(RUNNER, &id).await;
    let deliveries = server
        .ok_as(
            Role::Admin,
            "{ application(name: \"shop\") { environments { deliveries { nodes { id } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        deliveries["application"]["environments"][0]["deliveries"]["nodes"],
        json!([])
    );

    // Without a signing secret there is no chat-ops at all.
    let plain = TestApi::start(backend).await;
    let (status, why) = send(&plain, "text=status".into(), &headers).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(why.contains("chat-ops is not configured"), "{why}");
}

slipway_testkit::on_both_backends!(
    slash_commands_act_as_the_mapped_person_and_report_back,
    unsigned_stale_or_tampered_commands_are_refused,
);
